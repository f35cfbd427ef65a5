//! Fixed-window rate limits: in the process's memory ([`RateLimit`]), or in the session store,
//! shared by every server ([`SharedLimit`]).
//!
//! Counting and deciding are one step in both. A limit that first asks "is this key past its
//! limit?" and counts the attempt only once it has failed lets every request that arrives before
//! the first failure is counted through: 20 parallel guesses against a limit of 3 would all be
//! checked. Here an attempt takes its place in the count before the work it guards starts, so `n`
//! parallel attempts count `n`, and the ones past the limit are refused.
//!
//! [`SharedLimit`] guards what must hold across servers (failed logins, registrations): its counts
//! live in the session store ([`SessionStore::incr_counter`]), so servers behind a load balancer
//! share one count. [`RateLimit`] guards cheap things where a per-server count is enough (new
//! captcha images): it needs no store round trip, and behind N servers a client gets up to N
//! times its limit.
//!
//! Windows are aligned to the clock: a count covers one window (whole seconds, at least one) and
//! is gone at its end, so a counter is one integer per key and window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::Duration;

use crate::clock::Clock;
use crate::session::{SessionStore, StoreError};

/// Counts events per key in fixed windows of `window`, in this process.
///
/// ```
/// use portico::{clock::Clock, ratelimit::RateLimit};
/// let clock = Clock::manual(0);
/// let limit = RateLimit::new(2, time::Duration::minutes(1), clock.clone());
/// assert!(limit.hit("1.2.3.4"));
/// assert!(limit.hit("1.2.3.4"));
/// assert!(!limit.hit("1.2.3.4"));
/// clock.advance(60);
/// assert!(limit.hit("1.2.3.4"));
/// ```
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    /// The window in seconds.
    window: i64,
    clock: Clock,
    counts: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimit {
    /// At most `max` events per key per `window`.
    pub fn new(max: u32, window: Duration, clock: Clock) -> Self {
        Self {
            max,
            window: window.whole_seconds().max(1),
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

    /// Forgets `key` (after a successful login, say).
    pub fn reset(&self, key: &str) {
        self.with(|map, _| {
            map.remove(key);
        })
    }
}

/// Counts attempts per key in fixed windows of `window`, in the session store, so every
/// server that shares the store shares the counts.
///
/// ```
/// # async fn demo() -> Result<(), portico::session::StoreError> {
/// use std::sync::Arc;
/// use portico::{clock::Clock, ratelimit::SharedLimit, session::MemoryStore};
/// let store = Arc::new(MemoryStore::default());
/// let limit = SharedLimit::new(store, "login", 2, time::Duration::minutes(15), Clock::system());
/// let first = limit.reserve("ada").await?.expect("within the limit");
/// limit.reserve("ada").await?.expect("within the limit");
/// assert!(limit.reserve("ada").await?.is_none(), "the third is refused");
/// limit.release(&first).await?; // the first turned out not to count
/// assert!(limit.reserve("ada").await?.is_some());
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SharedLimit {
    store: Arc<dyn SessionStore>,
    scope: &'static str,
    max: u32,
    /// The window in seconds.
    window: i64,
    clock: Clock,
}

/// One attempt counted by a [`SharedLimit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    counter: String,
    count: u64,
    max: u32,
}

impl Attempt {
    /// Which attempt of its key and window this is, counting from 1.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// By how many attempts this one is past the limit (0 when within it).
    pub fn over(&self) -> u64 {
        self.count.saturating_sub(u64::from(self.max))
    }
}

impl SharedLimit {
    /// At most `max` attempts per key per `window`, counted in `store` under counters
    /// named after `scope` (one scope per limit, so limits never share a count).
    pub fn new(
        store: Arc<dyn SessionStore>,
        scope: &'static str,
        max: u32,
        window: Duration,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            scope,
            max,
            window: window.whole_seconds().max(1),
            clock,
        }
    }

    /// The limit's name, as the event log reports it.
    pub fn scope(&self) -> &'static str {
        self.scope
    }

    /// Counts one attempt for `key` and returns it, past the limit or not (see
    /// [`Attempt::over`]); for limits that slow down rather than refuse.
    ///
    /// # Errors
    ///
    /// Returns the store's [`StoreError`] when the counter cannot be incremented; the attempt may
    /// or may not have been counted, and the caller should refuse the work it guards rather than
    /// run it unlimited.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use portico::{clock::Clock, ratelimit::SharedLimit, session::MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Arc::new(MemoryStore::default());
    /// let hour = time::Duration::hours(1);
    /// let limit = SharedLimit::new(store, "signup", 1, hour, Clock::manual(0));
    /// assert_eq!(limit.hit("10.0.0.1").await?.over(), 0);
    /// assert_eq!(limit.hit("10.0.0.1").await?.over(), 1); // one past: delay it, say
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hit(&self, key: &str) -> Result<Attempt, StoreError> {
        let now = self.clock.now();
        let window = now.div_euclid(self.window);
        let counter = format!("{}:{window}:{key}", self.scope);
        let expires_at = (window + 1) * self.window;
        let count = self.store.incr_counter(&counter, expires_at, now).await?;
        Ok(Attempt {
            counter,
            count,
            max: self.max,
        })
    }

    /// Counts one attempt for `key` when it is within the limit and returns it; `None` (and
    /// nothing counted) when the key is already at its limit. Of `n` parallel reservations for one
    /// key, at most the limit's worth succeed.
    ///
    /// # Errors
    ///
    /// Returns the store's [`StoreError`] when counting fails, or when taking back a refused
    /// attempt fails (that attempt then stays counted until the window ends). Either way the
    /// caller should refuse the work, as it would for `None`.
    ///
    /// # Examples
    ///
    /// See [`SharedLimit`].
    pub async fn reserve(&self, key: &str) -> Result<Option<Attempt>, StoreError> {
        let attempt = self.hit(key).await?;
        if attempt.over() > 0 {
            // A refused attempt does nothing costly, so it does not use up the window.
            self.release(&attempt).await?;
            return Ok(None);
        }
        Ok(Some(attempt))
    }

    /// Takes a counted attempt back: it turned out not to count (a login that succeeded).
    ///
    /// # Errors
    ///
    /// Returns the store's [`StoreError`] when the counter cannot be decremented; the attempt
    /// then stays counted until its window ends, which errs on the side of the limit.
    ///
    /// # Examples
    ///
    /// See [`SharedLimit`].
    pub async fn release(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.store
            .decr_counter(&attempt.counter, self.clock.now())
            .await
    }

    /// Forgets every attempt of the attempt's key in its window.
    ///
    /// # Errors
    ///
    /// Returns the store's [`StoreError`] when the counter cannot be deleted; the earlier
    /// attempts then keep counting until the window ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use portico::{clock::Clock, ratelimit::SharedLimit, session::MemoryStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Arc::new(MemoryStore::default());
    /// let window = time::Duration::minutes(15);
    /// let limit = SharedLimit::new(store, "login", 3, window, Clock::system());
    /// let attempt = limit.reserve("ada").await?.ok_or("too many attempts")?;
    /// // The password was right: earlier failures no longer count against the account.
    /// limit.forget(&attempt).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn forget(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.store.delete_counter(&attempt.counter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::MemoryStore;

    fn limit(max: u32, clock: &Clock) -> SharedLimit {
        SharedLimit::new(
            Arc::new(MemoryStore::default()),
            "test",
            max,
            Duration::minutes(1),
            clock.clone(),
        )
    }

    #[tokio::test]
    async fn parallel_reservations_never_pass_the_limit() {
        let clock = Clock::manual(1_000);
        let limit = limit(3, &clock);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let limit = limit.clone();
                tokio::spawn(async move { limit.reserve("k").await })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            if t.await.unwrap().unwrap().is_some() {
                granted += 1;
            }
        }
        assert_eq!(granted, 3);
    }

    #[tokio::test]
    async fn a_new_window_starts_from_zero_and_keys_count_apart() {
        let clock = Clock::manual(1_000);
        let limit = limit(1, &clock);
        assert!(limit.reserve("a").await.unwrap().is_some());
        assert!(limit.reserve("a").await.unwrap().is_none());
        assert!(limit.reserve("b").await.unwrap().is_some());
        clock.advance(60);
        assert!(limit.reserve("a").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn forget_clears_the_key_and_hit_reports_how_far_over() {
        let clock = Clock::manual(1_000);
        let limit = limit(2, &clock);
        for n in 1..=4u64 {
            let a = limit.hit("k").await.unwrap();
            assert_eq!((a.count(), a.over()), (n, n.saturating_sub(2)));
        }
        let a = limit.hit("k").await.unwrap();
        limit.forget(&a).await.unwrap();
        assert_eq!(limit.hit("k").await.unwrap().count(), 1);
    }
}
