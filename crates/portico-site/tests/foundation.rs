//! The request/response basics of the real site over HTTP: parameters, cookies, error pages, the
//! CLI's safety checks.

mod common;

use common::{browser, csrf_token, token_from, TestApp};

#[tokio::test]
async fn demo_reads_get_and_getlist_and_remembers_the_name_in_a_cookie() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let resp = c
        .post(app.url("/demo/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "Ada Lovelace"),
            ("hobby", "reading"),
            ("hobby", "travel"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with("username=Ada%20Lovelace") && c.contains("Max-Age=")),
        "{set:?}"
    );
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<strong id=\"result-username\">Ada Lovelace</strong>"),
        "{html}"
    );
    assert!(html.contains("<li>reading</li><li>travel</li>"), "{html}");
    let again = c
        .get(app.url("/demo/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        again.contains("value=\"Ada Lovelace\""),
        "the name was not pre-filled from the cookie"
    );
}

#[tokio::test]
async fn multipart_forms_are_read_like_urlencoded_ones() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let form = reqwest::multipart::Form::new()
        .text("csrfmiddlewaretoken", token)
        .text("username", "grace")
        .text("hobby", "music")
        .text("hobby", "sports");
    let html = c
        .post(app.url("/demo/"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<li>music</li><li>sports</li>"), "{html}");
}

#[tokio::test]
async fn the_demo_escapes_what_it_echoes() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let html = c
        .post(app.url("/demo/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "<script>alert(1)</script>"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn broken_percent_encoding_is_a_400_that_names_the_field() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let resp = c
        .post(app.url("/demo/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrfmiddlewaretoken={token}&username=ab%zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("username") && html.contains("percent-encoding"),
        "{html}"
    );
    let resp = c.get(app.url("/captcha/?mode=%zz")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn invalid_utf8_is_a_400_that_names_the_field() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let resp = c
        .post(app.url("/demo/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrfmiddlewaretoken={token}&bio=%FF%FE"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.unwrap();
    assert!(html.contains("bio") && html.contains("UTF-8"), "{html}");
}

#[tokio::test]
async fn more_than_a_thousand_fields_is_a_400() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let mut body = format!("csrfmiddlewaretoken={token}");
    for i in 0..1001 {
        body.push_str(&format!("&f{i}=x"));
    }
    let resp = c
        .post(app.url("/demo/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("more than 1000 fields"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_writes_nothing() {
    let app = TestApp::spawn(&[("PORTICO_BODY_LIMIT", "2048")]);
    let c = browser();
    let token = token_from(&c, &app, "/demo/").await;
    let big = "v".repeat(4096);
    let resp = c
        .post(app.url("/demo/session/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("key", "big"),
            ("value", big.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("larger than"));
    let stored: serde_json::Value = c
        .get(app.url("/demo/session/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, serde_json::json!({}));
}

#[tokio::test]
async fn errors_are_pages_a_person_can_read() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let resp = c.get(app.url("/no/such/page/")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("Page not found") && html.contains("nothing at this address"),
        "{html}"
    );
    let resp = c.get(app.url("/demo/session/flush/")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.text().await.unwrap().contains("Method not allowed"));
    let resp = c
        .get(app.url("/no/such/page/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], 404);
}

#[tokio::test]
async fn healthz_answers_and_sets_no_cookie() {
    let app = TestApp::spawn(&[]);
    let resp = browser().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(resp.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn the_secret_key_is_created_private_on_first_run() {
    let app = TestApp::spawn(&[]);
    let path = app.data_dir.join("secret_key");
    let meta = std::fs::metadata(&path).expect("secret key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 128);
}

#[tokio::test]
async fn a_session_id_from_another_site_is_not_adopted() {
    // Two sites with separate stores on one host: cookies are per host, so b sees a's id.
    let a = TestApp::spawn(&[]);
    let b = TestApp::spawn(&[]);
    let c = browser();
    let html = c
        .get(a.url("/demo/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_token(&html);
    let resp = c
        .post(b.url("/demo/session/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("key", "x"),
            ("value", "y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[test]
fn captcha_test_mode_is_refused_on_a_public_address() {
    let dir = common::temp_dir("bind");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(&dir)
        .env("PORTICO_CAPTCHA_TEST_ANSWER", "abcd")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("non-loopback"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_route_table_shows_csrf_status() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("routes")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/accounts/logout/") && text.contains("checked"),
        "{text}"
    );
}

#[tokio::test]
async fn pages_refuse_framing_and_sniffing_and_stay_out_of_caches() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let login = c.get(app.url("/accounts/login/")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let h = login.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cross-origin-opener-policy"], "same-origin");
    // The form carries this visitor's CSRF token: no cache may keep it or give it to another.
    assert_eq!(h["cache-control"], "private, no-store");
    assert_eq!(h["vary"], "Cookie");

    let missing = c.get(app.url("/no-such-page/")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-frame-options"], "DENY");

    // The stylesheet reads no session: it stays cacheable, and still is never sniffed.
    let css = c.get(app.url("/static/site.css")).send().await.unwrap();
    assert_eq!(css.headers()["cache-control"], "public, max-age=86400");
    assert!(css.headers().get("vary").is_none());
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");
}
