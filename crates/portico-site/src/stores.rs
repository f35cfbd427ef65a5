//! Opening what the site keeps its data in, as the settings name it: the models' database and
//! the session store.

use std::sync::Arc;

use portico::session::{MemoryStore, PostgresStore, RedisStore, SessionStore, SqliteStore};

use crate::config::DataConfig;
use crate::db::Db;
use crate::{models, BoxError};

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Applies the migrations, then gives accounts from before usernames had keys their keys.
pub async fn migrate(db: &Db) -> Result<(), BoxError> {
    db.migrate().await?;
    models::users::backfill_username_keys(db).await?;
    Ok(())
}

/// The models' database, created if missing (SQLite); its URL is redacted in the error.
pub async fn open_db(data: &DataConfig) -> Result<Db, BoxError> {
    data.ensure_data_dir()?;
    let url = data.database_url();
    Db::connect(&url, data.db_connections)
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", redact(&url)).into())
}

/// The session store `data.session_store` names: `sqlite` (a file in the data folder),
/// `sqlite:...`, `memory`, `redis://...`, `redis+cluster://host:port,...` or `postgres://...`.
pub async fn open_store(data: &DataConfig) -> Result<Arc<dyn SessionStore>, BoxError> {
    data.ensure_data_dir()?;
    let spec = data.session_store.trim();
    let store: Arc<dyn SessionStore> = if spec == "sqlite" {
        let url = format!(
            "sqlite://{}",
            data.data_dir.join("sessions.sqlite3").display()
        );
        Arc::new(SqliteStore::open(&url).await?)
    } else if spec.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(spec).await?)
    } else if spec == "memory" {
        Arc::new(MemoryStore::default())
    } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        Arc::new(RedisStore::open(spec)?.with_local_cache(data.session_cache))
    } else if let Some(nodes) = spec.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        Arc::new(RedisStore::cluster(&refs)?)
    } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        Arc::new(PostgresStore::open(spec).await?)
    } else {
        return Err(format!("unknown PORTICO_SESSION_STORE {spec:?}: use sqlite, memory, redis://..., redis+cluster://host:port,... or postgres://...").into());
    };
    Ok(store)
}
