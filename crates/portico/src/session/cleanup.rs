//! Sweeping expired sessions out of stores that do not expire them by themselves.

use std::sync::Arc;
use std::time::Duration;

use super::store::SessionStore;
use crate::clock::Clock;

/// Deletes expired sessions every `every` in the background (SQL stores need it; Redis expires
/// keys by itself). Errors are logged and retried at the next tick.
pub fn spawn_cleanup(
    store: Arc<dyn SessionStore>,
    every: Duration,
    clock: Clock,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.delete_expired(clock.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired sessions deleted"),
                Err(e) => tracing::warn!(error = %e, "expired session cleanup failed"),
            }
        }
    })
}
