//! The soak's load generator (`bench/soak` runs it): the mixed traffic of a real site from many
//! visitors at once, each on its own keep-alive connection with its own session.
//!
//! Anonymous visitors open the login page, fetch its captcha image and post a wrong answer (the
//! form comes back, 400); every twentieth round one of them starts over as a new browser (a new
//! connection and no cookie). Users (accounts made before the clock starts, in captcha test mode)
//! list their notes, create a note, read it, edit it, and every 25 rounds log out and in again
//! through the form. Every answer is checked against the status that route must give; latencies
//! are kept per route.
//!
//! Afterwards each user's notes are read back page by page: every note whose creation was
//! acknowledged must be there, with the title of its last acknowledged edit.
//!
//! A load generator of its own rather than wrk: the visitors carry sessions, CSRF tokens and
//! note ids from one request to the next, and the check afterwards needs to know which writes
//! were acknowledged. It speaks HTTP/1.1 itself over one connection per visitor (a small client
//! below) rather than through a client library: hyper's pool opened a second connection whenever
//! a request started before the previous connection was handed back to it, so 256 visitors held
//! about 416 connections and the soak measured something else than it said.
//!
//! Output: `ROUTE`, `TOTAL` and `NOTES` lines for `bench/soak` to read, then a table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Mixed traffic against a running site.
#[derive(Parser, Debug, Clone)]
#[command(name = "bench-load")]
struct Args {
    /// The site's address, e.g. 127.0.0.1:18091 (http:// in front is allowed)
    #[arg(long)]
    base: String,
    /// Visitors at once, each on its own connection.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// How many of them are logged-in users; the rest are anonymous.
    #[arg(long, default_value_t = 160)]
    users: usize,
    /// How long the load lasts.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The answer of every captcha (the site runs with PORTICO_CAPTCHA_TEST_ANSWER).
    #[arg(long, default_value = "test-captcha")]
    captcha: String,
    /// Account names start with this (unique per run).
    #[arg(long, default_value = "soak")]
    prefix: String,
    /// The server's process id: its memory and open files are sampled every second of the load.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The server's resident memory (kB) and open file descriptors now.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

const PASSWORD: &str = "soak-Passw0rd-2026";

/// The pages the load visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Route {
    LoginPage,
    Captcha,
    WrongCaptcha,
    Login,
    Logout,
    NotesList,
    NoteForm,
    CreateNote,
    ShowNote,
    EditNote,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::LoginPage => "GET /accounts/login/",
            Route::Captcha => "GET /captcha/",
            Route::WrongCaptcha => "POST /accounts/login/ (wrong captcha)",
            Route::Login => "POST /accounts/login/ (log in)",
            Route::Logout => "POST /accounts/logout/",
            Route::NotesList => "GET /notes/",
            Route::NoteForm => "GET /notes/new/",
            Route::CreateNote => "POST /notes/new/",
            Route::ShowNote => "GET /notes/{id}/",
            Route::EditNote => "POST /notes/{id}/edit/",
        }
    }

    /// The status a healthy site answers.
    fn expected(self) -> StatusCode {
        match self {
            Route::WrongCaptcha => StatusCode::BAD_REQUEST,
            Route::Login | Route::Logout | Route::CreateNote | Route::EditNote => {
                StatusCode::SEE_OTHER
            }
            _ => StatusCode::OK,
        }
    }
}

/// What one route saw.
#[derive(Debug, Default)]
struct RouteStats {
    micros: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    socket_errors: u64,
}

#[derive(Debug, Default)]
struct Stats {
    routes: HashMap<Route, RouteStats>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (route, s) in other.routes {
            let mine = self.routes.entry(route).or_default();
            mine.micros.extend(s.micros);
            for (k, v) in s.statuses {
                *mine.statuses.entry(k).or_default() += v;
            }
            mine.socket_errors += s.socket_errors;
        }
    }
}

/// An answer: status, `Location`, body.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

/// The status codes the load expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatusCode(u16);

impl StatusCode {
    const OK: StatusCode = StatusCode(200);
    const FOUND: StatusCode = StatusCode(302);
    const SEE_OTHER: StatusCode = StatusCode(303);
    const BAD_REQUEST: StatusCode = StatusCode(400);

    fn as_u16(self) -> u16 {
        self.0
    }
}

/// One browser: a keep-alive HTTP/1.1 connection (made again when the server closes it) and a
/// cookie jar.
struct Browser {
    addr: Arc<str>,
    conn: Option<BufReader<TcpStream>>,
    cookies: BTreeMap<String, String>,
}

/// A request that failed on the wire (refused, reset, cut short, timed out).
#[derive(Debug)]
struct SocketError;

impl From<std::io::Error> for SocketError {
    fn from(_: std::io::Error) -> Self {
        SocketError
    }
}

impl Browser {
    fn new(addr: Arc<str>) -> Self {
        Self {
            addr,
            conn: None,
            cookies: BTreeMap::new(),
        }
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), SocketError> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&*self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().ok_or(SocketError)?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(body) = form {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            head.push_str("\r\n");
        }
        conn.get_mut().write_all(head.as_bytes()).await?;

        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(SocketError);
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(SocketError)?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(SocketError);
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = Vec::new();
        if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            conn.read_exact(&mut body).await?;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| SocketError)?;
                let mut chunk = vec![0u8; size + 2];
                conn.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            conn.read_to_end(&mut body).await?;
            self.conn = None;
        }
        if close {
            self.conn = None;
        }
        for (k, v) in &headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    let removal = v.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
                    if removal {
                        self.cookies.remove(name.trim());
                    } else {
                        self.cookies
                            .insert(name.trim().to_string(), value.trim().to_string());
                    }
                }
            }
        }
        Ok((status, headers, body))
    }

    /// A request with a time limit; a failure drops the connection.
    async fn request(&mut self, method: &str, path: &str, form: Option<&str>) -> Option<Answer> {
        let result =
            tokio::time::timeout(Duration::from_secs(30), self.exchange(method, path, form)).await;
        match result {
            Ok(Ok((status, headers, body))) => Some(Answer {
                status: StatusCode(status),
                location: headers
                    .into_iter()
                    .find(|(k, _)| k == "location")
                    .map(|(_, v)| v),
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
            _ => {
                self.conn = None;
                None
            }
        }
    }
}

/// The `csrfmiddlewaretoken` in a page.
fn token_in(html: &str) -> Option<String> {
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// One visitor: a browser and what it has seen.
struct Visitor {
    addr: Arc<str>,
    browser: Browser,
    stats: Stats,
    /// Whether answers are counted (not while accounts are made, nor for the check afterwards).
    counting: bool,
}

impl Visitor {
    fn new(addr: Arc<str>) -> Self {
        Self {
            browser: Browser::new(addr.clone()),
            addr,
            stats: Stats::default(),
            counting: true,
        }
    }

    /// Forgets the connection and the cookies: a new browser.
    fn restart(&mut self) {
        self.browser = Browser::new(self.addr.clone());
    }

    async fn send(
        &mut self,
        route: Route,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> Option<Answer> {
        let start = Instant::now();
        let answer = self.browser.request(method, path, form).await;
        if self.counting {
            let s = self.stats.routes.entry(route).or_default();
            match &answer {
                Some(a) => {
                    s.micros
                        .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    *s.statuses.entry(a.status.as_u16()).or_default() += 1;
                }
                None => s.socket_errors += 1,
            }
        }
        answer
    }

    async fn get(&mut self, route: Route, path: &str) -> Option<Answer> {
        self.send(route, "GET", path, None).await
    }

    async fn post(&mut self, route: Route, path: &str, form: &[(&str, &str)]) -> Option<Answer> {
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                body.append_pair(k, v);
            }
            body.finish()
        };
        self.send(route, "POST", path, Some(&body)).await
    }

    /// The login page's token, with the captcha image fetched (which makes the challenge).
    async fn login_page(&mut self) -> Option<String> {
        let page = self.get(Route::LoginPage, "/accounts/login/").await?;
        let token = token_in(&page.body)?;
        self.get(Route::Captcha, "/captcha/").await?;
        Some(token)
    }

    /// Logs in through the form; answers a token of the new session.
    async fn log_in(&mut self, name: &str, captcha: &str) -> Option<String> {
        let token = self.login_page().await?;
        let form = [
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", name),
            ("password", PASSWORD),
            ("captcha", captcha),
        ];
        let a = self.post(Route::Login, "/accounts/login/", &form).await?;
        if a.status != StatusCode::SEE_OTHER {
            return None;
        }
        let form = self.get(Route::NoteForm, "/notes/new/").await?;
        token_in(&form.body)
    }
}

/// An anonymous visitor until `until`.
async fn anonymous(base: Arc<str>, until: Instant) -> Stats {
    let mut v = Visitor::new(base);
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        if round.is_multiple_of(20) {
            // A new browser: a new connection and no cookie.
            v.restart();
        }
        let Some(token) = v.login_page().await else {
            continue;
        };
        let form = [
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "somebody"),
            ("password", "not-the-password"),
            ("captcha", "wrong"),
        ];
        v.post(Route::WrongCaptcha, "/accounts/login/", &form).await;
    }
    v.stats
}

/// A user's notes: id to the title of its last acknowledged write.
type Notes = HashMap<i64, String>;

/// A user who is logged in (with `token`) until `until`.
async fn user(
    mut v: Visitor,
    name: String,
    mut token: String,
    captcha: Arc<str>,
    until: Instant,
) -> (Visitor, String, Notes) {
    let mut notes = Notes::new();
    let mut round = 0u64;
    // Users log out every 25 rounds, each at its own offset, as logins spread out on a real site.
    let offset: u64 = rand::random::<u64>() % 25;
    let body = "A note written under load: a few lines of text, as people write them.\n".repeat(4);
    while Instant::now() < until {
        round += 1;
        v.get(Route::NotesList, "/notes/").await;
        let title = format!("{name}n{round}z");
        let form = [
            ("csrfmiddlewaretoken", token.as_str()),
            ("title", title.as_str()),
            ("body", body.as_str()),
            ("tags", "work"),
        ];
        let created = v.post(Route::CreateNote, "/notes/new/", &form).await;
        let id = created
            .filter(|a| a.status == StatusCode::SEE_OTHER)
            .and_then(|a| a.location)
            .and_then(|l| {
                l.trim_start_matches("/notes/")
                    .trim_end_matches('/')
                    .parse::<i64>()
                    .ok()
            });
        if let Some(id) = id {
            notes.insert(id, title.clone());
            v.get(Route::ShowNote, &format!("/notes/{id}/")).await;
            let edited = format!("{title}-e");
            let form = [
                ("csrfmiddlewaretoken", token.as_str()),
                ("title", edited.as_str()),
                ("body", body.as_str()),
                ("tags", "home"),
            ];
            let path = format!("/notes/{id}/edit/");
            if let Some(a) = v.post(Route::EditNote, &path, &form).await {
                if a.status == StatusCode::SEE_OTHER {
                    notes.insert(id, edited);
                }
            }
        }
        if round % 25 == offset {
            let form = [("csrfmiddlewaretoken", token.as_str())];
            v.post(Route::Logout, "/accounts/logout/", &form).await;
            while Instant::now() < until {
                if let Some(t) = v.log_in(&name, &captcha).await {
                    token = t;
                    break;
                }
            }
        }
    }
    (v, name, notes)
}

/// Makes an account through the registration form; answers the logged-in visitor and a token.
async fn register(base: Arc<str>, name: String, captcha: Arc<str>) -> (Visitor, String, String) {
    let mut v = Visitor::new(base);
    v.counting = false;
    for _ in 0..5 {
        let Some(page) = v.get(Route::LoginPage, "/accounts/register/").await else {
            continue;
        };
        let Some(token) = token_in(&page.body) else {
            continue;
        };
        v.get(Route::Captcha, "/captcha/").await;
        let form = [
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", name.as_str()),
            ("password", PASSWORD),
            ("password2", PASSWORD),
            ("captcha", &captcha),
        ];
        let done = v.post(Route::Login, "/accounts/register/", &form).await;
        if done.is_some_and(|a| a.status == StatusCode::SEE_OTHER) {
            if let Some(form) = v.get(Route::NoteForm, "/notes/new/").await {
                if let Some(token) = token_in(&form.body) {
                    v.counting = true;
                    return (v, name, token);
                }
            }
        }
    }
    panic!("could not register {name}: is the site running in captcha test mode?");
}

/// Reads back a user's notes, page by page: answers (missing, stale) against `notes`.
async fn check_notes(v: &mut Visitor, name: &str, notes: &Notes, captcha: &str) -> (usize, usize) {
    v.counting = false;
    let mut seen: HashMap<i64, String> = HashMap::new();
    let mut page = 1;
    let mut tries = 0;
    loop {
        tries += 1;
        if tries > 10_000 {
            eprintln!("gave up reading {name}'s notes");
            break;
        }
        let Some(a) = v
            .get(Route::NotesList, &format!("/notes/?page={page}"))
            .await
        else {
            continue;
        };
        if a.status == StatusCode::FOUND || a.status == StatusCode::SEE_OTHER {
            // Logged out when the clock stopped: log in again.
            v.log_in(name, captcha).await;
            continue;
        }
        if a.status != StatusCode::OK {
            break;
        }
        for item in a.body.split("data-id=\"").skip(1) {
            let id = item.split('"').next().and_then(|s| s.parse::<i64>().ok());
            let title = item
                .split("<strong>")
                .nth(1)
                .and_then(|s| s.split("</strong>").next());
            if let (Some(id), Some(title)) = (id, title) {
                seen.insert(id, title.to_string());
            }
        }
        if !a.body.contains("page=") || !a.body.contains(&format!("page={}", page + 1)) {
            break;
        }
        page += 1;
    }
    let missing = notes.keys().filter(|id| !seen.contains_key(id)).count();
    let stale = notes
        .iter()
        .filter(|(id, t)| seen.get(id).is_some_and(|s| s != *t))
        .count();
    (missing, stale)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let base: Arc<str> = Arc::from(
        args.base
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    );
    let captcha: Arc<str> = Arc::from(args.captcha.as_str());
    let users = args.users.min(args.connections);

    // Accounts first, a few at a time (each is an Argon2 hash), before the clock starts.
    let mut made = Vec::new();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..users {
        let name = format!("{}u{i}", args.prefix);
        pending.spawn(register(base.clone(), name, captcha.clone()));
        if pending.len() >= 8 {
            made.extend(pending.join_next().await.map(|r| r.expect("register")));
        }
    }
    while let Some(r) = pending.join_next().await {
        made.push(r.expect("register"));
    }
    eprintln!(
        "{users} accounts ready; {} s of load from {} visitors",
        args.seconds, args.connections
    );

    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let mut user_tasks = tokio::task::JoinSet::new();
    for (v, name, token) in made {
        user_tasks.spawn(user(v, name, token, captcha.clone(), until));
    }
    let mut anon_tasks = tokio::task::JoinSet::new();
    for _ in users..args.connections {
        anon_tasks.spawn(anonymous(base.clone(), until));
    }
    let sampler = args.server_pid.map(|pid| {
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                // The last sample at least half a second before the end, while every visitor is
                // still busy: visitors that stop at the end close their connections.
                if Instant::now() + Duration::from_millis(500) >= until {
                    break;
                }
                if let Some((rss, fds)) = sample(pid) {
                    samples.push((start.elapsed().as_secs_f64(), rss, fds));
                }
            }
            samples
        })
    });
    let mut stats = Stats::default();
    let mut finished = Vec::new();
    while let Some(r) = user_tasks.join_next().await {
        let (mut v, name, notes) = r.expect("a user task");
        stats.merge(std::mem::take(&mut v.stats));
        finished.push((v, name, notes));
    }
    while let Some(r) = anon_tasks.join_next().await {
        stats.merge(r.expect("an anonymous task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(sampler) = sampler {
        for (t, rss, fds) in sampler.await.expect("the sampler") {
            println!("SAMPLE t={t:.1} rss_kb={rss} fds={fds}");
        }
    }

    // Every acknowledged note, read back.
    let (mut created, mut missing, mut stale) = (0, 0, 0);
    for (v, name, notes) in &mut finished {
        let (m, s) = check_notes(v, name, notes, &captcha).await;
        created += notes.len();
        missing += m;
        stale += s;
    }

    let (mut requests, mut server_errors, mut unexpected, mut socket_errors) = (0u64, 0, 0, 0);
    let mut rows = Vec::new();
    let mut routes: Vec<_> = stats.routes.into_iter().collect();
    routes.sort_by_key(|(r, _)| *r);
    for (route, mut s) in routes {
        s.micros.sort_unstable();
        let count = s.micros.len() as u64;
        requests += count + s.socket_errors;
        socket_errors += s.socket_errors;
        for (status, n) in &s.statuses {
            if *status >= 500 {
                server_errors += n;
            }
            if *status != route.expected().as_u16() {
                unexpected += n;
            }
        }
        let statuses: Vec<String> = s.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let (p50, p99, max) = (
            percentile(&s.micros, 0.50),
            percentile(&s.micros, 0.99),
            percentile(&s.micros, 1.0),
        );
        println!(
            "ROUTE name=\"{}\" count={count} rps={:.0} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.1} socket_errors={} statuses={}",
            route.name(),
            count as f64 / elapsed,
            s.socket_errors,
            statuses.join(",")
        );
        rows.push(format!(
            "| {} | {count} | {:.0} | {p50:.2} | {p99:.2} | {max:.1} | {} |",
            route.name(),
            count as f64 / elapsed,
            statuses.join(" ")
        ));
    }
    println!(
        "TOTAL requests={requests} seconds={elapsed:.1} rps={:.0} server_errors={server_errors} unexpected={unexpected} socket_errors={socket_errors}",
        requests as f64 / elapsed
    );
    println!("NOTES created={created} missing={missing} stale={stale}");
    println!();
    println!("| route | requests | req/s | p50 ms | p99 ms | max ms | statuses |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
