//! The reference for every throughput ratio in `bench/RESULTS.md`: a bare axum 0.8 server that
//! returns a constant ~100-byte HTML page on two worker threads, the practical ceiling of the
//! benchmark machine. It takes `--bind ADDR` (default `127.0.0.1:8090`) and nothing else.

use axum::{response::Html, routing::get, Router};

const PAGE: &str = "<!doctype html><html><head><title>hello</title></head><body><p>Hello, world!</p></body></html>\n";

fn bind_addr() -> String {
    let mut args = std::env::args().skip(1);
    let mut bind = String::from("127.0.0.1:8090");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bind" => {
                if let Some(v) = args.next() {
                    bind = v;
                }
            }
            other => {
                if let Some(v) = other.strip_prefix("--bind=") {
                    bind = v.to_string();
                } else {
                    eprintln!("usage: bench-hello [--bind ADDR]");
                    std::process::exit(2);
                }
            }
        }
    }
    bind
}

fn main() -> std::io::Result<()> {
    let bind = bind_addr();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async move {
            let app = Router::new().route("/", get(|| async { Html(PAGE) }));
            let listener = tokio::net::TcpListener::bind(&bind).await?;
            eprintln!("bench-hello listening on {bind}");
            axum::serve(listener, app).await
        })
}
