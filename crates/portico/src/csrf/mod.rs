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
//! the allowed-hosts list names (not `*`). Then the token, from the form field
//! `csrfmiddlewaretoken` or the `X-CSRFToken` header, compared in constant time. GET, HEAD,
//! OPTIONS and TRACE are never checked and must never change state.
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

//!
//! # Where things are
//!
//! - this file: the constants, the [`Reason`] table (every refusal with its code and message) and
//!   [`CsrfConfig`];
//! - `token`: minting and verifying tokens ([`mint`], [`verify`]);
//! - `secret`: the secret a token is minted from and checked against, in the session or the
//!   visitor's cookie, and what the response sets on the way out;
//! - [`cookie`]: the signed cookie of a visitor without a session;
//! - `source`: the `Origin`, `Referer` and `Sec-Fetch-Site` checks and the exemption patterns;
//! - `layer`: [`CsrfLayer`], whose service runs the checks in turn and refuses, and the re-shown
//!   form ([`Rejected`], [`Resubmitted`]);
//! - `slot`: the CSRF side of a page's render (`csrf_token()`, `csrf_input()`).

pub mod cookie;
mod layer;
mod secret;
pub(crate) mod slot;
mod source;
mod token;

#[cfg(test)]
mod tests;

use crate::clock::Clock;
use crate::hosts::AllowedHosts;

pub(crate) use cookie::VisitorSecret;
pub use cookie::{COOKIE_NAME, SECURE_COOKIE_NAME};
pub(crate) use layer::{rejection_message, Refused};
pub use layer::{CsrfLayer, CsrfService, Rejected, Resubmitted};
pub(crate) use secret::{existing_secret, session_secret_for_page};
pub use token::{mint, verify};

/// The session key of the CSRF secret; the `__` prefix makes it rotate with the session id.
pub const SECRET_KEY: &str = "__csrf";
/// The form field that carries the token.
pub const FORM_FIELD: &str = "csrfmiddlewaretoken";
/// The header that carries the token for `fetch()` requests.
pub const HEADER: &str = "x-csrftoken";

/// A token or cookie may claim an issue time this far ahead of the server's clock (clock skew
/// between servers), in seconds.
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
    /// Every reason, in the order of the table above: for documentation and reports.
    pub const ALL: [Reason; 10] = [
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
    ];

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
            Reason::Missing => {
                "The form arrived without its security token. Reload the page and send the form \
                 again."
            }
            Reason::Malformed => {
                "The form's security token is damaged. Reload the page and send the form again."
            }
            Reason::Expired => {
                "This form was open too long and its security token has expired. Check your input \
                 and send it again."
            }
            Reason::Foreign => {
                "This form was opened before you logged in or out, or in another session. Check \
                 your input and send it again."
            }
            Reason::CrossSite => {
                "The request came from another web site, so it was refused. If you meant to do \
                 this, go to this site and do it here."
            }
            Reason::BadOrigin => {
                "The request came from a page that is not part of this site, so it was refused."
            }
            Reason::BadReferer => {
                "The request did not say which page it came from, which a secure form must. Reload \
                 the page and try again."
            }
            Reason::NoCookie => {
                "This form's security cookie is missing: the form was opened before you logged in \
                 or out, or your browser does not keep this site's cookies. Allow cookies for this \
                 site, open the page again and send the form from there."
            }
            Reason::BadCookie => {
                "The security cookie your browser sent is damaged or was not made by this site. \
                 Open the page again and send the form from there."
            }
            Reason::CookieExpired => {
                "This form's security cookie has expired. Check your input, open the page again \
                 and send the form from there."
            }
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
///
/// The largest body the layer reads to find the token is the request's
/// [`BodyLimit`](crate::params::BodyLimit) extension, the one the views' extractors obey
/// ([`DEFAULT_BODY_LIMIT`](crate::params::DEFAULT_BODY_LIMIT) without it).
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// How long a token is accepted after it was issued (12 h).
    pub token_ttl: time::Duration,
    /// Origins besides the site's own whose posts are accepted, e.g. `https://admin.example.com`;
    /// `https://*.example.com` trusts every sub-domain.
    pub trusted_origins: Vec<String>,
    /// Whether the site is served over HTTPS (enables the `Referer` check and sets the origin's
    /// scheme).
    pub https: bool,
    /// The clock tokens are dated with.
    pub clock: Clock,
    /// The host names the site answers to; an origin on any of them (same scheme and port as
    /// the request) is the site's own.
    pub allowed_hosts: AllowedHosts,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self {
            token_ttl: time::Duration::hours(12),
            trusted_origins: Vec::new(),
            https: false,
            clock: Clock::system(),
            allowed_hosts: AllowedHosts::default(),
        }
    }
}

impl CsrfConfig {
    /// The token lifetime in whole seconds, the unit tokens are dated in.
    fn token_ttl_secs(&self) -> i64 {
        self.token_ttl.whole_seconds()
    }
}
