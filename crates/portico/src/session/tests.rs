use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::Unsaved;
use super::id::{new_id, well_formed, ID_LEN, ORDER_LEN};
use super::*;
use crate::clock::Clock;

fn layer(clock: Clock) -> (SessionLayer, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    (
        SessionLayer::new(
            store.clone(),
            SessionConfig {
                clock,
                ..SessionConfig::default()
            },
        ),
        store,
    )
}

fn set_cookie(resp: &Response) -> Option<String> {
    resp.headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Saves `s` as the layer does on the way out and answers the response it decorated.
async fn saved(s: &Session) -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    s.save(&mut resp).await.unwrap();
    resp
}

fn session_for(layer: &SessionLayer, cookie: Option<&str>) -> Session {
    Session::new(cookie.map(String::from), layer.shared.clone())
}

fn id_from(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test]
async fn untouched_session_does_nothing() {
    let (layer, store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    let resp = saved(&s).await;
    assert!(set_cookie(&resp).is_none());
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_response_that_read_the_session_is_kept_out_of_caches() {
    let (layer, _store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    assert_eq!(s.get::<String>("user").await.unwrap(), None);
    let resp = saved(&s).await;
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "private, no-store");
    assert_eq!(resp.headers()[header::VARY], "Cookie");

    let untouched = saved(&session_for(&layer, None)).await;
    assert!(untouched.headers().get(header::CACHE_CONTROL).is_none());
    assert!(untouched.headers().get(header::VARY).is_none());
}

#[tokio::test]
async fn a_view_that_chose_its_caching_keeps_it_and_gains_vary_cookie() {
    let (layer, _store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    s.insert("k", "v").await.unwrap();
    let mut resp = Response::new(axum::body::Body::empty());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    s.save(&mut resp).await.unwrap();
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store, max-age=0");
    let vary: Vec<_> = resp.headers().get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Cookie"]);

    let mut already = Response::new(axum::body::Body::empty());
    already
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept, COOKIE"));
    s.save(&mut already).await.unwrap();
    assert_eq!(already.headers().get_all(header::VARY).iter().count(), 1);
}

#[tokio::test]
async fn write_creates_session_with_safe_cookie() {
    let (layer, store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    s.insert("user", "ada").await.unwrap();
    let resp = saved(&s).await;
    let c = set_cookie(&resp).unwrap();
    assert!(c.starts_with("sessionid="), "{c}");
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"),
        "{c}"
    );
    assert!(!c.contains("Domain"), "{c}");
    assert_eq!(id_from(&c).len(), ID_LEN);
    assert_eq!(store.len(), 1);
    let again = session_for(&layer, Some(&id_from(&c)));
    assert_eq!(
        again.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
}

#[test]
fn storage_keys_of_new_ids_sort_in_creation_order() {
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(new_id());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let keys: Vec<StorageKey> = ids.iter().map(|id| StorageKey::of(id)).collect();
    for pair in keys.windows(2) {
        assert!(pair[0].as_str() < pair[1].as_str(), "{pair:?}");
    }
    for (id, key) in ids.iter().zip(&keys) {
        assert!(well_formed(id), "{id}");
        let (order, random) = id.split_at(ORDER_LEN);
        assert!(key.as_str().starts_with(order));
        assert_eq!(key.as_str().len(), ORDER_LEN + 64);
        assert!(!key.as_str().contains(random), "the key hides the id");
    }
}

#[test]
fn ids_of_other_shapes_are_not_well_formed() {
    let id = new_id();
    let (order, random) = id.split_at(ORDER_LEN);
    assert!(!well_formed(&format!("{}{random}", order.to_uppercase())));
    assert!(!well_formed(&format!("g{}{random}", &order[1..])));
    assert!(!well_formed(&format!("{order}{}!", &random[1..])));
    assert!(!well_formed(&id[1..]));
    assert!(!well_formed(&format!("{id}A")));
    assert!(well_formed(&"A".repeat(43)), "ids of earlier versions");
}

#[tokio::test]
async fn a_session_of_an_earlier_id_format_still_loads() {
    let (layer, store) = layer(Clock::manual(1_000));
    let legacy = "Zq".repeat(21) + "x";
    let record = Record {
        data: HashMap::from([("user".to_string(), "\"ada\"".to_string())]),
        created_at: 900,
        expires_at: 5_000,
    };
    store
        .create(&StorageKey::of(&legacy), &record)
        .await
        .unwrap();
    let s = session_for(&layer, Some(&legacy));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
}

#[tokio::test]
async fn unknown_id_is_not_adopted() {
    let (layer, store) = layer(Clock::manual(1_000));
    let forged = "A".repeat(43);
    let s = session_for(&layer, Some(&forged));
    s.insert("k", &1).await.unwrap();
    let resp = saved(&s).await;
    let id = id_from(&set_cookie(&resp).unwrap());
    assert_ne!(id, forged);
    assert!(store
        .load(&StorageKey::of(&forged), 1_000)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn idle_timeout_is_enforced_by_the_server() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.mark_authenticated().await.unwrap();
    s.insert("user", "ada").await.unwrap();
    let resp = saved(&s).await;
    let id = id_from(&set_cookie(&resp).unwrap());
    clock.advance(14 * 24 * 3600 - 10);
    assert!(session_for(&layer, Some(&id))
        .get::<String>("user")
        .await
        .unwrap()
        .is_some());
    clock.advance(11);
    // The browser would still send the cookie; the server no longer honours it.
    assert!(session_for(&layer, Some(&id))
        .get::<String>("user")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn reading_keeps_an_active_session_alive() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.mark_authenticated().await.unwrap();
    s.insert("user", "ada").await.unwrap();
    let resp = saved(&s).await;
    let id = id_from(&set_cookie(&resp).unwrap());
    // Four visits five days apart: 20 days in all, past the 14-day idle timeout, inside the
    // 30-day absolute one.
    for _ in 0..4 {
        clock.advance(5 * 24 * 3600);
        let s = session_for(&layer, Some(&id));
        assert!(s.get::<String>("user").await.unwrap().is_some());
        let resp = saved(&s).await;
        assert!(
            set_cookie(&resp).is_some(),
            "the refreshed expiry is sent to the browser"
        );
    }
}

/// A store whose writes all fail, as on a full disk; reads go to `inner`.
#[derive(Debug, Default)]
struct ReadOnly {
    inner: MemoryStore,
}

#[async_trait::async_trait]
impl SessionStore for ReadOnly {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        self.inner.load(key, now).await
    }
    async fn create(&self, _: &StorageKey, _: &Record) -> Result<(), StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn update(
        &self,
        _: &StorageKey,
        _: &Changes,
        _: i64,
        _: i64,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn delete(&self, _: &StorageKey) -> Result<(), StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn delete_expired(&self, _: i64) -> Result<u64, StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn take(&self, _: &StorageKey, _: &str, _: i64) -> Result<Option<String>, StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn incr_counter(&self, _: &str, _: i64, _: i64) -> Result<u64, StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn decr_counter(&self, _: &str, _: i64) -> Result<(), StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
    async fn delete_counter(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Backend("database or disk is full".into()))
    }
}

#[tokio::test]
async fn a_refresh_the_store_refuses_still_answers_the_page_but_a_change_does_not() {
    let clock = Clock::manual(1_000);
    let store = Arc::new(ReadOnly::default());
    let record = Record {
        data: HashMap::from([("user".to_string(), "\"ada\"".to_string())]),
        created_at: 1_000,
        expires_at: 1_000 + 14 * 24 * 3600,
    };
    let id = new_id();
    store
        .inner
        .create(&StorageKey::of(&id), &record)
        .await
        .unwrap();
    let config = SessionConfig {
        clock: clock.clone(),
        ..SessionConfig::default()
    };
    let layer = SessionLayer::new(store, config);
    // A week later a read is due to move the idle expiry; the store refuses.
    clock.advance(7 * 24 * 3600);
    let s = session_for(&layer, Some(&id));
    assert!(s.get::<String>("user").await.unwrap().is_some());
    let mut resp = Response::new(axum::body::Body::empty());
    s.save(&mut resp)
        .await
        .expect("a refused refresh is no error");
    assert!(
        set_cookie(&resp).is_none(),
        "no cookie for an expiry not moved"
    );

    let s = session_for(&layer, Some(&id));
    s.insert("note", "kept").await.unwrap();
    let mut resp = Response::new(axum::body::Body::empty());
    assert!(
        s.save(&mut resp).await.is_err(),
        "a refused change is an error"
    );
}

#[tokio::test]
async fn cycle_id_keeps_data_but_drops_id_bound_keys() {
    let (layer, store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    s.insert("user", "ada").await.unwrap();
    s.insert("__csrf", "secret").await.unwrap();
    let resp = saved(&s).await;
    let old = id_from(&set_cookie(&resp).unwrap());
    let s = session_for(&layer, Some(&old));
    s.cycle_id().await.unwrap();
    let resp = saved(&s).await;
    let new = id_from(&set_cookie(&resp).unwrap());
    assert_ne!(old, new);
    assert!(
        store
            .load(&StorageKey::of(&old), 1_000)
            .await
            .unwrap()
            .is_none(),
        "the old id still works"
    );
    let s = session_for(&layer, Some(&new));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(s.get::<String>("__csrf").await.unwrap(), None);
}

/// Stores a session holding `pairs` and answers its id.
async fn stored(layer: &SessionLayer, pairs: &[(&str, &str)]) -> String {
    let s = session_for(layer, None);
    for (k, v) in pairs {
        s.insert(k, v).await.unwrap();
    }
    id_from(&set_cookie(&saved(&s).await).unwrap())
}

#[tokio::test]
async fn of_two_requests_that_take_one_key_only_one_gets_it() {
    let (layer, store) = layer(Clock::manual(1_000));
    let id = stored(&layer, &[("code", "1234"), ("keep", "x")]).await;
    let first = session_for(&layer, Some(&id));
    let second = session_for(&layer, Some(&id));
    // Both loaded the session while the code was there.
    assert!(first.contains("code").await.unwrap());
    assert!(second.contains("code").await.unwrap());
    assert_eq!(
        first.take::<String>("code").await.unwrap().as_deref(),
        Some("1234")
    );
    assert_eq!(second.take::<String>("code").await.unwrap(), None);
    assert!(!second.contains("code").await.unwrap());
    let rec = store
        .load(&StorageKey::of(&id), 1_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!rec.data.contains_key("code"), "the store still holds it");
    assert!(rec.data.contains_key("keep"));
}

#[tokio::test]
async fn a_value_inserted_in_the_same_request_is_taken_locally() {
    let (layer, store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    s.insert("code", "1").await.unwrap();
    s.insert("other", "2").await.unwrap();
    assert_eq!(
        s.take::<String>("code").await.unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(s.take::<String>("code").await.unwrap(), None);
    let id = id_from(&set_cookie(&saved(&s).await).unwrap());
    let rec = store
        .load(&StorageKey::of(&id), 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.data.len(), 1);
}

#[tokio::test]
async fn take_after_cycle_id_still_decides_in_the_store() {
    let (layer, _) = layer(Clock::manual(1_000));
    let id = stored(&layer, &[("code", "1")]).await;
    let cycling = session_for(&layer, Some(&id));
    let other = session_for(&layer, Some(&id));
    assert!(other.contains("code").await.unwrap());
    cycling.cycle_id().await.unwrap();
    assert_eq!(
        other.take::<String>("code").await.unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(cycling.take::<String>("code").await.unwrap(), None);
}

fn capped(max_keys: usize, max_bytes: usize) -> (SessionLayer, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let config = SessionConfig {
        max_keys,
        max_bytes,
        clock: Clock::manual(1_000),
        ..SessionConfig::default()
    };
    (SessionLayer::new(store.clone(), config), store)
}

#[tokio::test]
async fn an_insert_past_a_cap_is_refused_and_changes_nothing() {
    let (layer, _) = capped(3, 40);
    let s = session_for(&layer, None);
    s.insert("a", "1").await.unwrap();
    s.insert("b", "2").await.unwrap();
    s.insert("c", "3").await.unwrap();
    let err = s.insert("d", "4").await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::TooLarge {
                keys: 4,
                max_keys: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!s.contains("d").await.unwrap());
    // Replacing a value keeps the key count.
    s.insert("c", "30").await.unwrap();
    let err = s.insert("c", &"x".repeat(40)).await.unwrap_err();
    assert!(matches!(err, SessionError::TooLarge { max_bytes: 40, .. }));
    assert_eq!(s.get::<String>("c").await.unwrap().as_deref(), Some("30"));
    let resp = err.into_response();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(resp.extensions().get::<Unsaved>().is_some());
}

#[tokio::test]
async fn a_session_over_a_lowered_cap_may_still_shrink() {
    let (big, store) = capped(64, 1_000);
    let s = session_for(&big, None);
    s.insert("a", &"x".repeat(100)).await.unwrap();
    s.insert("b", &"y".repeat(100)).await.unwrap();
    let id = id_from(&set_cookie(&saved(&s).await).unwrap());
    let small = SessionLayer::new(
        store,
        SessionConfig {
            max_keys: 1,
            max_bytes: 50,
            clock: Clock::manual(1_000),
            ..SessionConfig::default()
        },
    );
    let s = session_for(&small, Some(&id));
    s.insert("a", "short").await.unwrap();
    assert!(s.insert("c", "1").await.is_err());
    assert!(s.insert("b", &"y".repeat(200)).await.is_err());
}

#[test]
fn a_cookie_sent_twice_counts_as_none() {
    let headers = |values: &[&str]| {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    };
    let one = headers(&["a=1; sessionid=abc; b=2"]);
    assert_eq!(
        session_cookie_in(&one, "sessionid"),
        CookieId::One("abc".into())
    );
    for twice in [
        headers(&["sessionid=abc; sessionid=def"]),
        headers(&["sessionid=abc", "other=1; sessionid=abc"]),
    ] {
        assert_eq!(session_cookie_in(&twice, "sessionid"), CookieId::Duplicate);
    }
    assert_eq!(
        session_cookie_in(&headers(&["xsessionid=1"]), "sessionid"),
        CookieId::Absent
    );
}

#[test]
fn host_prefixed_names_need_secure_and_no_domain() {
    let config = |name: &str, secure: bool, domain: Option<&str>| SessionConfig {
        cookie_name: name.into(),
        cookie_secure: secure,
        cookie_domain: domain.map(String::from),
        ..SessionConfig::default()
    };
    assert!(config("__Host-sessionid", true, None).validate().is_ok());
    assert!(matches!(
        config("__Host-sessionid", false, None).validate(),
        Err(ConfigError::HostPrefixNeedsSecure(_))
    ));
    assert!(matches!(
        config("__host-sid", true, Some(".example.com")).validate(),
        Err(ConfigError::HostPrefixWithDomain(_))
    ));
    assert!(matches!(
        config("__Secure-sid", false, None).validate(),
        Err(ConfigError::SecurePrefixNeedsSecure(_))
    ));
    assert!(config("__Secure-sid", true, Some(".example.com"))
        .validate()
        .is_ok());
    assert!(matches!(
        config("a b", false, None).validate(),
        Err(ConfigError::BadName(_))
    ));
    assert!(SessionConfig::default().validate().is_ok());
}

#[tokio::test]
async fn absolute_timeout_ends_an_active_session() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.mark_authenticated().await.unwrap();
    s.insert("user", "ada").await.unwrap();
    let resp = saved(&s).await;
    let id = id_from(&set_cookie(&resp).unwrap());
    // Active every day for 31 days: the idle timeout never fires, the absolute one does.
    for _ in 0..31 {
        clock.advance(24 * 3600);
        let s = session_for(&layer, Some(&id));
        let user = s.get::<String>("user").await.unwrap();
        saved(&s).await;
        if user.is_none() {
            assert!(clock.now() - 1_000 >= 30 * 24 * 3600 - 24 * 3600);
            return;
        }
    }
    panic!("session outlived the absolute timeout");
}
fn max_age(set_cookie: &str) -> Option<i64> {
    set_cookie
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn a_session_not_marked_as_a_users_goes_after_the_short_idle_timeout() {
    let clock = Clock::manual(1_000);
    let (layer, store) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.insert("__captcha", "answer").await.unwrap();
    let resp = saved(&s).await;
    let c = set_cookie(&resp).unwrap();
    assert_eq!(max_age(&c), Some(3600), "{c}");
    let id = id_from(&c);
    clock.advance(3600 - 1);
    assert!(session_for(&layer, Some(&id))
        .contains("__captcha")
        .await
        .unwrap());
    clock.advance(3600);
    assert!(!session_for(&layer, Some(&id))
        .contains("__captcha")
        .await
        .unwrap());
    assert_eq!(store.delete_expired(clock.now()).await.unwrap(), 1);
    assert!(store.is_empty());
}

#[tokio::test]
async fn reads_keep_an_anonymous_session_alive_past_its_short_timeout() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.insert("k", "v").await.unwrap();
    let id = id_from(&set_cookie(&saved(&s).await).unwrap());
    // A read every 40 minutes for 4 hours: each one pushes the hour forward.
    for _ in 0..6 {
        clock.advance(40 * 60);
        let s = session_for(&layer, Some(&id));
        assert!(s.contains("k").await.unwrap(), "at {}", clock.now());
        saved(&s).await;
    }
}

#[tokio::test]
async fn login_marks_the_session_and_gives_it_the_long_idle_timeout() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.insert("__captcha", "answer").await.unwrap();
    let anon = id_from(&set_cookie(&saved(&s).await).unwrap());

    let s = session_for(&layer, Some(&anon));
    s.cycle_id().await.unwrap();
    s.mark_authenticated().await.unwrap();
    s.insert("user", "ada").await.unwrap();
    let c = set_cookie(&saved(&s).await).unwrap();
    assert_eq!(max_age(&c), Some(14 * 24 * 3600), "{c}");
    let user = id_from(&c);
    clock.advance(13 * 24 * 3600);
    let s = session_for(&layer, Some(&user));
    assert_eq!(
        s.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );

    // Logout flushes the mark with everything else: the next session is anonymous again.
    s.flush().await.unwrap();
    s.insert("k", "v").await.unwrap();
    let c = set_cookie(&saved(&s).await).unwrap();
    assert_eq!(max_age(&c), Some(3600), "{c}");
}

#[test]
fn the_sweep_runs_four_times_per_anonymous_timeout() {
    let mut config = SessionConfig::default();
    assert_eq!(config.cleanup_interval(), Duration::from_secs(900));
    config.anonymous_idle_timeout = time::Duration::seconds(2);
    assert_eq!(config.cleanup_interval(), Duration::from_secs(1));
    config.anonymous_idle_timeout = time::Duration::days(30);
    assert_eq!(
        config.cleanup_interval(),
        Duration::from_secs(3600),
        "bounded by the (shorter) idle timeout, then by an hour"
    );
}

#[tokio::test]
async fn status_says_what_the_request_did_with_the_session() {
    let (layer, _) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    assert_eq!(s.status().await, Status::Untouched);
    assert_eq!(s.get::<String>("k").await.unwrap(), None);
    assert_eq!(s.status().await, Status::Absent);
    s.insert("k", "v").await.unwrap();
    assert_eq!(s.status().await, Status::Started);
    let id = id_from(&set_cookie(&saved(&s).await).unwrap());

    let kept = session_for(&layer, Some(&id));
    kept.get::<String>("k").await.unwrap();
    assert_eq!(kept.status().await, Status::Kept);
    kept.cycle_id().await.unwrap();
    assert_eq!(kept.status().await, Status::Renewed);
    let id = id_from(&set_cookie(&saved(&kept).await).unwrap());

    let ended = session_for(&layer, Some(&id));
    ended.flush().await.unwrap();
    assert_eq!(ended.status().await, Status::Ended);

    // Logging in without a session first is a renewal, never a start.
    let fresh = session_for(&layer, None);
    fresh.cycle_id().await.unwrap();
    fresh.insert("user", "ada").await.unwrap();
    assert_eq!(fresh.status().await, Status::Renewed);
}

#[tokio::test]
async fn a_session_whose_writes_are_discarded_is_not_created_and_sets_no_cookie() {
    let (layer, store) = layer(Clock::manual(1_000));
    let s = session_for(&layer, None);
    s.insert("visits", &1).await.unwrap();
    s.discard_writes().await;
    s.insert("more", &2).await.unwrap();
    let resp = saved(&s).await;
    assert!(set_cookie(&resp).is_none());
    assert!(store.is_empty());

    // Nor is a stale cookie removed: the response sets no cookie at all.
    let stale = session_for(&layer, Some(&"A".repeat(43)));
    stale.discard_writes().await;
    assert_eq!(stale.get::<String>("k").await.unwrap(), None);
    assert!(set_cookie(&saved(&stale).await).is_none());
}

#[tokio::test]
async fn discarded_writes_leave_a_session_that_came_with_the_request_as_it_was() {
    let clock = Clock::manual(1_000);
    let (layer, _) = layer(clock.clone());
    let s = session_for(&layer, None);
    s.insert("k", "v").await.unwrap();
    let id = id_from(&set_cookie(&saved(&s).await).unwrap());
    // Late enough that a read would refresh the idle expiry.
    clock.advance(3000);
    let s = session_for(&layer, Some(&id));
    s.discard_writes().await;
    s.insert("k2", "v2").await.unwrap();
    s.flush().await.unwrap();
    let resp = saved(&s).await;
    assert!(set_cookie(&resp).is_none());
    let again = session_for(&layer, Some(&id));
    assert!(again.contains("k").await.unwrap());
    assert!(!again.contains("k2").await.unwrap());
}
