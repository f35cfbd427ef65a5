//! The session store conformance suite, run against every store Portico ships.
//!
//! PostgreSQL and Redis are real services: `PORTICO_TEST_POSTGRES_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/test`) and `PORTICO_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`), and a Redis Cluster (`PORTICO_TEST_REDIS_CLUSTER`, default the
//! three masters on 127.0.0.1:7101-7103). `scripts/services` starts them when they are not running.

use std::sync::Arc;

use portico::session::SessionStore;

fn postgres_url() -> String {
    std::env::var("PORTICO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("PORTICO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

mod memory {
    use super::*;
    portico::session_store_conformance!(async {
        Arc::new(portico::session::MemoryStore::default()) as Arc<dyn SessionStore>
    });
}

mod sqlite {
    use super::*;
    async fn make() -> Arc<dyn SessionStore> {
        Arc::new(
            portico::session::SqliteStore::open(&temp_db())
                .await
                .unwrap(),
        )
    }
    portico::session_store_conformance!(make());

    fn temp_db() -> String {
        let dir = std::env::temp_dir().join(format!("portico-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}", dir.join("sessions.sqlite3").display())
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// The store answers reads from memory; reads racing with writes must never leave an older
    /// value there than the one the last answered write stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_racing_writes_never_see_an_older_value() {
        use portico::session::{Changes, Record, StorageKey};
        let store = portico::session::SqliteStore::open(&temp_db())
            .await
            .unwrap();
        let store = Arc::new(store);
        let key = StorageKey::of("racing");
        let t = now();
        let record = Record {
            data: [("v".to_string(), "0".to_string())].into(),
            created_at: t,
            expires_at: t + 3600,
        };
        store.create(&key, &record).await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (store, key, stop) = (store.clone(), key.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.load(&key, t).await.unwrap().unwrap();
                    tokio::task::yield_now().await;
                }
            }));
        }
        for i in 1..=300 {
            let changes = Changes {
                set: vec![("v".into(), i.to_string())],
                remove: vec![],
            };
            assert!(store.update(&key, &changes, t + 3600, t).await.unwrap());
            let seen = store.load(&key, t).await.unwrap().unwrap();
            assert_eq!(seen.data["v"], i.to_string(), "read {i} saw an older value");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
    }

    /// Creates `n` sessions concurrently, live for an hour from `t`: session `i` gets the id and
    /// the value of key `n` that `made(i)` answers. Panics if any create fails.
    async fn create_at_once(
        store: &Arc<portico::session::SqliteStore>,
        n: usize,
        t: i64,
        made: impl Fn(usize) -> (String, String),
    ) {
        use portico::session::{Record, StorageKey};
        let mut tasks = Vec::new();
        for i in 0..n {
            let (id, value) = made(i);
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let record = Record {
                    data: [("n".to_string(), value)].into(),
                    created_at: t,
                    expires_at: t + 3600,
                };
                store.create(&StorageKey::of(&id), &record).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }

    /// Writes are committed before they are answered: a store opened afterwards on the same
    /// file (a restart) finds every session that was created, 500 of them written at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answered_writes_survive_a_restart() {
        use portico::session::StorageKey;
        let url = temp_db();
        let t = now();
        {
            let store = Arc::new(portico::session::SqliteStore::open(&url).await.unwrap());
            create_at_once(&store, 500, t, |i| (format!("s{i}"), i.to_string())).await;
        }
        let reopened = portico::session::SqliteStore::open(&url).await.unwrap();
        for i in 0..500 {
            let rec = reopened
                .load(&StorageKey::of(&format!("s{i}")), t)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("session s{i} was lost"));
            assert_eq!(rec.data["n"], i.to_string());
        }
    }

    /// Commits are copied from the write-ahead log into the database file shortly after they
    /// are made, long before the log holds the 1,000 pages at which the writer itself would copy
    /// them: the checkpointer thread does it, off the writer's path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_reach_the_database_file_without_a_full_log() {
        let url = temp_db();
        let file = std::path::PathBuf::from(url.trim_start_matches("sqlite://"));
        let store = Arc::new(portico::session::SqliteStore::open(&url).await.unwrap());
        let empty = std::fs::metadata(&file).unwrap().len();
        let t = now();
        let filler = "x".repeat(200);
        create_at_once(&store, 400, t, |i| {
            (format!("c{i}"), format!("\"{i}{filler}\""))
        })
        .await;
        // 400 sessions of ≈ 300 bytes: about 30 pages, far below the writer's 1,000.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut size = empty;
        while std::time::Instant::now() < deadline {
            size = std::fs::metadata(&file).unwrap().len();
            if size >= empty + 100_000 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "the database file stayed at {size} bytes (empty: {empty}): nothing was checkpointed"
        );
    }

    #[tokio::test]
    async fn an_in_memory_url_is_refused_with_a_reason() {
        let err = portico::session::SqliteStore::open("sqlite::memory:")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs a file"), "{err}");
    }
}

mod postgres {
    use super::*;
    async fn make() -> Arc<dyn SessionStore> {
        Arc::new(
            portico::session::PostgresStore::open(&postgres_url())
                .await
                .unwrap(),
        )
    }
    portico::session_store_conformance!(make());
}

mod redis_cluster {
    use super::*;
    async fn make() -> Arc<dyn SessionStore> {
        let nodes = std::env::var("PORTICO_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
            "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103".into()
        });
        let nodes: Vec<&str> = nodes.split(',').collect();
        Arc::new(portico::session::RedisStore::cluster(&nodes).unwrap())
    }
    portico::session_store_conformance!(make());
}

mod redis {
    use super::*;
    async fn make() -> Arc<dyn SessionStore> {
        Arc::new(portico::session::RedisStore::open(&redis_url()).unwrap())
    }
    portico::session_store_conformance!(make());
}

/// The Redis store with its local copy of hot sessions: the whole contract, plus what the copy
/// adds — a change made through another store (another server) is seen, reads served from the
/// copy really cost no round trip, and a lost connection never leaves an old copy served.
mod redis_cached {
    use super::*;
    use portico::session::{Changes, Record, RedisStore, StorageKey};
    use std::time::{Duration, Instant};

    fn cached() -> RedisStore {
        RedisStore::open(&redis_url())
            .unwrap()
            .with_local_cache(1000)
    }

    async fn make() -> Arc<dyn SessionStore> {
        Arc::new(cached())
    }
    portico::session_store_conformance!(make());

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn fresh_key() -> StorageKey {
        StorageKey::of(&format!("cached-{}", rand::random::<u64>()))
    }

    fn record(v: &str, t: i64) -> Record {
        Record {
            data: [("v".to_string(), v.to_string())].into(),
            created_at: t,
            expires_at: t + 3600,
        }
    }

    fn set(v: &str) -> Changes {
        Changes {
            set: vec![("v".into(), v.into())],
            remove: vec![],
        }
    }

    /// Waits (at most 2 s) until `store` has applied more invalidation messages than `before`.
    async fn message_applied(store: &RedisStore, before: u64) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while store.cache_stats().invalidations <= before {
            assert!(Instant::now() < deadline, "Redis's message never came");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn repeated_reads_are_served_from_the_copy() {
        let store = cached();
        let key = fresh_key();
        let t = now();
        store.create(&key, &record("1", t)).await.unwrap();
        for _ in 0..20 {
            assert_eq!(store.load(&key, t).await.unwrap(), Some(record("1", t)));
        }
        let stats = store.cache_stats();
        assert!(stats.hits >= 15, "{stats:?}");
        assert!(stats.misses >= 1, "the first read goes to Redis: {stats:?}");
    }

    #[tokio::test]
    async fn a_change_made_by_another_server_replaces_the_copy() {
        let (a, b) = (cached(), cached());
        let key = fresh_key();
        let t = now();
        a.create(&key, &record("1", t)).await.unwrap();
        assert_eq!(a.load(&key, t).await.unwrap(), Some(record("1", t)));
        assert_eq!(a.load(&key, t).await.unwrap(), Some(record("1", t)));
        assert!(a.cache_stats().hits >= 1);

        let before = a.cache_stats().invalidations;
        assert!(b.update(&key, &set("2"), t + 3600, t).await.unwrap());
        message_applied(&a, before).await;
        // The first read after Redis's message, and every one after it, has the new value.
        for _ in 0..20 {
            assert_eq!(a.load(&key, t).await.unwrap(), Some(record("2", t)));
        }
    }

    #[tokio::test]
    async fn a_logout_on_another_server_ends_the_session_here() {
        let (a, b) = (cached(), cached());
        let key = fresh_key();
        let t = now();
        a.create(&key, &record("1", t)).await.unwrap();
        assert!(a.load(&key, t).await.unwrap().is_some());
        assert!(a.load(&key, t).await.unwrap().is_some());

        let before = a.cache_stats().invalidations;
        b.delete(&key).await.unwrap();
        message_applied(&a, before).await;
        for _ in 0..20 {
            assert_eq!(a.load(&key, t).await.unwrap(), None);
        }
    }

    /// This server's own write is read back at once, never the copy from before it.
    #[tokio::test]
    async fn own_writes_are_read_back_at_once() {
        let store = cached();
        let key = fresh_key();
        let t = now();
        store.create(&key, &record("0", t)).await.unwrap();
        for i in 1..=50 {
            assert!(store.load(&key, t).await.unwrap().is_some());
            let v = i.to_string();
            assert!(store.update(&key, &set(&v), t + 3600, t).await.unwrap());
            assert_eq!(store.load(&key, t).await.unwrap(), Some(record(&v, t)));
        }
        let taken = store.take(&key, "v", t).await.unwrap();
        assert_eq!(taken.as_deref(), Some("50"));
        assert_eq!(
            store.load(&key, t).await.unwrap().map(|r| r.data),
            Some(Default::default())
        );
    }

    /// Readers hammer a session on server A while server B writes it 200 times: once Redis's
    /// message about each write has reached A, A reads that value, and no reader ever goes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_on_one_server_follow_writes_on_another_in_order() {
        let a = Arc::new(cached());
        let b = cached();
        let key = fresh_key();
        let t = now();
        a.create(&key, &record("0", t)).await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (a, key, stop) = (a.clone(), key.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut last = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = a.load(&key, t).await.unwrap().unwrap();
                    let v: u64 = r.data["v"].parse().unwrap();
                    assert!(v >= last, "read {v} after {last}");
                    last = v;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for i in 1..=200u64 {
            // A has read since the last message, so Redis tracks the key again.
            let before = a.cache_stats().invalidations;
            assert!(b
                .update(&key, &set(&i.to_string()), t + 3600, t)
                .await
                .unwrap());
            message_applied(&a, before).await;
            let got = a.load(&key, t).await.unwrap().unwrap().data["v"].clone();
            assert_eq!(got, i.to_string(), "A did not follow B's write {i}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        assert!(a.cache_stats().hits > 0, "{:?}", a.cache_stats());
    }

    /// A redis-server of the test's own on a free port (killing connections on the shared one
    /// would break the tests running beside this one); stopped when dropped.
    struct PrivateRedis(std::process::Child, u16);

    impl PrivateRedis {
        fn start() -> PrivateRedis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (scripts/services installs it)");
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            PrivateRedis(child, port)
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.1)
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Redis drops the connection (a restart, a failover, `CLIENT KILL`) and the session changes
    /// meanwhile, so no message about it will ever come on that connection: the old copy is never
    /// served again, and the new value is read once Redis answers.
    #[tokio::test]
    async fn after_a_lost_connection_the_old_copy_is_never_served() {
        let redis = PrivateRedis::start();
        let a = RedisStore::open(&redis.url())
            .unwrap()
            .with_local_cache(100);
        let key = fresh_key();
        let t = now();
        a.create(&key, &record("old", t)).await.unwrap();
        assert!(a.load(&key, t).await.unwrap().is_some());
        assert!(a.load(&key, t).await.unwrap().is_some());
        assert!(a.cache_stats().hits >= 1);

        let client = ::redis::Client::open(redis.url()).unwrap();
        let mut admin = client.get_multiplexed_async_connection().await.unwrap();
        let killed: i64 = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 1, "the store's connection was killed");
        let b = RedisStore::open(&redis.url()).unwrap();
        assert!(b.update(&key, &set("new"), t + 3600, t).await.unwrap());

        // Past the quarter second a silent connection's copy may still be served.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match a.load(&key, t).await {
                // The dead connection may fail a request before it is replaced.
                Err(_) => {}
                Ok(r) => {
                    assert_eq!(r, Some(record("new", t)), "the old copy was served");
                    break;
                }
            }
            assert!(Instant::now() < deadline, "no answer after the reconnect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
