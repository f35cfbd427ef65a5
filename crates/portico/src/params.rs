//! Request parameters the way Django users think of them: every name may carry several values.
//!
//! [`QueryDict`] holds the decoded pairs of one source (the query string or a form body) in the order
//! they arrived. [`QueryDict::get`] answers the *last* value of a name, as Django's `QueryDict` does,
//! and [`QueryDict::getlist`] answers every value, so a group of checkboxes named `hobby` reads as
//! the list of the checked ones. [`Params`] is the axum extractor that merges the query string with
//! an `application/x-www-form-urlencoded` or `multipart/form-data` body.
//!
//! The decoder is written here rather than taken from `form_urlencoded` because that crate is lenient
//! by design: it passes a broken `%` escape through literally and replaces invalid UTF-8 with U+FFFD,
//! so a mangled value would silently become a different value. Portico refuses such input with a 400
//! that names the field instead.
//!
//! File uploads are not kept: file parts of a multipart body are skipped (their size still counts
//! against the body limit).

use std::borrow::Cow;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ErrorPage;

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
    /// Refuses a broken escape or invalid UTF-8 with an error that names the field, and more than
    /// [`MAX_FIELDS`] fields.
    pub fn parse(input: &str) -> Result<Self, ParamsError> {
        Self::parse_bytes(input.as_bytes())
    }

    /// [`QueryDict::parse`] over raw bytes (a body need not be UTF-8 before decoding).
    pub fn parse_bytes(input: &[u8]) -> Result<Self, ParamsError> {
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
            let name =
                decode(raw_name).map_err(|e| e.for_field(&String::from_utf8_lossy(raw_name)))?;
            let value = decode(raw_value).map_err(|e| e.for_field(&name))?;
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { pairs })
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
        // A map of name -> string or list of strings: serde's untagged handling then lets a
        // `Vec<String>` field take one or many values and a `String` field take the last.
        let mut map = serde_json::Map::new();
        for (name, value) in &self.pairs {
            match map.get_mut(name) {
                None => {
                    map.insert(name.clone(), serde_json::Value::String(value.clone()));
                }
                Some(existing) => {
                    let mut list = match existing.take() {
                        serde_json::Value::Array(a) => a,
                        other => vec![other],
                    };
                    list.push(serde_json::Value::String(value.clone()));
                    *existing = serde_json::Value::Array(list);
                }
            }
        }
        T::deserialize(FormMap(map))
    }
}

/// A map deserializer that lets a scalar field read the last of several values and a sequence
/// field read one value as a list of one.
struct FormMap(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserializer<'de> for FormMap {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::value::MapDeserializer;
        let iter = self.0.into_iter().map(|(k, v)| (k, FormValue(v)));
        visitor.visit_map(MapDeserializer::new(iter))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct FormValue(serde_json::Value);

impl<'de> serde::de::IntoDeserializer<'de, serde_json::Error> for FormValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl FormValue {
    fn last_string(self) -> String {
        match self.0 {
            serde_json::Value::String(s) => s,
            serde_json::Value::Array(mut a) => match a.pop() {
                Some(serde_json::Value::String(s)) => s,
                _ => String::new(),
            },
            _ => String::new(),
        }
    }
}

macro_rules! parse_scalar {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                let s = self.last_string();
                match s.trim().parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(serde::de::Error::custom(format!("\"{s}\" is not a valid number"))),
                }
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for FormValue {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_string(self.last_string())
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let items: Vec<FormValue> = match self.0 {
            serde_json::Value::Array(a) => a.into_iter().map(FormValue).collect(),
            other => vec![FormValue(other)],
        };
        visitor.visit_seq(serde::de::value::SeqDeserializer::new(items.into_iter()))
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_bool<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // A checkbox sends "on" (or its value) when checked and nothing when not.
        let s = self.last_string();
        visitor.visit_bool(!matches!(s.as_str(), "" | "0" | "false" | "off" | "no"))
    }

    parse_scalar! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
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

/// The parameters of a request: its query string and, for a form post, its body.
///
/// `get` and `getlist` look in both, the body's values coming after the query string's, so
/// `get` prefers what the form sent. The body is read only for `application/x-www-form-urlencoded`
/// and `multipart/form-data`; anything else leaves [`Params::form`] empty.
///
/// ```
/// use portico::params::Params;
/// async fn hobbies(params: Params) -> String {
///     format!("{} likes {}", params.get("username").unwrap_or("nobody"), params.getlist("hobby").join(", "))
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(hobbies));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The query string's pairs (Django's `request.GET`).
    pub query: QueryDict,
    /// The body's pairs (Django's `request.POST`).
    pub form: QueryDict,
}

impl Params {
    /// The last value of `name`, the body's before the query string's.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.form.get(name).or_else(|| self.query.get(name))
    }

    /// Every value of `name`: the query string's, then the body's.
    pub fn getlist(&self, name: &str) -> Vec<&str> {
        let mut all = self.query.getlist(name);
        all.extend(self.form.getlist(name));
        all
    }

    /// Whether `name` appears in either source.
    pub fn contains(&self, name: &str) -> bool {
        self.form.contains(name) || self.query.contains(name)
    }

    /// Every pair: the query string's, then the body's.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().chain(self.form.iter())
    }

    /// Reads the parameters of a request whose body has already been collected.
    pub async fn from_parts_and_body(parts: &Parts, body: &Bytes) -> Result<Self, ParamsError> {
        let query = QueryDict::parse(parts.uri.query().unwrap_or(""))?;
        let form = parse_body(&parts.headers, body).await?;
        if query.len() + form.len() > MAX_FIELDS {
            return Err(ParamsError::TooManyFields { max: MAX_FIELDS });
        }
        Ok(Params { query, form })
    }
}

/// The kind of body [`Params`] can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    /// `application/x-www-form-urlencoded`
    UrlEncoded,
    /// `multipart/form-data`
    Multipart,
}

/// Which form encoding a request's `Content-Type` names, if any.
pub fn form_kind(headers: &http::HeaderMap) -> Option<FormKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(FormKind::UrlEncoded)
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        Some(FormKind::Multipart)
    } else {
        None
    }
}

/// Parses a collected body according to the request's content type.
pub async fn parse_body(headers: &http::HeaderMap, body: &Bytes) -> Result<QueryDict, ParamsError> {
    match form_kind(headers) {
        Some(FormKind::UrlEncoded) => QueryDict::parse_bytes(body),
        Some(FormKind::Multipart) => parse_multipart(headers, body.clone()).await,
        None => Ok(QueryDict::new()),
    }
}

async fn parse_multipart(headers: &http::HeaderMap, body: Bytes) -> Result<QueryDict, ParamsError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|e| ParamsError::Multipart(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut dict = QueryDict::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ParamsError::Multipart(e.to_string())),
        };
        if dict.len() == MAX_FIELDS {
            return Err(ParamsError::TooManyFields { max: MAX_FIELDS });
        }
        let name = field.name().unwrap_or("").to_string();
        if field.file_name().is_some() {
            // File parts are not kept; drain them so the rest of the body still parses.
            if field.bytes().await.is_err() {
                return Err(ParamsError::Multipart(format!(
                    "the file field \"{name}\" is cut short"
                )));
            }
            continue;
        }
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ParamsError::Multipart(e.to_string()))?;
        let value = String::from_utf8(bytes.to_vec()).map_err(|_| ParamsError::BadUtf8 {
            field: name.chars().take(64).collect(),
        })?;
        dict.push(name, value);
    }
    Ok(dict)
}

/// The body limit in force for a request: [`BodyLimit`] from the request's extensions (set by the
/// application), else [`DEFAULT_BODY_LIMIT`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Collects a request body up to `limit` bytes; a longer body is [`ParamsError::TooLarge`].
pub async fn collect_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ParamsError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ParamsError::TooLarge { limit })
            } else {
                Err(ParamsError::Body)
            }
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ParamsError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // The CSRF layer has already read and parsed a form body; reuse its work.
        if let Some(parsed) = req.extensions().get::<Params>() {
            return Ok(parsed.clone());
        }
        let (parts, body) = req.into_parts();
        let limit = parts
            .extensions
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(DEFAULT_BODY_LIMIT);
        let bytes = if form_kind(&parts.headers).is_some() {
            collect_body(body, limit).await?
        } else {
            Bytes::new()
        };
        Params::from_parts_and_body(&parts, &bytes).await
    }
}

/// The query string alone, for handlers that must not read a body (GET views).
///
/// ```
/// use portico::params::Query;
/// async fn list(Query(q): Query) -> String { q.getlist("tag").join(",") }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::get(list));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Query(pub QueryDict);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ParamsError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        QueryDict::parse(parts.uri.query().unwrap_or("")).map(Query)
    }
}

/// A typed form read from [`Params`]: repeated keys fill `Vec` fields.
///
/// A value that does not fit the type is a 400 that says which.
///
/// ```
/// use portico::params::Form;
/// #[derive(serde::Deserialize)]
/// struct Note { title: String, #[serde(default)] tags: Vec<String> }
/// async fn create(Form(note): Form<Note>) -> String { format!("{} {:?}", note.title, note.tags) }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(create));
/// ```
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let params = Params::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut merged = params.query.clone();
        for (n, v) in params.form.iter() {
            merged.push(n, v);
        }
        merged.deserialize::<T>().map(Form).map_err(|e| {
            ErrorPage::new(
                StatusCode::BAD_REQUEST,
                format!("The form could not be read: {e}."),
            )
            .into_response()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_every_value_in_order() {
        let q = QueryDict::parse("hobby=reading&x=1&hobby=music&hobby=travel").unwrap();
        assert_eq!(q.getlist("hobby"), ["reading", "music", "travel"]);
        assert_eq!(q.get("hobby"), Some("travel"));
        assert_eq!(q.getlist("nothing"), Vec::<&str>::new());
    }

    #[test]
    fn plus_is_space_and_percent_decodes_utf8() {
        let q = QueryDict::parse("name=Ada+Lovelace&city=Z%C3%BCrich&plus=%2B").unwrap();
        assert_eq!(q.get("name"), Some("Ada Lovelace"));
        assert_eq!(q.get("city"), Some("Zürich"));
        assert_eq!(q.get("plus"), Some("+"));
    }

    #[test]
    fn empty_values_and_bare_keys_are_present_but_empty() {
        let q = QueryDict::parse("a=&b&&c=3").unwrap();
        assert_eq!(q.get("a"), Some(""));
        assert_eq!(q.get("b"), Some(""));
        assert!(q.contains("b"));
        assert_eq!(q.len(), 3);
        assert!(QueryDict::parse("").unwrap().is_empty());
    }

    #[test]
    fn a_value_may_contain_equals_signs() {
        let q = QueryDict::parse("token=abc==&t=a=b").unwrap();
        assert_eq!(q.get("token"), Some("abc=="));
        assert_eq!(q.get("t"), Some("a=b"));
    }

    #[test]
    fn broken_escape_is_refused_naming_the_field() {
        let e = QueryDict::parse("ok=1&username=ab%zz").unwrap_err();
        assert_eq!(
            e,
            ParamsError::BadEscape {
                field: "username".into()
            }
        );
        assert!(e.to_string().contains("username"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = QueryDict::parse("title=abc%4").unwrap_err();
        assert_eq!(
            e,
            ParamsError::BadEscape {
                field: "title".into()
            }
        );
        let e = QueryDict::parse("x=%").unwrap_err();
        assert_eq!(e, ParamsError::BadEscape { field: "x".into() });
    }

    #[test]
    fn invalid_utf8_is_refused_naming_the_field() {
        let e = QueryDict::parse("bio=%FF%FE").unwrap_err();
        assert_eq!(
            e,
            ParamsError::BadUtf8 {
                field: "bio".into()
            }
        );
        let e = QueryDict::parse_bytes(b"raw=\xff").unwrap_err();
        assert_eq!(
            e,
            ParamsError::BadUtf8 {
                field: "raw".into()
            }
        );
    }

    #[test]
    fn more_than_a_thousand_fields_is_refused() {
        let ok: String = (0..MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
        assert_eq!(QueryDict::parse(&ok).unwrap().len(), MAX_FIELDS);
        let too_many = format!("{ok}one=more");
        assert_eq!(
            QueryDict::parse(&too_many).unwrap_err(),
            ParamsError::TooManyFields { max: MAX_FIELDS }
        );
    }

    #[test]
    fn params_prefers_the_body_and_lists_both() {
        let p = Params {
            query: QueryDict::parse("tag=a&next=/x").unwrap(),
            form: QueryDict::parse("tag=b&next=/y").unwrap(),
        };
        assert_eq!(p.get("next"), Some("/y"));
        assert_eq!(p.getlist("tag"), ["a", "b"]);
    }

    #[test]
    fn typed_form_takes_one_or_many_values() {
        #[derive(serde::Deserialize)]
        struct F {
            title: String,
            #[serde(default)]
            tags: Vec<String>,
            #[serde(default)]
            remember: bool,
            page: Option<u32>,
        }
        let f: F = QueryDict::parse("title=a&title=b&tags=work&remember=on&page=3")
            .unwrap()
            .deserialize()
            .unwrap();
        assert_eq!(f.title, "b");
        assert_eq!(f.tags, ["work"]);
        assert!(f.remember);
        assert_eq!(f.page, Some(3));
        let f: F = QueryDict::parse("title=a").unwrap().deserialize().unwrap();
        assert!(f.tags.is_empty());
        assert!(!f.remember);
        assert!(QueryDict::parse("title=a&page=x")
            .unwrap()
            .deserialize::<F>()
            .is_err());
    }

    #[tokio::test]
    async fn multipart_text_fields_are_read_and_files_skipped() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nada\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"hobby\"\r\n\r\nmusic\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\n\
                    Content-Type: image/png\r\n\r\n\x01\x02\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"hobby\"\r\n\r\ntravel\r\n--XyZ--\r\n";
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let q = parse_body(&headers, &Bytes::from(body)).await.unwrap();
        assert_eq!(q.get("username"), Some("ada"));
        assert_eq!(q.getlist("hobby"), ["music", "travel"]);
        assert!(!q.contains("avatar"));
    }

    #[tokio::test]
    async fn malformed_multipart_is_a_clear_400() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let e = parse_body(&headers, &Bytes::from_static(b"--XyZ\r\ngarbage"))
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn body_over_the_limit_is_too_large() {
        let body = axum::body::Body::from(vec![b'a'; 100]);
        let e = collect_body(body, 10).await.unwrap_err();
        assert_eq!(e, ParamsError::TooLarge { limit: 10 });
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
