//! Cookies for views: read the request's, set and delete on the response, and signed values that
//! can't be forged.
//!
//! A view takes a [`Cookies`] argument. Reading looks at the request's `Cookie` header; writing is
//! recorded and turned into `Set-Cookie` headers by [`CookieLayer`] on the way out, so a view that
//! returns any response at all (a template, a redirect) still sets its cookies. Signed cookies use
//! the `cookie` crate's HMAC-SHA256 jar with a key derived from the site's secret key: a tampered
//! value, or one signed by another site, reads as absent, never as a value.
//!
//! This module does not hold the session cookie: the session layer owns that one.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, Request, StatusCode};
use axum::response::Response;
use futures_util::future::BoxFuture;

pub use cookie::{Cookie, SameSite};

use crate::error::ErrorPage;
use crate::secret::SecretKey;

/// Site-wide defaults every cookie set through [`Cookies`] starts from.
#[derive(Debug, Clone, Default)]
pub struct CookieDefaults {
    /// `Domain` attribute, e.g. `.example.test` to share cookies with sub-domains.
    pub domain: Option<String>,
    /// Whether cookies get the `Secure` attribute.
    pub secure: bool,
}

struct Inner {
    jar: cookie::CookieJar,
}

/// The cookies of one request and the changes a view makes to them.
///
/// ```
/// use portico::cookies::{Cookie, Cookies};
/// async fn remember(cookies: Cookies) -> &'static str {
///     let seen = cookies.get("username");
///     cookies.set_cookie(Cookie::build(("username", "ada")).max_age(time::Duration::days(30)));
///     cookies.set_signed_cookie(Cookie::new("plan", "pro"));
///     if seen.is_some() { "welcome back" } else { "hello" }
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(remember));
/// ```
#[derive(Clone)]
pub struct Cookies {
    inner: Arc<Mutex<Inner>>,
    key: Arc<cookie::Key>,
    defaults: Arc<CookieDefaults>,
}

impl std::fmt::Debug for Cookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookies").finish_non_exhaustive()
    }
}

impl Cookies {
    fn new(
        headers: &http::HeaderMap,
        key: Arc<cookie::Key>,
        defaults: Arc<CookieDefaults>,
    ) -> Self {
        let mut jar = cookie::CookieJar::new();
        for value in headers.get_all(header::COOKIE) {
            let Ok(s) = value.to_str() else { continue };
            for c in Cookie::split_parse_encoded(s.to_owned()).flatten() {
                jar.add_original(c.into_owned());
            }
        }
        Self {
            inner: Arc::new(Mutex::new(Inner { jar })),
            key,
            defaults,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding this lock can only come from the cookie crate's own code; the jar
        // is still consistent then, so a poisoned lock is recovered rather than propagated.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The value of a cookie the request carries (or that this request has set).
    pub fn get(&self, name: &str) -> Option<String> {
        self.with(|i| i.jar.get(name).map(|c| c.value().to_string()))
    }

    fn apply_defaults(&self, mut c: Cookie<'static>) -> Cookie<'static> {
        if c.path().is_none() {
            c.set_path("/");
        }
        if c.domain().is_none() {
            if let Some(d) = &self.defaults.domain {
                c.set_domain(d.clone());
            }
        }
        if c.secure().is_none() && self.defaults.secure {
            c.set_secure(true);
        }
        if c.same_site().is_none() {
            c.set_same_site(SameSite::Lax);
        }
        c
    }

    /// Sets a cookie on the response. `Path=/`, `SameSite=Lax`, the site's `Domain` and `Secure`
    /// apply unless the cookie says otherwise; max-age, expires and `HttpOnly` are the caller's.
    pub fn set_cookie(&self, cookie: impl Into<Cookie<'static>>) {
        let c = self.apply_defaults(cookie.into());
        self.with(|i| i.jar.add(c));
    }

    /// Tells the browser to drop a cookie (same path and domain rules as [`Cookies::set_cookie`]).
    pub fn delete_cookie(&self, name: &str) {
        let c = self.apply_defaults(Cookie::new(name.to_string(), ""));
        self.with(|i| i.jar.remove(c));
    }

    /// Sets a cookie whose value is signed with the site's key.
    pub fn set_signed_cookie(&self, cookie: impl Into<Cookie<'static>>) {
        let c = self.apply_defaults(cookie.into());
        self.with(|i| i.jar.signed_mut(&self.key).add(c));
    }

    /// The verified value of a signed cookie; absent when missing, tampered or signed elsewhere.
    pub fn get_signed(&self, name: &str) -> Option<String> {
        self.with(|i| {
            i.jar
                .signed(&self.key)
                .get(name)
                .map(|c| c.value().to_string())
        })
    }

    fn set_cookie_headers(&self) -> Vec<HeaderValue> {
        self.with(|i| {
            i.jar
                .delta()
                .filter_map(|c| HeaderValue::from_str(&c.encoded().to_string()).ok())
                .collect()
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Cookies {
    type Rejection = ErrorPage;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Cookies>().cloned().ok_or_else(|| {
            tracing::error!("Cookies used on a route without CookieLayer");
            ErrorPage::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorPage::default_message(StatusCode::INTERNAL_SERVER_ERROR),
            )
        })
    }
}

/// The layer that gives views [`Cookies`] and writes their changes as `Set-Cookie` headers.
#[derive(Clone)]
pub struct CookieLayer {
    key: Arc<cookie::Key>,
    defaults: Arc<CookieDefaults>,
}

impl CookieLayer {
    /// A layer signing with a key derived from `secret`.
    pub fn new(secret: &SecretKey, defaults: CookieDefaults) -> Self {
        let key = cookie::Key::derive_from(&secret.derive("portico.cookies.signing"));
        Self {
            key: Arc::new(key),
            defaults: Arc::new(defaults),
        }
    }
}

impl<S> tower::Layer<S> for CookieLayer {
    type Service = CookieService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CookieService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`CookieLayer`].
#[derive(Clone)]
pub struct CookieService<S> {
    inner: S,
    layer: CookieLayer,
}

impl<S, B> tower::Service<Request<B>> for CookieService<S>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let cookies = Cookies::new(
            req.headers(),
            self.layer.key.clone(),
            self.layer.defaults.clone(),
        );
        req.extensions_mut().insert(cookies.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            for v in cookies.set_cookie_headers() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies_from(header_value: &str, secret: &SecretKey) -> Cookies {
        let mut h = http::HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(header_value).unwrap());
        let layer = CookieLayer::new(secret, CookieDefaults::default());
        Cookies::new(&h, layer.key, layer.defaults)
    }

    fn signed_value(secret: &SecretKey, name: &str, value: &str) -> String {
        let c = cookies_from("x=1", secret);
        c.set_signed_cookie(Cookie::new(name.to_string(), value.to_string()));
        let header = c.set_cookie_headers().remove(0);
        let parsed = Cookie::parse_encoded(header.to_str().unwrap().to_string()).unwrap();
        parsed.value().to_string()
    }

    #[test]
    fn reads_plain_cookies_and_records_changes() {
        let c = cookies_from("username=ada; theme=dark", &SecretKey::from_bytes([7; 64]));
        assert_eq!(c.get("username").as_deref(), Some("ada"));
        assert_eq!(c.get("nope"), None);
        c.set_cookie(
            Cookie::build(("username", "bob"))
                .max_age(time::Duration::days(30))
                .http_only(true),
        );
        c.delete_cookie("theme");
        let headers: Vec<String> = c
            .set_cookie_headers()
            .iter()
            .map(|h| h.to_str().unwrap().to_string())
            .collect();
        let set = headers
            .iter()
            .find(|h| h.starts_with("username=bob"))
            .unwrap();
        assert!(set.contains("Max-Age=2592000"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("Path=/") && set.contains("SameSite=Lax"),
            "{set}"
        );
        let del = headers.iter().find(|h| h.starts_with("theme=")).unwrap();
        assert!(del.contains("Max-Age=0"), "{del}");
    }

    #[test]
    fn domain_and_secure_defaults_apply() {
        let mut h = http::HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let layer = CookieLayer::new(
            &SecretKey::from_bytes([1; 64]),
            CookieDefaults {
                domain: Some(".example.test".into()),
                secure: true,
            },
        );
        let c = Cookies::new(&h, layer.key, layer.defaults);
        c.set_cookie(Cookie::new("k", "v"));
        let v = c.set_cookie_headers()[0].to_str().unwrap().to_string();
        assert!(
            v.contains("Domain=example.test") || v.contains("Domain=.example.test"),
            "{v}"
        );
        assert!(v.contains("Secure"), "{v}");
    }

    #[test]
    fn signed_cookie_round_trips() {
        let secret = SecretKey::from_bytes([3; 64]);
        let value = signed_value(&secret, "plan", "pro");
        assert_ne!(value, "pro");
        let c = cookies_from(&format!("plan={value}"), &secret);
        assert_eq!(c.get_signed("plan").as_deref(), Some("pro"));
    }

    #[test]
    fn tampered_signed_cookie_reads_as_absent() {
        let secret = SecretKey::from_bytes([3; 64]);
        let value = signed_value(&secret, "plan", "pro");
        let forged = value.replace("pro", "max");
        let c = cookies_from(&format!("plan={forged}"), &secret);
        assert_eq!(c.get_signed("plan"), None);
        let c = cookies_from("plan=pro", &secret);
        assert_eq!(c.get_signed("plan"), None);
    }

    #[test]
    fn cookie_signed_by_another_site_reads_as_absent() {
        let value = signed_value(&SecretKey::from_bytes([3; 64]), "plan", "pro");
        let c = cookies_from(&format!("plan={value}"), &SecretKey::from_bytes([4; 64]));
        assert_eq!(c.get_signed("plan"), None);
    }
}
