//! The examples, served on loopback ports and driven over real HTTP as a browser would, so that
//! the code people copy keeps working.

use std::net::SocketAddr;

use axum::Router;
use portico::captcha::CaptchaConfig;
use portico::clock::Clock;

// Each example's `main` is not called here: the tests serve its `app` themselves.
#[allow(dead_code)]
// An example is a program of its own; here it is a module whose `pub` items this file uses.
#[allow(unreachable_pub)]
#[path = "../examples/hello_views.rs"]
mod hello_views;

#[cfg(feature = "redis")]
#[allow(dead_code)]
#[allow(unreachable_pub)]
#[path = "../examples/shared_sessions.rs"]
mod shared_sessions;

/// Serves `app` on a free loopback port and answers its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    format!("http://{addr}")
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The text of the element `id` in `html` (`<b id=visits>3</b>` gives `3`).
fn element(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id={id}>"))? + id.len() + 4;
    let end = html[start..].find('<')? + start;
    Some(html[start..end].to_string())
}

/// The first CSRF token in `html`.
fn token(html: &str) -> String {
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

async fn page(c: &reqwest::Client, url: &str) -> String {
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// hello_views with every captcha answered by `answer`.
async fn hello(answer: &str) -> String {
    let mut captcha = CaptchaConfig::new(100, 100, Clock::system());
    captcha.test_answer = Some(answer.to_string());
    serve(hello_views::app(captcha)).await
}

#[tokio::test]
async fn the_visit_counter_counts_with_the_session_cookie_only() {
    let base = hello("abcde").await;
    let c = browser();
    for n in 1..=3 {
        let home = page(&c, &base).await;
        assert_eq!(
            element(&home, "visits").as_deref(),
            Some(n.to_string().as_str())
        );
    }
    let stranger = reqwest::Client::new();
    let home = page(&stranger, &base).await;
    assert_eq!(element(&home, "visits").as_deref(), Some("1"));
}

#[tokio::test]
async fn getlist_answers_every_ticked_box_and_a_cookie_remembers_them() {
    let base = hello("abcde").await;
    let c = browser();
    let text = page(&c, &format!("{base}/colours/?colour=red&colour=blue")).await;
    assert_eq!(text, "You ticked: red, blue");
    let home = page(&c, &base).await;
    assert_eq!(element(&home, "colours").as_deref(), Some("red, blue"));
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let base = hello("abcde").await;
    let c = browser();
    page(&c, &base).await;
    let resp = c
        .post(&base)
        .form(&[("note", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let home = page(&c, &base).await;
    assert!(!home.contains("forged"), "{home}");
    // The refused post counted no visit either: this is the second page the session saw.
    assert_eq!(element(&home, "visits").as_deref(), Some("2"));
}

#[tokio::test]
async fn a_post_with_the_csrf_token_saves_the_note() {
    let base = hello("abcde").await;
    let c = browser();
    let home = page(&c, &base).await;
    let form = [
        ("csrfmiddlewaretoken", token(&home)),
        ("note", "hello".into()),
    ];
    let resp = c.post(&base).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("value=\"hello\""));
}

#[tokio::test]
async fn a_wrong_captcha_is_refused_and_the_right_one_signs_in() {
    let base = hello("abcde").await;
    let c = browser();
    let login = format!("{base}/login/");
    let home = page(&c, &base).await;
    let image = c.get(format!("{base}/captcha/")).send().await.unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    let form = [
        ("csrfmiddlewaretoken", token(&home)),
        ("name", "ada".into()),
        ("captcha", "wrong".into()),
    ];
    let resp = c.post(&login).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let refused = resp.text().await.unwrap();
    assert!(element(&refused, "user").is_none(), "{refused}");
    assert!(refused.contains("did not match"), "{refused}");

    // The wrong answer spent the picture: a new one is needed.
    c.get(format!("{base}/captcha/")).send().await.unwrap();
    let form = [
        ("csrfmiddlewaretoken", token(&refused)),
        ("name", "ada".into()),
        ("captcha", "abcde".into()),
    ];
    let resp = c.post(&login).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let home = resp.text().await.unwrap();
    assert_eq!(element(&home, "user").as_deref(), Some("ada"));
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_session_saved_through_one_server_is_read_through_the_other() {
    use std::sync::Arc;

    use portico::secret::SecretKey;
    use portico::session::{RedisStore, SessionStore};

    let store: Arc<dyn SessionStore> =
        Arc::new(RedisStore::open("redis://127.0.0.1:6379").unwrap());
    let secret = SecretKey::generate();
    let a = serve(shared_sessions::app("A", store.clone(), &secret)).await;
    let b = serve(shared_sessions::app("B", store, &secret)).await;
    // One browser: cookies ignore the port, so both servers get the same session cookie.
    let c = browser();
    let on_a = page(&c, &a).await;
    let value = format!("written on A {}", rand::random::<u32>());
    let form = [
        ("csrfmiddlewaretoken", token(&on_a)),
        ("value", value.clone()),
    ];
    let resp = c.post(&a).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let on_b = page(&c, &b).await;
    assert!(on_b.contains("Server B"), "{on_b}");
    assert_eq!(element(&on_b, "value"), Some(value));

    // And the other way: a form shown by B is accepted by A.
    let form = [
        ("csrfmiddlewaretoken", token(&on_b)),
        ("value", "from B".into()),
    ];
    let resp = c.post(&a).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        element(&page(&c, &a).await, "value").as_deref(),
        Some("from B")
    );
}
