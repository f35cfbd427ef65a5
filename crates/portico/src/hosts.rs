//! Which host names a site answers to, and the layer that refuses the others.
//!
//! A server that answers any `Host` lets an attacker point a name of theirs at it (DNS rebinding
//! against a server on a private address), or plant their host name in anything the site builds
//! from the request's host (absolute links, cache keys). [`AllowedHosts`] is Django's
//! `ALLOWED_HOSTS`: exact names, `.example.com` for a domain and every sub-domain, `*` for any; the
//! port is ignored. [`AllowedHostsLayer`] answers every other request with 400 before cookies,
//! sessions or views see it, so a refused request creates nothing.
//!
//! This module does not decide what the site's own origin is for CSRF; the CSRF layer asks
//! [`AllowedHosts::names`] for that, and leaves `*` out of it.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ErrorPage;

/// What a refused host is told. It does not repeat the host: the page is for a person who typed a
/// wrong address, and the name is in the server's log.
pub const REFUSED: &str =
    "This server does not answer to the host name in the address you used. Check the address.";

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    Any,
    /// `example.com`: exactly this name.
    Exact(String),
    /// `.example.com`: `example.com` and every name under it (stored without the dot).
    Domain(String),
}

/// The host names a site answers to.
///
/// ```
/// use portico::hosts::AllowedHosts;
/// let hosts = AllowedHosts::parse(["www.example.com", ".example.org"]).unwrap();
/// assert!(hosts.allows("www.example.com:8443"));
/// assert!(hosts.allows("news.example.org"));
/// assert!(hosts.allows("example.org"));
/// assert!(!hosts.allows("evil.test"));
/// assert!(!hosts.allows("example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Arc<Vec<Pattern>>,
}

/// Why a list of hosts was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    /// An entry that is not a host name, `.domain` or `*`.
    #[error("{0:?} is not a host name: use names like www.example.com, .example.com for a domain and its sub-domains, or *")]
    Invalid(String),
}

impl Default for AllowedHosts {
    /// Any host: for a library user who has not configured the list. The reference site never
    /// uses this default (see its `PORTICO_ALLOWED_HOSTS`).
    fn default() -> Self {
        Self::any()
    }
}

impl AllowedHosts {
    /// Every host (`*`).
    pub fn any() -> Self {
        Self {
            patterns: Arc::new(vec![Pattern::Any]),
        }
    }

    /// The loopback names: `localhost`, `127.0.0.1` and `[::1]`, the list a server bound to a
    /// loopback address needs.
    pub fn loopback() -> Self {
        Self {
            patterns: Arc::new(vec![
                Pattern::Exact("localhost".into()),
                Pattern::Exact("127.0.0.1".into()),
                Pattern::Exact("[::1]".into()),
            ]),
        }
    }

    /// Parses a list of entries (blank entries are skipped; a port in an entry is refused, as the
    /// port of a request is ignored anyway).
    ///
    /// # Errors
    ///
    /// Returns [`HostsError::Invalid`] with the first entry that is neither `*`, a host name, a
    /// `.domain` nor a bracketed IPv6 address (one with a port, a path or spaces, say), so that a
    /// mistyped configuration stops the server instead of refusing every request.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::hosts::AllowedHosts;
    /// let hosts = AllowedHosts::parse(["example.com", ".example.org"])?;
    /// assert!(hosts.allows("www.example.org:8443"));
    /// assert!(AllowedHosts::parse(["example.com:443"]).is_err());
    /// # Ok::<(), portico::hosts::HostsError>(())
    /// ```
    pub fn parse<I, S>(entries: I) -> Result<Self, HostsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns = Vec::new();
        for entry in entries {
            let e = entry.as_ref().trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            let pattern = if e == "*" {
                Pattern::Any
            } else if let Some(domain) = e.strip_prefix('.') {
                match split_host(domain) {
                    Some((h, None)) if !h.is_empty() && !h.starts_with('[') => {
                        Pattern::Domain(h.to_string())
                    }
                    _ => return Err(HostsError::Invalid(e)),
                }
            } else {
                match split_host(&e) {
                    Some((h, None)) if !h.is_empty() => Pattern::Exact(h.to_string()),
                    _ => return Err(HostsError::Invalid(e)),
                }
            };
            patterns.push(pattern);
        }
        Ok(Self {
            patterns: Arc::new(patterns),
        })
    }

    /// Whether the list has no entry (then no host is allowed).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a request's host (a `Host` header value, port optional) is allowed. A value that is
    /// not a host name at all is never allowed.
    pub fn allows(&self, host: &str) -> bool {
        match split_host(&host.to_ascii_lowercase()) {
            Some((h, _)) if !h.is_empty() => self.patterns.iter().any(|p| matches(p, h, true)),
            _ => false,
        }
    }

    /// Whether the list names `host` (port-less, lower case) by an exact entry or a domain entry;
    /// `*` does not count. The CSRF check treats these names as the site's own, which `*` would
    /// turn into every site on the web.
    pub fn names(&self, host: &str) -> bool {
        self.patterns.iter().any(|p| matches(p, host, false))
    }
}

fn matches(p: &Pattern, host: &str, any_counts: bool) -> bool {
    match p {
        Pattern::Any => any_counts,
        Pattern::Exact(e) => e == host,
        Pattern::Domain(d) => {
            host == d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        }
    }
}

/// Splits a lower-case `host[:port]` into its host (without a trailing dot) and port, when it is
/// one: a name of letters, digits, `.` and `-`, or an IPv6 address in brackets (Django's
/// `host_validation_re`).
///
/// # Errors
///
/// Returns `None` for anything else (spaces, `@`, `/`, upper case, a port that is not a number
/// up to 65535): a request naming such a host is refused.
///
/// # Examples
///
/// ```
/// use portico::hosts::split_host;
/// assert_eq!(split_host("example.com."), Some(("example.com", None)));
/// assert_eq!(split_host("[::1]:8000"), Some(("[::1]", Some(8000))));
/// assert_eq!(split_host("evil.test@good.test"), None);
/// ```
pub fn split_host(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')? + 1;
        let (h, rest) = value.split_at(end);
        let inner = &h[1..h.len() - 1];
        if !inner.contains(':')
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match rest {
            "" => (h, None),
            r => (h, Some(r.strip_prefix(':')?)),
        }
    } else {
        let (h, p) = match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        if !h
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return None;
        }
        (h.strip_suffix('.').unwrap_or(h), p)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// The host a request names: its `Host` header, or the authority of an absolute request URI.
///
/// # Errors
///
/// Returns `None` when the request has neither, or its `Host` header is not visible ASCII and
/// the URI has no authority. The value is not checked: pass it to [`AllowedHosts::allows`].
///
/// # Examples
///
/// ```
/// use axum::http::Request;
/// use portico::hosts::request_host;
/// let req = Request::get("/").header("host", "example.com:8080").body(())?;
/// assert_eq!(request_host(&req), Some("example.com:8080"));
/// assert_eq!(request_host(&Request::get("/").body(())?), None);
/// # Ok::<(), axum::http::Error>(())
/// ```
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The layer that answers 400 to requests for a host not in the list.
///
/// ```
/// use portico::hosts::{AllowedHosts, AllowedHostsLayer};
/// let layer = AllowedHostsLayer::new(AllowedHosts::loopback()).any_host_for("/healthz");
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct AllowedHostsLayer {
    hosts: AllowedHosts,
    open_paths: Arc<Vec<String>>,
}

impl AllowedHostsLayer {
    /// A layer allowing `hosts`.
    pub fn new(hosts: AllowedHosts) -> Self {
        Self {
            hosts,
            open_paths: Arc::new(Vec::new()),
        }
    }

    /// Answers `path` (exactly) whatever the host, e.g. a health check that a load balancer
    /// probes by address.
    pub fn any_host_for(mut self, path: &str) -> Self {
        Arc::make_mut(&mut self.open_paths).push(path.to_string());
        self
    }
}

impl<S> tower::Layer<S> for AllowedHostsLayer {
    type Service = AllowedHostsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AllowedHostsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AllowedHostsLayer`].
#[derive(Debug, Clone)]
pub struct AllowedHostsService<S> {
    inner: S,
    layer: AllowedHostsLayer,
}

impl<S, B> tower::Service<Request<B>> for AllowedHostsService<S>
where
    S: tower::Service<Request<B>, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<S::Future, std::future::Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let allowed = request_host(&req).is_some_and(|h| self.layer.hosts.allows(h))
            || self.layer.open_paths.iter().any(|p| p == req.uri().path());
        if allowed {
            futures_util::future::Either::Left(self.inner.call(req))
        } else {
            tracing::warn!(host = ?request_host(&req), path = %req.uri().path(), "refused a request for a host that is not allowed");
            futures_util::future::Either::Right(std::future::ready(Ok(ErrorPage::new(
                StatusCode::BAD_REQUEST,
                REFUSED,
            )
            .into_response())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_domains_and_any() {
        let h = AllowedHosts::parse(["site.test", ".example.com"]).unwrap();
        assert!(h.allows("site.test"));
        assert!(h.allows("SITE.test:8000"));
        assert!(h.allows("site.test."));
        assert!(h.allows("example.com"));
        assert!(h.allows("a.b.example.com"));
        assert!(!h.allows("badexample.com"));
        assert!(!h.allows("evil.test"));
        assert!(!h.allows("sub.site.test"));
        assert!(AllowedHosts::any().allows("anything.test"));
        assert!(!AllowedHosts::parse(Vec::<String>::new())
            .unwrap()
            .allows("site.test"));
    }

    #[test]
    fn malformed_hosts_are_never_allowed() {
        let any = AllowedHosts::any();
        for bad in [
            "",
            "evil.test@site.test",
            "site.test/x",
            "site test",
            "site.test:port",
            "site.test:",
            "[::1",
            "[zz::1]",
            "site.test:99999",
        ] {
            assert!(!any.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn loopback_list_allows_the_loopback_names_only() {
        let h = AllowedHosts::loopback();
        assert!(h.allows("localhost:8000"));
        assert!(h.allows("127.0.0.1:8000"));
        assert!(h.allows("[::1]:8000"));
        assert!(!h.allows("127.0.0.2"));
        assert!(!h.allows("evil.test"));
    }

    #[test]
    fn any_is_not_a_name() {
        let h = AllowedHosts::parse(["*", "site.test", ".example.com"]).unwrap();
        assert!(h.names("site.test"));
        assert!(h.names("news.example.com"));
        assert!(!h.names("evil.test"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(AllowedHosts::parse(["site.test:8000"]).is_err());
        assert!(AllowedHosts::parse(["http://site.test"]).is_err());
        assert!(AllowedHosts::parse(["."]).is_err());
        assert!(AllowedHosts::parse([" ", "site.test"]).is_ok());
    }
}
