//! CSRF protection, on for every unsafe request, bound to the visitor: to their session once they
//! have one, to a signed cookie before that.
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
//! A visitor with no session (a first look at the login form) is not given one just to hold the
//! secret: it lives in a signed, `HttpOnly` cookie that expires like a token (see [`cookie`] for
//! its format), and that visitor's tokens are good only with that cookie. Which secret counts:
//!
//! - a request whose session cookie names a live session: the session's secret, and only it (a
//!   session without one refuses every token);
//! - any other request: the cookie's secret.
//!
//! When a session begins for a visitor who holds the cookie (the captcha image stores its answer
//! in one), the new session takes the cookie's secret, so the pages already open keep working; the
//! cookie stays, and carries those pages on if that short-lived session expires. A session given a
//! new id (`cycle_id`, at login) or flushed (logout) never takes it, and the cookie is deleted
//! then: a token from before login or logout is refused after it, as with sessions alone.
//!
//! [`CsrfLayer`] checks POST, PUT, PATCH and DELETE. First the browser's word about where the
//! request comes from: an `Origin` in the configured trusted origins is accepted (a trusted origin
//! is another site by definition, so its browser says `Sec-Fetch-Site: cross-site`); otherwise
//! `Sec-Fetch-Site: cross-site` is refused, an `Origin` that is not the site's own is refused
//! (`null` included), and over HTTPS a request with neither header needs a same-origin `Referer`.
//! The site's own origins are the request's scheme and port with the request's host or any host
//! the allowed-hosts list names (not `*`). Then the token, from the form field `csrfmiddlewaretoken`
//! or the `X-CSRFToken` header, compared in constant time. GET, HEAD, OPTIONS and TRACE are never
//! checked and must never change state.
//!
//! A refused request changes nothing: it creates no session and sets or deletes no cookie, so
//! another site's post (which arrives without the visitor's `SameSite` cookies) can neither log the
//! visitor out nor replace their secret. A form post refused for its token is shown again: the
//! layer turns it into a GET of the same page carrying a [`Rejected`] extension (the submitted
//! fields minus passwords, and the reason), and answers the page with status 403. The view's GET
//! handler reads [`Rejected`] through [`Resubmitted`] to fill the form in again; nothing the POST
//! handler would do happens. A post refused for where it came from is not shown again (its fields
//! are another site's): it gets a 403 page that says why.
//!
//! Wrap the whole router with the layer (`ServiceBuilder::new().layer(csrf).service(router)`), not
//! with `Router::layer`, which wraps each handler on its own: the re-shown form needs the router to
//! reach the GET handler.
//!
//! Exemptions are explicit, per route, in code: [`CsrfLayer::exempt`] takes a path pattern, and the
//! route table (`portico routes`) shows it.

pub mod cookie;

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
use crate::hosts::{split_host, AllowedHosts};
use crate::params::{collect_body, form_kind, BodyLimit, Params, QueryDict, DEFAULT_BODY_LIMIT};
use crate::secret::SecretKey;
use crate::session::{self, Session, SessionError, Status};

use cookie::CookieSettings;
pub(crate) use cookie::VisitorSecret;
pub use cookie::{COOKIE_NAME, SECURE_COOKIE_NAME};

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
    /// No session, and no secret cookie either (cookies blocked, or the page is from before a
    /// logout or from long ago).
    NoCookie,
    /// A secret cookie this site did not make: changed, signed with another key, set under
    /// another name, or sent twice.
    BadCookie,
    /// A secret cookie past its lifetime.
    CookieExpired,
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
            Reason::NoCookie => "cookie_missing",
            Reason::BadCookie => "cookie_invalid",
            Reason::CookieExpired => "cookie_expired",
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
            Reason::NoCookie => "This form's security cookie is missing: the form was opened before you logged in or out, or your browser does not keep this site's cookies. Allow cookies for this site, open the page again and send the form from there.",
            Reason::BadCookie => "The security cookie your browser sent is damaged or was not made by this site. Open the page again and send the form from there.",
            Reason::CookieExpired => "This form's security cookie has expired. Check your input, open the page again and send the form from there.",
        }
    }

    /// Whether the refusal is about where the request came from (its fields are then another
    /// page's, so the form is not shown again with them) rather than about its token.
    fn is_about_source(self) -> bool {
        match self {
            Reason::CrossSite | Reason::BadOrigin | Reason::BadReferer => true,
            Reason::Missing
            | Reason::Malformed
            | Reason::Expired
            | Reason::Foreign
            | Reason::NoCookie
            | Reason::BadCookie
            | Reason::CookieExpired => false,
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
    /// The host names the site answers to; an origin on any of them (same scheme and port as
    /// the request) is the site's own.
    pub allowed_hosts: AllowedHosts,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self {
            token_ttl: 12 * 3600,
            trusted_origins: Vec::new(),
            https: false,
            body_limit: DEFAULT_BODY_LIMIT,
            clock: Clock::system(),
            allowed_hosts: AllowedHosts::default(),
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
    let raw = parse(token)?;
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

/// A token's bytes, or why it is not one.
fn parse(token: &str) -> Result<Vec<u8>, Reason> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Reason::Missing);
    }
    let raw = b64().decode(token).map_err(|_| Reason::Malformed)?;
    if raw.len() != TOKEN_LEN {
        return Err(Reason::Malformed);
    }
    Ok(raw)
}

/// Checks `token` against `secret`, or says why there is no secret to check it against. A token
/// that says it is past its lifetime is called expired first: "the form was open too long" is
/// the truer answer for a visitor whose cookie the browser dropped meanwhile.
fn check(secret: Result<&[u8], Reason>, token: &str, now: i64, ttl: i64) -> Result<(), Reason> {
    match secret {
        Ok(secret) => verify(Some(secret), token, now, ttl),
        Err(reason) => {
            let raw = parse(token)?;
            let mut t = [0u8; TIME_LEN];
            t.copy_from_slice(&raw[NONCE_LEN..NONCE_LEN + TIME_LEN]);
            if now - u64::from_be_bytes(t) as i64 > ttl {
                return Err(Reason::Expired);
            }
            Err(reason)
        }
    }
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

/// The secret a page of a live (or starting) session mints its tokens from, made if needed. A
/// session that begins in this request takes the secret the visitor's cookie holds, so that the
/// pages they already have open keep working; any other session gets a secret of its own.
pub(crate) async fn session_secret_for_page(
    session: &Session,
    visitor: Option<&VisitorSecret>,
) -> Result<Vec<u8>, SessionError> {
    if let Some(secret) = session_secret(session).await? {
        return Ok(secret);
    }
    if session.status().await == Status::Started {
        if let Some(secret) = visitor.and_then(VisitorSecret::current) {
            session.insert(SECRET_KEY, &b64().encode(secret)).await?;
            return Ok(secret.to_vec());
        }
    }
    ensure_secret(session).await
}

/// The secret a token of this request must have been minted from, or why there is none: a live
/// session's (only), else the visitor's cookie's.
async fn secret_to_check(
    session: &Session,
    visitor: &VisitorSecret,
) -> Result<Result<Vec<u8>, Reason>, SessionError> {
    if session.cookie_id().await.is_some() {
        if let Some(secret) = session_secret(session).await? {
            return Ok(Ok(secret));
        }
        if session.id().await?.is_some() {
            return Ok(Err(Reason::Foreign));
        }
    }
    Ok(visitor.for_check().map(|s| s.to_vec()))
}

/// On the way out of a request that was not refused: gives a session that begins here the
/// visitor's secret, and sets, renews or deletes the secret cookie.
///
/// The cookie stays while a session holds its very secret (a visitor's short-lived anonymous
/// session: if it expires, the pages they have open still work with the cookie alone), and goes
/// when the session gets a secret of its own: at login (`cycle_id`) and logout (`flush`).
async fn finish(
    visitor: &VisitorSecret,
    session: Option<&Session>,
    resp: &mut Response,
) -> Result<(), SessionError> {
    let status = match session {
        Some(s) => s.status().await,
        None => Status::Untouched,
    };
    match (status, session) {
        // A cookie made before a login in this very request must not outlive it either.
        (Status::Renewed, _) => {
            if visitor.carried() {
                visitor.delete_cookie(resp);
            }
        }
        (Status::Ended, _) => {
            if !visitor.set_cookie(resp) && visitor.carried() {
                visitor.delete_cookie(resp);
            }
        }
        (Status::Started, Some(session)) => {
            if !session.contains(SECRET_KEY).await? {
                if let Some(secret) = visitor.current() {
                    session.insert(SECRET_KEY, &b64().encode(secret)).await?;
                }
            }
            visitor.set_cookie(resp);
        }
        _ => {
            visitor.set_cookie(resp);
        }
    }
    if visitor.used() {
        session::keep_private(resp);
    }
    Ok(())
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
    cookie: Arc<CookieSettings>,
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
        let cookie = CookieSettings::new(key, config.https, config.token_ttl);
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
            self.config.token_ttl,
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

/// An origin's parts: scheme, host (lower case, no trailing dot) and port (the scheme's default
/// when absent).
fn split_origin(origin: &str) -> Option<(&str, &str, u16)> {
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = split_host(authority)?;
    Some((scheme, host, port.unwrap_or(default_port)))
}

impl CsrfConfig {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// Whether `origin` (lower case) is the site's own: the request's scheme and port, and the
    /// request's host or a host the allowed-hosts list names.
    fn is_own(&self, origin: &str, headers: &http::HeaderMap) -> bool {
        let Some(host_header) = header_str(headers, header::HOST) else {
            return false;
        };
        let host_header = host_header.to_ascii_lowercase();
        let scheme = self.scheme();
        let default_port = if self.https { 443 } else { 80 };
        let (Some((req_host, req_port)), Some((o_scheme, o_host, o_port))) =
            (split_host(&host_header), split_origin(origin))
        else {
            return false;
        };
        o_scheme == scheme
            && o_port == req_port.unwrap_or(default_port)
            && (o_host == req_host || self.allowed_hosts.names(o_host))
    }

    /// Whether `origin` (lower case) is one of the configured trusted origins.
    fn is_trusted(&self, origin: &str) -> bool {
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
        let origin = header_str(headers, header::ORIGIN).map(|o| o.trim().to_ascii_lowercase());
        // The operator's list outranks the browser's label: a trusted origin is another site, so
        // its requests always arrive marked cross-site.
        if origin
            .as_deref()
            .is_some_and(|o| o != "null" && self.is_trusted(o))
        {
            return Ok(());
        }
        if header_str(headers, "sec-fetch-site")
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
        {
            return Err(Reason::CrossSite);
        }
        if let Some(origin) = origin {
            if origin == "null" || !self.is_own(&origin, headers) {
                return Err(Reason::BadOrigin);
            }
            return Ok(());
        }
        if self.https {
            let referer_origin = header_str(headers, header::REFERER).and_then(origin_of_url);
            match referer_origin {
                Some(r) if self.is_own(&r, headers) || self.is_trusted(&r) => {}
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
            let config = &layer.config;
            let visitor =
                VisitorSecret::new(layer.cookie.clone(), req.headers(), config.clock.now());
            let mut req = req;
            req.extensions_mut().insert(visitor.clone());
            let session = req.extensions().get::<Session>().cloned();
            if !is_unsafe(req.method()) || layer.is_exempt(req.uri().path()) {
                let mut resp = inner.call(req).await?;
                if let Err(e) = finish(&visitor, session.as_ref(), &mut resp).await {
                    return Ok(e.into_response());
                }
                return Ok(resp);
            }
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

            let Some(session) = session else {
                tracing::error!("CsrfLayer runs without SessionLayer outside it");
                return Ok(ErrorPage::internal()
                .into_response());
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
                    // Only a token worth checking costs a look at the session.
                    match parse(&given) {
                        Err(r) => Err(r),
                        Ok(_) => match secret_to_check(&session, &visitor).await {
                            Ok(secret) => check(
                                secret.as_deref().map_err(|r| *r),
                                &given,
                                config.clock.now(),
                                config.token_ttl,
                            ),
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
                        },
                    }
                }
            };

            match verdict {
                Ok(()) => {
                    if let Some(p) = params {
                        parts.extensions.insert(p);
                    }
                    let mut resp = inner.call(Request::from_parts(parts, body)).await?;
                    if let Err(e) = finish(&visitor, Some(&session), &mut resp).await {
                        return Ok(e.into_response());
                    }
                    Ok(resp)
                }
                Err(reason) => {
                    tracing::info!(reason = reason.code(), path = %parts.uri.path(), "CSRF check refused a request");
                    let refused = Refused { reason, origin };
                    // Nothing of this request may reach the store or a cookie: a post from
                    // another site arrives without the visitor's cookies, and an answer that set
                    // one would replace theirs.
                    session.discard_writes().await;
                    let mut resp = match params {
                        Some(p) if !reason.is_about_source() => {
                            reshow_form(inner, parts, p, reason).await
                        }
                        _ => {
                            ErrorPage::new(StatusCode::FORBIDDEN, reason.message()).into_response()
                        }
                    };
                    if visitor.used() {
                        session::keep_private(&mut resp);
                    }
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
        Reason::NoCookie,
        Reason::BadCookie,
        Reason::CookieExpired,
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
    fn without_a_secret_an_old_token_is_expired_and_a_fresh_one_says_why() {
        let t = mint(&[1u8; 32], 100);
        assert_eq!(
            check(Err(Reason::NoCookie), &t, 111, 10),
            Err(Reason::Expired)
        );
        assert_eq!(
            check(Err(Reason::NoCookie), &t, 105, 10),
            Err(Reason::NoCookie)
        );
        assert_eq!(
            check(Err(Reason::BadCookie), &t, 105, 10),
            Err(Reason::BadCookie)
        );
        assert_eq!(
            check(Err(Reason::NoCookie), "", 105, 10),
            Err(Reason::Missing)
        );
        assert_eq!(
            check(Err(Reason::NoCookie), "x!", 105, 10),
            Err(Reason::Malformed)
        );
        assert_eq!(check(Ok(&[1u8; 32]), &t, 105, 10), Ok(()));
        assert_eq!(check(Ok(&[2u8; 32]), &t, 105, 10), Err(Reason::Foreign));
    }

    #[test]
    fn every_reason_has_its_own_code_and_a_message() {
        let all = reasons();
        assert_eq!(all.len(), 10);
        assert!(all.values().all(|m| m.ends_with('.')));
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
    fn trusted_origin_is_accepted_even_when_marked_cross_site() {
        let c = CsrfConfig {
            trusted_origins: vec!["https://admin.partner.test".into()],
            ..CsrfConfig::default()
        };
        let h = headers(&[
            ("host", "site.test"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://admin.partner.test"),
        ]);
        assert_eq!(c.check_source(&h), Ok(()));
        let h = headers(&[
            ("host", "site.test"),
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.test"),
        ]);
        assert_eq!(c.check_source(&h), Err(Reason::CrossSite));
    }

    #[test]
    fn origins_on_allowed_hosts_are_own_but_any_host_is_not() {
        let c = CsrfConfig {
            allowed_hosts: AllowedHosts::parse(["*", ".portico.test"]).unwrap(),
            ..CsrfConfig::default()
        };
        let check = |o: &str| {
            c.check_source(&headers(&[
                ("host", "news.portico.test:8080"),
                ("origin", o),
            ]))
        };
        assert_eq!(check("http://news.portico.test:8080"), Ok(()));
        assert_eq!(check("http://sports.portico.test:8080"), Ok(()));
        assert_eq!(
            check("http://sports.portico.test:9090"),
            Err(Reason::BadOrigin)
        );
        assert_eq!(
            check("https://sports.portico.test:8080"),
            Err(Reason::BadOrigin)
        );
        assert_eq!(check("http://evil.test:8080"), Err(Reason::BadOrigin));
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
