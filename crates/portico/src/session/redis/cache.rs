//! A copy of hot sessions in this process, kept right by Redis's invalidation messages
//! (server-assisted client-side caching, Redis 6 and later).
//!
//! Written here rather than taken from the redis crate's `cache-aio` feature, which is marked
//! experimental and fills its cache when the caller's future resumes: by then the connection may
//! already have handled an invalidation of the very value being filled in, and nothing checks for
//! that. Here every fill is checked against the invalidations applied since its read was sent.
//!
//! Why a served copy is never one Redis has already told this process about:
//! - The connection speaks RESP3 with `CLIENT TRACKING ON`: Redis remembers which keys this
//!   connection read and, when one changes, expires or is evicted, pushes an `invalidate` message
//!   on the same connection, written before Redis answers the command that changed the key.
//! - Push messages are applied by the connection's reader as it reads them ([`LocalCache::on_push`]),
//!   in stream order: a message Redis sent before a reply is applied before that reply reaches the
//!   caller.
//! - A read that misses takes a [`Ticket`] (the invalidation count of its key's slot) before it is
//!   sent; its answer is kept only if no invalidation of that slot was applied meanwhile, checked
//!   under the lock the invalidations take. A value that changed while the read was in flight is
//!   therefore never kept, and one that changes later is removed when its message arrives.
//! - The copy belongs to one connection. When the reader reports the connection lost, the copy is
//!   emptied and closed; the next connection starts a new, empty one before its first read.
//! - A copy is served only while the connection has answered within [`FRESH`]: a connection that
//!   died silently (a network partition sends no reset) cannot keep serving what it no longer hears
//!   about. Under load this costs one round trip per `FRESH` per server.
//! - Writes of this process remove the entry before they are sent and after they are answered, and
//!   Redis also reports them back (tracking without `NOLOOP`).
//! - An entry ages out after [`MAX_AGE`] whatever happens, and a record past its idle expiry is never
//!   served.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use super::super::store::Record;

/// How long a copy may be served after the connection last answered.
pub(super) const FRESH: Duration = Duration::from_millis(250);

/// How long a copy is kept at most, invalidated or not.
pub(super) const MAX_AGE: Duration = Duration::from_secs(60);

/// Invalidation counters: a fill is refused when its slot saw an invalidation in flight.
const SLOTS: usize = 256;

/// The invalidation count of a key's slot when its read was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    slot: usize,
    count: u64,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    stored: Instant,
}

#[derive(Debug)]
struct State {
    entries: HashMap<String, Entry>,
    slots: Box<[u64; SLOTS]>,
    closed: bool,
}

/// What the cache did, for operators and tests (counts since the store was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads answered from this process's copy.
    pub hits: u64,
    /// Loads that went to Redis.
    pub misses: u64,
    /// Answers not kept because their key was invalidated while the read was in flight.
    pub refused: u64,
    /// Invalidation messages applied (one message may name several keys).
    pub invalidations: u64,
}

/// The counters, shared by every connection's copy over the store's life.
#[derive(Debug, Default)]
pub(super) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    invalidations: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Acquire),
        }
    }
}

/// The copy of one tracked connection.
#[derive(Debug)]
pub(super) struct LocalCache {
    state: Mutex<State>,
    capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    born: Instant,
    /// Milliseconds after `born` at which the connection last answered.
    answered_ms: AtomicU64,
    counters: std::sync::Arc<Counters>,
}

impl LocalCache {
    pub(super) fn new(capacity: usize, counters: std::sync::Arc<Counters>) -> Self {
        LocalCache {
            state: Mutex::new(State {
                entries: HashMap::new(),
                slots: Box::new([0; SLOTS]),
                closed: false,
            }),
            capacity,
            hasher: Default::default(),
            born: Instant::now(),
            answered_ms: AtomicU64::new(0),
            counters,
        }
    }

    /// The state, even if a thread panicked while holding the lock: every update of it is a
    /// single step that leaves it consistent, and dropping all entries is always safe.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.entries.clear();
            state
        })
    }

    fn slot(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % SLOTS
    }

    /// Notes that the connection answered: everything Redis sent before that answer is applied.
    pub(super) fn answered(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.answered_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn fresh(&self) -> bool {
        let now = self.born.elapsed().as_millis() as u64;
        now.saturating_sub(self.answered_ms.load(Ordering::Relaxed)) < FRESH.as_millis() as u64
    }

    /// Whether the connection this copy belongs to is gone.
    pub(super) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The copy of `name`, if it may be served: present, younger than [`MAX_AGE`], not past its
    /// idle expiry at `now`, and the connection answered within [`FRESH`].
    pub(super) fn get(&self, name: &str, now: i64) -> Option<Record> {
        if !self.fresh() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut state = self.state();
        let found = match state.entries.get(name) {
            Some(e)
                if !state.closed && e.stored.elapsed() < MAX_AGE && e.record.expires_at > now =>
            {
                Some(e.record.clone())
            }
            Some(_) => {
                state.entries.remove(name);
                None
            }
            None => None,
        };
        drop(state);
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Taken before a read of `name` is sent.
    pub(super) fn ticket(&self, name: &str) -> Ticket {
        let slot = self.slot(name);
        Ticket {
            slot,
            count: self.state().slots[slot],
        }
    }

    /// Keeps `record` as the copy of `name` unless the slot saw an invalidation since `ticket`.
    pub(super) fn fill(&self, name: &str, ticket: Ticket, record: &Record) {
        let mut state = self.state();
        if state.closed || state.slots[ticket.slot] != ticket.count {
            drop(state);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(name) {
            // Any entry will do: a dropped copy only costs one read.
            let Some(victim) = state.entries.keys().next().cloned() else {
                return; // capacity 0: keep nothing
            };
            state.entries.remove(&victim);
        }
        state.entries.insert(
            name.to_string(),
            Entry {
                record: record.clone(),
                stored: Instant::now(),
            },
        );
    }

    /// Drops the copy of `name` and refuses fills of its slot that are in flight.
    pub(super) fn invalidate(&self, name: &str) {
        let slot = self.slot(name);
        let mut state = self.state();
        state.slots[slot] += 1;
        state.entries.remove(name);
    }

    fn invalidate_all(&self, close: bool) {
        let mut state = self.state();
        for count in state.slots.iter_mut() {
            *count += 1;
        }
        state.entries.clear();
        state.closed |= close;
    }

    /// Closes the copy: nothing is served or kept from now on.
    pub(super) fn close(&self) {
        self.invalidate_all(true);
    }

    /// Applies a message the connection's reader received outside any reply.
    pub(super) fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => {
                match info.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Value::BulkString(bytes) = key {
                                self.invalidate(&String::from_utf8_lossy(bytes));
                            }
                        }
                    }
                    // FLUSHDB / FLUSHALL name no keys.
                    _ => self.invalidate_all(false),
                }
                // Counted once applied: whoever sees the count sees the copy gone.
                self.counters.invalidations.fetch_add(1, Ordering::Release);
                self.answered();
            }
            PushKind::Disconnection => self.close(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(v: &str, expires_at: i64) -> Record {
        let mut r = Record {
            created_at: 1,
            expires_at,
            ..Record::default()
        };
        r.data.insert("k".into(), v.into());
        r
    }

    fn cache(capacity: usize) -> LocalCache {
        let c = LocalCache::new(capacity, Arc::new(Counters::default()));
        c.answered();
        c
    }

    fn invalidate_msg(keys: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(
                keys.iter()
                    .map(|k| Value::BulkString(k.as_bytes().to_vec()))
                    .collect(),
            )],
        }
    }

    #[test]
    fn a_filled_copy_is_served_until_its_invalidation() {
        let c = cache(10);
        let t = c.ticket("a");
        c.fill("a", t, &record("1", 100));
        assert_eq!(c.get("a", 50), Some(record("1", 100)));
        c.on_push(invalidate_msg(&["a"]));
        assert_eq!(c.get("a", 50), None);
        assert_eq!(c.counters.snapshot().invalidations, 1);
    }

    #[test]
    fn a_fill_whose_key_was_invalidated_in_flight_is_refused() {
        let c = cache(10);
        let t = c.ticket("a");
        c.on_push(invalidate_msg(&["a"]));
        c.fill("a", t, &record("old", 100));
        assert_eq!(c.get("a", 50), None);
        assert_eq!(c.counters.snapshot().refused, 1);
        // A read sent after the invalidation may fill.
        let t = c.ticket("a");
        c.fill("a", t, &record("new", 100));
        assert_eq!(c.get("a", 50), Some(record("new", 100)));
    }

    #[test]
    fn a_local_write_refuses_fills_in_flight() {
        let c = cache(10);
        let t = c.ticket("a");
        c.invalidate("a");
        c.fill("a", t, &record("old", 100));
        assert_eq!(c.get("a", 50), None);
    }

    #[test]
    fn a_flush_drops_everything_and_refuses_fills_in_flight() {
        let c = cache(10);
        let ta = c.ticket("a");
        c.fill("a", ta, &record("1", 100));
        let tb = c.ticket("b");
        c.on_push(PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        c.fill("b", tb, &record("2", 100));
        assert_eq!(c.get("a", 50), None);
        assert_eq!(c.get("b", 50), None);
    }

    #[test]
    fn a_lost_connection_closes_the_copy_for_good() {
        let c = cache(10);
        let t = c.ticket("a");
        c.fill("a", t, &record("1", 100));
        c.on_push(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(c.is_closed());
        assert_eq!(c.get("a", 50), None);
        let t = c.ticket("a");
        c.fill("a", t, &record("1", 100));
        assert_eq!(c.get("a", 50), None);
    }

    #[test]
    fn a_copy_past_its_idle_expiry_is_not_served() {
        let c = cache(10);
        let t = c.ticket("a");
        c.fill("a", t, &record("1", 100));
        assert_eq!(c.get("a", 100), None);
    }

    #[test]
    fn a_silent_connection_serves_nothing() {
        let c = LocalCache::new(10, Arc::new(Counters::default()));
        let t = c.ticket("a");
        c.fill("a", t, &record("1", 100));
        // Never answered: as if it had answered longer than FRESH ago.
        std::thread::sleep(FRESH + Duration::from_millis(20));
        assert_eq!(c.get("a", 50), None);
        c.answered();
        assert_eq!(c.get("a", 50), Some(record("1", 100)));
    }

    #[test]
    fn the_copy_keeps_at_most_its_capacity() {
        let c = cache(3);
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let t = c.ticket(k);
            c.fill(k, t, &record(&i.to_string(), 100));
        }
        let kept = ["a", "b", "c", "d", "e"]
            .iter()
            .filter(|k| c.get(k, 50).is_some())
            .count();
        assert_eq!(kept, 3);
        assert!(c.get("e", 50).is_some(), "the newest fill is kept");
    }
}
