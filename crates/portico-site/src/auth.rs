//! Who is logged in: the user's id and name in the session, read on demand.
//!
//! Login cycles the session id (so the CSRF secret and any captcha rotate with it), marks the
//! session as a user's (the session layer then keeps it for the long idle timeout rather than the
//! anonymous one) and stores the user; when the session already belongs to another user, login
//! flushes it instead of cycling, so nothing the first user left in it reaches the second. Logout
//! flushes the session, deleting it from the store for every server. The session never holds a
//! password or a hash of one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
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

/// The logged-in user, if any. Extracting it tells the templates and the event log who it is.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state)
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

/// A redirect target that stays on this site: a path, never `//host` or a scheme.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains(['\r', '\n']) =>
        {
            n.to_string()
        }
        _ => "/notes/".to_string(),
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

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/notes/3/")), "/notes/3/");
        assert_eq!(safe_next(Some("//evil.test/")), "/notes/");
        assert_eq!(safe_next(Some("https://evil.test/")), "/notes/");
        assert_eq!(safe_next(Some("/\\evil.test")), "/notes/");
        assert_eq!(safe_next(None), "/notes/");
    }
}
