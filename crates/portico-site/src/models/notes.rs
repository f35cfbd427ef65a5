//! Notes: title, body, tags from a fixed list, owned by one user.
//!
//! Tags are a bit set over [`TAGS`] (bit `i` is `TAGS[i]`), so "notes with any of these tags" is
//! one `tags & mask <> 0` on the owner's rows instead of a join. Every query takes the owner's id:
//! a note of someone else is simply not found, which the views turn into a 404.
//!
//! The SQL is written once with `$1, $2, ...` placeholders and runs on SQLite and PostgreSQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{insert_returning_id, read_error, Backend, Db};

/// The tags a note can carry, in bit order. The order is part of the stored data: append only.
pub const TAGS: [&str; 5] = ["work", "home", "ideas", "todo", "reading"];
/// Longest title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest body, in characters.
pub const BODY_MAX: usize = 20_000;
/// Notes per page of the list.
pub const PAGE_SIZE: i64 = 20;

/// The bit of a tag name, or `None` for a name not in [`TAGS`].
pub fn tag_bit(name: &str) -> Option<i64> {
    TAGS.iter().position(|t| *t == name).map(|i| 1i64 << i)
}

/// The bit set of the known names among `names` (unknown names are skipped).
pub fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> i64 {
    names.into_iter().filter_map(tag_bit).fold(0, |m, b| m | b)
}

/// The names of the tags in a bit set, in [`TAGS`] order.
pub fn names_of(mask: i64) -> Vec<&'static str> {
    TAGS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1i64 << i) != 0)
        .map(|(_, t)| *t)
        .collect()
}

/// A whole note (of the owner it was asked for).
#[derive(Debug, Clone)]
pub struct Note {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Tag bit set (see [`TAGS`]).
    pub tags: i64,
    /// Unix seconds when created.
    pub created_at: i64,
    /// Unix seconds when last changed.
    pub updated_at: i64,
}

/// A note as the list shows it: no body, so a page of the list reads little.
#[derive(Debug, Clone)]
pub struct NoteSummary {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Tag bit set.
    pub tags: i64,
    /// Unix seconds when last changed.
    pub updated_at: i64,
}

/// One page of a user's notes.
#[derive(Debug, Clone)]
pub struct NotePage {
    /// The notes of the page, newest first.
    pub notes: Vec<NoteSummary>,
    /// Whether a later page has notes.
    pub has_next: bool,
}

/// What a note is made of when created or edited (already validated).
#[derive(Debug, Clone)]
pub struct NoteInput {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Tag bit set.
    pub tags: i64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn note_from(row: &AnyRow) -> Result<Note, sqlx::Error> {
    Ok(Note {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        body: row.try_get(2)?,
        tags: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}

/// Page `page` (1-based) of `owner`'s notes, newest first; with a non-zero `mask`, only notes
/// carrying any of its tags.
///
/// One query per page: it asks for one row more than a page to learn whether a next page exists,
/// which spares a `COUNT(*)` over the owner's notes. The scan walks the (owner_id, updated_at, id)
/// index either way; the tag test is a bit operation on rows already read, so `($2 = 0 OR ...)`
/// costs nothing.
///
/// On SQLite the query runs on the request's thread ([`Db::reads`]). On PostgreSQL the database
/// hands the page back as one JSON array in one row, which decodes faster through the `Any`
/// driver than 21 rows.
pub async fn list(db: &Db, owner: i64, mask: i64, page: i64) -> Result<NotePage, sqlx::Error> {
    const PAGE: &str = "SELECT id, title, tags, updated_at FROM notes \
         WHERE owner_id = $1 AND ($2 = 0 OR (tags & $2) <> 0) \
         ORDER BY updated_at DESC, id DESC LIMIT $3 OFFSET $4";
    let offset = (page.max(1) - 1).saturating_mul(PAGE_SIZE);
    let mut notes: Vec<NoteSummary> = match (&db.reads, db.backend) {
        (Some(reads), _) => {
            let conn = reads.get();
            let mut stmt = conn.prepare_cached(PAGE).map_err(read_error)?;
            let rows = stmt
                .query_map((owner, mask, PAGE_SIZE + 1, offset), |row| {
                    Ok(NoteSummary {
                        id: row.get(0)?,
                        title: row.get(1)?,
                        tags: row.get(2)?,
                        updated_at: row.get(3)?,
                    })
                })
                .map_err(read_error)?;
            rows.collect::<Result<_, _>>().map_err(read_error)?
        }
        (None, backend) => {
            let sql = match backend {
                Backend::Sqlite => format!("SELECT COALESCE(json_group_array(json_array(id, title, tags, updated_at)), '[]') FROM ({PAGE})"),
                Backend::Postgres => format!(
                    "SELECT COALESCE(json_agg(json_build_array(id, title, tags, updated_at)), '[]')::text FROM ({PAGE}) AS page"
                ),
            };
            let json: String = sqlx::query_scalar(&sql)
                .bind(owner)
                .bind(mask)
                .bind(PAGE_SIZE + 1)
                .bind(offset)
                .fetch_one(&db.pool)
                .await?;
            let rows: Vec<(i64, String, i64, i64)> =
                serde_json::from_str(&json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let mut notes: Vec<NoteSummary> = rows
                .into_iter()
                .map(|(id, title, tags, updated_at)| NoteSummary {
                    id,
                    title,
                    tags,
                    updated_at,
                })
                .collect();
            // Aggregates are not bound to keep the subquery's order; put it back.
            notes.sort_by_key(|n| std::cmp::Reverse((n.updated_at, n.id)));
            notes
        }
    };
    let has_next = notes.len() as i64 > PAGE_SIZE;
    notes.truncate(PAGE_SIZE as usize);
    Ok(NotePage { notes, has_next })
}

/// `owner`'s note `id`, or `None` when there is no such note or it belongs to someone else.
pub async fn get(db: &Db, owner: i64, id: i64) -> Result<Option<Note>, sqlx::Error> {
    sqlx::query(
        "SELECT id, title, body, tags, created_at, updated_at FROM notes \
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(note_from)
    .transpose()
}

/// Creates a note for `owner`; answers its id once the note is stored (see
/// [`insert_returning_id`]).
pub async fn create(db: &Db, owner: i64, input: &NoteInput) -> Result<i64, sqlx::Error> {
    let now = now();
    let query = sqlx::query(
        "INSERT INTO notes (owner_id, title, body, tags, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(owner)
    .bind(&input.title)
    .bind(&input.body)
    .bind(input.tags)
    .bind(now)
    .bind(now);
    insert_returning_id(db, query).await
}

/// Replaces the content of `owner`'s note `id`; `false` when there is no such note of theirs.
pub async fn update(db: &Db, owner: i64, id: i64, input: &NoteInput) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE notes SET title = $1, body = $2, tags = $3, updated_at = $4 \
         WHERE id = $5 AND owner_id = $6",
    )
    .bind(&input.title)
    .bind(&input.body)
    .bind(input.tags)
    .bind(now())
    .bind(id)
    .bind(owner)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes `owner`'s note `id`; `false` when there is no such note of theirs.
pub async fn delete(db: &Db, owner: i64, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM notes WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_to_bits_and_back() {
        assert_eq!(tag_bit("work"), Some(1));
        assert_eq!(tag_bit("reading"), Some(16));
        assert_eq!(tag_bit("Work"), None);
        assert_eq!(mask_of(["home", "todo", "bogus"]), 2 | 8);
        assert_eq!(names_of(2 | 8), ["home", "todo"]);
        assert!(names_of(0).is_empty());
    }
}
