//! Strict `application/x-www-form-urlencoded` decoding: a broken `%` escape or bytes that are not
//! UTF-8 are refused, naming the field, rather than passed on changed.

use std::borrow::Cow;

use super::{ParamsError, MAX_FIELDS};

/// Splits `input` at `&` and decodes each `name=value` pair, in order; empty pieces are skipped
/// and a piece without `=` is a name with an empty value.
pub(super) fn pairs(input: &[u8]) -> Result<Vec<(String, String)>, ParamsError> {
    let mut pairs = Vec::new();
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        if pairs.len() == MAX_FIELDS {
            return Err(ParamsError::TooManyFields { max: MAX_FIELDS });
        }
        let (raw_name, raw_value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let name = decode(raw_name).map_err(|e| e.for_field(&String::from_utf8_lossy(raw_name)))?;
        let value = decode(raw_value).map_err(|e| e.for_field(&name))?;
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// A decoding failure before the field name is known.
enum DecodeError {
    Escape,
    Utf8,
}

impl DecodeError {
    fn for_field(self, field: &str) -> ParamsError {
        let field = field.chars().take(64).collect();
        match self {
            DecodeError::Escape => ParamsError::BadEscape { field },
            DecodeError::Utf8 => ParamsError::BadUtf8 { field },
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one name or value.
fn decode(raw: &[u8]) -> Result<Cow<'_, str>, DecodeError> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| DecodeError::Utf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = raw.get(i + 1).copied().and_then(hex_val);
                let lo = raw.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(DecodeError::Escape),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| DecodeError::Utf8)
}
