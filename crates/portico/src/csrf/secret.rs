//! The secret a token is minted from and checked against: a live session's, kept under
//! [`SECRET_KEY`], or the visitor's cookie's ([`VisitorSecret`]) before they have a session.

use axum::response::Response;
use base64::Engine;
use rand::RngCore;

use super::token::b64;
use super::{Reason, VisitorSecret, SECRET_KEY};
use crate::session::{self, Session, SessionError, Status};

async fn session_secret(session: &Session) -> Result<Option<Vec<u8>>, SessionError> {
    let stored: Option<String> = session.get(SECRET_KEY).await?;
    Ok(stored.and_then(|s| b64().decode(s).ok()))
}

/// The session's secret, created (and stored in the session) when it has none.
async fn ensure_secret(session: &Session) -> Result<Vec<u8>, SessionError> {
    if let Some(secret) = session_secret(session).await? {
        return Ok(secret);
    }
    let mut secret = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    session.insert(SECRET_KEY, &b64().encode(&secret)).await?;
    Ok(secret)
}

/// The secret if the session already has one, without creating a session for a new visitor.
pub(crate) async fn existing_secret(session: &Session) -> Result<Option<Vec<u8>>, SessionError> {
    session_secret(session).await
}

/// The secret a page of a live (or starting) session mints its tokens from, made if needed. A
/// session that begins in this request takes the secret the visitor's cookie holds, so that the
/// pages they already have open keep working; any other session gets a secret of its own.
pub(crate) async fn session_secret_for_page(
    session: &Session,
    visitor: Option<&VisitorSecret>,
) -> Result<Vec<u8>, SessionError> {
    if let Some(secret) = session_secret(session).await? {
        return Ok(secret);
    }
    if session.status().await == Status::Started {
        if let Some(secret) = visitor.and_then(VisitorSecret::current) {
            session.insert(SECRET_KEY, &b64().encode(secret)).await?;
            return Ok(secret.to_vec());
        }
    }
    ensure_secret(session).await
}

/// The secret a token of this request must have been minted from, or why there is none: a live
/// session's (only), else the visitor's cookie's.
pub(super) async fn secret_to_check(
    session: &Session,
    visitor: &VisitorSecret,
) -> Result<Result<Vec<u8>, Reason>, SessionError> {
    if session.cookie_id().await.is_some() {
        if let Some(secret) = session_secret(session).await? {
            return Ok(Ok(secret));
        }
        if session.id().await?.is_some() {
            return Ok(Err(Reason::Foreign));
        }
    }
    Ok(visitor.for_check().map(|s| s.to_vec()))
}

/// On the way out of a request that was not refused: gives a session that begins here the
/// visitor's secret, and sets, renews or deletes the secret cookie.
///
/// The cookie stays while a session holds its very secret (a visitor's short-lived anonymous
/// session: if it expires, the pages they have open still work with the cookie alone), and goes
/// when the session gets a secret of its own: at login (`cycle_id`) and logout (`flush`).
pub(super) async fn finish(
    visitor: &VisitorSecret,
    session: Option<&Session>,
    resp: &mut Response,
) -> Result<(), SessionError> {
    let status = match session {
        Some(s) => s.status().await,
        None => Status::Untouched,
    };
    match (status, session) {
        // A cookie made before a login in this very request must not outlive it either.
        (Status::Renewed, _) => {
            if visitor.carried() {
                visitor.delete_cookie(resp);
            }
        }
        (Status::Ended, _) => {
            if !visitor.set_cookie(resp) && visitor.carried() {
                visitor.delete_cookie(resp);
            }
        }
        (Status::Started, Some(session)) => {
            if !session.contains(SECRET_KEY).await? {
                if let Some(secret) = visitor.current() {
                    session.insert(SECRET_KEY, &b64().encode(secret)).await?;
                }
            }
            visitor.set_cookie(resp);
        }
        _ => {
            visitor.set_cookie(resp);
        }
    }
    if visitor.used() {
        session::keep_private(resp);
    }
    Ok(())
}
