//! CSRF protection, on for every unsafe request, bound to the server-side session.
//!
//! Django keeps the CSRF secret in a cookie that lives a year, so a token copied out of a page's
//! source stays good for that long. Portico keeps the secret in the session instead, under a `__`
//! key that rotates with the session id, and makes every token short-lived:
//!
//! - a token is `nonce (16 bytes) ‖ issue time (8) ‖ HMAC-SHA256(secret, nonce ‖ time) (16)`, in
//!   base64url: a fresh nonce per token, so every page shows a different string (BREACH-safe) and
//!   the secret never appears in a page;
//! - a token expires (12 h by default) and is refused in any other session, and after login or
//!   logout (the id, and so the secret, has changed);
//! - any unexpired token of the current session is accepted, so several open tabs keep working.
//!
//! [`CsrfLayer`] checks POST, PUT, PATCH and DELETE. First the browser's word about where the
//! request comes from: `Sec-Fetch-Site: cross-site` is refused, an `Origin` that is neither the
//! site's own nor trusted is refused (`null` included), and over HTTPS a request with neither
//! header needs a same-origin `Referer`. Then the token, from the form field `csrfmiddlewaretoken`
//! or the `X-CSRFToken` header, compared in constant time. GET, HEAD, OPTIONS and TRACE are never
//! checked and must never change state.
//!
//! A refused form post is shown again: the layer turns it into a GET of the same page carrying a
//! [`Rejected`] extension (the submitted fields minus passwords, and the reason), and answers the
//! page with status 403. The view's GET handler reads [`Rejected`] through [`Resubmitted`] to
//! fill the form in again; nothing the POST handler would do happens.
//!
//! Wrap the whole router with the layer (`ServiceBuilder::new().layer(csrf).service(router)`), not
//! with `Router::layer`, which wraps each handler on its own: the re-shown form needs the router to
//! reach the GET handler.
//!
//! Exemptions are explicit, per route, in code: [`CsrfLayer::exempt`] takes a path pattern, and the
//! route table (`portico routes`) shows it.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::error::{ErrorPage, KeptInput};
use crate::params::{collect_body, form_kind, BodyLimit, Params, QueryDict, DEFAULT_BODY_LIMIT};
use crate::session::{Session, SessionError};

/// The session key of the CSRF secret; the `__` prefix makes it rotate with the session id.
pub const SECRET_KEY: &str = "__csrf";
/// The form field that carries the token.
pub const FORM_FIELD: &str = "csrfmiddlewaretoken";
/// The header that carries the token for `fetch()` requests.
pub const HEADER: &str = "x-csrftoken";

const NONCE_LEN: usize = 16;
const TIME_LEN: usize = 8;
const TAG_LEN: usize = 16;
const TOKEN_LEN: usize = NONCE_LEN + TIME_LEN + TAG_LEN;
/// A token may claim an issue time this far ahead of the server's clock (clock skew between servers).
const MAX_SKEW: i64 = 300;

/// Why an unsafe request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token in the form or header.
    Missing,
    /// Something that is not a token.
    Malformed,
    /// A token past its lifetime.
    Expired,
    /// A well-formed token this session did not issue: from another session, or from before a
    /// login or logout.
    Foreign,
    /// The browser says the request comes from another site.
    CrossSite,
    /// The `Origin` is neither this site nor a trusted origin (or it is `null`).
    BadOrigin,
    /// Over HTTPS without `Origin`: the `Referer` is missing or from elsewhere.
    BadReferer,
}

impl Reason {
    /// A short code for logs and events (`missing`, `foreign`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Expired => "expired",
            Reason::Foreign => "foreign",
            Reason::CrossSite => "cross_site",
            Reason::BadOrigin => "bad_origin",
            Reason::BadReferer => "bad_referer",
        }
    }

    /// What went wrong and what to do, for the person who sent the form.
    pub fn message(self) -> &'static str {
        match self {
            Reason::Missing => "The form arrived without its security token. Reload the page and send the form again.",
            Reason::Malformed => "The form's security token is damaged. Reload the page and send the form again.",
            Reason::Expired => "This form was open too long and its security token has expired. Check your input and send it again.",
            Reason::Foreign => "This form was opened before you logged in or out, or in another session. Check your input and send it again.",
            Reason::CrossSite => "The request came from another web site, so it was refused. If you meant to do this, go to this site and do it here.",
            Reason::BadOrigin => "The request came from a page that is not part of this site, so it was refused.",
            Reason::BadReferer => "The request did not say which page it came from, which a secure form must. Reload the page and try again.",
        }
    }
}

/// CSRF settings.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// Seconds a token is accepted after it was issued (12 h).
    pub token_ttl: i64,
    /// Origins besides the site's own whose posts are accepted, e.g. `https://admin.example.com`;
    /// `https://*.example.com` trusts every sub-domain.
    pub trusted_origins: Vec<String>,
    /// Whether the site is served over HTTPS (enables the `Referer` check and sets the origin's
    /// scheme).
    pub https: bool,
    /// The largest body the layer reads to find the token.
    pub body_limit: usize,
    /// The clock tokens are dated with.
    pub clock: Clock,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self {
            token_ttl: 12 * 3600,
            trusted_origins: Vec::new(),
            https: false,
            body_limit: DEFAULT_BODY_LIMIT,
            clock: Clock::system(),
        }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn tag(secret: &[u8], nonce: &[u8], issued: &[u8]) -> [u8; TAG_LEN] {
    // HMAC takes keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(b"portico.csrf.v1");
    mac.update(nonce);
    mac.update(issued);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Mints a token from a session's secret at time `now`.
pub fn mint(secret: &[u8], now: i64) -> String {
    let mut raw = [0u8; TOKEN_LEN];
    rand::thread_rng().fill_bytes(&mut raw[..NONCE_LEN]);
    raw[NONCE_LEN..NONCE_LEN + TIME_LEN].copy_from_slice(&(now as u64).to_be_bytes());
    let t = tag(
        secret,
        &raw[..NONCE_LEN],
        &raw[NONCE_LEN..NONCE_LEN + TIME_LEN],
    );
    raw[NONCE_LEN + TIME_LEN..].copy_from_slice(&t);
    b64().encode(raw)
}

/// Checks `token` against a session's secret (`None` when the session has none yet).
///
/// ```
/// use portico::csrf::{mint, verify, Reason};
/// let secret = [7u8; 32];
/// let token = mint(&secret, 1_000);
/// assert_eq!(verify(Some(&secret), &token, 1_060, 3600), Ok(()));
/// assert_eq!(verify(Some(&[8u8; 32]), &token, 1_060, 3600), Err(Reason::Foreign));
/// assert_eq!(verify(Some(&secret), &token, 1_000 + 3601, 3600), Err(Reason::Expired));
/// assert_eq!(verify(Some(&secret), "nonsense", 1_060, 3600), Err(Reason::Malformed));
/// ```
pub fn verify(secret: Option<&[u8]>, token: &str, now: i64, ttl: i64) -> Result<(), Reason> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Reason::Missing);
    }
    let raw = b64().decode(token).map_err(|_| Reason::Malformed)?;
    if raw.len() != TOKEN_LEN {
        return Err(Reason::Malformed);
    }
    let Some(secret) = secret else {
        return Err(Reason::Foreign);
    };
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (issued, given) = rest.split_at(TIME_LEN);
    let expected = tag(secret, nonce, issued);
    if !bool::from(expected.ct_eq(given)) {
        return Err(Reason::Foreign);
    }
    let mut t = [0u8; TIME_LEN];
    t.copy_from_slice(issued);
    let issued_at = u64::from_be_bytes(t) as i64;
    if issued_at > now + MAX_SKEW {
        return Err(Reason::Foreign);
    }
    if now - issued_at > ttl {
        return Err(Reason::Expired);
    }
    Ok(())
}

async fn session_secret(session: &Session) -> Result<Option<Vec<u8>>, SessionError> {
    let stored: Option<String> = session.get(SECRET_KEY).await?;
    Ok(stored.and_then(|s| b64().decode(s).ok()))
}

/// The session's secret, created (and stored in the session) when it has none.
pub async fn ensure_secret(session: &Session) -> Result<Vec<u8>, SessionError> {
    if let Some(secret) = session_secret(session).await? {
        return Ok(secret);
    }
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    session.insert(SECRET_KEY, &b64().encode(&secret)).await?;
    Ok(secret)
}

/// The secret if the session already has one, without creating a session for a new visitor.
pub async fn existing_secret(session: &Session) -> Result<Option<Vec<u8>>, SessionError> {
    session_secret(session).await
}

/// A fresh token for `session` (creating its secret if needed), for a form or `fetch()`.
pub async fn token(session: &Session, config: &CsrfConfig) -> Result<String, SessionError> {
    let secret = ensure_secret(session).await?;
    Ok(mint(&secret, config.clock.now()))
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

/// Fields never echoed back into a re-shown form.
fn is_secret_field(name: &str) -> bool {
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

/// The CSRF layer; see the module docs.
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
}

impl CsrfLayer {
    /// A layer with these settings and no exemptions.
    pub fn new(config: CsrfConfig) -> Self {
        Self {
            config: Arc::new(config),
            exempt: Arc::new(Vec::new()),
        }
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
}

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return true,
            (Some(p), Some(g)) => {
                if p.starts_with("{*") {
                    return true;
                }
                let wildcard = p.starts_with('{') && p.ends_with('}') && !g.is_empty();
                if !wildcard && p != g {
                    return false;
                }
            }
            _ => return false,
        }
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

/// Marks a response as a CSRF refusal, for the event log.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The reason.
    pub reason: Reason,
    /// The request's `Origin` header, if any.
    pub origin: Option<String>,
}

fn header_str(headers: &http::HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

impl CsrfConfig {
    fn own_origin(&self, headers: &http::HeaderMap) -> Option<String> {
        let host = header_str(headers, header::HOST)?;
        Some(format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            host.to_ascii_lowercase()
        ))
    }

    fn trusted(&self, origin: &str, own: Option<&str>) -> bool {
        if Some(origin) == own {
            return true;
        }
        self.trusted_origins.iter().any(|t| {
            let t = t.trim_end_matches('/').to_ascii_lowercase();
            match t.split_once("://*.") {
                Some((scheme, domain)) => origin
                    .strip_prefix(&format!("{scheme}://"))
                    .is_some_and(|host| host.ends_with(&format!(".{domain}")) || host == domain),
                None => t == origin,
            }
        })
    }

    /// The browser-signal checks that come before the token.
    fn check_source(&self, headers: &http::HeaderMap) -> Result<(), Reason> {
        if header_str(headers, "sec-fetch-site")
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
        {
            return Err(Reason::CrossSite);
        }
        let own = self.own_origin(headers);
        if let Some(origin) = header_str(headers, header::ORIGIN) {
            let origin = origin.trim().to_ascii_lowercase();
            if origin == "null" || !self.trusted(&origin, own.as_deref()) {
                return Err(Reason::BadOrigin);
            }
            return Ok(());
        }
        if self.https {
            let referer_origin = header_str(headers, header::REFERER).and_then(origin_of_url);
            match referer_origin {
                Some(r) if self.trusted(&r, own.as_deref()) => {}
                _ => return Err(Reason::BadReferer),
            }
        }
        Ok(())
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        // Take the service that was polled ready, leave the clone behind for the next call.
        std::mem::swap(&mut inner, &mut self.inner);
        let layer = self.layer.clone();
        Box::pin(async move {
            if !is_unsafe(req.method()) || layer.is_exempt(req.uri().path()) {
                return inner.call(req).await;
            }
            let config = &layer.config;
            let origin = header_str(req.headers(), header::ORIGIN).map(str::to_string);
            let (mut parts, body) = req.into_parts();

            // Read the body once; the view gets the parsed parameters from the extensions.
            let is_form = form_kind(&parts.headers).is_some();
            let limit = parts
                .extensions
                .get::<BodyLimit>()
                .map(|l| l.0)
                .unwrap_or(config.body_limit);
            let (params, body) = if is_form {
                let bytes = match collect_body(body, limit).await {
                    Ok(b) => b,
                    Err(e) => return Ok(e.into_response()),
                };
                match Params::from_parts_and_body(&parts, &bytes).await {
                    Ok(p) => (Some(p), Body::from(bytes)),
                    Err(e) => return Ok(e.into_response()),
                }
            } else {
                (None, body)
            };

            let verdict = match config.check_source(&parts.headers) {
                Err(r) => Err(r),
                Ok(()) => {
                    let given = header_str(&parts.headers, HEADER)
                        .map(str::to_string)
                        .or_else(|| {
                            params
                                .as_ref()
                                .and_then(|p| p.form.get(FORM_FIELD).map(str::to_string))
                        })
                        .unwrap_or_default();
                    let Some(session) = parts.extensions.get::<Session>().cloned() else {
                        tracing::error!("CsrfLayer runs without SessionLayer outside it");
                        return Ok(ErrorPage::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            ErrorPage::default_message(StatusCode::INTERNAL_SERVER_ERROR),
                        )
                        .into_response());
                    };
                    let secret = if given.is_empty() {
                        None
                    } else {
                        match existing_secret(&session).await {
                            Ok(s) => s,
                            Err(e) => {
                                // The store is down: the form cannot be checked, nor shown again
                                // by its page; the error page gives its fields back instead.
                                let mut resp = e.into_response();
                                if let Some(p) = &params {
                                    resp.extensions_mut().insert(KeptInput {
                                        action: parts
                                            .uri
                                            .path_and_query()
                                            .map_or("/", |pq| pq.as_str())
                                            .to_string(),
                                        fields: kept_fields(p),
                                    });
                                }
                                return Ok(resp);
                            }
                        }
                    };
                    verify(
                        secret.as_deref(),
                        &given,
                        config.clock.now(),
                        config.token_ttl,
                    )
                }
            };

            match verdict {
                Ok(()) => {
                    if let Some(p) = params {
                        parts.extensions.insert(p);
                    }
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(reason) => {
                    tracing::info!(reason = reason.code(), path = %parts.uri.path(), "CSRF check refused a request");
                    let refused = Refused { reason, origin };
                    let mut resp = match params {
                        Some(p) => reshow_form(inner, parts, p, reason).await,
                        None => {
                            ErrorPage::new(StatusCode::FORBIDDEN, reason.message()).into_response()
                        }
                    };
                    resp.extensions_mut().insert(refused);
                    Ok(resp)
                }
            }
        })
    }
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

/// The reason of the refusal being shown, for templates (`csrf_error`).
pub fn rejection_message(extensions: &http::Extensions) -> Option<&'static str> {
    extensions.get::<Rejected>().map(|r| r.reason.message())
}

/// All reasons with their codes, for documentation and reports.
pub fn reasons() -> HashMap<&'static str, &'static str> {
    [
        Reason::Missing,
        Reason::Malformed,
        Reason::Expired,
        Reason::Foreign,
        Reason::CrossSite,
        Reason::BadOrigin,
        Reason::BadReferer,
    ]
    .into_iter()
    .map(|r| (r.code(), r.message()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_token_is_different_and_valid() {
        let secret = [1u8; 32];
        let a = mint(&secret, 100);
        let b = mint(&secret, 100);
        assert_ne!(a, b);
        assert_eq!(verify(Some(&secret), &a, 100, 10), Ok(()));
        assert_eq!(verify(Some(&secret), &b, 100, 10), Ok(()));
        assert!(!a.contains(&b64().encode(secret)));
    }

    #[test]
    fn truncated_and_garbage_tokens_are_malformed() {
        let secret = [1u8; 32];
        let t = mint(&secret, 100);
        assert_eq!(
            verify(Some(&secret), &t[..t.len() - 3], 100, 10),
            Err(Reason::Malformed)
        );
        assert_eq!(
            verify(Some(&secret), "!!!!", 100, 10),
            Err(Reason::Malformed)
        );
        assert_eq!(verify(Some(&secret), "", 100, 10), Err(Reason::Missing));
    }

    #[test]
    fn a_flipped_bit_is_foreign() {
        let secret = [1u8; 32];
        let mut raw = b64().decode(mint(&secret, 100)).unwrap();
        raw[TOKEN_LEN - 1] ^= 1;
        assert_eq!(
            verify(Some(&secret), &b64().encode(raw), 100, 10),
            Err(Reason::Foreign)
        );
    }

    #[test]
    fn token_without_a_session_secret_is_foreign() {
        let t = mint(&[1u8; 32], 100);
        assert_eq!(verify(None, &t, 100, 10), Err(Reason::Foreign));
    }

    #[test]
    fn cross_site_fetch_metadata_is_refused() {
        let c = CsrfConfig::default();
        let h = headers(&[("host", "site.test"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(c.check_source(&h), Err(Reason::CrossSite));
        let h = headers(&[
            ("host", "site.test"),
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://site.test"),
        ]);
        assert_eq!(c.check_source(&h), Ok(()));
    }

    #[test]
    fn origin_must_be_ours_or_trusted() {
        let c = CsrfConfig {
            trusted_origins: vec!["https://*.partner.test".into(), "http://admin.test".into()],
            ..CsrfConfig::default()
        };
        let check =
            |o: &str| c.check_source(&headers(&[("host", "site.test:8000"), ("origin", o)]));
        assert_eq!(check("http://site.test:8000"), Ok(()));
        assert_eq!(check("http://evil.test"), Err(Reason::BadOrigin));
        assert_eq!(check("null"), Err(Reason::BadOrigin));
        assert_eq!(check("https://site.test:8000"), Err(Reason::BadOrigin));
        assert_eq!(check("http://admin.test"), Ok(()));
        assert_eq!(check("https://a.partner.test"), Ok(()));
        assert_eq!(check("https://evilpartner.test"), Err(Reason::BadOrigin));
    }

    #[test]
    fn https_without_origin_needs_a_same_origin_referer() {
        let c = CsrfConfig {
            https: true,
            ..CsrfConfig::default()
        };
        let check = |h: &[(&str, &str)]| c.check_source(&headers(h));
        assert_eq!(check(&[("host", "site.test")]), Err(Reason::BadReferer));
        assert_eq!(
            check(&[("host", "site.test"), ("referer", "https://evil.test/x")]),
            Err(Reason::BadReferer)
        );
        assert_eq!(
            check(&[
                ("host", "site.test"),
                ("referer", "https://site.test/accounts/login/")
            ]),
            Ok(())
        );
    }

    #[test]
    fn exemption_patterns_match_segments() {
        assert!(pattern_matches("/hooks/{name}/", "/hooks/x/"));
        assert!(!pattern_matches("/hooks/{name}/", "/hooks/x/y/"));
        assert!(!pattern_matches("/hooks/{name}/", "/hooks//"));
        assert!(pattern_matches("/static/{*rest}", "/static/a/b.css"));
        assert!(!pattern_matches("/a/", "/b/"));
    }

    #[test]
    fn passwords_are_never_echoed() {
        assert!(is_secret_field("password"));
        assert!(is_secret_field("password2"));
        assert!(is_secret_field(FORM_FIELD));
        assert!(!is_secret_field("username"));
    }
}
