//! The CSRF secret of a visitor who has no session yet, kept in a signed cookie.
//!
//! Showing a form needs a secret to mint its token from. A visitor with a session keeps it in the
//! session; a visitor without one (a first visit to the login page) would need a stored session
//! just for that, written to the store and kept for its whole idle timeout, for every bot that
//! fetches a form. Instead such a visitor's secret travels in a cookie:
//!
//! ```text
//! csrfsecret = base64url( secret (32 bytes) ‖ issue time (8, big-endian seconds)
//!                         ‖ HMAC-SHA256(key, label ‖ cookie name ‖ secret ‖ issue time) )
//! ```
//!
//! - The key is derived from the site's secret key under its own label, so no other value the
//!   site signs verifies as this cookie; the MAC covers the cookie's name, so a value set under
//!   one name is refused under another, and the issue time, so the cookie expires on the server
//!   whatever the browser keeps.
//! - `HttpOnly`, `SameSite=Lax`, `Path=/`, never a `Domain`: a sibling sub-domain cannot plant one
//!   (which would let it know the secret of the tokens it then makes the visitor post). Over HTTPS
//!   the name is `__Host-csrfsecret`, which browsers accept only from a secure page of this very
//!   host.
//! - The cookie is accepted for the token lifetime plus a quarter of it (15 h by default) and is
//!   renewed, with the same secret and a new issue time, on a page that mints a token from it once
//!   it is older than a quarter of the token lifetime: every token it signed stays good for its
//!   full lifetime, and the browser drops the cookie soon after the visitor stops coming.
//! - Tokens are minted from this secret exactly as from a session's ([`super::mint`]): masked with
//!   a fresh nonce, dated and signed, never showing the secret. A token is good only with the
//!   cookie of the browser whose page it came from.
//!
//! The layer ([`super::CsrfLayer`]) reads the cookie and sets, renews or deletes it; templates get
//! the secret through `VisitorSecret`, which the layer puts in every request. While a session
//! lives its secret is the only one that counts, and login and logout delete the cookie (see the
//! module docs of [`super`]).
//!
//! The MAC is written here rather than taken from [`crate::cookies`]' signed jar: this value has
//! to carry its issue time and bind its cookie's name, it is set by the layer rather than by a
//! view, and keeping its format here keeps it independent of the format of the site's other
//! signed cookies.

use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Reason, MAX_SKEW};

/// The cookie's name over plain HTTP.
pub const COOKIE_NAME: &str = "csrfsecret";
/// The cookie's name when the site is served over HTTPS.
pub const SECURE_COOKIE_NAME: &str = "__Host-csrfsecret";

/// Bytes of a secret (as many as a session's).
pub(crate) const SECRET_LEN: usize = 32;
const TIME_LEN: usize = 8;
const MAC_LEN: usize = 32;
const VALUE_LEN: usize = SECRET_LEN + TIME_LEN + MAC_LEN;
const LABEL: &[u8] = b"portico.csrf.cookie.v1";
/// The label under which the cookie's key is derived from the site's secret key.
pub(crate) const KEY_LABEL: &str = "portico.csrf.cookie";

/// A visitor's secret.
pub(crate) type Secret = [u8; SECRET_LEN];

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// How the layer signs, names and dates the cookie.
pub(crate) struct CookieSettings {
    key: [u8; 64],
    https: bool,
    /// The token lifetime; the cookie lives a quarter longer.
    token_ttl: i64,
}

impl CookieSettings {
    pub(crate) fn new(key: [u8; 64], https: bool, token_ttl: i64) -> Self {
        Self {
            key,
            https,
            token_ttl: token_ttl.max(0),
        }
    }

    /// `__Host-csrfsecret` over HTTPS, `csrfsecret` otherwise.
    pub(crate) fn name(&self) -> &'static str {
        if self.https {
            SECURE_COOKIE_NAME
        } else {
            COOKIE_NAME
        }
    }

    /// Seconds after which a page renews the cookie.
    fn renew_after(&self) -> i64 {
        self.token_ttl / 4
    }

    /// Seconds the cookie is accepted after its issue time.
    fn lifetime(&self) -> i64 {
        self.token_ttl + self.renew_after()
    }

    fn mac(&self, name: &str, secret: &[u8], issued: &[u8]) -> [u8; MAC_LEN] {
        // HMAC takes keys of any length, so new_from_slice cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(LABEL);
        // The name's length first, so no two (name, value) pairs feed the MAC the same bytes.
        mac.update(&[name.len().min(255) as u8]);
        mac.update(name.as_bytes());
        mac.update(secret);
        mac.update(issued);
        mac.finalize().into_bytes().into()
    }

    /// The cookie value carrying `secret`, issued at `issued`.
    pub(crate) fn seal(&self, secret: &Secret, issued: i64) -> String {
        let mut raw = [0u8; VALUE_LEN];
        raw[..SECRET_LEN].copy_from_slice(secret);
        raw[SECRET_LEN..SECRET_LEN + TIME_LEN].copy_from_slice(&(issued as u64).to_be_bytes());
        let mac = self.mac(
            self.name(),
            &raw[..SECRET_LEN],
            &raw[SECRET_LEN..SECRET_LEN + TIME_LEN],
        );
        raw[SECRET_LEN + TIME_LEN..].copy_from_slice(&mac);
        b64().encode(raw)
    }

    /// The secret and issue time of a cookie value read under this layer's name at `now`.
    pub(crate) fn open(&self, value: &str, now: i64) -> Result<(Secret, i64), Reason> {
        let raw = b64().decode(value.trim()).map_err(|_| Reason::BadCookie)?;
        if raw.len() != VALUE_LEN {
            return Err(Reason::BadCookie);
        }
        let (secret, rest) = raw.split_at(SECRET_LEN);
        let (issued, given) = rest.split_at(TIME_LEN);
        let expected = self.mac(self.name(), secret, issued);
        if !bool::from(expected.ct_eq(given)) {
            return Err(Reason::BadCookie);
        }
        let mut t = [0u8; TIME_LEN];
        t.copy_from_slice(issued);
        let issued = u64::from_be_bytes(t) as i64;
        if issued > now + MAX_SKEW {
            return Err(Reason::BadCookie);
        }
        if now - issued > self.lifetime() {
            return Err(Reason::CookieExpired);
        }
        let mut out = [0u8; SECRET_LEN];
        out.copy_from_slice(secret);
        Ok((out, issued))
    }

    fn header(&self, value: Option<String>) -> Option<HeaderValue> {
        let removal = value.is_none();
        let mut c = cookie::Cookie::new(self.name(), value.unwrap_or_default());
        c.set_path("/");
        c.set_http_only(true);
        c.set_same_site(cookie::SameSite::Lax);
        if self.https {
            c.set_secure(true);
        }
        if removal {
            c.make_removal();
        } else {
            c.set_max_age(time::Duration::seconds(self.lifetime()));
        }
        HeaderValue::from_str(&c.to_string()).ok()
    }
}

/// What the request's `Cookie` headers hold under the cookie's name.
enum Carried {
    None,
    One(String),
    /// Two or more: one of them may have been planted; none is trusted.
    Several,
}

fn carried(headers: &HeaderMap, name: &str) -> Carried {
    let mut found = Carried::None;
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|pair| pair.trim().split_once('='));
    for (n, v) in pairs {
        if n == name {
            found = match found {
                Carried::None => Carried::One(v.to_string()),
                _ => Carried::Several,
            };
        }
    }
    found
}

#[derive(Default)]
struct Outgoing {
    /// A secret made in this request (the visitor had no usable cookie).
    fresh: Option<Secret>,
    /// The carried cookie is old enough to be renewed.
    renew: bool,
    /// A page of this response carries a token minted from the cookie's secret.
    used: bool,
}

struct Visit {
    settings: Arc<CookieSettings>,
    now: i64,
    carried: Carried,
    /// The carried cookie, checked once when first needed.
    opened: OnceLock<Result<(Secret, i64), Reason>>,
    out: Mutex<Outgoing>,
}

/// The CSRF cookie of one request: the secret it carries, and the one its response is to set.
///
/// [`super::CsrfLayer`] puts one in every request's extensions; the template helpers take a page's
/// secret from it when the visitor has no session.
#[derive(Clone)]
pub(crate) struct VisitorSecret(Arc<Visit>);

impl std::fmt::Debug for VisitorSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorSecret").finish_non_exhaustive()
    }
}

impl VisitorSecret {
    pub(crate) fn new(settings: Arc<CookieSettings>, headers: &HeaderMap, now: i64) -> Self {
        let carried = carried(headers, settings.name());
        Self(Arc::new(Visit {
            settings,
            now,
            carried,
            opened: OnceLock::new(),
            out: Mutex::new(Outgoing::default()),
        }))
    }

    fn out(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        // Nothing panics while holding this lock; a poisoned one still holds consistent flags.
        self.0.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the request carried the cookie at all (valid or not).
    pub(crate) fn carried(&self) -> bool {
        !matches!(self.0.carried, Carried::None)
    }

    fn opened(&self) -> Result<(Secret, i64), Reason> {
        *self.0.opened.get_or_init(|| match &self.0.carried {
            Carried::None => Err(Reason::NoCookie),
            Carried::Several => Err(Reason::BadCookie),
            Carried::One(value) => self.0.settings.open(value, self.0.now),
        })
    }

    /// The carried cookie's secret for checking a token, or why there is none.
    pub(crate) fn for_check(&self) -> Result<Secret, Reason> {
        self.opened().map(|(secret, _)| secret)
    }

    /// The secret a page mints its tokens from: the carried cookie's (renewed if old), or a new
    /// one the response will set.
    pub(crate) fn for_page(&self) -> Secret {
        let mut out = self.out();
        out.used = true;
        if let Some(fresh) = out.fresh {
            return fresh;
        }
        match self.opened() {
            Ok((secret, issued)) => {
                if self.0.now - issued > self.0.settings.renew_after() {
                    out.renew = true;
                }
                secret
            }
            Err(_) => {
                let mut secret = [0u8; SECRET_LEN];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                out.fresh = Some(secret);
                secret
            }
        }
    }

    /// For a page that may set no cookie (a refused form shown again): the carried cookie's
    /// secret, if it is good.
    pub(crate) fn for_page_without_cookie(&self) -> Option<Secret> {
        let secret = self.for_check().ok()?;
        self.out().used = true;
        Some(secret)
    }

    /// The secret this visitor holds after the request: made here, or carried and good.
    pub(crate) fn current(&self) -> Option<Secret> {
        self.out().fresh.or_else(|| self.for_check().ok())
    }

    /// Whether a page of this response carries a token minted from the cookie's secret.
    pub(crate) fn used(&self) -> bool {
        self.out().used
    }

    /// Sets a new or renewed cookie on `resp`, if this request made or renewed one; answers
    /// whether it did.
    pub(crate) fn set_cookie(&self, resp: &mut Response) -> bool {
        let value = {
            let out = self.out();
            match (out.fresh, out.renew) {
                (Some(secret), _) => Some(secret),
                (None, true) => self.for_check().ok(),
                (None, false) => None,
            }
        };
        let Some(secret) = value else {
            return false;
        };
        let sealed = self.0.settings.seal(&secret, self.0.now);
        match self.0.settings.header(Some(sealed)) {
            Some(h) => {
                resp.headers_mut().append(header::SET_COOKIE, h);
                true
            }
            None => false,
        }
    }

    /// Tells the browser to drop the cookie it sent (a session's own secret has taken over).
    pub(crate) fn delete_cookie(&self, resp: &mut Response) {
        if let Some(h) = self.0.settings.header(None) {
            resp.headers_mut().append(header::SET_COOKIE, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(https: bool) -> CookieSettings {
        CookieSettings::new([5u8; 64], https, 12 * 3600)
    }

    fn with_cookie(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {name}={value}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_sealed_cookie_opens_to_its_secret_and_time() {
        let s = settings(false);
        let v = s.seal(&[9u8; 32], 1_000);
        assert_eq!(s.open(&v, 1_000 + 3600), Ok(([9u8; 32], 1_000)));
    }

    #[test]
    fn a_changed_byte_or_another_key_is_a_bad_cookie() {
        let s = settings(false);
        let v = s.seal(&[9u8; 32], 1_000);
        let mut raw = b64().decode(&v).unwrap();
        raw[3] ^= 1;
        assert_eq!(s.open(&b64().encode(&raw), 1_000), Err(Reason::BadCookie));
        let other = CookieSettings::new([6u8; 64], false, 12 * 3600);
        assert_eq!(other.open(&v, 1_000), Err(Reason::BadCookie));
        assert_eq!(s.open("garbage", 1_000), Err(Reason::BadCookie));
        assert_eq!(s.open(&v[..v.len() - 2], 1_000), Err(Reason::BadCookie));
    }

    #[test]
    fn a_value_made_under_one_name_is_refused_under_the_other() {
        let plain = settings(false);
        let secure = settings(true);
        assert_eq!(plain.name(), "csrfsecret");
        assert_eq!(secure.name(), "__Host-csrfsecret");
        let v = plain.seal(&[9u8; 32], 1_000);
        assert_eq!(secure.open(&v, 1_000), Err(Reason::BadCookie));
    }

    #[test]
    fn the_cookie_expires_a_quarter_after_the_token_lifetime() {
        let s = settings(false);
        let v = s.seal(&[9u8; 32], 1_000);
        let lifetime = 12 * 3600 + 3 * 3600;
        assert!(s.open(&v, 1_000 + lifetime).is_ok());
        assert_eq!(s.open(&v, 1_000 + lifetime + 1), Err(Reason::CookieExpired));
        assert_eq!(
            s.open(&v, 1_000 - MAX_SKEW - 1),
            Err(Reason::BadCookie),
            "dated in the future"
        );
    }

    #[test]
    fn a_first_visit_gets_a_fresh_secret_once_per_request() {
        let s = Arc::new(settings(false));
        let v = VisitorSecret::new(s.clone(), &HeaderMap::new(), 1_000);
        assert!(!v.carried());
        assert_eq!(v.for_check(), Err(Reason::NoCookie));
        let a = v.for_page();
        assert_eq!(v.for_page(), a, "one page, one secret");
        assert_eq!(v.current(), Some(a));
        let mut resp = Response::new(axum::body::Body::empty());
        v.set_cookie(&mut resp);
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        for part in [
            "csrfsecret=",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=54000",
        ] {
            assert!(set.contains(part), "{part} missing: {set}");
        }
        assert!(!set.contains("Domain") && !set.contains("Secure"), "{set}");
        let value = set
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("csrfsecret=");
        assert_eq!(s.open(value, 1_000), Ok((a, 1_000)));
    }

    #[test]
    fn over_https_the_cookie_is_a_secure_host_cookie() {
        let v = VisitorSecret::new(Arc::new(settings(true)), &HeaderMap::new(), 1_000);
        v.for_page();
        let mut resp = Response::new(axum::body::Body::empty());
        v.set_cookie(&mut resp);
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.starts_with("__Host-csrfsecret=") && set.contains("Secure"),
            "{set}"
        );
        assert!(set.contains("Path=/") && !set.contains("Domain"), "{set}");
    }

    #[test]
    fn a_carried_cookie_is_reused_and_renewed_only_when_old() {
        let s = Arc::new(settings(false));
        let value = s.seal(&[7u8; 32], 1_000);
        let young = VisitorSecret::new(
            s.clone(),
            &with_cookie("csrfsecret", &value),
            1_000 + 3 * 3600,
        );
        assert_eq!(young.for_page(), [7u8; 32]);
        let mut resp = Response::new(axum::body::Body::empty());
        young.set_cookie(&mut resp);
        assert!(resp.headers().get(header::SET_COOKIE).is_none());

        let old = VisitorSecret::new(
            s.clone(),
            &with_cookie("csrfsecret", &value),
            1_000 + 3 * 3600 + 1,
        );
        assert_eq!(old.for_page(), [7u8; 32]);
        let mut resp = Response::new(axum::body::Body::empty());
        old.set_cookie(&mut resp);
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        let renewed = set
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("csrfsecret=");
        assert_eq!(
            s.open(renewed, 1_000 + 3 * 3600 + 1),
            Ok(([7u8; 32], 1_000 + 3 * 3600 + 1)),
            "the same secret, a new date"
        );
    }

    #[test]
    fn two_cookies_of_that_name_are_trusted_as_none() {
        let s = Arc::new(settings(false));
        let value = s.seal(&[7u8; 32], 1_000);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("csrfsecret={value}; csrfsecret={value}")).unwrap(),
        );
        let v = VisitorSecret::new(s, &h, 1_000);
        assert_eq!(v.for_check(), Err(Reason::BadCookie));
        assert_ne!(v.for_page(), [7u8; 32], "a page gets a secret of its own");
    }

    #[test]
    fn a_page_that_may_set_no_cookie_uses_only_a_good_carried_one() {
        let s = Arc::new(settings(false));
        let none = VisitorSecret::new(s.clone(), &HeaderMap::new(), 1_000);
        assert_eq!(none.for_page_without_cookie(), None);
        let mut resp = Response::new(axum::body::Body::empty());
        none.set_cookie(&mut resp);
        assert!(resp.headers().get(header::SET_COOKIE).is_none());

        let value = s.seal(&[7u8; 32], 1_000);
        let good = VisitorSecret::new(s, &with_cookie("csrfsecret", &value), 1_000 + 5 * 3600);
        assert_eq!(good.for_page_without_cookie(), Some([7u8; 32]));
        let mut resp = Response::new(axum::body::Body::empty());
        good.set_cookie(&mut resp);
        assert!(
            resp.headers().get(header::SET_COOKIE).is_none(),
            "not even renewed"
        );
    }

    #[test]
    fn deleting_sends_an_expired_cookie_of_the_same_name_and_path() {
        let v = VisitorSecret::new(Arc::new(settings(true)), &HeaderMap::new(), 1_000);
        let mut resp = Response::new(axum::body::Body::empty());
        v.delete_cookie(&mut resp);
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with("__Host-csrfsecret=;"), "{set}");
        assert!(
            set.contains("Max-Age=0") && set.contains("Path=/") && set.contains("Secure"),
            "{set}"
        );
    }
}
