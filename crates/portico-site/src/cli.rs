//! The command line: `portico [serve|migrate|createuser|clearsessions|routes|captcha-samples]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{DataConfig, ServeConfig};

/// The `portico` command line.
#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "The Portico reference site: accounts with captcha login and notes with tags."
)]
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand; none means `serve`.
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
/// The subcommands.
pub enum Command {
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
