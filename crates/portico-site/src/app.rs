//! Assembles the site: state, routes, and the layers every request passes through.
//!
//! The route table ([`ROUTES`]) is the one place that names every path, its methods and its CSRF
//! status; `portico routes` prints it and [`router`] builds from the same list's exemptions.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use portico::cookies::{CookieDefaults, CookieLayer};
use portico::csrf::{CsrfConfig, CsrfLayer};
use portico::error::ErrorPage;
use portico::events::{EventLayer, EventLog};
use portico::hosts::AllowedHostsLayer;
use portico::params::BodyLimit;
use portico::secret::SecretKey;
use portico::security::SecurityHeaders;
use portico::session::{SessionConfig, SessionLayer, SessionStore};
use portico::template::{ErrorPagesLayer, PageContext, Templates};
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower::ServiceBuilder;

use crate::config::ServeConfig;
use crate::db::Db;
use crate::limits::Limits;
use crate::views;

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo {
    /// The path pattern.
    pub path: &'static str,
    /// The methods it answers.
    pub methods: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Whether unsafe methods skip the CSRF check.
    pub csrf_exempt: bool,
}

const fn route(path: &'static str, methods: &'static str, purpose: &'static str) -> RouteInfo {
    RouteInfo {
        path,
        methods,
        purpose,
        csrf_exempt: false,
    }
}

/// Every route of the site.
pub const ROUTES: &[RouteInfo] = &[
    route(
        "/",
        "GET",
        "home: the notes of a logged-in user, or the welcome page",
    ),
    route("/healthz", "GET", "liveness probe"),
    route("/static/site.css", "GET", "the stylesheet"),
    route(
        "/demo/",
        "GET, POST",
        "request/response basics: get, getlist, cookies, visit counter",
    ),
    route(
        "/demo/session/",
        "GET, POST",
        "the session's demo.* keys as JSON; POST key/value sets demo.<key>",
    ),
    route(
        "/demo/session/flush/",
        "POST",
        "flush the whole session, as logout does",
    ),
    route("/captcha/", "GET", "a fresh captcha PNG (?mode=zh|digits)"),
    route(
        "/captcha/audio/",
        "GET",
        "a fresh spoken captcha WAV (?lang=en|zh)",
    ),
    route(
        "/accounts/register/",
        "GET, POST",
        "create an account (captcha)",
    ),
    route("/accounts/login/", "GET, POST", "log in (captcha)"),
    route("/accounts/logout/", "POST", "log out"),
    route("/notes/", "GET", "list notes (?tag=..., ?page=N)"),
    route("/notes/new/", "GET, POST", "create a note"),
    route("/notes/{id}/", "GET", "show a note"),
    route("/notes/{id}/edit/", "GET, POST", "edit a note"),
    route(
        "/notes/{id}/delete/",
        "GET, POST",
        "confirm and delete a note",
    ),
];

/// What views share.
#[derive(Clone)]
pub struct AppState {
    /// The models' database.
    pub db: Db,
    /// The settings.
    pub config: Arc<ServeConfig>,
    /// CSRF settings (tokens are minted with its clock).
    pub csrf: Arc<CsrfConfig>,
    /// Captcha settings and limiter.
    pub captcha: Arc<views::captcha::CaptchaSettings>,
    /// Rate limits (logins and registrations), counted in the session store.
    pub limits: Arc<Limits>,
    /// The event log.
    pub events: EventLog,
}

/// Everything [`router`] needs besides the state.
pub struct Parts {
    /// The state.
    pub state: AppState,
    /// Templates.
    pub templates: Templates,
    /// The session store.
    pub store: Arc<dyn SessionStore>,
    /// The secret key.
    pub secret: SecretKey,
    /// Old secret keys whose signed cookies still verify.
    pub secret_fallbacks: Vec<SecretKey>,
}

/// The session settings from the site's settings.
pub fn session_config(config: &ServeConfig) -> SessionConfig {
    SessionConfig {
        cookie_name: config.session_cookie(),
        cookie_domain: config.cookie_domain.clone(),
        cookie_secure: config.https,
        idle_timeout: time::Duration::seconds(config.session_idle_secs),
        anonymous_idle_timeout: time::Duration::seconds(config.anon_session_idle_secs),
        absolute_timeout: time::Duration::seconds(config.session_absolute_secs),
        store_timeout: Duration::from_millis(config.session_store_timeout_ms),
        max_keys: config.session_max_keys,
        max_bytes: config.session_max_bytes,
        ..SessionConfig::default()
    }
}

/// Builds the site's router with all its layers.
pub fn router(parts: Parts) -> Router {
    let Parts {
        state,
        templates,
        store,
        secret,
        secret_fallbacks,
    } = parts;
    let config = state.config.clone();
    let csrf_config = state.csrf.clone();
    // Signed with the site's key, so every server sharing it accepts the others' CSRF cookies.
    let mut csrf = CsrfLayer::new((*csrf_config).clone()).with_secret_key(&secret);
    for r in ROUTES.iter().filter(|r| r.csrf_exempt) {
        csrf = csrf.exempt(r.path);
    }
    let session_config = SessionConfig {
        clock: csrf_config.clock.clone(),
        ..session_config(&config)
    };
    let events = EventLayer::new(state.events.clone(), config.trust_x_forwarded_for)
        .session(&session_config);
    let sessions = SessionLayer::new(store, session_config);
    let cookies = CookieLayer::new(
        &secret,
        CookieDefaults {
            domain: config.cookie_domain.clone(),
            secure: config.https,
        },
    )
    .fallbacks(&secret, &secret_fallbacks);
    // Load balancers probe the health check by address, whatever the site's names are.
    let hosts = AllowedHostsLayer::new(csrf_config.allowed_hosts.clone()).any_host_for("/healthz");
    let instance =
        HeaderValue::from_str(&config.instance).unwrap_or(HeaderValue::from_static("main"));
    let instance_name: Arc<str> = instance.to_str().unwrap_or("main").into();

    let routes = Router::new()
        .route("/", get(views::notes::home))
        .route("/healthz", get(healthz))
        .route("/static/site.css", get(stylesheet))
        .route(
            "/demo/",
            get(views::demo::demo_form).post(views::demo::demo_submit),
        )
        .route(
            "/demo/session/",
            get(views::demo::session_json).post(views::demo::session_set),
        )
        .route("/demo/session/flush/", post(views::demo::session_flush))
        .route("/captcha/", get(views::captcha::image))
        .route("/captcha/audio/", get(views::captcha::audio))
        .merge(views::accounts::routes())
        .merge(views::notes::routes())
        .fallback(not_found)
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

/// `ok`, then the event log's counts (`events_written N`, `events_dropped N`): a rising
/// `events_dropped` means the log cannot keep up or its disk is full (docs/deployment.md).
async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query("SELECT 1").execute(&state.db.pool).await {
        Ok(_) => {
            let body = format!(
                "ok\nevents_written {}\nevents_dropped {}\n",
                state.events.written(),
                state.events.dropped()
            );
            (StatusCode::OK, body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            ErrorPage::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database cannot be reached.",
            )
            .into_response()
        }
    }
}

/// The stylesheet, embedded; cached by browsers for a day so pages stay small.
async fn stylesheet() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../static/site.css"),
    )
        .into_response()
}

async fn not_found() -> ErrorPage {
    ErrorPage::new(
        StatusCode::NOT_FOUND,
        ErrorPage::default_message(StatusCode::NOT_FOUND),
    )
}
