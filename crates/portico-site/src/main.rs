//! `portico`: the reference site's binary.
//!
//! `portico serve` runs the site (SQLite in `./data` unless told otherwise); `migrate`,
//! `createuser`, `clearsessions`, `routes` and `captcha-samples` are the management commands.

/// A request allocates many small, short-lived values (headers, template output, events);
/// mimalloc's thread-local free lists serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Asks Linux not to back this process's memory with 2 MiB transparent huge pages.
///
/// With THP set to `always` (a common distribution default) the allocator's arenas get huge
/// pages on first touch, so a few kilobytes in use can cost 2 MiB of resident memory: the site
/// peaked at about 33 MB instead of about 20 MB under load. A server this size gains nothing
/// measurable from fewer TLB misses. Done before the runtime's threads start allocating; pages
/// that are already huge stay so, but no new ones are made.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        // Refused only on kernels older than 3.15; the site then just uses more memory.
        let _ = rc;
    }
}

mod app;
mod auth;
mod config;
mod db;
mod error;
mod limits;
mod models;
mod server;
mod views;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portico::captcha::{CaptchaConfig, Mode, Style, Voice, AUDIO_LENGTH};
use portico::clock::Clock;
use portico::csrf::CsrfConfig;
use portico::events::{EventConfig, EventLog};
use portico::secret::SecretKey;
use portico::session::{self, MemoryStore, PostgresStore, RedisStore, SessionStore, SqliteStore};
use portico::template::Templates;

use crate::config::{DataConfig, ServeConfig};
use crate::db::Db;

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "The Portico reference site: accounts with captcha login and notes with tags."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the site (the default when no command is given).
    Serve(Box<ServeConfig>),
    /// Apply the database migrations.
    Migrate(DataConfig),
    /// Create a user account.
    Createuser {
        #[command(flatten)]
        data: DataConfig,
        /// The new user's name.
        username: String,
        /// The password (read from the PORTICO_PASSWORD variable or standard input when absent).
        #[arg(long, env = "PORTICO_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Accept a password that fails the strength rules (length, similarity to the name,
        /// common passwords, all digits), e.g. for a fixture account on a test machine.
        #[arg(long)]
        no_validate: bool,
    },
    /// Delete expired sessions from the session store.
    Clearsessions(DataConfig),
    /// Print the route table, with each route's CSRF status.
    Routes,
    /// Write captcha images or recordings and their answers (answers.csv) to a folder.
    CaptchaSamples {
        /// latin, digits, zh, or audio (spoken digits, see --lang).
        #[arg(long, default_value = "latin")]
        mode: String,
        /// The language of `--mode audio`: en or zh.
        #[arg(long, default_value = "en")]
        lang: String,
        /// How many images or recordings.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// The folder to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Draw the text plainly, without distortion (to show the characters themselves are legible).
        #[arg(long)]
        undistorted: bool,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PORTICO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("PORTICO_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Files this process creates are its user's alone: the databases (and SQLite's -wal and -shm
/// files beside them), the event log, the secret key. SQLite and the drivers create those files
/// themselves, so the mask is the one place that covers them all.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

fn main() {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging();
    if !matches!(
        cli.command,
        Some(Command::Routes) | Some(Command::CaptchaSamples { .. })
    ) {
        private_files();
    }
    let workers = match &cli.command {
        Some(Command::Serve(c)) => c.workers,
        _ => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portico: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cli));
    if let Err(e) = result {
        eprintln!("portico: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        None => match Cli::parse_from(["portico", "serve"]).command {
            Some(Command::Serve(config)) => serve(*config).await,
            _ => Err("cannot read the serve settings".into()),
        },
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Migrate(data)) => {
            let db = open_db(&data).await?;
            migrate(&db).await?;
            println!("migrations applied to {}", redact(&data.database_url()));
            Ok(())
        }
        Some(Command::Createuser {
            data,
            username,
            password,
            no_validate,
        }) => {
            let password = match password {
                Some(p) => p,
                None => {
                    eprint!("Password for {username}: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let db = open_db(&data).await?;
            migrate(&db).await?;
            let username = models::users::normalize_username(&username);
            let id = if no_validate {
                models::users::create_user_unvalidated(&db, &username, &password).await?
            } else {
                models::users::create_user(&db, &username, &password).await?
            };
            println!("created user {username} (id {id})");
            Ok(())
        }
        Some(Command::Clearsessions(data)) => {
            let store = open_store(&data).await?;
            let n = store.delete_expired(Clock::system().now()).await?;
            println!("deleted {n} expired sessions");
            Ok(())
        }
        Some(Command::Routes) => {
            println!("{:<22} {:<10} {:<8} PURPOSE", "PATH", "METHODS", "CSRF");
            for r in app::ROUTES {
                let csrf = if r.csrf_exempt { "EXEMPT" } else { "checked" };
                println!("{:<22} {:<10} {:<8} {}", r.path, r.methods, csrf, r.purpose);
            }
            Ok(())
        }
        Some(Command::CaptchaSamples {
            mode,
            lang,
            count,
            out,
            undistorted,
        }) => {
            if mode.trim().eq_ignore_ascii_case("audio") {
                let voice = Voice::parse(&lang).ok_or("unknown language: use en or zh")?;
                return audio_samples(voice, count, &out);
            }
            let mode = Mode::parse(&mode).ok_or("unknown mode: use latin, digits, zh or audio")?;
            std::fs::create_dir_all(&out)?;
            let mut style = Style::for_mode(mode);
            style.distort = !undistorted;
            let mut rng = rand::thread_rng();
            let mut csv = String::from("file,answer\n");
            for i in 0..count {
                let text = portico::captcha::random_text(mode, style.length, &mut rng);
                let png = portico::captcha::render_png(&text, mode, &style, &mut rng);
                let name = format!("{}-{i:05}.png", mode.as_str());
                std::fs::write(out.join(&name), png)?;
                csv.push_str(&format!("{name},{text}\n"));
            }
            std::fs::write(out.join("answers.csv"), csv)?;
            println!(
                "wrote {count} {} captchas to {}",
                mode.as_str(),
                out.display()
            );
            Ok(())
        }
    }
}

/// `captcha-samples --mode audio`: `count` recordings in `voice` and their answers.
fn audio_samples(voice: Voice, count: usize, out: &std::path::Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(out)?;
    let mut rng = rand::thread_rng();
    let mut csv = String::from("file,answer\n");
    for i in 0..count {
        let digits = portico::captcha::random_digits(voice, AUDIO_LENGTH, &mut rng);
        let wav = portico::captcha::render_wav(&digits, voice, &mut rng);
        let name = format!("audio-{}-{i:05}.wav", voice.as_str());
        std::fs::write(out.join(&name), wav)?;
        csv.push_str(&format!("{name},{digits}\n"));
    }
    std::fs::write(out.join("answers.csv"), csv)?;
    println!(
        "wrote {count} audio ({}) captchas to {}",
        voice.as_str(),
        out.display()
    );
    Ok(())
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Applies the migrations, then gives accounts from before usernames had keys their keys.
async fn migrate(db: &Db) -> Result<(), BoxError> {
    db.migrate().await?;
    models::users::backfill_username_keys(db).await?;
    Ok(())
}

async fn open_db(data: &DataConfig) -> Result<Db, BoxError> {
    data.ensure_data_dir()?;
    let url = data.database_url();
    Db::connect(&url, data.db_connections)
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", redact(&url)).into())
}

async fn open_store(data: &DataConfig) -> Result<Arc<dyn SessionStore>, BoxError> {
    data.ensure_data_dir()?;
    let spec = data.session_store.trim();
    let store: Arc<dyn SessionStore> = if spec == "sqlite" {
        let url = format!(
            "sqlite://{}",
            data.data_dir.join("sessions.sqlite3").display()
        );
        Arc::new(SqliteStore::open(&url).await?)
    } else if spec.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(spec).await?)
    } else if spec == "memory" {
        Arc::new(MemoryStore::default())
    } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        Arc::new(RedisStore::open(spec)?)
    } else if let Some(nodes) = spec.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = nodes.split(',').map(|n| format!("redis://{n}")).collect();
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        Arc::new(RedisStore::cluster(&refs)?)
    } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        Arc::new(PostgresStore::open(spec).await?)
    } else {
        return Err(format!("unknown PORTICO_SESSION_STORE {spec:?}: use sqlite, memory, redis://..., redis+cluster://host:port,... or postgres://...").into());
    };
    Ok(store)
}

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

async fn serve(config: ServeConfig) -> Result<(), BoxError> {
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
    let state = app::AppState {
        db,
        config: Arc::new(config.clone()),
        csrf: Arc::new(csrf),
        captcha: Arc::new(captcha),
        limits: Arc::new(limits::Limits::new(
            store.clone(),
            limits::Allowances {
                per_account_ip: config.login_fails_per_account,
                per_ip: config.login_fails_per_ip,
                slow_after: config.login_slow_after,
                register_per_ip: config.register_per_ip,
            },
            clock.clone(),
        )),
        events: events.clone(),
    };
    // Expired sessions leave SQL stores a quarter of the anonymous timeout after they expire at
    // the latest, so visitors who never log in cannot pile up sessions for long.
    let every = app::session_config(&config).cleanup_interval();
    let cleanup = session::spawn_cleanup(store.clone(), every, clock);
    let router = app::router(app::Parts {
        state,
        templates: templates(&config),
        store,
        secret,
        secret_fallbacks,
    });

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
    let why = match app::session_config(config).validate() {
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
