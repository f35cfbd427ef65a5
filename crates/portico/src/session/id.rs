//! The session id: its shape, how a fresh one is made, and which cookie values can be one.

use std::fmt::Write as _;

use base64::Engine;
use rand::RngCore;

/// Hex digits of creation time in front of a session id (see [`super::StorageKey::of`]).
pub(crate) const ORDER_LEN: usize = 16;

/// Characters of 256 random bits in base64url without padding: an id's random part, and the
/// whole of an id that earlier versions issued.
pub(crate) const RANDOM_LEN: usize = 43;

/// Characters of a session id: the time prefix, then the random part.
pub(crate) const ID_LEN: usize = ORDER_LEN + RANDOM_LEN;

/// A fresh session id: the creation time in microseconds as 16 hex digits, then 256 bits from the
/// OS CSPRNG in base64url without padding (59 characters in all).
///
/// The time prefix is not a secret (the cookie's holder knows when they got it) and adds nothing
/// to guessing; it is there for the stores: [`super::StorageKey::of`] keeps it in front, so new
/// sessions sort after older ones and an SQL store appends them at the end of its index instead of
/// rewriting a random page of it for every first visit.
pub(crate) fn new_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut id = String::with_capacity(ID_LEN);
    // Writing into a String cannot fail.
    let _ = write!(id, "{micros:016x}");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
    id
}

/// Whether a cookie value can be a session id: a current one, or one of the 43-character ids
/// (random part only) that earlier versions issued, so an upgrade logs nobody out.
pub(crate) fn well_formed(id: &str) -> bool {
    let random = match id.len() {
        ID_LEN => {
            let (order, random) = id.split_at(ORDER_LEN);
            if !order
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return false;
            }
            random
        }
        RANDOM_LEN => id,
        _ => return false,
    };
    random
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
