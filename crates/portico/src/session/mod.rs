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
//!   the server, not only by cookie expiry;
//! - [`Session::cycle_id`] (call it at login) moves the data to a new id and deletes the old one;
//!   [`Session::flush`] (logout) deletes the session from the store, so every server forgets it;
//! - keys that begin with `__` belong to one id: `cycle_id` and `flush` drop them. The CSRF secret
//!   lives under such a key, so it rotates with the id;
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

/// How sessions are kept and how their cookie looks.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The cookie's name (`sessionid`).
    pub cookie_name: String,
    /// The cookie's `Domain`, when sub-domains share sessions.
    pub cookie_domain: Option<String>,
    /// Whether the cookie is `Secure` (set it when the site is served over TLS).
    pub cookie_secure: bool,
    /// Seconds a session lives without a request (2 weeks).
    pub idle_timeout: i64,
    /// Seconds a session lives at most, however active (30 days).
    pub absolute_timeout: i64,
    /// How long a store may take before the request gets a 503 (2 s).
    pub store_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_domain: None,
            cookie_secure: false,
            idle_timeout: 14 * 24 * 3600,
            absolute_timeout: 30 * 24 * 3600,
            store_timeout: Duration::from_secs(2),
        }
    }
}

impl SessionConfig {
    /// A read-only request refreshes the idle expiry once it is older than this, so reads cost one
    /// store round trip almost always and a write only every so often.
    fn refresh_after(&self) -> i64 {
        (self.idle_timeout / 100).max(60)
    }
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
                ErrorPage::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorPage::default_message(StatusCode::INTERNAL_SERVER_ERROR),
                )
                .into_response()
            }
        }
    }
}

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
            inner.data.insert(key.to_string(), json.clone());
            inner.changes.insert(key.to_string(), Some(json));
        }
        Ok(())
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
        let cfg = &self.shared.config;
        let store = &self.shared.store;
        let now = self.shared.clock.now();
        let custom: Option<i64> = inner
            .data
            .get(EXPIRY_KEY)
            .and_then(|j| serde_json::from_str(j).ok());
        let idle = match custom {
            Some(s) if s > 0 => s,
            _ => cfg.idle_timeout,
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
                let stale = inner.expires_at - now < idle - cfg.refresh_after();
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

/// Marks a response that read the session as this visitor's own: no cache may store it (a
/// shared cache would hand one person's page, or CSRF token, to the next; a browser cache would
/// show a logged-in page again after logout with the back button), and `Vary: Cookie` tells
/// caches that the answer depends on the cookie. A view that set `Cache-Control` keeps its own.
fn keep_private(resp: &mut Response) {
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
    type Rejection = ErrorPage;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!("Session used on a route without SessionLayer");
            ErrorPage::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorPage::default_message(StatusCode::INTERNAL_SERVER_ERROR),
            )
        })
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

    fn cookie_id(&self, headers: &http::HeaderMap) -> Option<String> {
        let name = &self.shared.config.cookie_name;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_string())
    }
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
        let session = Session::new(
            self.layer.cookie_id(req.headers()),
            self.layer.shared.clone(),
        );
        req.extensions_mut().insert(session.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            if session.touched().await {
                if let Err(e) = session.save(&mut resp).await {
                    return Ok(e.into_response());
                }
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

    #[tokio::test]
    async fn absolute_timeout_ends_an_active_session() {
        let clock = Clock::manual(1_000);
        let (layer, _) = layer(clock.clone());
        let s = session_for(&layer, None);
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
}
