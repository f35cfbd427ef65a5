//! Slowing down password guessing without handing anyone a switch that locks an account.
//!
//! Every limit counts attempts in the session store ([`SharedLimit`]), so all servers behind a
//! load balancer share one count, and counts an attempt *before* its password is hashed: `n`
//! parallel guesses count `n`, and the ones past a limit are refused without hashing anything.
//! Counts cover 15-minute windows. The policy:
//!
//! - **per account and address** (`PORTICO_LOGIN_FAILS_PER_ACCOUNT`, 10): failed logins for one
//!   account from one client address; past it that address gets 429 for that account. A
//!   successful login forgets the pair's count.
//! - **per address** (`PORTICO_LOGIN_FAILS_PER_IP`, 30): failed logins from one address, whatever
//!   the account; past it 429. This bounds one address guessing across many accounts.
//! - **per account, from everywhere** (`PORTICO_LOGIN_SLOW_AFTER`, 10): never a refusal, only a
//!   slow-down. Past it every attempt for the account waits before its password is checked
//!   (250 ms, doubling with each further failure, at most 4 s), and the event log says so. A hard
//!   limit here would let anyone lock the owner out by failing on purpose from a few addresses;
//!   the owner, from their own address, always gets in with the right password. What bounds a
//!   guesser with many addresses is the captcha: every attempt needs a freshly solved image.
//! - **registrations per address** (`PORTICO_REGISTER_PER_IP`, 10): each one hashes a password, so
//!   they are counted before the hash too; successful ones count as well.
//!
//! Attempts that a limit refuses are not counted (they cost nothing), and an attempt whose
//! password turns out right is taken back from the address and account counts.

use std::sync::Arc;
use std::time::Duration;

use portico::clock::Clock;
use portico::ratelimit::SharedLimit;
use portico::session::SessionStore;

/// Seconds of one counting window.
pub const WINDOW_SECS: i64 = 15 * 60;

/// The site's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Failed logins per account from one address: refused past the limit.
    pub login_account_ip: SharedLimit,
    /// Failed logins per address: refused past the limit.
    pub login_ip: SharedLimit,
    /// Failed logins per account from every address: slowed down past the limit, never refused.
    pub login_account: SharedLimit,
    /// Registrations per address: refused past the limit.
    pub register_ip: SharedLimit,
}

/// How many attempts each limit allows per window.
#[derive(Debug, Clone, Copy)]
pub struct Allowances {
    /// Failed logins per account from one address.
    pub per_account_ip: u32,
    /// Failed logins per address.
    pub per_ip: u32,
    /// Failed logins per account after which attempts are slowed down.
    pub slow_after: u32,
    /// Registrations per address.
    pub register_per_ip: u32,
}

impl Limits {
    /// The limits, counted in `store`.
    pub fn new(store: Arc<dyn SessionStore>, allow: Allowances, clock: Clock) -> Self {
        let window = time::Duration::seconds(WINDOW_SECS);
        let limit = |scope, max| SharedLimit::new(store.clone(), scope, max, window, clock.clone());
        Self {
            login_account_ip: limit("login_account_ip", allow.per_account_ip),
            login_ip: limit("login_ip", allow.per_ip),
            login_account: limit("login_account", allow.slow_after),
            register_ip: limit("register_ip", allow.register_per_ip),
        }
    }
}

/// How long an attempt waits that is `over` failures past the slow-down threshold.
pub fn slow_down(over: u64) -> Duration {
    if over == 0 {
        return Duration::ZERO;
    }
    let steps = u32::try_from(over - 1).unwrap_or(u32::MAX).min(4);
    Duration::from_millis(250 << steps)
}

/// The form of an account name the limits count under: names that differ only in case count as
/// one, so changing the case of a name does not buy a fresh count.
pub fn fold(account: &str) -> String {
    account.to_lowercase()
}

/// The key of an account as seen from one address. Addresses hold no spaces, so the pair reads
/// back unambiguously whatever the account name holds.
pub fn account_at(ip: &str, account: &str) -> String {
    format!("{ip} {account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_down_doubles_up_to_four_seconds() {
        let waits: Vec<u128> = (0..8).map(|n| slow_down(n).as_millis()).collect();
        assert_eq!(waits, [0, 250, 500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(slow_down(u64::MAX), Duration::from_secs(4));
    }
}
