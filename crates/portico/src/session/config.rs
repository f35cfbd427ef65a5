//! How sessions are kept and how their cookie looks.

use std::time::Duration as StdDuration;

use time::Duration;

use crate::clock::Clock;

/// How sessions are kept and how their cookie looks.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The cookie's name (`sessionid`).
    pub cookie_name: String,
    /// The cookie's `Domain`, when sub-domains share sessions.
    pub cookie_domain: Option<String>,
    /// Whether the cookie is `Secure` (set it when the site is served over TLS).
    pub cookie_secure: bool,
    /// How long a session lives without a request (2 weeks), once marked as a user's with
    /// [`super::Session::mark_authenticated`]. Counted in whole seconds.
    pub idle_timeout: Duration,
    /// How long a session not marked as a user's lives without a request (1 hour; never more than
    /// `idle_timeout`). Sessions of visitors who never log in (one holding a captcha answer, say)
    /// go after this, and [`super::spawn_cleanup`] sweeps them from SQL stores.
    pub anonymous_idle_timeout: Duration,
    /// How long a session lives at most, however active (30 days).
    pub absolute_timeout: Duration,
    /// How long a store may take before the request gets a 503 (2 s).
    pub store_timeout: StdDuration,
    /// Keys one session may hold, the site's own included (64).
    pub max_keys: usize,
    /// Bytes one session may hold, counting each key and its JSON text (64 KiB).
    pub max_bytes: usize,
    /// The clock that dates sessions and decides when they expire (the system's; tests move a
    /// [`Clock::manual`] instead of sleeping).
    pub clock: Clock,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sessionid".into(),
            cookie_domain: None,
            cookie_secure: false,
            idle_timeout: Duration::weeks(2),
            anonymous_idle_timeout: Duration::hours(1),
            absolute_timeout: Duration::days(30),
            store_timeout: StdDuration::from_secs(2),
            max_keys: 64,
            max_bytes: 64 * 1024,
            clock: Clock::system(),
        }
    }
}

/// A session setting that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `__Host-` cookie name without `Secure`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Host-, which browsers accept only on a Secure cookie: serve over HTTPS and mark the cookie Secure, or choose another name")]
    HostPrefixNeedsSecure(String),
    /// A `__Host-` cookie name with a `Domain`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Host-, which browsers accept only on a cookie without a Domain: remove the cookie domain, or choose a name without __Host-")]
    HostPrefixWithDomain(String),
    /// A `__Secure-` cookie name without `Secure`: browsers would drop the cookie.
    #[error("the session cookie name {0:?} starts with __Secure-, which browsers accept only on a Secure cookie: serve over HTTPS and mark the cookie Secure, or choose another name")]
    SecurePrefixNeedsSecure(String),
    /// A name that cannot be a cookie name.
    #[error("{0:?} cannot be a cookie name: use letters, digits and - _ . only")]
    BadName(String),
}

/// What the response does with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieAction {
    /// Sets (or refreshes) the cookie to this session id.
    Set(String),
    /// Tells the browser to drop the cookie: the session it named is gone.
    Remove,
}

impl SessionConfig {
    /// The idle timeout of a session in seconds: `idle_timeout` for a user's, the anonymous one
    /// otherwise.
    pub(crate) fn idle_secs(&self, authenticated: bool) -> i64 {
        let idle = self.idle_timeout.whole_seconds();
        if authenticated {
            idle
        } else {
            self.anonymous_idle_timeout.whole_seconds().min(idle)
        }
    }

    /// The session cookie for `action`: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` and
    /// `Domain` as configured. A set cookie lasts `max_age`, or until the browser closes when
    /// that is `None`.
    pub(crate) fn cookie(
        &self,
        action: CookieAction,
        max_age: Option<Duration>,
    ) -> cookie::Cookie<'static> {
        let value = match &action {
            CookieAction::Set(id) => id.clone(),
            CookieAction::Remove => String::new(),
        };
        let mut c = cookie::Cookie::new(self.cookie_name.clone(), value);
        c.set_path("/");
        c.set_http_only(true);
        c.set_same_site(cookie::SameSite::Lax);
        if self.cookie_secure {
            c.set_secure(true);
        }
        if let Some(d) = &self.cookie_domain {
            c.set_domain(d.clone());
        }
        match (action, max_age) {
            (CookieAction::Set(_), Some(age)) => c.set_max_age(age),
            (CookieAction::Set(_), None) => {}
            (CookieAction::Remove, _) => c.make_removal(),
        }
        c
    }

    /// The name for a session cookie when none is configured: `__Host-sessionid` for a `Secure`
    /// cookie without a `Domain` (no sub-domain can then set or shadow it), `sessionid` otherwise.
    ///
    /// ```
    /// use portico::session::SessionConfig;
    /// assert_eq!(SessionConfig::default_cookie_name(true, false), "__Host-sessionid");
    /// assert_eq!(SessionConfig::default_cookie_name(true, true), "sessionid");
    /// assert_eq!(SessionConfig::default_cookie_name(false, false), "sessionid");
    /// ```
    pub fn default_cookie_name(secure: bool, has_domain: bool) -> &'static str {
        if secure && !has_domain {
            "__Host-sessionid"
        } else {
            "sessionid"
        }
    }

    /// Checks that browsers will keep the cookie as configured: a `__Host-` name needs `Secure`
    /// and no `Domain` (the path is always `/`), a `__Secure-` name needs `Secure`.
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError::BadName`] for an empty name or one with characters other than
    /// ASCII letters, digits, `-`, `_` and `.`; [`ConfigError::HostPrefixNeedsSecure`] or
    /// [`ConfigError::HostPrefixWithDomain`] for a `__Host-` name without `Secure` or with a
    /// `Domain`; and [`ConfigError::SecurePrefixNeedsSecure`] for a `__Secure-` name without
    /// `Secure`. Browsers silently drop such cookies, so every visitor would get a new session
    /// on every request: refuse to start instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::session::SessionConfig;
    /// let config = SessionConfig {
    ///     cookie_name: "__Host-sessionid".into(),
    ///     cookie_domain: Some(".example.com".into()),
    ///     cookie_secure: true,
    ///     ..SessionConfig::default()
    /// };
    /// assert!(config.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.cookie_name;
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !token {
            return Err(ConfigError::BadName(name.clone()));
        }
        // Browsers match the prefixes without regard to case.
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("__host-") {
            if !self.cookie_secure {
                return Err(ConfigError::HostPrefixNeedsSecure(name.clone()));
            }
            if self.cookie_domain.is_some() {
                return Err(ConfigError::HostPrefixWithDomain(name.clone()));
            }
        } else if lower.starts_with("__secure-") && !self.cookie_secure {
            return Err(ConfigError::SecurePrefixNeedsSecure(name.clone()));
        }
        Ok(())
    }

    /// How often [`super::spawn_cleanup`] should sweep expired sessions: a quarter of the
    /// anonymous idle timeout (between 1 s and 1 h), so an abandoned session stays in an SQL store
    /// at most that much longer than its timeout.
    ///
    /// ```
    /// let config = portico::session::SessionConfig::default();
    /// assert_eq!(config.cleanup_interval(), std::time::Duration::from_secs(900));
    /// ```
    pub fn cleanup_interval(&self) -> StdDuration {
        StdDuration::from_secs((self.idle_secs(false) / 4).clamp(1, 3600) as u64)
    }
}

/// A read-only request refreshes the idle expiry once it is older than this, so reads cost one
/// store round trip almost always and a write only every so often (every ~3.4 h with an idle
/// timeout of 2 weeks, every minute with one of an hour).
pub(crate) fn refresh_after(idle: i64) -> i64 {
    (idle / 100).max(60).min(idle / 2)
}

/// How long a session lives when idle; see [`super::Session::set_expiry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The site's configured idle timeout.
    Default,
    /// This long without a request, in whole seconds, at least one (still bounded by the
    /// absolute timeout).
    Idle(Duration),
    /// The cookie lasts until the browser closes; the server still applies the idle timeout.
    OnBrowserClose,
}
