//! Notes: list, filter by tag, create, show, edit, delete.
//!
//! Every view needs a logged-in user ([`LoginRequired`]) and every query is scoped to that user:
//! someone else's note answers 404, exactly like a note that does not exist, so ids reveal
//! nothing. Forms that fail validation are shown again with status 400, the input kept and each
//! message next to its field; a note the database cannot store right now (a full disk, a server
//! restarting) is shown again with status 503 and the input kept. A redirect to the note means
//! it is stored.

mod form;
mod present;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use minijinja::context;
use minijinja::value::Value;
use portico::csrf::Resubmitted;
use portico::params::{Params, Query, QueryDict};
use portico::template::Page;

use self::form::{render_form, render_stale_form, NoteForm};
use self::present::NoteView;
use super::{get, Routes};
use crate::auth::{to_login, LoginRequired, MaybeUser};
use crate::db::{self, Db};
use crate::error::{AppError, AppResult};
use crate::models::notes::{self, Note, TAGS};

/// The note routes.
pub fn routes() -> Routes {
    Routes::new()
        .page("/notes/", get(list), "list notes (?tag=..., ?page=N)")
        .page("/notes/new/", get(new_form).post(create), "create a note")
        .page("/notes/{id}/", get(detail), "show a note")
        .page(
            "/notes/{id}/edit/",
            get(edit_form).post(update),
            "edit a note",
        )
        .page(
            "/notes/{id}/delete/",
            get(confirm_delete).post(delete),
            "confirm and delete a note",
        )
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
    State(db): State<Db>,
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
    let found = notes::list(&db, user.id, mask, number).await?;
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

/// The id in a note URL; an id that is not a number names no note.
fn note_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().map_err(|_| AppError::NotFound)
}

/// The user's note, or 404.
async fn owned_note(db: &Db, owner: i64, id: i64) -> Result<Note, AppError> {
    notes::get(db, owner, id).await?.ok_or(AppError::NotFound)
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
    State(db): State<Db>,
    LoginRequired(user): LoginRequired,
    page: Page,
    params: Params,
) -> AppResult {
    match NoteForm::read(&params) {
        Ok(input) => match notes::create(&db, user.id, &input).await {
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
    State(db): State<Db>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
) -> AppResult {
    show_note(&db, user.id, &id, &page, "notes/detail.html").await
}

/// Renders one of `owner`'s notes with `template`, or 404.
async fn show_note(db: &Db, owner: i64, id: &str, page: &Page, template: &str) -> AppResult {
    let note = NoteView::from(owned_note(db, owner, note_id(id)?).await?).into_value();
    Ok(page
        .render(template, context! { note })
        .await?
        .into_response())
}

/// GET /notes/{id}/edit/
async fn edit_form(
    State(db): State<Db>,
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
    let note = owned_note(&db, user.id, note_id(&id)?).await?;
    let form = match &kept {
        Some(k) => NoteForm::from_kept(k),
        None => NoteForm::from_note(&note),
    };
    render_form(&page, form, Some(note.id), StatusCode::OK).await
}

/// POST /notes/{id}/edit/
async fn update(
    State(db): State<Db>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
    params: Params,
) -> AppResult {
    let id = note_id(&id)?;
    match NoteForm::read(&params) {
        Ok(input) => match notes::update(&db, user.id, id, &input).await {
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
            owned_note(&db, user.id, id).await?;
            render_form(&page, form, Some(id), StatusCode::BAD_REQUEST).await
        }
    }
}

/// GET /notes/{id}/delete/ — asks before deleting.
async fn confirm_delete(
    State(db): State<Db>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
    page: Page,
) -> AppResult {
    show_note(&db, user.id, &id, &page, "notes/confirm_delete.html").await
}

/// POST /notes/{id}/delete/
async fn delete(
    State(db): State<Db>,
    LoginRequired(user): LoginRequired,
    Path(id): Path<String>,
) -> AppResult {
    if !notes::delete(&db, user.id, note_id(&id)?).await? {
        return Err(AppError::NotFound);
    }
    Ok(Redirect::to("/notes/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_keep_the_filter() {
        assert_eq!(list_url(&[], 1), "/notes/");
        assert_eq!(list_url(&["work"], 1), "/notes/?tag=work");
        assert_eq!(
            list_url(&["work", "home"], 2),
            "/notes/?tag=work&tag=home&page=2"
        );
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
