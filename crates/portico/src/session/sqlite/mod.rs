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
//! most every [`CHECKPOINT_EVERY`], copies what the log holds without stopping the writer, so when
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

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use crate::sqlite::{connect, file_of, ReadPool};

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// How many sessions the memory copy holds before it is emptied and refilled from reads
/// (≈ 1 KB each, so ≈ 10 MB at most).
const CACHE_LIMIT: usize = 10_000;

/// Most writes one transaction carries; more waiting ones go in the next.
const MAX_BATCH: usize = 256;

/// Writes that may wait for the writer thread before new ones are refused (503) instead of queued.
const QUEUE_LIMIT: usize = 8_192;

/// How long the checkpointer lets commits gather before copying them into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

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

/// One write, as the writer thread runs it.
#[derive(Debug)]
enum Op {
    Create {
        key: StorageKey,
        created_at: i64,
        expires_at: i64,
        data: String,
    },
    Update {
        key: StorageKey,
        changes: Changes,
        expires_at: i64,
        now: i64,
    },
    Delete {
        key: StorageKey,
    },
    DeleteExpired {
        now: i64,
    },
    /// Answers 1 when it removed the key, whose value it leaves in `taken`.
    Take {
        key: StorageKey,
        name: String,
        now: i64,
        taken: Arc<Mutex<Option<String>>>,
    },
    /// Answers the counter's new value.
    Incr {
        name: String,
        expires_at: i64,
        now: i64,
    },
    Decr {
        name: String,
        now: i64,
    },
    DeleteCounter {
        name: String,
    },
    DeleteExpiredCounters {
        now: i64,
    },
}

/// A write and where its outcome goes: the number of rows it touched, or the error.
#[derive(Debug)]
struct Job {
    op: Op,
    reply: oneshot::Sender<Result<u64, String>>,
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
    /// Opens (creating if needed) the database file `url` names (`sqlite://data/sessions.sqlite3`),
    /// creates the table and starts the writer thread.
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
        .map_err(backend)?;
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
            .map_err(backend)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS portico_counters (
                     name TEXT PRIMARY KEY NOT NULL,
                     count INTEGER NOT NULL,
                     expires_at INTEGER NOT NULL
                 ) WITHOUT ROWID;",
            )
            .map_err(backend)?;
        let checkpointer = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        let readers = ReadPool::open(path).map_err(backend)?;
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

/// The checkpointer thread: after a nudge, waits [`CHECKPOINT_EVERY`] for more commits, then copies
/// the log into the database file. A passive checkpoint never blocks the writer or a reader, and
/// one that finds the writer's own checkpoint running simply does nothing this time. Ends with
/// the writer thread, which holds the only sender.
fn run_checkpointer(conn: Connection, nudged: Receiver<()>) {
    while nudged.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_EVERY);
        // Take the nudges that came while sleeping: this checkpoint covers their commits too.
        while nudged.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "session checkpoint skipped");
        }
    }
}

/// The writer thread: takes what is waiting, commits it as one transaction, answers each caller.
/// Ends when the store (and with it the last sender) is dropped.
fn run_writer(conn: Connection, rx: Receiver<Job>, shared: Arc<Shared>, nudge: SyncSender<()>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The request behind a closed reply already answered 503: leave its write undone.
        batch.retain(|job| !job.reply.is_closed());
        if !batch.is_empty() {
            commit(&conn, &mut batch, &shared);
            // Full means a nudge is already waiting; the checkpointer will see this commit too.
            let _ = nudge.try_send(());
        }
        batch.clear();
    }
}

/// Runs a batch as one transaction and answers each job's outcome. A job is answered `Ok` only
/// when the transaction that carries it committed.
fn commit(conn: &Connection, batch: &mut Vec<Job>, shared: &Shared) {
    let outcomes = match conn.execute_batch("BEGIN IMMEDIATE") {
        Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
        Ok(()) => run_batch(conn, batch),
    };
    {
        let mut cache = shared.cache();
        for (job, outcome) in batch.iter().zip(&outcomes) {
            apply_to_cache(&mut cache, &job.op, outcome);
        }
        shared.writes.fetch_add(1, Ordering::AcqRel);
    }
    for (job, outcome) in batch.drain(..).zip(outcomes) {
        // The caller may have given up meanwhile; the write stands either way.
        let _ = job.reply.send(outcome);
    }
}

/// The jobs of a batch inside the open transaction, then `COMMIT`.
///
/// A statement that fails is undone on its own and the others go on, except that for some errors
/// (a full disk, an I/O error) SQLite rolls back the whole transaction. Going on then would run the
/// rest outside any transaction and answer the earlier ones as written when they are gone, so a
/// rolled-back transaction fails the whole batch.
fn run_batch(conn: &Connection, batch: &[Job]) -> Vec<Result<u64, String>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = run(conn, &job.op).map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            if conn.is_autocommit() {
                let why = format!("the transaction was rolled back: {e}");
                return batch.iter().map(|_| Err(why.clone())).collect();
            }
        }
        outcomes.push(outcome);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => outcomes,
        Err(e) => {
            // Nothing of the batch is written; leave the connection ready for the next.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            batch.iter().map(|_| Err(e.to_string())).collect()
        }
    }
}

fn run(conn: &Connection, op: &Op) -> rusqlite::Result<u64> {
    let rows = match op {
        Op::Create {
            key,
            created_at,
            expires_at,
            data,
        } => conn
            .prepare_cached(
                "INSERT INTO portico_session_records (id, created_at, expires_at, data)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![key.as_str(), created_at, expires_at, data])?,
        Op::Update {
            key,
            changes,
            expires_at,
            now,
        } => conn
            .prepare_cached(
                "UPDATE portico_session_records SET data = json_patch(data, ?1), expires_at = ?2
                 WHERE id = ?3 AND expires_at > ?4",
            )?
            .execute(params![patch(changes), expires_at, key.as_str(), now])?,
        Op::Delete { key } => conn
            .prepare_cached("DELETE FROM portico_session_records WHERE id = ?1")?
            .execute(params![key.as_str()])?,
        Op::DeleteExpired { now } => conn
            .prepare_cached("DELETE FROM portico_session_records WHERE expires_at <= ?1")?
            .execute(params![now])?,
        Op::Take {
            key,
            name,
            now,
            taken,
        } => return run_take(conn, key, name, *now, taken),
        Op::Incr {
            name,
            expires_at,
            now,
        } => return run_incr(conn, name, *expires_at, *now),
        Op::Decr { name, now } => conn
            .prepare_cached(
                "UPDATE portico_counters SET count = count - 1
                 WHERE name = ?1 AND count > 0 AND expires_at > ?2",
            )?
            .execute(params![name, now])?,
        Op::DeleteCounter { name } => conn
            .prepare_cached("DELETE FROM portico_counters WHERE name = ?1")?
            .execute(params![name])?,
        Op::DeleteExpiredCounters { now } => conn
            .prepare_cached("DELETE FROM portico_counters WHERE expires_at <= ?1")?
            .execute(params![now])?,
    };
    Ok(rows as u64)
}

/// Removes `name` from the live session `key`, leaving its value in `taken`; answers 1 when it
/// did. The read and the removal are one step because only the writer thread writes.
fn run_take(
    conn: &Connection,
    key: &StorageKey,
    name: &str,
    now: i64,
    taken: &Mutex<Option<String>>,
) -> rusqlite::Result<u64> {
    let data: Option<String> = conn
        .prepare_cached(
            "SELECT data FROM portico_session_records WHERE id = ?1 AND expires_at > ?2",
        )?
        .query_row(params![key.as_str(), now], |row| row.get(0))
        .optional()?;
    let Some(data) = data else {
        return Ok(0);
    };
    let mut map: HashMap<String, String> = serde_json::from_str(&data).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let Some(value) = map.remove(name) else {
        return Ok(0);
    };
    let removal = Changes {
        set: Vec::new(),
        remove: vec![name.to_string()],
    };
    conn.prepare_cached(
        "UPDATE portico_session_records SET data = json_patch(data, ?1) WHERE id = ?2",
    )?
    .execute(params![patch(&removal), key.as_str()])?;
    *taken.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    Ok(1)
}

/// Adds one to a counter, starting a new one where it is missing or expired; answers its value.
fn run_incr(conn: &Connection, name: &str, expires_at: i64, now: i64) -> rusqlite::Result<u64> {
    let count: i64 = conn
        .prepare_cached(
            "INSERT INTO portico_counters (name, count, expires_at) VALUES (?1, 1, ?2)
             ON CONFLICT (name) DO UPDATE SET
                count = CASE WHEN expires_at <= ?3 THEN 1 ELSE count + 1 END,
                expires_at = CASE WHEN expires_at <= ?3 THEN excluded.expires_at ELSE expires_at END
             RETURNING count",
        )?
        .query_row(params![name, expires_at, now], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Brings the memory copy in line with a write that committed (or failed).
fn apply_to_cache(cache: &mut HashMap<StorageKey, Record>, op: &Op, outcome: &Result<u64, String>) {
    match (op, outcome) {
        // New sessions are not cached: most (first visits, crawlers) are never read again, and
        // the first read of one that is brings it in.
        (Op::Create { .. }, _) => {}
        (
            Op::Update {
                key,
                changes,
                expires_at,
                ..
            },
            Ok(touched),
        ) if *touched > 0 => {
            if let Some(rec) = cache.get_mut(key) {
                for (k, v) in &changes.set {
                    rec.data.insert(k.clone(), v.clone());
                }
                for k in &changes.remove {
                    rec.data.remove(k);
                }
                rec.expires_at = *expires_at;
            }
        }
        (Op::Update { key, .. }, _) | (Op::Delete { key }, _) => {
            cache.remove(key);
        }
        (Op::DeleteExpired { now }, _) => cache.retain(|_, r| r.expires_at > *now),
        (Op::Take { key, name, .. }, Ok(1)) => {
            if let Some(rec) = cache.get_mut(key) {
                rec.data.remove(name);
            }
        }
        // Nothing was removed, or the outcome is unknown: the next read goes to the database.
        (Op::Take { key, .. }, _) => {
            cache.remove(key);
        }
        (
            Op::Incr { .. }
            | Op::Decr { .. }
            | Op::DeleteCounter { .. }
            | Op::DeleteExpiredCounters { .. },
            _,
        ) => {}
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
                .map_err(backend)?;
            stmt.query_row(params![key.as_str()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .optional()
            .map_err(backend)?
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
mod tests {
    use super::*;

    /// A store's file with a trigger that rolls back the whole transaction when a session with
    /// the data `boom` is created, as SQLite itself does on some errors (a full disk, an I/O error).
    fn store_that_rolls_back_on_boom() -> (Connection, Shared, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "portico-sqlite-batch-{}.sqlite3",
            rand::random::<u64>()
        ));
        let conn = connect(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE portico_session_records (
                 id TEXT PRIMARY KEY NOT NULL, created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
             CREATE TRIGGER boom BEFORE INSERT ON portico_session_records
                 WHEN NEW.data = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'disk went away'); END;",
        )
        .unwrap();
        let shared = Shared {
            cache: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        };
        (conn, shared, path)
    }

    fn create_job(id: &str) -> (Job, oneshot::Receiver<Result<u64, String>>) {
        let (reply, answer) = oneshot::channel();
        let op = Op::Create {
            key: StorageKey::of(id),
            created_at: 1,
            expires_at: i64::MAX,
            data: id.into(),
        };
        (Job { op, reply }, answer)
    }

    #[test]
    fn a_rolled_back_transaction_fails_every_write_of_its_batch() {
        let (conn, shared, path) = store_that_rolls_back_on_boom();
        let (jobs, mut answers): (Vec<_>, Vec<_>) = ["before", "boom", "after"]
            .map(create_job)
            .into_iter()
            .unzip();
        let mut batch = jobs;
        commit(&conn, &mut batch, &shared);
        for (id, answer) in ["before", "boom", "after"].iter().zip(&mut answers) {
            let outcome = answer.try_recv().expect("every job is answered");
            assert!(outcome.is_err(), "{id} was answered {outcome:?}");
        }
        let stored: i64 = conn
            .query_row("SELECT COUNT(*) FROM portico_session_records", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, 0, "a write answered as failed was stored");
        assert!(
            conn.is_autocommit(),
            "the connection is ready for the next batch"
        );

        let (job, mut answer) = create_job("next");
        let mut batch = vec![job];
        commit(&conn, &mut batch, &shared);
        assert_eq!(answer.try_recv().unwrap(), Ok(1));
        drop(conn);
        let _ = std::fs::remove_file(&path);
    }

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
