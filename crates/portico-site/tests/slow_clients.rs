//! Slow and idle clients against the real binary: header, body and keep-alive timeouts, the
//! connection cap, and shutdown with requests in flight. Timeouts are set small through the
//! `PORTICO_*` settings so the tests take seconds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{browser, TestApp};
use reqwest::StatusCode;

const SLOW: usize = 500;

/// Raises this process's soft limit on open files to its hard limit, so that the test's own
/// sockets never run out first.
fn raise_fd_limit() {
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit read and write the struct passed, nothing else.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn addr(app: &TestApp) -> String {
    app.host()
}

/// Whether the server has closed `s` by `deadline` (a read answers end of file or an error).
fn closed_by(mut s: &TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Reads one response's status line from `s` (waiting at most `limit`).
fn status_line(s: &mut TcpStream, limit: Duration) -> Option<String> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.split("\r\n")
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_off_while_others_are_served() {
    raise_fd_limit();
    let app = TestApp::spawn(&[
        ("PORTICO_HEADER_TIMEOUT_SECS", "2"),
        ("PORTICO_KEEP_ALIVE_SECS", "30"),
    ]);
    let started = Instant::now();
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&app)).expect("connect");
            s.write_all(b"GET /accounts/lo")
                .expect("half a request line");
            s
        })
        .collect();
    // A normal visitor is served promptly in the meantime.
    let t = Instant::now();
    let r = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // Every slow socket is closed by the server once its header time is up; the slack covers
    // accepting 500 connections on a machine busy with the other tests.
    let deadline = started + Duration::from_secs(2 + 6);
    let still_open = slow.iter().filter(|s| !closed_by(s, deadline)).count();
    assert_eq!(
        still_open, 0,
        "{still_open} of {SLOW} slow sockets still open"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "closed after {took:?}");
    eprintln!("{SLOW} slow sockets closed {took:?} after the first was opened");
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn(&[("PORTICO_HEADER_TIMEOUT_SECS", "1")]);
    let s = TcpStream::connect(addr(&app)).unwrap();
    let start = Instant::now();
    assert!(closed_by(&s, start + Duration::from_secs(4)));
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[test]
fn an_idle_keep_alive_connection_lives_for_the_keep_alive_timeout_not_the_header_timeout() {
    let app = TestApp::spawn(&[
        ("PORTICO_HEADER_TIMEOUT_SECS", "1"),
        ("PORTICO_KEEP_ALIVE_SECS", "4"),
    ]);
    let mut s = TcpStream::connect(addr(&app)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let line = status_line(&mut s, Duration::from_secs(5)).expect("a response");
    assert!(line.contains(" 200"), "{line}");
    let idle_since = Instant::now();
    // Past the header timeout the idle connection is still open...
    assert!(!closed_by(&s, idle_since + Duration::from_secs(2)));
    // ...and serves its next request.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let line = status_line(&mut s, Duration::from_secs(5)).expect("a second response");
    assert!(line.contains(" 200"), "{line}");
    let idle_since = Instant::now();
    // Then it is closed once idle for the keep-alive time.
    assert!(closed_by(&s, idle_since + Duration::from_secs(7)));
    assert!(idle_since.elapsed() >= Duration::from_millis(3900));
}

#[test]
fn a_body_that_stops_arriving_is_cut_off_after_the_body_timeout() {
    let app = TestApp::spawn(&[("PORTICO_BODY_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(addr(&app)).unwrap();
    let head = format!(
        "POST /accounts/login/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=ada",
        addr(&app)
    );
    s.write_all(head.as_bytes()).unwrap();
    let start = Instant::now();
    let line = status_line(&mut s, Duration::from_secs(6)).expect("an answer");
    assert!(line.contains(" 400"), "{line}");
    assert!(start.elapsed() >= Duration::from_millis(1900));
    assert!(closed_by(&s, Instant::now() + Duration::from_secs(2)));
}

#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn(&[
        ("PORTICO_MAX_CONNECTIONS", "10"),
        ("PORTICO_HEADER_TIMEOUT_SECS", "30"),
    ]);
    let mut held: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(addr(&app)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The eleventh connection is made by the kernel but not served.
    let mut extra = TcpStream::connect(addr(&app)).unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert_eq!(status_line(&mut extra, Duration::from_secs(1)), None);
    // One held connection goes away: the waiting one is served.
    drop(held.pop());
    let line = status_line(&mut extra, Duration::from_secs(3)).expect("served after a slot frees");
    assert!(line.contains(" 200"), "{line}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let mut app = TestApp::spawn(&[("PORTICO_SHUTDOWN_GRACE_SECS", "3")]);
    let body = "username=ada&password=x";
    let head = format!(
        "POST /accounts/login/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        addr(&app),
        body.len()
    );
    // A request in flight: its head and half its body.
    let mut in_flight = TcpStream::connect(addr(&app)).unwrap();
    in_flight.write_all(head.as_bytes()).unwrap();
    in_flight.write_all(&body.as_bytes()[..8]).unwrap();
    // And one that will never finish.
    let mut stuck = TcpStream::connect(addr(&app)).unwrap();
    stuck.write_all(head.as_bytes()).unwrap();
    stuck.write_all(b"user").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    #[allow(unsafe_code)]
    // SAFETY: kill sends a signal to the child this test started.
    unsafe {
        libc::kill(app.pid() as i32, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(500));
    // No new connections once shutting down.
    assert!(TcpStream::connect(addr(&app)).is_err());
    // The rest of the body arrives: the request completes with its answer (the CSRF check's
    // refusal, as the post carries no token).
    in_flight.write_all(&body.as_bytes()[8..]).unwrap();
    let line = status_line(&mut in_flight, Duration::from_secs(2)).expect("an answer");
    assert!(line.contains(" 403"), "{line}");
    // The stuck one is closed when the grace period ends, and the server exits 0.
    let status = app
        .wait_exit(Duration::from_secs(8))
        .expect("the server exits within the grace period");
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() >= Duration::from_millis(2900));
    assert!(signalled.elapsed() < Duration::from_secs(6));
    assert!(closed_by(&stuck, Instant::now() + Duration::from_secs(1)));
}
