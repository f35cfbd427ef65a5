use std::collections::HashMap;

use super::layer::is_secret_field;
use super::source::pattern_matches;
use super::token::{b64, check, TOKEN_LEN};
use super::*;
use base64::Engine;

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn every_token_is_different_and_valid() {
    let secret = [1u8; 32];
    let a = mint(&secret, 100);
    let b = mint(&secret, 100);
    assert_ne!(a, b);
    assert_eq!(verify(Some(&secret), &a, 100, 10), Ok(()));
    assert_eq!(verify(Some(&secret), &b, 100, 10), Ok(()));
    assert!(!a.contains(&b64().encode(secret)));
}

#[test]
fn truncated_and_garbage_tokens_are_malformed() {
    let secret = [1u8; 32];
    let t = mint(&secret, 100);
    assert_eq!(
        verify(Some(&secret), &t[..t.len() - 3], 100, 10),
        Err(Reason::Malformed)
    );
    assert_eq!(
        verify(Some(&secret), "!!!!", 100, 10),
        Err(Reason::Malformed)
    );
    assert_eq!(verify(Some(&secret), "", 100, 10), Err(Reason::Missing));
}

#[test]
fn a_flipped_bit_is_foreign() {
    let secret = [1u8; 32];
    let mut raw = b64().decode(mint(&secret, 100)).unwrap();
    raw[TOKEN_LEN - 1] ^= 1;
    assert_eq!(
        verify(Some(&secret), &b64().encode(raw), 100, 10),
        Err(Reason::Foreign)
    );
}

#[test]
fn token_without_a_session_secret_is_foreign() {
    let t = mint(&[1u8; 32], 100);
    assert_eq!(verify(None, &t, 100, 10), Err(Reason::Foreign));
}

#[test]
fn without_a_secret_an_old_token_is_expired_and_a_fresh_one_says_why() {
    let t = mint(&[1u8; 32], 100);
    assert_eq!(
        check(Err(Reason::NoCookie), &t, 111, 10),
        Err(Reason::Expired)
    );
    assert_eq!(
        check(Err(Reason::NoCookie), &t, 105, 10),
        Err(Reason::NoCookie)
    );
    assert_eq!(
        check(Err(Reason::BadCookie), &t, 105, 10),
        Err(Reason::BadCookie)
    );
    assert_eq!(
        check(Err(Reason::NoCookie), "", 105, 10),
        Err(Reason::Missing)
    );
    assert_eq!(
        check(Err(Reason::NoCookie), "x!", 105, 10),
        Err(Reason::Malformed)
    );
    assert_eq!(check(Ok(&[1u8; 32]), &t, 105, 10), Ok(()));
    assert_eq!(check(Ok(&[2u8; 32]), &t, 105, 10), Err(Reason::Foreign));
}

#[test]
fn every_reason_has_its_own_code_and_a_message() {
    let all: HashMap<&str, &str> = Reason::ALL
        .into_iter()
        .map(|r| (r.code(), r.message()))
        .collect();
    assert_eq!(all.len(), 10);
    assert!(all.values().all(|m| m.ends_with('.')));
}

#[test]
fn cross_site_fetch_metadata_is_refused() {
    let c = CsrfConfig::default();
    let h = headers(&[("host", "site.test"), ("sec-fetch-site", "cross-site")]);
    assert_eq!(c.check_source(&h), Err(Reason::CrossSite));
    let h = headers(&[
        ("host", "site.test"),
        ("sec-fetch-site", "same-origin"),
        ("origin", "http://site.test"),
    ]);
    assert_eq!(c.check_source(&h), Ok(()));
}

#[test]
fn trusted_origin_is_accepted_even_when_marked_cross_site() {
    let c = CsrfConfig {
        trusted_origins: vec!["https://admin.partner.test".into()],
        ..CsrfConfig::default()
    };
    let h = headers(&[
        ("host", "site.test"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://admin.partner.test"),
    ]);
    assert_eq!(c.check_source(&h), Ok(()));
    let h = headers(&[
        ("host", "site.test"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.test"),
    ]);
    assert_eq!(c.check_source(&h), Err(Reason::CrossSite));
}

#[test]
fn origins_on_allowed_hosts_are_own_but_any_host_is_not() {
    let c = CsrfConfig {
        allowed_hosts: AllowedHosts::parse(["*", ".portico.test"]).unwrap(),
        ..CsrfConfig::default()
    };
    let check = |o: &str| {
        c.check_source(&headers(&[
            ("host", "news.portico.test:8080"),
            ("origin", o),
        ]))
    };
    assert_eq!(check("http://news.portico.test:8080"), Ok(()));
    assert_eq!(check("http://sports.portico.test:8080"), Ok(()));
    assert_eq!(
        check("http://sports.portico.test:9090"),
        Err(Reason::BadOrigin)
    );
    assert_eq!(
        check("https://sports.portico.test:8080"),
        Err(Reason::BadOrigin)
    );
    assert_eq!(check("http://evil.test:8080"), Err(Reason::BadOrigin));
}

#[test]
fn origin_must_be_ours_or_trusted() {
    let c = CsrfConfig {
        trusted_origins: vec!["https://*.partner.test".into(), "http://admin.test".into()],
        ..CsrfConfig::default()
    };
    let check = |o: &str| c.check_source(&headers(&[("host", "site.test:8000"), ("origin", o)]));
    assert_eq!(check("http://site.test:8000"), Ok(()));
    assert_eq!(check("http://evil.test"), Err(Reason::BadOrigin));
    assert_eq!(check("null"), Err(Reason::BadOrigin));
    assert_eq!(check("https://site.test:8000"), Err(Reason::BadOrigin));
    assert_eq!(check("http://admin.test"), Ok(()));
    assert_eq!(check("https://a.partner.test"), Ok(()));
    assert_eq!(check("https://evilpartner.test"), Err(Reason::BadOrigin));
}

#[test]
fn https_without_origin_needs_a_same_origin_referer() {
    let c = CsrfConfig {
        https: true,
        ..CsrfConfig::default()
    };
    let check = |h: &[(&str, &str)]| c.check_source(&headers(h));
    assert_eq!(check(&[("host", "site.test")]), Err(Reason::BadReferer));
    assert_eq!(
        check(&[("host", "site.test"), ("referer", "https://evil.test/x")]),
        Err(Reason::BadReferer)
    );
    assert_eq!(
        check(&[
            ("host", "site.test"),
            ("referer", "https://site.test/accounts/login/")
        ]),
        Ok(())
    );
}

#[test]
fn exemption_patterns_match_segments() {
    assert!(pattern_matches("/hooks/{name}/", "/hooks/x/"));
    assert!(!pattern_matches("/hooks/{name}/", "/hooks/x/y/"));
    assert!(!pattern_matches("/hooks/{name}/", "/hooks//"));
    assert!(pattern_matches("/static/{*rest}", "/static/a/b.css"));
    assert!(!pattern_matches("/a/", "/b/"));
}

#[test]
fn passwords_are_never_echoed() {
    assert!(is_secret_field("password"));
    assert!(is_secret_field("password2"));
    assert!(is_secret_field(FORM_FIELD));
    assert!(!is_secret_field("username"));
}
