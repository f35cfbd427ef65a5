//! Properties of every parser a client's bytes reach, over generated input: query strings and
//! form bodies, multipart text fields, the `Cookie` header (as the cookie jar and the session layer
//! read it), session ids, CSRF tokens and signed cookies. None may panic, whatever arrives; each
//! refuses bad input with a typed error (or, for a cookie, by treating it as absent), and each
//! gives back exactly what a well-behaved client sent.
//!
//! Everything goes through the public API, the way a site uses it. Each property runs 256 cases;
//! the whole file takes a few seconds.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use portico::cookies::{Cookie, CookieDefaults, CookieLayer, Cookies};
use portico::csrf::{mint, verify};
use portico::params::{Params, ParamsError, Query, QueryDict, MAX_FIELDS};
use portico::secret::SecretKey;
use portico::session::{MemoryStore, Session, SessionConfig, SessionError, SessionLayer};
use proptest::prelude::*;
use tower::ServiceExt;

const CASES: u32 = 256;
const TTL: i64 = 12 * 3600;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}

// ---------------------------------------------------------------- query strings and form bodies

/// Percent-encodes every byte but the unreserved ones, spaces as `%20` and hex in lower case:
/// another client's spelling than `form_urlencoded`'s `+` and upper case.
fn encode_strictly(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn pairs_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
    // Names from a small set, so that names repeat; values anything at all.
    let name = prop_oneof![
        "[a-c]",
        any::<String>(),
        Just("hobby".to_string()),
        Just(String::new())
    ];
    prop::collection::vec((name, any::<String>()), 0..24)
}

/// Bytes rich in what the decoder reacts to: escapes, separators, `+`, and bytes above ASCII.
fn form_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        Just(b'%'),
        Just(b'&'),
        Just(b'='),
        Just(b'+'),
        prop::sample::select(b"0123456789abcdefABCDEFgz".to_vec()),
        any::<u8>(),
    ];
    prop::collection::vec(byte, 0..256)
}

fn check_lookups(dict: &QueryDict, pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    let got: Vec<(&str, &str)> = dict.iter().collect();
    let want: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    prop_assert_eq!(got, want);
    for (name, _) in pairs {
        let values: Vec<&str> = pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        prop_assert_eq!(dict.getlist(name), values.clone());
        prop_assert_eq!(dict.get(name), values.last().copied());
        prop_assert!(dict.contains(name));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn decoding_any_bytes_answers_pairs_or_a_typed_refusal(input in form_bytes()) {
        match QueryDict::parse_bytes(&input) {
            Ok(dict) => prop_assert!(dict.len() <= MAX_FIELDS),
            Err(ParamsError::BadEscape { .. } | ParamsError::BadUtf8 { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
        }
    }

    #[test]
    fn encoded_pairs_decode_to_themselves_with_getlist_in_order(pairs in pairs_strategy()) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (n, v) in &pairs {
            form.append_pair(n, v);
        }
        let encoded = form.finish();
        check_lookups(&QueryDict::parse(&encoded).expect("a valid encoding"), &pairs)?;

        let strict: Vec<String> = pairs
            .iter()
            .map(|(n, v)| format!("{}={}", encode_strictly(n), encode_strictly(v)))
            .collect();
        // Empty pieces between separators are skipped, as browsers send them sometimes.
        let strict = strict.join("&&");
        check_lookups(&QueryDict::parse(&strict).expect("a valid encoding"), &pairs)?;
    }

    #[test]
    fn more_fields_than_the_limit_are_refused(extra in 0usize..3, fewer in 0usize..3) {
        let over = vec!["a=1"; MAX_FIELDS + 1 + extra].join("&");
        prop_assert_eq!(
            QueryDict::parse(&over),
            Err(ParamsError::TooManyFields { max: MAX_FIELDS })
        );
        let at = vec!["a=1"; MAX_FIELDS - fewer].join("&");
        prop_assert_eq!(QueryDict::parse(&at).map(|d| d.len()), Ok(MAX_FIELDS - fewer));
    }

    #[test]
    fn a_broken_escape_is_refused_naming_its_field(
        name in "[a-z]{1,8}",
        before in "[a-z]{0,4}",
        bad in prop_oneof![Just("%"), Just("%4"), Just("%zz"), Just("%g1")],
    ) {
        let input = format!("{name}={before}{bad}");
        prop_assert_eq!(
            QueryDict::parse(&input),
            Err(ParamsError::BadEscape { field: name })
        );
    }
}

// ---------------------------------------------------------------- multipart text fields

const BOUNDARY: &str = "portico-proptest-7MA4YWxkTrZu0gW";

fn multipart_body(pairs: &[(String, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (n, v) in pairs {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(v.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn parse_multipart(body: Vec<u8>) -> Result<Params, ParamsError> {
    let request = Request::builder()
        .method("POST")
        .uri("/form")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .expect("a request");
    Params::from_request(request, &()).await
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn multipart_text_fields_arrive_as_sent(
        pairs in prop::collection::vec(("[\\p{L}\\p{N}_. -]{1,16}", any::<String>()), 0..12)
    ) {
        prop_assume!(pairs.iter().all(|(_, v)| !v.contains(BOUNDARY)));
        let params = block_on(parse_multipart(multipart_body(&pairs))).expect("a valid body");
        check_lookups(&params.form, &pairs)?;
    }

    #[test]
    fn any_multipart_body_answers_fields_or_a_typed_refusal(
        noise in prop::collection::vec(any::<u8>(), 0..512),
        framed in any::<bool>(),
    ) {
        // Half the bodies start like a real one, so the parser gets past the first boundary.
        let mut body = Vec::new();
        if framed {
            body.extend_from_slice(
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(&noise);
        match block_on(parse_multipart(body)) {
            Ok(_) => {}
            Err(ParamsError::Multipart(_) | ParamsError::BadUtf8 { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- cookies, sessions, signatures

/// A site with the cookie and session layers and routes that read and write through them.
fn site() -> Router {
    async fn read(cookies: Cookies, session: Session) -> Result<String, SessionError> {
        let plain = cookies.get("probe").unwrap_or_default();
        let signed = match cookies.get_signed("signed") {
            Some(v) => format!("present:{v}"),
            None => "absent".to_string(),
        };
        let stored: Option<String> = session.get("k").await?;
        Ok(format!(
            "{plain}\n{signed}\n{}",
            stored.unwrap_or_else(|| "-".into())
        ))
    }
    async fn sign(cookies: Cookies, Query(q): Query) -> &'static str {
        let value = q.get("v").unwrap_or("").to_string();
        cookies.set_signed_cookie(Cookie::new("signed", value));
        "signed"
    }
    async fn write(session: Session) -> Result<&'static str, SessionError> {
        session.insert("k", "stored").await?;
        Ok("written")
    }
    let secret = SecretKey::from_bytes([42; 64]);
    Router::new()
        .route("/read", get(read))
        .route("/sign", get(sign))
        .route("/write", post(write))
        .layer(SessionLayer::new(
            Arc::new(MemoryStore::default()),
            SessionConfig::default(),
        ))
        .layer(CookieLayer::new(&secret, CookieDefaults::default()))
}

struct Answer {
    status: StatusCode,
    set_cookies: Vec<String>,
    body: String,
}

async fn call(app: &Router, method: &str, uri: &str, cookie: Option<HeaderValue>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("a request"))
        .await
        .expect("the router never fails");
    let status = resp.status();
    let set_cookies = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ASCII Set-Cookie").to_string())
        .collect();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    Answer {
        status,
        set_cookies,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The value of the cookie `name` among `Set-Cookie` headers, as sent (encoded).
fn set_cookie_pair(answer: &Answer, name: &str) -> Option<String> {
    answer
        .set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
}

/// A shape of a session id the server issues: 16 lowercase hex digits of time, 43 base64url.
fn issued_shape(id: &str) -> bool {
    id.len() == 59
        && id[..16]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id[16..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Header bytes a client may send: anything but control characters.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        Just(b';'),
        Just(b'='),
        Just(b' '),
        Just(b'"'),
        Just(b'%'),
        0x21u8..0x7f,
        0x80u8..=0xff,
    ];
    prop::collection::vec(byte, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_cookie_header_is_read_without_a_panic(bytes in header_bytes()) {
        let app = site();
        let value = HeaderValue::from_bytes(&bytes).expect("no control characters");
        let answer = block_on(call(&app, "GET", "/read", Some(value)));
        prop_assert_eq!(answer.status, StatusCode::OK);
    }

    #[test]
    fn a_cookie_value_arrives_as_sent_among_others(value in any::<String>()) {
        let app = site();
        let probe = Cookie::new("probe", value.clone()).encoded().to_string();
        let header = HeaderValue::from_str(&format!("a=1; {probe}; b=2")).expect("encoded is ASCII");
        let answer = block_on(call(&app, "GET", "/read", Some(header)));
        prop_assert_eq!(answer.status, StatusCode::OK);
        prop_assert_eq!(answer.body.split('\n').next(), Some(value.as_str()));
    }

    #[test]
    fn a_session_id_the_server_did_not_issue_is_never_adopted(
        id in prop_oneof!["[0-9a-f]{16}[A-Za-z0-9_-]{43}", "[A-Za-z0-9_-]{43}", "[!#-:<-~]{0,80}"]
    ) {
        let app = site();
        let cookie = HeaderValue::from_str(&format!("sessionid={id}")).expect("visible ASCII");
        let read = block_on(call(&app, "GET", "/read", Some(cookie.clone())));
        prop_assert_eq!(read.status, StatusCode::OK);
        prop_assert!(read.body.ends_with("\n-"), "an unknown session holds nothing");

        let written = block_on(call(&app, "POST", "/write", Some(cookie)));
        prop_assert_eq!(written.status, StatusCode::OK);
        let pair = set_cookie_pair(&written, "sessionid").expect("a new session cookie");
        let issued = pair.trim_start_matches("sessionid=");
        prop_assert_ne!(issued, id.as_str());
        prop_assert!(issued_shape(issued), "issued id {issued}");

        let again = block_on(call(&app, "GET", "/read", HeaderValue::from_str(&pair).ok()));
        prop_assert!(again.body.ends_with("\nstored"), "the issued id works: {}", again.body);
    }

    #[test]
    fn a_signed_cookie_reads_back_and_any_change_to_it_reads_as_absent(
        value in any::<String>(),
        at in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let app = site();
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("v", &value);
        let signed = block_on(call(&app, "GET", &format!("/sign?{}", q.finish()), None));
        let pair = set_cookie_pair(&signed, "signed").expect("a signed cookie");
        let header = HeaderValue::from_str(&pair).expect("encoded is ASCII");
        let read = block_on(call(&app, "GET", "/read", Some(header)));
        let expected = format!("present:{value}");
        prop_assert_eq!(read.body.split('\n').nth(1), Some(expected.as_str()));

        // One character of the stored value (signature or payload) replaced by another.
        let raw = Cookie::parse_encoded(pair.clone()).expect("our own cookie parses");
        let mut chars: Vec<char> = raw.value().chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let tampered: String = chars.into_iter().collect();
        let forged = Cookie::new("signed", tampered).encoded().to_string();
        let header = HeaderValue::from_str(&forged).expect("encoded is ASCII");
        let read = block_on(call(&app, "GET", "/read", Some(header)));
        prop_assert_eq!(read.body.split('\n').nth(1), Some("absent"));
    }
}

// ---------------------------------------------------------------- CSRF tokens

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_string_is_refused_as_a_token_with_a_reason(
        token in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{50,58}"],
        secret in any::<[u8; 32]>(),
        now in 0i64..4_000_000_000,
    ) {
        prop_assert!(verify(Some(&secret), &token, now, TTL).is_err());
        prop_assert!(verify(None, &token, now, TTL).is_err());
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires(
        secret in any::<[u8; 32]>(),
        now in 0i64..4_000_000_000,
        age in 0i64..=TTL,
    ) {
        let token = mint(&secret, now);
        prop_assert_eq!(verify(Some(&secret), &token, now + age, TTL), Ok(()));
        prop_assert!(verify(Some(&secret), &token, now + TTL + 1, TTL).is_err());
    }

    #[test]
    fn a_token_is_refused_by_another_session(
        secret in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        now in 0i64..4_000_000_000,
    ) {
        prop_assume!(secret != other);
        let token = mint(&secret, now);
        prop_assert!(verify(Some(&other), &token, now, TTL).is_err());
    }

    #[test]
    fn any_single_character_change_is_refused(
        secret in any::<[u8; 32]>(),
        now in 0i64..4_000_000_000,
        at in any::<prop::sample::Index>(),
        replacement in prop_oneof![any::<char>(), prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars().collect::<Vec<_>>()
        )],
    ) {
        let token = mint(&secret, now);
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != replacement);
        chars[i] = replacement;
        let changed: String = chars.into_iter().collect();
        prop_assert!(
            verify(Some(&secret), &changed, now, TTL).is_err(),
            "{token} changed at {i} to {changed} was accepted"
        );
    }
}
