//! Password validation: Django's four validators, with Django's messages.
//!
//! | validator | refuses |
//! |---|---|
//! | minimum length | fewer than [`MIN_LENGTH`] characters |
//! | similarity to the username | a password too like the username or a part of it (quick ratio ≥ 0.7) |
//! | common passwords | one of the 40,101 passwords of `assets/common-passwords.txt.gz`: Django's list merged with zxcvbn's |
//! | numeric | a password of digits only |
//!
//! Every validator runs, so a person sees every reason at once. The length cap
//! ([`super::users::PASSWORD_MAX`]) is not a strength rule and is checked by the caller.
//!
//! The similarity measure is Python's `SequenceMatcher.quick_ratio`, which Django uses: twice the
//! number of characters the two strings share (as multisets) over their total length. No crate
//! offers that bound by itself (edit-distance crates such as `strsim` measure order too, and
//! would refuse and admit other passwords than Django does), and it is a dozen lines.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Shortest password (Django's `MinimumLengthValidator` default).
pub const MIN_LENGTH: usize = 8;
/// Quick ratio at or above which a password is too similar to the username.
const MAX_SIMILARITY: f64 = 0.7;

/// Django's list followed by zxcvbn's password list, gzip-compressed, one trimmed lower-case
/// password a line (`tools/passwords/build-common-passwords.py` builds it; sources and licences in
/// `assets/common-passwords.LICENSE`).
static COMMON_GZ: &[u8] = include_bytes!("../../assets/common-passwords.txt.gz");

/// The common passwords, decompressed on first use.
fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        use std::io::Read;
        let mut text = String::new();
        // The file is part of the binary and was read by the tests; a failure here would be a
        // broken build, and an empty list then refuses nothing rather than everything.
        if let Err(e) = flate2::read::GzDecoder::new(COMMON_GZ).read_to_string(&mut text) {
            tracing::error!(error = %e, "the embedded common-password list cannot be read");
        }
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// `MinimumLengthValidator`.
pub fn minimum_length(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!(
            "This password is too short. It must contain at least {MIN_LENGTH} characters."
        ));
    }
    Ok(())
}

/// `UserAttributeSimilarityValidator` over the username: the password (lower case) against the
/// username and each of its parts split on non-word characters (`ada.lovelace` gives `ada`,
/// `lovelace` and `ada.lovelace`).
pub fn user_attribute_similarity(password: &str, username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Ok(());
    }
    let password = password.to_lowercase();
    let value = username.to_lowercase();
    let parts = value
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|p| !p.is_empty())
        .chain(std::iter::once(value.as_str()));
    for part in parts {
        if exceeds_maximum_length_ratio(&password, part) {
            continue;
        }
        if quick_ratio(&password, part) >= MAX_SIMILARITY {
            return Err("The password is too similar to the username.".into());
        }
    }
    Ok(())
}

/// Django's shortcut: a password ten times longer than the value can never reach the ratio.
fn exceeds_maximum_length_ratio(password: &str, value: &str) -> bool {
    let pwd_len = password.chars().count() as f64;
    let value_len = value.chars().count() as f64;
    pwd_len >= 10.0 * value_len && value_len < MAX_SIMILARITY / 2.0 * pwd_len
}

/// Python's `SequenceMatcher(a, b).quick_ratio()`.
fn quick_ratio(a: &str, b: &str) -> f64 {
    let total = a.chars().count() + b.chars().count();
    if total == 0 {
        return 1.0;
    }
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in b.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let mut matches = 0usize;
    for c in a.chars() {
        if let Some(n) = counts.get_mut(&c) {
            if *n > 0 {
                *n -= 1;
                matches += 1;
            }
        }
    }
    2.0 * matches as f64 / total as f64
}

/// `CommonPasswordValidator`, with Django's list and zxcvbn's merged: Django's list alone has fewer
/// than 20,000 entries once deduplicated.
pub fn common_password(password: &str) -> Result<(), String> {
    if common_passwords().contains(password.trim().to_lowercase().as_str()) {
        return Err("This password is too common.".into());
    }
    Ok(())
}

/// `NumericPasswordValidator`: digits only, in any script (Python's `isdigit`).
pub fn numeric(password: &str) -> Result<(), String> {
    if !password.is_empty() && password.chars().all(char::is_numeric) {
        return Err("This password is entirely numeric.".into());
    }
    Ok(())
}

/// Runs the four validators; answers every message, in Django's order.
pub fn validate(password: &str, username: &str) -> Result<(), Vec<String>> {
    let errors: Vec<String> = [
        minimum_length(password),
        user_attribute_similarity(password, username),
        common_password(password),
        numeric(password),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What the register form says about passwords before anything is typed (Django's help texts).
pub const HELP: &str = "At least 8 characters; not too similar to your username, not a commonly \
     used password, and not entirely numeric.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_at_least_20_000_entries_from_both_sources() {
        let list = common_passwords();
        assert!(list.len() >= 20_000, "{} entries", list.len());
        // In Django's list.
        for p in ["password", "12345678", "qwerty", "iloveyou"] {
            assert!(list.contains(p), "{p}");
        }
        // Only in zxcvbn's.
        for p in ["fallen_angel", "usuckballz1", "freepass"] {
            assert!(list.contains(p), "{p}");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert_eq!(
            minimum_length("abc1234"),
            Err("This password is too short. It must contain at least 8 characters.".into())
        );
        assert!(minimum_length("abcd1234").is_ok());
        // Characters, not bytes.
        assert!(minimum_length("ééééééé").is_err());
    }

    #[test]
    fn passwords_like_the_username_are_refused() {
        let m = Err("The password is too similar to the username.".to_string());
        assert_eq!(user_attribute_similarity("alice123", "alice"), m);
        assert_eq!(user_attribute_similarity("ALICE", "alice"), m);
        assert_eq!(user_attribute_similarity("lovelace", "ada.lovelace"), m);
        assert_eq!(user_attribute_similarity("ecila", "alice"), m);
        assert!(user_attribute_similarity("correct horse battery", "alice").is_ok());
        assert!(user_attribute_similarity("anything", "").is_ok());
        // A password ten times the name's length is never compared (Django's shortcut).
        assert!(user_attribute_similarity("a-long-passphrase-xyz", "a").is_ok());
    }

    #[test]
    fn quick_ratio_matches_python() {
        // SequenceMatcher(a="abcd", b="bcde").quick_ratio() == 0.75
        assert!((quick_ratio("abcd", "bcde") - 0.75).abs() < 1e-9);
        assert!((quick_ratio("a", "aaaaaaaaaa") - 2.0 / 11.0).abs() < 1e-9);
        assert_eq!(quick_ratio("", ""), 1.0);
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert_eq!(
            common_password("password"),
            Err("This password is too common.".into())
        );
        assert!(common_password("PassWord ").is_err());
        assert!(common_password("aaaaaaaa").is_err());
        assert!(common_password("12345678").is_err());
        assert!(common_password("correct horse battery").is_ok());
    }

    #[test]
    fn numeric_passwords_are_refused() {
        assert_eq!(
            numeric("8675309123"),
            Err("This password is entirely numeric.".into())
        );
        assert!(numeric("١٢٣٤٥٦٧٨٩").is_err());
        assert!(numeric("8675309x").is_ok());
    }

    #[test]
    fn every_reason_is_given_at_once() {
        let errors = validate("1234", "bob").unwrap_err();
        assert_eq!(
            errors,
            vec![
                "This password is too short. It must contain at least 8 characters.".to_string(),
                "This password is too common.".to_string(),
                "This password is entirely numeric.".to_string(),
            ]
        );
        assert!(validate("correct horse battery", "alice").is_ok());
    }
}
