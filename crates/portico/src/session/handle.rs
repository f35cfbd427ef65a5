//! The [`Session`] handle a view works with: reads load the session once per request, writes
//! are kept until the layer saves them on the way out (see [`super::save`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{de::DeserializeOwned, Serialize};

use super::config::{Expiry, SessionConfig};
use super::error::SessionError;
use super::id::well_formed;
use super::store::{SessionStore, StorageKey, StoreError};

/// The session key under which [`Session::set_expiry`] keeps a per-session idle timeout.
pub(super) const EXPIRY_KEY: &str = "_portico.expiry";
/// The session key that [`Session::mark_authenticated`] sets: the session is a logged-in user's.
pub(super) const AUTHENTICATED_KEY: &str = "_portico.auth";

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// The id the request's cookie named, not yet checked against the store.
    pub(super) cookie_id: Option<String>,
    pub(super) loaded: bool,
    /// The id of the live session this request works on; `None` for a new or flushed session.
    pub(super) id: Option<String>,
    pub(super) data: HashMap<String, String>,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    /// Key to new JSON text, or `None` for a removal.
    pub(super) changes: HashMap<String, Option<String>>,
    /// Sessions to delete on the way out (after `cycle_id` or `flush`).
    pub(super) doomed: Vec<StorageKey>,
    /// Where `data` was read from: the stored session a [`Session::take`] takes from, even after
    /// `cycle_id` (the old session lives in the store until the response goes out).
    pub(super) origin: Option<StorageKey>,
    /// `cycle_id` or `flush` was called in this request.
    pub(super) rotated: bool,
    /// [`Session::discard_writes`] was called: nothing is written and no cookie set.
    pub(super) discard: bool,
}

/// What every session of one layer shares.
pub(super) struct Shared {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) config: SessionConfig,
}

/// The session of one request. Cloning gives another handle on the same session.
///
/// ```
/// use portico::session::Session;
/// async fn visit(session: Session) -> Result<String, portico::session::SessionError> {
///     let visits: u64 = session.get("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", &visits).await?;
///     Ok(format!("visit number {visits}"))
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(visit));
/// ```
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<tokio::sync::Mutex<Inner>>,
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    pub(super) fn new(cookie_id: Option<String>, shared: Arc<Shared>) -> Self {
        let inner = Inner {
            cookie_id: cookie_id.filter(|id| well_formed(id)),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            shared,
        }
    }

    pub(super) async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.shared.config.store_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(limit)),
        }
    }

    /// Reads the session from the store the first time it is needed in this request.
    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, Inner>, SessionError> {
        let mut inner = self.inner.lock().await;
        if inner.loaded {
            return Ok(inner);
        }
        if let Some(id) = inner.cookie_id.clone() {
            let now = self.shared.config.clock.now();
            let key = StorageKey::of(&id);
            if let Some(rec) = self.timed(self.shared.store.load(&key, now)).await? {
                if rec.created_at + self.shared.config.absolute_timeout.whole_seconds() > now {
                    inner.origin = Some(key);
                    inner.id = Some(id);
                    inner.data = rec.data;
                    inner.created_at = rec.created_at;
                    inner.expires_at = rec.expires_at;
                } else {
                    inner.doomed.push(key);
                }
            }
        }
        inner.loaded = true;
        Ok(inner)
    }

    /// The value under `key`, decoded; `None` when absent.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded (the first access in a
    /// request) and the store fails or does not answer within
    /// [`SessionConfig::store_timeout`], and [`SessionError::Value`] when the stored JSON does not
    /// decode as `T`. Returned from a handler, the first becomes a 503 page and the second a 500.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn greet(session: Session) -> Result<String, SessionError> {
    ///     let name: Option<String> = session.get("name").await?;
    ///     Ok(format!("Hello, {}", name.as_deref().unwrap_or("stranger")))
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(greet));
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let inner = self.loaded().await?;
        match inner.data.get(key) {
            Some(json) => Ok(Some(serde_json::from_str(json)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` (written to the store when the response goes out).
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Value`] when `value` cannot be encoded as JSON,
    /// [`SessionError::TooLarge`] when it would take the session past
    /// [`SessionConfig::max_keys`] or [`SessionConfig::max_bytes`] (the session is left unchanged;
    /// as a response it is a 413 page), and [`SessionError::Store`] when the session has to be
    /// loaded and the store fails or times out.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn choose_theme(session: Session) -> Result<&'static str, SessionError> {
    ///     session.insert("theme", "dark").await?;
    ///     Ok("saved")
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(choose_theme));
    /// ```
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        let json = serde_json::to_string(value)?;
        let mut inner = self.loaded().await?;
        if inner.data.get(key) != Some(&json) {
            self.fits(&inner.data, key, &json)?;
            inner.data.insert(key.to_string(), json.clone());
            inner.changes.insert(key.to_string(), Some(json));
        }
        Ok(())
    }

    /// Whether setting `key` to `json` keeps the session within its caps. A session already past a
    /// cap (stored before the cap was lowered) may still change in ways that do not grow it.
    fn fits(
        &self,
        data: &HashMap<String, String>,
        key: &str,
        json: &str,
    ) -> Result<(), SessionError> {
        let cfg = &self.shared.config;
        let old = data.get(key);
        let keys_now = data.len();
        let keys = keys_now + usize::from(old.is_none());
        let bytes_now: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        let bytes = bytes_now - old.map_or(0, |v| key.len() + v.len()) + key.len() + json.len();
        let too_many = keys > cfg.max_keys && keys > keys_now;
        let too_big = bytes > cfg.max_bytes && bytes > bytes_now;
        if too_many || too_big {
            return Err(SessionError::TooLarge {
                keys,
                bytes,
                max_keys: cfg.max_keys,
                max_bytes: cfg.max_bytes,
            });
        }
        Ok(())
    }

    /// Removes `key` and returns its value, deciding in the store which request gets it: when
    /// several requests of one session take the same key at once (on one server or many), exactly
    /// one of them gets the value and the others `None`. Use it for anything that may be used
    /// once, such as a captcha's answer or a one-time code; [`Session::remove`] only changes this
    /// request's copy until the response goes out.
    ///
    /// A value this request inserted itself is taken from the request's copy (no other request
    /// can have seen it). Costs one store round trip when the key is set, none when it is not.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when loading the session or the take itself fails or times
    /// out; whether the store removed the value is then unknown, so treat it as not received.
    /// Returns [`SessionError::Value`] when the value does not decode as `T` (it is gone all the
    /// same).
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn redeem(session: Session) -> Result<&'static str, SessionError> {
    ///     Ok(match session.take::<String>("one-time-code").await? {
    ///         Some(_) => "redeemed",
    ///         None => "already used",
    ///     })
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(redeem));
    /// ```
    pub async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut inner = self.loaded().await?;
        let local = inner.data.remove(key);
        if let Some(pending) = inner.changes.get(key).cloned() {
            inner.changes.insert(key.to_string(), None);
            return match pending {
                Some(json) => Ok(Some(serde_json::from_str(&json)?)),
                None => Ok(None),
            };
        }
        let (Some(_), Some(origin)) = (local, inner.origin.clone()) else {
            return Ok(None);
        };
        let now = self.shared.config.clock.now();
        match self
            .timed(self.shared.store.take(&origin, key, now))
            .await?
        {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    /// Removes `key` and returns its old value, if any; an old value that does not decode as `T`
    /// is removed and returned as `None`.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out; nothing is removed then.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn dismiss(session: Session) -> Result<String, SessionError> {
    ///     let notice: Option<String> = session.remove("notice").await?;
    ///     Ok(notice.unwrap_or_default())
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(dismiss));
    /// ```
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut inner = self.loaded().await?;
        match inner.data.remove(key) {
            Some(old) => {
                inner.changes.insert(key.to_string(), None);
                Ok(serde_json::from_str(&old).ok())
            }
            None => Ok(None),
        }
    }

    /// Whether `key` is set.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn is_logged_in(session: &Session) -> Result<bool, SessionError> {
    ///     session.contains("user_id").await
    /// }
    /// ```
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.data.contains_key(key))
    }

    /// The keys that are set, in no particular order.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn drafts(session: &Session) -> Result<usize, SessionError> {
    ///     let keys = session.keys().await?;
    ///     Ok(keys.iter().filter(|k| k.starts_with("draft:")).count())
    /// }
    /// ```
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        Ok(self.loaded().await?.data.keys().cloned().collect())
    }

    /// Removes every key but keeps the session and its id.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out; nothing is removed then.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn start_over(session: Session) -> Result<&'static str, SessionError> {
    ///     session.clear().await?;
    ///     Ok("cleared")
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(start_over));
    /// ```
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut inner = self.loaded().await?;
        let keys: Vec<String> = inner.data.drain().map(|(k, _)| k).collect();
        for k in keys {
            inner.changes.insert(k, None);
        }
        Ok(())
    }

    /// Deletes the session from the store (every server forgets it) and starts an empty one; the
    /// browser's cookie is removed unless something is stored afterwards. Call it at logout.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out; the session is not ended then, so the caller must not report a logout.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn log_out(session: Session) -> Result<&'static str, SessionError> {
    ///     session.flush().await?;
    ///     Ok("logged out")
    /// }
    /// # let _ = axum::Router::<()>::new().route("/logout", axum::routing::post(log_out));
    /// ```
    pub async fn flush(&self) -> Result<(), SessionError> {
        let mut inner = self.loaded().await?;
        if let Some(id) = inner.id.take() {
            inner.doomed.push(StorageKey::of(&id));
        }
        inner.data.clear();
        inner.changes.clear();
        inner.rotated = true;
        Ok(())
    }

    /// Gives the session a new id, keeping its data (but dropping the `__` keys bound to the old
    /// id), and deletes the old id from the store. Call it at login against session fixation.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out; the id is unchanged then, so the login must not go ahead.
    ///
    /// # Examples
    ///
    /// See [`Session::mark_authenticated`].
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut inner = self.loaded().await?;
        if let Some(id) = inner.id.take() {
            inner.doomed.push(StorageKey::of(&id));
        }
        inner.data.retain(|k, _| !k.starts_with("__"));
        inner.changes.clear();
        inner.rotated = true;
        Ok(())
    }

    /// The session's id, once it has one in the store (`None` for a session not yet saved).
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Store`] when the session has to be loaded and the store fails or
    /// times out.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn has_session(session: &Session) -> Result<bool, SessionError> {
    ///     Ok(session.id().await?.is_some())
    /// }
    /// ```
    pub async fn id(&self) -> Result<Option<String>, SessionError> {
        Ok(self.loaded().await?.id.clone())
    }

    /// The id the request's cookie carried (unchecked), without touching the store.
    pub async fn cookie_id(&self) -> Option<String> {
        self.inner.lock().await.cookie_id.clone()
    }

    /// Sets how long this session lives when idle.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`Session::insert`]: [`SessionError::Store`] when the session has to
    /// be loaded and the store fails or times out, and [`SessionError::TooLarge`] when the session
    /// is already at its key or byte cap.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Expiry, Session, SessionError};
    /// async fn remember_me(session: &Session) -> Result<(), SessionError> {
    ///     session.set_expiry(Expiry::Idle(time::Duration::days(30))).await
    /// }
    /// ```
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        match expiry {
            Expiry::Default => self.remove::<i64>(EXPIRY_KEY).await.map(|_| ()),
            Expiry::Idle(d) => self.insert(EXPIRY_KEY, &d.whole_seconds().max(1)).await,
            Expiry::OnBrowserClose => self.insert(EXPIRY_KEY, &0i64).await,
        }
    }

    /// Marks the session as a logged-in user's: from now on it gets the long idle timeout
    /// ([`SessionConfig::idle_timeout`]) instead of the anonymous one. Call it at login, after
    /// [`Session::cycle_id`]; [`Session::flush`] at logout makes the next session anonymous again.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`Session::insert`]: [`SessionError::Store`] when the session has to
    /// be loaded and the store fails or times out, and [`SessionError::TooLarge`] when the session
    /// is already at its key or byte cap. The session stays anonymous then.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Session, SessionError};
    /// async fn log_in(session: &Session, user_id: i64) -> Result<(), SessionError> {
    ///     session.cycle_id().await?;
    ///     session.mark_authenticated().await?;
    ///     session.insert("user_id", &user_id).await
    /// }
    /// ```
    pub async fn mark_authenticated(&self) -> Result<(), SessionError> {
        self.insert(AUTHENTICATED_KEY, &true).await
    }

    /// What this request has done with its session so far, read without touching the store.
    ///
    /// The CSRF layer asks it on the way out, to know whether a visitor's secret now lives in a
    /// session (see [`crate::csrf`]).
    pub async fn status(&self) -> Status {
        let inner = self.inner.lock().await;
        if !inner.loaded {
            Status::Untouched
        } else if inner.rotated {
            if inner.data.is_empty() {
                Status::Ended
            } else {
                Status::Renewed
            }
        } else if inner.id.is_some() {
            Status::Kept
        } else if inner.data.is_empty() {
            Status::Absent
        } else {
            Status::Started
        }
    }

    /// Drops every change this request makes to the session, before this call and after: on the
    /// way out nothing is written to the store (no session created, changed, refreshed or
    /// deleted) and no session cookie is set. Reads still work.
    ///
    /// The CSRF layer calls it on a refused request before showing its form again: a refused
    /// request changes nothing, so another site's post (which arrives without the visitor's
    /// `SameSite` cookie) can never replace the visitor's session cookie with a new one.
    pub async fn discard_writes(&self) {
        self.inner.lock().await.discard = true;
    }

    /// Whether the view touched the session at all.
    pub(super) async fn touched(&self) -> bool {
        self.inner.lock().await.loaded
    }
}

/// What a request has done with its session; see [`Session::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not read in this request: nothing is written and no cookie set.
    Untouched,
    /// There is no session: none came with the request (or the one its cookie named is gone),
    /// and nothing is stored.
    Absent,
    /// A session begins with this request: none came with it, something is stored, and neither
    /// `cycle_id` nor `flush` was called. It is created on the way out.
    Started,
    /// The session that came with the request goes on under its id.
    Kept,
    /// `cycle_id` (or `flush`, then a new write) was called: the data goes on under a new id.
    Renewed,
    /// `flush` (or `cycle_id` of an empty session) was called: no session remains.
    Ended,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = crate::error::MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        crate::error::MissingLayer::take(&parts.extensions, "SessionLayer")
    }
}
