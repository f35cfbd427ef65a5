//! Reads from an SQLite file on the request's own thread.
//!
//! An async SQLite driver runs every statement on a thread of its own and passes the rows back
//! through a channel: each query costs two thread wake-ups, far more than a lookup by key in a
//! database the OS already caches. In WAL mode a reader never waits for the writer, so a short
//! read can simply run where the request is. [`ReadPool`] keeps a few read-only connections for
//! that; writes go elsewhere (the session store's writer thread, the site's async pool).
//!
//! Use it for short, indexed reads only: a statement runs to completion on the async runtime's
//! thread, so a scan of a large table would hold up every request on that thread.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use rusqlite;
use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another connection's lock before its statement fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The file an `sqlite:` URL names (`sqlite://path`, `sqlite:path`; `?options` ignored), or
/// `None` for an in-memory database or a URL of another kind.
///
/// # Errors
///
/// Returns `None` for `sqlite::memory:`, an `sqlite:` URL without a path, and any URL that is
/// not `sqlite:`: a caller that needs a file (a store shared by processes) reports the URL.
///
/// # Examples
///
/// ```
/// use portico::sqlite::file_of;
/// use std::path::Path;
/// let path = file_of("sqlite://data/app.sqlite3?mode=rwc");
/// assert_eq!(path.as_deref(), Some(Path::new("data/app.sqlite3")));
/// assert_eq!(file_of("sqlite::memory:"), None);
/// ```
pub fn file_of(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Opens a connection with the busy timeout set.
///
/// # Errors
///
/// Returns rusqlite's error when the file cannot be opened with `flags` (missing without
/// `SQLITE_OPEN_CREATE`, no permission, a missing directory) or the busy timeout cannot be set.
///
/// # Examples
///
/// ```
/// use portico::sqlite::{connect, rusqlite::OpenFlags};
/// let path = std::env::temp_dir().join(format!("portico-doc-connect-{}.db", std::process::id()));
/// let conn = connect(&path, OpenFlags::default())?;
/// conn.execute_batch("CREATE TABLE IF NOT EXISTS note (body TEXT)")?;
/// assert!(connect(&path.join("no-such-dir/x.db"), OpenFlags::default()).is_err());
/// # drop(conn);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), portico::sqlite::rusqlite::Error>(())
/// ```
pub fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// A few read-only connections to one SQLite file, one per core (2 to 8).
#[derive(Debug)]
pub struct ReadPool {
    conns: Box<[Mutex<Connection>]>,
}

impl ReadPool {
    /// Opens the connections. The file must exist (open it for writing first).
    ///
    /// # Errors
    ///
    /// Returns rusqlite's error when a connection cannot be opened (the file does not exist or
    /// cannot be read) or configured; no connection is kept then.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::sqlite::{connect, rusqlite::OpenFlags, ReadPool};
    /// let path = std::env::temp_dir().join(format!("portico-doc-pool-{}.db", std::process::id()));
    /// connect(&path, OpenFlags::default())?.execute_batch("CREATE TABLE IF NOT EXISTS t (x)")?;
    /// let pool = ReadPool::open(&path)?;
    /// let one: i64 = pool.get().query_row("SELECT 1", [], |row| row.get(0))?;
    /// assert_eq!(one, 1);
    /// # drop(pool);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), portico::sqlite::rusqlite::Error>(())
    /// ```
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let count = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let conns = (0..count)
            .map(|_| {
                let conn = connect(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // Hot pages live in the OS cache anyway; a small page cache per connection keeps
                // the process small.
                conn.execute_batch("PRAGMA cache_size = -512")?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self {
            conns: conns.into_boxed_slice(),
        })
    }

    /// A free connection, or (when all are busy) the first one, waited for.
    pub fn get(&self) -> MutexGuard<'_, Connection> {
        for slot in self.conns.iter() {
            if let Ok(conn) = slot.try_lock() {
                return conn;
            }
        }
        // A poisoned connection is still a connection: no statement is left half-run by a panic.
        self.conns[0].lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_files_and_memory_is_not_a_file() {
        assert_eq!(
            file_of("sqlite://data/s.sqlite3"),
            Some(PathBuf::from("data/s.sqlite3"))
        );
        assert_eq!(
            file_of("sqlite:/tmp/s.db?mode=rwc"),
            Some(PathBuf::from("/tmp/s.db"))
        );
        assert_eq!(file_of("sqlite::memory:"), None);
        assert_eq!(file_of("sqlite://"), None);
        assert_eq!(file_of("postgres://x"), None);
    }

    #[test]
    fn a_read_pool_reads_what_a_writer_committed() {
        let dir = std::env::temp_dir().join(format!("portico-readpool-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (7);",
            )
            .unwrap();
        let pool = ReadPool::open(&path).unwrap();
        let first = pool.get();
        // The first connection is taken: the second call gets another, not a deadlock.
        let second = pool.get();
        let v: i64 = second
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 7);
        drop(first);
        assert!(
            pool.get().execute("INSERT INTO t VALUES (8)", []).is_err(),
            "a read connection accepted a write"
        );
    }
}
