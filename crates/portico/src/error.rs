//! Error responses a person can read.
//!
//! Every rejection in Portico (a bad parameter, a refused CSRF token, a store that is down) becomes
//! an [`ErrorPage`]: a status and a sentence that says what went wrong and what to do. On its own it
//! answers as plain text; behind [`crate::template::ErrorPagesLayer`] it is shown in the site's
//! error template. This module holds no HTML of its own, so a site decides how its errors look.
//! A refused form post can carry its fields ([`KeptInput`]) for the page to show back.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// A status and a message for a person, answered as an error page.
///
/// ```
/// use axum::http::StatusCode;
/// use portico::error::ErrorPage;
/// use axum::response::IntoResponse;
/// let resp = ErrorPage::new(StatusCode::NOT_FOUND, "There is no note with that number.").into_response();
/// assert_eq!(resp.status(), StatusCode::NOT_FOUND);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words a person understands.
    pub message: String,
}

impl ErrorPage {
    /// An error page with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The page for a failure on the server's side: 500 with the message a person reads for it.
    /// The cause belongs in the server's log, never on the page.
    pub fn internal() -> Self {
        Self::from_status(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The page for `status` with that status's own message ([`ErrorPage::default_message`]).
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use portico::error::ErrorPage;
    /// let page = ErrorPage::from_status(StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(page.message, ErrorPage::default_message(StatusCode::SERVICE_UNAVAILABLE));
    /// ```
    pub fn from_status(status: StatusCode) -> Self {
        Self::new(status, Self::default_message(status))
    }

    /// The short title of a status ("Not found", "Forbidden", ...).
    pub fn title(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "Bad request",
            403 => "Forbidden",
            404 => "Page not found",
            405 => "Method not allowed",
            413 => "Request too large",
            429 => "Too many requests",
            500 => "Server error",
            503 => "Service unavailable",
            _ => status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// The message a status carries when the code that refused the request gave none.
    pub fn default_message(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "The request could not be understood. Check the form and send it again.",
            403 => "You are not allowed to do that.",
            404 => "There is nothing at this address. Check the link, or start again from the home page.",
            405 => "This page does not accept that kind of request.",
            413 => "What you sent is larger than this site accepts. Send less and try again.",
            429 => "Too many requests in a short time. Wait a minute and try again.",
            500 => "Something went wrong on our side. It has been logged; please try again.",
            503 => "The service is unavailable for a moment. Please try again shortly.",
            _ => "The request could not be completed.",
        }
    }
}

impl IntoResponse for ErrorPage {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message.clone(),
        )
            .into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

/// The rejection of an extractor whose layer is not on the route: a mistake in how the router
/// was built, so the person at the browser gets the plain 500 page while the server's log names
/// the extractor and the layer it needs.
///
/// ```
/// use axum::http::StatusCode;
/// use portico::error::MissingLayer;
/// let missing = MissingLayer::new::<portico::Session>("SessionLayer");
/// assert_eq!(missing.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// assert!(missing.to_string().contains("SessionLayer"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingLayer {
    /// The type the view asked for.
    pub extractor: &'static str,
    /// The layer that provides it.
    pub layer: &'static str,
}

impl MissingLayer {
    /// The rejection of extractor `T`, which `layer` provides.
    pub fn new<T>(layer: &'static str) -> Self {
        Self {
            extractor: std::any::type_name::<T>(),
            layer,
        }
    }

    /// Takes the `T` that `layer` put into the request's extensions.
    ///
    /// # Errors
    ///
    /// Returns a [`MissingLayer`] naming `T` and `layer` when the request does not carry a `T`:
    /// the router lacks `layer`. That is a programming error; returned from an extractor it
    /// becomes a 500 page.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::http::Extensions;
    /// use portico::error::MissingLayer;
    /// #[derive(Clone)]
    /// struct Tenant(&'static str);
    /// let mut extensions = Extensions::new();
    /// assert!(MissingLayer::take::<Tenant>(&extensions, "TenantLayer").is_err());
    /// extensions.insert(Tenant("acme"));
    /// assert_eq!(MissingLayer::take::<Tenant>(&extensions, "TenantLayer")?.0, "acme");
    /// # Ok::<(), MissingLayer>(())
    /// ```
    pub fn take<T: Clone + Send + Sync + 'static>(
        extensions: &axum::http::Extensions,
        layer: &'static str,
    ) -> Result<T, Self> {
        extensions
            .get::<T>()
            .cloned()
            .ok_or_else(|| Self::new::<T>(layer))
    }

    /// Always 500: the request was fine, the router was not.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl std::fmt::Display for MissingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` was used on a route without `{}`; add the layer to the router",
            self.extractor, self.layer
        )
    }
}

impl std::error::Error for MissingLayer {}

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        ErrorPage::internal().into_response()
    }
}

/// A form post that could not be carried out because something it depends on is down (the
/// session store, so not even its CSRF token can be checked): where it was sent and its fields,
/// passwords and tokens left out. [`crate::template::ErrorPagesLayer`] shows them back in a form
/// that sends them again, so nothing a person typed is lost; sent again without a token, the post
/// is refused by the CSRF check and shown once more as the page's own form, with a fresh token.
#[derive(Debug, Clone)]
pub struct KeptInput {
    /// The path (and query) the form was posted to.
    pub action: String,
    /// The fields that were posted.
    pub fields: crate::params::QueryDict,
}
