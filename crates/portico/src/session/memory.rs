//! A session store in the process's memory: for tests and single-process tools.
//!
//! Sessions vanish when the process ends and are not shared between servers.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::store::{Changes, Record, SessionStore, StorageKey, StoreError};

/// Sessions kept in a `HashMap` behind a mutex.
///
/// ```
/// let store = portico::session::MemoryStore::default();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<StorageKey, Record>>,
    /// Counter name to its count and expiry.
    counters: Mutex<HashMap<String, (u64, i64)>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<StorageKey, Record>> {
        // Nothing panics while the lock is held (plain map operations), so poisoning cannot
        // leave the map half-updated; recover instead of propagating.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, i64)>> {
        // As for the sessions: plain map operations only.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions are kept, expired ones included until [`SessionStore::delete_expired`].
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &StorageKey, now: i64) -> Result<Option<Record>, StoreError> {
        Ok(self.map().get(key).filter(|r| r.expires_at > now).cloned())
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        self.map().insert(key.clone(), record.clone());
        Ok(())
    }

    async fn update(
        &self,
        key: &StorageKey,
        changes: &Changes,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut map = self.map();
        let Some(rec) = map.get_mut(key).filter(|r| r.expires_at > now) else {
            return Ok(false);
        };
        for (k, v) in &changes.set {
            rec.data.insert(k.clone(), v.clone());
        }
        for k in &changes.remove {
            rec.data.remove(k);
        }
        rec.expires_at = expires_at;
        Ok(true)
    }

    async fn delete(&self, key: &StorageKey) -> Result<(), StoreError> {
        self.map().remove(key);
        Ok(())
    }

    async fn delete_expired(&self, now: i64) -> Result<u64, StoreError> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, r| r.expires_at > now);
        let gone = (before - map.len()) as u64;
        drop(map);
        self.counters().retain(|_, (_, expires)| *expires > now);
        Ok(gone)
    }

    async fn take(
        &self,
        key: &StorageKey,
        name: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut map = self.map();
        Ok(map
            .get_mut(key)
            .filter(|r| r.expires_at > now)
            .and_then(|r| r.data.remove(name)))
    }

    async fn incr_counter(&self, name: &str, expires_at: i64, now: i64) -> Result<u64, StoreError> {
        let mut counters = self.counters();
        // Names come from visitors (account names); between cleanups, keep the map bounded.
        if counters.len() >= 100_000 {
            counters.retain(|_, (_, expires)| *expires > now);
        }
        let entry = counters.entry(name.to_string()).or_insert((0, expires_at));
        if entry.1 <= now {
            *entry = (0, expires_at);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn decr_counter(&self, name: &str, now: i64) -> Result<(), StoreError> {
        if let Some((count, expires)) = self.counters().get_mut(name) {
            if *expires > now {
                *count = count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn delete_counter(&self, name: &str) -> Result<(), StoreError> {
        self.counters().remove(name);
        Ok(())
    }
}
