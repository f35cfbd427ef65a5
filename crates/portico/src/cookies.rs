//! Cookies for views: read the request's, set and delete on the response, and signed values that
//! can't be forged.
//!
//! A view takes a [`Cookies`] argument. Reading looks at the request's `Cookie` header; writing is
//! recorded and turned into `Set-Cookie` headers by [`CookieLayer`] on the way out, so a view that
//! returns any response at all (a template, a redirect) still sets its cookies.
//!
//! A signed cookie's value is `value.TAG`, where `TAG` is base64url of the issue time (8 bytes)
//! and an HMAC-SHA256 (with a key derived from the site's secret key) over the cookie's **name**,
//! the issue time and the value. So a tampered value, one signed by another site, one copied from
//! another cookie's name, or one older than its max age reads as absent, never as a value (Django's
//! `get_signed_cookie` with its salt and `max_age`). The `cookie` crate's signed jar is not used
//! because it signs the value alone. Old secret keys listed with [`CookieLayer::fallbacks`] still
//! verify, so a key can be rotated without logging everybody's cookies out; new values are always
//! signed with the current key.
//!
//! This module does not hold the session cookie: the session layer owns that one.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, Request};
use axum::response::Response;
use base64::Engine;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use cookie::{Cookie, SameSite};

use crate::clock::Clock;
use crate::secret::SecretKey;

/// How long a signed cookie verifies after it was issued, unless a read asks otherwise
/// ([`Cookies::get_signed_max_age`]): two weeks, the lifetime of an idle session.
pub const DEFAULT_SIGNED_MAX_AGE: time::Duration = time::Duration::weeks(2);
/// A signed value may claim an issue time this far ahead of this server's clock (clock skew
/// between servers); further ahead, it reads as absent.
const MAX_SKEW_SECS: i64 = 300;
const TIME_LEN: usize = 8;
const MAC_LEN: usize = 32;

/// Site-wide defaults every cookie set through [`Cookies`] starts from.
#[derive(Debug, Clone, Default)]
pub struct CookieDefaults {
    /// `Domain` attribute, e.g. `.example.test` to share cookies with sub-domains.
    pub domain: Option<String>,
    /// Whether cookies get the `Secure` attribute.
    pub secure: bool,
    /// The clock signed values are dated and checked by (the system's by default; a test sets a
    /// manual one and moves it).
    pub clock: Clock,
}

/// The keys of signed cookies: the current one signs, every one verifies.
struct SigningKeys {
    keys: Vec<[u8; 64]>,
    clock: Clock,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn mac(key: &[u8], name: &str, issued: &[u8; TIME_LEN], value: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"portico.cookie.v2");
    // The name's length first, so that no name/value split can be shifted into another.
    mac.update(&(name.len() as u64).to_be_bytes());
    mac.update(name.as_bytes());
    mac.update(issued);
    mac.update(value.as_bytes());
    mac
}

impl SigningKeys {
    fn from_secrets(current: &SecretKey, fallbacks: &[SecretKey], clock: Clock) -> Self {
        let keys = std::iter::once(current)
            .chain(fallbacks)
            .map(|k| k.derive("portico.cookies.signing"))
            .collect();
        Self { keys, clock }
    }

    /// `value.TAG`, signed with the current key at the clock's time.
    fn sign(&self, name: &str, value: &str) -> String {
        let issued = (self.clock.now() as u64).to_be_bytes();
        let tag = mac(&self.keys[0], name, &issued, value)
            .finalize()
            .into_bytes();
        let mut raw = [0u8; TIME_LEN + MAC_LEN];
        raw[..TIME_LEN].copy_from_slice(&issued);
        raw[TIME_LEN..].copy_from_slice(&tag);
        format!("{value}.{}", b64().encode(raw))
    }

    /// The value of a signed cookie named `name` if any key verifies it and it is not older than
    /// `max_age`.
    fn verify(&self, name: &str, signed: &str, max_age: time::Duration) -> Option<String> {
        let (value, tag) = signed.rsplit_once('.')?;
        let raw = b64().decode(tag).ok()?;
        if raw.len() != TIME_LEN + MAC_LEN {
            return None;
        }
        let (issued, given) = raw.split_at(TIME_LEN);
        let issued: [u8; TIME_LEN] = issued.try_into().ok()?;
        // verify_slice compares in constant time.
        let good = self
            .keys
            .iter()
            .any(|k| mac(k, name, &issued, value).verify_slice(given).is_ok());
        if !good {
            return None;
        }
        let issued_at = i64::try_from(u64::from_be_bytes(issued)).ok()?;
        let now = self.clock.now();
        if issued_at > now + MAX_SKEW_SECS || now - issued_at > max_age.whole_seconds() {
            return None;
        }
        Some(value.to_string())
    }
}

/// Every cookie of a request's `Cookie` headers, in order and duplicates included, percent-decoded.
/// A header that is not text, or a pair that does not parse, is skipped. This is the one place
/// Portico parses `Cookie` headers, so the session layer, the event log and [`Cookies`] agree on
/// what a request carries.
pub(crate) fn request_cookies(
    headers: &http::HeaderMap,
) -> impl Iterator<Item = Cookie<'static>> + '_ {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|s| Cookie::split_parse_encoded(s.to_owned()).flatten())
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
    keys: Arc<SigningKeys>,
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
        keys: Arc<SigningKeys>,
        defaults: Arc<CookieDefaults>,
    ) -> Self {
        let mut jar = cookie::CookieJar::new();
        for c in request_cookies(headers) {
            jar.add_original(c);
        }
        Self {
            inner: Arc::new(Mutex::new(Inner { jar })),
            keys,
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

    /// Sets a cookie whose value is signed with the site's key, bound to the cookie's name and
    /// dated now.
    pub fn set_signed_cookie(&self, cookie: impl Into<Cookie<'static>>) {
        let mut c = self.apply_defaults(cookie.into());
        let signed = self.keys.sign(c.name(), c.value());
        c.set_value(signed);
        self.with(|i| i.jar.add(c));
    }

    /// The verified value of a signed cookie issued at most [`DEFAULT_SIGNED_MAX_AGE`] ago;
    /// absent when missing, tampered, signed elsewhere or for another name, or too old.
    ///
    /// # Errors
    ///
    /// Returns `None` for every one of those cases alike, so a forged cookie cannot learn which
    /// check it failed: treat it as a cookie never sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::cookies::{Cookie, Cookies};
    /// async fn remember(cookies: Cookies) {
    ///     cookies.set_signed_cookie(Cookie::new("visitor", "ada"));
    /// }
    /// async fn greet(cookies: Cookies) -> String {
    ///     cookies.get_signed("visitor").unwrap_or_else(|| "stranger".into())
    /// }
    /// # let _ = axum::Router::<()>::new()
    /// #     .route("/", axum::routing::get(greet).post(remember));
    /// ```
    pub fn get_signed(&self, name: &str) -> Option<String> {
        self.get_signed_max_age(name, DEFAULT_SIGNED_MAX_AGE)
    }

    /// The verified value of a signed cookie issued at most `max_age` ago.
    ///
    /// # Errors
    ///
    /// Returns `None` when the cookie is missing, tampered, signed with another key or for another
    /// name, or older than `max_age`; the cases are not told apart.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::cookies::Cookies;
    /// async fn plan(cookies: Cookies) -> String {
    ///     cookies.get_signed_max_age("plan", time::Duration::hours(1)).unwrap_or_default()
    /// }
    /// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(plan));
    /// ```
    pub fn get_signed_max_age(&self, name: &str, max_age: time::Duration) -> Option<String> {
        let raw = self.get(name)?;
        self.keys.verify(name, &raw, max_age)
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
    type Rejection = crate::error::MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        crate::error::MissingLayer::take(&parts.extensions, "CookieLayer")
    }
}

/// The layer that gives views [`Cookies`] and writes their changes as `Set-Cookie` headers.
#[derive(Clone)]
pub struct CookieLayer {
    keys: Arc<SigningKeys>,
    defaults: Arc<CookieDefaults>,
}

// The signing keys never appear in a log line.
impl std::fmt::Debug for CookieLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieLayer").finish_non_exhaustive()
    }
}

impl CookieLayer {
    /// A layer signing with a key derived from `secret`, dating signed values by
    /// `defaults.clock`.
    pub fn new(secret: &SecretKey, defaults: CookieDefaults) -> Self {
        Self {
            keys: Arc::new(SigningKeys::from_secrets(
                secret,
                &[],
                defaults.clock.clone(),
            )),
            defaults: Arc::new(defaults),
        }
    }

    /// The same layer that also verifies values signed under `old` keys (newest first), e.g.
    /// the keys of `PORTICO_SECRET_KEY_FALLBACKS` while a new key is rolled out. Values are still
    /// signed with the current key only.
    ///
    /// ```
    /// use portico::cookies::{CookieDefaults, CookieLayer};
    /// use portico::secret::SecretKey;
    /// let (new, old) = (SecretKey::generate(), SecretKey::generate());
    /// let layer = CookieLayer::new(&new, CookieDefaults::default()).fallbacks(&new, &[old]);
    /// # let _ = layer;
    /// ```
    pub fn fallbacks(self, current: &SecretKey, old: &[SecretKey]) -> Self {
        let clock = self.keys.clock.clone();
        Self {
            keys: Arc::new(SigningKeys::from_secrets(current, old, clock)),
            defaults: self.defaults,
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

impl<S> std::fmt::Debug for CookieService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieService").finish_non_exhaustive()
    }
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
            self.layer.keys.clone(),
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
        cookies_with(
            header_value,
            &CookieLayer::new(secret, CookieDefaults::default()),
        )
    }

    fn cookies_with(header_value: &str, layer: &CookieLayer) -> Cookies {
        let mut h = http::HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(header_value).unwrap());
        Cookies::new(&h, layer.keys.clone(), layer.defaults.clone())
    }

    fn signed_with(layer: &CookieLayer, name: &str, value: &str) -> String {
        let c = cookies_with("x=1", layer);
        c.set_signed_cookie(Cookie::new(name.to_string(), value.to_string()));
        let header = c.set_cookie_headers().remove(0);
        let parsed = Cookie::parse_encoded(header.to_str().unwrap().to_string()).unwrap();
        parsed.value().to_string()
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
                ..CookieDefaults::default()
            },
        );
        let c = Cookies::new(&h, layer.keys, layer.defaults);
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

    #[test]
    fn value_signed_for_one_name_reads_as_absent_under_another() {
        let secret = SecretKey::from_bytes([3; 64]);
        let value = signed_value(&secret, "a", "admin");
        let c = cookies_from(&format!("a={value}; b={value}"), &secret);
        assert_eq!(c.get_signed("a").as_deref(), Some("admin"));
        assert_eq!(c.get_signed("b"), None);
    }

    fn layer_dated_by(clock: &Clock) -> CookieLayer {
        let defaults = CookieDefaults {
            clock: clock.clone(),
            ..CookieDefaults::default()
        };
        CookieLayer::new(&SecretKey::from_bytes([3; 64]), defaults)
    }

    #[test]
    fn value_past_its_max_age_reads_as_absent() {
        let clock = Clock::manual(1_700_000_000);
        let layer = layer_dated_by(&clock);
        let value = signed_with(&layer, "plan", "pro");
        let c = cookies_with(&format!("plan={value}"), &layer);
        assert_eq!(c.get_signed("plan").as_deref(), Some("pro"));
        clock.advance(3600);
        let c = cookies_with(&format!("plan={value}"), &layer);
        assert_eq!(
            c.get_signed_max_age("plan", time::Duration::minutes(59)),
            None
        );
        assert_eq!(
            c.get_signed_max_age("plan", time::Duration::minutes(61))
                .as_deref(),
            Some("pro")
        );
        clock.advance(DEFAULT_SIGNED_MAX_AGE.whole_seconds());
        let c = cookies_with(&format!("plan={value}"), &layer);
        assert_eq!(c.get_signed("plan"), None);
    }

    #[test]
    fn value_dated_in_the_future_reads_as_absent() {
        let clock = Clock::manual(1_700_000_000);
        let layer = layer_dated_by(&clock);
        let value = signed_with(
            &layer_dated_by(&Clock::manual(1_700_100_000)),
            "plan",
            "pro",
        );
        let c = cookies_with(&format!("plan={value}"), &layer);
        assert_eq!(c.get_signed("plan"), None);
    }

    #[test]
    fn old_key_verifies_only_when_listed_as_a_fallback() {
        let old = SecretKey::from_bytes([5; 64]);
        let new = SecretKey::from_bytes([6; 64]);
        let value = signed_value(&old, "plan", "pro");
        let without = CookieLayer::new(&new, CookieDefaults::default());
        let c = cookies_with(&format!("plan={value}"), &without);
        assert_eq!(c.get_signed("plan"), None);
        let with = CookieLayer::new(&new, CookieDefaults::default())
            .fallbacks(&new, std::slice::from_ref(&old));
        let c = cookies_with(&format!("plan={value}"), &with);
        assert_eq!(c.get_signed("plan").as_deref(), Some("pro"));
        // New values are signed with the current key: they verify without the fallback.
        let fresh = signed_with(&with, "plan", "max");
        let c = cookies_with(&format!("plan={fresh}"), &without);
        assert_eq!(c.get_signed("plan").as_deref(), Some("max"));
    }
}
