//! `portico`: the reference site's binary.
//!
//! `portico serve` runs the site (SQLite in `./data` unless told otherwise); `migrate`,
//! `createuser`, `clearsessions`, `routes` and `captcha-samples` are the management commands.

// A binary exports nothing: `pub` here marks what the site's other modules use, which is what
// the `unreachable_pub` lint would have every item spell `pub(crate)`.
#![allow(unreachable_pub)]

/// A request allocates many small, short-lived values (headers, template output, events);
/// mimalloc's thread-local free lists serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Asks Linux not to back this process's memory with 2 MiB transparent huge pages.
///
/// With THP set to `always` (a common distribution default) the allocator's arenas get huge
/// pages on first touch, so a few kilobytes in use can cost 2 MiB of resident memory, and the
/// site's peak memory under load grew by about half (bench/OPTIMISATIONS.md, "No transparent huge
/// pages"). A server this size gains nothing measurable from fewer TLB misses. Done before the runtime's threads start allocating; pages
/// that are already huge stay so, but no new ones are made.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        // Refused only on kernels older than 3.15; the site then just uses more memory.
        let _ = rc;
    }
}

mod app;
mod auth;
mod cli;
mod commands;
mod config;
mod db;
mod error;
mod limits;
mod models;
mod serve;
mod server;
mod state;
mod stores;
mod views;

use clap::Parser;

use crate::cli::{Cli, Command};

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

/// The error of a command: a message for the terminal.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Files this process creates are its user's alone: the databases (and SQLite's -wal and -shm
/// files beside them), the event log, the secret key. SQLite and the drivers create those files
/// themselves, so the mask is the one place that covers them all.
fn private_files() {
    #[cfg(unix)]
    #[allow(unsafe_code)]
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
    let result = rt.block_on(commands::run(cli));
    if let Err(e) = result {
        eprintln!("portico: {e}");
        std::process::exit(1);
    }
}
