//! Assembles the site: the routes the views declare, and the layers every request passes
//! through.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::{Extension, Router};
use portico::cookies::{CookieDefaults, CookieLayer};
use portico::csrf::CsrfLayer;
use portico::events::EventLayer;
use portico::hosts::AllowedHostsLayer;
use portico::params::BodyLimit;
use portico::secret::SecretKey;
use portico::security::SecurityHeaders;
use portico::session::{SessionConfig, SessionLayer, SessionStore};
use portico::template::{ErrorPagesLayer, PageContext, Templates};
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower::ServiceBuilder;

use crate::state::AppState;
use crate::views;

/// Builds the site's router with all its layers: the views' routes on `state`, pages from
/// `templates`, sessions in `store`, cookies signed with `secret` (and still accepted when
/// signed with one of `secret_fallbacks`).
pub fn router(
    state: AppState,
    templates: Templates,
    store: Arc<dyn SessionStore>,
    secret: &SecretKey,
    secret_fallbacks: &[SecretKey],
) -> Router {
    let config = state.config.clone();
    let csrf_config = state.csrf.clone();
    // Signed with the site's key, so every server sharing it accepts the others' CSRF cookies.
    // No route is exempt: every unsafe request is checked.
    let csrf = CsrfLayer::new((*csrf_config).clone()).with_secret_key(secret);
    let session_config = SessionConfig {
        clock: csrf_config.clock.clone(),
        ..config.session_config()
    };
    let events = EventLayer::new(state.events.clone(), config.trust_x_forwarded_for)
        .session(&session_config);
    let sessions = SessionLayer::new(store, session_config);
    let cookies = CookieLayer::new(
        secret,
        CookieDefaults {
            domain: config.cookie_domain.clone(),
            secure: config.https,
            clock: csrf_config.clock.clone(),
        },
    )
    .fallbacks(secret, secret_fallbacks);
    // Load balancers probe the health check by address, whatever the site's names are.
    let hosts = AllowedHostsLayer::new(csrf_config.allowed_hosts.clone()).any_host_for("/healthz");
    let instance =
        HeaderValue::from_str(&config.instance).unwrap_or(HeaderValue::from_static("main"));
    let instance_name: Arc<str> = instance.to_str().unwrap_or("main").into();

    let routes = views::routes()
        .into_router()
        .fallback(views::site::not_found)
        .with_state(state.clone());

    // The layers wrap the whole router rather than each handler (`Router::layer` would), so that
    // the CSRF layer can show a refused form again through the page's GET handler.
    let service = ServiceBuilder::new()
        .layer(SecurityHeaders::default().layer())
        .layer(events)
        .layer(MapRequestLayer::new(move |req| {
            site_context(&instance_name, req)
        }))
        .layer(MapResponseLayer::new(move |mut resp: Response| {
            resp.headers_mut()
                .insert("x-portico-instance", instance.clone());
            resp
        }))
        .layer(Extension(templates.clone()))
        .layer(Extension(BodyLimit(config.body_limit)))
        .layer(ErrorPagesLayer::new(templates))
        // Before cookies and sessions: a request for another host creates nothing.
        .layer(hosts)
        .layer(cookies)
        .layer(sessions)
        .layer(csrf)
        .service(routes);
    Router::new().fallback_service(service)
}

/// Gives every request its template context, which names the instance (the `x-portico-instance`
/// header names it on every response).
fn site_context(instance: &str, mut req: Request) -> Request {
    let ctx = PageContext::default();
    ctx.set("instance", instance);
    req.extensions_mut().insert(ctx);
    req
}
