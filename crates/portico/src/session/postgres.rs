//! Sessions in PostgreSQL: shared by every server that reaches the database.
//!
//! The same two tables as the SQLite store. An update first moves the session row's expiry; the row
//! lock it takes orders it against a concurrent delete (logout), so a write never lands in a session
//! that another server has just deleted.
//!
//! A take is one `DELETE … RETURNING`: of two servers deleting the same row, the second waits for
//! the first to commit, finds the row gone and returns nothing. Counters are rows of a third table,
//! bumped by one `INSERT … ON CONFLICT DO UPDATE … RETURNING`, which locks the row it changes.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};

/// How many connections a PostgreSQL pool opens by default: twice the cores, at least 4.
///
/// Every connection is a database server process; more of them than the cores can run only
/// adds switching between them, so a small pool serves pages faster than a large one (measured
/// in bench/OPTIMISATIONS.md). For another size, build the pool yourself and use
/// [`PostgresStore::with_pool`].
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores * 2).unwrap_or(u32::MAX).max(4)
}

/// A session store in a PostgreSQL database.
///
/// ```no_run
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// let store = portico::session::PostgresStore::open("postgres://127.0.0.1/test").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects lazily to `url` (so a database that is down at start-up only fails the requests
    /// that need it) and creates the tables when it can.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when `url` is not a valid PostgreSQL URL, or when the
    /// tables cannot be created: the database cannot be reached within 1.5 s, refuses the
    /// credentials, or the role may not create tables.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use portico::session::PostgresStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PostgresStore::open("postgres://app@127.0.0.1:5432/app").await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // No ping before each use: it doubled the round trips of every session read. A
        // connection that died (database restart) fails one statement and is replaced.
        // A server that refuses connections (restarting) is retried for up to 1.5 s, then the
        // request gets its 503: inside the session layer's own 2 s, so a restart is a 503 in
        // under two seconds, while a burst of requests can still queue for the connections.
        let pool = PgPoolOptions::new()
            .max_connections(default_pool_size())
            .acquire_timeout(Duration::from_millis(1500))
            .test_before_acquire(false)
            .connect_lazy(url)
            .map_err(StoreError::backend)?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool and creates the tables if they are missing.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the tables cannot be created: the pool cannot reach
    /// the database, or the role may not create tables.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use portico::session::PostgresStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::postgres::PgPoolOptions::new()
    ///     .max_connections(16)
    ///     .connect("postgres://app@127.0.0.1:5432/app")
    ///     .await?;
    /// let store = PostgresStore::with_pool(pool).await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        // Several servers often start together; the advisory lock makes their CREATE TABLE IF NOT
        // EXISTS statements take turns instead of racing on the catalog.
        sqlx::raw_sql(
            "BEGIN;
            SELECT pg_advisory_xact_lock(7242634100);
            CREATE TABLE IF NOT EXISTS portico_sessions (
                id TEXT PRIMARY KEY,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS portico_sessions_expires_at ON portico_sessions (expires_at);
            CREATE TABLE IF NOT EXISTS portico_session_data (
                session_id TEXT NOT NULL REFERENCES portico_sessions (id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (session_id, key)
            );
            CREATE TABLE IF NOT EXISTS portico_counters (
                name TEXT PRIMARY KEY,
                count BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            );
            COMMIT;",
        )
        .execute(&pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.created_at, s.expires_at, d.key, d.value
             FROM portico_sessions s LEFT JOIN portico_session_data d ON d.session_id = s.id
             WHERE s.id = $1 AND s.expires_at > $2",
        )
        .bind(key.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut record = Record {
            created_at: first.try_get(0).map_err(StoreError::backend)?,
            expires_at: first.try_get(1).map_err(StoreError::backend)?,
            ..Record::default()
        };
        for row in &rows {
            let k: Option<String> = row.try_get(2).map_err(StoreError::backend)?;
            let v: Option<String> = row.try_get(3).map_err(StoreError::backend)?;
            if let (Some(k), Some(v)) = (k, v) {
                record.data.insert(k, v);
            }
        }
        Ok(Some(record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let (keys, values): (Vec<&str>, Vec<&str>) = record
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .unzip();
        // One round trip: the session row and all its keys.
        sqlx::query(
            "WITH s AS (INSERT INTO portico_sessions (id, created_at, expires_at) VALUES ($1, $2, $3) RETURNING id)
             INSERT INTO portico_session_data (session_id, key, value)
             SELECT s.id, k, v FROM s, UNNEST($4::text[], $5::text[]) AS t(k, v)",
        )
        .bind(key.as_str())
        .bind(record.created_at)
        .bind(record.expires_at)
        .bind(&keys)
        .bind(&values)
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (set_keys, set_values): (Vec<&str>, Vec<&str>) = changes
            .set
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .unzip();
        let remove: Vec<&str> = changes.remove.iter().map(String::as_str).collect();
        // One statement, so one round trip and one implicit transaction: the UPDATE locks the
        // session row, and the key writes happen only when it matched a live session.
        let row = sqlx::query(
            "WITH s AS (
                UPDATE portico_sessions SET expires_at = $2 WHERE id = $1 AND expires_at > $3 RETURNING id
             ), up AS (
                INSERT INTO portico_session_data (session_id, key, value)
                SELECT s.id, k, v FROM s, UNNEST($4::text[], $5::text[]) AS t(k, v)
                ON CONFLICT (session_id, key) DO UPDATE SET value = EXCLUDED.value
                RETURNING 1
             ), del AS (
                DELETE FROM portico_session_data d USING s
                WHERE d.session_id = s.id AND d.key = ANY($6::text[])
                RETURNING 1
             )
             SELECT (SELECT COUNT(*) FROM s) AS touched",
        )
        .bind(key.as_str())
        .bind(expires_at)
        .bind(now)
        .bind(&set_keys)
        .bind(&set_values)
        .bind(&remove)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        let touched: i64 = row.try_get(0).map_err(StoreError::backend)?;
        Ok(touched > 0)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portico_sessions WHERE id = $1")
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let gone = sqlx::query("DELETE FROM portico_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?
            .rows_affected();
        sqlx::query("DELETE FROM portico_counters WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(gone)
    }

    async fn take(
        &self,
        key: &StorageKey,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM portico_session_data d USING portico_sessions s
             WHERE d.session_id = $1 AND d.key = $2 AND s.id = d.session_id AND s.expires_at > $3
             RETURNING d.value",
        )
        .bind(key.as_str())
        .bind(name)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(StoreError::backend)
    }

    async fn incr_counter(&self, name: &str, expires_at: i64, now: i64) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO portico_counters AS c (name, count, expires_at) VALUES ($1, 1, $2)
             ON CONFLICT (name) DO UPDATE SET
                count = CASE WHEN c.expires_at <= $3 THEN 1 ELSE c.count + 1 END,
                expires_at = CASE WHEN c.expires_at <= $3 THEN EXCLUDED.expires_at ELSE c.expires_at END
             RETURNING count",
        )
        .bind(name)
        .bind(expires_at)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        let count: i64 = row.try_get(0).map_err(StoreError::backend)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn decr_counter(&self, name: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE portico_counters SET count = count - 1
             WHERE name = $1 AND count > 0 AND expires_at > $2",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::backend)?;
        Ok(())
    }

    async fn delete_counter(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM portico_counters WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }
}
