//! The CSRF layer against the requests an attacker or a browser would send.
//!
//! A small site is served over real HTTP on a loopback port: a form page, a handler that writes a
//! session key, login (new session id) and logout (flush). Each refusal test checks the status and
//! that the write did not happen. The clock is injected, so expiry needs no sleeping.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portico::clock::Clock;
use portico::csrf::{CsrfConfig, CsrfLayer, Resubmitted};
use portico::params::Params;
use portico::session::{MemoryStore, Session, SessionConfig, SessionLayer};
use portico::template::{Page, Templates};
use tower::ServiceBuilder;

struct Site {
    base: String,
    clock: Clock,
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
    let sessions = SessionLayer::with_clock(
        Arc::new(MemoryStore::default()),
        SessionConfig::default(),
        clock.clone(),
    );
    let routes = Router::new()
        .route("/form/", get(form_page).post(write))
        .route("/filtered/", get(filtered_page))
        .route("/state/", get(state))
        .route("/login/", post(login))
        .route("/logout/", post(logout))
        .route("/hooks/ping/", post(hook));
    // The layers wrap the whole router, so a refused POST can be re-routed to the page's GET.
    let service = ServiceBuilder::new()
        .layer(Extension(templates))
        .layer(Extension(Arc::new(csrf.clone())))
        .layer(sessions)
        .layer(CsrfLayer::new(csrf).exempt("/hooks/{name}/"))
        .service(routes);
    let app = Router::new().fallback_service(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Site {
        base: format!("http://{addr}"),
        clock,
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
