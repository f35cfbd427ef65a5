//! Sessions through the real site: laziness, cookies, concurrency on every store, sharing between
//! servers, and a store that goes away and comes back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{browser, postgres_url, redis_url, session_cookie, token_from, TestApp};

async fn set_key(
    c: &reqwest::Client,
    app: &TestApp,
    token: &str,
    key: &str,
    value: &str,
) -> reqwest::StatusCode {
    c.post(app.url("/demo/session/"))
        .form(&[
            ("csrfmiddlewaretoken", token),
            ("key", key),
            ("value", value),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

async fn keys(c: &reqwest::Client, app: &TestApp) -> serde_json::Value {
    c.get(app.url("/demo/session/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_counts_visits_of_one_session() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    for n in 1..=3 {
        let html = c
            .get(app.url("/demo/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(&format!("<strong id=\"visits\">{n}</strong>")),
            "visit {n}: {html}"
        );
    }
    let other = browser();
    let html = other
        .get(app.url("/demo/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<strong id=\"visits\">1</strong>"));
}

#[tokio::test]
async fn a_request_that_never_writes_the_session_sets_no_cookie() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let resp = c.get(app.url("/demo/session/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        session_cookie(&resp).is_none(),
        "a read-only request created a session"
    );
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({})
    );
}

#[tokio::test]
async fn the_session_cookie_is_httponly_lax_and_scoped() {
    let app = TestApp::spawn(&[
        ("PORTICO_COOKIE_DOMAIN", ".example.test"),
        ("PORTICO_HTTPS", "true"),
    ]);
    let resp = browser().get(app.url("/demo/")).send().await.unwrap();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("sessionid="))
        .expect("session cookie");
    for part in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Secure",
        "Domain=example.test",
    ] {
        assert!(cookie.contains(part), "{part} missing from {cookie}");
    }
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("sessionid=");
    let (order, random) = id.split_at(16);
    assert!(
        order.bytes().all(|b| b.is_ascii_hexdigit()),
        "a creation-time prefix in hex: {id}"
    );
    assert_eq!(random.len(), 43, "then 256 random bits in base64url: {id}");
}

#[tokio::test]
async fn an_unknown_session_id_is_never_adopted() {
    let app = TestApp::spawn(&[]);
    let forged = "F".repeat(43);
    let resp = reqwest::Client::new()
        .get(app.url("/demo/"))
        .header("cookie", format!("sessionid={forged}"))
        .send()
        .await
        .unwrap();
    let issued = session_cookie(&resp).expect("a new session is issued");
    assert_ne!(issued, forged);
}

#[tokio::test]
async fn only_demo_keys_can_be_written_from_outside() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    assert_eq!(set_key(&c, &app, &token, "color", "blue").await, 200);
    assert_eq!(set_key(&c, &app, &token, "../_auth_user", "x").await, 400);
    assert_eq!(set_key(&c, &app, &token, "", "x").await, 400);
    assert_eq!(
        keys(&c, &app).await,
        serde_json::json!({ "demo.color": "blue" })
    );
}

#[tokio::test]
async fn flush_deletes_the_session() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    set_key(&c, &app, &token, "a", "1").await;
    let old = c.get(app.url("/demo/session/")).send().await.unwrap();
    assert_eq!(old.status(), 200);
    let resp = c
        .post(app.url("/demo/session/flush/"))
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let removal = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("sessionid="))
        .expect("the cookie is removed");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert_eq!(keys(&c, &app).await, serde_json::json!({}));
}

/// Room for the 200 keys below: a session holds 64 by default.
const ROOM_FOR_200_KEYS: (&str, &str) = ("PORTICO_SESSION_MAX_KEYS", "1000");

/// Fires 200 concurrent writes of different keys at one session and checks that all landed.
async fn two_hundred_concurrent_writes(app: &TestApp) {
    let c = browser();
    let token = token_from(&c, app, "/demo/").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let url = app.url("/demo/session/");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .form(&[
                    ("csrfmiddlewaretoken", token.as_str()),
                    ("key", &format!("k{i}")),
                    ("value", &i.to_string()),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let all = keys(&c, app).await;
    let map = all.as_object().unwrap();
    for i in 0..200 {
        assert_eq!(
            map.get(&format!("demo.k{i}")),
            Some(&serde_json::json!(i.to_string())),
            "demo.k{i} was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_session_all_land_with_sqlite() {
    two_hundred_concurrent_writes(&TestApp::spawn(&[ROOM_FOR_200_KEYS])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_session_all_land_with_memory() {
    two_hundred_concurrent_writes(&TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", "memory"),
        ROOM_FOR_200_KEYS,
    ]))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_session_all_land_with_redis() {
    two_hundred_concurrent_writes(&TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", &redis_url()),
        ROOM_FOR_200_KEYS,
    ]))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_one_session_all_land_with_postgres() {
    two_hundred_concurrent_writes(&TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", &postgres_url()),
        ROOM_FOR_200_KEYS,
    ]))
    .await;
}

/// Two servers sharing one store (and one secret key) share sessions; a flush on one is seen by
/// the other at once.
async fn two_servers_share_sessions(store: &str) {
    let secret = "ab".repeat(32);
    let a = TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", store),
        ("PORTICO_SECRET_KEY", &secret),
        ("PORTICO_INSTANCE", "a"),
    ]);
    let b = TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", store),
        ("PORTICO_SECRET_KEY", &secret),
        ("PORTICO_INSTANCE", "b"),
    ]);
    let c = browser();
    let token = token_from(&c, &a, "/demo/").await;
    assert_eq!(set_key(&c, &a, &token, "color", "green").await, 200);
    // Cookies are per host, not per port, so the same jar carries the session to b.
    let seen = c.get(b.url("/demo/session/")).send().await.unwrap();
    assert_eq!(seen.headers()["x-portico-instance"], "b");
    assert_eq!(
        seen.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "demo.color": "green" })
    );
    // A token minted by a is accepted by b: the secret lives in the shared session.
    assert_eq!(set_key(&c, &b, &token, "size", "xl").await, 200);
    assert_eq!(
        keys(&c, &a).await,
        serde_json::json!({ "demo.color": "green", "demo.size": "xl" })
    );
    let flushed = c
        .post(b.url("/demo/session/flush/"))
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(flushed.status(), 200);
    assert_eq!(keys(&c, &a).await, serde_json::json!({}));
}

#[tokio::test]
async fn two_servers_share_sessions_through_redis() {
    two_servers_share_sessions(&redis_url()).await;
}

#[tokio::test]
async fn two_servers_share_sessions_through_postgres() {
    two_servers_share_sessions(&postgres_url()).await;
}

#[tokio::test]
async fn a_flushed_session_replayed_by_hand_is_not_restored() {
    let secret = "cd".repeat(32);
    let store = redis_url();
    let a = TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", &store),
        ("PORTICO_SECRET_KEY", &secret),
    ]);
    let b = TestApp::spawn(&[
        ("PORTICO_SESSION_STORE", &store),
        ("PORTICO_SECRET_KEY", &secret),
    ]);
    let c = browser();
    let first = c.get(a.url("/demo/")).send().await.unwrap();
    let id = session_cookie(&first).expect("session");
    let token = common::csrf_token(&first.text().await.unwrap());
    set_key(&c, &a, &token, "k", "v").await;
    c.post(b.url("/demo/session/flush/"))
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .unwrap();
    let replay = reqwest::Client::new()
        .get(a.url("/demo/session/"))
        .header("cookie", format!("sessionid={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({})
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_redis(port: u16) -> Child {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_gives_503_quickly_and_recovery_is_automatic() {
    let port = free_port();
    let mut redis = start_redis(port);
    let app = TestApp::spawn(&[
        (
            "PORTICO_SESSION_STORE",
            &format!("redis://127.0.0.1:{port}/0"),
        ),
        ("PORTICO_SESSION_STORE_TIMEOUT_MS", "1000"),
    ]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    assert_eq!(set_key(&c, &app, &token, "before", "1").await, 200);

    redis.kill().unwrap();
    redis.wait().unwrap();
    let started = Instant::now();
    let resp = c.get(app.url("/demo/session/")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(resp.text().await.unwrap().contains("cannot be reached"));
    // What does not need the session still works.
    let health = c.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let mut redis = start_redis(port);
    // The restarted Redis kept nothing, so the old session is gone; the server itself recovers.
    let mut recovered = false;
    for _ in 0..40 {
        let r = c.get(app.url("/demo/")).send().await.unwrap();
        if r.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the server did not recover after the store came back"
    );
    let token = token_from(&c, &app, "/demo/").await;
    assert_eq!(set_key(&c, &app, &token, "after", "2").await, 200);
    assert_eq!(
        keys(&c, &app).await,
        serde_json::json!({ "demo.after": "2" })
    );
    redis.kill().unwrap();
    let _ = redis.wait();
}
