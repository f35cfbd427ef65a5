//! The management commands: every subcommand but `serve`, which has [`crate::serve`].

use std::path::Path;

use clap::Parser;
use portico::captcha::{Mode, Style, Voice, AUDIO_LENGTH};
use portico::clock::Clock;

use crate::cli::{Cli, Command};
use crate::stores::{migrate, open_db, open_store, redact};
use crate::{models, serve, views, BoxError};

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        None => match Cli::parse_from(["portico", "serve"]).command {
            Some(Command::Serve(config)) => serve::serve(*config).await,
            _ => Err("cannot read the serve settings".into()),
        },
        Some(Command::Serve(config)) => serve::serve(*config).await,
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
            routes();
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
fn audio_samples(voice: Voice, count: usize, out: &Path) -> Result<(), BoxError> {
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

/// `routes`: the route table, with each route's CSRF status. The CSRF layer wraps the whole
/// router and exempts no route, so every route is checked.
fn routes() {
    println!("{:<22} {:<10} {:<8} PURPOSE", "PATH", "METHODS", "CSRF");
    for r in views::routes().table() {
        println!(
            "{:<22} {:<10} {:<8} {}",
            r.path, r.methods, "checked", r.purpose
        );
    }
}
