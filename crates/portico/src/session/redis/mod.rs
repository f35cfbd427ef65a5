//! Sessions in Redis: the shared store for many servers.
//!
//! Each session is one Redis hash, `portico:session:<storage key>`: a field `d:<key>` per session
//! key plus `m:created` and `m:expires`, with the key's TTL set to the idle expiry so Redis drops
//! idle sessions by itself. An update runs as one Lua script — check that the session is alive,
//! `HSET` the changed keys, `HDEL` the removed ones, move the expiry — so it is atomic, touches only
//! the changed fields, and never recreates a session that another server deleted at logout.
//!
//! A take is a Lua script too (check that the session is alive, `HGET` the field, `HDEL` it): Redis
//! runs a script alone, so of concurrent takes of one field only one finds it. A counter is its own
//! key, `portico:counter:<name>`, bumped by a script that runs `INCR` and, for a new count, sets the
//! expiry in the same step, so no count is left without one.
//!
//! Every command and script touches a single key, so the store works unchanged on Redis Cluster (sessions
//! shard by id); [`RedisStore::cluster`] connects to one. The connection is made lazily and
//! re-made after a failure, so a Redis that is down at start-up or restarts later only fails the
//! requests that need it while it is away.
//!
//! [`RedisStore::with_local_cache`] keeps hot sessions in the process as well, so that reading one
//! costs no round trip; Redis tells the process when a copy goes stale (see the `cache` module for
//! why a copy Redis has reported changed is never served).

mod cache;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo};
use tokio::sync::Mutex;

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};
pub use cache::CacheStats;
use cache::{Counters, LocalCache};

const UPDATE_SCRIPT: &str = r#"
local exp = redis.call('HGET', KEYS[1], 'm:expires')
if not exp or tonumber(exp) <= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'm:expires', ARGV[1])
local nset = tonumber(ARGV[3])
local i = 4
for _ = 1, nset do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
"#;

const TAKE_SCRIPT: &str = r#"
local exp = redis.call('HGET', KEYS[1], 'm:expires')
if not exp or tonumber(exp) <= tonumber(ARGV[2]) then return false end
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
"#;

const INCR_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIREAT', KEYS[1], ARGV[1])
end
return n
"#;

const DECR_SCRIPT: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n and n > 0 then redis.call('DECR', KEYS[1]) end
return 0
"#;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A RESP3 connection with tracking on, and the copy its invalidations keep right. Not a
    /// `ConnectionManager`: one that reconnected by itself would read untracked.
    Tracked(MultiplexedConnection, Arc<LocalCache>),
}

impl Conn {
    fn cache(&self) -> Option<&Arc<LocalCache>> {
        match self {
            Conn::Tracked(_, cache) => Some(cache),
            _ => None,
        }
    }
}

enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
    /// A single server, through a RESP3 client, keeping up to `capacity` sessions in the process.
    Tracked {
        client: redis::Client,
        capacity: usize,
    },
}

/// A session store in Redis (a single server, a replica set's primary, or a cluster).
///
/// ```no_run
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// let store = portico::session::RedisStore::open("redis://127.0.0.1:6379/0")?;
/// # Ok(()) }
/// ```
pub struct RedisStore {
    target: Target,
    conn: Mutex<Option<Conn>>,
    script: redis::Script,
    take: redis::Script,
    incr: redis::Script,
    decr: redis::Script,
    timeout: Duration,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

fn key_name(key: &StorageKey) -> String {
    format!("portico:session:{}", key.as_str())
}

fn counter_name(name: &str) -> String {
    format!("portico:counter:{name}")
}

impl RedisStore {
    /// A store on the server at `url` (`redis://host:port/db`, `rediss://` for TLS). No connection
    /// is made until the first request needs one.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when `url` is not a Redis URL. A server that is down is
    /// not an error here; the requests that need it fail instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::RedisStore;
    /// let store = RedisStore::open("redis://127.0.0.1:6379/0")?;
    /// assert!(RedisStore::open("not a url").is_err());
    /// # let _ = store;
    /// # Ok::<(), portico::session::StoreError>(())
    /// ```
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::backend)?;
        Ok(Self::new(Target::Single(client)))
    }

    /// A store on a Redis Cluster reached through any of `nodes`. As with
    /// [`RedisStore::open`], no connection is made until the first request needs one.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when `nodes` is empty or one of them is not a Redis URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::RedisStore;
    /// let store = RedisStore::cluster(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?;
    /// # let _ = store;
    /// # Ok::<(), portico::session::StoreError>(())
    /// ```
    pub fn cluster(nodes: &[&str]) -> Result<Self, StoreError> {
        let client = ClusterClient::new(nodes.to_vec()).map_err(StoreError::backend)?;
        Ok(Self::new(Target::Cluster(Box::new(client))))
    }

    fn new(target: Target) -> Self {
        Self {
            target,
            conn: Mutex::new(None),
            script: redis::Script::new(UPDATE_SCRIPT),
            take: redis::Script::new(TAKE_SCRIPT),
            incr: redis::Script::new(INCR_SCRIPT),
            decr: redis::Script::new(DECR_SCRIPT),
            timeout: Duration::from_secs(2),
            counters: Arc::default(),
        }
    }

    /// Keeps up to `capacity` recently read sessions in this process, so that reading one again
    /// costs no round trip to Redis. Redis tracks what this process read (`CLIENT TRACKING`, over
    /// RESP3) and reports every change, expiry or eviction of it; a copy it has reported is never
    /// served, a read that raced a change is not kept, and no copy is served while the connection
    /// has been silent for more than a quarter of a second or after it was lost. A change made by
    /// another server is therefore seen here as soon as Redis's message arrives, which Redis sends
    /// before it answers that server's write.
    ///
    /// Needs Redis 6 or later reached directly (a proxy that does not pass RESP3 push messages
    /// on will not do). Stores made with [`RedisStore::cluster`] keep no copy: the call returns
    /// them unchanged. A capacity of 0 keeps nothing.
    ///
    /// Captcha answers and counters are never served from the copy: [`SessionStore::take`] and the
    /// counters always run in Redis, so a one-time answer still has exactly one winner.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::RedisStore;
    /// let store = RedisStore::open("redis://127.0.0.1:6379/0")?.with_local_cache(10_000);
    /// assert_eq!(store.cache_stats().hits, 0);
    /// # Ok::<(), portico::session::StoreError>(())
    /// ```
    pub fn with_local_cache(mut self, capacity: usize) -> Self {
        self.target = match self.target {
            // Already tracked: only the capacity changes (0 keeps nothing from now on).
            Target::Tracked { client, .. } => Target::Tracked { client, capacity },
            Target::Single(client) if capacity > 0 => {
                let info = client.get_connection_info().clone();
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                match redis::Client::open(info.set_redis_settings(settings)) {
                    Ok(client) => Target::Tracked { client, capacity },
                    // Not expected: the settings were accepted a moment ago, only the protocol
                    // changed. Keep the plain client rather than fail.
                    Err(_) => Target::Single(client),
                }
            }
            other => other,
        };
        self
    }

    /// What the local copy did since the store was made (all zero without one).
    pub fn cache_stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.cache().is_some_and(|cache| cache.is_closed()) {
                return Ok(c.clone());
            }
        }
        let conn = match &self.target {
            Target::Single(client) => {
                // One attempt, no retry: requests wait in turn for this lock, so while Redis is
                // down each retry's back-off (about 150 ms) queued up behind the others, and the
                // sixth concurrent request waited most of a second for its 503. A refused
                // connection now fails at once, and the next request tries again.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(0);
                Conn::Single(
                    ConnectionManager::new_with_config(client.clone(), config)
                        .await
                        .map_err(StoreError::backend)?,
                )
            }
            Target::Cluster(client) => Conn::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(StoreError::backend)?,
            ),
            Target::Tracked { client, capacity } => {
                let cache = Arc::new(LocalCache::new(*capacity, self.counters.clone()));
                let reader = cache.clone();
                // Runs on the connection's reader, in stream order with the replies.
                let on_push = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
                    reader.on_push(info);
                    Ok(())
                };
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_push_sender(on_push);
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(StoreError::backend)?;
                // Before any read: a key read untracked would never be reported.
                redis::cmd("CLIENT")
                    .arg("TRACKING")
                    .arg("ON")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| StoreError::Backend(format!("CLIENT TRACKING ON: {e}")))?;
                cache.answered();
                Conn::Tracked(conn, cache)
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Passes a command's result on, forgetting a broken connection so that the next request
    /// connects afresh.
    async fn finish<T>(&self, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                if let Some(cache) = self.conn.lock().await.take().as_ref().and_then(Conn::cache) {
                    cache.close();
                }
            }
        }
        result.map_err(StoreError::backend)
    }

    /// Drops the local copy of `name` before a write of it is sent, and answers the copy to drop
    /// it from again once the write is answered ([`written`]), so that neither a copy from before
    /// nor a read that raced the write is served.
    fn writing(c: &Conn, name: &str) -> Option<Arc<LocalCache>> {
        let cache = c.cache().cloned();
        if let Some(cache) = &cache {
            cache.invalidate(name);
        }
        cache
    }
}

/// The second half of [`RedisStore::writing`].
fn written<T>(cache: Option<Arc<LocalCache>>, name: &str, result: &redis::RedisResult<T>) {
    if let Some(cache) = cache {
        cache.invalidate(name);
        if result.is_ok() {
            cache.answered();
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Tracked(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Tracked(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Tracked(c, _) => c.get_db(),
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        let name = key_name(key);
        let mut c = self.conn().await?;
        let tracked = match c.cache() {
            Some(cache) => match cache.get(&name, now) {
                Some(record) => return Ok(Some(record)),
                None => Some((cache.clone(), cache.ticket(&name))),
            },
            None => None,
        };
        let result = redis::cmd("HGETALL").arg(&name).query_async(&mut c).await;
        let fields: Vec<(String, String)> = self.finish(result).await?;
        if let Some((cache, _)) = &tracked {
            cache.answered();
        }
        let mut record = Record::default();
        let mut expires = None;
        for (field, value) in fields {
            if let Some(k) = field.strip_prefix("d:") {
                record.data.insert(k.to_string(), value);
            } else if field == "m:created" {
                record.created_at = value.parse().unwrap_or(0);
            } else if field == "m:expires" {
                expires = value.parse().ok();
            }
        }
        let Some(e) = expires.filter(|&e| e > now) else {
            return Ok(None);
        };
        record.expires_at = e;
        if let Some((cache, ticket)) = tracked {
            cache.fill(&name, ticket, &record);
        }
        Ok(Some(record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let name = key_name(key);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut hset = redis::cmd("HSET");
        hset.arg(&name)
            .arg("m:created")
            .arg(record.created_at)
            .arg("m:expires")
            .arg(record.expires_at);
        for (k, v) in &record.data {
            hset.arg(format!("d:{k}")).arg(v);
        }
        pipe.add_command(hset).ignore();
        pipe.cmd("EXPIREAT")
            .arg(&name)
            .arg(record.expires_at)
            .ignore();
        let mut c = self.conn().await?;
        let result = pipe.query_async::<()>(&mut c).await;
        self.finish(result).await
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut inv = self.script.key(key_name(key));
        inv.arg(expires_at).arg(now).arg(changes.set.len());
        for (k, v) in &changes.set {
            inv.arg(format!("d:{k}")).arg(v);
        }
        for k in &changes.remove {
            inv.arg(format!("d:{k}"));
        }
        let name = key_name(key);
        let mut c = self.conn().await?;
        let cache = Self::writing(&c, &name);
        let result = inv.invoke_async(&mut c).await;
        written(cache, &name, &result);
        let touched: i64 = self.finish(result).await?;
        Ok(touched == 1)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        let name = key_name(key);
        let mut c = self.conn().await?;
        let cache = Self::writing(&c, &name);
        let result = redis::cmd("DEL").arg(&name).query_async::<()>(&mut c).await;
        written(cache, &name, &result);
        self.finish(result).await
    }

    async fn delete_expired(&self, _now: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn take(
        &self,
        key: &StorageKey,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let session = key_name(key);
        let mut inv = self.take.key(&session);
        inv.arg(format!("d:{name}")).arg(now);
        let mut c = self.conn().await?;
        let cache = Self::writing(&c, &session);
        let result = inv.invoke_async(&mut c).await;
        written(cache, &session, &result);
        self.finish(result).await
    }

    async fn incr_counter(
        &self,
        name: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<u64, StoreError> {
        // Redis drops the key at its expiry by itself, so a key that exists is a running count.
        let mut inv = self.incr.key(counter_name(name));
        inv.arg(expires_at);
        let mut c = self.conn().await?;
        let result = inv.invoke_async(&mut c).await;
        self.finish(result).await
    }

    async fn decr_counter(&self, name: &str, _now: i64) -> Result<(), StoreError> {
        let inv = self.decr.key(counter_name(name));
        let mut c = self.conn().await?;
        let result = inv.invoke_async::<i64>(&mut c).await;
        self.finish(result).await.map(|_| ())
    }

    async fn delete_counter(&self, name: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let result = redis::cmd("DEL")
            .arg(counter_name(name))
            .query_async::<()>(&mut c)
            .await;
        self.finish(result).await
    }
}
