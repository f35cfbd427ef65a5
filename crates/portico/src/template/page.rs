//! [`Page`], what a view renders with, and [`PageContext`], what middleware adds to every page.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Html;
use minijinja::value::Value;

use super::{TemplateError, Templates};
use crate::csrf::slot::{secret_source, CsrfSlot, SLOT_VAR};
use crate::csrf::{self, CsrfConfig, VisitorSecret};
use crate::error::MissingLayer;
use crate::session::Session;

/// Values middleware adds for every template of a request (`user`, `instance`, ...).
#[derive(Debug, Clone, Default)]
pub struct PageContext(pub Arc<Mutex<BTreeMap<String, Value>>>);

impl PageContext {
    /// Sets `name` for the templates of this request.
    pub fn set(&self, name: &str, value: impl Into<Value>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), value.into());
    }

    pub(super) fn snapshot(&self) -> BTreeMap<String, Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What a view needs to render a page of this request.
///
/// It needs `Extension(Templates)` and [`CsrfLayer`](crate::csrf::CsrfLayer) (which gives it the
/// CSRF settings) on the route; without either, the view answers the plain 500 page and the log
/// names the missing layer ([`MissingLayer`]).
///
/// ```
/// use portico::template::{Page, TemplateError};
/// async fn home(page: Page) -> Result<axum::response::Html<String>, TemplateError> {
///     page.render("home.html", minijinja::context! { title => "Home" }).await
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(home));
/// ```
#[derive(Clone)]
pub struct Page {
    templates: Templates,
    session: Option<Session>,
    visitor: Option<VisitorSecret>,
    csrf: Arc<CsrfConfig>,
    csrf_error: Option<&'static str>,
    path: String,
    extra: PageContext,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Page {
    /// Renders `name` with `ctx` plus the page globals, minting CSRF tokens if the template asks.
    ///
    /// # Errors
    ///
    /// Returns [`TemplateError::Render`] when the template is missing, does not parse or fails
    /// while rendering, and [`TemplateError::Session`] when the session cannot be read for the
    /// CSRF secret. Returned from a handler they become a 500 and a 503 page, respectively.
    ///
    /// # Examples
    ///
    /// See [`Page`].
    pub async fn render(&self, name: &str, ctx: Value) -> Result<Html<String>, TemplateError> {
        self.render_string(name, ctx).await.map(Html)
    }

    /// [`Page::render`] as a plain string, for a response that is not HTML.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`Page::render`].
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::http::header::{HeaderName, CONTENT_TYPE};
    /// use portico::template::{Page, TemplateError};
    /// type Xml = ([(HeaderName, &'static str); 1], String);
    /// async fn sitemap(page: Page) -> Result<Xml, TemplateError> {
    ///     let body = page.render_string("sitemap.xml", minijinja::context! {}).await?;
    ///     Ok(([(CONTENT_TYPE, "application/xml")], body))
    /// }
    /// # let _ = axum::Router::<()>::new().route("/sitemap.xml", axum::routing::get(sitemap));
    /// ```
    pub async fn render_string(&self, name: &str, ctx: Value) -> Result<String, TemplateError> {
        let source = secret_source(
            self.session.as_ref(),
            self.visitor.as_ref(),
            self.csrf_error.is_some(),
        )
        .await?;
        let slot = Arc::new(CsrfSlot::new(source, self.csrf.clock.now()));
        let full = self.context(ctx, slot.clone());
        let first = self
            .templates
            .with_env(|env| env.get_template(name)?.render(&full))?;
        let calls = slot.calls();
        if calls == 0 {
            return Ok(first);
        }
        let Some(session) = &self.session else {
            return Err(TemplateError::Render(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "csrf_token() used on a route without SessionLayer",
            )));
        };
        let secret = csrf::session_secret_for_page(session, self.visitor.as_ref()).await?;
        let token = csrf::mint(&secret, slot.now());
        if first.matches(slot.placeholder()).count() == calls {
            return Ok(first.replace(slot.placeholder(), &token));
        }
        // A filter changed a placeholder (`csrf_token()|upper`, say): render again, with the
        // secret.
        slot.set_secret(secret);
        Ok(self
            .templates
            .with_env(|env| env.get_template(name)?.render(&full))?)
    }

    fn context(&self, ctx: Value, slot: Arc<CsrfSlot>) -> Value {
        let mut globals: BTreeMap<String, Value> = self.extra.snapshot();
        globals.insert("request_path".into(), Value::from(self.path.clone()));
        globals.insert("csrf_error".into(), Value::from(self.csrf_error));
        globals.insert(SLOT_VAR.into(), Value::from_dyn_object(slot));
        minijinja::context! { ..ctx, ..Value::from(globals) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let templates: Templates = MissingLayer::take(&parts.extensions, "Extension(Templates)")?;
        let csrf: Arc<CsrfConfig> = MissingLayer::take(&parts.extensions, "CsrfLayer")?;
        Ok(Page {
            templates,
            session: parts.extensions.get::<Session>().cloned(),
            visitor: parts.extensions.get::<VisitorSecret>().cloned(),
            csrf,
            csrf_error: csrf::rejection_message(&parts.extensions),
            path: parts.uri.path().to_string(),
            extra: parts
                .extensions
                .get::<PageContext>()
                .cloned()
                .unwrap_or_default(),
        })
    }
}
