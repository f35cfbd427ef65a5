//! Time as the server sees it, injectable so that tests move it instead of sleeping.
//!
//! Expiry rules (session idle and absolute timeouts, CSRF token age, captcha answer age, rate-limit
//! windows) all read the time from one [`Clock`]. Production uses [`Clock::system`]; a test makes a
//! [`Clock::manual`] and calls [`Clock::advance`].
//!
//! A clock is always handed over in the settings of the part that reads it: the `clock` field of
//! [`SessionConfig`](crate::session::SessionConfig), [`CsrfConfig`](crate::csrf::CsrfConfig),
//! [`CaptchaConfig`](crate::captcha::CaptchaConfig) and
//! [`CookieDefaults`](crate::cookies::CookieDefaults). A site passes one clock to all of them, so
//! that a test moving it moves every expiry at once. The rate limiters have no settings of their
//! own, so theirs is an argument of `new`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of the current Unix time in seconds.
///
/// ```
/// use portico::clock::Clock;
/// let clock = Clock::manual(1_000);
/// clock.advance(60);
/// assert_eq!(clock.now(), 1_060);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until advanced; clones share the same time.
    pub fn manual(start: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(start))),
        }
    }

    /// Moves a manual clock forward by `secs` (a no-op on the system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(t) = &self.manual {
            t.fetch_add(secs, Ordering::SeqCst);
        }
    }

    /// The current Unix time in seconds.
    pub fn now(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}
