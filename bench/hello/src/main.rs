//! The reference for every throughput ratio in `bench/RESULTS.md`: a bare axum 0.8 server that
//! returns a constant ~100-byte HTML page on two worker threads, the practical ceiling of the
//! benchmark machine.
//!
//! `bench-hello [--bind ADDR] [--replay PATH=FILE]...`: besides `/`, each `--replay` answers
//! every request to PATH with the status, headers and body saved in FILE (by `bench/seed.py
//! check --save`): a response portico sent, sent again with none of the work that made it. The
//! difference between that row and portico's own in `bench/RESULTS.md` is what the work costs;
//! the difference between it and `/` is what the bytes of that response cost on this machine.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::{response::Html, routing::any, routing::get, Router};

const PAGE: &str = "<!doctype html><html><head><title>hello</title></head><body><p>Hello, world!</p></body></html>\n";

const USAGE: &str = "usage: bench-hello [--bind ADDR] [--replay PATH=FILE]...";

/// One saved response: what `--replay` sends.
#[derive(Clone)]
struct Saved {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Reads a response saved as: the status code on the first line, then `name: value` lines, an
/// empty line, and the body's bytes as they were.
fn read_saved(file: &str) -> Result<Saved, String> {
    let raw = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| format!("{file}: no empty line after the headers"))?;
    let head =
        std::str::from_utf8(&raw[..split]).map_err(|_| format!("{file}: headers are not UTF-8"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.trim().parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| format!("{file}: the first line is not a status code"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("{file}: not a header line: {line}"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{file}: bad header name {name}"))?;
        // hyper writes these itself, as it does for portico.
        if ["content-length", "date", "transfer-encoding", "connection"].contains(&name.as_str()) {
            continue;
        }
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("{file}: bad value of {name}"))?;
        headers.append(name, value);
    }
    Ok(Saved {
        status,
        headers,
        body: Bytes::copy_from_slice(&raw[split + 2..]),
    })
}

struct Args {
    bind: String,
    replays: Vec<(String, Saved)>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        bind: String::from("127.0.0.1:8090"),
        replays: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(USAGE.to_string())
        };
        match flag.as_str() {
            "--bind" => out.bind = value()?,
            "--replay" => {
                let v = value()?;
                let (path, file) = v.split_once('=').ok_or(USAGE.to_string())?;
                if !path.starts_with('/') || path == "/" {
                    return Err(format!(
                        "--replay {v}: the path must start with / and not be / itself"
                    ));
                }
                out.replays.push((path.to_string(), read_saved(file)?));
            }
            _ => return Err(USAGE.to_string()),
        }
    }
    Ok(out)
}

fn main() -> std::io::Result<()> {
    let Args { bind, replays } = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let mut app = Router::new().route("/", get(|| async { Html(PAGE) }));
            for (path, saved) in replays {
                app = app.route(
                    &path,
                    // The request's body is read, as portico reads a form's.
                    any(move |_body: Bytes| {
                        let s = saved.clone();
                        async move { (s.status, s.headers, s.body) }
                    }),
                );
            }
            let listener = tokio::net::TcpListener::bind(&bind).await?;
            eprintln!("bench-hello listening on {bind}");
            axum::serve(listener, app).await
        })
}
