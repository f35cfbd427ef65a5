//! Server-side sessions: `session.insert("k", v)` in one request, `session.get("k")` in the next,
//! on any server that shares the store.
//!
//! A view takes a [`Session`] argument. The [`SessionLayer`] puts one in every request without
//! doing any I/O: the session is read from the store the first time a view touches it, once per
//! request, and the values are cached for the rest of the request. On the way out the layer writes
//! only what changed, key by key ([`SessionStore::update`]), so concurrent requests of one session
//! that write different keys never lose each other's writes, even across servers.
//!
//! Rules the layer enforces, whatever the store:
//! - ids are 256 random bits from the OS CSPRNG; an id the store does not know (forged, expired,
//!   deleted) is never adopted: the request gets a fresh, empty session and a new id on write;
//! - a request that never touches the session, or only reads it, sets no cookie (but a read
//!   refreshes the idle expiry now and then, so an active user stays logged in);
//! - an idle timeout (default 2 weeks) and an absolute timeout (default 30 days), both checked on
//!   the server, not only by cookie expiry; a session not marked as a user's
//!   ([`Session::mark_authenticated`], called at login) gets a short idle timeout instead (default
//!   1 hour), so visitors who never log in cannot grow the store for weeks;
//! - [`Session::cycle_id`] (call it at login) moves the data to a new id and deletes the old one;
//!   [`Session::flush`] (logout) deletes the session from the store, so every server forgets it;
//! - keys that begin with `__` belong to one id: `cycle_id` and `flush` drop them. The CSRF secret
//!   lives under such a key, so it rotates with the id;
//! - [`Session::take`] removes a key in the store itself and answers its value to exactly one of
//!   any number of concurrent requests: use it for whatever may be used once (a captcha's answer);
//! - a session holds at most [`SessionConfig::max_keys`] keys and [`SessionConfig::max_bytes`]
//!   bytes of keys and JSON values (64 and 64 KiB by default): an insert past either answers
//!   [`SessionError::TooLarge`], changes nothing, and the request that returns it writes nothing;
//! - a request that carries the session cookie twice (a sibling sub-domain can set a second one,
//!   "cookie tossing") is treated as carrying none: it gets a fresh session, never either id, and
//!   is logged. Under HTTPS, a `__Host-` cookie name ([`SessionConfig::validate`] checks it) stops
//!   sub-domains from setting the cookie at all;
//! - a store that fails or takes longer than the timeout (default 2 s) turns the request into a
//!   503 page; requests that don't touch the session are unaffected;
//! - a response of a request that touched the session is this visitor's own: it gets
//!   `Cache-Control: private, no-store` (unless the view chose its caching) and `Vary: Cookie`.
//!
//! The session cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when configured, with a
//! `Domain` only when configured (`.example.test` shares one login across sub-domains).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

pub mod conformance;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::future::BoxFuture;
use rand::RngCore;
use serde::{de::DeserializeOwned, Serialize};

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{default_pool_size, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{Changes, Record, SessionStore, StorageKey, StoreError};

use crate::clock::Clock;
use crate::error::ErrorPage;

/// The session key under which [`Session::set_expiry`] keeps a per-session idle timeout.
const EXPIRY_KEY: &str = "_portico.expiry";
/// The session key that [`Session::mark_authenticated`] sets: the session is a logged-in user's.
const AUTHENTICATED_KEY: &str = "_portico.auth";

/// How sessions are kept and how their cookie looks.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The cookie's name (`sessionid`).
    pub cookie_name: String,
    /// The cookie's `Domain`, when sub-domains share sessions.
    pub cookie_domain: Option<String>,
    /// Whether the cookie is `Secure` (set it when the site is served over TLS).
    pub cookie_secure: bool,
    /// Seconds a session lives without a request (2 weeks), once marked as a user's with
    /// [`Session::mark_authenticated`].
    pub idle_timeout: i64,
    /// Seconds a session not marked as a user's lives without a request (1 hour; never more than
    /// `idle_timeout`). Sessions of visitors who never log in (one holding a captcha answer, say)
    /// go after this, and [`spawn_cleanup`] sweeps them from SQL stores.
    pub anonymous_idle_timeout: i64,
    /// Seconds a session lives at most, however active (30 days).
    pub absolute_timeout: i64,
    /// How long a store may take before the request gets a 503 (2 s).
    pub store_timeout: Duration,
    /// Keys one session may hold, the site's own included (64).
    pub max_keys: usize,
    /// Bytes one session may hold, counting each key and its JSON text (64 KiB).
    pub max_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_domain: None,
            cookie_secure: false,
            idle_timeout: 14 * 24 * 3600,
            anonymous_idle_timeout: 3600,
            absolute_timeout: 30 * 24 * 3600,
            store_timeout: Duration::from_secs(2),
            max_keys: 64,
            max_bytes: 64 * 1024,
        }
    }
}

/// A session setting that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `__Host-` cookie name without `Secure`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Host-, which browsers accept only on a Secure cookie: serve over HTTPS and mark the cookie Secure, or choose another name")]
    HostPrefixNeedsSecure(String),
    /// A `__Host-` cookie name with a `Domain`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Host-, which browsers accept only on a cookie without a Domain: remove the cookie domain, or choose a name without __Host-")]
    HostPrefixWithDomain(String),
    /// A `__Secure-` cookie name without `Secure`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Secure-, which browsers accept only on a Secure cookie: serve over HTTPS and mark the cookie Secure, or choose another name")]
    SecurePrefixNeedsSecure(String),
    /// A name that cannot be a cookie name.
    #[error("{0:?} cannot be a cookie name: use letters, digits and - _ . only")]
    BadName(String),
}

impl SessionConfig {
    /// The idle timeout of a session: `idle_timeout` for a user's, the anonymous one otherwise.
    fn idle_for(&self, authenticated: bool) -> i64 {
        if authenticated {
            self.idle_timeout
        } else {
            self.anonymous_idle_timeout.min(self.idle_timeout)
        }
    }

    /// The name for a session cookie when none is configured: `__Host-sessionid` for a `Secure`
    /// cookie without a `Domain` (no sub-domain can then set or shadow it), `sessionid` otherwise.
    ///
    /// ```
    /// use portico::session::SessionConfig;
    /// assert_eq!(SessionConfig::default_cookie_name(true, false), "__Host-sessionid");
    /// assert_eq!(SessionConfig::default_cookie_name(true, true), "sessionid");
    /// assert_eq!(SessionConfig::default_cookie_name(false, false), "sessionid");
    /// ```
    pub fn default_cookie_name(secure: bool, has_domain: bool) -> &'static str {
        if secure && !has_domain {
            "__Host-sessionid"
        } else {
            "sessionid"
        }
    }

    /// Checks that browsers will keep the cookie as configured: a `__Host-` name needs `Secure`
    /// and no `Domain` (the path is always `/`), a `__Secure-` name needs `Secure`.
    ///
    /// ```
    /// use portico::session::SessionConfig;
    /// let config = SessionConfig {
    ///     cookie_name: "__Host-sessionid".into(),
    ///     cookie_domain: Some(".example.com".into()),
    ///     cookie_secure: true,
    ///     ..SessionConfig::default()
    /// };
    /// assert!(config.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cookie_name;
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !token {
            return Err(ConfigError::BadName(name.clone()));
        }
        // Browsers match the prefixes without regard to case.
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("__host-") {
            if !self.cookie_secure {
                return Err(ConfigError::HostPrefixNeedsSecure(name.clone()));
            }
            if self.cookie_domain.is_some() {
                return Err(ConfigError::HostPrefixWithDomain(name.clone()));
            }
        } else if lower.starts_with("__secure-") && !self.cookie_secure {
            return Err(ConfigError::SecurePrefixNeedsSecure(name.clone()));
        }
        Ok(())
    }

    /// How often [`spawn_cleanup`] should sweep expired sessions: a quarter of the anonymous idle
    /// timeout (between 1 s and 1 h), so an abandoned session stays in an SQL store at most that
    /// much longer than its timeout.
    ///
    /// ```
    /// let config = portico::session::SessionConfig::default();
    /// assert_eq!(config.cleanup_interval(), std::time::Duration::from_secs(900));
    /// ```
    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs((self.idle_for(false) / 4).clamp(1, 3600) as u64)
    }
}

/// A read-only request refreshes the idle expiry once it is older than this, so reads cost one
/// store round trip almost always and a write only every so often (every ~3.4 h with an idle
/// timeout of 2 weeks, every minute with one of an hour).
fn refresh_after(idle: i64) -> i64 {
    (idle / 100).max(60).min(idle / 2)
}

/// How long a session lives when idle; see [`Session::set_expiry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The site's configured idle timeout.
    Default,
    /// This many seconds of idleness (still bounded by the absolute timeout).
    IdleSeconds(i64),
    /// The cookie lasts until the browser closes; the server still applies the idle timeout.
    OnBrowserClose,
}

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
                ErrorPage::internal()
                .into_response()
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
pub struct Unsaved;

/// Marks a response to a request that carried the session cookie more than once; the event log
/// reads it.
#[derive(Debug, Clone, Copy)]
pub struct DuplicateCookie;

/// Marks a response that failed because the session store did; the event log reads it.
#[derive(Debug, Clone)]
pub struct StoreFailure(pub String);

#[derive(Debug, Default)]
struct Inner {
    /// The id the request's cookie named, not yet checked against the store.
    cookie_id: Option<String>,
    loaded: bool,
    /// The id of the live session this request works on; `None` for a new or flushed session.
    id: Option<String>,
    data: HashMap<String, String>,
    created_at: i64,
    expires_at: i64,
    /// Key to new JSON text, or `None` for a removal.
    changes: HashMap<String, Option<String>>,
    /// Sessions to delete on the way out (after `cycle_id` or `flush`).
    doomed: Vec<StorageKey>,
    /// Where `data` was read from: the stored session a [`Session::take`] takes from, even after
    /// `cycle_id` (the old session lives in the store until the response goes out).
    origin: Option<StorageKey>,
    /// `cycle_id` or `flush` was called in this request.
    rotated: bool,
    /// [`Session::discard_writes`] was called: nothing is written and no cookie set.
    discard: bool,
}

struct Shared {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Clock,
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
    inner: Arc<tokio::sync::Mutex<Inner>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// A fresh session id: the creation time in microseconds as 16 hex digits, then 256 bits from the
/// OS CSPRNG in base64url without padding (59 characters in all).
///
/// The time prefix is not a secret (the cookie's holder knows when they got it) and adds nothing
/// to guessing; it is there for the stores: [`StorageKey::of`] keeps it in front, so new sessions
/// sort after older ones and an SQL store appends them at the end of its index instead of
/// rewriting a random page of it for every first visit.
fn new_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut id = String::with_capacity(store::ID_LEN);
    // Writing into a String cannot fail.
    let _ = write!(id, "{micros:016x}");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
    id
}

/// Whether a cookie value can be a session id: a current one, or one of the 43-character ids
/// (random part only) that earlier versions issued, so an upgrade logs nobody out.
fn well_formed(id: &str) -> bool {
    let random = match id.len() {
        store::ID_LEN => {
            let (order, random) = id.split_at(store::ORDER_LEN);
            if !order
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return false;
            }
            random
        }
        store::RANDOM_LEN => id,
        _ => return false,
    };
    random
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Session {
    fn new(cookie_id: Option<String>, shared: Arc<Shared>) -> Self {
        let inner = Inner {
            cookie_id: cookie_id.filter(|id| well_formed(id)),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            shared,
        }
    }

    async fn timed<T>(
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
            let now = self.shared.clock.now();
            let key = StorageKey::of(&id);
            if let Some(rec) = self.timed(self.shared.store.load(&key, now)).await? {
                if rec.created_at + self.shared.config.absolute_timeout > now {
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
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let inner = self.loaded().await?;
        match inner.data.get(key) {
            Some(json) => Ok(Some(serde_json::from_str(json)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` (written to the store when the response goes out).
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

    /// Removes `key` and answers its value, deciding in the store which request gets it: when
    /// several requests of one session take the same key at once (on one server or many), exactly
    /// one of them answers the value and the others `None`. Use it for anything that may be used
    /// once, such as a captcha's answer or a one-time code; [`Session::remove`] only changes this
    /// request's copy until the response goes out.
    ///
    /// A value this request inserted itself is taken from the request's copy (no other request
    /// can have seen it). Costs one store round trip when the key is set, none when it is not.
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
        let now = self.shared.clock.now();
        match self
            .timed(self.shared.store.take(&origin, key, now))
            .await?
        {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    /// Removes `key` and answers its old value, if any.
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
    pub async fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.loaded().await?.data.contains_key(key))
    }

    /// The keys that are set.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        Ok(self.loaded().await?.data.keys().cloned().collect())
    }

    /// Removes every key but keeps the session and its id.
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
    pub async fn id(&self) -> Result<Option<String>, SessionError> {
        Ok(self.loaded().await?.id.clone())
    }

    /// The id the request's cookie carried (unchecked), without touching the store.
    pub async fn cookie_id(&self) -> Option<String> {
        self.inner.lock().await.cookie_id.clone()
    }

    /// Sets how long this session lives when idle.
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        match expiry {
            Expiry::Default => self.remove::<i64>(EXPIRY_KEY).await.map(|_| ()),
            Expiry::IdleSeconds(s) => self.insert(EXPIRY_KEY, &s.max(1)).await,
            Expiry::OnBrowserClose => self.insert(EXPIRY_KEY, &0i64).await,
        }
    }

    /// Marks the session as a logged-in user's: from now on it gets the long idle timeout
    /// ([`SessionConfig::idle_timeout`]) instead of the anonymous one. Call it at login, after
    /// [`Session::cycle_id`]; [`Session::flush`] at logout makes the next session anonymous again.
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
    async fn touched(&self) -> bool {
        self.inner.lock().await.loaded
    }

    /// Writes what changed and sets, refreshes or removes the cookie on `resp`.
    async fn save(&self, resp: &mut Response) -> Result<(), SessionError> {
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
        let now = self.shared.clock.now();
        let custom: Option<i64> = inner
            .data
            .get(EXPIRY_KEY)
            .and_then(|j| serde_json::from_str(j).ok());
        let idle = match custom {
            Some(s) if s > 0 => s,
            _ => cfg.idle_for(inner.data.contains_key(AUTHENTICATED_KEY)),
        };
        let browser_session = custom == Some(0);

        for key in std::mem::take(&mut inner.doomed) {
            self.timed(store.delete(&key)).await?;
        }

        let mut cookie: Option<Option<String>> = None; // Some(Some(id)) set, Some(None) delete
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
                    cookie = Some(Some(id));
                } else if inner.cookie_id.is_some() {
                    cookie = Some(None);
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
                    let expires_at = (now + idle).min(inner.created_at + cfg.absolute_timeout);
                    let written = self
                        .timed(store.update(&StorageKey::of(&id), &changes, expires_at, now))
                        .await;
                    match written {
                        Ok(true) => {
                            inner.expires_at = expires_at;
                            cookie = Some(Some(id));
                        }
                        Ok(false) => {
                            // Deleted meanwhile (logged out elsewhere): never bring it back.
                            inner.id = None;
                            cookie = Some(None);
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

        if let Some(value) = cookie {
            let mut c =
                cookie::Cookie::new(cfg.cookie_name.clone(), value.clone().unwrap_or_default());
            c.set_path("/");
            c.set_http_only(true);
            c.set_same_site(cookie::SameSite::Lax);
            if cfg.cookie_secure {
                c.set_secure(true);
            }
            if let Some(d) = &cfg.cookie_domain {
                c.set_domain(d.clone());
            }
            match value {
                Some(_) if !browser_session => c.set_max_age(time::Duration::seconds(idle)),
                Some(_) => {}
                None => c.make_removal(),
            }
            if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        keep_private(resp);
        Ok(())
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

/// Marks a response that read the session as this visitor's own: no cache may store it (a
/// shared cache would hand one person's page, or CSRF token, to the next; a browser cache would
/// show a logged-in page again after logout with the back button), and `Vary: Cookie` tells
/// caches that the answer depends on the cookie. A view that set `Cache-Control` keeps its own.
pub(crate) fn keep_private(resp: &mut Response) {
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    let varies = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("cookie") || p.trim() == "*")
        })
    });
    if !varies {
        h.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = crate::error::MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        crate::error::MissingLayer::take(&parts.extensions, "SessionLayer")
    }
}

/// The layer that gives every request a lazy [`Session`] and saves it on the way out.
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// Sessions kept in `store`, read with the system clock.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self::with_clock(store, config, Clock::system())
    }

    /// Sessions kept in `store`, with an injectable clock for tests.
    pub fn with_clock(store: Arc<dyn SessionStore>, config: SessionConfig, clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                clock,
            }),
        }
    }

    /// The store behind this layer.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        self.shared.store.clone()
    }

    fn cookie_id(&self, headers: &http::HeaderMap) -> CookieId {
        session_cookie_in(headers, &self.shared.config.cookie_name)
    }
}

/// What a request's `Cookie` headers say about the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieId {
    /// No session cookie.
    Absent,
    /// One session cookie with this value.
    One(String),
    /// The session cookie more than once: a sibling sub-domain may have set one of them to push
    /// its own session on this visitor, and no one can tell which is the site's.
    Duplicate,
}

/// Reads the session cookie `name` from a request's headers; other parts of Portico that look at
/// the session cookie (the event log) read it here too, so they agree on duplicates.
pub fn session_cookie_in(headers: &http::HeaderMap, name: &str) -> CookieId {
    let mut found = CookieId::Absent;
    let values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name);
    for (_, value) in values {
        found = match found {
            CookieId::Absent => CookieId::One(value.to_string()),
            _ => return CookieId::Duplicate,
        };
    }
    found
}

impl<S> tower::Layer<S> for SessionLayer {
    type Service = SessionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, B> tower::Service<Request<B>> for SessionService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (cookie_id, duplicate) = match self.layer.cookie_id(req.headers()) {
            CookieId::Absent => (None, false),
            CookieId::One(id) => (Some(id), false),
            CookieId::Duplicate => {
                tracing::warn!(
                    cookie = %self.layer.shared.config.cookie_name,
                    "a request carried the session cookie more than once; it gets a fresh session"
                );
                (None, true)
            }
        };
        let session = Session::new(cookie_id, self.layer.shared.clone());
        req.extensions_mut().insert(session.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if resp.extensions().get::<Unsaved>().is_some() {
                keep_private(&mut resp);
            } else if session.touched().await {
                if let Err(e) = session.save(&mut resp).await {
                    resp = e.into_response();
                }
            }
            if duplicate {
                resp.extensions_mut().insert(DuplicateCookie);
            }
            Ok(resp)
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(clock: Clock) -> (SessionLayer, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        (
            SessionLayer::with_clock(store.clone(), SessionConfig::default(), clock),
            store,
        )
    }

    fn set_cookie(resp: &Response) -> Option<String> {
        resp.headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// Saves `s` as the layer does on the way out and answers the response it decorated.
    async fn saved(s: &Session) -> Response {
        let mut resp = Response::new(axum::body::Body::empty());
        s.save(&mut resp).await.unwrap();
        resp
    }

    fn session_for(layer: &SessionLayer, cookie: Option<&str>) -> Session {
        Session::new(cookie.map(String::from), layer.shared.clone())
    }

    fn id_from(set_cookie: &str) -> String {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    }

    #[tokio::test]
    async fn untouched_session_does_nothing() {
        let (layer, store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        let resp = saved(&s).await;
        assert!(set_cookie(&resp).is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_response_that_read_the_session_is_kept_out_of_caches() {
        let (layer, _store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        assert_eq!(s.get::<String>("user").await.unwrap(), None);
        let resp = saved(&s).await;
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "private, no-store");
        assert_eq!(resp.headers()[header::VARY], "Cookie");

        let untouched = saved(&session_for(&layer, None)).await;
        assert!(untouched.headers().get(header::CACHE_CONTROL).is_none());
        assert!(untouched.headers().get(header::VARY).is_none());
    }

    #[tokio::test]
    async fn a_view_that_chose_its_caching_keeps_it_and_gains_vary_cookie() {
        let (layer, _store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        s.insert("k", "v").await.unwrap();
        let mut resp = Response::new(axum::body::Body::empty());
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, max-age=0"),
        );
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        s.save(&mut resp).await.unwrap();
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store, max-age=0");
        let vary: Vec<_> = resp.headers().get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Cookie"]);

        let mut already = Response::new(axum::body::Body::empty());
        already
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept, COOKIE"));
        s.save(&mut already).await.unwrap();
        assert_eq!(already.headers().get_all(header::VARY).iter().count(), 1);
    }

    #[tokio::test]
    async fn write_creates_session_with_safe_cookie() {
        let (layer, store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        s.insert("user", "ada").await.unwrap();
        let resp = saved(&s).await;
        let c = set_cookie(&resp).unwrap();
        assert!(c.starts_with("sessionid="), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"),
            "{c}"
        );
        assert!(!c.contains("Domain"), "{c}");
        assert_eq!(id_from(&c).len(), store::ID_LEN);
        assert_eq!(store.len(), 1);
        let again = session_for(&layer, Some(&id_from(&c)));
        assert_eq!(
            again.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
    }

    #[test]
    fn storage_keys_of_new_ids_sort_in_creation_order() {
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(new_id());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let keys: Vec<StorageKey> = ids.iter().map(|id| StorageKey::of(id)).collect();
        for pair in keys.windows(2) {
            assert!(pair[0].as_str() < pair[1].as_str(), "{pair:?}");
        }
        for (id, key) in ids.iter().zip(&keys) {
            assert!(well_formed(id), "{id}");
            let (order, random) = id.split_at(store::ORDER_LEN);
            assert!(key.as_str().starts_with(order));
            assert_eq!(key.as_str().len(), store::ORDER_LEN + 64);
            assert!(!key.as_str().contains(random), "the key hides the id");
        }
    }

    #[test]
    fn ids_of_other_shapes_are_not_well_formed() {
        let id = new_id();
        let (order, random) = id.split_at(store::ORDER_LEN);
        assert!(!well_formed(&format!("{}{random}", order.to_uppercase())));
        assert!(!well_formed(&format!("g{}{random}", &order[1..])));
        assert!(!well_formed(&format!("{order}{}!", &random[1..])));
        assert!(!well_formed(&id[1..]));
        assert!(!well_formed(&format!("{id}A")));
        assert!(well_formed(&"A".repeat(43)), "ids of earlier versions");
    }

    #[tokio::test]
    async fn a_session_of_an_earlier_id_format_still_loads() {
        let (layer, store) = layer(Clock::manual(1_000));
        let legacy = "Zq".repeat(21) + "x";
        let record = Record {
            data: HashMap::from([("user".to_string(), "\"ada\"".to_string())]),
            created_at: 900,
            expires_at: 5_000,
        };
        store
            .create(&StorageKey::of(&legacy), &record)
            .await
            .unwrap();
        let s = session_for(&layer, Some(&legacy));
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
    }

    #[tokio::test]
    async fn unknown_id_is_not_adopted() {
        let (layer, store) = layer(Clock::manual(1_000));
        let forged = "A".repeat(43);
        let s = session_for(&layer, Some(&forged));
        s.insert("k", &1).await.unwrap();
        let resp = saved(&s).await;
        let id = id_from(&set_cookie(&resp).unwrap());
        assert_ne!(id, forged);
        assert!(store
            .load(&StorageKey::of(&forged), 1_000)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn idle_timeout_is_enforced_by_the_server() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.mark_authenticated().await.unwrap();
        s.insert("user", "ada").await.unwrap();
        let resp = saved(&s).await;
        let id = id_from(&set_cookie(&resp).unwrap());
        clock.advance(14 * 24 * 3600 - 10);
        assert!(session_for(&layer, Some(&id))
            .get::<String>("user")
            .await
            .unwrap()
            .is_some());
        clock.advance(11);
        // The browser would still send the cookie; the server no longer honours it.
        assert!(session_for(&layer, Some(&id))
            .get::<String>("user")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn reading_keeps_an_active_session_alive() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.mark_authenticated().await.unwrap();
        s.insert("user", "ada").await.unwrap();
        let resp = saved(&s).await;
        let id = id_from(&set_cookie(&resp).unwrap());
        // Four visits five days apart: 20 days in all, past the 14-day idle timeout, inside the
        // 30-day absolute one.
        for _ in 0..4 {
            clock.advance(5 * 24 * 3600);
            let s = session_for(&layer, Some(&id));
            assert!(s.get::<String>("user").await.unwrap().is_some());
            let resp = saved(&s).await;
            assert!(
                set_cookie(&resp).is_some(),
                "the refreshed expiry is sent to the browser"
            );
        }
    }

    /// A store whose writes all fail, as on a full disk; reads go to `inner`.
    #[derive(Debug, Default)]
    struct ReadOnly {
        inner: MemoryStore,
    }

    #[async_trait::async_trait]
    impl SessionStore for ReadOnly {
        async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
            self.inner.load(key, now).await
        }
        async fn create(&self, _: &StorageKey, _: &Record) -> Result<(), StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn update(
            &self,
            _: &StorageKey,
            _: &Changes,
            _: i64,
            _: i64,
        ) -> Result<bool, StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn delete(&self, _: &StorageKey) -> Result<(), StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn delete_expired(&self, _: i64) -> Result<u64, StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn take(
            &self,
            _: &StorageKey,
            _: &str,
            _: i64,
        ) -> Result<Option<String>, StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn incr_counter(&self, _: &str, _: i64, _: i64) -> Result<u64, StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn decr_counter(&self, _: &str, _: i64) -> Result<(), StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
        async fn delete_counter(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError::Backend("database or disk is full".into()))
        }
    }

    #[tokio::test]
    async fn a_refresh_the_store_refuses_still_answers_the_page_but_a_change_does_not() {
        let clock = Clock::manual(1_000);
        let store = Arc::new(ReadOnly::default());
        let record = Record {
            data: HashMap::from([("user".to_string(), "\"ada\"".to_string())]),
            created_at: 1_000,
            expires_at: 1_000 + 14 * 24 * 3600,
        };
        let id = new_id();
        store
            .inner
            .create(&StorageKey::of(&id), &record)
            .await
            .unwrap();
        let layer = SessionLayer::with_clock(store, SessionConfig::default(), clock.clone());
        // A week later a read is due to move the idle expiry; the store refuses.
        clock.advance(7 * 24 * 3600);
        let s = session_for(&layer, Some(&id));
        assert!(s.get::<String>("user").await.unwrap().is_some());
        let mut resp = Response::new(axum::body::Body::empty());
        s.save(&mut resp)
            .await
            .expect("a refused refresh is no error");
        assert!(
            set_cookie(&resp).is_none(),
            "no cookie for an expiry not moved"
        );

        let s = session_for(&layer, Some(&id));
        s.insert("note", "kept").await.unwrap();
        let mut resp = Response::new(axum::body::Body::empty());
        assert!(
            s.save(&mut resp).await.is_err(),
            "a refused change is an error"
        );
    }

    #[tokio::test]
    async fn cycle_id_keeps_data_but_drops_id_bound_keys() {
        let (layer, store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        s.insert("user", "ada").await.unwrap();
        s.insert("__csrf", "secret").await.unwrap();
        let resp = saved(&s).await;
        let old = id_from(&set_cookie(&resp).unwrap());
        let s = session_for(&layer, Some(&old));
        s.cycle_id().await.unwrap();
        let resp = saved(&s).await;
        let new = id_from(&set_cookie(&resp).unwrap());
        assert_ne!(old, new);
        assert!(
            store
                .load(&StorageKey::of(&old), 1_000)
                .await
                .unwrap()
                .is_none(),
            "the old id still works"
        );
        let s = session_for(&layer, Some(&new));
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );
        assert_eq!(s.get::<String>("__csrf").await.unwrap(), None);
    }

    /// Stores a session holding `pairs` and answers its id.
    async fn stored(layer: &SessionLayer, pairs: &[(&str, &str)]) -> String {
        let s = session_for(layer, None);
        for (k, v) in pairs {
            s.insert(k, v).await.unwrap();
        }
        id_from(&set_cookie(&saved(&s).await).unwrap())
    }

    #[tokio::test]
    async fn of_two_requests_that_take_one_key_only_one_gets_it() {
        let (layer, store) = layer(Clock::manual(1_000));
        let id = stored(&layer, &[("code", "1234"), ("keep", "x")]).await;
        let first = session_for(&layer, Some(&id));
        let second = session_for(&layer, Some(&id));
        // Both loaded the session while the code was there.
        assert!(first.contains("code").await.unwrap());
        assert!(second.contains("code").await.unwrap());
        assert_eq!(
            first.take::<String>("code").await.unwrap().as_deref(),
            Some("1234")
        );
        assert_eq!(second.take::<String>("code").await.unwrap(), None);
        assert!(!second.contains("code").await.unwrap());
        let rec = store
            .load(&StorageKey::of(&id), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert!(!rec.data.contains_key("code"), "the store still holds it");
        assert!(rec.data.contains_key("keep"));
    }

    #[tokio::test]
    async fn a_value_inserted_in_the_same_request_is_taken_locally() {
        let (layer, store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        s.insert("code", "1").await.unwrap();
        s.insert("other", "2").await.unwrap();
        assert_eq!(
            s.take::<String>("code").await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(s.take::<String>("code").await.unwrap(), None);
        let id = id_from(&set_cookie(&saved(&s).await).unwrap());
        let rec = store
            .load(&StorageKey::of(&id), 1_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.data.len(), 1);
    }

    #[tokio::test]
    async fn take_after_cycle_id_still_decides_in_the_store() {
        let (layer, _) = layer(Clock::manual(1_000));
        let id = stored(&layer, &[("code", "1")]).await;
        let cycling = session_for(&layer, Some(&id));
        let other = session_for(&layer, Some(&id));
        assert!(other.contains("code").await.unwrap());
        cycling.cycle_id().await.unwrap();
        assert_eq!(
            other.take::<String>("code").await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(cycling.take::<String>("code").await.unwrap(), None);
    }

    fn capped(max_keys: usize, max_bytes: usize) -> (SessionLayer, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        let config = SessionConfig {
            max_keys,
            max_bytes,
            ..SessionConfig::default()
        };
        (
            SessionLayer::with_clock(store.clone(), config, Clock::manual(1_000)),
            store,
        )
    }

    #[tokio::test]
    async fn an_insert_past_a_cap_is_refused_and_changes_nothing() {
        let (layer, _) = capped(3, 40);
        let s = session_for(&layer, None);
        s.insert("a", "1").await.unwrap();
        s.insert("b", "2").await.unwrap();
        s.insert("c", "3").await.unwrap();
        let err = s.insert("d", "4").await.unwrap_err();
        assert!(
            matches!(
                err,
                SessionError::TooLarge {
                    keys: 4,
                    max_keys: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!s.contains("d").await.unwrap());
        // Replacing a value keeps the key count.
        s.insert("c", "30").await.unwrap();
        let err = s.insert("c", &"x".repeat(40)).await.unwrap_err();
        assert!(matches!(err, SessionError::TooLarge { max_bytes: 40, .. }));
        assert_eq!(s.get::<String>("c").await.unwrap().as_deref(), Some("30"));
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(resp.extensions().get::<Unsaved>().is_some());
    }

    #[tokio::test]
    async fn a_session_over_a_lowered_cap_may_still_shrink() {
        let (big, store) = capped(64, 1_000);
        let s = session_for(&big, None);
        s.insert("a", &"x".repeat(100)).await.unwrap();
        s.insert("b", &"y".repeat(100)).await.unwrap();
        let id = id_from(&set_cookie(&saved(&s).await).unwrap());
        let small = SessionLayer::with_clock(
            store,
            SessionConfig {
                max_keys: 1,
                max_bytes: 50,
                ..SessionConfig::default()
            },
            Clock::manual(1_000),
        );
        let s = session_for(&small, Some(&id));
        s.insert("a", "short").await.unwrap();
        assert!(s.insert("c", "1").await.is_err());
        assert!(s.insert("b", &"y".repeat(200)).await.is_err());
    }

    #[test]
    fn a_cookie_sent_twice_counts_as_none() {
        let headers = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let one = headers(&["a=1; sessionid=abc; b=2"]);
        assert_eq!(
            session_cookie_in(&one, "sessionid"),
            CookieId::One("abc".into())
        );
        for twice in [
            headers(&["sessionid=abc; sessionid=def"]),
            headers(&["sessionid=abc", "other=1; sessionid=abc"]),
        ] {
            assert_eq!(session_cookie_in(&twice, "sessionid"), CookieId::Duplicate);
        }
        assert_eq!(
            session_cookie_in(&headers(&["xsessionid=1"]), "sessionid"),
            CookieId::Absent
        );
    }

    #[test]
    fn host_prefixed_names_need_secure_and_no_domain() {
        let config = |name: &str, secure: bool, domain: Option<&str>| SessionConfig {
            cookie_name: name.into(),
            cookie_secure: secure,
            cookie_domain: domain.map(String::from),
            ..SessionConfig::default()
        };
        assert!(config("__Host-sessionid", true, None).validate().is_ok());
        assert!(matches!(
            config("__Host-sessionid", false, None).validate(),
            Err(ConfigError::HostPrefixNeedsSecure(_))
        ));
        assert!(matches!(
            config("__host-sid", true, Some(".example.com")).validate(),
            Err(ConfigError::HostPrefixWithDomain(_))
        ));
        assert!(matches!(
            config("__Secure-sid", false, None).validate(),
            Err(ConfigError::SecurePrefixNeedsSecure(_))
        ));
        assert!(config("__Secure-sid", true, Some(".example.com"))
            .validate()
            .is_ok());
        assert!(matches!(
            config("a b", false, None).validate(),
            Err(ConfigError::BadName(_))
        ));
        assert!(SessionConfig::default().validate().is_ok());
    }

    #[tokio::test]
    async fn absolute_timeout_ends_an_active_session() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.mark_authenticated().await.unwrap();
        s.insert("user", "ada").await.unwrap();
        let resp = saved(&s).await;
        let id = id_from(&set_cookie(&resp).unwrap());
        // Active every day for 31 days: the idle timeout never fires, the absolute one does.
        for _ in 0..31 {
            clock.advance(24 * 3600);
            let s = session_for(&layer, Some(&id));
            let user = s.get::<String>("user").await.unwrap();
            saved(&s).await;
            if user.is_none() {
                assert!(clock.now() - 1_000 >= 30 * 24 * 3600 - 24 * 3600);
                return;
            }
        }
        panic!("session outlived the absolute timeout");
    }
    fn max_age(set_cookie: &str) -> Option<i64> {
        set_cookie
            .split(';')
            .find_map(|p| p.trim().strip_prefix("Max-Age="))
            .map(|v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn a_session_not_marked_as_a_users_goes_after_the_short_idle_timeout() {
        let clock = Clock::manual(1_000);
        let (layer, store) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.insert("__captcha", "answer").await.unwrap();
        let resp = saved(&s).await;
        let c = set_cookie(&resp).unwrap();
        assert_eq!(max_age(&c), Some(3600), "{c}");
        let id = id_from(&c);
        clock.advance(3600 - 1);
        assert!(session_for(&layer, Some(&id))
            .contains("__captcha")
            .await
            .unwrap());
        clock.advance(3600);
        assert!(!session_for(&layer, Some(&id))
            .contains("__captcha")
            .await
            .unwrap());
        assert_eq!(store.delete_expired(clock.now()).await.unwrap(), 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn reads_keep_an_anonymous_session_alive_past_its_short_timeout() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.insert("k", "v").await.unwrap();
        let id = id_from(&set_cookie(&saved(&s).await).unwrap());
        // A read every 40 minutes for 4 hours: each one pushes the hour forward.
        for _ in 0..6 {
            clock.advance(40 * 60);
            let s = session_for(&layer, Some(&id));
            assert!(s.contains("k").await.unwrap(), "at {}", clock.now());
            saved(&s).await;
        }
    }

    #[tokio::test]
    async fn login_marks_the_session_and_gives_it_the_long_idle_timeout() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.insert("__captcha", "answer").await.unwrap();
        let anon = id_from(&set_cookie(&saved(&s).await).unwrap());

        let s = session_for(&layer, Some(&anon));
        s.cycle_id().await.unwrap();
        s.mark_authenticated().await.unwrap();
        s.insert("user", "ada").await.unwrap();
        let c = set_cookie(&saved(&s).await).unwrap();
        assert_eq!(max_age(&c), Some(14 * 24 * 3600), "{c}");
        let user = id_from(&c);
        clock.advance(13 * 24 * 3600);
        let s = session_for(&layer, Some(&user));
        assert_eq!(
            s.get::<String>("user").await.unwrap().as_deref(),
            Some("ada")
        );

        // Logout flushes the mark with everything else: the next session is anonymous again.
        s.flush().await.unwrap();
        s.insert("k", "v").await.unwrap();
        let c = set_cookie(&saved(&s).await).unwrap();
        assert_eq!(max_age(&c), Some(3600), "{c}");
    }

    #[test]
    fn the_sweep_runs_four_times_per_anonymous_timeout() {
        let mut config = SessionConfig::default();
        assert_eq!(config.cleanup_interval(), Duration::from_secs(900));
        config.anonymous_idle_timeout = 2;
        assert_eq!(config.cleanup_interval(), Duration::from_secs(1));
        config.anonymous_idle_timeout = 30 * 24 * 3600;
        assert_eq!(
            config.cleanup_interval(),
            Duration::from_secs(3600),
            "bounded by the (shorter) idle timeout, then by an hour"
        );
    }

    #[tokio::test]
    async fn status_says_what_the_request_did_with_the_session() {
        let (layer, _) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        assert_eq!(s.status().await, Status::Untouched);
        assert_eq!(s.get::<String>("k").await.unwrap(), None);
        assert_eq!(s.status().await, Status::Absent);
        s.insert("k", "v").await.unwrap();
        assert_eq!(s.status().await, Status::Started);
        let id = id_from(&set_cookie(&saved(&s).await).unwrap());

        let kept = session_for(&layer, Some(&id));
        kept.get::<String>("k").await.unwrap();
        assert_eq!(kept.status().await, Status::Kept);
        kept.cycle_id().await.unwrap();
        assert_eq!(kept.status().await, Status::Renewed);
        let id = id_from(&set_cookie(&saved(&kept).await).unwrap());

        let ended = session_for(&layer, Some(&id));
        ended.flush().await.unwrap();
        assert_eq!(ended.status().await, Status::Ended);

        // Logging in without a session first is a renewal, never a start.
        let fresh = session_for(&layer, None);
        fresh.cycle_id().await.unwrap();
        fresh.insert("user", "ada").await.unwrap();
        assert_eq!(fresh.status().await, Status::Renewed);
    }

    #[tokio::test]
    async fn a_session_whose_writes_are_discarded_is_not_created_and_sets_no_cookie() {
        let (layer, store) = layer(Clock::manual(1_000));
        let s = session_for(&layer, None);
        s.insert("visits", &1).await.unwrap();
        s.discard_writes().await;
        s.insert("more", &2).await.unwrap();
        let resp = saved(&s).await;
        assert!(set_cookie(&resp).is_none());
        assert!(store.is_empty());

        // Nor is a stale cookie removed: the response sets no cookie at all.
        let stale = session_for(&layer, Some(&"A".repeat(43)));
        stale.discard_writes().await;
        assert_eq!(stale.get::<String>("k").await.unwrap(), None);
        assert!(set_cookie(&saved(&stale).await).is_none());
    }

    #[tokio::test]
    async fn discarded_writes_leave_a_session_that_came_with_the_request_as_it_was() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
        s.insert("k", "v").await.unwrap();
        let id = id_from(&set_cookie(&saved(&s).await).unwrap());
        // Late enough that a read would refresh the idle expiry.
        clock.advance(3000);
        let s = session_for(&layer, Some(&id));
        s.discard_writes().await;
        s.insert("k2", "v2").await.unwrap();
        s.flush().await.unwrap();
        let resp = saved(&s).await;
        assert!(set_cookie(&resp).is_none());
        let again = session_for(&layer, Some(&id));
        assert!(again.contains("k").await.unwrap());
        assert!(!again.contains("k2").await.unwrap());
    }
}
