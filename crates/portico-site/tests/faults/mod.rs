//! What the fault tests share: visitors that sign up and then write notes and session keys while
//! something underneath fails, and a record of every answer, so that afterwards each write the
//! site acknowledged can be read back and each one it refused can be checked for a clear 503.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use crate::common::{browser, register, token_from, TestApp};

/// The password of every visitor.
pub use crate::common::PASSWORD;

/// What the session layer's 503 page says.
pub const SESSION_UNAVAILABLE: &str = "Your session cannot be reached right now";

/// A visitor with an account, logged in, holding a CSRF token of their session.
pub struct Visitor {
    /// The browser (its cookie jar holds the session).
    pub client: Client,
    /// The account name.
    pub name: String,
    /// A token of the visitor's session, good for every form of it.
    pub token: String,
}

/// Signs up `name` (which logs in) and takes a token from the new-note form.
pub async fn sign_up(app: &TestApp, name: &str) -> Visitor {
    let client = browser();
    let r = register(&client, app, name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signing up {name}");
    let token = token_from(&client, app, "/notes/new/").await;
    Visitor {
        client,
        name: name.to_string(),
        token,
    }
}

/// A name no earlier run used (a shared database keeps the accounts of earlier runs).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:012x}", rand::random::<u64>() >> 16)
}

/// `n` letters of a note body that only the test's own writes contain.
pub fn body_text(marker: &str, n: usize) -> String {
    let mut body = String::with_capacity(n + marker.len());
    body.push_str(marker);
    while body.len() < n {
        body.push_str(" lorem ipsum");
    }
    body
}

/// Which write a [`Write`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `POST /notes/new/` with this title and body.
    NewNote { title: String, body: String },
    /// `POST /notes/{id}/edit/` setting this title and body.
    EditNote {
        id: i64,
        title: String,
        body: String,
    },
    /// `POST /demo/session/` setting `demo.<key>` to `value`.
    SessionKey { key: String, value: String },
}

/// One write and how the site answered it.
#[derive(Debug, Clone)]
pub struct Write {
    /// The visitor's index.
    pub visitor: usize,
    /// What was sent.
    pub kind: Kind,
    /// When it was sent.
    pub sent: Instant,
    /// How long the answer took.
    pub took: Duration,
    /// The status, or `None` when the request itself failed (a socket error, a timeout).
    pub status: Option<StatusCode>,
    /// Where a redirect pointed.
    pub location: Option<String>,
    /// The body of an answer that was not a redirect.
    pub body: String,
}

impl Write {
    /// Whether the site said the write was done.
    pub fn acknowledged(&self) -> bool {
        match self.kind {
            Kind::NewNote { .. } | Kind::EditNote { .. } => {
                self.status == Some(StatusCode::SEE_OTHER)
            }
            Kind::SessionKey { .. } => self.status == Some(StatusCode::OK),
        }
    }

    /// The id of the note a creation redirected to.
    pub fn note_id(&self) -> Option<i64> {
        let loc = self.location.as_deref()?;
        loc.strip_prefix("/notes/")?.strip_suffix('/')?.parse().ok()
    }
}

/// Sends `kind` for `visitor` and records the answer.
pub async fn send(app: &TestApp, index: usize, visitor: &Visitor, kind: Kind) -> Write {
    let sent = Instant::now();
    let token = visitor.token.as_str();
    let request = match &kind {
        Kind::NewNote { title, body } => visitor.client.post(app.url("/notes/new/")).form(&[
            ("csrfmiddlewaretoken", token),
            ("title", title.as_str()),
            ("body", body.as_str()),
            ("tags", "work"),
        ]),
        Kind::EditNote { id, title, body } => visitor
            .client
            .post(app.url(&format!("/notes/{id}/edit/")))
            .form(&[
                ("csrfmiddlewaretoken", token),
                ("title", title.as_str()),
                ("body", body.as_str()),
                ("tags", "home"),
            ]),
        Kind::SessionKey { key, value } => visitor.client.post(app.url("/demo/session/")).form(&[
            ("csrfmiddlewaretoken", token),
            ("key", key.as_str()),
            ("value", value.as_str()),
        ]),
    };
    let answer = request.timeout(Duration::from_secs(10)).send().await;
    let (status, location, body) = match answer {
        Ok(r) => {
            let status = r.status();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r.text().await.unwrap_or_default();
            (Some(status), location, body)
        }
        Err(_) => (None, None, String::new()),
    };
    Write {
        visitor: index,
        kind,
        sent,
        took: sent.elapsed(),
        status,
        location,
        body,
    }
}

/// The template engine writes `/` in values as `&#x2f;`; browsers read it back as `/`.
pub fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/").replace("&quot;", "\"")
}

/// Checks that a refused write was refused the way a person can act on: status 503, the page
/// saying why, and for a note the text the person typed still in the form.
pub fn assert_clear_refusal(w: &Write) {
    assert_eq!(
        w.status,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "neither acknowledged nor a 503: {w:?}"
    );
    let page = unescape(&w.body);
    match &w.kind {
        Kind::NewNote { title, body } | Kind::EditNote { title, body, .. } => {
            if page.contains(SESSION_UNAVAILABLE) {
                // Not even the token could be checked: the error page gives the fields back.
                assert!(
                    page.contains("id=\"kept\""),
                    "the 503 page keeps the form: {page}"
                );
            } else {
                assert!(
                    page.contains("id=\"unavailable\""),
                    "the 503 note form says why: {page}"
                );
            }
            assert!(
                page.contains(&format!("value=\"{title}\"")),
                "the title is kept: {page}"
            );
            assert!(page.contains(body.as_str()), "the text is kept: {page}");
        }
        Kind::SessionKey { .. } => {
            assert!(
                page.contains(SESSION_UNAVAILABLE),
                "the 503 page says the session cannot be reached: {page}"
            );
        }
    }
}

/// The `demo.*` keys of the visitor's session, as the site reads them.
pub async fn session_keys(app: &TestApp, visitor: &Visitor) -> serde_json::Value {
    let r = visitor
        .client
        .get(app.url("/demo/session/"))
        .send()
        .await
        .expect("GET /demo/session/");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "reading {}'s session",
        visitor.name
    );
    r.json().await.expect("session keys as JSON")
}

/// The note page of `id` as `visitor` sees it (status and unescaped page).
pub async fn note_page(app: &TestApp, visitor: &Visitor, id: i64) -> (StatusCode, String) {
    let r = visitor
        .client
        .get(app.url(&format!("/notes/{id}/")))
        .send()
        .await
        .expect("GET a note");
    let status = r.status();
    (status, unescape(&r.text().await.unwrap_or_default()))
}

/// Checks, after the fault, that every acknowledged write is there to be read: each created note
/// with its title and text (or those of its last acknowledged edit), each session key with its
/// value. Answers how many writes were checked.
pub async fn assert_acknowledged_writes_kept(
    app: &TestApp,
    visitors: &[Visitor],
    writes: &[Write],
) -> usize {
    use std::collections::HashMap;
    // The content each acknowledged note must have now: its last acknowledged write.
    let mut notes: HashMap<(usize, i64), (String, String)> = HashMap::new();
    let mut keys: HashMap<usize, serde_json::Map<String, serde_json::Value>> = HashMap::new();
    let mut ordered: Vec<&Write> = writes.iter().filter(|w| w.acknowledged()).collect();
    ordered.sort_by_key(|w| w.sent);
    for w in &ordered {
        match &w.kind {
            Kind::NewNote { title, body } => {
                let id = w.note_id().expect("a creation redirects to its note");
                notes.insert((w.visitor, id), (title.clone(), body.clone()));
            }
            Kind::EditNote { id, title, body } => {
                notes.insert((w.visitor, *id), (title.clone(), body.clone()));
            }
            Kind::SessionKey { key, value } => {
                keys.entry(w.visitor).or_default().insert(
                    format!("demo.{key}"),
                    serde_json::Value::String(value.clone()),
                );
            }
        }
    }
    for ((v, id), (title, body)) in &notes {
        let (status, page) = note_page(app, &visitors[*v], *id).await;
        assert_eq!(status, StatusCode::OK, "acknowledged note {id} is gone");
        assert!(
            page.contains(title.as_str()),
            "note {id} lost its acknowledged title {title}"
        );
        assert!(
            page.contains(body.as_str()),
            "note {id} lost its acknowledged text"
        );
    }
    for (v, expected) in &keys {
        let stored = session_keys(app, &visitors[*v]).await;
        for (k, value) in expected {
            assert_eq!(
                stored.get(k),
                Some(value),
                "acknowledged session key {k} of {} is gone",
                visitors[*v].name
            );
        }
    }
    ordered.len()
}

/// Keeps trying `what` every 50 ms until it answers true or `limit` passes; answers how long it
/// took, or `None`.
pub async fn within<F, Fut>(limit: Duration, mut what: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if what().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
