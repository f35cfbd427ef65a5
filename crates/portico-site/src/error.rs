//! The site's view errors, each turned into a page with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portico::error::ErrorPage;
use portico::session::SessionError;
use portico::template::TemplateError;

/// What a person is told when the database cannot be used for now (full disk, restarting server).
pub const DB_UNAVAILABLE: &str =
    "The site cannot store or read data right now, so nothing was changed. Please try again in a moment.";

/// What can go wrong in a view.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The session store failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A template failed.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// No such thing (or not yours).
    #[error("not found")]
    NotFound,
    /// A hashing task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Db(e) if crate::db::is_unavailable(&e) => {
                tracing::error!(error = %e, "database unavailable");
                ErrorPage::new(StatusCode::SERVICE_UNAVAILABLE, DB_UNAVAILABLE).into_response()
            }
            AppError::Db(e) => {
                tracing::error!(error = %e, "database error");
                let status = StatusCode::INTERNAL_SERVER_ERROR;
                ErrorPage::new(status, ErrorPage::default_message(status)).into_response()
            }
            AppError::Session(e) => e.into_response(),
            AppError::Template(e) => e.into_response(),
            AppError::NotFound => ErrorPage::new(
                StatusCode::NOT_FOUND,
                ErrorPage::default_message(StatusCode::NOT_FOUND),
            )
            .into_response(),
            AppError::Task(e) => {
                tracing::error!(error = %e, "background task failed");
                ErrorPage::internal().into_response()
            }
        }
    }
}

/// A view's result.
pub type AppResult<T = Response> = Result<T, AppError>;
