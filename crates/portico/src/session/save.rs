//! Saving a session on the way out: what changed goes to the store, the cookie is set, refreshed
//! or removed, and the response is kept out of shared caches.

use axum::http::{header, HeaderValue};
use axum::response::Response;

use super::config::{refresh_after, CookieAction};
use super::error::SessionError;
use super::handle::{Session, AUTHENTICATED_KEY, EXPIRY_KEY};
use super::id::new_id;
use super::layer::keep_private;
use super::store::{Changes, Record, StorageKey};

impl Session {
    /// Writes what changed and sets, refreshes or removes the cookie on `resp`.
    pub(super) async fn save(&self, resp: &mut Response) -> Result<(), SessionError> {
        let mut inner = self.inner.lock().await;
        if !inner.loaded {
            return Ok(());
        }
        if inner.discard {
            keep_private(resp);
            return Ok(());
        }
        let cfg = &self.shared.config;
        let store = &self.shared.store;
        let now = cfg.clock.now();
        let custom: Option<i64> = inner
            .data
            .get(EXPIRY_KEY)
            .and_then(|j| serde_json::from_str(j).ok());
        let idle = match custom {
            Some(s) if s > 0 => s,
            _ => cfg.idle_secs(inner.data.contains_key(AUTHENTICATED_KEY)),
        };
        let browser_session = custom == Some(0);

        for key in std::mem::take(&mut inner.doomed) {
            self.timed(store.delete(&key)).await?;
        }

        let mut cookie = None;
        match inner.id.clone() {
            None => {
                if !inner.data.is_empty() {
                    let id = new_id();
                    let record = Record {
                        data: inner.data.clone(),
                        created_at: now,
                        expires_at: now + idle,
                    };
                    self.timed(store.create(&StorageKey::of(&id), &record))
                        .await?;
                    inner.id = Some(id.clone());
                    inner.created_at = now;
                    inner.expires_at = now + idle;
                    cookie = Some(CookieAction::Set(id));
                } else if inner.cookie_id.is_some() {
                    cookie = Some(CookieAction::Remove);
                }
            }
            Some(id) => {
                let changes = Changes {
                    set: inner
                        .changes
                        .iter()
                        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                        .collect(),
                    remove: inner
                        .changes
                        .iter()
                        .filter(|(_, v)| v.is_none())
                        .map(|(k, _)| k.clone())
                        .collect(),
                };
                let stale = inner.expires_at - now < idle - refresh_after(idle);
                if !changes.is_empty() || stale {
                    let expires_at =
                        (now + idle).min(inner.created_at + cfg.absolute_timeout.whole_seconds());
                    let written = self
                        .timed(store.update(&StorageKey::of(&id), &changes, expires_at, now))
                        .await;
                    match written {
                        Ok(true) => {
                            inner.expires_at = expires_at;
                            cookie = Some(CookieAction::Set(id));
                        }
                        Ok(false) => {
                            // Deleted meanwhile (logged out elsewhere): never bring it back.
                            inner.id = None;
                            cookie = Some(CookieAction::Remove);
                        }
                        // Only the idle expiry was to move, which a later request does as well:
                        // the page the visitor asked for is no reason for a 503.
                        Err(e) if changes.is_empty() => {
                            tracing::warn!(error = %e, "session expiry not refreshed");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        inner.changes.clear();

        if let Some(action) = cookie {
            let max_age = (!browser_session).then(|| time::Duration::seconds(idle));
            let c = cfg.cookie(action, max_age);
            if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        keep_private(resp);
        Ok(())
    }
}
