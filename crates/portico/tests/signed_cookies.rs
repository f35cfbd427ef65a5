//! Signed cookies over real HTTP: a value moved to another cookie's name, an old value, and a
//! value from before a key rotation, each sent as an attacker or a returning browser would.
//!
//! The site grants a role named by its signed `role` cookie and records every grant; a refused
//! value must get 403 and record nothing.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use portico::clock::Clock;
use portico::cookies::{Cookie, CookieDefaults, CookieLayer, Cookies, DEFAULT_SIGNED_MAX_AGE};
use portico::secret::SecretKey;

type Grants = Arc<Mutex<Vec<String>>>;

async fn issue(cookies: Cookies) -> &'static str {
    cookies.set_signed_cookie(Cookie::new("theme", "admin"));
    cookies.set_signed_cookie(Cookie::new("role", "editor"));
    "issued"
}

async fn act(State(grants): State<Grants>, cookies: Cookies) -> axum::response::Response {
    match cookies.get_signed("role") {
        Some(role) => {
            grants.lock().unwrap().push(role.clone());
            (StatusCode::OK, role).into_response()
        }
        None => (StatusCode::FORBIDDEN, "no role").into_response(),
    }
}

struct Site {
    base: String,
    grants: Grants,
}

async fn spawn(layer: CookieLayer) -> Site {
    let grants = Grants::default();
    let app = Router::new()
        .route("/issue/", get(issue))
        .route("/act/", get(act))
        .with_state(grants.clone())
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Site { base, grants }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// The signed values `/issue/` sets, by cookie name.
async fn issued(site: &Site) -> std::collections::HashMap<String, String> {
    let r = client()
        .get(format!("{}/issue/", site.base))
        .send()
        .await
        .unwrap();
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| Cookie::parse_encoded(v.to_str().ok()?.to_string()).ok())
        .map(|c| (c.name().to_string(), c.value().to_string()))
        .collect()
}

async fn act_with(site: &Site, role_value: &str) -> reqwest::StatusCode {
    let cookie = Cookie::new("role", role_value.to_string())
        .encoded()
        .to_string();
    client()
        .get(format!("{}/act/", site.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

fn layer(key: &SecretKey, clock: &Clock) -> CookieLayer {
    let defaults = CookieDefaults {
        clock: clock.clone(),
        ..CookieDefaults::default()
    };
    CookieLayer::new(key, defaults)
}

#[tokio::test]
async fn a_value_signed_for_another_cookie_is_refused_and_grants_nothing() {
    let clock = Clock::manual(1_700_000_000);
    let site = spawn(layer(&SecretKey::from_bytes([1; 64]), &clock)).await;
    let values = issued(&site).await;
    assert_eq!(act_with(&site, &values["theme"]).await, 403);
    assert!(site.grants.lock().unwrap().is_empty());
    assert_eq!(act_with(&site, &values["role"]).await, 200);
    assert_eq!(*site.grants.lock().unwrap(), ["editor"]);
}

#[tokio::test]
async fn a_value_past_its_max_age_is_refused_and_grants_nothing() {
    let clock = Clock::manual(1_700_000_000);
    let site = spawn(layer(&SecretKey::from_bytes([1; 64]), &clock)).await;
    let role = issued(&site).await["role"].clone();
    clock.advance(DEFAULT_SIGNED_MAX_AGE.whole_seconds() + 1);
    assert_eq!(act_with(&site, &role).await, 403);
    assert!(site.grants.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_value_from_before_a_key_rotation_verifies_only_under_its_fallback() {
    let clock = Clock::manual(1_700_000_000);
    let (old, new) = (
        SecretKey::from_bytes([1; 64]),
        SecretKey::from_bytes([2; 64]),
    );
    let before = spawn(layer(&old, &clock)).await;
    let role = issued(&before).await["role"].clone();

    let rotated_without = spawn(layer(&new, &clock)).await;
    assert_eq!(act_with(&rotated_without, &role).await, 403);
    assert!(rotated_without.grants.lock().unwrap().is_empty());

    let rotated = spawn(layer(&new, &clock).fallbacks(&new, std::slice::from_ref(&old))).await;
    assert_eq!(act_with(&rotated, &role).await, 200);
    assert_eq!(*rotated.grants.lock().unwrap(), ["editor"]);
}
