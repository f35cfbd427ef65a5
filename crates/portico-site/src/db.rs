//! The models' database: SQLite by default, PostgreSQL by URL, through sqlx's `Any` driver.
//!
//! Queries are written once with `$1, $2, ...` placeholders, which both SQLite and PostgreSQL
//! accept (bound in order). Migrations differ per backend (auto-increment keys) and are embedded
//! in the binary.
//!
//! On SQLite the hot, short reads (a page of notes) also have a [`ReadPool`]: read-only
//! connections used on the request's own thread, which spares the async driver's two thread
//! hand-offs per statement. Everything else goes through the pool.

use std::str::FromStr;
use std::time::Duration;

use portico::sqlite::{rusqlite, ReadPool};
use sqlx::any::{install_default_drivers, AnyArguments, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Executor, Row};

/// WAL lets readers go on while a writer writes; the busy timeout makes writers queue instead of
/// failing.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (one file).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend of a URL.
    pub fn of(url: &str) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(sqlx::Error::Configuration(
                format!("unsupported database URL {url:?}: use sqlite://... or postgres://...")
                    .into(),
            ))
        }
    }
}

/// The models' connection pool.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// Its backend.
    pub backend: Backend,
    /// Read-only connections on the request's thread, for SQLite only.
    pub reads: Option<std::sync::Arc<ReadPool>>,
}

impl Db {
    /// Connects (creating an SQLite file if needed). `connections` caps a PostgreSQL pool;
    /// `None` means twice the cores, at least 4.
    pub async fn connect(url: &str, connections: Option<u32>) -> Result<Self, sqlx::Error> {
        install_default_drivers();
        let backend = Backend::of(url)?;
        let url = match backend {
            Backend::Sqlite => {
                let mut u = url.to_string();
                if !u.contains("mode=") {
                    u.push(if u.contains('?') { '&' } else { '?' });
                    u.push_str("mode=rwc");
                }
                sqlx::sqlite::SqliteConnectOptions::from_str(&u)?;
                u
            }
            Backend::Postgres => url.to_string(),
        };
        // Each SQLite connection is a thread of its own; on a small machine more of them only add
        // context switches (SQLite has one writer anyway, and WAL readers are quick).
        // PostgreSQL: on 2 cores, 4 connections served the notes page 24 % faster than 16 did
        // (bench/run, S5), since every connection is a server process competing for the cores.
        let max = match backend {
            Backend::Sqlite => 3,
            Backend::Postgres => connections.unwrap_or_else(portico::session::default_pool_size),
        };
        // No ping before each use: on PostgreSQL it was a second round trip for every query (a
        // sixth of the notes page's server time), on SQLite a second hand-off to the driver's
        // thread. A connection that died (database restart) fails one query, answered 503, and
        // is replaced.
        // A request waits up to 3 s for a connection, so a burst queues for the few connections
        // rather than answering 503; the same wait covers reconnecting to a server that refuses
        // connections (restarting). The PostgreSQL session store gives up sooner (1.5 s): with
        // sessions there too, a database that went away is a quick 503 there first.
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(3))
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            conn.execute(*pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let reads = match portico::sqlite::file_of(&url) {
            // The pool above has created the file; the read connections open it as it is.
            Some(path) if backend == Backend::Sqlite => {
                let reads = tokio::task::spawn_blocking(move || ReadPool::open(&path))
                    .await
                    .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?
                    .map_err(read_error)?;
                Some(std::sync::Arc::new(reads))
            }
            _ => None,
        };
        Ok(Self {
            pool,
            backend,
            reads,
        })
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        }
    }
}

/// Runs an `INSERT … RETURNING id` to its very end and answers the id.
///
/// Both drivers hand the returned row over before the statement is done: SQLite commits an
/// autocommit statement only when it is stepped past its last row, and PostgreSQL commits when it
/// answers the statement's `Sync`. `fetch_one` stops reading at the row, so a commit that fails
/// after it (a full disk, a server shutting down) went unseen and the caller was given the id of a
/// row that was never stored. Reading every result to the end reports that failure instead.
pub async fn insert_returning_id<'q>(
    db: &Db,
    query: Query<'q, Any, AnyArguments<'q>>,
) -> Result<i64, sqlx::Error> {
    let rows = query.fetch_all(&db.pool).await?;
    rows.first().ok_or(sqlx::Error::RowNotFound)?.try_get(0)
}

/// Whether a database error means "unavailable for now" (answered 503: try again shortly) rather
/// than a fault in the request or the code (500).
///
/// Unavailable: the pool or the connection failed (a server that is down or restarting), and
/// errors the database raises when it cannot keep data right now — on SQLite a full disk, an I/O
/// error, a lock held past the busy timeout, a file that cannot be opened or is read-only; on
/// PostgreSQL the connection classes (08), insufficient resources such as a full disk (53),
/// operator intervention such as a shutdown (57P), system errors (58) and read-only standbys.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                matches!(
                    code & 0xff,
                    rusqlite::ffi::SQLITE_BUSY
                        | rusqlite::ffi::SQLITE_LOCKED
                        | rusqlite::ffi::SQLITE_NOMEM
                        | rusqlite::ffi::SQLITE_READONLY
                        | rusqlite::ffi::SQLITE_IOERR
                        | rusqlite::ffi::SQLITE_FULL
                        | rusqlite::ffi::SQLITE_CANTOPEN
                )
            } else {
                let state = d.code().unwrap_or_default();
                ["08", "53", "57P", "58"]
                    .iter()
                    .any(|class| state.starts_with(class))
                    || state == "25006"
            }
        }
        _ => false,
    }
}

/// A failed read on a [`ReadPool`] connection as the error the views already handle: a database
/// that stays locked past the busy timeout is unavailable (503), anything else is a server error.
pub fn read_error(e: rusqlite::Error) -> sqlx::Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            sqlx::Error::Io(std::io::Error::other(e))
        }
        _ => sqlx::Error::Protocol(format!("SQLite read failed: {e}")),
    }
}
