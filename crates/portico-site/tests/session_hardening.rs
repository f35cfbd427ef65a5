//! The session's own defences through the real site: a login as another user starts a clean
//! session, two session cookies in one request count as none, `__Host-` cookie names under HTTPS,
//! and caps on what one session may hold.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    bare, browser, events, login, register, session_cookie, token_from, TestApp, PASSWORD,
};
use reqwest::{Client, StatusCode};

async fn set_key(c: &Client, app: &TestApp, key: &str, value: &str) -> reqwest::Response {
    let token = token_from(c, app, "/demo/").await;
    c.post(app.url("/demo/session/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("key", key),
            ("value", value),
        ])
        .send()
        .await
        .expect("POST")
}

async fn keys(c: &Client, app: &TestApp) -> serde_json::Value {
    c.get(app.url("/demo/session/"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// The user name /notes/ greets `c` with, or `None` when it is sent to the login page.
async fn who(c: &Client, app: &TestApp) -> Option<String> {
    let r = c.get(app.url("/notes/")).send().await.expect("GET");
    if r.status() != StatusCode::OK {
        return None;
    }
    let html = r.text().await.expect("body");
    ["ada_q7", "bob_q7", "cyd_q7"]
        .into_iter()
        .find(|n| html.contains(n))
        .map(String::from)
}

#[tokio::test]
async fn logging_in_as_another_user_drops_the_first_users_session_data() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    assert_eq!(
        register(&browser(), &app, "bob_q7", PASSWORD)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        register(&c, &app, "ada_q7", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        set_key(&c, &app, "draft", "ada's secret").await.status(),
        200
    );
    assert_eq!(
        keys(&c, &app).await,
        serde_json::json!({ "demo.draft": "ada's secret" })
    );

    let r = login(&c, &app, "bob_q7", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(who(&c, &app).await.as_deref(), Some("bob_q7"));
    assert_eq!(
        keys(&c, &app).await,
        serde_json::json!({}),
        "bob's session still holds what ada left in it"
    );
}

#[tokio::test]
async fn logging_in_again_as_the_same_user_keeps_the_session_data() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    assert_eq!(
        register(&c, &app, "ada_q7", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(set_key(&c, &app, "theme", "dark").await.status(), 200);
    let before = c.get(app.url("/demo/")).send().await.expect("GET");
    let old_id = session_cookie(&before);
    let r = login(&c, &app, "ada_q7", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let new_id = session_cookie(&r).expect("a login gives a new id");
    assert_ne!(Some(new_id), old_id);
    assert_eq!(
        keys(&c, &app).await,
        serde_json::json!({ "demo.theme": "dark" })
    );
}

#[tokio::test]
async fn registering_while_logged_in_drops_the_first_users_session_data() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    assert_eq!(
        register(&c, &app, "ada_q7", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        set_key(&c, &app, "draft", "ada's secret").await.status(),
        200
    );
    let r = register(&c, &app, "cyd_q7", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(who(&c, &app).await.as_deref(), Some("cyd_q7"));
    assert_eq!(keys(&c, &app).await, serde_json::json!({}));
}

/// A sibling sub-domain planted its own session cookie next to the site's: the request carries
/// both. Neither session is used, neither is changed, and the event is logged.
#[tokio::test]
async fn two_session_cookies_in_one_request_count_as_none() {
    let mut app = TestApp::spawn(&[]);
    let victim = browser();
    let r = register(&victim, &app, "ada_q7", PASSWORD).await;
    let victim_id = session_cookie(&r).expect("ada's session");
    assert_eq!(set_key(&victim, &app, "draft", "ada's").await.status(), 200);
    let attacker = browser();
    let r = register(&attacker, &app, "bob_q7", PASSWORD).await;
    let attacker_id = session_cookie(&r).expect("bob's session");

    for cookie in [
        format!("sessionid={attacker_id}; sessionid={victim_id}"),
        format!("sessionid={victim_id}; other=1; sessionid={attacker_id}"),
    ] {
        let notes = bare()
            .get(app.url("/notes/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET");
        assert_eq!(notes.status(), StatusCode::SEE_OTHER, "{cookie}");
        assert!(notes.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/accounts/login/"));

        // A page that writes the session gets a fresh one, never either id.
        let demo = bare()
            .get(app.url("/demo/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET");
        assert_eq!(demo.status(), StatusCode::OK);
        let issued = session_cookie(&demo).expect("a fresh session");
        assert_ne!(issued, victim_id);
        assert_ne!(issued, attacker_id);
    }

    // Both sessions are as they were.
    assert_eq!(who(&victim, &app).await.as_deref(), Some("ada_q7"));
    assert_eq!(who(&attacker, &app).await.as_deref(), Some("bob_q7"));
    assert_eq!(
        keys(&victim, &app).await,
        serde_json::json!({ "demo.draft": "ada's" })
    );

    app.stop();
    let logged = events(&app)
        .iter()
        .filter(|e| e["kind"] == "duplicate_session_cookie")
        .count();
    assert_eq!(logged, 4, "each request with two session cookies is logged");
}

#[tokio::test]
async fn https_sessions_use_a_host_prefixed_cookie() {
    let app = TestApp::spawn(&[("PORTICO_HTTPS", "true")]);
    let r = browser().get(app.url("/demo/")).send().await.expect("GET");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .find(|v| v.contains("HttpOnly"))
        .expect("a session cookie");
    assert!(cookie.starts_with("__Host-sessionid="), "{cookie}");
    for part in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(part), "{part} missing from {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
}

/// Runs `portico serve` with `env` and answers what it wrote to standard error if it exits within
/// 20 seconds; panics if it starts serving instead.
fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = common::temp_dir("refused");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portico"));
    cmd.arg("serve")
        .arg("--bind")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&dir)
        .env("PORTICO_LOG", "warn")
        .env_remove("PORTICO_SESSION_STORE")
        .env_remove("PORTICO_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start portico");
    let stdout = child.stdout.take().expect("piped");
    let served = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("listening on"))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("portico started with {env:?}");
    };
    assert!(
        !served.join().expect("reader"),
        "portico served with {env:?}"
    );
    assert!(!status.success(), "{env:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut err)
        .expect("stderr");
    let _ = std::fs::remove_dir_all(&dir);
    err
}

#[test]
fn a_host_prefixed_cookie_name_that_cannot_hold_is_refused_at_start_up() {
    let err = refused_start(&[
        ("PORTICO_SESSION_COOKIE_NAME", "__Host-sid"),
        ("PORTICO_HTTPS", "true"),
        ("PORTICO_COOKIE_DOMAIN", ".example.test"),
    ]);
    assert!(
        err.contains("__Host-") && err.contains("PORTICO_COOKIE_DOMAIN"),
        "{err}"
    );
    let err = refused_start(&[("PORTICO_SESSION_COOKIE_NAME", "__Host-sid")]);
    assert!(
        err.contains("__Host-") && err.contains("PORTICO_HTTPS"),
        "{err}"
    );
}

#[tokio::test]
async fn a_session_cannot_grow_past_its_byte_cap() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let value = "v".repeat(4000);
    let mut refused = None;
    for i in 0..40 {
        let r = set_key(&c, &app, &format!("k{i}"), &value).await;
        if r.status() != StatusCode::OK {
            let status = r.status();
            let text = r.text().await.expect("body");
            refused = Some((i, status, text));
            break;
        }
    }
    let (i, status, text) = refused.expect("64 KiB of values went in without a refusal");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("Nothing was saved"), "{text}");
    assert!((14..=17).contains(&i), "refused at the {i}th value");
    let held = keys(&c, &app).await;
    let held = held.as_object().expect("object");
    assert_eq!(held.len(), i, "the refused value was stored");
    assert!(!held.contains_key(&format!("demo.k{i}")));
    // A smaller value in place of one that is there still goes in.
    assert_eq!(set_key(&c, &app, "k0", "small").await.status(), 200);
    assert_eq!(keys(&c, &app).await["demo.k0"], "small");
}

#[tokio::test]
async fn a_session_cannot_hold_more_keys_than_its_cap() {
    let app = TestApp::spawn(&[("PORTICO_SESSION_MAX_KEYS", "10")]);
    let c = browser();
    let mut refused_at = None;
    for i in 0..20 {
        let r = set_key(&c, &app, &format!("k{i}"), "x").await;
        if r.status() != StatusCode::OK {
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
            refused_at = Some(i);
            break;
        }
    }
    let i = refused_at.expect("20 keys went into a session capped at 10");
    let held = keys(&c, &app).await;
    assert_eq!(held.as_object().expect("object").len(), i);
    assert!(i < 10, "{i} demo keys besides the site's own");
    assert!(held.get(format!("demo.k{i}")).is_none());
}
