//! The CSRF side of rendering a page: the `csrf_token()` and `csrf_input()` template helpers, and
//! the per-render [`CsrfSlot`] they read the secret from.
//!
//! The secret is known before the render (a session that has one), taken from the visitor's CSRF
//! cookie when a helper first asks (a visitor without a session), or made in the session after the
//! render: then the helpers write a placeholder (random per render) and count their calls, and
//! [`Page`](crate::template::Page) swaps the placeholders for a token once the session has its
//! secret.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use minijinja::value::{Object, Value};
use minijinja::{Environment, State};

use super::{existing_secret, VisitorSecret, FORM_FIELD};
use crate::session::{Session, SessionError, Status};

/// The name under which a page's [`CsrfSlot`] reaches the helpers.
pub(crate) const SLOT_VAR: &str = "__portico_csrf";

/// The per-render holder of the CSRF secret, read by `csrf_token()` / `csrf_input()`.
#[derive(Debug, Default)]
pub(crate) struct CsrfSlot {
    secret: Mutex<Option<Vec<u8>>>,
    cookie: Option<VisitorSecret>,
    /// No secret can be had (a refused form shown to a visitor without one): empty tokens.
    unavailable: bool,
    now: i64,
    placeholder: String,
    calls: AtomicUsize,
}

impl Object for CsrfSlot {}

impl CsrfSlot {
    /// The slot of a render at `now` whose secret comes from `source`.
    pub(crate) fn new(source: SecretSource, now: i64) -> Self {
        let mut slot = CsrfSlot {
            now,
            ..CsrfSlot::default()
        };
        match source {
            SecretSource::Ready(secret) => {
                *slot.secret.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(secret)
            }
            SecretSource::Cookie(visitor) => slot.cookie = Some(visitor),
            SecretSource::Unavailable => slot.unavailable = true,
            // 128 random bits: no page text contains it by chance, and no visitor can predict it
            // to plant a copy in their own input.
            SecretSource::Session => {
                slot.placeholder = format!("portico-csrf-{:032x}", rand::random::<u128>())
            }
        }
        slot
    }

    /// The time the render's tokens are dated with.
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// How many placeholders the render wrote.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// The text standing in for a token until the session has its secret.
    pub(crate) fn placeholder(&self) -> &str {
        &self.placeholder
    }

    /// Gives the slot its secret, for a second render that mints real tokens.
    pub(crate) fn set_secret(&self, secret: Vec<u8>) {
        *self.secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(secret);
    }

    /// The token a helper writes: minted from the secret, empty when there can be none, or the
    /// placeholder.
    fn token(&self) -> String {
        let mut secret = self.secret.lock().unwrap_or_else(|p| p.into_inner());
        if secret.is_none() {
            if let Some(cookie) = &self.cookie {
                *secret = Some(cookie.for_page().to_vec());
            }
        }
        match secret.as_deref() {
            Some(secret) => super::mint(secret, self.now),
            None if self.unavailable => String::new(),
            None => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                self.placeholder.clone()
            }
        }
    }
}

/// Adds `csrf_token()` and `csrf_input()` to `env`.
pub(crate) fn install(env: &mut Environment<'static>) {
    env.add_function(
        "csrf_token",
        |state: &State| -> Result<String, minijinja::Error> { slot_token(state) },
    );
    env.add_function(
        "csrf_input",
        |state: &State| -> Result<Value, minijinja::Error> {
            let token = slot_token(state)?;
            Ok(Value::from_safe_string(format!(
                "<input type=\"hidden\" name=\"{FORM_FIELD}\" value=\"{token}\">"
            )))
        },
    );
}

fn slot_token(state: &State) -> Result<String, minijinja::Error> {
    let Some(slot) = state
        .lookup(SLOT_VAR)
        .and_then(|v| v.downcast_object::<CsrfSlot>())
    else {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "csrf_token() needs a page rendered through portico::template::Page",
        ));
    };
    Ok(slot.token())
}

/// Where a page's CSRF secret comes from; see [`CsrfSlot`].
pub(crate) enum SecretSource {
    Ready(Vec<u8>),
    Cookie(VisitorSecret),
    Session,
    Unavailable,
}

/// Where this page's tokens come from.
///
/// A session that exists (or starts, or got a new id, in this request) holds the secret; a
/// visitor without one has it in their CSRF cookie. A refused form shown again (`refused`) may
/// store nothing and set no cookie, so it uses only a secret the visitor already has (or shows no
/// token at all).
pub(crate) async fn secret_source(
    session: Option<&Session>,
    visitor: Option<&VisitorSecret>,
    refused: bool,
) -> Result<SecretSource, SessionError> {
    let mut status = Status::Untouched;
    if let Some(session) = session {
        // A returning visitor's session is read anyway; a session this request already
        // touched costs nothing more to look at.
        if session.cookie_id().await.is_some() || session.status().await != Status::Untouched {
            if let Some(secret) = existing_secret(session).await? {
                return Ok(SecretSource::Ready(secret));
            }
            status = session.status().await;
        }
    }
    match (status, visitor) {
        // Only the live session's secret counts, and a refusal may not store one.
        (Status::Kept, _) if refused => Ok(SecretSource::Unavailable),
        (_, Some(visitor)) if refused => Ok(match visitor.for_page_without_cookie() {
            Some(secret) => SecretSource::Ready(secret.to_vec()),
            None => SecretSource::Unavailable,
        }),
        (Status::Kept | Status::Started | Status::Renewed, _) => Ok(SecretSource::Session),
        (_, Some(visitor)) => Ok(SecretSource::Cookie(visitor.clone())),
        (_, None) => Ok(SecretSource::Session),
    }
}
