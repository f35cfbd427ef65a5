//! `GET /captcha/`: a fresh captcha PNG whose answer only the session knows; `GET /captcha/audio/`:
//! the same as a recording of spoken digits.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portico::captcha::{Captcha, CaptchaConfig, Challenge, IssueError, Mode, Voice};
use portico::error::ErrorPage;
use portico::events::{Event, EventKind, Events};
use portico::params::Query;
use portico::session::Session;

use super::{get, Routes};

/// The captcha routes: files, not pages, so no user is read for them.
pub fn routes() -> Routes {
    Routes::new()
        .plain(
            "/captcha/",
            get(image),
            "a fresh captcha PNG (?mode=zh|digits)",
        )
        .plain(
            "/captcha/audio/",
            get(audio),
            "a fresh spoken captcha WAV (?lang=en|zh)",
        )
}

/// GET /captcha/ (`?mode=latin|digits|zh`).
async fn image(
    State(config): State<Arc<CaptchaConfig>>,
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
    let issued = Captcha::issue(&session, &config, mode, events.client_ip()).await;
    respond(&events, issued, mode.into()).await
}

/// GET /captcha/audio/ (`?lang=en|zh`): five spoken digits as a WAV, the alternative to the
/// picture for people who cannot see it.
async fn audio(
    State(config): State<Arc<CaptchaConfig>>,
    session: Session,
    events: Events,
    Query(q): Query,
) -> Response {
    let voice = match q.get("lang") {
        None | Some("") => Voice::English,
        Some(l) => match Voice::parse(l) {
            Some(voice) => voice,
            None => {
                return ErrorPage::new(
                    StatusCode::BAD_REQUEST,
                    "Unknown captcha language: use en or zh.",
                )
                .into_response()
            }
        },
    };
    let issued = Captcha::issue_audio(&session, &config, voice, events.client_ip()).await;
    respond(&events, issued, Challenge::Audio(voice)).await
}

/// The response to a new challenge: its file, never stored by a cache (a stored copy would
/// replay an answer the session no longer holds), or why there is none.
async fn respond(
    events: &Events,
    issued: Result<Vec<u8>, IssueError>,
    challenge: Challenge,
) -> Response {
    match issued {
        Ok(body) => {
            events
                .emit(Event::new(EventKind::CaptchaIssued).captcha_mode(challenge.as_str()))
                .await;
            let content_type = if challenge.is_audio() {
                "audio/wav"
            } else {
                "image/png"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "no-store, max-age=0"),
                ],
                body,
            )
                .into_response()
        }
        Err(IssueError::Limited(which)) => {
            events
                .emit(Event::new(EventKind::RateLimited).scope(which.scope()))
                .await;
            let message = if challenge.is_audio() {
                "Too many new recordings in a short time. Wait a minute, then play it again."
            } else {
                "Too many new pictures in a short time. Wait a minute, then click the picture again."
            };
            let mut resp = ErrorPage::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            resp
        }
        Err(IssueError::Session(e)) => e.into_response(),
    }
}
