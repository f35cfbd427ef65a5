//! What the log knows of one request: its id, its client's address, its user; and the [`Events`]
//! extractor views log through.
//!
//! The request id and the client address are set once, by [`EventLayer`](super::EventLayer), and
//! every event of the request carries them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::log::EventLog;
use super::Event;
use crate::session::Session;

/// What the log knows of one request; filled in by [`EventLayer`](super::EventLayer).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request id.
    pub id: String,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The logged-in user, set through [`RequestInfo::set_user`] by the site's authentication
    /// once it knows; shared, so that the layer's `request` event sees what a view set.
    pub(crate) user: Arc<Mutex<Option<String>>>,
}

impl RequestInfo {
    /// Records who the logged-in user is, for every event of this request.
    pub fn set_user(&self, user: Option<String>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = user;
    }

    pub(super) fn user(&self) -> Option<String> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A view's handle for logging events about its request.
///
/// ```
/// use portico::events::{Event, EventKind, Events};
/// async fn login(events: Events) -> &'static str {
///     let event = Event::new(EventKind::LoginFail).account("ada").reason("bad_credentials");
///     events.emit(event).await;
///     "no"
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(login));
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    log: EventLog,
    info: RequestInfo,
    path: String,
    method: String,
    session: Option<Session>,
}

impl Events {
    /// Logs `event` with this request's id, address, user, session hash, path and method.
    pub async fn emit(&self, mut event: Event) {
        if !self.log.is_enabled() {
            return;
        }
        event.request_id = self.info.id.clone();
        event.client_ip = self.info.client_ip.to_string();
        event.user = self.info.user();
        if let Some(s) = &self.session {
            if let Some(id) = s.cookie_id().await {
                event.session_hash = self.log.session_hash(&id);
            }
        }
        event.path = self.path.clone();
        event.method = self.method.clone();
        self.log.record(event);
    }

    /// The request's client address.
    pub fn client_ip(&self) -> IpAddr {
        self.info.client_ip
    }

    /// The request's info (id, address, user).
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Events {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let info = parts
            .extensions
            .get::<RequestInfo>()
            .cloned()
            .unwrap_or_else(|| RequestInfo {
                id: String::new(),
                client_ip: client_ip(parts, false),
                user: Arc::default(),
            });
        Ok(Events {
            log: parts
                .extensions
                .get::<EventLog>()
                .cloned()
                .unwrap_or_else(EventLog::disabled),
            info,
            path: parts.uri.path().to_string(),
            method: parts.method.to_string(),
            session: parts.extensions.get::<Session>().cloned(),
        })
    }
}

/// The client's address: the last `X-Forwarded-For` entry when the proxy is trusted, else the
/// connection's peer.
pub(super) fn client_ip(parts: &Parts, trust_forwarded: bool) -> IpAddr {
    if trust_forwarded {
        // The proxy appends the address it saw last; that is the one it vouches for.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A fresh request id: 64 random bits in hex, also sent back as `X-Request-Id`.
pub(super) fn request_id() -> String {
    let b: [u8; 8] = rand::random();
    hex::encode(b)
}
