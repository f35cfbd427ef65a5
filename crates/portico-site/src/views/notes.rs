//! Notes: list, filter by tag, create, show, edit, delete.

use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;

use crate::app::AppState;

/// The note routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// GET /
pub async fn home() -> Response {
    Redirect::to("/notes/").into_response()
}
