//! # Portico
//!
//! The parts of Django's view layer that every login-protected site needs, for axum: request
//! parameters with `get`/`getlist`, cookies (signed too), server-side sessions shared by many
//! servers, CSRF protection bound to the session, image captchas, templates, and a security event
//! log.
//!
//! ## One request, one way through
//!
//! ```text
//! socket -> hyper/axum -> request id, client address, event log   (events::EventLayer)
//!        -> allowed host names      (hosts::AllowedHostsLayer: any other Host gets 400)
//!        -> cookies                 (cookies::CookieLayer: read Cookie, collect Set-Cookie)
//!        -> session, lazily loaded  (session::SessionLayer: no I/O until a view or CSRF asks)
//!        -> CSRF check              (csrf::CsrfLayer: unsafe methods only; the session's secret,
//!                                    or the CSRF cookie of a visitor without a session)
//!        -> router -> view (Params, Session, Cookies, database) -> template (template::Templates)
//!        <- CSRF                    (a refused form is shown again, with its input kept; the
//!                                    CSRF cookie is set, renewed or deleted)
//!        <- session saved           (only the keys that changed; cookie set or refreshed)
//!        <- error pages             (template::ErrorPagesLayer: every 4xx/5xx as a page a person reads)
//!        <- security headers        (security::SecurityHeaders: no framing, no sniffing, ...)
//!        <- event log               (one JSON line per request and per security event)
//! ```
//!
//! Each concern is one module, named for the concept it serves.

pub mod captcha;
pub mod clock;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod events;
pub mod hosts;
pub mod params;
pub mod ratelimit;
pub mod secret;
pub mod security;
pub mod session;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod template;

pub use cookies::{Cookie, Cookies};
pub use error::ErrorPage;
pub use params::{Form, Params, Query, QueryDict};
pub use session::Session;
