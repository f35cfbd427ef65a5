//! Request parameters the way Django users think of them: every name may carry several values.
//!
//! ## Not axum's `Query` and `Form`
//!
//! [`Query`] and [`Form`] share their names with `axum::extract::Query<T>` and
//! `axum::extract::Form<T>` but do not behave the same:
//!
//! - [`Query`] is not generic: it wraps a [`QueryDict`], where a name may repeat
//!   ([`QueryDict::getlist`]). Type the query string with [`QueryDict::deserialize`].
//! - [`Form<T>`] reads the query string *and* the body, merged (the body's values last), and
//!   accepts `multipart/form-data` as well as `application/x-www-form-urlencoded`.
//! - Both refuse a malformed `%` escape or invalid UTF-8 with a 400 that names the field, where
//!   axum's decode leniently.
//!
//! A module that also imports axum's extractors names ours by path (`portico::params::Form`,
//! `portico::params::Query`), so a reader can tell which is meant.
//!
//! ## What is here
//!
//! [`QueryDict`] holds the decoded pairs of one source (the query string or a form body) in the
//! order they arrived. [`QueryDict::get`] answers the *last* value of a name, as Django's
//! `QueryDict` does, and [`QueryDict::getlist`] answers every value, so a group of checkboxes
//! named `hobby` reads as the list of the checked ones. [`Params`] is the axum extractor that
//! merges the query string with an `application/x-www-form-urlencoded` or `multipart/form-data`
//! body.
//!
//! - this file: [`QueryDict`], [`ParamsError`], the limits and the checkbox rule;
//! - `decode`: the strict percent and UTF-8 decoder;
//! - `de`: the serde deserializer behind [`QueryDict::deserialize`];
//! - `body`: reading a form body, url-encoded or multipart, within [`BodyLimit`];
//! - `extract`: the [`Params`], [`Query`] and [`Form`] extractors.
//!
//! The decoder is written here rather than taken from `form_urlencoded` because that crate is
//! lenient by design: it passes a broken `%` escape through literally and replaces invalid UTF-8
//! with U+FFFD, so a mangled value would silently become a different value. Portico refuses such
//! input with a 400 that names the field instead.
//!
//! File uploads are not kept: file parts of a multipart body are skipped (their size still counts
//! against the body limit).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ErrorPage;

mod body;
mod de;
mod decode;
mod extract;

#[cfg(test)]
mod tests;

#[doc(inline)]
pub use self::body::BodyLimit;
pub(crate) use self::body::{collect_body, form_kind};
#[doc(inline)]
pub use self::extract::{Form, FormRejection, Params, Query};

/// The most fields one request may carry, query string and body together (Django's
/// `DATA_UPLOAD_MAX_NUMBER_FIELDS`).
pub const MAX_FIELDS: usize = 1000;

/// The default largest request body, 2.5 MiB (Django's `DATA_UPLOAD_MAX_MEMORY_SIZE`).
pub const DEFAULT_BODY_LIMIT: usize = 2_621_440;

/// Why a query string or body could not be read as parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A `%` not followed by two hex digits.
    #[error("The field \"{field}\" contains an invalid percent-encoding.")]
    BadEscape {
        /// The field name as far as it could be read.
        field: String,
    },
    /// Bytes that are not UTF-8 once decoded.
    #[error("The field \"{field}\" is not valid UTF-8 text.")]
    BadUtf8 {
        /// The field name as far as it could be read.
        field: String,
    },
    /// More than [`MAX_FIELDS`] fields.
    #[error("The request has more than {max} fields.")]
    TooManyFields {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The body is larger than the configured limit.
    #[error("The request body is larger than {limit} bytes.")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A multipart body that cannot be parsed.
    #[error("The form data could not be read: {0}")]
    Multipart(String),
    /// The body could not be read from the connection.
    #[error("The request body could not be read.")]
    Body,
}

impl ParamsError {
    /// The status this error answers with: 413 for a body over the limit, 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            ParamsError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ParamsError {
    fn into_response(self) -> Response {
        ErrorPage::new(self.status(), self.to_string()).into_response()
    }
}

/// Whether a checkbox's value reads as ticked. A browser sends a ticked box's `value` (`on` by
/// default) and nothing for an unticked one; a hand-written form or a script may send an explicit
/// "off", so `""`, `0`, `false`, `off` and `no` read as unticked too.
pub(crate) fn checkbox_ticked(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v, "" | "0" | "false" | "off" | "no"))
}

/// The decoded name/value pairs of one source, in arrival order, with Django's lookup rules.
///
/// ```
/// use portico::params::QueryDict;
/// let q = QueryDict::parse("hobby=reading&hobby=music&username=ada+l%C3%B6").unwrap();
/// assert_eq!(q.get("username"), Some("ada lö"));
/// assert_eq!(q.getlist("hobby"), vec!["reading", "music"]);
/// assert!(q.contains("hobby"));
/// assert_eq!(q.get("missing"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryDict {
    pairs: Vec<(String, String)>,
}

impl QueryDict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes an `application/x-www-form-urlencoded` string (`+` is a space, `%XX` a byte).
    ///
    /// # Errors
    ///
    /// Returns [`ParamsError::BadEscape`] for a `%` not followed by two hex digits,
    /// [`ParamsError::BadUtf8`] for a name or value that is not UTF-8 once decoded (both name the
    /// field), and [`ParamsError::TooManyFields`] for more than [`MAX_FIELDS`] fields. As a
    /// response each is a 400 page ([`ParamsError::status`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::params::{ParamsError, QueryDict};
    /// let q = QueryDict::parse("next=%2Faccount&page=2")?;
    /// assert_eq!(q.get("next"), Some("/account"));
    /// assert!(matches!(QueryDict::parse("q=100%"), Err(ParamsError::BadEscape { .. })));
    /// # Ok::<(), ParamsError>(())
    /// ```
    pub fn parse(input: &str) -> Result<Self, ParamsError> {
        Self::parse_bytes(input.as_bytes())
    }

    /// [`QueryDict::parse`] over raw bytes (a body need not be UTF-8 before decoding).
    ///
    /// # Errors
    ///
    /// Returns the errors of [`QueryDict::parse`]; [`ParamsError::BadUtf8`] also covers raw
    /// bytes that are not UTF-8.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::params::{ParamsError, QueryDict};
    /// let q = QueryDict::parse_bytes(b"city=M%C3%BCnchen")?;
    /// assert_eq!(q.get("city"), Some("München"));
    /// assert!(matches!(QueryDict::parse_bytes(b"city=\xff"), Err(ParamsError::BadUtf8 { .. })));
    /// # Ok::<(), ParamsError>(())
    /// ```
    pub fn parse_bytes(input: &[u8]) -> Result<Self, ParamsError> {
        decode::pairs(input).map(|pairs| Self { pairs })
    }

    /// Appends a value (the way a repeated key in a query string does).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.pairs.push((name.into(), value.into()));
    }

    /// The last value of `name`, as Django's `QueryDict.get` answers.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` in arrival order; empty when the name is absent.
    pub fn getlist(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `name` appears at all (even with an empty value).
    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Whether the checkbox `name` is ticked: present with a value other than `""`, `0`,
    /// `false`, `off` or `no` (its last value counts, as for [`QueryDict::get`]).
    ///
    /// A `bool` field of a typed form ([`QueryDict::deserialize`], [`Form`]) reads by the same
    /// rule, so a form reads a checkbox the same way typed or not.
    ///
    /// ```
    /// use portico::params::QueryDict;
    /// let q = QueryDict::parse("remember=on&newsletter=off&terms=yes").unwrap();
    /// assert!(q.checked("remember"));
    /// assert!(q.checked("terms"));
    /// assert!(!q.checked("newsletter"));
    /// assert!(!q.checked("absent"));
    /// ```
    pub fn checked(&self, name: &str) -> bool {
        checkbox_ticked(self.get(name))
    }

    /// The pairs in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// A copy without the named fields (used to echo a form back without its passwords).
    pub fn without(&self, names: &[&str]) -> QueryDict {
        QueryDict {
            pairs: self
                .pairs
                .iter()
                .filter(|(n, _)| !names.contains(&n.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Deserializes into a typed form. Repeated keys fill a `Vec` field; a single key fills a
    /// scalar field with its last value.
    ///
    /// # Errors
    ///
    /// Returns a [`serde_json::Error`] when the pairs do not fit `T`: a required field is
    /// missing, or a value does not parse as its field's type (`age=abc` for a number). It is the
    /// visitor's input that is wrong, so answer with the form again and a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::params::QueryDict;
    /// #[derive(serde::Deserialize)]
    /// struct Signup { username: String, #[serde(default)] hobby: Vec<String> }
    /// let q = QueryDict::parse("username=ada&hobby=music&hobby=travel").unwrap();
    /// let form: Signup = q.deserialize().unwrap();
    /// assert_eq!(form.username, "ada");
    /// assert_eq!(form.hobby, ["music", "travel"]);
    /// ```
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        de::from_pairs(&self.pairs)
    }
}
