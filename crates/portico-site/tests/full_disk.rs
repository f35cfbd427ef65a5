//! The data folder's disk fills up under load: every write the site acknowledges is stored, every
//! other one is a clear 503 with the person's input kept, the event log drops lines (and counts
//! them) instead of holding requests up, nothing already written is damaged, and once space is
//! freed everything works again without a restart.
//!
//! The disk is a 16 MiB tmpfs the test mounts over a fresh folder (so it runs as root, as the test
//! suite does; without root it fails, it does not skip) and fills with a file, as `dd` would.

mod common;
mod faults;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{temp_dir, TestApp};
use faults::{assert_clear_refusal, body_text, send, sign_up, unique, Kind, Visitor, Write};
use portico::sqlite::rusqlite::{self, OpenFlags};
use reqwest::StatusCode;

const VISITORS: usize = 6;
const LOAD: Duration = Duration::from_secs(3);

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and must run as root: mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Writes a file until the disk refuses more, as `dd if=/dev/zero of=filler` does; answers
    /// how many bytes it took.
    fn fill(&self) -> u64 {
        use std::io::Write as _;
        let mut f = std::fs::File::create(self.filler()).expect("create the filler");
        let mut total = 0u64;
        for chunk in [1 << 20, 4096, 512] {
            let zeros = vec![0u8; chunk];
            while f.write_all(&zeros).is_ok() {
                total += chunk as u64;
            }
        }
        let _ = f.sync_all();
        total
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `PRAGMA integrity_check` of an SQLite file.
fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// How many stored notes have this title.
fn notes_titled(db: &Path, title: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the notes database");
    conn.query_row(
        "SELECT COUNT(*) FROM notes WHERE title = ?1",
        [title],
        |r| r.get(0),
    )
    .expect("count notes")
}

/// The lines of every event log file, each checked to be a JSON object.
fn event_lines(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("the events folder") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read an event file");
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{} line {}: {e}: {line:?}", path.display(), i + 1));
            assert!(v.is_object(), "{line}");
            n += 1;
        }
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line",
            path.display()
        );
    }
    n
}

/// The event log counts `/healthz` shows: (written, dropped).
async fn event_counts(app: &TestApp) -> (u64, u64) {
    let r = reqwest::get(app.url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(r.status(), StatusCode::OK, "/healthz");
    let text = r.text().await.expect("healthz body");
    let count = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("/healthz has no {name}: {text}"))
    };
    (count("events_written"), count("events_dropped"))
}

/// One visitor's share of the load until `until`: a new note with a few kilobytes of text, a
/// session key, an edit of the visitor's first note, and the notes list (which must keep working:
/// reads need no space).
async fn visit(
    app: &TestApp,
    index: usize,
    visitor: &Visitor,
    first_note: i64,
    until: Instant,
) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let marker = unique(&format!("v{index}n{n}x"));
        let new = Kind::NewNote {
            title: marker.clone(),
            body: body_text(&marker, 6_000),
        };
        writes.push(send(app, index, visitor, new).await);
        let key = Kind::SessionKey {
            key: format!("k{n}"),
            value: marker.clone(),
        };
        writes.push(send(app, index, visitor, key).await);
        let edit = Kind::EditNote {
            id: first_note,
            title: format!("{marker}e"),
            body: body_text(&format!("{marker}e"), 3_000),
        };
        writes.push(send(app, index, visitor, edit).await);
        let list = visitor
            .client
            .get(app.url("/notes/"))
            .send()
            .await
            .expect("GET /notes/");
        assert_eq!(list.status(), StatusCode::OK, "the notes list is a read");
    }
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_no_acknowledged_write_and_recovers_when_space_is_freed() {
    // Dropped last: the site stops before its disk is unmounted.
    let disk = Tmpfs::mount("16m");
    let data = disk.dir.join("data");
    let app = TestApp::spawn_in(
        data.clone(),
        &[
            ("PORTICO_LOG", "off"),
            ("PORTICO_REGISTER_PER_IP", "1000000"),
        ],
    );

    let mut visitors = Vec::new();
    let mut first_notes = Vec::new();
    for i in 0..VISITORS {
        let v = sign_up(&app, &unique(&format!("disk{i}x"))).await;
        let seed = Kind::NewNote {
            title: format!("seed {i}"),
            body: "written while there was space".into(),
        };
        let w = send(&app, i, &v, seed).await;
        assert!(w.acknowledged(), "a note before the disk fills: {w:?}");
        first_notes.push(w.note_id().expect("note id"));
        visitors.push(v);
    }
    let (_, dropped_before) = event_counts(&app).await;
    assert_eq!(dropped_before, 0, "no event dropped while there was space");

    let filled = disk.fill();
    assert!(filled > 0, "the filler took the free space");
    let until = Instant::now() + LOAD;
    let loads = visitors
        .iter()
        .zip(&first_notes)
        .enumerate()
        .map(|(i, (v, first))| visit(&app, i, v, *first, until));
    let writes: Vec<Write> = futures_util::future::join_all(loads)
        .await
        .into_iter()
        .flatten()
        .collect();

    let refused: Vec<&Write> = writes.iter().filter(|w| !w.acknowledged()).collect();
    eprintln!(
        "full disk: {} writes, {} acknowledged, {} refused",
        writes.len(),
        writes.len() - refused.len(),
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "the disk refused no write, so it was not full"
    );
    for w in &writes {
        assert!(
            w.took < Duration::from_secs(2),
            "a write waited {:?} on the full disk: {w:?}",
            w.took
        );
    }
    for w in &refused {
        assert_clear_refusal(w);
    }
    // The writer flushes every second; the lines it could not write are counted.
    let counted = faults::within(Duration::from_secs(3), || async {
        event_counts(&app).await.1 > 0
    })
    .await;
    assert!(counted.is_some(), "the event log counted no dropped line");

    // Space again: no restart, the same visitors carry on.
    disk.free();
    let mut after = Vec::new();
    for (i, v) in visitors.iter().enumerate() {
        let marker = unique(&format!("after{i}x"));
        let new = Kind::NewNote {
            title: marker.clone(),
            body: body_text(&marker, 500),
        };
        let w = send(&app, i, v, new).await;
        assert!(w.acknowledged(), "a note once space is freed: {w:?}");
        after.push(w);
        let key = Kind::SessionKey {
            key: "after".into(),
            value: marker,
        };
        let w = send(&app, i, v, key).await;
        assert!(
            w.acknowledged(),
            "a session write once space is freed: {w:?}"
        );
        after.push(w);
    }
    let (written, dropped) = event_counts(&app).await;
    let lines_then = event_lines(&data.join("events"));
    let flushed = faults::within(Duration::from_secs(3), || async {
        event_lines(&data.join("events")) > lines_then
    })
    .await;
    assert!(flushed.is_some(), "the event log writes again");
    let (written_later, dropped_later) = event_counts(&app).await;
    assert!(written_later > written);
    assert_eq!(
        dropped_later, dropped,
        "no event dropped once space is freed"
    );

    let all: Vec<Write> = writes.iter().cloned().chain(after).collect();
    let checked = faults::assert_acknowledged_writes_kept(&app, &visitors, &all).await;
    assert!(checked > 0);
    assert!(
        refused
            .iter()
            .any(|w| matches!(w.kind, Kind::NewNote { .. })),
        "the full disk refused no new note"
    );
    let db = data.join("portico.sqlite3");
    for w in &refused {
        if let Kind::NewNote { title, .. } = &w.kind {
            assert_eq!(notes_titled(&db, title), 0, "a refused note was stored");
        }
    }
    assert_eq!(integrity(&db), "ok");
    assert_eq!(integrity(&data.join("sessions.sqlite3")), "ok");
    event_lines(&data.join("events"));
    drop(app);
}
