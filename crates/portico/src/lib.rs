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
//!        <- error pages             (template::ErrorPagesLayer: every 4xx/5xx as a page a
//!                                    person reads)
//!        <- security headers        (security::SecurityHeaders: no framing, no sniffing, ...)
//!        <- event log               (one JSON line per request and per security event)
//! ```
//!
//! Each concern is one module, named for the concept it serves. The layers are tower layers that
//! wrap the whole router (`ServiceBuilder::new().layer(..).service(router)`), outermost first as
//! drawn: the CSRF layer needs the session, the session its cookie, and a refused form is shown
//! again through the router's GET handler for the same page. `docs/architecture.md` in the
//! repository says where a new store, view or check goes.
//!
//! ## Getting started
//!
//! Cookies, sessions in memory and CSRF around one view that counts visits:
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::routing::get;
//! use axum::{Extension, Router};
//! use portico::cookies::{CookieDefaults, CookieLayer};
//! use portico::csrf::CsrfConfig;
//! use portico::secret::SecretKey;
//! use portico::session::{MemoryStore, SessionConfig, SessionError};
//! use portico::template::Templates;
//! use portico::{CsrfLayer, Session, SessionLayer};
//! use tower::ServiceBuilder;
//!
//! async fn home(session: Session) -> Result<String, SessionError> {
//!     let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
//!     session.insert("visits", &visits).await?;
//!     Ok(format!("visit number {visits}"))
//! }
//!
//! // Every server of a site loads the same key (`SecretKey::load_or_create`).
//! let secret = SecretKey::generate();
//! let csrf = CsrfConfig::default();
//! let routes = Router::new().route("/", get(home));
//! let service = ServiceBuilder::new()
//!     // What `Page` renders with (the CSRF layer adds its own settings).
//!     .layer(Extension(Templates::new(minijinja::Environment::new())))
//!     .layer(CookieLayer::new(&secret, CookieDefaults::default()))
//!     .layer(SessionLayer::new(Arc::new(MemoryStore::default()), SessionConfig::default()))
//!     .layer(CsrfLayer::new(csrf).with_secret_key(&secret))
//!     .service(routes);
//! let app: Router = Router::new().fallback_service(service);
//! // Then: axum::serve(listener, app).await
//! # drop(app);
//! ```
//!
//! A site in production adds, outside these, [`events::EventLayer`],
//! [`hosts::AllowedHostsLayer`], [`template::ErrorPagesLayer`] and
//! [`security::SecurityHeaders`], in the order of the drawing above.
//!
//! The crate's examples run as they are:
//!
//! - `cargo run -p portico --example hello_views`: `get`/`getlist` with checkboxes, a cookie, a
//!   session visit counter, a CSRF-protected form and a captcha login, in one file;
//! - `cargo run -p portico --features redis --example shared_sessions`: two servers on two ports
//!   sharing sessions through Redis.

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

pub use cookies::{Cookie, CookieLayer, Cookies};
pub use csrf::CsrfLayer;
pub use error::ErrorPage;
pub use events::Events;
pub use params::{Form, Params, Query, QueryDict};
pub use session::{Session, SessionLayer};
pub use template::Page;
