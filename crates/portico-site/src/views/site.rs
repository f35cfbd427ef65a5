//! The site's plumbing: the health check, the stylesheet and the page for unknown paths.
//!
//! None of these renders a page for a user, so none reads the session.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portico::error::ErrorPage;

use super::{get, Routes};
use crate::state::AppState;

/// The health check and the stylesheet.
pub fn routes() -> Routes {
    Routes::new()
        .plain("/healthz", get(healthz), "liveness probe")
        .plain("/static/site.css", get(stylesheet), "the stylesheet")
}

/// `ok`, then the event log's counts (`events_written N`, `events_dropped N`): a rising
/// `events_dropped` means the log cannot keep up or its disk is full (docs/deployment.md).
async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.db.pool).await {
        Ok(_) => {
            let body = format!(
                "ok\nevents_written {}\nevents_dropped {}\n",
                state.events.written(),
                state.events.dropped()
            );
            (StatusCode::OK, body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            ErrorPage::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database cannot be reached.",
            )
            .into_response()
        }
    }
}

/// The stylesheet, embedded; cached by browsers for a day so pages stay small.
async fn stylesheet() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/site.css"),
    )
        .into_response()
}

/// Any path no route names.
pub async fn not_found() -> ErrorPage {
    ErrorPage::new(
        StatusCode::NOT_FOUND,
        ErrorPage::default_message(StatusCode::NOT_FOUND),
    )
}
