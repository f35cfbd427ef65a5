//! Sessions in SQLite: the default store, persistent across restarts with no service to run.
//!
//! One row per session in `portico_sessions` and one row per key in `portico_session_data`, so an
//! update touches only the keys that changed. WAL mode lets readers go on while one writer writes;
//! writers wait for each other through SQLite's busy timeout. Suited to one server; several
//! servers need a shared store (PostgreSQL or Redis).

use std::str::FromStr;
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

/// A session store in an SQLite database.
///
/// ```no_run
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// let store = portico::session::SqliteStore::open("sqlite://data/sessions.sqlite3").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and creates the tables.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(backend)?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool and creates the tables if they are missing.
    pub async fn with_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS portico_sessions (
                id TEXT PRIMARY KEY NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS portico_sessions_expires_at ON portico_sessions (expires_at);
            CREATE TABLE IF NOT EXISTS portico_session_data (
                session_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (session_id, key)
            ) WITHOUT ROWID;",
        )
        .execute(&pool)
        .await
        .map_err(backend)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.created_at, s.expires_at, d.key, d.value
             FROM portico_sessions s LEFT JOIN portico_session_data d ON d.session_id = s.id
             WHERE s.id = ?1 AND s.expires_at > ?2",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut record = Record {
            created_at: first.try_get(0).map_err(backend)?,
            expires_at: first.try_get(1).map_err(backend)?,
            ..Record::default()
        };
        for row in &rows {
            let k: Option<String> = row.try_get(2).map_err(backend)?;
            let v: Option<String> = row.try_get(3).map_err(backend)?;
            if let (Some(k), Some(v)) = (k, v) {
                record.data.insert(k, v);
            }
        }
        Ok(Some(record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO portico_sessions (id, created_at, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(key.as_str())
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for (k, v) in &record.data {
            sqlx::query(
                "INSERT INTO portico_session_data (session_id, key, value) VALUES (?1, ?2, ?3)",
            )
            .bind(key.as_str())
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The first statement writes, so the transaction takes the write lock at once and the
        // existence check and the key writes see one consistent database.
        let touched = sqlx::query(
            "UPDATE portico_sessions SET expires_at = ?1 WHERE id = ?2 AND expires_at > ?3",
        )
        .bind(expires_at)
        .bind(key.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if touched == 0 {
            tx.rollback().await.map_err(backend)?;
            return Ok(false);
        }
        for (k, v) in &changes.set {
            sqlx::query(
                "INSERT INTO portico_session_data (session_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(key.as_str())
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for k in &changes.remove {
            sqlx::query("DELETE FROM portico_session_data WHERE session_id = ?1 AND key = ?2")
                .bind(key.as_str())
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM portico_sessions WHERE id = ?1")
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM portico_session_data WHERE session_id = ?1")
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "DELETE FROM portico_session_data WHERE session_id IN
             (SELECT id FROM portico_sessions WHERE expires_at <= ?1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let gone = sqlx::query("DELETE FROM portico_sessions WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(gone)
    }
}
