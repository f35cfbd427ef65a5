//! [`CsrfLayer`] and its service: the checks in turn, one refusal, and a refused form shown again.
//!
//! Like Django's `CsrfViewMiddleware.process_view`, the service reads as a checklist: a safe or
//! exempt request passes; an unsafe one has its body read once, then [`CsrfLayer::check`] asks
//! where it comes from and whether its token is good, and anything it finds wrong goes to
//! [`refuse`], the one place that answers a refusal.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use rand::RngCore;

use super::cookie::{self, CookieSettings};
use super::secret::{finish, secret_to_check};
use super::source::{header_str, is_unsafe, pattern_matches};
use super::{token, CsrfConfig, Reason, VisitorSecret, FORM_FIELD, HEADER};
use crate::error::{ErrorPage, KeptInput};
use crate::params::{collect_body, form_kind, BodyLimit, Params, QueryDict, DEFAULT_BODY_LIMIT};
use crate::secret::SecretKey;
use crate::session::{self, Session, SessionError};

/// The CSRF layer; see the [module docs](super).
///
/// It puts its [`CsrfConfig`] (as `Arc<CsrfConfig>`) into every request's extensions, where
/// [`Page`](crate::template::Page) finds the clock it dates tokens with.
///
/// ```
/// use portico::csrf::{CsrfConfig, CsrfLayer};
/// let layer = CsrfLayer::new(CsrfConfig::default()).exempt("/hooks/{name}/");
/// assert!(layer.is_exempt("/hooks/deploy/"));
/// assert!(!layer.is_exempt("/accounts/login/"));
/// ```
#[derive(Clone)]
pub struct CsrfLayer {
    config: Arc<CsrfConfig>,
    exempt: Arc<Vec<String>>,
    cookie: Arc<CookieSettings>,
}

// The signing key of the CSRF cookie never appears in a log line.
impl std::fmt::Debug for CsrfLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfLayer").finish_non_exhaustive()
    }
}

impl CsrfLayer {
    /// A layer with these settings and no exemptions.
    ///
    /// The secret cookie of visitors without a session is signed with a key made at random here,
    /// which only this process knows: enough for one server. Servers that share visitors (behind
    /// one load balancer) must sign with the site's key: see [`CsrfLayer::with_secret_key`].
    pub fn new(config: CsrfConfig) -> Self {
        let mut key = [0u8; 64];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let cookie = CookieSettings::new(key, config.https, config.token_ttl_secs());
        Self {
            config: Arc::new(config),
            exempt: Arc::new(Vec::new()),
            cookie: Arc::new(cookie),
        }
    }

    /// Signs the secret cookie with a key derived from the site's secret key, so that every server
    /// sharing that key accepts the cookies of the others.
    ///
    /// ```
    /// use portico::csrf::{CsrfConfig, CsrfLayer};
    /// use portico::secret::SecretKey;
    /// let key = SecretKey::generate();
    /// let layer = CsrfLayer::new(CsrfConfig::default()).with_secret_key(&key);
    /// ```
    pub fn with_secret_key(mut self, key: &SecretKey) -> Self {
        self.cookie = Arc::new(CookieSettings::new(
            key.derive(cookie::KEY_LABEL),
            self.config.https,
            self.config.token_ttl_secs(),
        ));
        self
    }

    /// The name of the secret cookie: `__Host-csrfsecret` over HTTPS, `csrfsecret` otherwise.
    pub fn cookie_name(&self) -> &'static str {
        self.cookie.name()
    }

    /// Exempts the routes matching `pattern` (axum syntax: `{name}` matches one path segment).
    pub fn exempt(mut self, pattern: &str) -> Self {
        Arc::make_mut(&mut self.exempt).push(pattern.to_string());
        self
    }

    /// The settings.
    pub fn config(&self) -> &CsrfConfig {
        &self.config
    }

    /// Whether `path` is exempt.
    pub fn is_exempt(&self, path: &str) -> bool {
        self.exempt.iter().any(|p| pattern_matches(p, path))
    }

    /// Whether the request is one the check applies to: an unsafe method on a route that is not
    /// exempt.
    fn applies_to(&self, req: &Request<Body>) -> bool {
        is_unsafe(req.method()) && !self.is_exempt(req.uri().path())
    }

    /// What every request gets, checked or not: the settings, and its CSRF cookie.
    fn visit(&self, req: &mut Request<Body>) -> VisitorSecret {
        let visitor =
            VisitorSecret::new(self.cookie.clone(), req.headers(), self.config.clock.now());
        req.extensions_mut().insert(self.config.clone());
        req.extensions_mut().insert(visitor.clone());
        visitor
    }

    /// The checks, in order: where the request comes from, then its token against the secret of
    /// this visitor.
    async fn check(
        &self,
        parts: &Parts,
        params: Option<&Params>,
        session: &Session,
        visitor: &VisitorSecret,
    ) -> Result<(), Stop> {
        self.config.check_source(&parts.headers)?;
        let given = given_token(parts, params);
        // Only a token worth checking costs a look at the session.
        token::parse(&given)?;
        let secret = secret_to_check(session, visitor).await?;
        token::check(
            secret.as_deref().map_err(|r| *r),
            &given,
            self.config.clock.now(),
            self.config.token_ttl_secs(),
        )?;
        Ok(())
    }
}

impl<S> tower::Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`CsrfLayer`].
#[derive(Clone)]
pub struct CsrfService<S> {
    inner: S,
    layer: CsrfLayer,
}

impl<S> std::fmt::Debug for CsrfService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrfService").finish_non_exhaustive()
    }
}

/// Why an unsafe request does not reach its view.
enum Stop {
    /// The check refused it.
    Refused(Reason),
    /// The session store is down, so its token cannot be checked.
    Unchecked(SessionError),
}

impl From<Reason> for Stop {
    fn from(reason: Reason) -> Self {
        Stop::Refused(reason)
    }
}

impl From<SessionError> for Stop {
    fn from(e: SessionError) -> Self {
        Stop::Unchecked(e)
    }
}

impl<S> tower::Service<Request<Body>> for CsrfService<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        // Take the service that was polled ready, leave the clone behind for the next call.
        std::mem::swap(&mut inner, &mut self.inner);
        let layer = self.layer.clone();
        Box::pin(async move {
            let visitor = layer.visit(&mut req);
            let session = req.extensions().get::<Session>().cloned();
            if !layer.applies_to(&req) {
                let resp = inner.call(req).await?;
                return Ok(finished(&visitor, session.as_ref(), resp).await);
            }
            let (mut parts, body, params) = match read_form(req).await {
                Ok(read) => read,
                Err(resp) => return Ok(resp),
            };
            let Some(session) = session else {
                tracing::error!("CsrfLayer runs without SessionLayer outside it");
                return Ok(ErrorPage::internal().into_response());
            };
            match layer
                .check(&parts, params.as_ref(), &session, &visitor)
                .await
            {
                Ok(()) => {
                    if let Some(p) = params {
                        parts.extensions.insert(p);
                    }
                    let resp = inner.call(Request::from_parts(parts, body)).await?;
                    Ok(finished(&visitor, Some(&session), resp).await)
                }
                Err(Stop::Refused(reason)) => {
                    Ok(refuse(inner, parts, params, reason, &session, &visitor).await)
                }
                Err(Stop::Unchecked(e)) => Ok(unchecked(e, &parts, params.as_ref())),
            }
        })
    }
}

/// Splits the request, reading a form body once: the view gets the parsed parameters from the
/// extensions, and the body stays readable for it. The limit is the request's [`BodyLimit`], the
/// one the views' own extractors obey.
async fn read_form(req: Request<Body>) -> Result<(Parts, Body, Option<Params>), Response> {
    let (parts, body) = req.into_parts();
    if form_kind(&parts.headers).is_none() {
        return Ok((parts, body, None));
    }
    let limit = parts
        .extensions
        .get::<BodyLimit>()
        .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    let bytes = collect_body(body, limit)
        .await
        .map_err(IntoResponse::into_response)?;
    let params = Params::from_parts_and_body(&parts, &bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((parts, Body::from(bytes), Some(params)))
}

/// The token the request carries: the header's (a `fetch()`), else the form field's; empty when
/// there is none.
fn given_token(parts: &Parts, params: Option<&Params>) -> String {
    header_str(&parts.headers, HEADER)
        .or_else(|| params.and_then(|p| p.form.get(FORM_FIELD)))
        .unwrap_or_default()
        .to_string()
}

/// `resp` with the secret cookie set, renewed or deleted ([`finish`]), or the store's error.
async fn finished(
    visitor: &VisitorSecret,
    session: Option<&Session>,
    mut resp: Response,
) -> Response {
    match finish(visitor, session, &mut resp).await {
        Ok(()) => resp,
        Err(e) => e.into_response(),
    }
}

/// The one answer to a refused request.
///
/// Nothing of the request may reach the store or a cookie: a post from another site arrives
/// without the visitor's cookies, and an answer that set one would replace theirs. A form refused
/// for its token is shown again by its page; one refused for where it came from is not (its fields
/// are another site's) and gets a 403 page that says why.
async fn refuse<S>(
    inner: S,
    parts: Parts,
    params: Option<Params>,
    reason: Reason,
    session: &Session,
    visitor: &VisitorSecret,
) -> Response
where
    S: tower::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>,
{
    tracing::info!(reason = reason.code(), path = %parts.uri.path(), "CSRF check refused a request");
    let refused = Refused {
        reason,
        origin: header_str(&parts.headers, header::ORIGIN).map(str::to_string),
    };
    session.discard_writes().await;
    let mut resp = match params {
        Some(p) if !reason.is_about_source() => reshow_form(inner, parts, p, reason).await,
        _ => ErrorPage::new(StatusCode::FORBIDDEN, reason.message()).into_response(),
    };
    if visitor.used() {
        session::keep_private(&mut resp);
    }
    resp.extensions_mut().insert(refused);
    resp
}

/// The answer when the store is down: the form can be neither checked nor shown again by its
/// page, so the error page gives its fields back instead.
fn unchecked(e: SessionError, parts: &Parts, params: Option<&Params>) -> Response {
    let mut resp = e.into_response();
    if let Some(p) = params {
        resp.extensions_mut().insert(KeptInput {
            action: parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            fields: kept_fields(p),
        });
    }
    resp
}

/// Shows a refused form again by asking the page's GET handler for it.
async fn reshow_form<S>(mut inner: S, mut parts: Parts, params: Params, reason: Reason) -> Response
where
    S: tower::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>,
{
    let kept = kept_fields(&params);
    parts.method = Method::GET;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(Rejected { reason, form: kept });
    let Ok(resp) = inner.call(Request::from_parts(parts, Body::empty())).await;
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if resp.status() == StatusCode::OK && is_html {
        let (mut p, b) = resp.into_parts();
        p.status = StatusCode::FORBIDDEN;
        Response::from_parts(p, b)
    } else {
        ErrorPage::new(StatusCode::FORBIDDEN, reason.message()).into_response()
    }
}

/// Marks a response as a CSRF refusal, for the event log.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    /// The reason.
    pub reason: Reason,
    /// The request's `Origin` header, if any.
    pub origin: Option<String>,
}

/// A refused form post being shown again: the fields sent (passwords removed) and the reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Why the post was refused.
    pub reason: Reason,
    /// What the form sent, without password fields and without the token.
    pub form: QueryDict,
}

/// The fields of a refused form post, for the GET view that shows the form again.
///
/// ```
/// use portico::csrf::Resubmitted;
/// async fn form(Resubmitted(kept): Resubmitted) -> String {
///     let title = kept.as_ref().and_then(|f| f.get("title")).unwrap_or("");
///     format!("<input name=title value=\"{title}\">")
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(form));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Resubmitted(pub Option<QueryDict>);

impl<S: Send + Sync> FromRequestParts<S> for Resubmitted {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Resubmitted(
            parts.extensions.get::<Rejected>().map(|r| r.form.clone()),
        ))
    }
}

/// The reason of the refusal being shown, for templates (`csrf_error`).
pub(crate) fn rejection_message(extensions: &http::Extensions) -> Option<&'static str> {
    extensions.get::<Rejected>().map(|r| r.reason.message())
}

/// Fields never echoed back into a re-shown form.
pub(super) fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n == FORM_FIELD
}

/// The posted fields that may be shown back: all but passwords and the token.
fn kept_fields(params: &Params) -> QueryDict {
    let mut q = QueryDict::new();
    for (n, v) in params.form.iter().filter(|(n, _)| !is_secret_field(n)) {
        q.push(n, v);
    }
    q
}
