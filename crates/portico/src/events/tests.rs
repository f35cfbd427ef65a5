use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::log::WAKE_AT;
use super::writer::{file_name, format_time};
use super::*;

/// A fresh folder under the system's temp folder, removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>())))
    }

    /// The same folder, created now (for tests that put a file there before the log starts).
    fn created() -> Self {
        let dir = Self::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        dir
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The files in the folder.
    fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Today's file of the default instance in `dir`.
fn todays_file(dir: &Path) -> PathBuf {
    let day = format_time(time::OffsetDateTime::now_utc())[..10].to_string();
    file_name(dir, &day, "main", 0)
}

#[test]
fn kinds_keep_the_spelling_the_analytics_job_reads() {
    use EventKind::*;
    let kinds = [
        (Request, "request"),
        (LoginOk, "login_ok"),
        (LoginFail, "login_fail"),
        (LoginSlowed, "login_slowed"),
        (Register, "register"),
        (Logout, "logout"),
        (CaptchaIssued, "captcha_issued"),
        (CaptchaOk, "captcha_ok"),
        (CaptchaFail, "captcha_fail"),
        (CsrfReject, "csrf_reject"),
        (RateLimited, "rate_limited"),
        (SessionStoreError, "session_store_error"),
        (DuplicateSessionCookie, "duplicate_session_cookie"),
    ];
    for (kind, name) in kinds {
        assert_eq!(serde_json::to_value(kind).unwrap(), name);
    }
}

#[tokio::test]
async fn events_land_as_json_lines_and_flush_on_close() {
    let dir = TempDir::new();
    let (log, writer) = EventLog::start(
        EventConfig {
            instance: "a".into(),
            ..EventConfig::new(dir.path())
        },
        [0; 32],
    )
    .unwrap();
    log.record(
        Event::new(EventKind::LoginFail)
            .account("ada")
            .reason("bad_credentials"),
    );
    log.record(Event::new(EventKind::Logout));
    log.close();
    writer.finish().await;
    let files = dir.files();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("events-") && name.ends_with("-a.jsonl"),
        "{name}"
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["v"], 1);
    assert_eq!(lines[0]["kind"], "login_fail");
    assert_eq!(lines[0]["account"], "ada");
    assert_eq!(lines[0]["instance"], "a");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines[1].get("reason").is_none());
}

#[tokio::test]
async fn files_rotate_by_size() {
    let dir = TempDir::new();
    let cfg = EventConfig {
        max_file_bytes: 600,
        ..EventConfig::new(dir.path())
    };
    let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
    for _ in 0..10 {
        log.record(Event::new(EventKind::Request));
    }
    log.close();
    writer.finish().await;
    let mut total = 0;
    let files = dir.files();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 600, "{f:?} is {len} bytes");
        total += std::fs::read_to_string(f).unwrap().lines().count();
    }
    assert_eq!(total, 10);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let dir = TempDir::new();
    let cfg = EventConfig {
        capacity: 1,
        drain_every: Duration::from_secs(3600),
        ..EventConfig::new(dir.path())
    };
    let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
    // The writer drains only when closed here, so the second event finds the queue full.
    log.record(Event::new(EventKind::Request));
    log.record(Event::new(EventKind::Request));
    assert_eq!(log.dropped(), 1);
    log.close();
    writer.finish().await;
    assert_eq!(log.written(), 1);
}

#[tokio::test]
async fn a_disk_that_refuses_lines_drops_and_counts_them_without_blocking() {
    let dir = TempDir::created();
    // Every write to /dev/full fails with "no space left on device".
    std::os::unix::fs::symlink("/dev/full", todays_file(dir.path())).unwrap();
    let (log, writer) = EventLog::start(EventConfig::new(dir.path()), [0; 32]).unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        log.record(Event::new(EventKind::Request));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "recording waited"
    );
    log.close();
    writer.finish().await;
    assert_eq!(log.dropped(), 10);
    assert_eq!(log.written(), 0);
}

#[tokio::test]
async fn a_partial_last_line_is_cut_before_appending() {
    let dir = TempDir::created();
    let path = todays_file(dir.path());
    std::fs::write(&path, "{\"kind\":\"request\"}\n{\"kind\":\"req").unwrap();
    let (log, writer) = EventLog::start(EventConfig::new(dir.path()), [0; 32]).unwrap();
    log.record(Event::new(EventKind::Logout));
    log.close();
    writer.finish().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds, ["\"request\"", "\"logout\""]);
}

#[tokio::test]
async fn a_long_queue_wakes_the_writer_before_its_tick() {
    let dir = TempDir::new();
    let cfg = EventConfig {
        drain_every: Duration::from_secs(3600),
        ..EventConfig::new(dir.path())
    };
    let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
    for _ in 0..WAKE_AT - 1 {
        log.record(Event::new(EventKind::Request));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(log.written(), 0, "a short queue waits for the tick");
    log.record(Event::new(EventKind::Request));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log.written() < WAKE_AT as u64 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        log.written(),
        WAKE_AT as u64,
        "the writer drained without its tick"
    );
    log.close();
    writer.finish().await;
}

#[tokio::test]
async fn session_hash_is_keyed_and_hides_the_id() {
    let dir = TempDir::new();
    let (a, wa) = EventLog::start(EventConfig::new(dir.path()), [1; 32]).unwrap();
    let (b, wb) = EventLog::start(EventConfig::new(dir.path()), [2; 32]).unwrap();
    let id = "A".repeat(43);
    let ha = a.session_hash(&id).unwrap();
    assert_ne!(ha, b.session_hash(&id).unwrap());
    assert!(!ha.contains(&id[..8]));
    a.close();
    b.close();
    wa.finish().await;
    wb.finish().await;
}
