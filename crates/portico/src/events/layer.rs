//! [`EventLayer`]: gives every request its [`RequestInfo`] and logs what became of it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, Request};
use axum::response::Response;
use futures_util::future::BoxFuture;

use super::log::EventLog;
use super::request::{client_ip, request_id, RequestInfo};
use super::{Event, EventKind};
use crate::csrf::Refused;
use crate::session::{session_cookie_in, CookieId, DuplicateCookie, SessionConfig, StoreFailure};

/// Gives every request an id and client address and logs what happened to it.
///
/// The session cookie whose id is hashed into `session_hash` is named by the same
/// [`SessionConfig`] the session layer gets, set with [`EventLayer::session`] (`sessionid` when
/// not set).
#[derive(Debug, Clone)]
pub struct EventLayer {
    log: EventLog,
    trust_forwarded: bool,
    session_cookie: Arc<str>,
}

impl EventLayer {
    /// Logs to `log`. With `trust_forwarded`, the client address is the last `X-Forwarded-For`
    /// entry (set it only behind a proxy that sets that header).
    pub fn new(log: EventLog, trust_forwarded: bool) -> Self {
        Self {
            log,
            trust_forwarded,
            session_cookie: Arc::from(SessionConfig::default().cookie_name),
        }
    }

    /// Reads the session cookie that `config` names, the one the session layer sets.
    pub fn session(mut self, config: &SessionConfig) -> Self {
        self.session_cookie = Arc::from(config.cookie_name.as_str());
        self
    }
}

impl<S> tower::Layer<S> for EventLayer {
    type Service = EventService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EventService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`EventLayer`].
#[derive(Debug, Clone)]
pub struct EventService<S> {
    inner: S,
    layer: EventLayer,
}

impl<S> tower::Service<Request<axum::body::Body>> for EventService<S>
where
    S: tower::Service<Request<axum::body::Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let info = RequestInfo {
            id: request_id(),
            client_ip: client_ip(&parts, self.layer.trust_forwarded),
            user: Arc::default(),
        };
        parts.extensions.insert(info.clone());
        parts.extensions.insert(self.layer.log.clone());
        let path = parts.uri.path().to_string();
        let method = parts.method.to_string();
        // A request carrying the cookie twice gets a fresh session from the session layer, so
        // neither of its ids is the request's.
        let session_id = match session_cookie_in(&parts.headers, &self.layer.session_cookie) {
            CookieId::One(id) => Some(id),
            CookieId::Absent | CookieId::Duplicate => None,
        };
        let fut = self.inner.call(Request::from_parts(parts, body));
        let log = self.layer.log.clone();
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Ok(v) = HeaderValue::from_str(&info.id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            if !log.is_enabled() {
                return Ok(resp);
            }
            let base = Event {
                request_id: info.id.clone(),
                client_ip: info.client_ip.to_string(),
                user: info.user(),
                session_hash: session_id.and_then(|id| log.session_hash(&id)),
                path,
                method,
                status: Some(resp.status().as_u16()),
                ..Event::default()
            };
            if let Some(r) = resp.extensions().get::<Refused>() {
                log.record(Event {
                    kind: EventKind::CsrfReject,
                    reason: Some(r.reason.code().to_string()),
                    origin: r.origin.clone(),
                    ..base.clone()
                });
            }
            if resp.extensions().get::<DuplicateCookie>().is_some() {
                log.record(Event {
                    kind: EventKind::DuplicateSessionCookie,
                    ..base.clone()
                });
            }
            if let Some(f) = resp.extensions().get::<StoreFailure>() {
                log.record(Event {
                    kind: EventKind::SessionStoreError,
                    error: Some(f.0.clone()),
                    ..base.clone()
                });
            }
            log.record(Event {
                kind: EventKind::Request,
                latency_ms: Some(start.elapsed().as_secs_f64() * 1000.0),
                ..base
            });
            Ok(resp)
        })
    }
}
