//! Templates: minijinja with autoescape, the CSRF helpers, and error pages.
//!
//! [`Templates`] wraps a minijinja environment (embedded in the binary in production; re-read from
//! disk on every render in development). A view takes a [`Page`] and calls [`Page::render`]; the
//! page adds what every template may use:
//!
//! - `csrf_input()` — the hidden `csrfmiddlewaretoken` input; `csrf_token()` — the bare token;
//! - `csrf_error` — the message of a refused form being shown again (see [`crate::csrf`]);
//! - `request_path`, and whatever middleware put in the request's [`PageContext`] (the site puts
//!   the logged-in user there).
//!
//! A token is minted only when the template asks for one. A visitor with a session gets tokens of
//! the session's secret; one without gets tokens of the secret in their CSRF cookie (made, and
//! set on the response, on their first page with a form), so showing a form to a new visitor
//! writes nothing to the session store. See [`crate::csrf`].
//!
//! [`ErrorPagesLayer`] (or the [`error_pages`] middleware function) turns every 4xx/5xx response
//! that is not already a page into the `error.html` template (or JSON when the client asked for
//! JSON), with the message the refusing code gave, and with `kept` (name, value pairs) and
//! `kept_action` when the response carries a refused form's fields ([`KeptInput`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, Request, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::{Object, Value};
use minijinja::{Environment, State};

use crate::csrf::{self, CsrfConfig, VisitorSecret};
use crate::error::{ErrorPage, KeptInput};
use crate::session::{Session, SessionError, Status};

type Factory = dyn Fn() -> Environment<'static> + Send + Sync;

/// A set of templates.
///
/// ```
/// use portico::template::Templates;
/// let mut env = minijinja::Environment::new();
/// env.add_template("hello.html", "Hello {{ name }}!").unwrap();
/// let t = Templates::new(env);
/// assert_eq!(t.render("hello.html", minijinja::context! { name => "<b>" }).unwrap(), "Hello &lt;b&gt;!");
/// ```
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    reload: Option<Arc<Factory>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("reload", &self.reload.is_some())
            .finish()
    }
}

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// minijinja's error (missing template, syntax, runtime).
    #[error("template error: {0:#}")]
    Render(#[from] minijinja::Error),
    /// The session could not give a CSRF token.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IntoResponse for TemplateError {
    fn into_response(self) -> Response {
        match self {
            TemplateError::Session(e) => e.into_response(),
            TemplateError::Render(e) => {
                tracing::error!(error = %format!("{e:#}"), "template failed");
                ErrorPage::internal()
                .into_response()
            }
        }
    }
}

fn install_helpers(env: &mut Environment<'static>) {
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".htm") || name.ends_with(".xml") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.add_function(
        "csrf_token",
        |state: &State| -> Result<String, minijinja::Error> { slot_token(state) },
    );
    env.add_function(
        "csrf_input",
        |state: &State| -> Result<Value, minijinja::Error> {
            let token = slot_token(state)?;
            Ok(Value::from_safe_string(format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                csrf::FORM_FIELD,
                token
            )))
        },
    );
}

impl Templates {
    /// Templates from a ready environment; the CSRF helpers and HTML autoescape are added.
    pub fn new(mut env: Environment<'static>) -> Self {
        install_helpers(&mut env);
        Self {
            env: Arc::new(env),
            reload: None,
        }
    }

    /// Templates built afresh by `factory` for every render: edits on disk show at once.
    /// For development only; it re-parses every template on every request.
    pub fn reloading(factory: impl Fn() -> Environment<'static> + Send + Sync + 'static) -> Self {
        let mut env = factory();
        install_helpers(&mut env);
        Self {
            env: Arc::new(env),
            reload: Some(Arc::new(factory)),
        }
    }

    fn with_env<T>(&self, f: impl FnOnce(&Environment<'static>) -> T) -> T {
        match &self.reload {
            Some(factory) => {
                let mut env = factory();
                install_helpers(&mut env);
                f(&env)
            }
            None => f(&self.env),
        }
    }

    /// Renders `name` with `ctx`, outside any request (no CSRF token available).
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.with_env(|env| env.get_template(name)?.render(ctx))
    }

    /// Whether a template of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.with_env(|env| env.get_template(name).is_ok())
    }
}

/// The per-render holder of the CSRF secret, read by `csrf_token()` / `csrf_input()`.
///
/// The secret is known before the render (a session that has one), taken from the visitor's CSRF
/// cookie when a helper first asks (a visitor without a session), or made in the session after the
/// render: then the helpers write `placeholder` (random per render) and count their calls, and the
/// placeholders are swapped for a token once the session has its secret.
#[derive(Debug, Default)]
struct CsrfSlot {
    secret: Mutex<Option<Vec<u8>>>,
    cookie: Option<VisitorSecret>,
    /// No secret can be had (a refused form shown to a visitor without one): empty tokens.
    unavailable: bool,
    now: i64,
    placeholder: String,
    calls: AtomicUsize,
}

impl Object for CsrfSlot {}

const SLOT_VAR: &str = "__portico_csrf";

fn slot_token(state: &State) -> Result<String, minijinja::Error> {
    let Some(slot) = state
        .lookup(SLOT_VAR)
        .and_then(|v| v.downcast_object::<CsrfSlot>())
    else {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "csrf_token() needs a page rendered through portico::template::Page",
        ));
    };
    let mut secret = slot.secret.lock().unwrap_or_else(|p| p.into_inner());
    if secret.is_none() {
        if let Some(cookie) = &slot.cookie {
            *secret = Some(cookie.for_page().to_vec());
        }
    }
    match secret.as_deref() {
        Some(secret) => Ok(csrf::mint(secret, slot.now)),
        None if slot.unavailable => Ok(String::new()),
        None => {
            slot.calls.fetch_add(1, Ordering::Relaxed);
            Ok(slot.placeholder.clone())
        }
    }
}

/// Where a page's CSRF secret comes from; see [`CsrfSlot`].
enum SecretSource {
    Ready(Vec<u8>),
    Cookie(VisitorSecret),
    Session,
    Unavailable,
}

/// Values middleware adds for every template of a request (`user`, `instance`, ...).
#[derive(Debug, Clone, Default)]
pub struct PageContext(pub Arc<Mutex<BTreeMap<String, Value>>>);

impl PageContext {
    /// Sets `name` for the templates of this request.
    pub fn set(&self, name: &str, value: impl Into<Value>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), value.into());
    }

    fn snapshot(&self) -> BTreeMap<String, Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a view needs to render a page of this request.
///
/// ```
/// use portico::template::{Page, TemplateError};
/// async fn home(page: Page) -> Result<axum::response::Html<String>, TemplateError> {
///     page.render("home.html", minijinja::context! { title => "Home" }).await
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(home));
/// ```
#[derive(Clone)]
pub struct Page {
    templates: Templates,
    session: Option<Session>,
    visitor: Option<VisitorSecret>,
    csrf: Arc<CsrfConfig>,
    csrf_error: Option<&'static str>,
    path: String,
    extra: PageContext,
}

impl Page {
    /// Renders `name` with `ctx` plus the page globals, minting CSRF tokens if the template asks.
    pub async fn render(&self, name: &str, ctx: Value) -> Result<Html<String>, TemplateError> {
        self.render_string(name, ctx).await.map(Html)
    }

    /// [`Page::render`] as a plain string.
    pub async fn render_string(&self, name: &str, ctx: Value) -> Result<String, TemplateError> {
        let mut slot = CsrfSlot {
            now: self.csrf.clock.now(),
            ..CsrfSlot::default()
        };
        match self.secret_source().await? {
            SecretSource::Ready(secret) => {
                *slot.secret.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(secret)
            }
            SecretSource::Cookie(visitor) => slot.cookie = Some(visitor),
            SecretSource::Unavailable => slot.unavailable = true,
            // 128 random bits: no page text contains it by chance, and no visitor can predict it
            // to plant a copy in their own input.
            SecretSource::Session => {
                slot.placeholder = format!("portico-csrf-{:032x}", rand::random::<u128>())
            }
        }
        let slot = Arc::new(slot);
        let full = self.context(ctx, slot.clone());
        let first = self
            .templates
            .with_env(|env| env.get_template(name)?.render(&full))?;
        let calls = slot.calls.load(Ordering::Relaxed);
        if calls == 0 {
            return Ok(first);
        }
        let Some(session) = &self.session else {
            return Err(TemplateError::Render(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "csrf_token() used on a route without SessionLayer",
            )));
        };
        let secret = csrf::session_secret_for_page(session, self.visitor.as_ref()).await?;
        let token = csrf::mint(&secret, slot.now);
        if first.matches(slot.placeholder.as_str()).count() == calls {
            return Ok(first.replace(slot.placeholder.as_str(), &token));
        }
        // A filter changed a placeholder (`csrf_token()|upper`, say): render again, with the secret.
        *slot.secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(secret);
        Ok(self
            .templates
            .with_env(|env| env.get_template(name)?.render(&full))?)
    }

    /// Where this page's tokens come from.
    ///
    /// A session that exists (or starts, or got a new id, in this request) holds the secret; a
    /// visitor without one has it in their CSRF cookie. A refused form shown again may store
    /// nothing and set no cookie, so it uses only a secret the visitor already has (or shows no
    /// token at all).
    async fn secret_source(&self) -> Result<SecretSource, SessionError> {
        let mut status = Status::Untouched;
        if let Some(session) = &self.session {
            // A returning visitor's session is read anyway; a session this request already
            // touched costs nothing more to look at.
            if session.cookie_id().await.is_some() || session.status().await != Status::Untouched {
                if let Some(secret) = csrf::existing_secret(session).await? {
                    return Ok(SecretSource::Ready(secret));
                }
                status = session.status().await;
            }
        }
        let refused = self.csrf_error.is_some();
        match (status, &self.visitor) {
            // Only the live session's secret counts, and a refusal may not store one.
            (Status::Kept, _) if refused => Ok(SecretSource::Unavailable),
            (_, Some(visitor)) if refused => Ok(match visitor.for_page_without_cookie() {
                Some(secret) => SecretSource::Ready(secret.to_vec()),
                None => SecretSource::Unavailable,
            }),
            (Status::Kept | Status::Started | Status::Renewed, _) => Ok(SecretSource::Session),
            (_, Some(visitor)) => Ok(SecretSource::Cookie(visitor.clone())),
            (_, None) => Ok(SecretSource::Session),
        }
    }

    fn context(&self, ctx: Value, slot: Arc<CsrfSlot>) -> Value {
        let mut globals: BTreeMap<String, Value> = self.extra.snapshot();
        globals.insert("request_path".into(), Value::from(self.path.clone()));
        globals.insert("csrf_error".into(), Value::from(self.csrf_error));
        globals.insert(SLOT_VAR.into(), Value::from_dyn_object(slot));
        minijinja::context! { ..ctx, ..Value::from(globals) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = crate::error::MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let templates: Templates =
            crate::error::MissingLayer::take(&parts.extensions, "Extension(Templates)")?;
        let csrf = parts
            .extensions
            .get::<Arc<CsrfConfig>>()
            .cloned()
            .unwrap_or_default();
        Ok(Page {
            templates,
            session: parts.extensions.get::<Session>().cloned(),
            visitor: parts.extensions.get::<VisitorSecret>().cloned(),
            csrf,
            csrf_error: csrf::rejection_message(&parts.extensions),
            path: parts.uri.path().to_string(),
            extra: parts
                .extensions
                .get::<PageContext>()
                .cloned()
                .unwrap_or_default(),
        })
    }
}

fn wants_json(headers: &http::HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Middleware: every error response that is not already HTML becomes the `error.html` page (or a
/// JSON error for JSON clients), saying what went wrong. Use with
/// `axum::middleware::from_fn_with_state(templates, error_pages)`, or as [`ErrorPagesLayer`].
pub async fn error_pages(
    axum::extract::State(templates): axum::extract::State<Templates>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let asked = ErrorRequest::of(&req);
    let resp = next.run(req).await;
    asked.page_for(&templates, resp).await
}

/// [`error_pages`] as a tower layer: the same pages, without the boxed inner service and second
/// boxed future `from_fn` costs every request, most of which are not errors.
///
/// ```
/// use axum::{routing::get, Router};
/// use portico::template::{ErrorPagesLayer, Templates};
/// let templates = Templates::new(minijinja::Environment::new());
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(ErrorPagesLayer::new(templates));
/// ```
#[derive(Clone)]
pub struct ErrorPagesLayer {
    templates: Templates,
}

impl ErrorPagesLayer {
    /// Error pages rendered with `templates` (`error.html`).
    pub fn new(templates: Templates) -> Self {
        Self { templates }
    }
}

impl<S> tower::Layer<S> for ErrorPagesLayer {
    type Service = ErrorPagesService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ErrorPagesService {
            inner,
            templates: self.templates.clone(),
        }
    }
}

/// The service of [`ErrorPagesLayer`].
#[derive(Clone)]
pub struct ErrorPagesService<S> {
    inner: S,
    templates: Templates,
}

impl<S> tower::Service<Request<axum::body::Body>> for ErrorPagesService<S>
where
    S: tower::Service<Request<axum::body::Body>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        let asked = ErrorRequest::of(&req);
        let fut = self.inner.call(req);
        let templates = self.templates.clone();
        Box::pin(async move { Ok(asked.page_for(&templates, fut.await?).await) })
    }
}

/// What an error page needs from the request it answers.
struct ErrorRequest {
    json: bool,
    extra: Option<PageContext>,
}

impl ErrorRequest {
    fn of<B>(req: &Request<B>) -> Self {
        Self {
            json: wants_json(req.headers()),
            extra: req.extensions().get::<PageContext>().cloned(),
        }
    }

    /// `resp` itself, or the error page that replaces it.
    async fn page_for(self, templates: &Templates, resp: Response) -> Response {
        let status = resp.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return resp;
        }
        error_page(templates, self, resp).await
    }
}

async fn error_page(templates: &Templates, asked: ErrorRequest, resp: Response) -> Response {
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("text/html") || ct.starts_with("application/json") {
        return resp;
    }
    let given = resp
        .extensions()
        .get::<ErrorPage>()
        .map(|e| e.message.clone());
    let kept = resp.extensions().get::<KeptInput>().cloned();
    let (mut parts, body) = resp.into_parts();
    let message = match given {
        Some(m) => m,
        None => {
            // axum's own rejections carry a short plain-text reason; keep it if it is readable.
            let text = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 4096))
                .await
                .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_string())
                .unwrap_or_default();
            if text.is_empty() || status.is_server_error() {
                ErrorPage::default_message(status).to_string()
            } else {
                format!("{text}.").replace("..", ".")
            }
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    if asked.json {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({ "status": status.as_u16(), "error": ErrorPage::title(status), "message": message });
        return Response::from_parts(parts, axum::body::Body::from(body.to_string()));
    }
    let mut ctx: BTreeMap<String, Value> = asked.extra.map(|e| e.snapshot()).unwrap_or_default();
    ctx.insert("status".into(), Value::from(status.as_u16()));
    ctx.insert("title".into(), Value::from(ErrorPage::title(status)));
    ctx.insert("message".into(), Value::from(message.clone()));
    if let Some(k) = kept {
        // What the person typed, given back to them alone: no cache keeps it.
        parts.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        let fields: Vec<(String, String)> = k
            .fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        ctx.insert("kept".into(), Value::from_serialize(&fields));
        ctx.insert("kept_action".into(), Value::from(k.action));
    }
    let html = templates
        .render("error.html", Value::from(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "error template failed");
            format!(
                "<!doctype html><title>{status}</title><h1>{}</h1><p>{}</p>",
                ErrorPage::title(status),
                minijinja_escape(&message)
            )
        });
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Response::from_parts(parts, axum::body::Body::from(html))
}

fn minijinja_escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoescape_is_on_for_html() {
        let mut env = Environment::new();
        env.add_template("a.html", "{{ x }}").unwrap();
        env.add_template("a.txt", "{{ x }}").unwrap();
        let t = Templates::new(env);
        assert_eq!(
            t.render("a.html", minijinja::context! { x => "<script>" })
                .unwrap(),
            "&lt;script&gt;"
        );
        assert_eq!(
            t.render("a.txt", minijinja::context! { x => "<script>" })
                .unwrap(),
            "<script>"
        );
    }

    /// A router whose routes answer a plain-text 400, an HTML 404 and a 200, wrapped by `wrap`.
    fn errors_app(wrap: impl FnOnce(axum::Router) -> axum::Router) -> axum::Router {
        use axum::routing::get;
        let routes = axum::Router::new()
            .route(
                "/bad",
                get(|| async { (StatusCode::BAD_REQUEST, "Missing field") }),
            )
            .route(
                "/page",
                get(|| async { (StatusCode::NOT_FOUND, Html("<p>own page</p>")) }),
            )
            .route("/ok", get(|| async { "fine" }));
        wrap(routes)
    }

    fn error_templates() -> Templates {
        let mut env = Environment::new();
        env.add_template(
            "error.html",
            "<h1>{{ status }} {{ title }}</h1><p>{{ message }}</p>",
        )
        .unwrap();
        Templates::new(env)
    }

    async fn answer(app: &axum::Router, path: &str, accept: &str) -> (StatusCode, String, String) {
        use tower::ServiceExt;
        let req = Request::get(path)
            .header(header::ACCEPT, accept)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_layer_and_the_middleware_fn_make_the_same_error_pages() {
        let templates = error_templates();
        let t = templates.clone();
        let apps = [
            errors_app(|r| r.layer(ErrorPagesLayer::new(templates))),
            errors_app(|r| r.layer(axum::middleware::from_fn_with_state(t, error_pages))),
        ];
        for app in &apps {
            let (status, ct, body) = answer(app, "/bad", "text/html").await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(ct, "text/html; charset=utf-8");
            assert_eq!(body, "<h1>400 Bad request</h1><p>Missing field.</p>");

            let (status, ct, body) = answer(app, "/bad", "application/json").await;
            assert_eq!(
                (status, ct.as_str()),
                (StatusCode::BAD_REQUEST, "application/json")
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], 400);
            assert_eq!(v["message"], "Missing field.");

            let (status, _, body) = answer(app, "/page", "text/html").await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::NOT_FOUND, "<p>own page</p>")
            );
            let (status, _, body) = answer(app, "/ok", "text/html").await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
        }
    }

    #[test]
    fn csrf_helpers_outside_a_page_are_an_error_not_a_blank() {
        let mut env = Environment::new();
        env.add_template("f.html", "{{ csrf_input() }}").unwrap();
        let t = Templates::new(env);
        assert!(t.render("f.html", minijinja::context! {}).is_err());
    }
}
