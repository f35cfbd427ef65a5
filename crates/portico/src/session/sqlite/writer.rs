//! The writer thread, which runs every write of the store in batched transactions, and the
//! checkpointer thread beside it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::Shared;
use crate::session::store::{Changes, Record, StorageKey};

/// Most writes one transaction carries; more waiting ones go in the next.
pub(super) const MAX_BATCH: usize = 256;

/// How long the checkpointer lets commits gather before copying them into the database file.
pub(super) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// One write, as the writer thread runs it.
#[derive(Debug)]
pub(super) enum Op {
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
pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<u64, String>>,
}
pub(super) fn patch(changes: &Changes) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in &changes.set {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    for k in &changes.remove {
        map.insert(k.clone(), serde_json::Value::Null);
    }
    serde_json::Value::Object(map).to_string()
}
/// The checkpointer thread: after a nudge, waits [`CHECKPOINT_EVERY`] for more commits, then copies
/// the log into the database file. A passive checkpoint never blocks the writer or a reader, and
/// one that finds the writer's own checkpoint running simply does nothing this time. Ends with
/// the writer thread, which holds the only sender.
pub(super) fn run_checkpointer(conn: Connection, nudged: Receiver<()>) {
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
pub(super) fn run_writer(
    conn: Connection,
    rx: Receiver<Job>,
    shared: Arc<Shared>,
    nudge: SyncSender<()>,
) {
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
pub(super) fn commit(conn: &Connection, batch: &mut Vec<Job>, shared: &Shared) {
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
