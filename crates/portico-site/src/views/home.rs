//! `/`: the welcome page, or straight to the notes for someone logged in.

use axum::response::{IntoResponse, Redirect};
use minijinja::context;
use portico::template::Page;

use super::{get, Routes};
use crate::auth::MaybeUser;
use crate::error::AppResult;

/// The home route.
pub fn routes() -> Routes {
    Routes::new().page(
        "/",
        get(home),
        "home: the notes of a logged-in user, or the welcome page",
    )
}

/// GET / — a logged-in user goes straight to their notes; anyone else sees the welcome page.
async fn home(page: Page, MaybeUser(user): MaybeUser) -> AppResult {
    if user.is_some() {
        return Ok(Redirect::to("/notes/").into_response());
    }
    Ok(page.render("home.html", context! {}).await?.into_response())
}
