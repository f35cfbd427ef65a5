//! What can go wrong with a session, and the markers the layer leaves on a response for the
//! layers around it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::store::StoreError;
use crate::error::ErrorPage;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed or did not answer in time.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded or decoded as JSON.
    #[error("session value error: {0}")]
    Value(#[from] serde_json::Error),
    /// An insert would take the session past its key or byte cap; nothing was changed.
    #[error("the session would hold {keys} keys and {bytes} bytes, over its limit of {max_keys} keys and {max_bytes} bytes")]
    TooLarge {
        /// Keys the session would have held.
        keys: usize,
        /// Bytes the session would have held.
        bytes: usize,
        /// The key cap.
        max_keys: usize,
        /// The byte cap.
        max_bytes: usize,
    },
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        match &self {
            SessionError::Store(e) => {
                tracing::error!(error = %e, "session store unavailable");
                let mut resp = ErrorPage::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Your session cannot be reached right now. Nothing was lost; please try again in a moment.",
                )
                .into_response();
                resp.extensions_mut().insert(StoreFailure(e.to_string()));
                resp
            }
            SessionError::Value(e) => {
                tracing::error!(error = %e, "session value error");
                ErrorPage::internal().into_response()
            }
            SessionError::TooLarge { .. } => {
                tracing::warn!(error = %self, "session size limit reached");
                let mut resp = ErrorPage::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "This would store more than your session can hold. Nothing was saved; \
                     remove something first, or send less.",
                )
                .into_response();
                resp.extensions_mut().insert(Unsaved);
                resp
            }
        }
    }
}

/// Marks a response whose request must write nothing to the session (it answered
/// [`SessionError::TooLarge`]): the layer leaves the store and the cookie as they were.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unsaved;

/// Marks a response to a request that carried the session cookie more than once; the event log
/// reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DuplicateCookie;

/// Marks a response that failed because the session store did; the event log reads it.
#[derive(Debug, Clone)]
pub(crate) struct StoreFailure(pub(crate) String);
