//! The security event log of the real site: drive failed logins, a CSRF refusal and a captcha
//! failure, stop the server gracefully, and read what landed in the file.

mod common;

use common::{browser, token_from, TestApp, CAPTCHA};
use serde_json::Value;

const ATTACKER: &str = "203.0.113.9";

async fn login_attempt(
    c: &reqwest::Client,
    app: &TestApp,
    user: &str,
    password: &str,
    captcha: &str,
) -> u16 {
    let token = token_from(c, app, "/accounts/login/").await;
    c.get(app.url("/captcha/"))
        .header("x-forwarded-for", ATTACKER)
        .send()
        .await
        .unwrap();
    c.post(app.url("/accounts/login/"))
        .header("x-forwarded-for", ATTACKER)
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", user),
            ("password", password),
            ("captcha", captcha),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn read_events(app: &TestApp) -> Vec<Value> {
    let dir = app.data_dir.join("events");
    let mut events = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the events folder exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("events-") && name.ends_with(".jsonl"),
            "{name}"
        );
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            events.push(
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line}: {e}")),
            );
        }
    }
    events
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test]
async fn security_events_land_in_the_log_file() {
    let mut app = TestApp::spawn(&[
        ("PORTICO_TRUST_X_FORWARDED_FOR", "true"),
        ("PORTICO_INSTANCE", "main"),
    ]);
    let c = browser();

    // An account to guess at.
    let token = token_from(&c, &app, "/accounts/register/").await;
    c.get(app.url("/captcha/")).send().await.unwrap();
    let r = c
        .post(app.url("/accounts/register/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "victim"),
            ("password", "correct horse"),
            ("password2", "correct horse"),
            ("captcha", CAPTCHA),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session_id = common::session_cookie(&r).expect("a logged-in session");

    let attacker = browser();
    for guess in ["123456", "password", "letmein"] {
        assert_eq!(
            login_attempt(&attacker, &app, "victim", guess, CAPTCHA).await,
            400
        );
    }
    assert_eq!(
        login_attempt(&attacker, &app, "victim", "whatever1", "wrong").await,
        400
    );
    let forged = attacker
        .post(app.url("/accounts/login/"))
        .header("origin", "http://evil.test")
        .header("x-forwarded-for", ATTACKER)
        .form(&[("username", "victim"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    app.stop();
    let events = read_events(&app);

    for e in &events {
        assert_eq!(e["v"], 1);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        assert!(e["ts_ms"].as_i64().unwrap() > 1_600_000_000_000);
        assert_eq!(e["instance"], "main");
        assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()));
        let line = e.to_string();
        assert!(
            !line.contains(&session_id),
            "a session id leaked into the log: {line}"
        );
        assert!(
            !line.contains("correct horse") && !line.contains("letmein"),
            "a password leaked: {line}"
        );
    }

    let fails = of_kind(&events, "login_fail");
    let bad_credentials: Vec<_> = fails
        .iter()
        .filter(|e| e["reason"] == "bad_credentials")
        .collect();
    assert_eq!(bad_credentials.len(), 3, "{fails:?}");
    for e in &bad_credentials {
        assert_eq!(e["client_ip"], ATTACKER);
        assert_eq!(e["account"], "victim");
        assert_eq!(e["path"], "/accounts/login/");
        assert_eq!(e["method"], "POST");
        assert!(e["session_hash"].as_str().is_some_and(|h| h.len() == 24));
    }
    assert!(fails.iter().any(|e| e["reason"] == "captcha"), "{fails:?}");

    let captcha_fail = of_kind(&events, "captcha_fail");
    assert_eq!(captcha_fail.len(), 1, "{captcha_fail:?}");
    assert_eq!(captcha_fail[0]["reason"], "wrong");
    assert_eq!(captcha_fail[0]["captcha_mode"], "latin");
    assert!(of_kind(&events, "captcha_ok").len() >= 4);
    assert!(of_kind(&events, "captcha_issued").len() >= 5);

    let csrf = of_kind(&events, "csrf_reject");
    assert_eq!(csrf.len(), 1, "{csrf:?}");
    assert_eq!(csrf[0]["reason"], "bad_origin");
    assert_eq!(csrf[0]["origin"], "http://evil.test");
    assert_eq!(csrf[0]["status"], 403);

    let registered = of_kind(&events, "register");
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["account"], "victim");

    let requests = of_kind(&events, "request");
    assert!(requests.len() >= 12, "{}", requests.len());
    assert!(requests
        .iter()
        .all(|e| e["latency_ms"].as_f64().is_some() && e["status"].as_u64().is_some()));
    assert!(requests
        .iter()
        .any(|e| e["path"] == "/accounts/login/" && e["status"] == 403));
}

#[tokio::test]
async fn a_site_with_the_log_off_writes_no_events() {
    let mut app = TestApp::spawn(&[("PORTICO_EVENTS", "false")]);
    browser()
        .get(app.url("/accounts/login/"))
        .send()
        .await
        .unwrap();
    app.stop();
    assert!(!app.data_dir.join("events").exists());
}
