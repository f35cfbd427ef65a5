//! The security event log: one JSON object a line, written off the request path.
//!
//! Requests hand events to a bounded channel and go on; one writer thread appends them to
//! `<dir>/events-YYYY-MM-DD[-<instance>].jsonl`, starting a new file each UTC day and when a file
//! passes its size limit (`...-1.jsonl`, `...-2.jsonl`). When the channel is full the event is
//! dropped and counted ([`EventLog::dropped`]) rather than making a request wait. The writer
//! flushes every second and on shutdown, so a crash loses at most the last second.
//!
//! A file only ever holds whole lines. Lines wait in a buffer and go to the file together; when
//! that write fails (a full disk), whatever part of it reached the file is cut off again, the
//! buffered lines are dropped and counted with the others, and the writer carries on: requests
//! never wait for the disk, and once there is space again the next flush writes as before. One
//! log line says when dropping starts and one when it ends, with the count. A file that ends in a
//! partial line (a crash mid-write) is cut back to its last whole line before it is appended to.
//!
//! Schema version 1 (`analytics/README.md` documents every field): `v`, `time` (RFC 3339 UTC),
//! `ts_ms`, `kind`, `instance`, `request_id`, `client_ip`, `user`, `session_hash` (a keyed hash of
//! the session id, never the id), `path`, `method`, `status`, `latency_ms`, and per kind `reason`,
//! `account`, `captcha_mode`, `origin`, `scope`, `error`.
//!
//! [`EventLayer`] gives each request an id and a client address, logs a `request` event for every
//! response, and turns the markers other layers leave on responses (a CSRF refusal, a session store
//! failure, a request that carried the session cookie twice) into their events. Views add their own through the [`Events`] extractor.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{request::Parts, HeaderValue, Request};
use axum::response::Response;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use tokio::sync::mpsc;

use crate::csrf::Refused;
use crate::session::{session_cookie_in, CookieId, DuplicateCookie, Session, StoreFailure};

/// The schema version written in every line.
pub const SCHEMA_VERSION: u32 = 1;

/// One event. Fields that do not apply are left out of the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    /// Schema version.
    pub v: u32,
    /// UTC time, RFC 3339 with milliseconds.
    pub time: String,
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    /// The kind: `request`, `login_ok`, `login_fail`, `login_slowed`, `register`, `logout`,
    /// `captcha_issued`, `captcha_ok`, `captcha_fail`, `csrf_reject`, `rate_limited`,
    /// `session_store_error`, `duplicate_session_cookie`.
    pub kind: &'static str,
    /// The server that wrote it.
    pub instance: String,
    /// The request's id (also sent as `X-Request-Id`).
    pub request_id: String,
    /// The client's address.
    pub client_ip: String,
    /// The logged-in user, if any.
    pub user: Option<String>,
    /// A keyed hash of the session id, if the request had a session.
    pub session_hash: Option<String>,
    /// The request path.
    pub path: String,
    /// The request method.
    pub method: String,
    /// The response status, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Milliseconds from request to response, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why (login_fail, captcha_fail, csrf_reject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The account an attempt was made on (login, register).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `latin`, `digits` or `zh` (captcha events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captcha_mode: Option<String>,
    /// The `Origin` header (csrf_reject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// What was limited (rate_limited): `login_ip`, `login_account`, `captcha_session`, `captcha_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The failure (session_store_error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An event of `kind`; the request fields are filled in by [`Events::emit`].
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Sets `reason`.
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }

    /// Sets `account`.
    pub fn account(mut self, a: impl Into<String>) -> Self {
        self.account = Some(a.into());
        self
    }

    /// Sets `captcha_mode`.
    pub fn captcha_mode(mut self, m: impl Into<String>) -> Self {
        self.captcha_mode = Some(m.into());
        self
    }

    /// Sets `scope`.
    pub fn scope(mut self, s: impl Into<String>) -> Self {
        self.scope = Some(s.into());
        self
    }
}

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// The folder of the log files.
    pub dir: PathBuf,
    /// This server's name, in every line and in the file names (so servers sharing a folder
    /// never write the same file).
    pub instance: String,
    /// A file past this many bytes is closed and the next one started.
    pub max_file_bytes: u64,
    /// How many events may wait for the writer before new ones are dropped.
    pub capacity: usize,
    /// How often the writer drains the queue (100 ms). The writer is woken at once by
    /// [`EventLog::close`], and early by a queue of 256 events, so this bounds only how stale the
    /// file is while running.
    pub drain_every: Duration,
}

/// Queued events at which a request wakes the writer before its next tick. Under load the queue,
/// and the memory its events hold, then stays about this long instead of a whole tick's worth
/// (4,000 events, ≈ 4 MB of the server's peak memory, at 40,000 requests a second); an idle or
/// quiet server is still woken only by the tick.
const WAKE_AT: usize = 256;

impl EventConfig {
    /// The defaults for `dir`: instance `main`, 64 MiB files, 16k queued events.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            instance: "main".into(),
            max_file_bytes: 64 << 20,
            capacity: 16_384,
            drain_every: Duration::from_millis(100),
        }
    }
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<Event>,
    closed: Arc<AtomicBool>,
    writer: std::thread::Thread,
    counts: Arc<Counts>,
    hash_key: [u8; 32],
}

/// What became of the events, shared by the requests and the writer thread.
#[derive(Debug, Default)]
struct Counts {
    /// Events in the file or buffered for it.
    written: AtomicU64,
    /// Events dropped: the queue was full, the log closed, or the disk refused them.
    dropped: AtomicU64,
}

/// The handle requests log through. Cheap to clone; [`EventLog::disabled`] logs nothing.
#[derive(Debug, Clone)]
pub struct EventLog {
    shared: Option<Arc<Shared>>,
}

/// The writer thread of an [`EventLog`]; await [`EventWriter::finish`] after [`EventLog::close`].
#[derive(Debug)]
pub struct EventWriter(std::thread::JoinHandle<()>);

impl EventWriter {
    /// Waits until every queued event is written and the file flushed.
    pub async fn finish(self) {
        let handle = self.0;
        match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::error!("event writer ended abnormally"),
        }
    }
}

impl EventLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// Starts the writer thread. `hash_key` keys the session-id hash, so the log cannot be joined
    /// against a stolen session table.
    pub fn start(config: EventConfig, hash_key: [u8; 32]) -> std::io::Result<(Self, EventWriter)> {
        // The log names accounts and addresses: readable by the server's user only.
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&config.dir)?;
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let closed = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        // A thread of its own with plain blocking file I/O: tokio's file operations would hand
        // every buffer flush to the blocking pool, a thread switch each time.
        let task = {
            let (closed, counts) = (closed.clone(), counts.clone());
            std::thread::Builder::new()
                .name("portico-events".into())
                .spawn(move || write_loop(rx, config, counts, closed))?
        };
        let shared = Arc::new(Shared {
            tx,
            closed,
            writer: task.thread().clone(),
            counts,
            hash_key,
        });
        Ok((
            Self {
                shared: Some(shared),
            },
            EventWriter(task),
        ))
    }

    /// Queues an event; never waits. A full queue drops it and counts it.
    pub fn record(&self, mut event: Event) {
        let Some(shared) = &self.shared else { return };
        if shared.closed.load(Ordering::Relaxed) {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Only the clock is read here; the writer thread formats the time and fills the constant
        // fields, off the request path.
        event.ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if shared.tx.try_send(event).is_err() {
            shared.counts.dropped.fetch_add(1, Ordering::Relaxed);
        } else if shared.tx.max_capacity() - shared.tx.capacity() >= WAKE_AT {
            shared.writer.unpark();
        }
    }

    /// Events dropped so far: the queue was full, the log was closed, or the file could not take
    /// them (a full disk). A site shows it to its operators (Portico's site: `/healthz`).
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.counts.dropped.load(Ordering::Relaxed))
    }

    /// Events written so far (in the file, or buffered for its next flush).
    pub fn written(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.counts.written.load(Ordering::Relaxed))
    }

    /// Stops accepting events; the writer drains the queue, flushes and ends.
    pub fn close(&self) {
        if let Some(s) = &self.shared {
            s.closed.store(true, Ordering::Relaxed);
            s.writer.unpark();
        }
    }

    /// The keyed hash of a session id that the log carries instead of the id.
    pub fn session_hash(&self, session_id: &str) -> Option<String> {
        let shared = self.shared.as_ref()?;
        let mut h = Sha256::new();
        h.update(shared.hash_key);
        h.update(session_id.as_bytes());
        Some(hex::encode(&h.finalize()[..12]))
    }
}

fn format_time(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

fn file_name(dir: &Path, day: &str, instance: &str, part: u32) -> PathBuf {
    let inst = if instance.is_empty() || instance == "main" {
        String::new()
    } else {
        format!("-{instance}")
    };
    let part = if part == 0 {
        String::new()
    } else {
        format!("-{part}")
    };
    dir.join(format!("events-{day}{inst}{part}.jsonl"))
}

/// The file being appended to, and the whole lines waiting to go into it.
struct OpenFile {
    day: String,
    part: u32,
    /// Bytes in the file: all of them whole lines.
    size: u64,
    file: std::fs::File,
    pending: Vec<u8>,
    pending_lines: u64,
}

/// Lines are buffered up to this many bytes before they are written.
const BUFFER_BYTES: usize = 64 * 1024;

impl OpenFile {
    /// Writes the buffered lines. On failure the file is cut back to the whole lines it had, and
    /// the buffered lines are answered as dropped (with the error).
    fn flush(&mut self) -> Result<(), (u64, std::io::Error)> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.pending_lines);
        let result = self.file.write_all(&self.pending);
        let len = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // Part of the buffer may have reached the file: cut it off, so the file still
                // ends with a whole line (appends go to the end, wherever it now is).
                if let Err(cut) = self.file.set_len(self.size) {
                    tracing::error!(error = %cut, "cannot cut a partial line off the event log");
                }
                Err((lines, e))
            }
        }
    }
}

/// Cuts a file that does not end in a newline (a write cut short by a crash) back to its last
/// whole line, and answers its length.
fn whole_lines(file: &mut std::fs::File) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    // A line is far shorter than this; the tail holds the last newline.
    let tail = size.min(1 << 20);
    let mut buf = vec![0u8; tail as usize];
    file.seek(SeekFrom::Start(size - tail))?;
    file.read_exact(&mut buf)?;
    if buf.last() == Some(&b'\n') {
        return Ok(size);
    }
    let keep = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => size - tail + i as u64 + 1,
        None if tail == size => 0,
        None => size,
    };
    file.set_len(keep)?;
    Ok(keep)
}

fn open_for(config: &EventConfig, day: &str, mut part: u32) -> std::io::Result<OpenFile> {
    loop {
        let path = file_name(&config.dir, day, &config.instance, part);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).read(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        let size = whole_lines(&mut file)?;
        if size < config.max_file_bytes {
            return Ok(OpenFile {
                day: day.to_string(),
                part,
                size,
                file,
                pending: Vec::with_capacity(BUFFER_BYTES),
                pending_lines: 0,
            });
        }
        part += 1;
    }
}

/// The writer thread's state: the open file and whether the disk is refusing lines.
struct Writer {
    config: EventConfig,
    counts: Arc<Counts>,
    file: Option<OpenFile>,
    /// The drop count when writing began to fail; `None` while writes succeed.
    failing_since: Option<u64>,
}

impl Writer {
    /// Counts lines that could not be written, and says so once when it starts.
    fn dropped(&mut self, lines: u64, e: &std::io::Error) {
        self.counts.written.fetch_sub(lines, Ordering::Relaxed);
        let before = self.counts.dropped.fetch_add(lines, Ordering::Relaxed);
        if self.failing_since.is_none() {
            self.failing_since = Some(before);
            tracing::error!(error = %e, dir = %self.config.dir.display(),
                "cannot write the event log; dropping events and counting them until it can");
        }
    }

    /// Says once that writing works again, with what was lost meanwhile.
    fn succeeded(&mut self) {
        if let Some(since) = self.failing_since.take() {
            let lost = self.counts.dropped.load(Ordering::Relaxed) - since;
            tracing::warn!(dropped = lost, "the event log is written again");
        }
    }

    fn flush(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        let had_lines = f.pending_lines > 0;
        match f.flush() {
            Ok(()) if had_lines => self.succeeded(),
            Ok(()) => {}
            Err((lines, e)) => self.dropped(lines, &e),
        }
    }

    fn write(&mut self, mut ev: Event) {
        ev.v = SCHEMA_VERSION;
        if ev.instance.is_empty() {
            ev.instance = self.config.instance.clone();
        }
        ev.time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ev.ts_ms) * 1_000_000)
            .map(format_time)
            .unwrap_or_default();
        let mut line = match serde_json::to_vec(&ev) {
            Ok(line) => line,
            Err(e) => return self.dropped(1, &std::io::Error::other(e)),
        };
        line.push(b'\n');
        self.counts.written.fetch_add(1, Ordering::Relaxed);
        let day = ev.time.get(..10).unwrap_or("unknown");
        let rotate = match self.file.as_ref() {
            None => true,
            Some(f) => {
                f.day != day
                    || f.size + (f.pending.len() + line.len()) as u64 > self.config.max_file_bytes
            }
        };
        if rotate {
            self.flush();
            let next_part = match self.file.take() {
                Some(old) if old.day == day => old.part + 1,
                _ => 0,
            };
            match open_for(&self.config, day, next_part) {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.dropped(1, &e),
            }
        }
        let Some(f) = self.file.as_mut() else { return };
        f.pending.extend_from_slice(&line);
        f.pending_lines += 1;
        if f.pending.len() >= BUFFER_BYTES {
            self.flush();
        }
    }
}

fn write_loop(
    mut rx: mpsc::Receiver<Event>,
    config: EventConfig,
    counts: Arc<Counts>,
    closed: Arc<AtomicBool>,
) {
    // The writer wakes on a short tick and drains whatever queued meanwhile, instead of being
    // woken by every event: under load that saves a cross-thread wake-up per request.
    let drain_every = config.drain_every;
    let mut w = Writer {
        config,
        counts,
        file: None,
        failing_since: None,
    };
    let mut last_flush = Instant::now();
    loop {
        std::thread::park_timeout(drain_every);
        // Read the flag before draining, so that everything queued before `close` is written.
        let closing = closed.load(Ordering::Relaxed);
        let disconnected = loop {
            match rx.try_recv() {
                Ok(ev) => w.write(ev),
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        let done = closing || disconnected;
        // At most a second's events sit in the buffer: that is what a crash can lose.
        if done || last_flush.elapsed() >= Duration::from_secs(1) {
            last_flush = Instant::now();
            w.flush();
        }
        if done {
            break;
        }
    }
}

/// What the log knows of one request; filled in by [`EventLayer`].
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request id.
    pub id: String,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The logged-in user, set by the site's authentication once it knows.
    pub user: Arc<Mutex<Option<String>>>,
}

impl RequestInfo {
    /// Records who the logged-in user is, for every event of this request.
    pub fn set_user(&self, user: Option<String>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = user;
    }

    fn user(&self) -> Option<String> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A view's handle for logging events about its request.
///
/// ```
/// use portico::events::{Event, Events};
/// async fn login(events: Events) -> &'static str {
///     events.emit(Event::new("login_fail").account("ada").reason("bad_credentials")).await;
///     "no"
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::post(login));
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    log: EventLog,
    info: RequestInfo,
    path: String,
    method: String,
    session: Option<Session>,
}

impl Events {
    /// Logs `event` with this request's id, address, user, session hash, path and method.
    pub async fn emit(&self, mut event: Event) {
        if self.log.shared.is_none() {
            return;
        }
        event.request_id = self.info.id.clone();
        event.client_ip = self.info.client_ip.to_string();
        event.user = self.info.user();
        if let Some(s) = &self.session {
            if let Some(id) = s.cookie_id().await {
                event.session_hash = self.log.session_hash(&id);
            }
        }
        event.path = self.path.clone();
        event.method = self.method.clone();
        self.log.record(event);
    }

    /// The request's client address.
    pub fn client_ip(&self) -> IpAddr {
        self.info.client_ip
    }

    /// The request's info (id, address, user).
    pub fn info(&self) -> &RequestInfo {
        &self.info
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Events {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let info = parts
            .extensions
            .get::<RequestInfo>()
            .cloned()
            .unwrap_or_else(|| RequestInfo {
                id: String::new(),
                client_ip: client_ip(parts, false),
                user: Arc::default(),
            });
        Ok(Events {
            log: parts
                .extensions
                .get::<EventLog>()
                .cloned()
                .unwrap_or_else(EventLog::disabled),
            info,
            path: parts.uri.path().to_string(),
            method: parts.method.to_string(),
            session: parts.extensions.get::<Session>().cloned(),
        })
    }
}

fn client_ip(parts: &Parts, trust_forwarded: bool) -> IpAddr {
    if trust_forwarded {
        // The proxy appends the address it saw last; that is the one it vouches for.
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Gives every request an id and client address and logs what happened to it.
#[derive(Debug, Clone)]
pub struct EventLayer {
    log: EventLog,
    trust_forwarded: bool,
    session_cookie: Arc<str>,
}

impl EventLayer {
    /// Logs to `log`. With `trust_forwarded`, the client address is the last `X-Forwarded-For`
    /// entry (set it only behind a proxy that sets that header).
    pub fn new(log: EventLog, trust_forwarded: bool) -> Self {
        Self {
            log,
            trust_forwarded,
            session_cookie: Arc::from("sessionid"),
        }
    }

    /// The name of the session cookie whose id is hashed into `session_hash` (`sessionid`).
    pub fn session_cookie(mut self, name: &str) -> Self {
        self.session_cookie = Arc::from(name);
        self
    }
}

impl<S> tower::Layer<S> for EventLayer {
    type Service = EventService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EventService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`EventLayer`].
#[derive(Debug, Clone)]
pub struct EventService<S> {
    inner: S,
    layer: EventLayer,
}

fn request_id() -> String {
    let b: [u8; 8] = rand::random();
    hex::encode(b)
}

impl<S> tower::Service<Request<axum::body::Body>> for EventService<S>
where
    S: tower::Service<Request<axum::body::Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<axum::body::Body>) -> Self::Future {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let info = RequestInfo {
            id: request_id(),
            client_ip: client_ip(&parts, self.layer.trust_forwarded),
            user: Arc::default(),
        };
        parts.extensions.insert(info.clone());
        parts.extensions.insert(self.layer.log.clone());
        let path = parts.uri.path().to_string();
        let method = parts.method.to_string();
        let session_id = session_id_in(&parts.headers, &self.layer.session_cookie);
        let fut = self.inner.call(Request::from_parts(parts, body));
        let log = self.layer.log.clone();
        Box::pin(async move {
            let mut resp = fut.await?;
            if let Ok(v) = HeaderValue::from_str(&info.id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            if log.shared.is_none() {
                return Ok(resp);
            }
            let base = Event {
                request_id: info.id.clone(),
                client_ip: info.client_ip.to_string(),
                user: info.user(),
                session_hash: session_id.and_then(|id| log.session_hash(&id)),
                path,
                method,
                status: Some(resp.status().as_u16()),
                ..Event::default()
            };
            if let Some(r) = resp.extensions().get::<Refused>() {
                log.record(Event {
                    kind: "csrf_reject",
                    reason: Some(r.reason.code().to_string()),
                    origin: r.origin.clone(),
                    ..base.clone()
                });
            }
            if resp.extensions().get::<DuplicateCookie>().is_some() {
                log.record(Event {
                    kind: "duplicate_session_cookie",
                    ..base.clone()
                });
            }
            if let Some(f) = resp.extensions().get::<StoreFailure>() {
                log.record(Event {
                    kind: "session_store_error",
                    error: Some(f.0.clone()),
                    ..base.clone()
                });
            }
            log.record(Event {
                kind: "request",
                latency_ms: Some(start.elapsed().as_secs_f64() * 1000.0),
                ..base
            });
            Ok(resp)
        })
    }
}

/// The session id the request's session cookie carries; none when it carries the cookie twice
/// (the session layer gives such a request a fresh session).
fn session_id_in(headers: &http::HeaderMap, cookie_name: &str) -> Option<String> {
    match session_cookie_in(headers, cookie_name) {
        CookieId::One(id) => Some(id),
        CookieId::Absent | CookieId::Duplicate => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_land_as_json_lines_and_flush_on_close() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        let (log, writer) = EventLog::start(
            EventConfig {
                instance: "a".into(),
                ..EventConfig::new(&dir)
            },
            [0; 32],
        )
        .unwrap();
        log.record(
            Event::new("login_fail")
                .account("ada")
                .reason("bad_credentials"),
        );
        log.record(Event::new("logout"));
        log.close();
        writer.finish().await;
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("events-") && name.ends_with("-a.jsonl"),
            "{name}"
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["v"], 1);
        assert_eq!(lines[0]["kind"], "login_fail");
        assert_eq!(lines[0]["account"], "ada");
        assert_eq!(lines[0]["instance"], "a");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert!(lines[1].get("reason").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn files_rotate_by_size() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        let cfg = EventConfig {
            max_file_bytes: 600,
            ..EventConfig::new(&dir)
        };
        let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
        for _ in 0..10 {
            log.record(Event::new("request"));
        }
        log.close();
        writer.finish().await;
        let mut total = 0;
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 3, "{files:?}");
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= 600, "{f:?} is {len} bytes");
            total += std::fs::read_to_string(f).unwrap().lines().count();
        }
        assert_eq!(total, 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        let cfg = EventConfig {
            capacity: 1,
            drain_every: Duration::from_secs(3600),
            ..EventConfig::new(&dir)
        };
        let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
        // The writer drains only when closed here, so the second event finds the queue full.
        log.record(Event::new("request"));
        log.record(Event::new("request"));
        assert_eq!(log.dropped(), 1);
        log.close();
        writer.finish().await;
        assert_eq!(log.written(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Today's file of the default instance in `dir`.
    fn todays_file(dir: &Path) -> PathBuf {
        let day = format_time(time::OffsetDateTime::now_utc())[..10].to_string();
        file_name(dir, &day, "main", 0)
    }

    #[tokio::test]
    async fn a_disk_that_refuses_lines_drops_and_counts_them_without_blocking() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        // Every write to /dev/full fails with "no space left on device".
        std::os::unix::fs::symlink("/dev/full", todays_file(&dir)).unwrap();
        let (log, writer) = EventLog::start(EventConfig::new(&dir), [0; 32]).unwrap();
        let started = Instant::now();
        for _ in 0..10 {
            log.record(Event::new("request"));
        }
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "recording waited"
        );
        log.close();
        writer.finish().await;
        assert_eq!(log.dropped(), 10);
        assert_eq!(log.written(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_partial_last_line_is_cut_before_appending() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = todays_file(&dir);
        std::fs::write(&path, "{\"kind\":\"request\"}\n{\"kind\":\"req").unwrap();
        let (log, writer) = EventLog::start(EventConfig::new(&dir), [0; 32]).unwrap();
        log.record(Event::new("logout"));
        log.close();
        writer.finish().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"request\"", "\"logout\""]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_long_queue_wakes_the_writer_before_its_tick() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        let cfg = EventConfig {
            drain_every: Duration::from_secs(3600),
            ..EventConfig::new(&dir)
        };
        let (log, writer) = EventLog::start(cfg, [0; 32]).unwrap();
        for _ in 0..WAKE_AT - 1 {
            log.record(Event::new("request"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.written(), 0, "a short queue waits for the tick");
        log.record(Event::new("request"));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.written() < WAKE_AT as u64 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            log.written(),
            WAKE_AT as u64,
            "the writer drained without its tick"
        );
        log.close();
        writer.finish().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn session_hash_is_keyed_and_hides_the_id() {
        let dir = std::env::temp_dir().join(format!("portico-events-{}", rand::random::<u64>()));
        let (a, wa) = EventLog::start(EventConfig::new(&dir), [1; 32]).unwrap();
        let (b, wb) = EventLog::start(EventConfig::new(&dir), [2; 32]).unwrap();
        let id = "A".repeat(43);
        let ha = a.session_hash(&id).unwrap();
        assert_ne!(ha, b.session_hash(&id).unwrap());
        assert!(!ha.contains(&id[..8]));
        a.close();
        b.close();
        wa.finish().await;
        wb.finish().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
