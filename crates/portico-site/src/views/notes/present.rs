//! How a note looks to the templates: [`NoteView`], whose attributes are made when a template
//! reads them, and the times it shows, formatted without the formatting machinery.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};

use crate::models::notes::{self, Note, NoteSummary};

/// `unix` in UTC, when its year has the four digits the formats below write.
fn utc(unix: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
}

/// A time as text in a fixed buffer. A list page shows 40 times; through `format!` each was a
/// `String` and a pass through the formatting machinery, enough to show in the list page's
/// profile (bench/OPTIMISATIONS.md, "Notes as template objects"). The 20 bytes also fit in a
/// template string without a heap allocation.
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
pub(super) struct NoteView {
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
    /// The note as a template value.
    pub(super) fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

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
}
