//! The session-bound captcha over real HTTP: where the answer lives, one try per image, expiry
//! with an injected clock, rate limits, and what the images are made of.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use portico::captcha::{
    charset, Captcha, CaptchaConfig, IssueError, Mode, Outcome, Style, SESSION_KEY,
};
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
    let sessions = SessionLayer::new(
        store.clone(),
        SessionConfig {
            clock: clock.clone(),
            ..SessionConfig::default()
        },
    );
    let routes = Router::new()
        .route("/captcha/", get(image))
        .route("/captcha/audio/", get(audio))
        .route("/check/", post(check))
        .route("/check-any/", post(check_any));
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
    async fn get(&self, c: &reqwest::Client, path: &str) -> reqwest::Response {
        c.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    /// Posts `answer` to a checking view and answers its plain-text verdict.
    async fn answer(&self, c: &reqwest::Client, path: &str, answer: &str) -> String {
        c.post(format!("{}{path}", self.base))
            .form(&[("captcha", answer)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The answer pending under `key`, read from the server-side store (where only the server
    /// can see it).
    async fn pending(&self, session_id: &str, key: &str) -> Option<String> {
        let storage = portico::session::StorageKey::of(session_id);
        let rec = self.store.load(&storage, self.clock.now()).await.unwrap()?;
        let pending: serde_json::Value = serde_json::from_str(rec.data.get(key)?).unwrap();
        pending["answer"].as_str().map(String::from)
    }

    async fn image(&self, c: &reqwest::Client, query: &str) -> reqwest::Response {
        self.get(c, &format!("/captcha/{query}")).await
    }

    async fn check(&self, c: &reqwest::Client, answer: &str) -> String {
        self.answer(c, "/check/", answer).await
    }

    async fn pending_answer(&self, session_id: &str) -> Option<String> {
        self.pending(session_id, SESSION_KEY).await
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

// ---------------------------------------------------------------------------------------------
// The audio challenge: the recording, its answer, and how it shares one try with the image.

use portico::captcha::{render_wav, Voice, AUDIO_SESSION_KEY};

async fn audio(
    session: Session,
    Extension(cfg): Extension<Arc<CaptchaConfig>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let voice = q
        .get("lang")
        .and_then(|l| Voice::parse(l))
        .unwrap_or(Voice::English);
    match Captcha::issue_audio(&session, &cfg, voice, addr.ip()).await {
        Ok(wav) => (
            [
                (header::CONTENT_TYPE, "audio/wav"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            wav,
        )
            .into_response(),
        Err(IssueError::Limited(_)) => {
            (axum::http::StatusCode::TOO_MANY_REQUESTS, "slow down").into_response()
        }
        Err(IssueError::Session(e)) => e.into_response(),
    }
}

/// Answers "<reason> <challenge>", e.g. "ok audio_en" or "missing -".
async fn check_any(
    session: Session,
    Extension(cfg): Extension<Arc<CaptchaConfig>>,
    params: Params,
) -> Response {
    match Captcha::verify_any(&session, &cfg, params.get("captcha").unwrap_or("")).await {
        Ok((outcome, challenge)) => format!(
            "{} {}",
            outcome.reason(),
            challenge.map_or("-", |c| c.as_str())
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

impl Site {
    async fn audio(&self, c: &reqwest::Client, lang: &str) -> reqwest::Response {
        self.get(c, &format!("/captcha/audio/?lang={lang}")).await
    }

    async fn check_any(&self, c: &reqwest::Client, answer: &str) -> String {
        self.answer(c, "/check-any/", answer).await
    }

    async fn pending_audio(&self, session_id: &str) -> Option<String> {
        self.pending(session_id, AUDIO_SESSION_KEY).await
    }
}

/// The format and the samples of a WAV file, read with `hound`.
fn wav_spec_and_samples(bytes: &[u8]) -> (hound::WavSpec, Vec<i16>) {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV file");
    let spec = reader.spec();
    let samples = reader.into_samples::<i16>().map(|s| s.unwrap()).collect();
    (spec, samples)
}

#[tokio::test]
async fn a_recording_is_a_16khz_mono_wav_of_four_to_seven_seconds() {
    let site = spawn(1000, 1000, None).await;
    let c = client();
    for lang in ["en", "zh"] {
        for _ in 0..10 {
            let resp = site.audio(&c, lang).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "audio/wav");
            assert_eq!(resp.headers()["cache-control"], "no-store");
            let wav = resp.bytes().await.unwrap();
            let (spec, samples) = wav_spec_and_samples(&wav);
            assert_eq!(spec.sample_rate, 16_000);
            assert_eq!(spec.channels, 1);
            assert_eq!(spec.bits_per_sample, 16);
            assert_eq!(spec.sample_format, hound::SampleFormat::Int);
            let seconds = samples.len() as f64 / 16_000.0;
            assert!((4.0..=7.0).contains(&seconds), "{lang}: {seconds} s");
            assert!(
                (100_000..=250_000).contains(&wav.len()),
                "{lang}: {} bytes",
                wav.len()
            );
            // Normalised to 90 % of full scale, never clipped.
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((29_000..=29_500).contains(&peak), "{lang}: peak {peak}");
        }
    }
}

#[tokio::test]
async fn audio_answers_are_five_digits_and_mandarin_leaves_out_1_and_7() {
    let site = spawn(1000, 1000, None).await;
    let mut seen_en = std::collections::HashSet::new();
    for lang in ["en", "zh"] {
        for _ in 0..40 {
            let resp = site.audio(&client(), lang).await;
            let answer = site.pending_audio(&session_id(&resp)).await.unwrap();
            assert_eq!(answer.len(), 5, "{answer}");
            assert!(answer.bytes().all(|b| b.is_ascii_digit()), "{answer}");
            if lang == "zh" {
                assert!(!answer.contains(['1', '7']), "{answer}");
            } else {
                seen_en.extend(answer.chars());
            }
        }
    }
    // 200 English digits: 1 and 7 are among them (a 1 in 10^9 chance of a false failure each).
    assert!(
        seen_en.contains(&'1') && seen_en.contains(&'7'),
        "{seen_en:?}"
    );
}

#[tokio::test]
async fn two_recordings_of_the_same_digits_differ() {
    let mut rng = rand::thread_rng();
    let a = render_wav("40285", Voice::English, &mut rng);
    let b = render_wav("40285", Voice::English, &mut rng);
    assert_ne!(a, b);
    // Not only the noise: the timing differs too (random pauses and speeds give other lengths).
    let lengths: std::collections::HashSet<usize> = (0..8)
        .map(|_| render_wav("40285", Voice::Mandarin, &mut rng).len())
        .collect();
    assert!(lengths.len() > 1, "{lengths:?}");
}

#[tokio::test]
async fn a_recording_replaces_the_picture() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.image(&c, "").await);
    let image_answer = site.pending_answer(&id).await.unwrap();
    site.audio(&c, "en").await;
    assert_eq!(site.pending_answer(&id).await, None);
    let audio_answer = site.pending_audio(&id).await.unwrap();
    assert_eq!(site.check_any(&c, &image_answer).await, "wrong audio_en");
    assert_eq!(site.check_any(&c, &audio_answer).await, "missing -");

    site.image(&c, "").await;
    site.audio(&c, "en").await;
    let audio_answer = site.pending_audio(&id).await.unwrap();
    assert_eq!(site.check_any(&c, &audio_answer).await, "ok audio_en");
    assert_eq!(site.check_any(&c, &audio_answer).await, "missing -");
}

#[tokio::test]
async fn a_new_picture_replaces_the_recording() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.audio(&c, "zh").await);
    let audio_answer = site.pending_audio(&id).await.unwrap();
    site.image(&c, "?mode=zh").await;
    assert_eq!(site.pending_audio(&id).await, None);
    let image_answer = site.pending_answer(&id).await.unwrap();
    assert_eq!(site.check_any(&c, &audio_answer).await, "wrong zh");
    assert_eq!(site.check_any(&c, &image_answer).await, "missing -");

    site.audio(&c, "zh").await;
    site.image(&c, "?mode=zh").await;
    let image_answer = site.pending_answer(&id).await.unwrap();
    assert_eq!(site.check_any(&c, &image_answer).await, "ok zh");
    assert_eq!(site.check_any(&c, &image_answer).await, "missing -");
}

#[tokio::test]
async fn a_wrong_answer_spends_the_challenge() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.audio(&c, "en").await);
    let audio_answer = site.pending_audio(&id).await.unwrap();
    let wrong = if audio_answer == "00000" {
        "22222"
    } else {
        "00000"
    };
    assert_eq!(site.check_any(&c, wrong).await, "wrong audio_en");
    assert_eq!(site.check_any(&c, &audio_answer).await, "missing -");

    site.image(&c, "").await;
    let image_answer = site.pending_answer(&id).await.unwrap();
    assert_eq!(site.check_any(&c, "zzzz").await, "wrong latin");
    assert_eq!(site.check_any(&c, &image_answer).await, "missing -");
}

#[tokio::test]
async fn a_recording_alone_can_be_answered_with_spaces_between_digits() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.audio(&c, "en").await);
    let answer = site.pending_audio(&id).await.unwrap();
    let spaced: String = answer.chars().flat_map(|d| [d, ' ']).collect();
    assert_eq!(site.check_any(&c, &spaced).await, "ok audio_en");
    // The older API accepts it too, and reports the digits it was typed in.
    site.audio(&c, "en").await;
    let answer = site.pending_audio(&id).await.unwrap();
    assert_eq!(site.check(&c, &answer).await, "ok");
}

#[tokio::test]
async fn audio_answers_expire_after_five_minutes() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.audio(&c, "zh").await);
    let answer = site.pending_audio(&id).await.unwrap();
    site.clock.advance(301);
    assert_eq!(site.check_any(&c, &answer).await, "expired audio_zh");
    assert_eq!(site.check_any(&c, &answer).await, "missing -");
}

#[tokio::test]
async fn an_expired_image_does_not_spoil_a_fresh_recording() {
    let site = spawn(100, 100, None).await;
    let c = client();
    let id = session_id(&site.image(&c, "").await);
    site.clock.advance(200);
    site.audio(&c, "en").await;
    site.clock.advance(200);
    let answer = site.pending_audio(&id).await.unwrap();
    assert_eq!(site.check_any(&c, &answer).await, "ok audio_en");
    assert_eq!(site.pending_answer(&id).await, None);
}

#[tokio::test]
async fn recordings_count_against_the_image_limits() {
    let site = spawn(3, 100, None).await;
    let c = client();
    assert_eq!(site.image(&c, "").await.status(), 200);
    assert_eq!(site.audio(&c, "en").await.status(), 200);
    assert_eq!(site.image(&c, "").await.status(), 200);
    assert_eq!(site.audio(&c, "zh").await.status(), 200);
    assert_eq!(site.audio(&c, "en").await.status(), 429);
    assert_eq!(site.image(&c, "").await.status(), 429);
    site.clock.advance(60);
    assert_eq!(site.audio(&c, "en").await.status(), 200);
}

#[tokio::test]
async fn audio_test_mode_still_allows_one_try() {
    let site = spawn(100, 100, Some("test-captcha")).await;
    let c = client();
    let resp = site.audio(&c, "en").await;
    assert_eq!(resp.status(), 200);
    // The test answer is no digits: the recording speaks random ones, still a full recording.
    assert!(resp.bytes().await.unwrap().len() > 100_000);
    assert_eq!(site.check_any(&c, "test-captcha").await, "ok audio_en");
    assert_eq!(site.check_any(&c, "test-captcha").await, "missing -");
}

#[test]
fn audio_outcomes_speak_of_the_recording() {
    let audio = Some(portico::captcha::Challenge::Audio(Voice::English));
    for o in [Outcome::Wrong, Outcome::Expired, Outcome::Missing] {
        assert!(o.message_for(audio).contains("recording"), "{o:?}");
        assert_eq!(o.message_for(None), o.message());
    }
}
