//! The HTTP server: hyper's HTTP/1.1 connections with the limits a server on the open internet
//! needs, and a shutdown that lets requests in flight finish.
//!
//! `axum::serve` has no read timeouts and no connection cap, so a client that sends half a
//! request and waits holds a socket and a file descriptor for as long as it likes; a few
//! thousand such clients exhaust the process's descriptors. Here every connection lives by
//! these rules:
//!
//! | phase | limit | setting |
//! |---|---|---|
//! | from opening, or from the first byte of a request, to the end of its headers | header timeout | `PORTICO_HEADER_TIMEOUT_SECS` (10 s) |
//! | from the end of the headers to the end of the body | body timeout | `PORTICO_BODY_TIMEOUT_SECS` (30 s) |
//! | from the end of a response to the next request's first byte | keep-alive timeout | `PORTICO_KEEP_ALIVE_SECS` (75 s) |
//!
//! A connection past its header or keep-alive time is closed without an answer; a body past its
//! time fails the read, which the view answers with 400, and the connection is closed after it.
//! At most `PORTICO_MAX_CONNECTIONS` connections are open at once: the server stops accepting at
//! the cap, so further connections wait in the kernel's listen backlog (and are refused by the
//! kernel once that is full) until one closes.
//!
//! hyper's own `header_read_timeout` is not used: it runs from the moment a connection waits for
//! a request, so it cannot give an idle keep-alive connection longer than a slow request head.
//! The phases are tracked instead by a wrapper around the socket ([`TimedIo`]), told by the
//! service when a request's head has arrived and when its response is finished.
//!
//! On shutdown the listener closes first, then every connection finishes the request it is
//! serving (idle ones close at once), for up to the grace period
//! (`PORTICO_SHUTDOWN_GRACE_SECS`, 25 s); connections still open after it are closed.
//!
//! HTTP/1.1 only: the site runs behind a proxy or is reached directly by browsers, which speak
//! HTTP/2 only over TLS, which this server does not terminate.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::Request;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The server's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time to send a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection waits for its next request.
    pub keep_alive: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Time requests in flight get to finish at shutdown.
    pub shutdown_grace: Duration,
}

/// Descriptors kept for everything but client connections: databases, the event log, the
/// session store's connections, the listener.
const RESERVED_FDS: u64 = 256;

/// Raises the soft limit on open files to the hard limit (many systems start services with a
/// soft limit of 1024 and a far higher hard one) and answers how many connections fit in it,
/// at most `wanted`.
pub fn connection_budget(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        #[allow(unsafe_code)]
        let limit = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return wanted;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
            lim.rlim_cur
        };
        let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
        if fit < wanted {
            tracing::warn!(
                wanted,
                serving = fit,
                open_file_limit = limit,
                "the open-file limit cannot hold PORTICO_MAX_CONNECTIONS; serving fewer connections at once (raise LimitNOFILE / ulimit -n)"
            );
            return fit;
        }
    }
    wanted
}

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully.
///
/// Views see the peer's address as `ConnectInfo<SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer is off: TimedIo keeps the header and keep-alive times apart.
    http.keep_alive(true).header_read_timeout(None);
    tokio::pin!(shutdown);

    loop {
        // A slot first, then accept: at the cap, new connections wait in the listen backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let phase = Arc::new(Phase::default());
        let io = TokioIo::new(TimedIo::new(stream, phase.clone(), limits));
        let service = {
            let router = router.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                phase.set(Phase::BUSY);
                let deadline = Instant::now() + limits.body_timeout;
                let mut req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, deadline)));
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                let phase = phase.clone();
                async move {
                    let resp = match router.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(resp.map(|body| IdleWhenSent { body, phase }))
                }
            })
        };
        let conn = graceful.watch(http.serve_connection(io, service));
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = close.wait_for(|c| *c) => {}
            }
            drop(slot);
        });
    }

    // No new connections from here on.
    drop(listener);
    let open = max - slots.available_permits();
    tracing::info!(
        open,
        grace_secs = limits.shutdown_grace.as_secs(),
        "letting requests in flight finish"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = max - slots.available_permits();
        tracing::warn!(open, "grace period over; closing the remaining connections");
        let _ = close_tx.send(true);
        // Each task drops its connection at its next poll; wait for them briefly.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            slots.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)),
        )
        .await;
    }
}

/// Out of descriptors (or another accept failure): wait a little rather than spin, as open
/// connections close and free them.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Where a connection is in its request cycle, shared by its socket wrapper and its service.
/// A change also bumps a generation, so the socket re-arms its deadline, and wakes the socket's
/// reader: hyper may already be waiting on the socket when a response is finished, and the
/// keep-alive deadline must start counting then, not at the next byte.
#[derive(Debug, Default)]
struct Phase {
    state: AtomicU64,
    reader: AtomicWaker,
}

impl Phase {
    /// Waiting for (the rest of) a request's head.
    const HEAD: u64 = 0;
    /// A request is being served: its body is read under its own deadline.
    const BUSY: u64 = 1;
    /// The response is sent; waiting for the next request.
    const IDLE: u64 = 2;

    /// (phase, generation)
    fn get(&self) -> (u64, u64) {
        let v = self.state.load(Ordering::Acquire);
        (v & 3, v >> 2)
    }

    fn set(&self, phase: u64) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some((((v >> 2) + 1) << 2) | phase)
            });
        self.reader.wake();
    }
}

/// A socket whose reads fail with `TimedOut` when the connection overstays its phase.
struct TimedIo {
    stream: TcpStream,
    phase: Arc<Phase>,
    limits: Limits,
    /// The generation the deadline was armed for.
    armed: Option<u64>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn new(stream: TcpStream, phase: Arc<Phase>, limits: Limits) -> Self {
        Self {
            stream,
            phase,
            limits,
            armed: None,
            deadline: None,
        }
    }

    fn arm(&mut self, generation: u64, after: Option<Duration>) {
        self.armed = Some(generation);
        self.deadline = after.map(|d| {
            let at = Instant::now() + d;
            match self.deadline.take() {
                Some(mut s) => {
                    s.as_mut().reset(at);
                    s
                }
                None => Box::pin(tokio::time::sleep_until(at)),
            }
        });
    }

    /// Re-arms the deadline if the phase changed since it was armed.
    fn sync(&mut self) {
        let (phase, generation) = self.phase.get();
        if self.armed != Some(generation) {
            let after = match phase {
                Phase::HEAD => Some(self.limits.header_timeout),
                Phase::IDLE => Some(self.limits.keep_alive),
                _ => None,
            };
            self.arm(generation, after);
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.phase.reader.register(cx.waker());
        this.sync();
        if let Some(d) = &mut this.deadline {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before && this.phase.get().0 == Phase::IDLE {
            // The next request's first bytes: its head gets the header timeout from now.
            this.phase.set(Phase::HEAD);
            this.sync();
        }
        res
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The error a body read gets when the client is too slow to send it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
struct BodyTimeout;

/// A request body that must arrive whole by a deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                // The timer is made only for a body that is not all there at the first read.
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its connection idle once hyper is done with it (sent, or dropped
/// with the connection), which starts the keep-alive timeout.
struct IdleWhenSent {
    body: axum::body::Body,
    phase: Arc<Phase>,
}

impl Drop for IdleWhenSent {
    fn drop(&mut self) {
        self.phase.set(Phase::IDLE);
    }
}

impl http_body::Body for IdleWhenSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_change_is_a_new_generation() {
        let p = Phase::default();
        assert_eq!(p.get(), (Phase::HEAD, 0));
        p.set(Phase::BUSY);
        assert_eq!(p.get(), (Phase::BUSY, 1));
        p.set(Phase::IDLE);
        p.set(Phase::IDLE);
        assert_eq!(p.get(), (Phase::IDLE, 3));
    }
}
