//! The login line under parallel requests, on every session store: one solved captcha image lets
//! one post through, login and registration limits count every attempt before a password is
//! hashed, and wrong passwords from other addresses never lock the owner out.
//!
//! Password checks are counted from the outside through the event log: the site writes a
//! `login_fail` event with reason `bad_credentials` only after it has hashed the posted password.

mod common;

use common::{
    events, field_error, form_error, login_fields, postgres_url, ready, redis_url, register,
    register_fields, TestApp, GENERIC, PASSWORD,
};
use reqwest::{Client, StatusCode};

const WRONG: &str = "not the password at all";

/// A name no earlier run left in a shared store (Redis and PostgreSQL outlive the test servers).
fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// An address of its own for one test's clients, so that the per-address counters a shared store
/// keeps (Redis and PostgreSQL outlive the test servers) start from zero.
fn fresh_addr() -> String {
    let [a, b, c]: [u8; 3] = rand::random();
    format!("10.{a}.{b}.{}", c.max(1))
}

/// Starts a site on `store` (the default SQLite when `None`) with `env`, trusting the client
/// address in `X-Forwarded-For`.
fn spawn(store: &Option<String>, env: &[(&str, &str)]) -> TestApp {
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push(("PORTICO_TRUST_X_FORWARDED_FOR", "true"));
    if let Some(s) = store {
        all.push(("PORTICO_SESSION_STORE", s));
    }
    TestApp::spawn(&all)
}

/// A browser that says it comes from `addr` (the site trusts `X-Forwarded-For` in those tests).
fn browser_from(addr: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_str(addr).expect("an address is a header value"),
    );
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Registers `username` from an address of its own, so no per-address count is touched.
async fn create_account(app: &TestApp, username: &str) {
    let r = register(&browser_from(&fresh_addr()), app, username, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "registering {username}");
}

/// One login post with a token and the captcha answer, without fetching a new image.
async fn post_login(
    c: Client,
    url: String,
    token: String,
    username: String,
    password: &'static str,
) -> (StatusCode, String) {
    let r = c
        .post(url)
        .form(&login_fields(&token, &username, password))
        .send()
        .await
        .expect("POST");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

/// Answers every post's status and page once all have come back.
async fn all(
    tasks: Vec<tokio::task::JoinHandle<(StatusCode, String)>>,
) -> Vec<(StatusCode, String)> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// How many events of `kind` (with `reason`, if given) name `account`.
fn count(events: &[serde_json::Value], kind: &str, reason: Option<&str>, account: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["kind"] == kind && e["account"] == account && reason.is_none_or(|r| e["reason"] == r)
        })
        .count()
}

/// Whether `c` is logged in: /notes/ answers its page instead of a redirect to the login form.
async fn logged_in(c: &Client, app: &TestApp) -> bool {
    let r = c.get(app.url("/notes/")).send().await.expect("GET");
    r.status() == StatusCode::OK
}

/// An attacker solves one image, then sends 20 logins with it at once: exactly one may reach the
/// password check; the other 19 are told to solve a new picture.
async fn one_image_lets_one_parallel_login_through(store: &Option<String>, name: &str) {
    let mut app = spawn(
        store,
        &[
            ("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "1000"),
            ("PORTICO_LOGIN_FAILS_PER_IP", "100000"),
        ],
    );
    let victim = unique("victim");
    create_account(&app, &victim).await;
    let c = browser_from(&fresh_addr());
    let token = ready(&c, &app, "/accounts/login/").await;
    let tasks = (0..20)
        .map(|_| {
            tokio::spawn(post_login(
                c.clone(),
                app.url("/accounts/login/"),
                token.clone(),
                victim.clone(),
                WRONG,
            ))
        })
        .collect();
    let answers = all(tasks).await;
    let checked = answers
        .iter()
        .filter(|(s, html)| {
            *s == StatusCode::BAD_REQUEST && form_error(html).as_deref() == Some(GENERIC)
        })
        .count();
    let refused = answers
        .iter()
        .filter(|(s, html)| *s == StatusCode::BAD_REQUEST && field_error(html, "captcha").is_some())
        .count();
    assert_eq!(
        (checked, refused),
        (1, 19),
        "{name}: one password check, 19 captcha refusals"
    );
    assert!(!logged_in(&c, &app).await);

    app.stop();
    let ev = events(&app);
    assert_eq!(
        count(&ev, "login_fail", Some("bad_credentials"), &victim),
        1,
        "{name}: the password was hashed more than once for one image"
    );
    assert_eq!(count(&ev, "login_fail", Some("captcha"), &victim), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_captcha_image_lets_one_of_twenty_parallel_logins_reach_the_password_with_sqlite() {
    one_image_lets_one_parallel_login_through(&None, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_captcha_image_lets_one_of_twenty_parallel_logins_reach_the_password_with_memory() {
    one_image_lets_one_parallel_login_through(&Some("memory".into()), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_captcha_image_lets_one_of_twenty_parallel_logins_reach_the_password_with_redis() {
    one_image_lets_one_parallel_login_through(&Some(redis_url()), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_captcha_image_lets_one_of_twenty_parallel_logins_reach_the_password_with_postgres() {
    one_image_lets_one_parallel_login_through(&Some(postgres_url()), "postgres").await;
}

/// 20 sessions, each with its own solved image, send a wrong password for one account at once;
/// with 3 failures allowed, at most 3 passwords are hashed and the rest answer 429.
async fn parallel_wrong_passwords_hash_at_most_the_limit(store: &Option<String>, name: &str) {
    let mut app = spawn(
        store,
        &[
            ("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "3"),
            ("PORTICO_LOGIN_FAILS_PER_IP", "100000"),
        ],
    );
    let victim = unique("target");
    create_account(&app, &victim).await;
    let mut tasks = Vec::new();
    let mut ready_posts = Vec::new();
    let addr = fresh_addr();
    for _ in 0..20 {
        let c = browser_from(&addr);
        let token = ready(&c, &app, "/accounts/login/").await;
        ready_posts.push((c, token));
    }
    for (c, token) in ready_posts {
        tasks.push(tokio::spawn(post_login(
            c,
            app.url("/accounts/login/"),
            token,
            victim.clone(),
            WRONG,
        )));
    }
    let answers = all(tasks).await;
    let checked = answers
        .iter()
        .filter(|(s, html)| {
            *s == StatusCode::BAD_REQUEST && form_error(html).as_deref() == Some(GENERIC)
        })
        .count();
    let limited = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, limited), (3, 17), "{name}: {checked} checked");

    app.stop();
    let hashed = count(
        &events(&app),
        "login_fail",
        Some("bad_credentials"),
        &victim,
    );
    assert_eq!(
        hashed, 3,
        "{name}: {hashed} passwords hashed past a limit of 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_wrong_passwords_hash_at_most_the_limit_with_sqlite() {
    parallel_wrong_passwords_hash_at_most_the_limit(&None, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_wrong_passwords_hash_at_most_the_limit_with_memory() {
    parallel_wrong_passwords_hash_at_most_the_limit(&Some("memory".into()), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_wrong_passwords_hash_at_most_the_limit_with_redis() {
    parallel_wrong_passwords_hash_at_most_the_limit(&Some(redis_url()), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_wrong_passwords_hash_at_most_the_limit_with_postgres() {
    parallel_wrong_passwords_hash_at_most_the_limit(&Some(postgres_url()), "postgres").await;
}

/// One post of the registration form with a token and the captcha answer.
async fn post_register(
    c: Client,
    url: String,
    token: String,
    username: String,
) -> (StatusCode, String) {
    let r = c
        .post(url)
        .form(&register_fields(&token, &username, PASSWORD))
        .send()
        .await
        .expect("POST");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_captcha_image_creates_one_account_however_many_parallel_registrations_use_it() {
    let mut app = TestApp::spawn(&[]);
    let c = browser_from("127.0.0.1");
    let token = ready(&c, &app, "/accounts/register/").await;
    let names: Vec<String> = (0..20).map(|i| format!("bulk{i}")).collect();
    let tasks = names
        .iter()
        .map(|n| {
            tokio::spawn(post_register(
                c.clone(),
                app.url("/accounts/register/"),
                token.clone(),
                n.clone(),
            ))
        })
        .collect();
    let answers = all(tasks).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SEE_OTHER)
        .count();
    let refused = answers
        .iter()
        .filter(|(s, html)| *s == StatusCode::BAD_REQUEST && field_error(html, "captcha").is_some())
        .count();
    assert_eq!((created, refused), (1, 19));

    app.stop();
    let ev = events(&app);
    let registered: usize = names.iter().map(|n| count(&ev, "register", None, n)).sum();
    assert_eq!(registered, 1, "one image made {registered} accounts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_from_one_address_are_limited_before_any_password_is_hashed() {
    let mut app = TestApp::spawn(&[("PORTICO_REGISTER_PER_IP", "3")]);
    let mut ready_posts = Vec::new();
    for i in 0..10 {
        let c = browser_from("127.0.0.1");
        let token = ready(&c, &app, "/accounts/register/").await;
        ready_posts.push((c, token, format!("flood{i}")));
    }
    let names: Vec<String> = ready_posts.iter().map(|(_, _, n)| n.clone()).collect();
    let tasks = ready_posts
        .into_iter()
        .map(|(c, token, name)| {
            tokio::spawn(post_register(
                c,
                app.url("/accounts/register/"),
                token,
                name,
            ))
        })
        .collect();
    let answers = all(tasks).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::SEE_OTHER)
        .count();
    let limited: Vec<&String> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, html)| html)
        .collect();
    assert_eq!((created, limited.len()), (3, 7));
    assert!(
        form_error(limited[0])
            .expect("a message")
            .contains("Too many"),
        "{}",
        limited[0]
    );

    app.stop();
    let ev = events(&app);
    let registered: usize = names.iter().map(|n| count(&ev, "register", None, n)).sum();
    assert_eq!(registered, 3, "{registered} accounts past a limit of 3");
}

/// Wrong passwords for one account from three addresses, past each address's limit; then the
/// owner, from an address of their own, still logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_on_other_addresses_cannot_lock_the_owner_out() {
    let mut app = TestApp::spawn(&[
        ("PORTICO_TRUST_X_FORWARDED_FOR", "true"),
        ("PORTICO_LOGIN_FAILS_PER_ACCOUNT", "3"),
        ("PORTICO_LOGIN_FAILS_PER_IP", "100"),
        ("PORTICO_LOGIN_SLOW_AFTER", "6"),
    ]);
    create_account(&app, "owner").await;
    for attacker in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let c = browser_from(attacker);
        for attempt in 1..=4 {
            let token = ready(&c, &app, "/accounts/login/").await;
            let (status, html) = post_login(
                c.clone(),
                app.url("/accounts/login/"),
                token,
                "owner".into(),
                WRONG,
            )
            .await;
            let expected = if attempt <= 3 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            assert_eq!(status, expected, "{attacker}, attempt {attempt}: {html}");
        }
        // The limit holds for that address even with the right password.
        let token = ready(&c, &app, "/accounts/login/").await;
        let (status, _) = post_login(
            c.clone(),
            app.url("/accounts/login/"),
            token,
            "owner".into(),
            PASSWORD,
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{attacker}");
        assert!(!logged_in(&c, &app).await);
    }

    let owner = browser_from("198.51.100.7");
    let token = ready(&owner, &app, "/accounts/login/").await;
    let started = std::time::Instant::now();
    let (status, html) = post_login(
        owner.clone(),
        app.url("/accounts/login/"),
        token,
        "owner".into(),
        PASSWORD,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert!(logged_in(&owner, &app).await);
    // Nine failures for the account, past the slow-down threshold of six: the check waited.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    app.stop();
    let ev = events(&app);
    assert_eq!(
        count(&ev, "login_fail", Some("bad_credentials"), "owner"),
        9
    );
    assert_eq!(count(&ev, "login_ok", None, "owner"), 1);
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "rate_limited" && e["scope"] == "login_account_ip"));
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "login_slowed" && e["account"] == "owner"));
}
