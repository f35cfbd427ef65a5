//! Fixed-window rate limits kept in the process's memory.
//!
//! Used for captcha images per session and per address, and for failed logins per account and per
//! address. Each server counts on its own: behind a load balancer of N servers a client gets up to
//! N times the limit, which still stops guessing at scale while needing no shared store on the
//! request path. Windows are aligned to the clock, so a counter is one integer per key and window.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Clock;

/// Counts events per key in fixed windows of `window` seconds.
///
/// ```
/// use portico::{clock::Clock, ratelimit::RateLimit};
/// let clock = Clock::manual(0);
/// let limit = RateLimit::new(2, 60, clock.clone());
/// assert!(limit.hit("1.2.3.4"));
/// assert!(limit.hit("1.2.3.4"));
/// assert!(!limit.hit("1.2.3.4"));
/// clock.advance(60);
/// assert!(limit.hit("1.2.3.4"));
/// ```
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    window: i64,
    clock: Clock,
    counts: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimit {
    /// At most `max` events per key per `window` seconds.
    pub fn new(max: u32, window: i64, clock: Clock) -> Self {
        Self {
            max,
            window: window.max(1),
            clock,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (i64, u32)>, i64) -> T) -> T {
        let now_window = self.clock.now() / self.window;
        // Plain map operations cannot panic half-way, so a poisoned lock holds consistent data.
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (w, _)| *w == now_window);
        }
        f(&mut map, now_window)
    }

    /// Counts one event for `key`; `false` when the key is already at its limit (not counted then).
    pub fn hit(&self, key: &str) -> bool {
        let max = self.max;
        self.with(|map, w| {
            let entry = map.entry(key.to_string()).or_insert((w, 0));
            if entry.0 != w {
                *entry = (w, 0);
            }
            if entry.1 >= max {
                return false;
            }
            entry.1 += 1;
            true
        })
    }

    /// Whether `key` has reached its limit in the current window (counts nothing).
    pub fn exceeded(&self, key: &str) -> bool {
        let max = self.max;
        self.with(|map, w| map.get(key).is_some_and(|(kw, n)| *kw == w && *n >= max))
    }

    /// Counts one event for `key` even past the limit (a failure that has already happened).
    pub fn record(&self, key: &str) {
        self.with(|map, w| {
            let entry = map.entry(key.to_string()).or_insert((w, 0));
            if entry.0 != w {
                *entry = (w, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        })
    }

    /// Forgets `key` (after a successful login, say).
    pub fn reset(&self, key: &str) {
        self.with(|map, _| {
            map.remove(key);
        })
    }
}
