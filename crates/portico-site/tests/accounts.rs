//! Accounts end to end against the real binary: registration, login with its captcha, limits and
//! "remember", logout, and what the session store ends up holding.

mod common;

use std::collections::HashMap;

use common::{
    bare, browser, create_account, events, field_error, form_error, location, login, new_captcha,
    register, session_cookie, set_cookies, token_from, TestApp, CAPTCHA, GENERIC, PASSWORD,
};
use portico::captcha::{Mode, Style};
use reqwest::{Client, Response, StatusCode};

async fn post(c: &Client, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> Response {
    c.post(app.url(path))
        .form(fields)
        .send()
        .await
        .expect("POST")
}

/// Whether `c` is logged in: /notes/ answers its page rather than sending it to the login page.
async fn logged_in(c: &Client, app: &TestApp) -> bool {
    let r = c.get(app.url("/notes/")).send().await.expect("GET /notes/");
    match r.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert!(location(&r).starts_with("/accounts/login/"), "{r:?}");
            false
        }
        s => panic!("unexpected status {s} for /notes/"),
    }
}

/// Whether a bare request carrying only this session cookie is logged in.
async fn cookie_logged_in(app: &TestApp, sid: &str) -> bool {
    let r = bare()
        .get(app.url("/notes/"))
        .header("cookie", format!("sessionid={sid}"))
        .send()
        .await
        .expect("GET /notes/");
    r.status() == StatusCode::OK
}

fn count(events: &[serde_json::Value], kind: &str, reason: Option<&str>) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == kind && reason.is_none_or(|r| e["reason"] == r))
        .count()
}

#[tokio::test]
async fn register_logs_the_new_user_in() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let before = c
        .get(app.url("/accounts/register/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(before.status(), StatusCode::OK);
    let r = register(&c, &app, "ada", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/");
    assert!(session_cookie(&r).is_some(), "login gives a new session id");

    let page = c.get(app.url("/notes/")).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("body").contains("ada"));

    // The account really exists: another browser can log in with it.
    let other = browser();
    let r = login(&other, &app, "ada", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(logged_in(&other, &app).await);
}

#[tokio::test]
async fn a_taken_username_is_a_form_error_with_the_input_kept() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "grace").await;

    let c = browser();
    let r = register(&c, &app, "grace", "another password 1").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    let msg = field_error(&html, "username").expect("message next to the username");
    assert!(msg.contains("taken"), "{msg}");
    assert!(html.contains("name=\"username\" value=\"grace\""));
    assert!(
        !html.contains("another password 1"),
        "passwords are never echoed"
    );
    assert!(!logged_in(&c, &app).await);

    // The first owner's password still works; the second one's never did.
    let r = login(&browser(), &app, "grace", "another password 1", &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = login(&browser(), &app, "grace", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn mismatched_passwords_create_nothing() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let token = token_from(&c, &app, "/accounts/register/").await;
    new_captcha(&c, &app).await;
    let r = post(
        &c,
        &app,
        "/accounts/register/",
        &[
            ("csrfmiddlewaretoken", &token),
            ("username", "linus"),
            ("password", "first password"),
            ("password2", "second password"),
            ("captcha", CAPTCHA),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "password2").is_some());
    assert!(field_error(&html, "username").is_none());
    assert!(html.contains("name=\"username\" value=\"linus\""));
    assert!(!html.contains("first password") && !html.contains("second password"));
    assert!(!logged_in(&c, &app).await);

    // The name is still free: nothing was created.
    let r = register(&c, &app, "linus", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn overlong_fields_are_form_errors_with_the_input_kept() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let long_name = "n".repeat(151);
    let r = register(&c, &app, &long_name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "username")
        .expect("username message")
        .contains("150"));
    assert!(html.contains(&format!("value=\"{long_name}\"")));

    let long_password = "p".repeat(257);
    let r = login(&c, &app, "someone", &long_password, &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "password")
        .expect("password message")
        .contains("256"));
    assert!(form_error(&html).is_none());
    assert!(html.contains("name=\"username\" value=\"someone\""));
}

/// One login post for "alan" with an existing token, without fetching a new captcha image.
async fn attempt(
    c: &Client,
    app: &TestApp,
    token: &str,
    password: &str,
    captcha: &str,
) -> Response {
    post(
        c,
        app,
        "/accounts/login/",
        &[
            ("csrfmiddlewaretoken", token),
            ("username", "alan"),
            ("password", password),
            ("captcha", captcha),
        ],
    )
    .await
}

/// One try per image, and a failed captcha stops the attempt before the password is compared.
/// The server allows a single password failure per account: had any captcha failure reached the
/// password check, the final good login would answer 429.
#[tokio::test]
async fn a_wrong_captcha_refuses_login_before_the_password_is_checked() {
    let mut app = TestApp::spawn(&[("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "1")]);
    create_account(&app, "alan").await;
    let c = browser();
    let token = token_from(&c, &app, "/accounts/login/").await;
    // Right password, wrong characters.
    new_captcha(&c, &app).await;
    let r = attempt(&c, &app, &token, PASSWORD, "wrong").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "captcha").is_some());
    assert!(form_error(&html).is_none());
    assert!(!logged_in(&c, &app).await);

    // The right characters again without a new image: that image is used up.
    let r = attempt(&c, &app, &token, PASSWORD, CAPTCHA).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    assert!(field_error(&html, "captcha").is_some());
    assert!(!logged_in(&c, &app).await);

    // Wrong password and wrong characters: only the captcha is reported.
    new_captcha(&c, &app).await;
    let r = attempt(&c, &app, &token, "not the password", "wrong").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(form_error(&r.text().await.expect("body")).is_none());

    // A new image and the right answer: in, so no failure was counted above.
    new_captcha(&c, &app).await;
    let r = attempt(&c, &app, &token, PASSWORD, CAPTCHA).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(logged_in(&c, &app).await);

    app.stop();
    let ev = events(&app);
    assert_eq!(count(&ev, "login_fail", Some("captcha")), 3);
    assert_eq!(count(&ev, "login_fail", Some("bad_credentials")), 0);
    assert_eq!(count(&ev, "captcha_fail", Some("wrong")), 2);
    assert_eq!(count(&ev, "captcha_fail", Some("missing")), 1);
    assert_eq!(count(&ev, "login_ok", None), 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "edsger").await;
    let c = browser();

    let wrong = login(&c, &app, "edsger", "not the password", &[]).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let wrong = wrong.text().await.expect("body");
    let unknown = login(&c, &app, "nobody-here", "not the password", &[]).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let unknown = unknown.text().await.expect("body");

    assert_eq!(form_error(&wrong).as_deref(), Some(GENERIC));
    assert_eq!(form_error(&unknown).as_deref(), Some(GENERIC));
    for html in [&wrong, &unknown] {
        assert!(field_error(html, "username").is_none());
        assert!(field_error(html, "password").is_none());
        assert!(!html.contains("not the password"));
    }
    assert!(unknown.contains("name=\"username\" value=\"nobody-here\""));
    assert!(!logged_in(&c, &app).await);
}

#[tokio::test]
async fn login_cycles_the_session_id() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "barbara").await;
    let c = browser();
    let form = c
        .get(app.url("/accounts/login/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(
        session_cookie(&form),
        None,
        "a form alone starts no session"
    );
    let token = common::csrf_token(&form.text().await.expect("body"));
    // The captcha's answer is what starts the visitor's session.
    let image = c.get(app.url("/captcha/")).send().await.expect("GET");
    let before = session_cookie(&image).expect("the captcha starts a session");
    let r = post(
        &c,
        &app,
        "/accounts/login/",
        &[
            ("csrfmiddlewaretoken", &token),
            ("username", "barbara"),
            ("password", PASSWORD),
            ("captcha", CAPTCHA),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let after = session_cookie(&r).expect("login sets a new session cookie");
    assert_ne!(before, after);
    assert!(cookie_logged_in(&app, &after).await);
    assert!(
        !cookie_logged_in(&app, &before).await,
        "the pre-login id is dead"
    );
}

#[tokio::test]
async fn login_returns_to_next_but_never_off_the_site() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "margaret").await;
    let c = browser();
    let r = c.get(app.url("/notes/new/")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/accounts/login/?next=/notes/new/");
    let html = c
        .get(app.url("/accounts/login/?next=/notes/new/"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    // The template engine escapes `/` as `&#x2f;` inside attributes; browsers read it back as `/`.
    assert!(html
        .replace("&#x2f;", "/")
        .contains("name=\"next\" value=\"/notes/new/\""));

    let r = login(&c, &app, "margaret", PASSWORD, &[("next", "/notes/new/")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/new/");

    let r = login(
        &browser(),
        &app,
        "margaret",
        PASSWORD,
        &[("next", "//evil.test/")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/notes/");
}

#[tokio::test]
async fn remember_sets_the_username_cookie_and_the_next_login_form_is_prefilled() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "katherine").await;
    let c = browser();
    let r = login(&c, &app, "katherine", PASSWORD, &[("remember", "on")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("username="))
        .expect("a username cookie");
    assert!(cookie.starts_with("username=katherine;"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("Max-Age=2592000"), "{cookie}");

    let token = token_from(&c, &app, "/notes/").await;
    let r = post(
        &c,
        &app,
        "/accounts/logout/",
        &[("csrfmiddlewaretoken", &token)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let html = c
        .get(app.url("/accounts/login/"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(html.contains("name=\"username\" value=\"katherine\""));
    assert!(html.contains("name=\"remember\" value=\"on\" checked"));

    // Logging in without "remember" forgets the name.
    let r = login(&c, &app, "katherine", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("username="))
        .expect("the username cookie is removed");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    let html = c
        .get(app.url("/accounts/login/"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(html.contains("name=\"username\" value=\"\""));
}

#[tokio::test]
async fn repeated_failures_for_one_account_answer_429() {
    let mut app = TestApp::spawn(&[
        ("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "3"),
        ("PORTICO_LOGIN_FAILS_PER_IP", "100"),
    ]);
    create_account(&app, "hedy").await;
    create_account(&app, "ida").await;
    let c = browser();
    for _ in 0..3 {
        let r = login(&c, &app, "hedy", "not the password", &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    // Even the right password is refused now, without being looked at.
    let r = login(&c, &app, "hedy", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let html = r.text().await.expect("body");
    assert!(form_error(&html).expect("a message").contains("Too many"));
    assert!(html.contains("name=\"username\" value=\"hedy\""));
    assert!(!logged_in(&c, &app).await);

    // The limit is the account's: another account from the same address still gets in.
    let r = login(&c, &app, "ida", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    app.stop();
    let ev = events(&app);
    assert_eq!(count(&ev, "login_fail", Some("bad_credentials")), 3);
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "rate_limited" && e["scope"] == "login_account_ip"));
}

#[tokio::test]
async fn repeated_failures_from_one_address_answer_429() {
    let mut app = TestApp::spawn(&[
        ("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "100"),
        ("PORTICO_LOGIN_FAILS_PER_IP", "2"),
    ]);
    create_account(&app, "joan").await;
    let c = browser();
    for name in ["guess-one", "guess-two"] {
        let r = login(&c, &app, name, "not the password", &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    let r = login(&c, &app, "joan", PASSWORD, &[]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!logged_in(&c, &app).await);

    app.stop();
    assert!(events(&app)
        .iter()
        .any(|e| e["kind"] == "rate_limited" && e["scope"] == "login_ip"));
}

#[tokio::test]
async fn logout_deletes_the_session_even_for_a_replayed_cookie() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    let r = register(&c, &app, "radia", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let sid = session_cookie(&r).expect("session cookie");
    assert!(cookie_logged_in(&app, &sid).await);

    let token = token_from(&c, &app, "/notes/").await;
    let r = post(
        &c,
        &app,
        "/accounts/logout/",
        &[("csrfmiddlewaretoken", &token)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/accounts/login/");
    assert!(!logged_in(&c, &app).await);
    assert!(
        !cookie_logged_in(&app, &sid).await,
        "the old cookie, sent by hand, no longer logs anyone in"
    );
}

#[tokio::test]
async fn logout_by_get_is_not_allowed() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    assert_eq!(
        register(&c, &app, "frances", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let r = c
        .get(app.url("/accounts/logout/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(logged_in(&c, &app).await, "a GET changes nothing");
}

#[tokio::test]
async fn a_refused_csrf_post_shows_the_login_form_again_without_the_password() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "sophie").await;
    let c = browser();
    token_from(&c, &app, "/accounts/login/").await;
    new_captcha(&c, &app).await;
    let r = post(
        &c,
        &app,
        "/accounts/login/",
        &[
            ("csrfmiddlewaretoken", "forged"),
            ("username", "sophie"),
            ("password", PASSWORD),
            ("captcha", CAPTCHA),
            ("remember", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = r.text().await.expect("body");
    assert!(html.contains("name=\"username\" value=\"sophie\""));
    assert!(html.contains("name=\"remember\" value=\"on\" checked"));
    assert!(!html.contains(PASSWORD));
    assert!(!logged_in(&c, &app).await);
}

#[tokio::test]
async fn the_session_never_holds_the_password_or_its_hash() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    assert_eq!(
        register(&c, &app, "mary", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let other = browser();
    assert_eq!(
        login(&other, &app, "mary", PASSWORD, &[("remember", "on")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    let url = format!(
        "sqlite://{}?mode=ro",
        app.data_dir.join("sessions.sqlite3").display()
    );
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open sessions");
    // Each session's keys are one JSON object: key -> the value's JSON text.
    let records: Vec<(String,)> = sqlx::query_as("SELECT data FROM portico_session_records")
        .fetch_all(&pool)
        .await
        .expect("read sessions");
    let mut rows: Vec<(String, String)> = Vec::new();
    for (data,) in &records {
        let map: HashMap<String, String> =
            serde_json::from_str(data).expect("session data is a JSON object");
        rows.extend(map);
    }
    let data: HashMap<String, usize> = rows.iter().fold(HashMap::new(), |mut m, (k, _)| {
        *m.entry(k.clone()).or_default() += 1;
        m
    });
    assert_eq!(
        data.get("_auth_user"),
        Some(&2),
        "both logins are in the store: {data:?}"
    );
    for (key, value) in &rows {
        assert!(!value.contains(PASSWORD), "{key} holds the password");
        assert!(!value.contains("$argon2"), "{key} holds a password hash");
    }
}

#[tokio::test]
async fn createuser_makes_an_account_that_can_log_in() {
    let dir = common::temp_dir("createuser");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("createuser")
        .arg("--data-dir")
        .arg(&dir)
        .arg("alice")
        .arg("--password")
        .arg(PASSWORD)
        .env_remove("PORTICO_DATABASE_URL")
        .env("PORTICO_LOG", "warn")
        .output()
        .expect("run portico createuser");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user alice"));

    {
        let app = TestApp::spawn_in(dir.clone(), &[]);
        let c = browser();
        let r = login(&c, &app, "alice", PASSWORD, &[]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(logged_in(&c, &app).await);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The audio challenge beside the picture.

/// Fetches a recording in `lang`, which sets the session's pending audio challenge.
async fn new_recording(c: &Client, app: &TestApp, lang: &str) -> Response {
    c.get(app.url(&format!("/captcha/audio/?lang={lang}")))
        .send()
        .await
        .expect("GET /captcha/audio/")
}

#[tokio::test]
async fn a_recording_is_a_wav_that_no_cache_keeps() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    for lang in ["en", "zh"] {
        let r = new_recording(&c, &app, lang).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "audio/wav");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store"));
        let wav = r.bytes().await.expect("body");
        assert!(wav.starts_with(b"RIFF") && &wav[8..12] == b"WAVE");
        assert!((100_000..=250_000).contains(&wav.len()), "{}", wav.len());
    }
    let r = new_recording(&c, &app, "klingon").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// In test mode the recording's answer is the test answer too: a person who only listened
/// (no picture fetched) logs in with it, once.
#[tokio::test]
async fn the_recording_alone_is_enough_to_log_in_and_one_wrong_answer_spends_it() {
    let mut app = TestApp::spawn(&[]);
    create_account(&app, "grace").await;
    let c = browser();
    let token = token_from(&c, &app, "/accounts/login/").await;
    let fields = |answer: &'static str| {
        [
            ("csrfmiddlewaretoken", token.clone()),
            ("username", "grace".to_string()),
            ("password", PASSWORD.to_string()),
            ("captcha", answer.to_string()),
        ]
    };

    new_recording(&c, &app, "en").await;
    let r = post(&c, &app, "/accounts/login/", &as_pairs(&fields("00000"))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.expect("body");
    let message = field_error(&html, "captcha").expect("captcha message");
    assert!(message.contains("recording"), "{message}");
    // The right answer without a new recording: that one is used up.
    let r = post(&c, &app, "/accounts/login/", &as_pairs(&fields(CAPTCHA))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!logged_in(&c, &app).await);

    new_recording(&c, &app, "en").await;
    let r = post(&c, &app, "/accounts/login/", &as_pairs(&fields(CAPTCHA))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(logged_in(&c, &app).await);

    app.stop();
    let ev = events(&app);
    let audio = |kind: &str| {
        ev.iter()
            .filter(|e| e["kind"] == kind && e["captcha_mode"] == "audio_en")
            .count()
    };
    assert_eq!(audio("captcha_issued"), 2);
    assert_eq!(audio("captcha_fail"), 1);
    assert_eq!(audio("captcha_ok"), 1);
}

fn as_pairs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// One try spends the picture and the recording: a wrong answer after fetching both leaves
/// neither to answer.
#[tokio::test]
async fn a_wrong_answer_spends_the_picture_and_the_recording() {
    let app = TestApp::spawn(&[]);
    create_account(&app, "barbara").await;
    let c = browser();
    let token = token_from(&c, &app, "/accounts/login/").await;
    new_captcha(&c, &app).await;
    new_recording(&c, &app, "zh").await;
    for answer in ["wrong", CAPTCHA] {
        let r = post(
            &c,
            &app,
            "/accounts/login/",
            &[
                ("csrfmiddlewaretoken", &token),
                ("username", "barbara"),
                ("password", PASSWORD),
                ("captcha", answer),
                ("captcha_mode", "zh"),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "answer {answer}");
    }
    assert!(!logged_in(&c, &app).await);
}

#[tokio::test]
async fn recordings_and_pictures_share_one_rate_limit() {
    let app = TestApp::spawn(&[("PORTICO_CAPTCHA_PER_SESSION", "2")]);
    let c = browser();
    // The first creates the session; the session's own count starts after it.
    new_captcha(&c, &app).await;
    assert_eq!(new_recording(&c, &app, "en").await.status(), StatusCode::OK);
    new_captcha(&c, &app).await;
    let r = new_recording(&c, &app, "en").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    let r = c.get(app.url("/captcha/")).send().await.expect("GET");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_forms_offer_the_recording_and_say_what_to_type() {
    let app = TestApp::spawn(&[]);
    let c = browser();
    for (path, mode, audio, hint) in [
        (
            "/accounts/login/",
            Mode::Latin,
            "src=\"/captcha/audio/?lang=en\"",
            "Type the {n} large dark letters or digits (not case-sensitive); ignore the dotted outlines.",
        ),
        (
            "/accounts/register/?captcha_mode=zh",
            Mode::Chinese,
            "src=\"/captcha/audio/?lang=zh\"",
            "输入图中{n}个深色大字（忽略虚线轮廓）",
        ),
        (
            "/accounts/login/?captcha_mode=digits",
            Mode::Digits,
            "src=\"/captcha/audio/?lang=en\"",
            "Type the {n} large dark digits; ignore the dotted outlines.",
        ),
    ] {
        let html = c
            .get(app.url(path))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
            // The templates escape `/` in attribute values.
            .replace("&#x2f;", "/");
        assert!(
            html.contains(&format!("<audio controls preload=\"none\" {audio}")),
            "{path}"
        );
        // The number of characters is the style's (4, or 3 for Chinese).
        let style = Style::for_mode(mode);
        let hint = hint.replace("{n}", &style.length.to_string());
        assert!(html.contains(&hint), "{path}: {hint}");
        // The picture's box is the size the style draws, so the page does not jump or stretch.
        assert!(
            html.contains(&format!(
                "width=\"{}\" height=\"{}\"",
                style.width, style.height
            )),
            "{path}"
        );
    }
}
