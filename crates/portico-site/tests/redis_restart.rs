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
        // Every visitor signs up from this one address.
        ("PORTICO_REGISTER_PER_IP", "1000000"),
        // Each visitor keeps every key it writes, to read them all back afterwards.
        ("PORTICO_SESSION_MAX_KEYS", "100000"),
        ("PORTICO_SESSION_MAX_BYTES", "100000000"),
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
        tokio::time::sleep(Duration::from_millis(2500)).await;
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

/// The fields of the form in a page, as a browser would send them.
fn form_fields(page: &str, form_id: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("no form {form_id} in {page}"));
    let form = &page[start
        ..page[start..]
            .find("</form>")
            .map_or(page.len(), |e| start + e)];
    let mut fields = Vec::new();
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    for (i, _) in form.match_indices('<') {
        let tag = &form[i..i + form[i..].find('>').unwrap_or(0) + 1];
        if tag.starts_with("<input") {
            let unchecked = tag.contains("type=\"checkbox\"") && !tag.contains(" checked");
            if let (Some(n), Some(v), false) = (attr(tag, "name"), attr(tag, "value"), unchecked) {
                fields.push((n, v));
            }
        } else if tag.starts_with("<textarea") {
            let rest = &form[i + tag.len()..];
            let text = &rest[..rest.find("</textarea>").unwrap_or(0)];
            // A browser drops the newline right after the opening tag.
            let text = text.strip_prefix('\n').unwrap_or(text);
            if let Some(n) = attr(tag, "name") {
                fields.push((n, text.to_string()));
            }
        }
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_posted_while_redis_is_down_is_given_back_and_can_be_sent_again() {
    let port = free_port();
    let mut redis = Redis::start(port, &temp_dir("redis"));
    let app = TestApp::spawn(&[
        (
            "PORTICO_SESSION_STORE",
            &format!("redis://127.0.0.1:{port}/0"),
        ),
        ("PORTICO_LOG", "off"),
        // Every visitor signs up from this one address.
        ("PORTICO_REGISTER_PER_IP", "1000000"),
        // Each visitor keeps every key it writes, to read them all back afterwards.
        ("PORTICO_SESSION_MAX_KEYS", "100000"),
        ("PORTICO_SESSION_MAX_BYTES", "100000000"),
    ]);
    let visitor = sign_up(&app, &unique("kept")).await;
    let title = unique("kept-title-");
    let body = faults::body_text(&title, 200);
    redis.kill();

    let note = Kind::NewNote {
        title: title.clone(),
        body: body.clone(),
    };
    let refused = send(&app, 0, &visitor, note).await;
    assert_clear_refusal(&refused);
    let page = faults::unescape(&refused.body);
    assert!(page.contains("action=\"/notes/new/\""), "{page}");
    let kept = form_fields(&page, "kept");
    assert!(
        !kept.iter().any(|(n, _)| n == "csrfmiddlewaretoken"),
        "the old token is not given back"
    );

    redis.restart();
    // "Send again": the kept fields, without a token, come back as the note form to confirm.
    let again = visitor
        .client
        .post(app.url("/notes/new/"))
        .form(&kept)
        .send()
        .await
        .expect("send again");
    assert_eq!(
        again.status(),
        403,
        "a post without a token is confirmed first"
    );
    let form = faults::unescape(&again.text().await.expect("the note form"));
    let confirmed = form_fields(&form, "note-form");
    assert!(
        confirmed.contains(&("title".into(), title.clone())),
        "{form}"
    );
    let confirm = visitor
        .client
        .post(app.url("/notes/new/"))
        .form(&confirmed)
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirm.status(), 303, "the confirmed note is stored");
    let id: i64 = confirm.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/notes/")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (status, shown) = faults::note_page(&app, &visitor, id).await;
    assert_eq!(status, 200);
    assert!(shown.contains(&title) && shown.contains(&body));
    drop(app);
}
