use axum::http::{header, Request, StatusCode};
use axum::response::Html;
use minijinja::Environment;

use super::error_pages::sentence;
use super::*;

#[test]
fn autoescape_is_on_for_html() {
    let mut env = Environment::new();
    env.add_template("a.html", "{{ x }}").unwrap();
    env.add_template("a.txt", "{{ x }}").unwrap();
    let t = Templates::new(env);
    assert_eq!(
        t.render("a.html", minijinja::context! { x => "<script>" })
            .unwrap(),
        "&lt;script&gt;"
    );
    assert_eq!(
        t.render("a.txt", minijinja::context! { x => "<script>" })
            .unwrap(),
        "<script>"
    );
}

/// A router whose routes answer a plain-text 400, an HTML 404 and a 200, wrapped by `wrap`.
fn errors_app(wrap: impl FnOnce(axum::Router) -> axum::Router) -> axum::Router {
    use axum::routing::get;
    let routes = axum::Router::new()
        .route(
            "/bad",
            get(|| async { (StatusCode::BAD_REQUEST, "Missing field") }),
        )
        .route(
            "/page",
            get(|| async { (StatusCode::NOT_FOUND, Html("<p>own page</p>")) }),
        )
        .route("/ok", get(|| async { "fine" }));
    wrap(routes)
}

fn error_templates() -> Templates {
    let mut env = Environment::new();
    env.add_template(
        "error.html",
        "<h1>{{ status }} {{ title }}</h1><p>{{ message }}</p>",
    )
    .unwrap();
    Templates::new(env)
}

async fn answer(app: &axum::Router, path: &str, accept: &str) -> (StatusCode, String, String) {
    use tower::ServiceExt;
    let req = Request::get(path)
        .header(header::ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn error_pages_are_html_or_json_and_leave_pages_and_successes_alone() {
    let app = &errors_app(|r| r.layer(ErrorPagesLayer::new(error_templates())));
    let (status, ct, body) = answer(app, "/bad", "text/html").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert_eq!(body, "<h1>400 Bad request</h1><p>Missing field.</p>");

    let (status, ct, body) = answer(app, "/bad", "application/json").await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::BAD_REQUEST, "application/json")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 400);
    assert_eq!(v["message"], "Missing field.");

    let (status, _, body) = answer(app, "/page", "text/html").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "<p>own page</p>")
    );
    let (status, _, body) = answer(app, "/ok", "text/html").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
}

#[test]
fn a_message_gets_a_full_stop_only_when_it_has_none() {
    assert_eq!(sentence("Missing field".into()), "Missing field.");
    assert_eq!(sentence("Missing field.".into()), "Missing field.");
    assert_eq!(sentence("Wait for it...".into()), "Wait for it...");
    assert_eq!(sentence("a..b".into()), "a..b.");
}

#[test]
fn csrf_helpers_outside_a_page_are_an_error_not_a_blank() {
    let mut env = Environment::new();
    env.add_template("f.html", "{{ csrf_input() }}").unwrap();
    let t = Templates::new(env);
    assert!(t.render("f.html", minijinja::context! {}).is_err());
}
