//! One conformance suite for every [`SessionStore`]: the rules of the trait, as test functions.
//!
//! Portico runs it against the memory, SQLite, PostgreSQL and Redis stores; a store written for
//! another backend can run it too with [`crate::session_store_conformance!`]. Each function panics
//! with a message when the store breaks a rule. Each works in its own fresh session keys, so the
//! suite may run against a store that holds other data.
//!
//! Test code only: the module and its macro are built with the `conformance` feature, which a
//! store's tests enable (`portico = { features = ["conformance"] }` under `[dev-dependencies]`).

use std::sync::Arc;

use rand::RngCore;

use super::store::{Changes, Record, SessionStore, StorageKey};

/// A start time well inside `i64` seconds so that expiry arithmetic never overflows, and close to
/// the real clock so that stores relying on server TTLs (Redis) keep what they are given.
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn fresh_key() -> StorageKey {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    StorageKey::of(&hex::encode(b))
}

fn record(pairs: &[(&str, &str)], created_at: i64, expires_at: i64) -> Record {
    Record {
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        created_at,
        expires_at,
    }
}

/// An unknown session loads as `None`.
pub async fn unknown_session_is_none(store: Arc<dyn SessionStore>) {
    assert!(
        store.load(&fresh_key(), now()).await.unwrap().is_none(),
        "an unknown key loaded"
    );
}

/// What `create` stores, `load` returns exactly, JSON text and unusual keys included.
pub async fn create_then_load_round_trips(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let rec = record(
        &[
            ("user", "\"ada\""),
            ("n", "42"),
            ("demo.ünïcode key:*", "{\"a\":[1,2]}"),
            ("empty", "\"\""),
        ],
        t,
        t + 3600,
    );
    store.create(&key, &rec).await.unwrap();
    let loaded = store
        .load(&key, t)
        .await
        .unwrap()
        .expect("created session must load");
    assert_eq!(loaded, rec);
}

/// A session with no keys still exists.
pub async fn empty_session_exists(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store.create(&key, &record(&[], t, t + 3600)).await.unwrap();
    let loaded = store
        .load(&key, t)
        .await
        .unwrap()
        .expect("an empty session must load");
    assert!(loaded.data.is_empty());
}

/// `update` sets and removes only the keys it names and moves the expiry.
pub async fn update_writes_only_changed_keys(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(
            &key,
            &record(&[("a", "1"), ("b", "2"), ("c", "3")], t, t + 100),
        )
        .await
        .unwrap();
    let changes = Changes {
        set: vec![("b".into(), "20".into()), ("d".into(), "4".into())],
        remove: vec!["c".into()],
    };
    assert!(
        store.update(&key, &changes, t + 500, t).await.unwrap(),
        "update of a live session answered false"
    );
    let loaded = store.load(&key, t).await.unwrap().unwrap();
    assert_eq!(
        loaded,
        record(&[("a", "1"), ("b", "20"), ("d", "4")], t, t + 500)
    );
}

/// `update` of a session that does not exist answers false and creates nothing.
pub async fn update_of_missing_session_writes_nothing(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    let changes = Changes {
        set: vec![("a".into(), "1".into())],
        remove: vec![],
    };
    assert!(!store.update(&key, &changes, t + 100, t).await.unwrap());
    assert!(
        store.load(&key, t).await.unwrap().is_none(),
        "update resurrected a missing session"
    );
}

/// `update` after `delete` (a logout on another server) does not bring the session back.
pub async fn update_after_delete_does_not_resurrect(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("user", "\"ada\"")], t, t + 100))
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    let changes = Changes {
        set: vec![("user".into(), "\"eve\"".into())],
        remove: vec![],
    };
    assert!(!store.update(&key, &changes, t + 100, t).await.unwrap());
    assert!(store.load(&key, t).await.unwrap().is_none());
}

/// An expired session neither loads nor accepts updates.
pub async fn expired_session_is_gone(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("a", "1")], t, t + 60))
        .await
        .unwrap();
    assert!(store.load(&key, t + 59).await.unwrap().is_some());
    assert!(
        store.load(&key, t + 60).await.unwrap().is_none(),
        "a session loaded at its expiry time"
    );
    let changes = Changes {
        set: vec![("b".into(), "2".into())],
        remove: vec![],
    };
    assert!(
        !store.update(&key, &changes, t + 600, t + 61).await.unwrap(),
        "an expired session was updated"
    );
    assert!(store.load(&key, t + 61).await.unwrap().is_none());
}

/// `delete` removes the session; deleting twice is fine.
pub async fn delete_removes_session(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("a", "1")], t, t + 60))
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(store.load(&key, t).await.unwrap().is_none());
}

/// `delete_expired` removes expired sessions and keeps live ones.
pub async fn delete_expired_keeps_live_sessions(store: Arc<dyn SessionStore>) {
    let t = now();
    let live = fresh_key();
    let dead = fresh_key();
    store
        .create(&live, &record(&[("a", "1")], t, t + 1000))
        .await
        .unwrap();
    store
        .create(&dead, &record(&[("a", "1")], t, t + 10))
        .await
        .unwrap();
    store.delete_expired(t + 20).await.unwrap();
    assert!(
        store.load(&live, t + 20).await.unwrap().is_some(),
        "delete_expired removed a live session"
    );
    assert!(
        store.load(&dead, t + 5).await.unwrap().is_none()
            || store.load(&dead, t + 20).await.unwrap().is_none()
    );
}

/// Sessions do not see each other's keys.
pub async fn sessions_are_isolated(store: Arc<dyn SessionStore>) {
    let t = now();
    let a = fresh_key();
    let b = fresh_key();
    store
        .create(&a, &record(&[("k", "\"a\"")], t, t + 100))
        .await
        .unwrap();
    store
        .create(&b, &record(&[("k", "\"b\"")], t, t + 100))
        .await
        .unwrap();
    let changes = Changes {
        set: vec![("k".into(), "\"a2\"".into())],
        remove: vec![],
    };
    store.update(&a, &changes, t + 100, t).await.unwrap();
    assert_eq!(store.load(&b, t).await.unwrap().unwrap().data["k"], "\"b\"");
}

/// 200 concurrent updates of one session, each writing its own key, lose nothing.
pub async fn concurrent_writes_of_different_keys_all_land(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("start", "0")], t, t + 3600))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let changes = Changes {
                set: vec![(format!("k{i}"), i.to_string())],
                remove: vec![],
            };
            store.update(&key, &changes, t + 3600, t).await
        }));
    }
    for task in tasks {
        assert!(
            task.await.unwrap().unwrap(),
            "a concurrent update answered false"
        );
    }
    let loaded = store.load(&key, t).await.unwrap().unwrap();
    for i in 0..200 {
        assert_eq!(
            loaded.data.get(&format!("k{i}")).map(String::as_str),
            Some(i.to_string().as_str()),
            "key k{i} was lost"
        );
    }
    assert_eq!(loaded.data.len(), 201);
}

/// `take` answers a key's value once and removes it; the other keys stay.
pub async fn take_answers_the_value_once(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(
            &key,
            &record(&[("once", "\"code\""), ("keep", "1")], t, t + 100),
        )
        .await
        .unwrap();
    assert_eq!(
        store.take(&key, "once", t).await.unwrap().as_deref(),
        Some("\"code\"")
    );
    assert_eq!(
        store.take(&key, "once", t).await.unwrap(),
        None,
        "a key was taken twice"
    );
    let loaded = store.load(&key, t).await.unwrap().unwrap();
    assert_eq!(loaded, record(&[("keep", "1")], t, t + 100));
}

/// `take` of a key that is not set answers `None` and changes nothing.
pub async fn take_of_a_missing_key_is_none(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("a", "1")], t, t + 100))
        .await
        .unwrap();
    assert_eq!(store.take(&key, "absent", t).await.unwrap(), None);
    assert_eq!(
        store.load(&key, t).await.unwrap().unwrap(),
        record(&[("a", "1")], t, t + 100)
    );
    assert_eq!(store.take(&fresh_key(), "a", t).await.unwrap(), None);
}

/// 50 concurrent takes of one key: exactly one answers the value.
pub async fn concurrent_takes_have_exactly_one_winner(store: Arc<dyn SessionStore>) {
    let key = fresh_key();
    let t = now();
    store
        .create(&key, &record(&[("captcha", "\"answer\"")], t, t + 3600))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.take(&key, "captcha", t).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if let Some(v) = task.await.unwrap().unwrap() {
            assert_eq!(v, "\"answer\"");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "{winners} concurrent takes won one key");
}

/// `take` in a deleted or expired session answers `None` and does not bring the session back.
pub async fn take_from_a_gone_session_is_none_and_does_not_resurrect(store: Arc<dyn SessionStore>) {
    let t = now();
    let deleted = fresh_key();
    store
        .create(&deleted, &record(&[("k", "1")], t, t + 100))
        .await
        .unwrap();
    store.delete(&deleted).await.unwrap();
    assert_eq!(store.take(&deleted, "k", t).await.unwrap(), None);
    assert!(
        store.load(&deleted, t).await.unwrap().is_none(),
        "a take resurrected a deleted session"
    );

    let expired = fresh_key();
    store
        .create(&expired, &record(&[("k", "1")], t, t + 60))
        .await
        .unwrap();
    assert_eq!(
        store.take(&expired, "k", t + 61).await.unwrap(),
        None,
        "a value was taken from an expired session"
    );
    assert!(store.load(&expired, t + 61).await.unwrap().is_none());
}

fn fresh_counter() -> String {
    let mut b = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut b);
    format!("conformance:{}", hex::encode(b))
}

/// A counter counts from 1, takes attempts back without going below zero, and is gone once
/// deleted.
pub async fn counters_count_up_down_and_delete(store: Arc<dyn SessionStore>) {
    let name = fresh_counter();
    let t = now();
    for n in 1..=3 {
        assert_eq!(store.incr_counter(&name, t + 600, t).await.unwrap(), n);
    }
    store.decr_counter(&name, t).await.unwrap();
    assert_eq!(store.incr_counter(&name, t + 600, t).await.unwrap(), 3);
    for _ in 0..5 {
        store.decr_counter(&name, t).await.unwrap();
    }
    assert_eq!(
        store.incr_counter(&name, t + 600, t).await.unwrap(),
        1,
        "a counter went below zero"
    );
    store.delete_counter(&name).await.unwrap();
    store.delete_counter(&name).await.unwrap();
    assert_eq!(store.incr_counter(&name, t + 600, t).await.unwrap(), 1);
    let unknown = fresh_counter();
    store.decr_counter(&unknown, t).await.unwrap();
    assert_eq!(store.incr_counter(&unknown, t + 600, t).await.unwrap(), 1);
    assert_eq!(
        store
            .incr_counter(&fresh_counter(), t + 600, t)
            .await
            .unwrap(),
        1,
        "counters are apart"
    );
}

/// 100 concurrent increments of one counter answer 1 to 100, each once.
pub async fn concurrent_increments_each_get_their_own_count(store: Arc<dyn SessionStore>) {
    let name = fresh_counter();
    let t = now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            let name = name.clone();
            tokio::spawn(async move { store.incr_counter(&name, t + 600, t).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
}

/// A counter starts again from zero once its expiry has passed. The expiry is two seconds ahead
/// of the real clock, and the test waits for it, for stores whose server expires keys by itself.
pub async fn an_expired_counter_starts_again(store: Arc<dyn SessionStore>) {
    let name = fresh_counter();
    let t = now();
    assert_eq!(store.incr_counter(&name, t + 2, t).await.unwrap(), 1);
    assert_eq!(store.incr_counter(&name, t + 2, t).await.unwrap(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let later = now();
    assert!(later > t + 2);
    store.decr_counter(&name, later).await.unwrap();
    assert_eq!(
        store.incr_counter(&name, later + 600, later).await.unwrap(),
        1,
        "an expired count went on"
    );
    store.delete_expired(later).await.unwrap();
    assert_eq!(
        store.incr_counter(&name, later + 600, later).await.unwrap(),
        2,
        "delete_expired removed a live counter"
    );
}

/// Generates one `#[tokio::test]` per conformance rule for the store that `$make` (an async
/// expression giving an `Arc<dyn SessionStore>`) builds.
#[macro_export]
macro_rules! session_store_conformance {
    ($make:expr) => {
        $crate::session_store_conformance!(@tests $make;
            unknown_session_is_none, create_then_load_round_trips, empty_session_exists,
            update_writes_only_changed_keys, update_of_missing_session_writes_nothing,
            update_after_delete_does_not_resurrect, expired_session_is_gone, delete_removes_session,
            delete_expired_keeps_live_sessions, sessions_are_isolated,
            concurrent_writes_of_different_keys_all_land, take_answers_the_value_once,
            take_of_a_missing_key_is_none, concurrent_takes_have_exactly_one_winner,
            take_from_a_gone_session_is_none_and_does_not_resurrect,
            counters_count_up_down_and_delete, concurrent_increments_each_get_their_own_count,
            an_expired_counter_starts_again);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::session::SessionStore> = $make.await;
                $crate::session::conformance::$name(store).await;
            }
        )*
    };
}
