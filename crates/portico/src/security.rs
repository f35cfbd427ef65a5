//! Response headers that tell browsers to refuse the attacks a page cannot stop by itself.
//!
//! [`SecurityHeaders`] adds, to every response that does not set them itself:
//!
//! | header | value | against |
//! |---|---|---|
//! | `X-Frame-Options` | `DENY` | clickjacking: another site framing the login form under a decoy |
//! | `Content-Security-Policy` | `frame-ancestors 'none'` | the same, in the form current browsers prefer |
//! | `X-Content-Type-Options` | `nosniff` | a browser running an upload or a JSON answer as a script or page |
//! | `Referrer-Policy` | `same-origin` | URLs with tokens or ids leaking to other sites in `Referer` |
//! | `Cross-Origin-Opener-Policy` | `same-origin` | a page opened by another site reaching back through `window.opener` |
//!
//! A view that needs another value sets the header on its response (a page meant to be framed by
//! its own site sets `X-Frame-Options: SAMEORIGIN`); a site that needs another default changes it
//! with [`SecurityHeaders::set`] or drops it with [`SecurityHeaders::without`].
//!
//! The layer is tower's response mapper with the list above; what it adds is the list and the
//! rule that a response's own header wins.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tower::util::MapResponseLayer;

/// The default headers, as name and value.
const DEFAULTS: [(&str, &str); 5] = [
    ("x-frame-options", "DENY"),
    ("content-security-policy", "frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The headers every response gets unless it sets them itself.
///
/// ```
/// use axum::{routing::get, Router};
/// use portico::security::SecurityHeaders;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(SecurityHeaders::default().layer());
/// ```
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self {
            headers: DEFAULTS
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
        }
    }
}

impl SecurityHeaders {
    /// Sets `name` to `value` for every response that does not set it (replacing a default).
    pub fn set(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// Adds nothing for `name` (a default included).
    pub fn without(mut self, name: &HeaderName) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// The names and values that will be added, in order.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The layer that adds them.
    pub fn layer(
        self,
    ) -> MapResponseLayer<impl FnOnce(Response) -> Response + Clone + Send + Sync> {
        let headers: Arc<[(HeaderName, HeaderValue)]> = self.headers.into();
        MapResponseLayer::new(move |mut resp: Response| {
            let h = resp.headers_mut();
            for (name, value) in headers.iter() {
                if !h.contains_key(name) {
                    h.insert(name.clone(), value.clone());
                }
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn headers_of(app: Router, path: &str) -> axum::http::HeaderMap {
        app.oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .headers()
            .clone()
    }

    fn app(headers: SecurityHeaders) -> Router {
        Router::new()
            .route("/", get(|| async { "page" }))
            .route(
                "/framed",
                get(|| async { ([(header::X_FRAME_OPTIONS, "SAMEORIGIN")], "framed") }),
            )
            .layer(headers.layer())
    }

    #[tokio::test]
    async fn every_response_gets_the_defaults_even_a_404() {
        for path in ["/", "/missing"] {
            let h = headers_of(app(SecurityHeaders::default()), path).await;
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "same-origin");
            assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        }
    }

    #[tokio::test]
    async fn a_view_that_sets_a_header_keeps_its_own() {
        let h = headers_of(app(SecurityHeaders::default()), "/framed").await;
        assert_eq!(h.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }

    #[tokio::test]
    async fn a_site_can_change_or_drop_a_default() {
        let headers = SecurityHeaders::default()
            .set(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            )
            .without(&HeaderName::from_static("cross-origin-opener-policy"));
        let h = headers_of(app(headers), "/").await;
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.get("cross-origin-opener-policy").is_none());
        assert_eq!(h["x-frame-options"], "DENY");
    }
}
