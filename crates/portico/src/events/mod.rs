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
//! response, and turns the markers other layers leave on responses (a CSRF refusal, a session
//! store failure, a request that carried the session cookie twice) into their events. Views add
//! their own through the [`Events`] extractor.
//!
//! ## Contents
//!
//! - this file: the schema, [`Event`] with its builder and [`EventKind`];
//! - `log`: [`EventLog`], the handle requests log through, its [`EventConfig`] and the
//!   [`EventWriter`] to wait for on shutdown;
//! - `writer`: the writer thread, its files and their rotation;
//! - `request`: [`RequestInfo`] (the request id and the client address) and the [`Events`]
//!   extractor;
//! - `layer`: [`EventLayer`] and its [`EventService`].

use serde::Serialize;

mod layer;
mod log;
mod request;
mod writer;

#[cfg(test)]
mod tests;

#[doc(inline)]
pub use self::layer::{EventLayer, EventService};
#[doc(inline)]
pub use self::log::{EventConfig, EventLog, EventWriter};
#[doc(inline)]
pub use self::request::{Events, RequestInfo};

/// The schema version written in every line.
pub const SCHEMA_VERSION: u32 = 1;

/// What an event records; written in the line's `kind` field in snake case (`login_fail`).
///
/// The analytics job reads these names (`analytics/portico_analytics/schema.py`), so a variant
/// is never renamed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// One per HTTP request, with `status` and `latency_ms`.
    #[default]
    Request,
    /// A login succeeded (`account`).
    LoginOk,
    /// A login failed (`account`, `reason`).
    LoginFail,
    /// A login for an account past its failure threshold waited before its password was checked
    /// (`account`).
    LoginSlowed,
    /// An account was created (`account`).
    Register,
    /// A session ended.
    Logout,
    /// A captcha was shown (`captcha_mode`).
    CaptchaIssued,
    /// A captcha was solved (`captcha_mode`).
    CaptchaOk,
    /// A captcha answer was rejected (`captcha_mode`, `reason`).
    CaptchaFail,
    /// A request failed the CSRF check (`reason`, `origin`).
    CsrfReject,
    /// A request was refused by a rate limit (`scope`).
    RateLimited,
    /// The session store failed (`error`).
    SessionStoreError,
    /// A request carried the session cookie more than once and got a fresh session.
    DuplicateSessionCookie,
}

/// One event. Fields that do not apply are left out of the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event {
    /// Schema version.
    pub v: u32,
    /// UTC time, RFC 3339 with milliseconds.
    pub time: String,
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    /// What happened.
    pub kind: EventKind,
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
    /// What was limited (rate_limited): `login_ip`, `login_account`, `captcha_session`,
    /// `captcha_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The failure (session_store_error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An event of `kind`; the request fields are filled in by [`Events::emit`].
    pub fn new(kind: EventKind) -> Self {
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
