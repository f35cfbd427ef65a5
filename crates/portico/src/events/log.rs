//! The handle requests log through, and what it shares with the writer thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::writer::write_loop;
use super::Event;

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// The folder of the log files.
    pub dir: PathBuf,
    /// This server's name, in every line and in the file names (so servers sharing a folder
    /// never write the same file).
    pub instance: String,
    /// A file past this many bytes is closed and the next one started.
    pub max_file_bytes: u64,
    /// How many events may wait for the writer before new ones are dropped.
    pub capacity: usize,
    /// How often the writer drains the queue (100 ms). The writer is woken at once by
    /// [`EventLog::close`], and early by a queue of 256 events, so this bounds only how stale the
    /// file is while running.
    pub drain_every: Duration,
}

/// Queued events at which a request wakes the writer before its next tick. Under load the queue,
/// and the memory its events hold, then stays about this long instead of growing to a whole
/// tick's worth of requests, which on a busy server is thousands of events of its peak memory
/// (bench/OPTIMISATIONS.md has the measurement); an idle or quiet server is still woken only by
/// the tick, so it pays for no extra wake-ups.
pub(super) const WAKE_AT: usize = 256;

impl EventConfig {
    /// The defaults for `dir`: instance `main`, 64 MiB files, 16k queued events.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            instance: "main".into(),
            max_file_bytes: 64 << 20,
            capacity: 16_384,
            drain_every: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<Event>,
    closed: Arc<AtomicBool>,
    writer: std::thread::Thread,
    counts: Arc<Counts>,
    hash_key: [u8; 32],
}

/// What became of the events, shared by the requests and the writer thread.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Events in the file or buffered for it.
    pub(super) written: AtomicU64,
    /// Events dropped: the queue was full, the log closed, or the disk refused them.
    pub(super) dropped: AtomicU64,
}

/// The handle requests log through. Cheap to clone; [`EventLog::disabled`] logs nothing.
#[derive(Debug, Clone)]
pub struct EventLog {
    shared: Option<Arc<Shared>>,
}

/// The writer thread of an [`EventLog`]; await [`EventWriter::finish`] after [`EventLog::close`].
#[derive(Debug)]
pub struct EventWriter(std::thread::JoinHandle<()>);

impl EventWriter {
    /// Waits until every queued event is written and the file flushed.
    pub async fn finish(self) {
        let handle = self.0;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::error!("event writer ended abnormally"),
        }
    }
}

impl EventLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// Starts the writer thread. `hash_key` keys the session-id hash, so the log cannot be joined
    /// against a stolen session table.
    ///
    /// # Errors
    ///
    /// Returns the [`std::io::Error`] of creating `config.dir` (a missing permission, a file in the
    /// way) or of spawning the writer thread; nothing is started then. A server that must not run
    /// without its log stops here; one that can, uses [`EventLog::disabled`].
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::events::{EventConfig, EventLog};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("portico-doc-events-{}", std::process::id()));
    /// let (log, writer) = EventLog::start(EventConfig::new(&dir), [7; 32])?;
    /// // On shutdown: stop taking events, then wait until the queued ones are on disk.
    /// log.close();
    /// writer.finish().await;
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(config: EventConfig, hash_key: [u8; 32]) -> std::io::Result<(Self, EventWriter)> {
        // The log names accounts and addresses: readable by the server's user only.
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&config.dir)?;
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let closed = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        // A thread of its own with plain blocking file I/O: tokio's file operations would hand
        // every buffer flush to the blocking pool, a thread switch each time.
        let task = {
            let (closed, counts) = (closed.clone(), counts.clone());
            std::thread::Builder::new()
                .name("portico-events".into())
                .spawn(move || write_loop(rx, config, counts, closed))?
        };
        let shared = Arc::new(Shared {
            tx,
            closed,
            writer: task.thread().clone(),
            counts,
            hash_key,
        });
        Ok((
            Self {
                shared: Some(shared),
            },
            EventWriter(task),
        ))
    }

    /// Whether events go anywhere; callers skip building events for a disabled log.
    pub(super) fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues an event; never waits. A full queue drops it and counts it.
    pub fn record(&self, mut event: Event) {
        let Some(shared) = &self.shared else { return };
        if shared.closed.load(Ordering::Relaxed) {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Only the clock is read here; the writer thread formats the time and fills the constant
        // fields, off the request path.
        event.ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if shared.tx.try_send(event).is_err() {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
        } else if shared.tx.max_capacity() - shared.tx.capacity() >= WAKE_AT {
            shared.writer.unpark();
        }
    }

    /// Events dropped so far: the queue was full, the log was closed, or the file could not take
    /// them (a full disk). A site shows it to its operators (Portico's site: `/healthz`).
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.counts.dropped.load(Ordering::Relaxed))
    }

    /// Events written so far (in the file, or buffered for its next flush).
    pub fn written(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.counts.written.load(Ordering::Relaxed))
    }

    /// Stops accepting events; the writer drains the queue, flushes and ends.
    pub fn close(&self) {
        if let Some(s) = &self.shared {
            s.closed.store(true, Ordering::Relaxed);
            s.writer.unpark();
        }
    }

    /// The keyed hash of a session id that the log carries instead of the id.
    pub(crate) fn session_hash(&self, session_id: &str) -> Option<String> {
        let shared = self.shared.as_ref()?;
        let mut h = Sha256::new();
        h.update(shared.hash_key);
        h.update(session_id.as_bytes());
        Some(hex::encode(&h.finalize()[..12]))
    }
}
