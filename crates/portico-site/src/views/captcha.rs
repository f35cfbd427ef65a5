//! `GET /captcha/`: a fresh captcha PNG whose answer only the session knows.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portico::captcha::{Captcha, CaptchaConfig, IssueError, Mode};
use portico::error::ErrorPage;
use portico::events::{Event, Events};
use portico::params::Query;
use portico::session::Session;

use crate::app::AppState;

/// The site's captcha settings.
pub type CaptchaSettings = CaptchaConfig;

/// GET /captcha/ (`?mode=latin|digits|zh`).
pub async fn image(
    State(state): State<AppState>,
    session: Session,
    events: Events,
    Query(q): Query,
) -> Response {
    let mode = match q.get("mode") {
        None | Some("") => Mode::Latin,
        Some(m) => match Mode::parse(m) {
            Some(mode) => mode,
            None => {
                return ErrorPage::new(
                    StatusCode::BAD_REQUEST,
                    "Unknown captcha mode: use latin, digits or zh.",
                )
                .into_response()
            }
        },
    };
    match Captcha::issue(&session, &state.captcha, mode, events.client_ip()).await {
        Ok(png) => {
            events
                .emit(Event::new("captcha_issued").captcha_mode(mode.as_str()))
                .await;
            (
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "no-store, max-age=0"),
                ],
                png,
            )
                .into_response()
        }
        Err(IssueError::Limited(which)) => {
            events
                .emit(Event::new("rate_limited").scope(which.scope()))
                .await;
            let mut resp = ErrorPage::new(StatusCode::TOO_MANY_REQUESTS, "Too many new pictures in a short time. Wait a minute, then click the picture again.")
                .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            resp
        }
        Err(IssueError::Session(e)) => e.into_response(),
    }
}
