//! The extractors: [`Params`] (query string and body), [`Query`] (the query string alone) and
//! [`Form`] (both, typed).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::body::{collect_body, form_kind, parse_body, BodyLimit};
use super::{ParamsError, QueryDict, DEFAULT_BODY_LIMIT, MAX_FIELDS};
use crate::error::ErrorPage;

/// The parameters of a request: its query string and, for a form post, its body.
///
/// `get` and `getlist` look in both, the body's values coming after the query string's, so
/// `get` prefers what the form sent. The body is read only for `application/x-www-form-urlencoded`
/// and `multipart/form-data`; anything else leaves [`Params::form`] empty.
///
/// ```
/// use portico::params::Params;
/// async fn hobbies(params: Params) -> String {
///     let name = params.get("username").unwrap_or("nobody");
///     format!("{name} likes {}", params.getlist("hobby").join(", "))
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
    pub(crate) async fn from_parts_and_body(
        parts: &Parts,
        body: &Bytes,
    ) -> Result<Self, ParamsError> {
        let query = QueryDict::parse(parts.uri.query().unwrap_or(""))?;
        let form = parse_body(&parts.headers, body).await?;
        if query.len() + form.len() > MAX_FIELDS {
            return Err(ParamsError::TooManyFields { max: MAX_FIELDS });
        }
        Ok(Params { query, form })
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
/// The query string and the body are merged, the body's values last, so a scalar field takes
/// the body's value when both carry the name. A value that does not fit the type is a
/// [`FormRejection`], a 400 that says which.
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
    type Rejection = FormRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let params = Params::from_request(req, state).await?;
        let mut merged = params.query.clone();
        for (n, v) in params.form.iter() {
            merged.push(n, v);
        }
        merged
            .deserialize::<T>()
            .map(Form)
            .map_err(FormRejection::Deserialize)
    }
}

/// Why [`Form`] refused a request; as a response, an error page with [`FormRejection::status`]
/// and the message of its `Display`.
///
/// ```
/// use axum::http::StatusCode;
/// use portico::params::{FormRejection, ParamsError};
/// let r = FormRejection::from(ParamsError::TooLarge { limit: 10 });
/// assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum FormRejection {
    /// The query string or the body could not be read as parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The parameters do not fit the form's type (a missing field, a number that is not one).
    #[error("The form could not be read: {0}.")]
    Deserialize(serde_json::Error),
}

impl FormRejection {
    /// The status the rejection answers with: [`ParamsError::status`] for unreadable parameters,
    /// 400 for parameters that do not fit the type.
    pub fn status(&self) -> StatusCode {
        match self {
            FormRejection::Params(e) => e.status(),
            FormRejection::Deserialize(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for FormRejection {
    fn into_response(self) -> Response {
        match self {
            FormRejection::Params(e) => e.into_response(),
            FormRejection::Deserialize(_) => {
                ErrorPage::new(self.status(), self.to_string()).into_response()
            }
        }
    }
}
