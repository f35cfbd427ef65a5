//! The CSRF layer against the requests an attacker or a browser would send.
//!
//! A small site is served over real HTTP on a loopback port: a form page, a handler that writes a
//! session key, login (new session id) and logout (flush). Each refusal test checks the status and
//! that the write did not happen; those about visitors without a session check that no session
//! was stored and no cookie set. The clock is injected, so expiry needs no sleeping.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portico::clock::Clock;
use portico::csrf::{CsrfConfig, CsrfLayer, Resubmitted};
use portico::params::Params;
use portico::secret::SecretKey;
use portico::session::{MemoryStore, Session, SessionConfig, SessionLayer};
use portico::template::{Page, Templates};
use tower::ServiceBuilder;

struct Site {
    base: String,
    clock: Clock,
    store: Arc<MemoryStore>,
}

/// Every test site signs its CSRF cookies with this key, as servers sharing a secret key do.
fn site_key() -> SecretKey {
    SecretKey::from_bytes([42; 64])
}

async fn form_page(page: Page, Resubmitted(kept): Resubmitted) -> Response {
    let note = kept
        .as_ref()
        .and_then(|f| f.get("note"))
        .unwrap_or("")
        .to_string();
    let ctx = minijinja::context! { note };
    match page.render("form.html", ctx).await {
        Ok(html) => html.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn write(session: Session, params: Params) -> Response {
    let note = params.get("note").unwrap_or("").to_string();
    match session.insert("written", &note).await {
        Ok(()) => Html("saved").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn filtered_page(page: Page) -> Response {
    match page.render("filtered.html", minijinja::context! {}).await {
        Ok(html) => html.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn state(session: Session) -> Response {
    let written: Option<String> = session.get("written").await.unwrap_or(None);
    Json(serde_json::json!({ "written": written })).into_response()
}

async fn login(session: Session) -> Response {
    match session.cycle_id().await {
        Ok(()) => {
            let _ = session.insert("user", "ada").await;
            Html("in").into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(session: Session) -> Response {
    match session.flush().await {
        Ok(()) => Html("out").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn hook() -> &'static str {
    "hooked"
}

/// A form page that counts visits in the session, as a page that writes the session on GET does.
async fn counter_page(page: Page, session: Session, kept: Resubmitted) -> Response {
    let visits: u64 = session.get("visits").await.unwrap_or(None).unwrap_or(0) + 1;
    if let Err(e) = session.insert("visits", &visits).await {
        return e.into_response();
    }
    form_page(page, kept).await
}

async fn spawn(https: bool, trusted: &[&str]) -> Site {
    let clock = Clock::manual(1_700_000_000);
    let mut env = minijinja::Environment::new();
    env.add_template(
        "form.html",
        "<form method=post>{{ csrf_input() }}<input name=note value=\"{{ note }}\"></form><p id=t>{{ csrf_token() }}</p><p id=e>{{ csrf_error or '' }}</p>",
    )
    .unwrap();
    env.add_template(
        "filtered.html",
        "<p id=u>{{ csrf_token()|upper }}</p><form method=post>{{ csrf_input() }}</form>",
    )
    .unwrap();
    let templates = Templates::new(env);
    let csrf = CsrfConfig {
        https,
        trusted_origins: trusted.iter().map(|s| s.to_string()).collect(),
        clock: clock.clone(),
        ..CsrfConfig::default()
    };
    let store = Arc::new(MemoryStore::default());
    let sessions = SessionLayer::new(
        store.clone(),
        SessionConfig {
            clock: clock.clone(),
            ..SessionConfig::default()
        },
    );
    let routes = Router::new()
        .route("/form/", get(form_page).post(write))
        .route("/counter/", get(counter_page).post(write))
        .route("/filtered/", get(filtered_page))
        .route("/state/", get(state))
        .route("/login/", post(login))
        .route("/logout/", post(logout))
        .route("/hooks/ping/", post(hook));
    // The layers wrap the whole router, so a refused POST can be re-routed to the page's GET.
    let service = ServiceBuilder::new()
        .layer(Extension(templates))
        .layer(sessions)
        .layer(
            CsrfLayer::new(csrf)
                .with_secret_key(&site_key())
                .exempt("/hooks/{name}/"),
        )
        .service(routes);
    let app = Router::new().fallback_service(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Site {
        base: format!("http://{addr}"),
        clock,
        store,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

fn token_in(html: &str) -> String {
    let start = html.find("value=\"").unwrap() + 7;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

impl Site {
    fn url(&self, p: &str) -> String {
        format!("{}{}", self.base, p)
    }

    fn origin(&self) -> String {
        self.base.clone()
    }

    /// The body of a GET of `path`.
    async fn page(&self, c: &reqwest::Client, path: &str) -> String {
        c.get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn token(&self, c: &reqwest::Client) -> String {
        token_in(&self.page(c, "/form/").await)
    }

    async fn post_form(&self, c: &reqwest::Client, fields: &[(&str, &str)]) -> reqwest::Response {
        c.post(self.url("/form/"))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// A form post with a valid token and one extra header, as a browser on some page sends it.
    async fn post_with_header(
        &self,
        c: &reqwest::Client,
        name: &str,
        value: &str,
        token: &str,
        note: &str,
    ) -> reqwest::Response {
        c.post(self.url("/form/"))
            .header(name, value)
            .form(&[("csrfmiddlewaretoken", token), ("note", note)])
            .send()
            .await
            .unwrap()
    }

    async fn written(&self, c: &reqwest::Client) -> Option<String> {
        let v: serde_json::Value = c
            .get(self.url("/state/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["written"].as_str().map(String::from)
    }
}

async fn assert_refused(site: &Site, c: &reqwest::Client, resp: reqwest::Response, words: &str) {
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(words),
        "refusal page should say {words:?}: {body}"
    );
    assert_eq!(
        site.written(c).await,
        None,
        "a refused request wrote to the session"
    );
}

#[tokio::test]
async fn same_origin_form_post_passes() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = c
        .post(site.url("/form/"))
        .header("origin", site.origin())
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrfmiddlewaretoken", t.as_str()), ("note", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("hello"));
}

/// A first visit's page is rendered before the session has a secret; the token goes in after.
/// A page that filters its token must still come out with real tokens, never the stand-in.
#[tokio::test]
async fn a_first_visit_with_a_filtered_token_gets_working_tokens() {
    let site = spawn(false, &[]).await;
    let c = client();
    let html = site.page(&c, "/filtered/").await;
    assert!(
        !html.to_lowercase().contains("portico-csrf-"),
        "a placeholder leaked: {html}"
    );
    let t = token_in(&html);
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", t.as_str()), ("note", "filtered")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("filtered"));
}

#[tokio::test]
async fn header_token_from_fetch_passes() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = c
        .post(site.url("/form/?note=from-js"))
        .header("x-csrftoken", t)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("from-js"));
}

#[tokio::test]
async fn every_page_shows_a_different_token() {
    let site = spawn(false, &[]).await;
    let c = client();
    let a = site.token(&c).await;
    let b = site.token(&c).await;
    assert_ne!(a, b);
}

#[tokio::test]
async fn two_tabs_with_different_tokens_both_submit() {
    let site = spawn(false, &[]).await;
    let c = client();
    let tab1 = site.token(&c).await;
    let tab2 = site.token(&c).await;
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &tab2), ("note", "two")])
            .await
            .status(),
        200
    );
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &tab1), ("note", "one")])
            .await
            .status(),
        200
    );
    assert_eq!(site.written(&c).await.as_deref(), Some("one"));
}

#[tokio::test]
async fn missing_token_is_refused_and_form_comes_back_with_input() {
    let site = spawn(false, &[]).await;
    let c = client();
    site.token(&c).await;
    let resp = site
        .post_form(&c, &[("note", "keep me"), ("password", "hunter22")])
        .await;
    assert_eq!(resp.status(), 403);
    let body = resp.text().await.unwrap();
    assert!(body.contains("value=\"keep me\""), "input not kept: {body}");
    assert!(!body.contains("hunter22"), "a password was echoed back");
    assert!(body.contains("without its security token"), "{body}");
    // The re-shown form carries a fresh token that works.
    let fresh = token_in(&body);
    assert_eq!(site.written(&c).await, None);
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &fresh), ("note", "keep me")])
            .await
            .status(),
        200
    );
    assert_eq!(site.written(&c).await.as_deref(), Some("keep me"));
}

#[tokio::test]
async fn garbage_token_is_refused() {
    let site = spawn(false, &[]).await;
    let c = client();
    site.token(&c).await;
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", "not-a-token-at-all"), ("note", "x")],
        )
        .await;
    assert_refused(&site, &c, resp, "damaged").await;
}

#[tokio::test]
async fn truncated_token_is_refused() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", &t[..t.len() - 4]), ("note", "x")],
        )
        .await;
    assert_refused(&site, &c, resp, "damaged").await;
}

#[tokio::test]
async fn token_from_another_session_is_refused() {
    let site = spawn(false, &[]).await;
    let attacker = client();
    let copied = site.token(&attacker).await;
    let victim = client();
    site.token(&victim).await;
    let resp = site
        .post_form(
            &victim,
            &[("csrfmiddlewaretoken", &copied), ("note", "forged")],
        )
        .await;
    assert_refused(&site, &victim, resp, "another session").await;
    assert_eq!(site.written(&attacker).await, None);
}

#[tokio::test]
async fn token_issued_before_login_is_refused_after_login() {
    let site = spawn(false, &[]).await;
    let c = client();
    let before = site.token(&c).await;
    let resp = c
        .post(site.url("/login/"))
        .form(&[("csrfmiddlewaretoken", before.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = site
        .post_form(&c, &[("csrfmiddlewaretoken", &before), ("note", "stale")])
        .await;
    assert_refused(&site, &c, resp, "before you logged in or out").await;
}

#[tokio::test]
async fn token_issued_before_logout_is_refused_after_logout() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    c.post(site.url("/login/"))
        .form(&[("csrfmiddlewaretoken", t.as_str())])
        .send()
        .await
        .unwrap();
    let before_logout = site.token(&c).await;
    let out = site.token(&c).await;
    let resp = c
        .post(site.url("/logout/"))
        .form(&[("csrfmiddlewaretoken", out.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", &before_logout), ("note", "stale")],
        )
        .await;
    assert_refused(&site, &c, resp, "before you logged in or out").await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    site.clock.advance(12 * 3600 + 1);
    let resp = site
        .post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "late")])
        .await;
    assert_refused(&site, &c, resp, "expired").await;
}

#[tokio::test]
async fn token_just_inside_its_lifetime_passes() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    site.clock.advance(12 * 3600 - 1);
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "in time")])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn cross_site_fetch_metadata_is_refused_even_with_a_valid_token() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_with_header(&c, "sec-fetch-site", "cross-site", &t, "x")
        .await;
    assert_refused(&site, &c, resp, "another web site").await;
}

#[tokio::test]
async fn foreign_origin_is_refused_even_with_a_valid_token() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_with_header(&c, "origin", "http://evil.test", &t, "x")
        .await;
    assert_refused(&site, &c, resp, "not part of this site").await;
}

#[tokio::test]
async fn null_origin_is_refused() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site.post_with_header(&c, "origin", "null", &t, "x").await;
    assert_refused(&site, &c, resp, "not part of this site").await;
}

#[tokio::test]
async fn https_post_with_foreign_referer_and_no_origin_is_refused() {
    let site = spawn(true, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_with_header(&c, "referer", "https://evil.test/page", &t, "x")
        .await;
    assert_refused(&site, &c, resp, "which page it came from").await;
}

#[tokio::test]
async fn https_post_with_same_origin_referer_passes() {
    let site = spawn(true, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let own = site.base.replace("http://", "https://");
    let resp = site
        .post_with_header(&c, "referer", &format!("{own}/form/"), &t, "ok")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("ok"));
}

#[tokio::test]
async fn trusted_origin_passes() {
    let site = spawn(false, &["https://admin.example.test"]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_with_header(&c, "origin", "https://admin.example.test", &t, "trusted")
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("trusted"));
}

#[tokio::test]
async fn trusted_origin_passes_although_its_browser_says_cross_site() {
    let site = spawn(false, &["https://admin.example.test"]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = c
        .post(site.url("/form/"))
        .header("origin", "https://admin.example.test")
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrfmiddlewaretoken", t.as_str()), ("note", "partner")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(site.written(&c).await.as_deref(), Some("partner"));
}

#[tokio::test]
async fn cross_site_from_an_untrusted_origin_is_refused_when_others_are_trusted() {
    let site = spawn(false, &["https://admin.example.test"]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = c
        .post(site.url("/form/"))
        .header("origin", "https://evil.test")
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrfmiddlewaretoken", t.as_str()), ("note", "x")])
        .send()
        .await
        .unwrap();
    assert_refused(&site, &c, resp, "another web site").await;
}

#[tokio::test]
async fn safe_methods_are_never_checked() {
    let site = spawn(false, &[]).await;
    let c = client();
    for m in [
        reqwest::Method::GET,
        reqwest::Method::HEAD,
        reqwest::Method::OPTIONS,
    ] {
        let resp = c
            .request(m.clone(), site.url("/state/"))
            .header("origin", "http://evil.test")
            .send()
            .await
            .unwrap();
        assert_ne!(resp.status(), 403, "{m} was checked");
    }
}

#[tokio::test]
async fn unsafe_methods_other_than_post_are_checked() {
    let site = spawn(false, &[]).await;
    let c = client();
    for m in [
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        let resp = c
            .request(m.clone(), site.url("/form/"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{m} was not checked");
    }
}

#[tokio::test]
async fn exempt_route_takes_posts_without_a_token() {
    let site = spawn(false, &[]).await;
    let resp = client()
        .post(site.url("/hooks/ping/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hooked");
}

// ---------------------------------------------------------------- visitors without a session

/// Every `Set-Cookie` header of a response.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The value a `Set-Cookie` header gives its cookie.
fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_string()
}

/// A client without a cookie jar: the test says which cookies each request carries.
fn bare() -> reqwest::Client {
    reqwest::Client::new()
}

impl Site {
    /// A first visit's form page with a bare client: its secret cookie's value and its token.
    async fn first_visit(&self) -> (String, String) {
        let resp = bare().get(self.url("/form/")).send().await.unwrap();
        let cookie = set_cookies(&resp)
            .into_iter()
            .find(|c| c.starts_with("csrfsecret="))
            .expect("a secret cookie");
        (cookie_value(&cookie), token_in(&resp.text().await.unwrap()))
    }

    /// A form post from a bare client carrying exactly `cookie` (a `Cookie` header value).
    async fn post_with_cookie(&self, cookie: &str, token: &str, note: &str) -> reqwest::Response {
        let mut req = bare()
            .post(self.url("/form/"))
            .form(&[("csrfmiddlewaretoken", token), ("note", note)]);
        if !cookie.is_empty() {
            req = req.header("cookie", cookie);
        }
        req.send().await.unwrap()
    }
}

/// A refusal of a visitor without a session: 403 with `words`, no cookie set or deleted, and no
/// session stored.
async fn assert_refused_without_trace(site: &Site, resp: reqwest::Response, words: &str) -> String {
    assert_eq!(resp.status(), 403);
    assert_eq!(
        set_cookies(&resp),
        Vec::<String>::new(),
        "a refusal set a cookie"
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(words),
        "refusal page should say {words:?}: {body}"
    );
    assert!(site.store.is_empty(), "a refusal stored a session");
    body
}

#[tokio::test]
async fn a_first_visit_sets_only_the_secret_cookie_and_stores_nothing() {
    let site = spawn(false, &[]).await;
    let resp = bare().get(site.url("/form/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("csrfsecret="), "{c}");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=54000"] {
        assert!(c.contains(part), "{part} missing from {c}");
    }
    assert!(!c.contains("Domain") && !c.contains("Secure"), "{c}");
    // The page carries this visitor's token: no cache may keep it for another.
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert_eq!(resp.headers()["vary"], "Cookie");
    assert!(site.store.is_empty(), "a form alone stored a session");
}

#[tokio::test]
async fn the_first_pages_token_passes_and_the_session_it_starts_takes_the_secret() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = site
        .post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "first")])
        .await;
    assert_eq!(resp.status(), 200);
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("sessionid="), "{cookies:?}");
    assert_eq!(site.store.len(), 1);
    // A tab opened before the session began still posts: the session took the cookie's secret.
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "second")])
            .await
            .status(),
        200
    );
    assert_eq!(site.written(&c).await.as_deref(), Some("second"));
    // So do the pages of that session.
    let later = site.token(&c).await;
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &later), ("note", "third")])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn when_an_anonymous_session_expires_the_cookie_still_carries_its_pages() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    site.post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "first")])
        .await;
    // The session of a visitor who is not logged in idles out after an hour.
    site.clock.advance(3600 + 1);
    assert_eq!(site.written(&c).await, None, "the session is gone");
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &t), ("note", "again")])
            .await
            .status(),
        200
    );
    assert_eq!(site.written(&c).await.as_deref(), Some("again"));
}

#[tokio::test]
async fn a_token_from_another_browsers_page_is_refused_with_this_browsers_cookie() {
    let site = spawn(false, &[]).await;
    let (_, token_of_a) = site.first_visit().await;
    let (cookie_of_b, _) = site.first_visit().await;
    let resp = site
        .post_with_cookie(&format!("csrfsecret={cookie_of_b}"), &token_of_a, "forged")
        .await;
    assert_refused_without_trace(&site, resp, "another session").await;
}

#[tokio::test]
async fn a_changed_secret_cookie_is_refused() {
    let site = spawn(false, &[]).await;
    let (cookie, token) = site.first_visit().await;
    let mut chars: Vec<char> = cookie.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    let changed: String = chars.into_iter().collect();
    let resp = site
        .post_with_cookie(&format!("csrfsecret={changed}"), &token, "forged")
        .await;
    assert_refused_without_trace(&site, resp, "damaged or was not made by this site").await;
}

#[tokio::test]
async fn a_secret_cookie_under_another_name_is_refused() {
    // Two sites signing with one key, one over HTTP, one over HTTPS.
    let plain = spawn(false, &[]).await;
    let secure = spawn(true, &[]).await;
    let (cookie, token) = plain.first_visit().await;
    let own = secure.base.replace("http://", "https://");
    let resp = bare()
        .post(secure.url("/form/"))
        .header("cookie", format!("__Host-csrfsecret={cookie}"))
        .header("referer", format!("{own}/form/"))
        .form(&[("csrfmiddlewaretoken", token.as_str()), ("note", "renamed")])
        .send()
        .await
        .unwrap();
    assert_refused_without_trace(&secure, resp, "damaged or was not made by this site").await;
    // Under its own name the same value is good on a site with that key.
    let other = spawn(false, &[]).await;
    let resp = other
        .post_with_cookie(&format!("csrfsecret={cookie}"), &token, "right name")
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_old_secret_cookie_is_refused_even_with_a_fresh_token() {
    let site = spawn(false, &[]).await;
    let (first, _) = site.first_visit().await;
    // 14 h later a page renews the cookie and mints a token from the same secret.
    site.clock.advance(14 * 3600);
    let resp = bare()
        .get(site.url("/form/"))
        .header("cookie", format!("csrfsecret={first}"))
        .send()
        .await
        .unwrap();
    let renewed = cookie_value(
        &set_cookies(&resp)
            .into_iter()
            .find(|c| c.starts_with("csrfsecret="))
            .expect("an old cookie is renewed"),
    );
    let fresh = token_in(&resp.text().await.unwrap());
    site.clock.advance(3600 + 1);
    // The first cookie, 15 h and a second old, no longer counts, whatever token comes with it.
    let resp = site
        .post_with_cookie(&format!("csrfsecret={first}"), &fresh, "old cookie")
        .await;
    assert_refused_without_trace(&site, resp, "security cookie has expired").await;
    let resp = site
        .post_with_cookie(&format!("csrfsecret={renewed}"), &fresh, "renewed")
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_page_renews_an_old_secret_cookie_so_its_tokens_live_their_full_lifetime() {
    let site = spawn(false, &[]).await;
    let c = client();
    site.token(&c).await;
    site.clock.advance(14 * 3600);
    let late = site.token(&c).await;
    // The first cookie would be 16 h old now; the renewed one is 2 h old.
    site.clock.advance(2 * 3600);
    assert_eq!(
        site.post_form(&c, &[("csrfmiddlewaretoken", &late), ("note", "late")])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn no_secret_cookie_at_all_is_refused_as_missing_and_the_form_comes_back() {
    let site = spawn(false, &[]).await;
    let (_, token) = site.first_visit().await;
    let resp = bare()
        .post(site.url("/form/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("note", "keep me"),
            ("password", "hunter22"),
        ])
        .send()
        .await
        .unwrap();
    let body = assert_refused_without_trace(&site, resp, "security cookie is missing").await;
    assert!(body.contains("value=\"keep me\""), "input not kept: {body}");
    assert!(!body.contains("hunter22"), "a password was echoed back");
    // No secret to mint from and none may be set: the form shows no token rather than a
    // useless one.
    assert_eq!(token_in(&body), "");
}

#[tokio::test]
async fn a_refused_cross_site_post_sets_no_cookie_starts_no_session_and_echoes_nothing() {
    let site = spawn(false, &[]).await;
    let resp = bare()
        .post(site.url("/form/"))
        .header("sec-fetch-site", "cross-site")
        .header("origin", "http://evil.test")
        .form(&[("note", "from-evil"), ("next", "/evil/")])
        .send()
        .await
        .unwrap();
    let body = assert_refused_without_trace(&site, resp, "another web site").await;
    assert!(
        !body.contains("from-evil"),
        "another site's fields were shown as this site's form: {body}"
    );
}

#[tokio::test]
async fn a_refused_post_never_replaces_the_visitors_session_cookie() {
    let site = spawn(false, &[]).await;
    let c = client();
    let t = site.token(&c).await;
    let resp = c
        .post(site.url("/login/"))
        .form(&[("csrfmiddlewaretoken", t.as_str())])
        .send()
        .await
        .unwrap();
    let sid = cookie_value(
        &set_cookies(&resp)
            .into_iter()
            .find(|c| c.starts_with("sessionid="))
            .unwrap(),
    );
    // The logged-in session has no CSRF secret yet: showing the form again would make one.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "http://evil.test")],
        vec![],
    ] {
        let mut req = bare()
            .post(site.url("/form/"))
            .header("cookie", format!("sessionid={sid}"))
            .form(&[("csrfmiddlewaretoken", "forged"), ("note", "x")]);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(set_cookies(&resp), Vec::<String>::new());
    }
    assert_eq!(site.store.len(), 1);
    let still: serde_json::Value = bare()
        .get(site.url("/state/"))
        .header("cookie", format!("sessionid={sid}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(still["written"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_refused_form_whose_page_writes_the_session_starts_no_session() {
    let site = spawn(false, &[]).await;
    let resp = bare()
        .post(site.url("/counter/"))
        .form(&[("csrfmiddlewaretoken", "forged"), ("note", "kept")])
        .send()
        .await
        .unwrap();
    let body = assert_refused_without_trace(&site, resp, "damaged").await;
    assert!(body.contains("value=\"kept\""), "{body}");
}

#[tokio::test]
async fn login_deletes_the_secret_cookie_and_a_logout_does_not_bring_it_back() {
    let site = spawn(false, &[]).await;
    let c = client();
    let before_login = site.token(&c).await;
    let resp = c
        .post(site.url("/login/"))
        .form(&[("csrfmiddlewaretoken", before_login.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gone = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("csrfsecret="))
        .expect("login deletes the secret cookie");
    assert!(gone.contains("Max-Age=0"), "{gone}");
    let out = site.token(&c).await;
    let resp = c
        .post(site.url("/logout/"))
        .form(&[("csrfmiddlewaretoken", out.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // After logout the visitor has neither session nor cookie: the pre-login token is refused...
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", &before_login), ("note", "stale")],
        )
        .await;
    assert_refused(&site, &c, resp, "before you logged in or out").await;
    // ...and so it is once a new page has given them a new cookie.
    site.token(&c).await;
    let resp = site
        .post_form(
            &c,
            &[("csrfmiddlewaretoken", &before_login), ("note", "stale")],
        )
        .await;
    assert_refused(&site, &c, resp, "another session").await;
}
