//! Starts the real `portico` binary on a free loopback port and talks HTTP to it.
//!
//! Each [`TestApp`] has its own data folder (SQLite databases, secret key, event log) unless the
//! test points it elsewhere; the process is killed when the value is dropped.

// Each test file is a crate of its own that uses part of this module.
#![allow(unreachable_pub)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The answer every captcha has in the test servers.
pub const CAPTCHA: &str = "test-captcha";

/// A running site.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data folder.
    pub data_dir: PathBuf,
    child: Child,
    owns_dir: bool,
}

/// A fresh folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portico-test-{tag}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("PORTICO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

/// The Redis server the tests use.
pub fn redis_url() -> String {
    std::env::var("PORTICO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

impl TestApp {
    /// Starts a site with captcha test mode and a fresh data folder, plus `env`.
    pub fn spawn(env: &[(&str, &str)]) -> TestApp {
        let dir = temp_dir("site");
        let mut app = Self::spawn_in(dir, env);
        app.owns_dir = true;
        app
    }

    /// Starts a site on `data_dir` (shared between instances when a test wants that).
    pub fn spawn_in(data_dir: PathBuf, env: &[(&str, &str)]) -> TestApp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portico"));
        cmd.arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .env("PORTICO_CAPTCHA_TEST_ANSWER", CAPTCHA)
            .env("PORTICO_LOG", "warn")
            .env_remove("PORTICO_DATABASE_URL")
            .env_remove("PORTICO_SESSION_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start portico");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait().ok();
                    panic!("portico exited before listening: {status:?}");
                }
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestApp {
            base,
            data_dir,
            child,
            owns_dir: false,
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The `host:port` the site listens on.
    pub fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the server to exit; answers its exit status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the site with SIGTERM and waits for it (graceful shutdown flushes the event log).
    pub fn stop(&mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// A client with its own cookie jar that does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The first `csrfmiddlewaretoken` value in a page.
pub fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html
        .find(marker)
        .map(|i| i + marker.len())
        .expect("page has a CSRF token");
    let end = html[start..].find('"').expect("token attribute ends") + start;
    html[start..end].to_string()
}

/// GETs `path` and answers the page's CSRF token.
pub async fn token_from(client: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let html = client
        .get(app.url(path))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    csrf_token(&html)
}

/// The session cookie value in a response's `Set-Cookie` headers, if any.
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sessionid="))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim_start_matches("sessionid=")
                .to_string()
        })
}

/// The password of the tests' accounts.
pub const PASSWORD: &str = "correct horse battery";

/// The one message for a failed login.
pub const GENERIC: &str = "The username or password is not right.";

/// A client without a cookie jar that does not follow redirects: it sends exactly the `Cookie`
/// header a test gives it.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Fetches a captcha image, which gives the session its pending challenge (answered by
/// [`CAPTCHA`] in the test servers).
pub async fn new_captcha(client: &reqwest::Client, app: &TestApp) {
    let r = client
        .get(app.url("/captcha/"))
        .send()
        .await
        .expect("GET /captcha/");
    assert_eq!(r.status(), reqwest::StatusCode::OK, "the captcha image");
    assert_eq!(r.headers()["content-type"], "image/png");
    r.bytes().await.expect("captcha body");
}

/// The CSRF token of the form at `path`, with a captcha image fetched after it: what a post of
/// the login or registration form needs.
pub async fn ready(client: &reqwest::Client, app: &TestApp, path: &str) -> String {
    let token = token_from(client, app, path).await;
    new_captcha(client, app).await;
    token
}

/// The fields of a registration post: `password` in both password fields, the test captcha.
pub fn register_fields<'a>(
    token: &'a str,
    username: &'a str,
    password: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("csrfmiddlewaretoken", token),
        ("username", username),
        ("password", password),
        ("password2", password),
        ("captcha", CAPTCHA),
    ]
}

/// The fields of a login post with the test captcha.
pub fn login_fields<'a>(
    token: &'a str,
    username: &'a str,
    password: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrfmiddlewaretoken", token),
        ("username", username),
        ("password", password),
        ("captcha", CAPTCHA),
    ]
}

/// Registers `username` with `password` through the form, with a fresh token and captcha.
pub async fn register(
    client: &reqwest::Client,
    app: &TestApp,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let token = ready(client, app, "/accounts/register/").await;
    client
        .post(app.url("/accounts/register/"))
        .form(&register_fields(&token, username, password))
        .send()
        .await
        .expect("POST /accounts/register/")
}

/// Registers `username` (with [`PASSWORD`]) in a browser of its own, so the test's browsers stay
/// anonymous; answers the registration's response.
pub async fn create_account(app: &TestApp, username: &str) -> reqwest::Response {
    let r = register(&browser(), app, username, PASSWORD).await;
    assert_eq!(
        r.status(),
        reqwest::StatusCode::SEE_OTHER,
        "registering {username}"
    );
    r
}

/// Logs in through the form with a fresh token and captcha, plus `extra` fields.
pub async fn login(
    client: &reqwest::Client,
    app: &TestApp,
    username: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let token = ready(client, app, "/accounts/login/").await;
    let mut fields = login_fields(&token, username, password);
    fields.extend_from_slice(extra);
    client
        .post(app.url("/accounts/login/"))
        .form(&fields)
        .send()
        .await
        .expect("POST /accounts/login/")
}

/// The `Location` header of a response, or blank.
pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Every `Set-Cookie` header of a response.
pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The text between `start` and the next `end` after it.
pub fn between(html: &str, start: &str, end: &str) -> Option<String> {
    let from = html.find(start)? + start.len();
    let to = html[from..].find(end)? + from;
    Some(html[from..to].trim().to_string())
}

/// The form-wide message of a page, if it shows one.
pub fn form_error(html: &str) -> Option<String> {
    between(html, "id=\"form-error\">", "</div>")
}

/// The message next to `field`, if any.
pub fn field_error(html: &str, field: &str) -> Option<String> {
    between(html, &format!("id=\"{field}-error\">"), "</p>")
}

/// Every event the stopped server wrote, as JSON objects.
pub fn events(app: &TestApp) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.join("events")).expect("events folder") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("event file");
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("event line")),
        );
    }
    out
}
