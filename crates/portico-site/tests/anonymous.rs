//! Visitors who are not logged in, against the real binary: a form costs no stored session,
//! refused requests change nothing, and the sessions visitors do get (a captcha's answer) go after
//! a short idle timeout and are swept by the server itself.
//!
//! Each test counts what the session store holds before and after (rows of the SQLite store's
//! table, keys of a Redis server of the test's own), so "nothing was written" is measured, not
//! assumed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    bare, browser, create_account, csrf_token, login_fields, session_cookie, set_cookies, TestApp,
    PASSWORD,
};
use reqwest::{Client, Response, StatusCode};

/// What the session store of a test site holds.
enum Store {
    Sqlite,
    /// A Redis server on this port, started for the test alone.
    Redis(u16),
}

impl Store {
    /// How many sessions the store holds.
    async fn sessions(&self, app: &TestApp) -> i64 {
        self.sessions_holding(app, None).await
    }

    /// How many sessions hold `key` (all of them when `None`).
    async fn sessions_holding(&self, app: &TestApp, key: Option<&str>) -> i64 {
        match self {
            Store::Sqlite => {
                let url = format!(
                    "sqlite://{}?mode=ro",
                    app.data_dir.join("sessions.sqlite3").display()
                );
                let pool = sqlx::SqlitePool::connect(&url)
                    .await
                    .expect("open sessions");
                let pattern = match key {
                    Some(k) => format!("%\"{k}\"%"),
                    None => "%".to_string(),
                };
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM portico_session_records WHERE data LIKE ?1",
                )
                .bind(pattern)
                .fetch_one(&pool)
                .await
                .expect("count sessions");
                pool.close().await;
                n
            }
            Store::Redis(port) => {
                let keys = redis_cli(*port, &["--scan", "--pattern", "portico:session:*"]);
                match key {
                    None => keys.lines().filter(|l| !l.is_empty()).count() as i64,
                    Some(k) => keys
                        .lines()
                        .filter(|l| !l.is_empty())
                        .filter(|l| {
                            redis_cli(*port, &["HEXISTS", l, &format!("d:{k}")]).trim() == "1"
                        })
                        .count() as i64,
                }
            }
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli is installed");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis server of the test's own, so that counting its keys counts only this test's sessions.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Redis(child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A first visit to the login form: it sets the CSRF cookie and nothing else, the store is
/// untouched, and a post with that page's token gets past CSRF to the captcha check.
async fn first_visit_writes_nothing(app: &TestApp, store: &Store) {
    let before = store.sessions(app).await;
    let c = browser();
    let form = c.get(app.url("/accounts/login/")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let cookies = set_cookies(&form);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("csrfsecret="), "{cookies:?}");
    assert!(cookies[0].contains("HttpOnly"), "{cookies:?}");
    let token = csrf_token(&form.text().await.unwrap());
    assert_eq!(store.sessions(app).await, before, "a form stored a session");

    // No captcha was fetched: CSRF lets the post through and the captcha check answers it.
    let r = c
        .post(app.url("/accounts/login/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "nobody"),
            ("password", PASSWORD),
            ("captcha", "abcd"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Please type the characters from the picture."),
        "{html}"
    );
    assert_eq!(store.sessions(app).await, before);

    // The captcha's answer starts a session, which takes the form's secret: the same page's token
    // logs in, and login ends the cookie.
    let (user, pw) = ("first-visitor", PASSWORD);
    register(app, user).await;
    let image = c.get(app.url("/captcha/")).send().await.unwrap();
    assert!(session_cookie(&image).is_some());
    image.bytes().await.unwrap();
    let r = c
        .post(app.url("/accounts/login/"))
        .form(&login_fields(&token, user, pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("csrfsecret=;") && c.contains("Max-Age=0")),
        "login deletes the secret cookie: {:?}",
        set_cookies(&r)
    );
}

/// Registers `username`; answers the logged-in session's id.
async fn register(app: &TestApp, username: &str) -> String {
    session_cookie(&create_account(app, username).await).expect("registering logs in")
}

/// Whether a request carrying only this session cookie is logged in.
async fn logged_in(app: &TestApp, sid: &str) -> bool {
    let r = bare()
        .get(app.url("/notes/"))
        .header("cookie", format!("sessionid={sid}"))
        .send()
        .await
        .unwrap();
    r.status() == StatusCode::OK
}

#[tokio::test]
async fn a_first_visit_to_the_login_form_writes_nothing_to_the_sqlite_store() {
    let app = TestApp::spawn(&[]);
    first_visit_writes_nothing(&app, &Store::Sqlite).await;
}

#[tokio::test]
async fn a_first_visit_to_the_login_form_writes_nothing_to_the_redis_store() {
    let redis = Redis::start();
    let app = TestApp::spawn(&[("PORTICO_SESSION_STORE", &redis.url())]);
    first_visit_writes_nothing(&app, &Store::Redis(redis.1)).await;
}

/// Another site's login form, posted by the victim's browser.
async fn cross_site_login(app: &TestApp, cookie: Option<&str>) -> Response {
    let mut req = bare()
        .post(app.url("/accounts/login/"))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "http://evil.test")
        .form(&[
            ("username", "attacker"),
            ("password", "attackers-password"),
            ("next", "/notes/new/?title=evil"),
        ]);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_cross_site_login_post_with_the_victims_cookie_changes_nothing() {
    let app = TestApp::spawn(&[]);
    let sid = register(&app, "victim").await;
    let before = Store::Sqlite.sessions(&app).await;
    let r = cross_site_login(&app, Some(&format!("sessionid={sid}"))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        set_cookies(&r),
        Vec::<String>::new(),
        "a refusal set a cookie"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("another web site"), "{html}");
    assert!(
        !html.contains("evil"),
        "another site's fields were shown: {html}"
    );
    assert_eq!(Store::Sqlite.sessions(&app).await, before);
    assert!(logged_in(&app, &sid).await, "the victim was logged out");
}

#[tokio::test]
async fn a_cross_site_login_post_without_cookies_starts_no_session() {
    // What browsers send: the SameSite=Lax session cookie stays home on a cross-site post.
    let app = TestApp::spawn(&[]);
    let sid = register(&app, "victim").await;
    let before = Store::Sqlite.sessions(&app).await;
    let r = cross_site_login(&app, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        set_cookies(&r),
        Vec::<String>::new(),
        "a refusal set a cookie"
    );
    assert_eq!(Store::Sqlite.sessions(&app).await, before);
    assert!(logged_in(&app, &sid).await);
}

#[tokio::test]
async fn a_refused_login_without_a_session_shows_the_form_again_and_stores_nothing() {
    let app = TestApp::spawn(&[]);
    let other = browser();
    let token = common::token_from(&other, &app, "/accounts/login/").await;
    let before = Store::Sqlite.sessions(&app).await;
    // Another browser's token, no cookie at all.
    let r = Client::new()
        .post(app.url("/accounts/login/"))
        .form(&login_fields(&token, "sophie", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(set_cookies(&r), Vec::<String>::new());
    let html = r.text().await.unwrap();
    assert!(html.contains("security cookie is missing"), "{html}");
    assert!(
        html.contains("name=\"username\" value=\"sophie\""),
        "{html}"
    );
    assert!(!html.contains(PASSWORD));
    assert_eq!(Store::Sqlite.sessions(&app).await, before);
}

#[tokio::test]
async fn anonymous_sessions_are_swept_by_the_server_and_logged_in_ones_stay() {
    let app = TestApp::spawn(&[("PORTICO_ANON_SESSION_IDLE_SECS", "2")]);
    let user_sid = register(&app, "stayer").await;
    let c = browser();
    c.get(app.url("/captcha/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let store = Store::Sqlite;
    assert_eq!(store.sessions(&app).await, 2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.sessions(&app).await > 1 {
        assert!(
            Instant::now() < deadline,
            "the captcha's session was never swept"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(store.sessions_holding(&app, Some("_auth_user")).await, 1);
    assert!(logged_in(&app, &user_sid).await);
}

#[tokio::test]
async fn a_logged_in_session_gets_the_long_timeout_and_an_anonymous_one_the_short() {
    let app = TestApp::spawn(&[]);
    let image = browser().get(app.url("/captcha/")).send().await.unwrap();
    let anon = set_cookies(&image)
        .into_iter()
        .find(|c| c.starts_with("sessionid="))
        .expect("the captcha starts a session");
    assert!(anon.contains("Max-Age=3600"), "{anon}");
    let registered = create_account(&app, "longlived").await;
    let user = set_cookies(&registered)
        .into_iter()
        .find(|c| c.starts_with("sessionid="))
        .expect("registering logs in");
    assert!(
        user.contains(&format!("Max-Age={}", 14 * 24 * 3600)),
        "{user}"
    );
}
