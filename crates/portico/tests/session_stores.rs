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
