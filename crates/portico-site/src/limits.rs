//! Slowing down password guessing: failed logins per account and per client address.

use portico::clock::Clock;
use portico::ratelimit::RateLimit;

/// The login failure limits (15-minute windows).
#[derive(Debug)]
pub struct Limits {
    /// Failures per account name.
    pub login_account: RateLimit,
    /// Failures per client address.
    pub login_ip: RateLimit,
}

impl Limits {
    /// Limits allowing `per_account` and `per_ip` failures per 15 minutes.
    pub fn new(per_account: u32, per_ip: u32, clock: Clock) -> Self {
        Self {
            login_account: RateLimit::new(per_account, 15 * 60, clock.clone()),
            login_ip: RateLimit::new(per_ip, 15 * 60, clock),
        }
    }
}
