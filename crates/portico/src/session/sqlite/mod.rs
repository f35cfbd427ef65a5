//! Sessions in SQLite: the default store, persistent across restarts with no service to run.
//!
//! One row per session, its keys in a JSON object column. An update is one statement,
//! `UPDATE … SET data = json_patch(data, ?)`, naming only the keys that changed: SQLite runs it
//! inside its single-writer lock against the latest committed row, so two requests that change
//! different keys both keep their writes. Each value is stored as a JSON *string* holding the
//! value's JSON text, which makes the merge patch replace a value instead of merging into it
//! (RFC 7396 merges objects) and lets `null` mean "remove this key".
//!
//! **Writes** go to one writer thread that owns the only writing connection. It takes every write
//! waiting in its queue and commits them together in one transaction (group commit): under load a
//! commit carries dozens of sessions, so the per-write cost is a prepared statement, not a
//! transaction, and requests never wait on each other's `BEGIN`. A request's write is answered
//! only after its transaction committed. A write whose request already gave up (the store
//! timeout answered 503) is dropped unwritten, so the store does what the visitor was told.
//!
//! **Takes and counters** run on the writer thread as well, inside its transaction: it is the only
//! connection that writes, so a take's read of a value and its removal, or a counter's read and
//! bump, cannot interleave with anyone else's. Counters are rows of `portico_counters`.
//!
//! **Checkpoints** (copying the write-ahead log back into the database file, with its `fsync`s)
//! mostly run on a third thread. Left to the writer, SQLite runs one after the commit that fills
//! 1,000 pages of log, and every write waiting meanwhile waits for the copy and both `fsync`s: that
//! stall was the slowest 1 % of first visits. The checkpointer thread, nudged after commits and at
//! most every [`writer::CHECKPOINT_EVERY`], copies what the log holds without stopping the writer, so when
//! the writer's own checkpoint comes due there is little left to copy. The writer keeps that
//! checkpoint: only after it can the next transaction start the log from its beginning, so the log
//! stays a few megabytes instead of growing for as long as writes keep coming.
//!
//! **Reads** run on the calling thread through one of a few read-only connections: in WAL mode a
//! read never waits for the writer, and a lookup by primary key takes microseconds, less than
//! handing it to another thread and back would. This is why the store talks to SQLite through
//! `rusqlite` directly rather than an async driver, whose every statement is such a hand-off.
//!
//! SQLite means one server, so the store also keeps the sessions it has read in memory (up to
//! 10,000) and answers reads from there: a returning visitor costs no database round trip. Every
//! write still goes to the database first; the writer thread updates the memory copy after the
//! commit, under the same lock a read takes to add an entry, and a read that raced with a write
//! does not add what it read (a counter of writes tells). So the memory copy never holds an
//! older value than the database.

mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{params, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};
use crate::sqlite::{connect, file_of, ReadPool};
use writer::{run_checkpointer, run_writer, Job, Op};

/// How many sessions the memory copy holds before it is emptied and refilled from reads
/// (≈ 1 KB each, so ≈ 10 MB at most).
const CACHE_LIMIT: usize = 10_000;

/// Writes that may wait for the writer thread before new ones are refused (503) instead of queued.
const QUEUE_LIMIT: usize = 8_192;

/// A session store in an SQLite database file.
///
/// ```no_run
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// let store = portico::session::SqliteStore::open("sqlite://data/sessions.sqlite3").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: SyncSender<Job>,
    readers: ReadPool,
}

/// What the requests and the writer thread both touch.
#[derive(Debug)]
struct Shared {
    cache: Mutex<HashMap<StorageKey, Record>>,
    /// Bumped (under the cache lock) after every commit, so a read can tell a write overtook it.
    writes: AtomicU64,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, HashMap<StorageKey, Record>> {
        // Only plain map operations run under this lock; a poisoned lock still holds whole entries.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn encode(data: &HashMap<String, String>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".into())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file `url` names (`sqlite://data/sessions.sqlite3`),
    /// creates the table and starts the writer thread.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when `url` names no file (`sqlite::memory:`, or not an
    /// `sqlite:` URL at all), or when the file cannot be opened or created, is not an SQLite
    /// database, or its table cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::SqliteStore;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("portico-doc-store-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = SqliteStore::open(&format!("sqlite://{}/s.sqlite3", dir.display())).await?;
    /// assert!(SqliteStore::open("sqlite::memory:").await.is_err());
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = file_of(url).ok_or_else(|| {
            StoreError::Backend(format!(
                "the SQLite session store needs a file, not {url:?} (use the memory store for sessions that live in memory)"
            ))
        })?;
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the session database: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        let writer = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::backend)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS portico_session_records (
                     id TEXT PRIMARY KEY NOT NULL,
                     created_at INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL,
                     data TEXT NOT NULL
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS portico_session_records_expires_at
                     ON portico_session_records (expires_at);",
            )
            .map_err(StoreError::backend)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS portico_counters (
                     name TEXT PRIMARY KEY NOT NULL,
                     count INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL
                 ) WITHOUT ROWID;",
            )
            .map_err(StoreError::backend)?;
        let checkpointer = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(StoreError::backend)?;
        let readers = ReadPool::open(path).map_err(StoreError::backend)?;
        let shared = Arc::new(Shared {
            cache: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        });
        // One pending nudge is enough: the checkpointer copies everything committed so far.
        let (nudge, nudged) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("portico-session-checkpointer".into())
            .spawn(move || run_checkpointer(checkpointer, nudged))
            .map_err(|e| StoreError::Backend(format!("starting the session checkpointer: {e}")))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_LIMIT);
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("portico-session-writer".into())
            .spawn(move || run_writer(writer, rx, thread_shared, nudge))
            .map_err(|e| StoreError::Backend(format!("starting the session writer: {e}")))?;
        Ok(Self {
            shared,
            writer: tx,
            readers,
        })
    }

    async fn write(&self, op: Op) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.writer.try_send(Job { op, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Backend(format!(
                    "{QUEUE_LIMIT} session writes are already waiting for the database"
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Backend("the session writer has stopped".into()))
            }
        }
        match answer.await {
            Ok(result) => result.map_err(StoreError::Backend),
            Err(_) => Err(StoreError::Backend(
                "the session writer stopped before answering".into(),
            )),
        }
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        if let Some(rec) = self.shared.cache().get(key) {
            return Ok((rec.expires_at > now).then(|| rec.clone()));
        }
        let seen = self.shared.writes.load(Ordering::Acquire);
        let row = {
            let conn = self.readers.get();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT created_at, expires_at, data FROM portico_session_records WHERE id = ?1",
                )
                .map_err(StoreError::backend)?;
            stmt.query_row(params![key.as_str()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .optional()
            .map_err(StoreError::backend)?
        };
        let Some((created_at, expires_at, data)) = row else {
            return Ok(None);
        };
        let record = Record {
            created_at,
            expires_at,
            data: serde_json::from_str(&data)
                .map_err(|e| StoreError::Backend(format!("corrupt session data: {e}")))?,
        };
        {
            let mut cache = self.shared.cache();
            if self.shared.writes.load(Ordering::Acquire) == seen {
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(key.clone(), record.clone());
            }
        }
        Ok((record.expires_at > now).then_some(record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        self.write(Op::Create {
            key: key.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            data: encode(&record.data),
        })
        .await
        .map(|_| ())
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(Op::Update {
            key: key.clone(),
            changes: changes.clone(),
            expires_at,
            now,
        })
        .await
        .map(|touched| touched > 0)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        self.write(Op::Delete { key: key.clone() })
            .await
            .map(|_| ())
    }

    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let gone = self.write(Op::DeleteExpired { now }).await?;
        self.write(Op::DeleteExpiredCounters { now }).await?;
        Ok(gone)
    }

    async fn take(
        &self,
        key: &StorageKey,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let taken = Arc::new(Mutex::new(None));
        let won = self
            .write(Op::Take {
                key: key.clone(),
                name: name.to_string(),
                now,
                taken: Arc::clone(&taken),
            })
            .await?;
        // Answered only after the commit, so a value seen here is removed for good.
        let value = taken.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(if won == 1 { value } else { None })
    }

    async fn incr_counter(&self, name: &str, expires_at: i64, now: i64) -> Result<u64, StoreError> {
        self.write(Op::Incr {
            name: name.to_string(),
            expires_at,
            now,
        })
        .await
    }

    async fn decr_counter(&self, name: &str, now: i64) -> Result<(), StoreError> {
        self.write(Op::Decr {
            name: name.to_string(),
            now,
        })
        .await
        .map(|_| ())
    }

    async fn delete_counter(&self, name: &str) -> Result<(), StoreError> {
        self.write(Op::DeleteCounter {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
