//! The session-bound captcha over real HTTP: where the answer lives, one try per image, expiry
//! with an injected clock, rate limits, and what the images are made of.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use portico::captcha::{charset, Captcha, CaptchaConfig, IssueError, Mode, Outcome, Style};
use portico::clock::Clock;
use portico::params::Params;
use portico::session::{MemoryStore, Session, SessionConfig, SessionLayer, SessionStore};
use tower::ServiceBuilder;

struct Site {
    base: String,
    clock: Clock,
    store: Arc<MemoryStore>,
}

async fn image(
    session: Session,
    Extension(cfg): Extension<Arc<CaptchaConfig>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mode = q
        .get("mode")
        .and_then(|m| Mode::parse(m))
        .unwrap_or(Mode::Latin);
    // Tests may pretend to come from other addresses.
    let ip: IpAddr = q
        .get("ip")
        .and_then(|i| i.parse().ok())
        .unwrap_or(addr.ip());
    match Captcha::issue(&session, &cfg, mode, ip).await {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        Err(IssueError::Limited(_)) => {
            (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down").into_response()
        }
        Err(IssueError::Session(e)) => e.into_response(),
    }
}

async fn check(
    session: Session,
    Extension(cfg): Extension<Arc<CaptchaConfig>>,
    params: Params,
) -> Response {
    match Captcha::verify(&session, &cfg, params.get("captcha").unwrap_or("")).await {
        Ok((outcome, _)) => outcome.reason().into_response(),
        Err(e) => e.into_response(),
    }
}

async fn spawn(per_session: u32, per_ip: u32, test_answer: Option<&str>) -> Site {
    let clock = Clock::manual(1_700_000_000);
    let mut cfg = CaptchaConfig::new(per_session, per_ip, clock.clone());
    cfg.test_answer = test_answer.map(String::from);
    let store = Arc::new(MemoryStore::default());
    let sessions = SessionLayer::with_clock(store.clone(), SessionConfig::default(), clock.clone());
    let routes = Router::new()
        .route("/captcha/", get(image))
        .route("/check/", post(check));
    let service = ServiceBuilder::new()
        .layer(Extension(Arc::new(cfg)))
        .layer(sessions)
        .service(routes);
    let app = Router::new().fallback_service(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
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

impl Site {
    async fn image(&self, c: &reqwest::Client, query: &str) -> reqwest::Response {
        c.get(format!("{}/captcha/{query}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn check(&self, c: &reqwest::Client, answer: &str) -> String {
        c.post(format!("{}/check/", self.base))
            .form(&[("captcha", answer)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The pending answer, read from the server-side store (where only the server can see it).
    async fn pending_answer(&self, session_id: &str) -> Option<String> {
        let key = portico::session::StorageKey::of(session_id);
        let rec = self.store.load(&key, self.clock.now()).await.unwrap()?;
        let pending: serde_json::Value = serde_json::from_str(rec.data.get("__captcha")?).unwrap();
        pending["answer"].as_str().map(String::from)
    }
}

fn session_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sessionid="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("the captcha creates a session")
}

fn png_size_and_chunks(bytes: &[u8]) -> (u32, u32, Vec<String>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    let (w, h) = (info.width, info.height);
    let mut chunks = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        chunks.push(String::from_utf8_lossy(&bytes[i + 4..i + 8]).to_string());
        i += 12 + len;
    }
    (w, h, chunks)
}

#[tokio::test]
async fn the_answer_lives_only_in_the_session() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let resp = site.image(&c, "").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let id = session_id(&resp);
    let headers = format!("{:?}", resp.headers());
    let png = resp.bytes().await.unwrap();
    let answer = site
        .pending_answer(&id)
        .await
        .expect("the answer is in the session");
    assert!(
        !headers.contains(&answer),
        "the answer leaked into a header or cookie"
    );
    let (_, _, chunks) = png_size_and_chunks(&png);
    assert!(
        chunks
            .iter()
            .all(|c| !matches!(c.as_str(), "tEXt" | "zTXt" | "iTXt")),
        "{chunks:?}"
    );
    assert!(
        !png.windows(answer.len()).any(|w| w == answer.as_bytes()),
        "the answer is in the PNG bytes"
    );
}

#[tokio::test]
async fn the_right_answer_solves_it_once_case_insensitively() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let resp = site.image(&c, "").await;
    let id = session_id(&resp);
    let answer = site.pending_answer(&id).await.unwrap();
    assert_eq!(site.check(&c, &answer.to_lowercase()).await, "ok");
    // The same answer again: the challenge was consumed.
    assert_eq!(site.check(&c, &answer).await, "missing");
}

#[tokio::test]
async fn a_wrong_answer_consumes_the_challenge() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let resp = site.image(&c, "").await;
    let id = session_id(&resp);
    let answer = site.pending_answer(&id).await.unwrap();
    assert_eq!(site.check(&c, "zzzz").await, "wrong");
    assert_eq!(
        site.check(&c, &answer).await,
        "missing",
        "a second try on the same image was allowed"
    );
}

#[tokio::test]
async fn a_new_image_replaces_the_old_answer() {
    let site = spawn(100, 100, Some("same")).await;
    let c = client();
    site.image(&c, "").await;
    site.image(&c, "").await;
    assert_eq!(site.check(&c, "SAME").await, "ok");
    assert_eq!(site.check(&c, "same").await, "missing");
}

#[tokio::test]
async fn answers_expire_after_five_minutes() {
    let site = spawn(100, 100, Some("abcd")).await;
    let c = client();
    site.image(&c, "").await;
    site.clock.advance(301);
    assert_eq!(site.check(&c, "abcd").await, "expired");
    site.image(&c, "").await;
    site.clock.advance(299);
    assert_eq!(site.check(&c, "abcd").await, "ok");
}

#[tokio::test]
async fn new_images_are_limited_per_session() {
    let site = spawn(3, 100, None).await;
    let c = client();
    // The first image creates the session; from then on the session's own limit counts.
    assert_eq!(site.image(&c, "").await.status(), 200);
    for _ in 0..3 {
        assert_eq!(site.image(&c, "").await.status(), 200);
    }
    assert_eq!(site.image(&c, "").await.status(), 429);
    // Another session from the same address is not affected by this session's limit.
    assert_eq!(site.image(&client(), "").await.status(), 200);
    site.clock.advance(60);
    assert_eq!(site.image(&c, "").await.status(), 200);
}

#[tokio::test]
async fn new_images_are_limited_per_address() {
    let site = spawn(100, 4, None).await;
    for _ in 0..4 {
        assert_eq!(site.image(&client(), "?ip=10.9.8.7").await.status(), 200);
    }
    assert_eq!(site.image(&client(), "?ip=10.9.8.7").await.status(), 429);
    assert_eq!(site.image(&client(), "?ip=10.9.8.6").await.status(), 200);
}

#[tokio::test]
async fn test_mode_still_allows_one_try_per_image() {
    let site = spawn(100, 100, Some("test-captcha")).await;
    let c = client();
    site.image(&c, "").await;
    assert_eq!(site.check(&c, "test-captcha").await, "ok");
    assert_eq!(site.check(&c, "test-captcha").await, "missing");
}

#[tokio::test]
async fn chinese_images_use_only_the_common_set_and_decode_to_their_size() {
    let site = spawn(1000, 1000, None).await;
    let c = client();
    let set = charset(Mode::Chinese);
    for _ in 0..30 {
        let resp = site.image(&c, "?mode=zh").await;
        let id = session_id(&resp);
        let png = resp.bytes().await.unwrap();
        let answer = site.pending_answer(&id).await.unwrap();
        assert_eq!(
            answer.chars().count(),
            Style::for_mode(Mode::Chinese).length
        );
        assert!(
            answer.chars().all(|ch| set.contains(&ch)),
            "{answer} has a character outside the set"
        );
        let style = Style::for_mode(Mode::Chinese);
        let (w, h, _) = png_size_and_chunks(&png);
        assert_eq!((w, h), (style.width, style.height));
    }
}

#[tokio::test]
async fn latin_png_is_the_size_asked_and_small() {
    let site = spawn(1000, 1000, None).await;
    let c = client();
    for _ in 0..20 {
        let png = site.image(&c, "").await.bytes().await.unwrap();
        let (w, h, _) = png_size_and_chunks(&png);
        let style = Style::for_mode(Mode::Latin);
        assert_eq!((w, h), (style.width, style.height));
        assert!(png.len() <= 12 * 1024, "{} bytes", png.len());
    }
}

#[test]
fn outcomes_have_messages_for_people() {
    for o in [Outcome::Wrong, Outcome::Expired, Outcome::Missing] {
        assert!(!o.message().is_empty());
    }
}
