//! What the views share, built in one place from the settings.
//!
//! A leaf module: it knows the settings, the database, the rate limits and the library, and
//! nothing of the router or the views. A view that needs one part asks for that part alone
//! (`State<Db>`, `State<Arc<CaptchaConfig>>`): [`AppState`] hands each field out through
//! axum's `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;
use portico::captcha::CaptchaConfig;
use portico::clock::Clock;
use portico::csrf::CsrfConfig;
use portico::events::EventLog;
use portico::hosts::AllowedHosts;
use portico::session::SessionStore;

use crate::config::ServeConfig;
use crate::db::Db;
use crate::limits::{Allowances, Limits};

/// What views share.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// The models' database.
    pub db: Db,
    /// The settings.
    pub config: Arc<ServeConfig>,
    /// CSRF settings (tokens are minted with its clock).
    pub csrf: Arc<CsrfConfig>,
    /// Captcha settings and limiter.
    pub captcha: Arc<CaptchaConfig>,
    /// Rate limits (logins and registrations), counted in the session store.
    pub limits: Arc<Limits>,
    /// The event log.
    pub events: EventLog,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for `config`: the CSRF, captcha and rate-limit settings it names, on `clock`,
    /// with the limits counted in `store`. `allowed_hosts` is what `config.allowed_hosts()`
    /// answered, checked by the caller before anything was opened.
    pub fn new(
        config: &ServeConfig,
        allowed_hosts: AllowedHosts,
        db: Db,
        store: Arc<dyn SessionStore>,
        events: EventLog,
        clock: Clock,
    ) -> Self {
        let csrf = CsrfConfig {
            token_ttl: time::Duration::seconds(config.csrf_token_ttl_secs),
            trusted_origins: config.csrf_trusted_origins.clone(),
            https: config.https,
            clock: clock.clone(),
            allowed_hosts,
        };
        let mut captcha = CaptchaConfig::new(
            config.captcha_per_session,
            config.captcha_per_ip,
            clock.clone(),
        );
        captcha.test_answer = config.captcha_test_answer.clone();
        let allowances = Allowances {
            per_account_ip: config.login_fails_per_account,
            per_ip: config.login_fails_per_ip,
            slow_after: config.login_slow_after,
            register_per_ip: config.register_per_ip,
        };
        AppState {
            db,
            config: Arc::new(config.clone()),
            csrf: Arc::new(csrf),
            captcha: Arc::new(captcha),
            limits: Arc::new(Limits::new(store, allowances, clock)),
            events,
        }
    }
}
