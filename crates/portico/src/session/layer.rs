//! [`SessionLayer`]: gives every request a lazy [`Session`], reads its id from the request's
//! cookie and saves it on the way out.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;

use super::config::SessionConfig;
use super::error::{DuplicateCookie, Unsaved};
use super::handle::{Session, Shared};
use super::store::SessionStore;
use crate::cookies::request_cookies;

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

/// The layer that gives every request a lazy [`Session`] and saves it on the way out.
#[derive(Clone)]
pub struct SessionLayer {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer").finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Sessions kept in `store`, configured (and dated by the clock) in `config`.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self {
            shared: Arc::new(Shared { store, config }),
        }
    }

    fn cookie_id(&self, headers: &http::HeaderMap) -> CookieId {
        session_cookie_in(headers, &self.shared.config.cookie_name)
    }
}

/// What a request's `Cookie` headers say about the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieId {
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
pub(crate) fn session_cookie_in(headers: &http::HeaderMap, name: &str) -> CookieId {
    let mut found = CookieId::Absent;
    for c in request_cookies(headers).filter(|c| c.name() == name) {
        found = match found {
            CookieId::Absent => CookieId::One(c.value().to_string()),
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

impl<S> std::fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
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
