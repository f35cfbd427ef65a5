//! `portico serve`: opens the data, builds the state and the router, and serves until told to
//! stop.

use std::io::Write;
use std::time::Duration;

use portico::clock::Clock;
use portico::events::{EventConfig, EventLog};
use portico::secret::SecretKey;
use portico::session;
use portico::template::Templates;

use crate::config::ServeConfig;
use crate::state::AppState;
use crate::stores::{migrate, open_db, open_store};
use crate::{app, server, BoxError};

/// The templates: embedded in the binary, or read from `PORTICO_TEMPLATE_DIR` on every request.
fn templates(config: &ServeConfig) -> Templates {
    match &config.template_dir {
        Some(dir) => {
            let dir = dir.clone();
            tracing::warn!(dir = %dir.display(), "templates are read from disk on every request (development mode)");
            Templates::reloading(move || {
                let mut env = minijinja::Environment::new();
                env.set_loader(minijinja::path_loader(dir.clone()));
                env
            })
        }
        None => {
            let mut env = minijinja::Environment::new();
            minijinja_embed::load_templates!(&mut env);
            Templates::new(env)
        }
    }
}

/// Serves the site with `config` until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<(), BoxError> {
    if let Some(answer) = &config.captcha_test_answer {
        if !config.bind.ip().is_loopback() {
            return Err(format!(
                "PORTICO_CAPTCHA_TEST_ANSWER is set, which makes every captcha solvable; refusing to serve on the non-loopback address {}",
                config.bind
            )
            .into());
        }
        tracing::warn!("################################################################");
        tracing::warn!(
            "CAPTCHA TEST MODE: every captcha answer is {answer:?}. Never use this in production."
        );
        tracing::warn!("################################################################");
    }
    check_session_cookie(&config)?;
    let allowed_hosts = config.allowed_hosts()?;
    config.data.ensure_data_dir()?;
    let secret = match &config.secret_key {
        Some(hex) => SecretKey::from_hex(hex)?,
        None => SecretKey::load_or_create(&config.data.data_dir.join("secret_key"))?,
    };
    let secret_fallbacks = config
        .secret_key_fallbacks
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| SecretKey::from_hex(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PORTICO_SECRET_KEY_FALLBACKS: {e}"))?;
    let db = open_db(&config.data).await?;
    migrate(&db).await?;
    let store = open_store(&config.data).await?;
    let clock = Clock::system();

    let (events, writer) = if config.events {
        let mut hash_key = [0u8; 32];
        hash_key.copy_from_slice(&secret.derive("portico.events.session-hash")[..32]);
        let cfg = EventConfig {
            instance: config.instance.clone(),
            ..EventConfig::new(config.events_dir())
        };
        let (log, writer) = EventLog::start(cfg, hash_key)?;
        (log, Some(writer))
    } else {
        (EventLog::disabled(), None)
    };

    let state = AppState::new(
        &config,
        allowed_hosts,
        db,
        store.clone(),
        events.clone(),
        clock.clone(),
    );
    // Expired sessions leave SQL stores a quarter of the anonymous timeout after they expire at
    // the latest, so visitors who never log in cannot pile up sessions for long.
    let every = config.session_config().cleanup_interval();
    let cleanup = session::spawn_cleanup(store.clone(), every, clock);
    let router = app::router(state, templates(&config), store, &secret, &secret_fallbacks);

    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, instance = %config.instance, store = %config.data.session_store, "serving");
    // Tests and scripts read this line to learn the port when binding to port 0.
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;

    let limits = server::Limits {
        header_timeout: Duration::from_secs(config.header_timeout_secs),
        body_timeout: Duration::from_secs(config.body_timeout_secs),
        keep_alive: Duration::from_secs(config.keep_alive_secs),
        max_connections: server::connection_budget(config.max_connections),
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
    };
    server::serve(listener, router, limits, shutdown_signal()).await;
    cleanup.abort();
    events.close();
    if let Some(w) = writer {
        w.finish().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Refuses session cookie settings that browsers would not keep, naming the settings to change.
fn check_session_cookie(config: &ServeConfig) -> Result<(), BoxError> {
    use portico::session::ConfigError;
    let name = config.session_cookie();
    let why = match config.session_config().validate() {
        Ok(()) => return Ok(()),
        Err(ConfigError::HostPrefixNeedsSecure(_)) => format!(
            "the session cookie name {name:?} starts with __Host-, which browsers accept only on a Secure cookie: set PORTICO_HTTPS=true, or choose another PORTICO_SESSION_COOKIE_NAME"
        ),
        Err(ConfigError::HostPrefixWithDomain(_)) => format!(
            "the session cookie name {name:?} starts with __Host-, which browsers refuse on a cookie with a Domain: unset PORTICO_COOKIE_DOMAIN, or choose a PORTICO_SESSION_COOKIE_NAME without __Host-"
        ),
        Err(ConfigError::SecurePrefixNeedsSecure(_)) => format!(
            "the session cookie name {name:?} starts with __Secure-, which browsers accept only on a Secure cookie: set PORTICO_HTTPS=true, or choose another PORTICO_SESSION_COOKIE_NAME"
        ),
        Err(e) => format!("PORTICO_SESSION_COOKIE_NAME: {e}"),
    };
    Err(why.into())
}

/// Resolves at SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
