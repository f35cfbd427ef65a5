//! PostgreSQL, holding both the notes and the sessions, is shut down under load and started
//! again: requests answer a 503 within 2 s of the loss instead of hanging, the site serves again
//! within 1 s of the database coming back without being restarted, and every note and session
//! write it acknowledged is in the database afterwards.
//!
//! The shared server on 5432 serves tests running alongside, so this one runs a cluster of its
//! own: `initdb` into a fresh folder as the `postgres` user, on a free port, stopped with
//! `pg_ctl -m immediate` (the server processes quit at once, as in a crash: whatever was committed
//! comes back from the write-ahead log). `fsync` is off, which only matters for a machine that
//! loses power, not for a server that is killed.

mod common;
mod faults;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{temp_dir, TestApp};
use faults::{
    assert_clear_refusal, body_text, free_port, send, sign_up, unique, Kind, Visitor, Write,
};

const VISITORS: usize = 12;

/// The newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL's server programs in /usr/lib/postgresql (scripts/services installs them)",
        )
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: install postgresql (scripts/services)")
}

/// Runs a PostgreSQL program as the `postgres` user (the server refuses to run as root).
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    cmd
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private PostgreSQL cluster, stopped and removed when dropped.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn create() -> Cluster {
        let bin = pg_bin();
        let dir = temp_dir("pg");
        let owner = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .expect("run id");
        let uid: u32 = String::from_utf8_lossy(&owner.stdout)
            .trim()
            .parse()
            .expect("a user named postgres (the postgresql package creates it)");
        std::os::unix::fs::chown(&dir, Some(uid), None).expect("give the folder to postgres");
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
        };
        run(
            as_postgres(&cluster.bin.join("initdb"))
                .arg("-D")
                .arg(cluster.data())
                .args(["-U", "postgres", "--auth=trust", "-N", "-E", "UTF8"]),
            "initdb",
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-w", "-t", "30", "-l"])
                .arg(self.dir.join("log"))
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// Stops every server process at once, as a crash would.
    fn stop_now(&self) {
        run(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop",
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One visitor creates notes and writes session keys until `stop`.
async fn visit(app: &TestApp, index: usize, visitor: &Visitor, stop: &AtomicBool) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let marker = unique(&format!("v{index}n{n}x"));
        let note = Kind::NewNote {
            title: marker.clone(),
            body: body_text(&marker, 300),
        };
        writes.push(send(app, index, visitor, note).await);
        let key = Kind::SessionKey {
            key: format!("k{n}"),
            value: marker,
        };
        writes.push(send(app, index, visitor, key).await);
        // Paced, so every visitor writes throughout each phase.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_answers_503_quickly_recovers_and_keeps_every_acknowledged_write(
) {
    let cluster = Cluster::create();
    let url = cluster.url();
    let app = TestApp::spawn(&[
        ("PORTICO_DATABASE_URL", url.as_str()),
        ("PORTICO_SESSION_STORE", url.as_str()),
        ("PORTICO_LOG", "off"),
        // Every visitor signs up from this one address.
        ("PORTICO_REGISTER_PER_IP", "1000000"),
        // Each visitor keeps every key it writes, to read them all back afterwards.
        ("PORTICO_SESSION_MAX_KEYS", "100000"),
        ("PORTICO_SESSION_MAX_BYTES", "100000000"),
    ]);
    let mut visitors = Vec::new();
    for i in 0..VISITORS {
        visitors.push(sign_up(&app, &unique(&format!("pg{i}x"))).await);
    }

    let stop = AtomicBool::new(false);
    let loads = visitors
        .iter()
        .enumerate()
        .map(|(i, v)| visit(&app, i, v, &stop));
    let fault = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lost = Instant::now();
        let cluster = &cluster;
        tokio::task::block_in_place(|| cluster.stop_now());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        tokio::task::block_in_place(|| cluster.start());
        let back = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        (lost, back)
    };
    let (writes, (lost, back)) = tokio::join!(futures_util::future::join_all(loads), fault);
    let writes: Vec<Write> = writes.into_iter().flatten().collect();
    let done = |w: &Write| w.sent + w.took;

    let during: Vec<&Write> = writes
        .iter()
        .filter(|w| w.sent >= lost && done(w) < back)
        .collect();
    eprintln!(
        "postgres: {} writes, {} during the outage, {} acknowledged",
        writes.len(),
        during.len(),
        writes.iter().filter(|w| w.acknowledged()).count()
    );
    for w in &writes {
        if w.sent < back && done(w) > lost {
            assert!(
                done(w) < lost.max(w.sent) + Duration::from_secs(2),
                "a request took {:?} to answer while PostgreSQL was down: {w:?}",
                w.took
            );
        }
    }
    assert!(
        during.len() >= VISITORS / 2,
        "only {} requests were answered while PostgreSQL was down",
        during.len()
    );
    for w in &during {
        assert_clear_refusal(w);
    }
    let settled = back + Duration::from_secs(1);
    let later: Vec<&Write> = writes.iter().filter(|w| w.sent >= settled).collect();
    assert!(!later.is_empty(), "no request a second after the restart");
    for w in &later {
        assert!(
            w.acknowledged(),
            "a write a second after PostgreSQL came back was not served: {w:?}"
        );
    }

    let checked = faults::assert_acknowledged_writes_kept(&app, &visitors, &writes).await;
    assert!(checked > 0);
    drop(app);
}
