//! The site's settings: command-line flags, each with a `PORTICO_*` environment variable.
//!
//! Everything has a default that works on a fresh machine with no service running: SQLite for the
//! models and the sessions in `./data`, and a secret key generated there on first run.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Settings shared by every subcommand that touches the data.
#[derive(Debug, Clone, Args)]
pub struct DataConfig {
    /// Folder for the SQLite databases, the secret key and the event log (created if missing).
    #[arg(long, env = "PORTICO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database for the models: `sqlite://...` or `postgres://...` (default: SQLite in the data dir).
    #[arg(long, env = "PORTICO_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connections to a PostgreSQL database (default: twice the cores, at least 4). Each one is a
    /// server process; more than the cores can run only adds switching between them.
    #[arg(long, env = "PORTICO_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,

    /// Where sessions live: `sqlite` (in the data dir), `memory`, `redis://...` or `postgres://...`.
    #[arg(long, env = "PORTICO_SESSION_STORE", default_value = "sqlite")]
    pub session_store: String,

    /// Sessions a `redis://` store keeps in this process (0: none). Redis reports every change
    /// of a kept session (`CLIENT TRACKING`), so a copy it has reported changed is never served;
    /// needs Redis 6 or later without a proxy in between.
    #[arg(long, env = "PORTICO_SESSION_CACHE", default_value_t = 10_000)]
    pub session_cache: usize,
}

impl DataConfig {
    /// The models' database URL.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("portico.sqlite3").display()
            )
        })
    }

    /// Creates the data folder if it does not exist, readable by the server's user only (it
    /// holds password hashes, sessions and the secret key). An existing folder keeps its mode;
    /// one that others can read is reported.
    pub fn ensure_data_dir(&self) -> std::io::Result<()> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&self.data_dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.data_dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %self.data_dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the data folder can be read by other users; make it private with chmod 700"
                );
            }
        }
        Ok(())
    }
}

/// Settings of `portico serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port and prints it).
    #[arg(long, env = "PORTICO_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub data: DataConfig,

    /// The secret key as hex (at least 32 bytes); default: `<data dir>/secret_key`, made on first run.
    #[arg(long, env = "PORTICO_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Old secret keys (comma-separated hex, newest first) whose signed cookies still verify
    /// while a new key is rolled out.
    #[arg(
        long,
        env = "PORTICO_SECRET_KEY_FALLBACKS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub secret_key_fallbacks: Vec<String>,

    /// Host names the site answers to (comma-separated; `.example.com` for a domain and its
    /// sub-domains, `*` for any). Default: the loopback names when bound to a loopback address;
    /// required on any other address.
    #[arg(long, env = "PORTICO_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Seconds a client has to send a request's headers, counted from its first byte (or from
    /// the connection's opening).
    #[arg(long, env = "PORTICO_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Seconds a client has to send a request's whole body once its headers have arrived.
    #[arg(long, env = "PORTICO_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,

    /// Seconds an idle keep-alive connection stays open waiting for its next request. Longer
    /// than a proxy's own idle time for its upstream connections (nginx: 60 s), so that the proxy
    /// closes first and never sends a request on a connection this server is closing.
    #[arg(long, env = "PORTICO_KEEP_ALIVE_SECS", default_value_t = 75)]
    pub keep_alive_secs: u64,

    /// Open connections served at once; further connections wait in the listen backlog. Lowered
    /// at start, with a warning, when the open-file limit cannot hold this many.
    #[arg(long, env = "PORTICO_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Seconds requests in flight may take to finish after SIGTERM or SIGINT before their
    /// connections are closed. Shorter than the 30 s after which container runtimes send
    /// SIGKILL, so that the event log is flushed before that.
    #[arg(long, env = "PORTICO_SHUTDOWN_GRACE_SECS", default_value_t = 25)]
    pub shutdown_grace_secs: u64,

    /// This server's name: sent as `X-Portico-Instance` and written in the event log.
    #[arg(long, env = "PORTICO_INSTANCE", default_value = "main")]
    pub instance: String,

    /// Name of the session cookie (default: `__Host-sessionid` over HTTPS without a cookie
    /// domain, so no sub-domain can set or shadow it; `sessionid` otherwise).
    #[arg(long, env = "PORTICO_SESSION_COOKIE_NAME")]
    pub session_cookie_name: Option<String>,

    /// `Domain` of the session and site cookies, e.g. `.example.test` to share one login across sub-domains.
    #[arg(long, env = "PORTICO_COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,

    /// The site is served over HTTPS: cookies get `Secure` and the CSRF check demands a same-origin Referer.
    #[arg(long, env = "PORTICO_HTTPS", default_value_t = false)]
    pub https: bool,

    /// Seconds a logged-in user's session lives without a request (default 2 weeks).
    #[arg(long, env = "PORTICO_SESSION_IDLE_SECS", default_value_t = 14 * 24 * 3600)]
    pub session_idle_secs: i64,

    /// Seconds a session of a visitor who is not logged in lives without a request (default 1 hour).
    #[arg(long, env = "PORTICO_ANON_SESSION_IDLE_SECS", default_value_t = 3600)]
    pub anon_session_idle_secs: i64,

    /// Seconds a session lives at most (default 30 days).
    #[arg(long, env = "PORTICO_SESSION_ABSOLUTE_SECS", default_value_t = 30 * 24 * 3600)]
    pub session_absolute_secs: i64,

    /// Keys one session may hold, the site's own included; past it a write answers 413.
    #[arg(long, env = "PORTICO_SESSION_MAX_KEYS", default_value_t = 64)]
    pub session_max_keys: usize,

    /// Bytes one session may hold (keys and JSON values); past it a write answers 413.
    #[arg(long, env = "PORTICO_SESSION_MAX_BYTES", default_value_t = 64 * 1024)]
    pub session_max_bytes: usize,

    /// Milliseconds the session store may take before the request gets a 503.
    #[arg(long, env = "PORTICO_SESSION_STORE_TIMEOUT_MS", default_value_t = 2000)]
    pub session_store_timeout_ms: u64,

    /// Seconds a CSRF token stays valid (default 12 h).
    #[arg(long, env = "PORTICO_CSRF_TOKEN_TTL_SECS", default_value_t = 12 * 3600)]
    pub csrf_token_ttl_secs: i64,

    /// Comma-separated origins whose posts are accepted besides the site's own (`https://*.example.com` allowed).
    #[arg(long, env = "PORTICO_CSRF_TRUSTED_ORIGINS", value_delimiter = ',')]
    pub csrf_trusted_origins: Vec<String>,

    /// Largest request body in bytes (default 2.5 MiB); larger bodies get 413.
    #[arg(long, env = "PORTICO_BODY_LIMIT", default_value_t = portico::params::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    /// TEST ONLY: every captcha's answer is this text. Refused on a non-loopback bind address.
    #[arg(long, env = "PORTICO_CAPTCHA_TEST_ANSWER", hide_env_values = true)]
    pub captcha_test_answer: Option<String>,

    /// New captcha images allowed per session per minute.
    #[arg(long, env = "PORTICO_CAPTCHA_PER_SESSION", default_value_t = 20)]
    pub captcha_per_session: u32,

    /// New captcha images allowed per client address per minute.
    #[arg(long, env = "PORTICO_CAPTCHA_PER_IP", default_value_t = 120)]
    pub captcha_per_ip: u32,

    /// Failed logins allowed per account from one client address per 15 minutes before 429.
    /// Failures from other addresses never count here, so nobody can lock an owner out.
    #[arg(long, env = "PORTICO_LOGIN_FAILS_PER_ACCOUNT", default_value_t = 10)]
    pub login_fails_per_account: u32,

    /// Failed logins per account from all addresses per 15 minutes after which every further
    /// attempt for that account waits before its password is checked (never refused).
    #[arg(long, env = "PORTICO_LOGIN_SLOW_AFTER", default_value_t = 10)]
    pub login_slow_after: u32,

    /// Failed logins allowed per client address per 15 minutes before 429.
    #[arg(long, env = "PORTICO_LOGIN_FAILS_PER_IP", default_value_t = 30)]
    pub login_fails_per_ip: u32,

    /// Registrations allowed per client address per 15 minutes before 429.
    #[arg(long, env = "PORTICO_REGISTER_PER_IP", default_value_t = 10)]
    pub register_per_ip: u32,

    /// Write the security event log (`<data dir>/events/`).
    #[arg(long, env = "PORTICO_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub events: bool,

    /// Folder of the event log (default `<data dir>/events`).
    #[arg(long, env = "PORTICO_EVENTS_DIR")]
    pub events_dir: Option<PathBuf>,

    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy that sets it).
    #[arg(long, env = "PORTICO_TRUST_X_FORWARDED_FOR", default_value_t = false)]
    pub trust_x_forwarded_for: bool,

    /// Development: read templates from this folder on every request instead of the embedded ones.
    #[arg(long, env = "PORTICO_TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,

    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "PORTICO_WORKERS")]
    pub workers: Option<usize>,
}

impl ServeConfig {
    /// The session cookie's name: the configured one, or the default for the HTTPS and cookie
    /// domain settings.
    pub fn session_cookie(&self) -> String {
        self.session_cookie_name.clone().unwrap_or_else(|| {
            portico::session::SessionConfig::default_cookie_name(
                self.https,
                self.cookie_domain.is_some(),
            )
            .to_string()
        })
    }

    /// The session settings from the site's settings.
    pub fn session_config(&self) -> portico::session::SessionConfig {
        portico::session::SessionConfig {
            cookie_name: self.session_cookie(),
            cookie_domain: self.cookie_domain.clone(),
            cookie_secure: self.https,
            idle_timeout: time::Duration::seconds(self.session_idle_secs),
            anonymous_idle_timeout: time::Duration::seconds(self.anon_session_idle_secs),
            absolute_timeout: time::Duration::seconds(self.session_absolute_secs),
            store_timeout: std::time::Duration::from_millis(self.session_store_timeout_ms),
            max_keys: self.session_max_keys,
            max_bytes: self.session_max_bytes,
            ..portico::session::SessionConfig::default()
        }
    }

    /// The host names to serve: the configured list, or the loopback names when the list is
    /// empty and the server listens on a loopback address.
    pub fn allowed_hosts(&self) -> Result<portico::hosts::AllowedHosts, String> {
        use portico::hosts::AllowedHosts;
        if self.allowed_hosts.iter().all(|h| h.trim().is_empty()) {
            if self.bind.ip().is_loopback() {
                return Ok(AllowedHosts::loopback());
            }
            return Err(format!(
                "PORTICO_ALLOWED_HOSTS is not set, and the server would listen on the non-loopback \
                 address {}: name the host names the site is reached by, e.g. \
                 PORTICO_ALLOWED_HOSTS=www.example.com,.example.com (or * to answer any)",
                self.bind
            ));
        }
        AllowedHosts::parse(&self.allowed_hosts).map_err(|e| format!("PORTICO_ALLOWED_HOSTS: {e}"))
    }

    /// The folder of the event log.
    pub fn events_dir(&self) -> PathBuf {
        self.events_dir
            .clone()
            .unwrap_or_else(|| self.data.data_dir.join("events"))
    }
}
