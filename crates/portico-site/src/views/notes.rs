//! Notes: list, filter by tag, create, show, edit, delete.
//!
//! Every view needs a logged-in user ([`LoginRequired`]) and every query is scoped to that user:
//! someone else's note answers 404, exactly like a note that does not exist, so ids reveal
//! nothing. Forms that fail validation are shown again with status 400, the input kept and each
//! message next to its field; a note the database cannot store right now (a full disk, a server
//! restarting) is shown again with status 503 and the input kept. A redirect to the note means
//! it is stored.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use minijinja::context;
use minijinja::value::{Enumerator, Object, Value};
use portico::csrf::Resubmitted;
use portico::params::{Params, Query, QueryDict};
use portico::template::Page;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::{to_login, LoginRequired, MaybeUser};
use crate::db;
use crate::error::{AppError, AppResult};
use crate::models::notes::{self, Note, NoteInput, NoteSummary, BODY_MAX, TAGS, TITLE_MAX};

/// The note routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/notes/", get(list))
        .route("/notes/new/", get(new_form).post(create))
        .route("/notes/{id}/", get(detail))
        .route("/notes/{id}/edit/", get(edit_form).post(update))
        .route("/notes/{id}/delete/", get(confirm_delete).post(delete))
}

/// GET / — a logged-in user goes straight to their notes; anyone else sees the welcome page.
pub async fn home(page: Page, MaybeUser(user): MaybeUser) -> AppResult {
    if user.is_some() {
        return Ok(Redirect::to("/notes/").into_response());
    }
    Ok(page.render("home.html", context! {}).await?.into_response())
}

/// `unix` in UTC, when its year has the four digits the formats below write.
fn utc(unix: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// A time as text in a fixed buffer. A list page shows 40 times; through `format!` each was a
/// `String` and a pass through the formatting machinery (≈ 8 % of the page's server time). The
/// 20 bytes also fit in a template string without a heap allocation.
struct TimeText([u8; 20]);

impl TimeText {
    /// `pattern` with the digits of `unix` (UTC) written over its zeros: year, month, day, hour,
    /// minute, and the second when `seconds`.
    fn new(unix: i64, pattern: &[u8; 20], seconds: bool) -> Option<Self> {
        let t = utc(unix)?;
        let mut b = *pattern;
        put_digits(&mut b[0..4], u32::try_from(t.year()).ok()?);
        put_digits(&mut b[5..7], u8::from(t.month()).into());
        put_digits(&mut b[8..10], t.day().into());
        put_digits(&mut b[11..13], t.hour().into());
        put_digits(&mut b[14..16], t.minute().into());
        if seconds {
            put_digits(&mut b[17..19], t.second().into());
        }
        Some(Self(b))
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are written over an ASCII pattern, so this is never the blank.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Writes `n` in decimal into all of `out`, zero-padded (the caller's ranges fit).
fn put_digits(out: &mut [u8], mut n: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `2025-01-31 14:05 UTC` for people; `None` when out of range.
fn human_time(unix: i64) -> Option<TimeText> {
    TimeText::new(unix, b"0000-00-00 00:00 UTC", false)
}

/// RFC 3339 in UTC (`2025-01-31T14:05:09Z`), for the `datetime` attribute; `None` when out of
/// range.
fn iso_time(unix: i64) -> Option<TimeText> {
    TimeText::new(unix, b"0000-00-00T00:00:00Z", true)
}

/// A time for a template: its text, or blank.
fn time_value(t: Option<TimeText>) -> Value {
    Value::from(t.as_ref().map_or("", TimeText::as_str))
}

/// A note as the templates see it: `id`, `title`, `body`, `tags` (names), and `created`,
/// `updated` (for people) with `created_iso`, `updated_iso` (RFC 3339).
///
/// A template object rather than a serialized map: a list page shows 20 notes and reads five of
/// each one's eight attributes, so each is made only when the template asks for it (the times are
/// formatted then, not before).
#[derive(Debug)]
struct NoteView {
    id: i64,
    title: String,
    body: String,
    tags: i64,
    /// `None` for a list entry, which does not show it.
    created_at: Option<i64>,
    updated_at: i64,
}

/// The attributes of [`NoteView`], for templates that iterate over or print one.
const NOTE_KEYS: &[&str] = &[
    "id",
    "title",
    "body",
    "tags",
    "created",
    "created_iso",
    "updated",
    "updated_iso",
];

impl Object for NoteView {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "id" => Value::from(self.id),
            "title" => Value::from(self.title.as_str()),
            "body" => Value::from(self.body.as_str()),
            "tags" => Value::from(notes::names_of(self.tags)),
            "created" => time_value(self.created_at.and_then(human_time)),
            "created_iso" => time_value(self.created_at.and_then(iso_time)),
            "updated" => time_value(human_time(self.updated_at)),
            "updated_iso" => time_value(iso_time(self.updated_at)),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(NOTE_KEYS)
    }
}

impl From<Note> for NoteView {
    fn from(n: Note) -> Self {
        NoteView {
            id: n.id,
            title: n.title,
            body: n.body,
            tags: n.tags,
            created_at: Some(n.created_at),
            updated_at: n.updated_at,
        }
    }
}

impl From<NoteSummary> for NoteView {
    fn from(n: NoteSummary) -> Self {
        NoteView {
            id: n.id,
            title: n.title,
            body: String::new(),
            tags: n.tags,
            created_at: None,
            updated_at: n.updated_at,
        }
    }
}

impl NoteView {
    fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

/// `/notes/?tag=..&tag=..&page=N`, the filter kept in every pagination link.
fn list_url(selected: &[&str], page: i64) -> String {
    let mut parts: Vec<String> = selected.iter().map(|t| format!("tag={t}")).collect();
    if page > 1 {
        parts.push(format!("page={page}"));
    }
    if parts.is_empty() {
        "/notes/".to_string()
    } else {
        format!("/notes/?{}", parts.join("&"))
    }
}

/// The page number of `?page=`: absent or empty is 1; anything but a positive integer is no page.
fn page_number(q: &QueryDict) -> Option<i64> {
    match q.get("page").map(str::trim) {
        None | Some("") => Some(1),
        Some(s) => s.parse::<u32>().ok().filter(|n| *n >= 1).map(i64::from),
    }
}

/// GET /notes/ — the user's notes, newest first, 20 a page; `?tag=` (repeatable) keeps the notes
/// carrying any of the given tags; unknown tag names are ignored.
async fn list(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    Query(q): Query,
    page: Page,
) -> AppResult {
    let asked = q.getlist("tag");
    // In TAGS order, each once, whatever the query string's order or repetitions.
    let selected: Vec<&'static str> = TAGS.iter().copied().filter(|t| asked.contains(t)).collect();
    let mask = notes::mask_of(selected.iter().copied());
    // A page number that is not one, or a page past the end, is a page that does not exist:
    // 404 as Django's paginator answers, rather than silently showing another page.
    let number = page_number(&q).ok_or(AppError::NotFound)?;
    let found = notes::list(&state.db, user.id, mask, number).await?;
    if found.notes.is_empty() && number > 1 {
        return Err(AppError::NotFound);
    }
    let prev_url = (number > 1).then(|| list_url(&selected, number - 1));
    let next_url = found.has_next.then(|| list_url(&selected, number + 1));
    let notes: Vec<Value> = found
        .notes
        .into_iter()
        .map(|n| NoteView::from(n).into_value())
        .collect();
    Ok(page
        .render(
            "notes/list.html",
            context! { notes, tags => TAGS, selected, page => number, prev_url, next_url },
        )
        .await?
        .into_response())
}

/// The note form's values and messages.
#[derive(Debug, Default, Serialize)]
struct NoteForm {
    title: String,
    body: String,
    checked: Vec<String>,
    errors: BTreeMap<&'static str, String>,
    /// The note could not be stored for now (the database is unavailable): the form says so.
    unavailable: bool,
}

impl NoteForm {
    /// A valid note that could not be stored, shown again as it was sent.
    fn unavailable(input: NoteInput) -> Self {
        NoteForm {
            title: input.title,
            body: input.body,
            checked: notes::names_of(input.tags)
                .into_iter()
                .map(String::from)
                .collect(),
            errors: BTreeMap::new(),
            unavailable: true,
        }
    }

    fn from_note(n: &Note) -> Self {
        NoteForm {
            title: n.title.clone(),
            body: n.body.clone(),
            checked: notes::names_of(n.tags)
                .into_iter()
                .map(String::from)
                .collect(),
            errors: BTreeMap::new(),
            unavailable: false,
        }
    }

    /// The fields of a refused post shown again (the CSRF layer hands them over).
    fn from_kept(kept: &QueryDict) -> Self {
        NoteForm {
            title: kept.get("title").unwrap_or("").to_string(),
            body: kept.get("body").unwrap_or("").to_string(),
            checked: kept.getlist("tags").into_iter().map(String::from).collect(),
            errors: BTreeMap::new(),
            unavailable: false,
        }
    }

    /// Reads and checks a submitted form: the validated note, or the form with its messages.
    fn read(params: &Params) -> Result<NoteInput, NoteForm> {
        let title = params.get("title").unwrap_or("");
        // Browsers send a textarea's line breaks as CRLF but count them as one character for
        // `maxlength`; storing LF keeps the server's count the same as the browser's.
        let body = params.get("body").unwrap_or("").replace("\r\n", "\n");
        let tags = params.getlist("tags");
        let mut errors = BTreeMap::new();
        let title_len = title.trim().chars().count();
        if title_len == 0 {
            errors.insert("title", "Please give the note a title.".to_string());
        } else if title_len > TITLE_MAX {
            errors.insert(
                "title",
                format!("A title can be at most {TITLE_MAX} characters; this one has {title_len}."),
            );
        }
        let body_len = body.chars().count();
        if body_len > BODY_MAX {
            errors.insert(
                "body",
                format!("A note can be at most {BODY_MAX} characters; this one has {body_len}."),
            );
        }
        let unknown: Vec<&str> = tags
            .iter()
            .copied()
            .filter(|t| notes::tag_bit(t).is_none())
            .collect();
        if !unknown.is_empty() {
            let shown: Vec<String> = unknown
                .iter()
                .take(3)
                .map(|t| format!("\"{}\"", t.chars().take(40).collect::<String>()))
                .collect();
            errors.insert(
                "tags",
                format!(
                    "Unknown tag {}: choose from {}.",
                    shown.join(", "),
                    TAGS.join(", ")
                ),
            );
        }
        if errors.is_empty() {
            Ok(NoteInput {
                title: title.trim().to_string(),
                body,
                tags: notes::mask_of(tags),
            })
        } else {
            Err(NoteForm {
                title: title.to_string(),
                body,
                checked: tags.into_iter().map(String::from).collect(),
                errors,
                unavailable: false,
            })
        }
    }
}

/// Renders the note form (new when `note_id` is `None`) with `status`.
async fn render_form(
    page: &Page,
    form: NoteForm,
    note_id: Option<i64>,
    status: StatusCode,
) -> AppResult {
    render_form_for(page, form, note_id, status, false).await
}

/// A form refused by the CSRF check after the user logged out (in another tab): it is shown again
/// with what was typed, so nothing is lost, and with a way back in instead of a submit button.
async fn render_stale_form(page: &Page, kept: &QueryDict, note_id: Option<i64>) -> AppResult {
    render_form_for(
        page,
        NoteForm::from_kept(kept),
        note_id,
        StatusCode::OK,
        true,
    )
    .await
}

async fn render_form_for(
    page: &Page,
    form: NoteForm,
    note_id: Option<i64>,
    status: StatusCode,
    logged_out: bool,
) -> AppResult {
    let action = match note_id {
        Some(id) => format!("/notes/{id}/edit/"),
        None => "/notes/new/".to_string(),
    };
    let html = page
        .render(
            "notes/form.html",
            context! { form, note_id, action, logged_out, tags => TAGS, title_max => TITLE_MAX, body_max => BODY_MAX },
        )
        .await?;
    Ok((status, html).into_response())
}

/// The id in a note URL; an id that is not a number names no note.
fn note_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().map_err(|_| AppError::NotFound)
}

/// The user's note, or 404.
async fn owned_note(state: &AppState, owner: i64, id: i64) -> Result<Note, AppError> {
    notes::get(&state.db, owner, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// GET /notes/new/
async fn new_form(
    MaybeUser(user): MaybeUser,
    Resubmitted(kept): Resubmitted,
    page: Page,
) -> AppResult {
    match (user, &kept) {
        (None, Some(k)) => render_stale_form(&page, k, None).await,
        (None, None) => Ok(to_login("/notes/new/")),
        (Some(_), _) => {
            let form = kept.as_ref().map(NoteForm::from_kept).unwrap_or_default();
            render_form(&page, form, None, StatusCode::OK).await
        }
    }
}

/// POST /notes/new/
async fn create(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    page: Page,
    params: Params,
) -> AppResult {
    match NoteForm::read(&params) {
        Ok(input) => match notes::create(&state.db, user.id, &input).await {
            Ok(id) => Ok(Redirect::to(&format!("/notes/{id}/")).into_response()),
            Err(e) if db::is_unavailable(&e) => {
                tracing::error!(error = %e, "database unavailable; the note form is shown again");
                let form = NoteForm::unavailable(input);
                render_form(&page, form, None, StatusCode::SERVICE_UNAVAILABLE).await
            }
            Err(e) => Err(e.into()),
        },
        Err(form) => render_form(&page, form, None, StatusCode::BAD_REQUEST).await,
    }
}

/// GET /notes/{id}/
async fn detail(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
) -> AppResult {
    show_note(&state, user.id, &id, &page, "notes/detail.html").await
}

/// Renders one of `owner`'s notes with `template`, or 404.
async fn show_note(
    state: &AppState,
    owner: i64,
    id: &str,
    page: &Page,
    template: &str,
) -> AppResult {
    let note = NoteView::from(owned_note(state, owner, note_id(id)?).await?).into_value();
    Ok(page
        .render(template, context! { note })
        .await?
        .into_response())
}

/// GET /notes/{id}/edit/
async fn edit_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    Resubmitted(kept): Resubmitted,
    page: Page,
) -> AppResult {
    let Some(user) = user else {
        // Only what this browser itself typed is shown; no note is read without an owner.
        return match &kept {
            Some(k) => render_stale_form(&page, k, Some(note_id(&id)?)).await,
            None => Ok(to_login(&format!("/notes/{id}/edit/"))),
        };
    };
    let note = owned_note(&state, user.id, note_id(&id)?).await?;
    let form = match &kept {
        Some(k) => NoteForm::from_kept(k),
        None => NoteForm::from_note(&note),
    };
    render_form(&page, form, Some(note.id), StatusCode::OK).await
}

/// POST /notes/{id}/edit/
async fn update(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
    params: Params,
) -> AppResult {
    let id = note_id(&id)?;
    match NoteForm::read(&params) {
        Ok(input) => match notes::update(&state.db, user.id, id, &input).await {
            Ok(true) => Ok(Redirect::to(&format!("/notes/{id}/")).into_response()),
            Ok(false) => Err(AppError::NotFound),
            Err(e) if db::is_unavailable(&e) => {
                tracing::error!(error = %e, "database unavailable; the note form is shown again");
                let form = NoteForm::unavailable(input);
                render_form(&page, form, Some(id), StatusCode::SERVICE_UNAVAILABLE).await
            }
            Err(e) => Err(e.into()),
        },
        Err(form) => {
            // Someone else's note must answer 404 even to an invalid form, never a form page.
            owned_note(&state, user.id, id).await?;
            render_form(&page, form, Some(id), StatusCode::BAD_REQUEST).await
        }
    }
}

/// GET /notes/{id}/delete/ — asks before deleting.
async fn confirm_delete(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
) -> AppResult {
    show_note(&state, user.id, &id, &page, "notes/confirm_delete.html").await
}

/// POST /notes/{id}/delete/
async fn delete(
    State(state): State<AppState>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
) -> AppResult {
    if !notes::delete(&state.db, user.id, note_id(&id)?).await? {
        return Err(AppError::NotFound);
    }
    Ok(Redirect::to("/notes/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_minutes_for_people_and_rfc_3339_for_machines() {
        let text = |t: Option<TimeText>| time_value(t).as_str().unwrap().to_string();
        assert_eq!(text(human_time(1_738_332_309)), "2025-01-31 14:05 UTC");
        assert_eq!(text(iso_time(1_738_332_309)), "2025-01-31T14:05:09Z");
        assert_eq!(text(human_time(0)), "1970-01-01 00:00 UTC");
        assert_eq!(text(iso_time(0)), "1970-01-01T00:00:00Z");
        assert_eq!(text(iso_time(-62_167_219_200)), "0000-01-01T00:00:00Z");
        assert_eq!(text(iso_time(253_402_300_799)), "9999-12-31T23:59:59Z");
        for t in [1, 951_782_400, 4_102_444_799, 1_764_072_000, 1_709_164_799] {
            let at = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let rfc = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(text(iso_time(t)), rfc);
            let minutes = at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .unwrap();
            assert_eq!(text(human_time(t)), minutes);
        }
        for out_of_range in [i64::MAX, i64::MIN, -62_167_219_201, 253_402_300_800] {
            assert_eq!(
                text(human_time(out_of_range)),
                "",
                "out of range is blank, not a panic"
            );
            assert_eq!(text(iso_time(out_of_range)), "");
        }
    }

    #[test]
    fn a_note_shows_only_its_own_attributes() {
        let note = NoteView {
            id: 7,
            title: "<b>t</b>".into(),
            body: String::new(),
            tags: notes::mask_of(["work"]),
            created_at: None,
            updated_at: 0,
        }
        .into_value();
        let env = minijinja::Environment::new();
        let out = env
            .render_str(
                "{{ n.id }}|{{ n.title }}|{{ n.tags|join(',') }}|{{ n.created }}|{{ n.updated_iso }}|{{ n.password is undefined }}|{{ n|list|length }}",
                context! { n => note },
            )
            .unwrap();
        assert_eq!(out, "7|<b>t</b>|work||1970-01-01T00:00:00Z|True|8");
    }

    #[test]
    fn list_urls_keep_the_filter() {
        assert_eq!(list_url(&[], 1), "/notes/");
        assert_eq!(list_url(&["work"], 1), "/notes/?tag=work");
        assert_eq!(
            list_url(&["work", "home"], 2),
            "/notes/?tag=work&tag=home&page=2"
        );
    }

    fn form(body: &str) -> Params {
        Params {
            query: QueryDict::new(),
            form: QueryDict::parse(body).unwrap(),
        }
    }

    #[test]
    fn a_valid_form_becomes_a_note() {
        let input =
            NoteForm::read(&form("title=+Plan+&body=a%0D%0Ab&tags=work&tags=todo")).expect("valid");
        assert_eq!(input.title, "Plan");
        assert_eq!(input.body, "a\nb");
        assert_eq!(input.tags, 1 | 8);
    }

    #[test]
    fn an_invalid_form_keeps_its_input_and_names_each_field() {
        let long = "x".repeat(TITLE_MAX + 1);
        let bad = NoteForm::read(&form(&format!(
            "title={long}&body=kept&tags=home&tags=urgent"
        )))
        .expect_err("invalid");
        assert_eq!(bad.title, long);
        assert_eq!(bad.body, "kept");
        assert_eq!(bad.checked, ["home", "urgent"]);
        assert!(bad.errors["title"].contains("200"));
        assert!(bad.errors["tags"].contains("urgent"));
        assert!(!bad.errors.contains_key("body"));
        let empty = NoteForm::read(&form("title=%20&body=")).expect_err("no title");
        assert!(empty.errors.contains_key("title"));
    }

    #[test]
    fn page_numbers_are_positive_integers() {
        let p = |s: &str| page_number(&QueryDict::parse(s).unwrap());
        assert_eq!(p(""), Some(1));
        assert_eq!(p("page="), Some(1));
        assert_eq!(p("page=3"), Some(3));
        assert_eq!(p("page=0"), None);
        assert_eq!(p("page=-1"), None);
        assert_eq!(p("page=x"), None);
    }
}
