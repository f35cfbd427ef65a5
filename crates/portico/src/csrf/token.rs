//! Tokens: `nonce (16 bytes) ‖ issue time (8) ‖ HMAC-SHA256(secret, nonce ‖ time) (16)`, in
//! base64url. A fresh nonce per token makes every page's token a different string (BREACH-safe)
//! and keeps the secret out of every page.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Reason, MAX_SKEW};

const NONCE_LEN: usize = 16;
const TIME_LEN: usize = 8;
const TAG_LEN: usize = 16;
pub(super) const TOKEN_LEN: usize = NONCE_LEN + TIME_LEN + TAG_LEN;

pub(super) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn tag(secret: &[u8], nonce: &[u8], issued: &[u8]) -> [u8; TAG_LEN] {
    // HMAC takes keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(b"portico.csrf.v1");
    mac.update(nonce);
    mac.update(issued);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Mints a token from a session's secret at time `now`.
pub fn mint(secret: &[u8], now: i64) -> String {
    let mut raw = [0u8; TOKEN_LEN];
    rand::thread_rng().fill_bytes(&mut raw[..NONCE_LEN]);
    raw[NONCE_LEN..NONCE_LEN + TIME_LEN].copy_from_slice(&(now as u64).to_be_bytes());
    let t = tag(
        secret,
        &raw[..NONCE_LEN],
        &raw[NONCE_LEN..NONCE_LEN + TIME_LEN],
    );
    raw[NONCE_LEN + TIME_LEN..].copy_from_slice(&t);
    b64().encode(raw)
}

/// Checks `token` against a session's secret (`None` when the session has none yet); `now` and
/// `ttl` are in seconds.
///
/// # Errors
///
/// Returns the [`Reason`] the request is refused for: [`Reason::Missing`] for an empty token,
/// [`Reason::Malformed`] for one that is not a token at all, [`Reason::Foreign`] for one this
/// secret did not mint (or any token when there is no secret, or one dated in the future), and
/// [`Reason::Expired`] for one older than `ttl`. Only `Expired` is worth telling the visitor
/// apart: reloading the form fixes it.
///
/// # Examples
///
/// ```
/// use portico::csrf::{mint, verify, Reason};
/// let secret = [7u8; 32];
/// let token = mint(&secret, 1_000);
/// assert_eq!(verify(Some(&secret), &token, 1_060, 3600), Ok(()));
/// assert_eq!(verify(Some(&[8u8; 32]), &token, 1_060, 3600), Err(Reason::Foreign));
/// assert_eq!(verify(Some(&secret), &token, 1_000 + 3601, 3600), Err(Reason::Expired));
/// assert_eq!(verify(Some(&secret), "nonsense", 1_060, 3600), Err(Reason::Malformed));
/// ```
pub fn verify(secret: Option<&[u8]>, token: &str, now: i64, ttl: i64) -> Result<(), Reason> {
    let raw = parse(token)?;
    let Some(secret) = secret else {
        return Err(Reason::Foreign);
    };
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (issued, given) = rest.split_at(TIME_LEN);
    let expected = tag(secret, nonce, issued);
    if !bool::from(expected.ct_eq(given)) {
        return Err(Reason::Foreign);
    }
    let mut t = [0u8; TIME_LEN];
    t.copy_from_slice(issued);
    let issued_at = u64::from_be_bytes(t) as i64;
    if issued_at > now + MAX_SKEW {
        return Err(Reason::Foreign);
    }
    if now - issued_at > ttl {
        return Err(Reason::Expired);
    }
    Ok(())
}

/// A token's bytes, or why it is not one.
pub(super) fn parse(token: &str) -> Result<Vec<u8>, Reason> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Reason::Missing);
    }
    let raw = b64().decode(token).map_err(|_| Reason::Malformed)?;
    if raw.len() != TOKEN_LEN {
        return Err(Reason::Malformed);
    }
    Ok(raw)
}

/// Checks `token` against `secret`, or says why there is no secret to check it against. A token
/// that says it is past its lifetime is called expired first: "the form was open too long" is
/// the truer answer for a visitor whose cookie the browser dropped meanwhile.
pub(super) fn check(
    secret: Result<&[u8], Reason>,
    token: &str,
    now: i64,
    ttl: i64,
) -> Result<(), Reason> {
    match secret {
        Ok(secret) => verify(Some(secret), token, now, ttl),
        Err(reason) => {
            let raw = parse(token)?;
            let mut t = [0u8; TIME_LEN];
            t.copy_from_slice(&raw[NONCE_LEN..NONCE_LEN + TIME_LEN]);
            if now - u64::from_be_bytes(t) as i64 > ttl {
                return Err(Reason::Expired);
            }
            Err(reason)
        }
    }
}
