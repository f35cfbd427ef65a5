//! `/demo/`: the request/response basics end to end, and session routes that tools drive from
//! outside.
//!
//! GET shows a form (a `username` field and a `hobby` checkbox group) pre-filled from the
//! `username` cookie, and counts the session's visits. POST reads the form with `get` / `getlist`,
//! sets the cookie and shows what arrived. `/demo/session/` reads and writes session keys under
//! the `demo.` prefix only, so nothing outside can touch the login or the CSRF secret.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use minijinja::context;
use portico::cookies::{Cookie, Cookies};
use portico::csrf::Resubmitted;
use portico::error::ErrorPage;
use portico::params::Params;
use portico::session::Session;
use portico::template::Page;

use super::{get, post, Routes};
use crate::error::AppResult;
use crate::models::users::USERNAME_MAX;

/// The hobbies the demo form offers.
pub const HOBBIES: [&str; 4] = ["reading", "music", "sports", "travel"];

/// The demo page and the session routes tools drive.
pub fn routes() -> Routes {
    Routes::new()
        .page(
            "/demo/",
            get(demo_form).post(demo_submit),
            "request/response basics: get, getlist, cookies, visit counter",
        )
        .plain(
            "/demo/session/",
            get(session_json).post(session_set),
            "the session's demo.* keys as JSON; POST key/value sets demo.<key>",
        )
        .plain(
            "/demo/session/flush/",
            post(session_flush),
            "flush the whole session, as logout does",
        )
}

/// GET /demo/
async fn demo_form(page: Page, session: Session, cookies: Cookies, kept: Resubmitted) -> AppResult {
    let visits: u64 = session.get("visits").await?.unwrap_or(0);
    // A refused post shown again is not a visit.
    let visits = if kept.0.is_some() { visits } else { visits + 1 };
    if kept.0.is_none() {
        session.insert("visits", &visits).await?;
    }
    let (username, checked): (String, Vec<String>) = match &kept.0 {
        Some(form) => (
            form.get("username").unwrap_or("").to_string(),
            form.getlist("hobby")
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        None => (cookies.get("username").unwrap_or_default(), Vec::new()),
    };
    Ok(page
        .render(
            "demo.html",
            context! { visits, username, checked, hobbies => HOBBIES, submitted => false },
        )
        .await?
        .into_response())
}

/// POST /demo/
async fn demo_submit(page: Page, session: Session, cookies: Cookies, params: Params) -> AppResult {
    let username = params.get("username").unwrap_or("").trim().to_string();
    let checked: Vec<String> = params
        .getlist("hobby")
        .into_iter()
        .filter(|h| HOBBIES.contains(h))
        .map(String::from)
        .collect();
    let visits: u64 = session.get("visits").await?.unwrap_or(0);
    let error = if username.chars().count() > USERNAME_MAX {
        Some(format!(
            "The name can be at most {USERNAME_MAX} characters."
        ))
    } else {
        None
    };
    if error.is_none() && !username.is_empty() {
        cookies.set_cookie(
            Cookie::build(("username", username.clone()))
                .max_age(time::Duration::days(365))
                .http_only(true),
        );
    }
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let html = page
        .render("demo.html", context! { visits, username, checked, hobbies => HOBBIES, submitted => error.is_none(), error })
        .await?;
    Ok((status, html).into_response())
}

fn demo_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    ok.then(|| format!("demo.{key}"))
}

/// GET /demo/session/ — the session's `demo.*` keys as a JSON object.
async fn session_json(session: Session) -> AppResult {
    let mut out = serde_json::Map::new();
    for key in session.keys().await? {
        if key.starts_with("demo.") {
            if let Some(v) = session.get::<serde_json::Value>(&key).await? {
                out.insert(key, v);
            }
        }
    }
    Ok(Json(serde_json::Value::Object(out)).into_response())
}

/// POST /demo/session/ — `key`, `value`: stores the value under `demo.<key>`.
async fn session_set(session: Session, params: Params) -> AppResult {
    let Some(key) = demo_key(params.get("key").unwrap_or("")) else {
        return Ok(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "The key must be 1 to 64 letters, digits, '.', '_' or '-'.",
        )
        .into_response());
    };
    let value = params.get("value").unwrap_or("");
    if value.len() > 4096 {
        return Ok(ErrorPage::new(
            StatusCode::BAD_REQUEST,
            "The value can be at most 4096 bytes.",
        )
        .into_response());
    }
    session.insert(&key, value).await?;
    Ok(Json(serde_json::json!({ "stored": key })).into_response())
}

/// POST /demo/session/flush/ — deletes the whole session, as logout does.
async fn session_flush(session: Session) -> AppResult {
    session.flush().await?;
    Ok(Json(serde_json::json!({ "flushed": true })).into_response())
}
