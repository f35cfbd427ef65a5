//! The writer thread: formats queued events, appends them to the day's file and rotates files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::log::{Counts, EventConfig};
use super::{Event, SCHEMA_VERSION};

pub(super) fn format_time(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

pub(super) fn file_name(dir: &Path, day: &str, instance: &str, part: u32) -> PathBuf {
    let inst = if instance.is_empty() || instance == "main" {
        String::new()
    } else {
        format!("-{instance}")
    };
    let part = if part == 0 {
        String::new()
    } else {
        format!("-{part}")
    };
    dir.join(format!("events-{day}{inst}{part}.jsonl"))
}

/// The file being appended to, and the whole lines waiting to go into it.
struct OpenFile {
    day: String,
    part: u32,
    /// Bytes in the file: all of them whole lines.
    size: u64,
    file: std::fs::File,
    pending: Vec<u8>,
    pending_lines: u64,
}

/// Lines are buffered up to this many bytes before they are written.
const BUFFER_BYTES: usize = 64 * 1024;

impl OpenFile {
    /// Writes the buffered lines. On failure the file is cut back to the whole lines it had, and
    /// the buffered lines are answered as dropped (with the error).
    fn flush(&mut self) -> Result<(), (u64, std::io::Error)> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.pending_lines);
        let result = self.file.write_all(&self.pending);
        let len = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // Part of the buffer may have reached the file: cut it off, so the file still
                // ends with a whole line (appends go to the end, wherever it now is).
                if let Err(cut) = self.file.set_len(self.size) {
                    tracing::error!(error = %cut, "cannot cut a partial line off the event log");
                }
                Err((lines, e))
            }
        }
    }
}

/// Cuts a file that does not end in a newline (a write cut short by a crash) back to its last
/// whole line, and answers its length.
fn whole_lines(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    // A line is far shorter than this; the tail holds the last newline.
    let tail = size.min(1 << 20);
    let mut buf = vec![0u8; tail as usize];
    file.seek(SeekFrom::Start(size - tail))?;
    file.read_exact(&mut buf)?;
    if buf.last() == Some(&b'\n') {
        return Ok(size);
    }
    let keep = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => size - tail + i as u64 + 1,
        None if tail == size => 0,
        None => size,
    };
    file.set_len(keep)?;
    Ok(keep)
}

fn open_for(config: &EventConfig, day: &str, mut part: u32) -> std::io::Result<OpenFile> {
    loop {
        let path = file_name(&config.dir, day, &config.instance, part);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).read(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        let size = whole_lines(&mut file)?;
        if size < config.max_file_bytes {
            return Ok(OpenFile {
                day: day.to_string(),
                part,
                size,
                file,
                pending: Vec::with_capacity(BUFFER_BYTES),
                pending_lines: 0,
            });
        }
        part += 1;
    }
}

/// The writer thread's state: the open file and whether the disk is refusing lines.
struct Writer {
    config: EventConfig,
    counts: Arc<Counts>,
    file: Option<OpenFile>,
    /// The drop count when writing began to fail; `None` while writes succeed.
    failing_since: Option<u64>,
}

impl Writer {
    /// Counts lines that could not be written, and says so once when it starts.
    fn dropped(&mut self, lines: u64, e: &std::io::Error) {
        self.counts.written.fetch_sub(lines, Ordering::Relaxed);
        let before = self.counts.dropped.fetch_add(lines, Ordering::Relaxed);
        if self.failing_since.is_none() {
            self.failing_since = Some(before);
            tracing::error!(error = %e, dir = %self.config.dir.display(),
                "cannot write the event log; dropping events and counting them until it can");
        }
    }

    /// Says once that writing works again, with what was lost meanwhile.
    fn succeeded(&mut self) {
        if let Some(since) = self.failing_since.take() {
            let lost = self.counts.dropped.load(Ordering::Relaxed) - since;
            tracing::warn!(dropped = lost, "the event log is written again");
        }
    }

    fn flush(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        let had_lines = f.pending_lines > 0;
        match f.flush() {
            Ok(()) if had_lines => self.succeeded(),
            Ok(()) => {}
            Err((lines, e)) => self.dropped(lines, &e),
        }
    }

    fn write(&mut self, mut ev: Event) {
        ev.v = SCHEMA_VERSION;
        if ev.instance.is_empty() {
            ev.instance = self.config.instance.clone();
        }
        ev.time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ev.ts_ms) * 1_000_000)
            .map(format_time)
            .unwrap_or_default();
        let mut line = match serde_json::to_vec(&ev) {
            Ok(line) => line,
            Err(e) => return self.dropped(1, &std::io::Error::other(e)),
        };
        line.push(b'\n');
        self.counts.written.fetch_add(1, Ordering::Relaxed);
        let day = ev.time.get(..10).unwrap_or("unknown");
        let rotate = match self.file.as_ref() {
            None => true,
            Some(f) => {
                f.day != day
                    || f.size + (f.pending.len() + line.len()) as u64 > self.config.max_file_bytes
            }
        };
        if rotate {
            self.flush();
            let next_part = match self.file.take() {
                Some(old) if old.day == day => old.part + 1,
                _ => 0,
            };
            match open_for(&self.config, day, next_part) {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.dropped(1, &e),
            }
        }
        let Some(f) = self.file.as_mut() else { return };
        f.pending.extend_from_slice(&line);
        f.pending_lines += 1;
        if f.pending.len() >= BUFFER_BYTES {
            self.flush();
        }
    }
}

pub(super) fn write_loop(
    mut rx: mpsc::Receiver<Event>,
    config: EventConfig,
    counts: Arc<Counts>,
    closed: Arc<AtomicBool>,
) {
    // The writer wakes on a short tick and drains whatever queued meanwhile, instead of being
    // woken by every event: under load that saves a cross-thread wake-up per request.
    let drain_every = config.drain_every;
    let mut w = Writer {
        config,
        counts,
        file: None,
        failing_since: None,
    };
    let mut last_flush = Instant::now();
    loop {
        std::thread::park_timeout(drain_every);
        // Read the flag before draining, so that everything queued before `close` is written.
        let closing = closed.load(Ordering::Relaxed);
        let disconnected = loop {
            match rx.try_recv() {
                Ok(ev) => w.write(ev),
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        let done = closing || disconnected;
        // At most a second's events sit in the buffer: that is what a crash can lose.
        if done || last_flush.elapsed() >= Duration::from_secs(1) {
            last_flush = Instant::now();
            w.flush();
        }
        if done {
            break;
        }
    }
}
