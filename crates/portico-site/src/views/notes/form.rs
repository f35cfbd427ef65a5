//! The note form: its values and messages, the checks a submitted one goes through, and its page.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use minijinja::context;
use portico::params::{Params, QueryDict};
use portico::template::Page;
use serde::Serialize;

use crate::error::AppResult;
use crate::models::notes::{self, Note, NoteInput, BODY_MAX, TAGS, TITLE_MAX};

/// The note form's values and messages.
#[derive(Debug, Default, Serialize)]
pub(super) struct NoteForm {
    title: String,
    body: String,
    checked: Vec<String>,
    errors: BTreeMap<&'static str, String>,
    /// The note could not be stored for now (the database is unavailable): the form says so.
    unavailable: bool,
}

impl NoteForm {
    /// A valid note that could not be stored, shown again as it was sent.
    pub(super) fn unavailable(input: NoteInput) -> Self {
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

    pub(super) fn from_note(n: &Note) -> Self {
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
    pub(super) fn from_kept(kept: &QueryDict) -> Self {
        NoteForm {
            title: kept.get("title").unwrap_or("").to_string(),
            body: kept.get("body").unwrap_or("").to_string(),
            checked: kept.getlist("tags").into_iter().map(String::from).collect(),
            errors: BTreeMap::new(),
            unavailable: false,
        }
    }

    /// Reads and checks a submitted form: the validated note, or the form with its messages.
    pub(super) fn read(params: &Params) -> Result<NoteInput, NoteForm> {
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
pub(super) async fn render_form(
    page: &Page,
    form: NoteForm,
    note_id: Option<i64>,
    status: StatusCode,
) -> AppResult {
    render_form_for(page, form, note_id, status, false).await
}

/// A form refused by the CSRF check after the user logged out (in another tab): it is shown again
/// with what was typed, so nothing is lost, and with a way back in instead of a submit button.
pub(super) async fn render_stale_form(
    page: &Page,
    kept: &QueryDict,
    note_id: Option<i64>,
) -> AppResult {
    render_form_for(
        page,
        NoteForm::from_kept(kept),
        note_id,
        StatusCode::OK,
        true,
    )
    .await
}

/// Renders the note form, `logged_out` when it is a refused form shown again after a logout.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
