//! Two servers, one Redis: a session written through one is read through the other, as behind a
//! load balancer that sends each request to whichever server is free.
//!
//! `cargo run -p portico --features redis --example shared_sessions` serves the same site on
//! <http://127.0.0.1:8000/> and <http://127.0.0.1:8001/> (`PORT` moves both; `REDIS_URL` names
//! the Redis, `redis://127.0.0.1:6379` by default). Save a value on one port and reload the other:
//! browsers send a host's cookies to every port of it, so both servers see the same session.

use std::future::IntoFuture;
use std::sync::Arc;

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use portico::csrf::{CsrfConfig, CsrfLayer};
use portico::secret::SecretKey;
use portico::session::{RedisStore, SessionConfig, SessionLayer, SessionStore};
use portico::template::{Page, Templates};
use portico::{Params, Session};
use tower::ServiceBuilder;

const PAGE: &str = r#"<!doctype html><title>Server {{ name }}</title>
<p>Server {{ name }}. The session holds <b id=value>{{ value or "nothing" }}</b>.</p>
<form method=post>{{ csrf_input() }}<input name=value><button>Save</button></form>"#;

/// One server named `name`. Every server of the site gets the same `store` and `secret`: the
/// store holds the sessions, and the key signs the CSRF cookie of visitors without a session,
/// so that a form shown by one server is accepted by another.
pub fn app(name: &str, store: Arc<dyn SessionStore>, secret: &SecretKey) -> Router {
    let mut env = minijinja::Environment::new();
    // A constant template that parses: adding it cannot fail.
    env.add_template("page.html", PAGE)
        .expect("the page template parses");
    env.add_global("name", name.to_string());
    let csrf = CsrfConfig::default();
    let routes = Router::new().route("/", get(show).post(save));
    let service = ServiceBuilder::new()
        .layer(Extension(Templates::new(env)))
        .layer(SessionLayer::new(store, SessionConfig::default()))
        .layer(CsrfLayer::new(csrf).with_secret_key(secret))
        .service(routes);
    Router::new().fallback_service(service)
}

async fn show(page: Page, session: Session) -> Response {
    let value: Option<String> = session.get("value").await.unwrap_or(None);
    match page
        .render("page.html", minijinja::context! { value })
        .await
    {
        Ok(html) => html.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn save(session: Session, params: Params) -> Response {
    match session
        .insert("value", params.get("value").unwrap_or_default())
        .await
    {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => e.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let store: Arc<dyn SessionStore> = Arc::new(RedisStore::open(&url)?);
    // In production every server reads the same key from its configuration.
    let secret = SecretKey::generate();
    let mut servers = tokio::task::JoinSet::new();
    for (name, port) in [("A", port), ("B", port.saturating_add(1))] {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("server {name} on http://{}/", listener.local_addr()?);
        servers.spawn(axum::serve(listener, app(name, store.clone(), &secret)).into_future());
    }
    while let Some(served) = servers.join_next().await {
        served??;
    }
    Ok(())
}
