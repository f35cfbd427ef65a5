//! Templates: minijinja with autoescape, the CSRF helpers, and error pages.
//!
//! [`Templates`] wraps a minijinja environment (embedded in the binary in production; re-read from
//! disk on every render in development). A view takes a [`Page`] and calls [`Page::render`]; the
//! page adds what every template may use:
//!
//! - `csrf_input()` — the hidden `csrfmiddlewaretoken` input; `csrf_token()` — the bare token;
//! - `csrf_error` — the message of a refused form being shown again (see [`crate::csrf`]);
//! - `request_path`, and whatever middleware put in the request's [`PageContext`] (the site puts
//!   the logged-in user there).
//!
//! A token is minted only when the template asks for one. A visitor with a session gets tokens of
//! the session's secret; one without gets tokens of the secret in their CSRF cookie (made, and
//! set on the response, on their first page with a form), so showing a form to a new visitor
//! writes nothing to the session store. See [`crate::csrf`].
//!
//! [`ErrorPagesLayer`] turns every 4xx/5xx response that is not already a page into the
//! `error.html` template (or JSON when the client asked for JSON), with the message the refusing
//! code gave, and with `kept` (name, value pairs) and `kept_action` when the response carries a
//! refused form's fields ([`KeptInput`](crate::error::KeptInput)).
//!
//! # Where things are
//!
//! - this file: [`Templates`], [`TemplateError`], and the helpers every environment gets;
//! - `page`: [`Page`], the extractor a view renders with, and [`PageContext`];
//! - `error_pages`: [`ErrorPagesLayer`];
//! - the CSRF helpers and their two-pass render live with the CSRF code (`csrf::slot`).

mod error_pages;
mod page;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use minijinja::value::Value;
use minijinja::Environment;

use crate::error::ErrorPage;
use crate::session::SessionError;

pub use error_pages::{ErrorPagesLayer, ErrorPagesService};
pub use page::{Page, PageContext};

type Factory = dyn Fn() -> Environment<'static> + Send + Sync;

/// A set of templates.
///
/// ```
/// use portico::template::Templates;
/// let mut env = minijinja::Environment::new();
/// env.add_template("hello.html", "Hello {{ name }}!").unwrap();
/// let t = Templates::new(env);
/// let html = t.render("hello.html", minijinja::context! { name => "<b>" }).unwrap();
/// assert_eq!(html, "Hello &lt;b&gt;!");
/// ```
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    reload: Option<Arc<Factory>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("reload", &self.reload.is_some())
            .finish()
    }
}

/// A template that failed to render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// minijinja's error (missing template, syntax, runtime).
    #[error("template error: {0:#}")]
    Render(#[from] minijinja::Error),
    /// The session could not give a CSRF token.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IntoResponse for TemplateError {
    fn into_response(self) -> Response {
        match self {
            TemplateError::Session(e) => e.into_response(),
            TemplateError::Render(e) => {
                tracing::error!(error = %format!("{e:#}"), "template failed");
                ErrorPage::internal().into_response()
            }
        }
    }
}

fn install_helpers(env: &mut Environment<'static>) {
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".htm") || name.ends_with(".xml") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    crate::csrf::slot::install(env);
}

impl Templates {
    /// Templates from a ready environment; the CSRF helpers and HTML autoescape are added.
    pub fn new(mut env: Environment<'static>) -> Self {
        install_helpers(&mut env);
        Self {
            env: Arc::new(env),
            reload: None,
        }
    }

    /// Templates built afresh by `factory` for every render: edits on disk show at once.
    /// For development only; it re-parses every template on every request.
    pub fn reloading(factory: impl Fn() -> Environment<'static> + Send + Sync + 'static) -> Self {
        let mut env = factory();
        install_helpers(&mut env);
        Self {
            env: Arc::new(env),
            reload: Some(Arc::new(factory)),
        }
    }

    fn with_env<T>(&self, f: impl FnOnce(&Environment<'static>) -> T) -> T {
        match &self.reload {
            Some(factory) => {
                let mut env = factory();
                install_helpers(&mut env);
                f(&env)
            }
            None => f(&self.env),
        }
    }

    /// Renders `name` with `ctx`, outside any request (no CSRF token available).
    ///
    /// # Errors
    ///
    /// Returns minijinja's error when there is no template `name`, it does not parse, or it fails
    /// while rendering (a filter given the wrong type, or `csrf_token()`, which needs a [`Page`]);
    /// `{e:#}` shows the template, line and cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::template::Templates;
    /// let mut env = minijinja::Environment::new();
    /// env.add_template("welcome.txt", "Welcome, {{ name }}!")?;
    /// let templates = Templates::new(env);
    /// let text = templates.render("welcome.txt", minijinja::context! { name => "Ada" })?;
    /// assert_eq!(text, "Welcome, Ada!");
    /// assert!(templates.render("missing.txt", minijinja::context! {}).is_err());
    /// # Ok::<(), minijinja::Error>(())
    /// ```
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.with_env(|env| env.get_template(name)?.render(ctx))
    }

    /// Whether a template of that name exists.
    pub fn has(&self, name: &str) -> bool {
        self.with_env(|env| env.get_template(name).is_ok())
    }
}
