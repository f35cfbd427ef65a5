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
        let dir = std::env::temp_dir().join(format!("portico-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("sessions.sqlite3").display());
        Arc::new(portico::session::SqliteStore::open(&url).await.unwrap())
    }
    portico::session_store_conformance!(make());
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
