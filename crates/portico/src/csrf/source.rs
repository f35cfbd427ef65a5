//! Where a request comes from: the browser's `Sec-Fetch-Site`, `Origin` and `Referer` checked
//! against the site's own origins and the trusted ones, before any token is looked at; and the
//! path patterns of the routes exempt from the check.

use axum::http::{header, Method};

use super::{CsrfConfig, Reason};
use crate::hosts::split_host;

pub(super) fn header_str(
    headers: &http::HeaderMap,
    name: impl header::AsHeaderName,
) -> Option<&str> {
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
    pub(super) fn check_source(&self, headers: &http::HeaderMap) -> Result<(), Reason> {
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

pub(super) fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether `path` matches an exemption `pattern` (axum syntax: `{name}` matches one non-empty
/// segment, `{*rest}` the rest of the path).
pub(super) fn pattern_matches(pattern: &str, path: &str) -> bool {
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
