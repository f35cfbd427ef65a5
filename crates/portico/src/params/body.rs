//! Reading a form body: which encoding it is in, collecting it within the limit, and parsing it.

use axum::http::header;
use bytes::Bytes;
use http_body_util::BodyExt;

use super::{ParamsError, QueryDict, MAX_FIELDS};

/// The kind of body [`Params`](super::Params) can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormKind {
    /// `application/x-www-form-urlencoded`
    UrlEncoded,
    /// `multipart/form-data`
    Multipart,
}

/// Which form encoding a request's `Content-Type` names, if any.
pub(crate) fn form_kind(headers: &http::HeaderMap) -> Option<FormKind> {
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
pub(crate) async fn parse_body(
    headers: &http::HeaderMap,
    body: &Bytes,
) -> Result<QueryDict, ParamsError> {
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
/// application), else [`DEFAULT_BODY_LIMIT`](super::DEFAULT_BODY_LIMIT).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Collects a request body up to `limit` bytes; a longer body is [`ParamsError::TooLarge`].
pub(crate) async fn collect_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<Bytes, ParamsError> {
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
