//! Redis, the session store, is killed under load and started again: requests that need the
//! session answer the 503 page within 2 s of the loss instead of hanging, the site serves again
//! within 1 s of Redis coming back without being restarted, and every session write it answered
//! 200 is in Redis afterwards.
//!
//! The test runs a Redis of its own on a free port (the shared one on 6379 serves other tests),
//! writing its append-only file with `appendfsync always` into a fresh folder: a write Redis
//! acknowledged survives the kill, so every write the site acknowledged must be there after the
//! restart.

mod common;
mod faults;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{temp_dir, TestApp};
use faults::{assert_clear_refusal, free_port, send, sign_up, unique, Kind, Visitor, Write};

const VISITORS: usize = 16;

/// A private redis-server, killed when dropped.
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start(port: u16, dir: &Path) -> Redis {
        let mut redis = Redis {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.restart();
        redis
    }

    /// Starts the server (again) on the same port and folder, and waits until it listens.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services installs it)");
        self.child = Some(child);
        assert!(
            faults::wait_for_port(self.port, Duration::from_secs(5)),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// SIGKILL: no shutdown, no last save.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill redis-server");
            c.wait().expect("reap redis-server");
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One visitor writes session keys until `stop`.
async fn visit(app: &TestApp, index: usize, visitor: &Visitor, stop: &AtomicBool) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = Kind::SessionKey {
            key: format!("k{n}"),
            value: unique(&format!("v{index}n{n}x")),
        };
        writes.push(send(app, index, visitor, key).await);
        // Paced, so every visitor writes throughout each phase.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_answers_503_quickly_recovers_and_keeps_every_acknowledged_write() {
    let port = free_port();
    let mut redis = Redis::start(port, &temp_dir("redis"));
    let app = TestApp::spawn(&[
        (
            "PORTICO_SESSION_STORE",
            &format!("redis://127.0.0.1:{port}/0"),
        ),
        ("PORTICO_LOG", "off"),
    ]);
    let mut visitors = Vec::new();
    for i in 0..VISITORS {
        visitors.push(sign_up(&app, &unique(&format!("redis{i}x"))).await);
    }

    let stop = AtomicBool::new(false);
    let loads = visitors
        .iter()
        .enumerate()
        .map(|(i, v)| visit(&app, i, v, &stop));
    let fault = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lost = Instant::now();
        redis.kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        redis.restart();
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
        "redis: {} writes, {} during the outage, {} acknowledged",
        writes.len(),
        during.len(),
        writes.iter().filter(|w| w.acknowledged()).count()
    );
    for w in &writes {
        if w.sent < back && done(w) > lost {
            assert!(
                done(w) < lost.max(w.sent) + Duration::from_secs(2),
                "a request took {:?} to answer while Redis was down: {w:?}",
                w.took
            );
        }
    }
    assert!(
        during.len() >= VISITORS,
        "only {} requests were answered while Redis was down: they waited on each other",
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
            "a write a second after Redis came back was not served: {w:?}"
        );
    }

    let checked = faults::assert_acknowledged_writes_kept(&app, &visitors, &writes).await;
    assert!(checked > 0);
    drop(app);
}
