//! Sessions in SQLite: the default store, persistent across restarts with no service to run.
//!
//! One row per session, its keys in a JSON object column. An update is one statement,
//! `UPDATE … SET data = json_patch(data, ?)`, naming only the keys that changed: SQLite runs it
//! inside its single-writer lock against the latest committed row, so two requests that change
//! different keys both keep their writes. Each value is stored as a JSON *string* holding the
//! value's JSON text, which makes the merge patch replace a value instead of merging into it
//! (RFC 7396 merges objects) and lets `null` mean "remove this key".
//!
//! SQLite means one server, so the store also keeps the sessions it has read in memory (up to
//! 10,000) and answers reads from there: a returning visitor costs no database round trip. Every write
//! still goes to the database first. A read that raced with a write is not cached (a counter of
//! writes tells), so the memory copy never holds an older value than the database.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// How many sessions the memory copy holds before it is emptied and refilled from reads
/// (≈ 1 KB each, so ≈ 10 MB at most).
const CACHE_LIMIT: usize = 10_000;

/// A session store in an SQLite database.
///
/// ```no_run
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// let store = portico::session::SqliteStore::open("sqlite://data/sessions.sqlite3").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    cache: Mutex<HashMap<StorageKey, Record>>,
    /// Bumped by every write, so a read can tell whether a write overtook it.
    writes: AtomicU64,
    /// Serialises writes with their cache updates (SQLite has one writer anyway).
    write_lock: tokio::sync::Mutex<()>,
}

fn encode(data: &HashMap<String, String>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".into())
}

fn patch(changes: &Changes) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in &changes.set {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    for k in &changes.remove {
        map.insert(k.clone(), serde_json::Value::Null);
    }
    serde_json::Value::Object(map).to_string()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and creates the table.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool and creates the table if it is missing.
    pub async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS portico_session_records (
                id TEXT PRIMARY KEY NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                data TEXT NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS portico_session_records_expires_at
                ON portico_session_records (expires_at);",
        )
        .execute(&pool)
        .await
        .map_err(backend)?;
        Ok(Self {
            pool,
            cache: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<StorageKey, Record>> {
        // Only plain map operations run under this lock; a poisoned lock still holds whole entries.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: &StorageKey, record: Record) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key.clone(), record);
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        if let Some(rec) = self.cache().get(key) {
            return Ok((rec.expires_at > now).then(|| rec.clone()));
        }
        let seen = self.writes.load(Ordering::Acquire);
        let row = sqlx::query(
            "SELECT created_at, expires_at, data FROM portico_session_records WHERE id = ?1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get(2).map_err(backend)?;
        let record = Record {
            created_at: row.try_get(0).map_err(backend)?,
            expires_at: row.try_get(1).map_err(backend)?,
            data: serde_json::from_str(&data)
                .map_err(|e| StoreError::Backend(format!("corrupt session data: {e}")))?,
        };
        if self.writes.load(Ordering::Acquire) == seen {
            self.remember(key, record.clone());
        }
        Ok((record.expires_at > now).then_some(record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let _write = self.write_lock.lock().await;
        sqlx::query("INSERT INTO portico_session_records (id, created_at, expires_at, data) VALUES (?1, ?2, ?3, ?4)")
            .bind(key.as_str())
            .bind(record.created_at)
            .bind(record.expires_at)
            .bind(encode(&record.data))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        // Not cached here: most new sessions (first visits, crawlers) are never read again, and
        // the first read of one that is brings it in.
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _write = self.write_lock.lock().await;
        let touched = sqlx::query(
            "UPDATE portico_session_records SET data = json_patch(data, ?1), expires_at = ?2
             WHERE id = ?3 AND expires_at > ?4",
        )
        .bind(patch(changes))
        .bind(expires_at)
        .bind(key.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            self.cache().remove(key);
            self.writes.fetch_add(1, Ordering::AcqRel);
            backend(e)
        })?
        .rows_affected();
        {
            let mut cache = self.cache();
            if touched == 0 {
                cache.remove(key);
            } else if let Some(rec) = cache.get_mut(key) {
                for (k, v) in &changes.set {
                    rec.data.insert(k.clone(), v.clone());
                }
                for k in &changes.remove {
                    rec.data.remove(k);
                }
                rec.expires_at = expires_at;
            }
        }
        // Counted after the database has the write, so a read that queried before it cannot
        // cache what it saw.
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(touched > 0)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        let _write = self.write_lock.lock().await;
        self.cache().remove(key);
        let result = sqlx::query("DELETE FROM portico_session_records WHERE id = ?1")
            .bind(key.as_str())
            .execute(&self.pool)
            .await;
        self.writes.fetch_add(1, Ordering::AcqRel);
        result.map(|_| ()).map_err(backend)
    }

    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let _write = self.write_lock.lock().await;
        self.cache().retain(|_, r| r.expires_at > now);
        let result = sqlx::query("DELETE FROM portico_session_records WHERE expires_at <= ?1")
            .bind(now)
            .execute(&self.pool)
            .await;
        self.writes.fetch_add(1, Ordering::AcqRel);
        Ok(result.map_err(backend)?.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_sets_strings_and_removes_with_null() {
        let changes = Changes {
            set: vec![("a".into(), "{\"x\":1}".into())],
            remove: vec!["b".into()],
        };
        let v: serde_json::Value = serde_json::from_str(&patch(&changes)).unwrap();
        assert_eq!(v, serde_json::json!({ "a": "{\"x\":1}", "b": null }));
    }
}
