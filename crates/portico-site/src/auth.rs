//! Who is logged in: the user's id and name in the session, read once per page request.
//!
//! Every route that renders a page passes through [`fill_user`], which reads the user and tells
//! the templates (the nav bar) and the event log who it is, the way Django's `auth` context
//! processor does; views that need the user take [`MaybeUser`] or [`LoginRequired`], which reuse
//! that read. Routes that render no page (files, the health check, captchas) skip it.
//!
//! Login cycles the session id (so the CSRF secret and any captcha rotate with it), marks the
//! session as a user's (the session layer then keeps it for the long idle timeout rather than the
//! anonymous one) and stores the user; when the session already belongs to another user, login
//! flushes it instead of cycling, so nothing the first user left in it reaches the second. Logout
//! flushes the session, deleting it from the store for every server. The session never holds a
//! password or a hash of one.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use portico::events::RequestInfo;
use portico::session::{Session, SessionError};
use portico::template::PageContext;
use serde::{Deserialize, Serialize};

/// The session key of the logged-in user.
pub const USER_KEY: &str = "_auth_user";

/// A logged-in user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: i64,
    /// The user's name.
    pub username: String,
}

/// The logged-in user, if any, as [`fill_user`] read it (or read now, on a route without it).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(read) = parts.extensions.get::<MaybeUser>() {
            return Ok(read.clone());
        }
        let user = MaybeUser::read(parts).await?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// Middleware for the routes that render pages: reads the logged-in user once, before the
/// handler, and puts them into the page context and the request's event info. A session that
/// cannot be read answers as it would to the view.
pub async fn fill_user(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Err(refused) = MaybeUser::from_request_parts(&mut parts, &()).await {
        return refused;
    }
    next.run(Request::from_parts(parts, body)).await
}

impl MaybeUser {
    /// The user in the session, told to the templates and the event log.
    async fn read(parts: &mut Parts) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, &())
            .await
            .map_err(IntoResponse::into_response)?;
        // A visitor without a session cookie is anonymous; no store round trip for them.
        if session.cookie_id().await.is_none() {
            return Ok(MaybeUser(None));
        }
        let user: Option<User> = session
            .get(USER_KEY)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Some(u) = &user {
            if let Some(ctx) = parts.extensions.get::<PageContext>() {
                ctx.set("user", minijinja::Value::from_serialize(u));
            }
            if let Some(info) = parts.extensions.get::<RequestInfo>() {
                info.set_user(Some(u.username.clone()));
            }
        }
        Ok(MaybeUser(user))
    }
}

/// A logged-in user; anyone else is sent to the login page and comes back after.
#[derive(Debug, Clone)]
pub struct LoginRequired(pub User);

impl<S: Send + Sync> FromRequestParts<S> for LoginRequired {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match MaybeUser::from_request_parts(parts, state).await?.0 {
            Some(u) => Ok(LoginRequired(u)),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                Err(to_login(next))
            }
        }
    }
}

/// The redirect to the login page that comes back to `next` afterwards.
pub fn to_login(next: &str) -> Response {
    Redirect::to(&format!("/accounts/login/?next={}", urlencode(next))).into_response()
}

/// Percent-encodes a value for a query string.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a login goes when it names no safe `next`.
pub const DEFAULT_NEXT: &str = "/notes/";

/// The page `next` names, as a path on this site, if it names one.
///
/// `next` is read the way a browser reads a `Location` (the WHATWG URL rules of the `url` crate)
/// relative to the login page on `host`, the host the request was sent to: browsers drop tabs and
/// newlines and read `\` as `/`, so `/\t/evil.test` is `//evil.test`, another site. Only a
/// result on `host` itself over HTTP(S) is kept, and what is returned is its path, query and
/// fragment alone, serialised by the parser (so every byte is valid in a header). Input with a
/// backslash or a control character is refused outright, as Django does: no link of this site
/// has one, and other parsers on the way (a proxy, a log reader) may read it otherwise.
///
/// ```ignore
/// assert_eq!(next_path("/notes/3/", Some("site.test")).as_deref(), Some("/notes/3/"));
/// assert_eq!(next_path("/\t/evil.test", Some("site.test")), None);
/// ```
pub fn next_path(next: &str, host: Option<&str>) -> Option<String> {
    if next.is_empty() || next.contains('\\') || next.chars().any(|c| c.is_control()) {
        return None;
    }
    // A scheme must come with an authority: `http:999` is a relative path to a browser on an
    // http page, but an absolute URL on an https one.
    if let Some((scheme, rest)) = next.split_once(':') {
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme && !rest.starts_with("//") {
            return None;
        }
    }
    // The base's host is one no request can name, so without a Host only paths pass.
    let host = host.map(str::to_ascii_lowercase);
    let own = host.as_deref().unwrap_or("portico.invalid");
    let base = url::Url::parse(&format!("http://{own}/accounts/login/")).ok()?;
    let url = base.join(next).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.username() != "" || url.password().is_some()
    {
        return None;
    }
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    if authority != own {
        return None;
    }
    Some(url[url::Position::BeforePath..].to_string())
}

/// The redirect target after login: `next` when it names a page of this site, else
/// [`DEFAULT_NEXT`].
pub fn safe_next(next: Option<&str>, host: Option<&str>) -> String {
    next.and_then(|n| next_path(n, host))
        .unwrap_or_else(|| DEFAULT_NEXT.to_string())
}

/// The host a request was sent to (its `Host` header), for [`safe_next`]. The allowed-hosts
/// layer has already refused hosts the site does not serve.
#[derive(Debug, Clone)]
pub struct RequestHost(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestHost {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestHost(
            parts
                .headers
                .get(axum::http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

/// Logs `user` in: a new session id (against fixation), the session marked as a user's (so it gets
/// the long idle timeout instead of the anonymous one), then the user in the session. A session
/// that is anonymous or already this user's keeps its data; one that belongs to someone else is
/// flushed first (new id, nothing kept), as on a shared computer where the next person logs in
/// without logging the first one out.
pub async fn login(session: &Session, user: &User) -> Result<(), SessionError> {
    let keeps_data = match session.get::<User>(USER_KEY).await {
        Ok(current) => current.is_none_or(|u| u.id == user.id),
        // Unreadable: not known to be this user's.
        Err(SessionError::Value(_)) => false,
        Err(e) => return Err(e),
    };
    if keeps_data {
        session.cycle_id().await?;
    } else {
        session.flush().await?;
    }
    session.mark_authenticated().await?;
    session.insert(USER_KEY, user).await
}

/// Logs out: the session is deleted from the store, everywhere at once.
pub async fn logout(session: &Session) -> Result<(), SessionError> {
    session.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Option<&str> = Some("testserver");

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/notes/3/"), HOST), "/notes/3/");
        assert_eq!(safe_next(Some("//evil.test/"), HOST), DEFAULT_NEXT);
        assert_eq!(safe_next(Some("https://evil.test/"), HOST), DEFAULT_NEXT);
        assert_eq!(safe_next(Some("/\\evil.test"), HOST), DEFAULT_NEXT);
        assert_eq!(safe_next(None, HOST), DEFAULT_NEXT);
    }

    #[test]
    fn what_browsers_drop_or_rewrite_cannot_smuggle_another_host() {
        for bad in [
            "/\t/evil.test",
            "/\n/evil.test",
            "/\r\n/evil.test",
            "\t//evil.test",
            " //evil.test",
            "/\\/evil.test",
            "\\\\evil.test",
            "https:evil.test",
            "HTTPS://evil.test",
            "//evil.test%2f@testserver",
            "http://testserver@evil.test/",
            "data:text/html,hi",
            "/\u{7f}",
        ] {
            assert_eq!(next_path(bad, HOST), None, "{bad:?}");
        }
    }

    #[test]
    fn what_comes_back_is_a_valid_header_value() {
        // Bytes a header cannot carry come back percent-encoded, never as a 500.
        for next in ["/%7F", "/ü/", "/a b/", "/x?q=\"<'>\""] {
            let path = next_path(next, HOST).expect(next);
            assert!(path.starts_with('/') && !path.starts_with("//"), "{path}");
            assert!(
                axum::http::HeaderValue::from_str(&path).is_ok(),
                "{next:?} -> {path:?}"
            );
        }
        assert_eq!(next_path("/%7F", HOST).as_deref(), Some("/%7F"));
    }

    #[test]
    fn without_a_host_only_paths_pass() {
        assert_eq!(next_path("/notes/", None).as_deref(), Some("/notes/"));
        assert_eq!(
            next_path("//portico.invalid/x", None).as_deref(),
            Some("/x")
        );
        assert_eq!(next_path("https://testserver/", None), None);
    }

    /// Django's `URLHasAllowedHostAndSchemeTests.test_bad_urls`, with this site on `testserver`.
    #[test]
    fn django_bad_urls_are_refused() {
        let bad_urls = [
            "http://example.com",
            "http:///example.com",
            "https://example.com",
            "ftp://example.com",
            r"\\example.com",
            r"\\\example.com",
            r"/\\/example.com",
            r"\\\example.com",
            r"\\example.com",
            r"\\//example.com",
            r"/\/example.com",
            r"\/example.com",
            r"/\example.com",
            "http:///example.com",
            r"http:/\//example.com",
            r"http:\/example.com",
            r"http:/\example.com",
            "javascript:alert(\"XSS\")",
            "\njavascript:alert(x)",
            "java\nscript:alert(x)",
            "\x08//example.com",
            r"http://otherserver\@example.com",
            r"http:\\testserver\@example.com",
            r"http://testserver\me:pass@example.com",
            r"http://testserver\@example.com",
            r"http:\\testserver\confirm\me@example.com",
            "http:999999999",
            "ftp:9999999999",
            "\n",
            "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
            "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
        ];
        for bad in bad_urls {
            assert_eq!(next_path(bad, HOST), None, "{bad:?}");
        }
    }

    /// Django's `test_good_urls`; each comes back as the path a browser would go to.
    #[test]
    fn django_good_urls_are_kept_as_paths() {
        let good_urls = [
            (
                "/view/?param=http://example.com",
                "/view/?param=http://example.com",
            ),
            (
                "/view/?param=https://example.com",
                "/view/?param=https://example.com",
            ),
            (
                "/view?param=ftp://example.com",
                "/view?param=ftp://example.com",
            ),
            (
                "view/?param=//example.com",
                "/accounts/login/view/?param=//example.com",
            ),
            ("https://testserver/", "/"),
            ("HTTPS://testserver/", "/"),
            ("//testserver/", "/"),
            (
                "http://testserver/confirm?email=me@example.com",
                "/confirm?email=me@example.com",
            ),
            ("/url%20with%20spaces/", "/url%20with%20spaces/"),
            (
                "path/http:2222222222",
                "/accounts/login/path/http:2222222222",
            ),
        ];
        for (good, path) in good_urls {
            assert_eq!(next_path(good, HOST).as_deref(), Some(path), "{good:?}");
        }
    }

    /// Django's `test_basic_auth` allows credentials for a host named with them; a browser would
    /// send them to this site, but a login has no use for them, so they are refused.
    #[test]
    fn credentials_in_next_are_refused() {
        assert_eq!(next_path("http://user:pass@testserver/", HOST), None);
        assert_eq!(
            next_path("/confirm/me@example.com", HOST).as_deref(),
            Some("/confirm/me@example.com")
        );
    }
}
