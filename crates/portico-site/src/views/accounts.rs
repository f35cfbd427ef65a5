//! Accounts: register, log in, log out.

use axum::Router;

use crate::app::AppState;

/// The account routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
