//! [`ErrorPagesLayer`]: error responses as pages a person reads, or as JSON for JSON clients.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, Request};
use axum::response::Response;
use minijinja::value::Value;

use super::{PageContext, Templates};
use crate::error::{ErrorPage, KeptInput};

fn wants_json(headers: &http::HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Every error response that is not already HTML becomes the `error.html` page (or a JSON error
/// for JSON clients), saying what went wrong.
///
/// A tower layer rather than an `axum::middleware::from_fn`: no boxed inner service, and no second
/// boxed future for every request, most of which are not errors.
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

impl std::fmt::Debug for ErrorPagesLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorPagesLayer").finish_non_exhaustive()
    }
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

impl<S> std::fmt::Debug for ErrorPagesService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorPagesService").finish_non_exhaustive()
    }
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
                sentence(text)
            }
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    if asked.json {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = serde_json::json!({
            "status": status.as_u16(),
            "error": ErrorPage::title(status),
            "message": message
        });
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

/// `text` ending in a full stop, which it is given only when it has none.
pub(super) fn sentence(mut text: String) -> String {
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}
