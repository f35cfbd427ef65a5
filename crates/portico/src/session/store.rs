//! The contract between the session layer and a place that keeps sessions.
//!
//! A store keeps, per session, a set of keys with JSON-encoded values plus two times: when the
//! session was created (for the absolute timeout) and when it expires if left idle. Stores write
//! *per key*: [`SessionStore::update`] sets and removes only the keys a request changed, so two
//! requests of one session that change different keys both keep their writes, even when they run
//! on different servers. An update never brings a deleted or expired session back to life.
//!
//! Ids reach a store only as a [`StorageKey`], a hash of the cookie value: whoever reads the store's
//! tables or keys cannot use what they read as a session cookie.
//!
//! Two operations decide something once for all servers, inside the store, so parallel requests
//! cannot each win it:
//! - [`SessionStore::take`] removes one key of a session and tells the caller whether it was the
//!   one that removed it (a captcha's one try);
//! - [`SessionStore::incr_counter`] adds one to a named counter that expires, and answers the new
//!   count (a login attempt counted against a limit before the password is hashed).
//!
//! Counters live beside the sessions so that every server sharing the store shares the counts.

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use super::id::{ID_LEN, ORDER_LEN};

/// What a store keeps for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Key to JSON text.
    pub data: HashMap<String, String>,
    /// Unix seconds when the session was created.
    pub created_at: i64,
    /// Unix seconds after which the session is gone if not touched again.
    pub expires_at: i64,
}

/// The keys one request set and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys to set, with their JSON text.
    pub set: Vec<(String, String)>,
    /// Keys to delete.
    pub remove: Vec<String>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// The name under which a store keeps a session: the id's creation-time prefix, then SHA-256 of
/// the whole id in hex.
///
/// The prefix makes keys sort in the order sessions were made, so an SQL store inserts each new
/// session next to the previous one (one page written per batch of first visits, not one per
/// visit) and the sessions in use cluster on the pages most recently written. It carries no
/// secret: the hash alone is what a cookie would have to match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageKey(String);

impl StorageKey {
    /// The storage key of a session id.
    pub fn of(session_id: &str) -> Self {
        let digest = hex::encode(Sha256::digest(session_id.as_bytes()));
        match session_id.get(..ORDER_LEN) {
            Some(order) if session_id.len() == ID_LEN => StorageKey(format!("{order}{digest}")),
            // Ids of earlier versions had no prefix.
            _ => StorageKey(digest),
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A store's failure: it could not be reached or answered nonsense.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("session store backend error: {0}")]
    Backend(String),
    /// The store did not answer in time.
    #[error("session store did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// A backend's own error, kept as its text: the layer logs it and answers a 503.
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// A place that keeps sessions. See the module docs for the rules every store follows; the
/// conformance suite (`portico::session::conformance`, built with the `conformance` feature)
/// checks them.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// The session's record, or `None` when it is unknown or expired at `now`.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; an unknown
    /// session is `Ok(None)`, not an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// assert!(store.load(&StorageKey::of("no-such-id"), 0).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError>;

    /// Stores a new session. Called only with a fresh random key.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the session
    /// may then not exist.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, Record, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// let record = Record { expires_at: 3_600, ..Record::default() };
    /// store.create(&StorageKey::of("a-new-id"), &record).await?;
    /// assert_eq!(store.load(&StorageKey::of("a-new-id"), 0).await?, Some(record));
    /// # Ok(())
    /// # }
    /// ```
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError>;

    /// Applies `changes` key by key and moves the idle expiry to `expires_at`. Answers `false`
    /// (and writes nothing) when the session no longer exists or has expired at `now`.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; a session that
    /// is gone is `Ok(false)`, not an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{Changes, MemoryStore, Record, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (store, key) = (MemoryStore::default(), StorageKey::of("an-id"));
    /// store.create(&key, &Record { expires_at: 60, ..Record::default() }).await?;
    /// let changes = Changes { set: vec![("theme".into(), "\"dark\"".into())], remove: vec![] };
    /// assert!(store.update(&key, &changes, 120, 10).await?);
    /// # Ok(())
    /// # }
    /// ```
    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes a session; deleting an unknown session is not an error.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the session may
    /// then still exist until it expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// MemoryStore::default().delete(&StorageKey::of("never-stored")).await?;
    /// # Ok(())
    /// # }
    /// ```
    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError>;

    /// Deletes the sessions expired at `now` and returns how many went, and deletes the counters
    /// expired then too. Stores that expire keys by themselves (Redis TTLs) return 0.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the next
    /// cleanup round deletes what this one left.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, Record, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// let record = Record { expires_at: 10, ..Record::default() };
    /// store.create(&StorageKey::of("old"), &record).await?;
    /// assert_eq!(store.delete_expired(20).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// Removes `name` from the live session `key` and returns the value it held, in one atomic
    /// step: of any number of concurrent takes of one key, on any number of servers, exactly one
    /// gets the value and the others `None`. Returns `None`, changing nothing, when the key is
    /// not set or the session is unknown, deleted or expired at `now` (a take never brings a
    /// session back).
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; whether the
    /// key was removed is then unknown, so the caller must treat the value as not taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, Record, SessionStore, StorageKey};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (store, key) = (MemoryStore::default(), StorageKey::of("an-id"));
    /// let mut record = Record { expires_at: 60, ..Record::default() };
    /// record.data.insert("code".into(), "\"1234\"".into());
    /// store.create(&key, &record).await?;
    /// assert_eq!(store.take(&key, "code", 0).await?.as_deref(), Some("\"1234\""));
    /// assert_eq!(store.take(&key, "code", 0).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    async fn take(
        &self,
        key: &StorageKey,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Adds one to the counter `name` and returns its new value, atomically: `n` concurrent calls
    /// return `1..=n` in some order. A counter that does not exist or has expired at `now`
    /// starts again from zero and expires at `expires_at`; a running one keeps its expiry.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the count is
    /// then unknown, and a limit built on it should refuse the attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// assert_eq!(store.incr_counter("login:alice", 60, 0).await?, 1);
    /// assert_eq!(store.incr_counter("login:alice", 60, 1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    async fn incr_counter(&self, name: &str, expires_at: i64, now: i64) -> Result<u64, StoreError>;

    /// Takes one back from the counter `name` (an attempt that turned out not to count). Never
    /// goes below zero; a counter that does not exist or has expired at `now` stays so.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the count then
    /// stays one too high until the counter expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// store.incr_counter("login:alice", 60, 0).await?;
    /// store.decr_counter("login:alice", 1).await?;
    /// assert_eq!(store.incr_counter("login:alice", 60, 2).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    async fn decr_counter(&self, name: &str, now: i64) -> Result<(), StoreError>;

    /// Deletes the counter `name`; deleting an unknown counter is not an error.
    ///
    /// # Errors
    ///
    /// Returns [`StoreError::Backend`] when the backend fails or cannot be reached; the counter
    /// then runs on until it expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::{MemoryStore, SessionStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::default();
    /// store.incr_counter("login:alice", 60, 0).await?;
    /// store.delete_counter("login:alice").await?;
    /// assert_eq!(store.incr_counter("login:alice", 60, 1).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    async fn delete_counter(&self, name: &str) -> Result<(), StoreError>;
}
