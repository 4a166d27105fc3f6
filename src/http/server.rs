//! The HTTP server: the accept loop over the daemon's listener, hyper's HTTP/1.1 on each connection,
//! and the bounds of `[server]` ([`ServerLimits`]) that keep slow and many clients from taking the
//! daemon down with them (without them, a few thousand idle connections take every file descriptor,
//! and then the probes, SMTP and SQLite fail with the server).
//!
//! | bound | what it stops | how |
//! |---|---|---|
//! | `max_connections` | a flood of connections | at the limit, [`serve`] closes the connection that has waited longest for a request to make room (a new one when none waits) |
//! | `header_read_timeout` | a request head sent slowly (slowloris), or a new connection that sends nothing | a clock from the head's first byte (from the accept for the first head) |
//! | `idle_timeout` | a client that stops reading its answer or sending its body; a kept-alive connection left idle | [`Stall`] around the socket |
//! | `request_timeout` | a request that takes too long (a slow body, a store that does not answer) | tower's `Timeout`: 503 |
//! | `max_requests_in_flight` | requests piling up on the store | tower's `GlobalConcurrencyLimit` and `LoadShed`: 503 at once |
//!
//! A handler that panics is answered 500 (tower-http's `CatchPanic`), logged and counted, and the
//! process goes on: the release profile unwinds. Whatever a bound drops is counted in
//! `harven_watchdog_http_refused_total{reason}` ([`Refusal`]), every reason exported from the start.
//!
//! HTTP/1.1 only: what talks to the watchdog (Prometheus, browsers over plain HTTP, curl, a proxy)
//! speaks it, and cleartext HTTP/2 would be one more protocol to bound.

use std::any::Any;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::ServerLimits;

/// File descriptors the daemon needs besides its HTTP connections (the store's files, probe and SMTP
/// connections, the runtime's own): `max_connections` plus these should fit the process's limit.
pub const FD_RESERVE: u64 = 128;

/// Why the server dropped a connection or refused a request: the `reason` label of
/// `harven_watchdog_http_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open: the connection waiting longest for a request was closed to make
    /// room for a new one (or, when none waited, the new one was).
    ConnectionLimit,
    /// A request head was not complete `header_read_timeout` after its first byte (after the
    /// accept, for a new connection's first head).
    HeaderTimeout,
    /// No byte moved on a connection for `idle_timeout` while it waited on its client mid-request
    /// (a kept-alive connection idle between requests is closed too, and not counted).
    IdleTimeout,
    /// `max_requests_in_flight` requests were being handled: answered 503 at once.
    Overloaded,
    /// The request was not answered within `request_timeout`: answered 503.
    RequestTimeout,
}

impl Refusal {
    /// Every reason, so each series exists (at 0) from the start.
    pub const ALL: [Self; 5] = [
        Self::ConnectionLimit,
        Self::HeaderTimeout,
        Self::IdleTimeout,
        Self::Overloaded,
        Self::RequestTimeout,
    ];

    pub fn metric_label(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::Overloaded => "overloaded",
            Self::RequestTimeout => "request_timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// `harven_watchdog_http_refused_total{reason}`, `_http_panics_total` and `_http_connections`.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    refused: Family<ReasonLabel, Counter>,
    panics: Counter,
    open: Gauge,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "http_refused",
            "Connections the HTTP server closed and requests it answered 503 because of its limits, by reason",
            m.refused.clone(),
        );
        registry.register(
            "http_panics",
            "HTTP requests whose handling panicked (answered 500) and connection tasks that panicked",
            m.panics.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP connections open now",
            m.open.clone(),
        );
        for reason in Refusal::ALL {
            // Creating the series is the point; the guard it returns is not needed.
            let _ = m.refused.get_or_create(&ReasonLabel {
                reason: reason.metric_label(),
            });
        }
        m
    }

    /// Panics counted so far (for the tests that assert none).
    #[cfg(test)]
    pub(crate) fn panics_so_far(&self) -> u64 {
        self.panics.get()
    }

    /// Counts one refusal (the log lines are the caller's: most refusals come in floods).
    fn refused(&self, reason: Refusal) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.metric_label(),
            })
            .inc();
    }

    /// Counts and logs a panic, whatever its payload.
    fn panicked(&self, payload: &(dyn Any + Send), during: &'static str) {
        self.panics.inc();
        tracing::error!(panic = panic_message(payload), "{during} panicked");
    }

    /// The answer to a request the in-flight bound or the request timeout refused: 503, as JSON under
    /// `/api/` (as the API's own errors), text elsewhere.
    fn refusal_answer(&self, uri: &Uri, error: &BoxError) -> axum::response::Response {
        let message = if error.is::<tower::load_shed::error::Overloaded>() {
            self.refused(Refusal::Overloaded);
            tracing::debug!("too many requests in flight: answered 503");
            "too many requests at once; try again in a moment"
        } else if error.is::<tower::timeout::error::Elapsed>() {
            self.refused(Refusal::RequestTimeout);
            // Never the path: an `/act/{token}` path carries a secret.
            tracing::warn!(
                "a request was not answered within server.request_timeout: answered 503"
            );
            "the request took too long to answer"
        } else {
            tracing::error!(error = %error, "an HTTP request failed");
            "the request failed"
        };
        let mut answer = if uri.path().starts_with("/api/") {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")).into_response()
        };
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        answer
    }
}

/// The message a panic was raised with, when it has one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// `app` behind the per-request bounds, with `/healthz` in front of them:
///
/// - a panic anywhere below is a 500, logged and counted;
/// - past `max_requests_in_flight` requests being handled, a 503 at once (`Retry-After: 1`);
/// - a request not answered within `request_timeout` (reading its body included) is a 503.
///
/// `/healthz` is outside the in-flight bound: it says the process serves, and costs nothing.
pub(crate) fn harden(app: Router, limits: &ServerLimits, metrics: &HttpMetrics) -> Router {
    let m = metrics.clone();
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |uri: Uri, error: BoxError| {
            let m = m.clone();
            async move { m.refusal_answer(&uri, &error) }
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(
            limits.max_requests_in_flight,
        ))
        .timeout(limits.request_timeout)
        .service(app);
    let m = metrics.clone();
    crate::http::liveness()
        .fallback_service(bounded)
        .layer(CatchPanicLayer::custom(
            move |payload: Box<dyn Any + Send>| {
                m.panicked(payload.as_ref(), "handling an HTTP request");
                let mut answer =
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
                answer
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                answer
            },
        ))
}

/// Serves `app` on `listener` within `limits` until `shutdown` is cancelled, then stops accepting and
/// lets each connection finish the request it is in (an idle one closes at once); returns once every
/// connection has closed. Dropping the future closes them all at once (the connections are its
/// tasks), which is how a caller cuts a shutdown short.
pub async fn serve(
    listener: TcpListener,
    app: super::App,
    limits: ServerLimits,
    metrics: HttpMetrics,
    shutdown: CancellationToken,
) {
    let app = app.router;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let waiting = Arc::new(Waiting::default());
    let mut connections = JoinSet::new();
    // Connections closed since the limit was last reached (logged at the edges, not one line each).
    let mut refused_since: Option<u64> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(joined) = connections.join_next() => {
                reap(joined, &metrics);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                if let Some(closed) = refused_since.take() {
                    tracing::info!(closed, "under server.max_connections again");
                }
                slot
            }
            Err(_) => {
                // One connection closes because of the limit: the oldest waiting one, else this one.
                metrics.refused(Refusal::ConnectionLimit);
                *refused_since.get_or_insert_with(|| {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "server.max_connections connections are open: closing the connections \
                         that wait longest for a request, or new ones when none waits"
                    );
                    0
                }) += 1;
                match make_room(&slots, &waiting).await {
                    Some(slot) => slot,
                    None => {
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        // Answers are small and whole: no reason to wait for more to send.
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            (stream, peer),
            slot,
            app.clone(),
            limits,
            metrics.clone(),
            Arc::clone(&waiting),
            shutdown.clone(),
        ));
    }
    // Closing the listener now makes the kernel refuse new connections while these finish.
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        reap(joined, &metrics);
    }
}

/// A slot for a new connection at the limit: closes the connection that has waited longest for a
/// request (a slow client still sending its first head, or a kept-alive one between requests) and
/// takes its slot. `None` when every connection is in the middle of a request.
///
/// A flood of connections that never finish a request head (slowloris) then only displaces itself:
/// a client that sends its request at once (a health check, Prometheus) is the newest, so the last
/// to go, and is answered.
async fn make_room(slots: &Arc<Semaphore>, waiting: &Waiting) -> Option<OwnedSemaphorePermit> {
    /// The closed connection's task frees its slot at its next poll; this only guards the loop.
    const FREED_WITHIN: Duration = Duration::from_secs(1);
    if !waiting.close_oldest() {
        return None;
    }
    tokio::time::timeout(FREED_WITHIN, Arc::clone(slots).acquire_owned())
        .await
        .ok()?
        .ok()
}

/// The connections waiting for a request, oldest first, each with the token that closes it.
#[derive(Debug, Default)]
struct Waiting {
    next: AtomicU64,
    queue: Mutex<BTreeMap<u64, CancellationToken>>,
}

impl Waiting {
    fn queue(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts a connection at the back of the queue; its ticket.
    fn enter(&self, close: &CancellationToken) -> u64 {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.queue().insert(ticket, close.clone());
        ticket
    }

    fn leave(&self, ticket: u64) {
        self.queue().remove(&ticket);
    }

    /// Closes the connection at the front, if any.
    fn close_oldest(&self) -> bool {
        let oldest = self.queue().pop_first();
        oldest.map(|(_, close)| close.cancel()).is_some()
    }
}

/// A connection task's end: a panic below hyper (the app's are caught as 500s) is counted.
fn reap(joined: Result<(), tokio::task::JoinError>, metrics: &HttpMetrics) {
    if let Err(e) = joined
        && e.is_panic()
    {
        metrics.panicked(e.into_panic().as_ref(), "an HTTP connection's task");
    }
}

/// An `accept` that failed. A connection reset before it was accepted is the client's business; out
/// of file descriptors (`EMFILE`, `ENFILE`) or memory, retrying at once would spin, so wait a little
/// (as hyper's and axum's own servers do) for connections to close.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting an HTTP connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection until it ends; `_slot` is its place under `max_connections`.
async fn connection(
    (stream, peer): (TcpStream, SocketAddr),
    _slot: OwnedSemaphorePermit,
    app: Router,
    limits: ServerLimits,
    metrics: HttpMetrics,
    waiting: Arc<Waiting>,
    shutdown: CancellationToken,
) {
    metrics.open.inc();
    let _open = scopeguard(|| {
        metrics.open.dec();
    });
    let requests = Arc::new(Requests::new(waiting));
    requests.waits();
    // A new connection's first head is timed from its accept: a client that sends nothing is slow.
    requests.head_begins();
    let _left = scopeguard(|| requests.busy());
    let service = {
        let requests = Arc::clone(&requests);
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The peer reaches the handlers as axum's `ConnectInfo`: the failure budgets count by it.
            request.extensions_mut().insert(ConnectInfo(peer));
            let handling = Handling::start(&requests);
            let answer = app.clone().oneshot(request);
            async move {
                let answer: Result<Response<axum::body::Body>, Infallible> = answer.await;
                drop(handling);
                answer
            }
        })
    };
    let io = TokioIo::new(Stall::new(stream, limits.idle_timeout).watched_by(&requests));
    // Not hyper's header timer: it also runs while a kept-alive connection waits for its next
    // request, so a short one closes every idle kept-alive connection that soon, racing the
    // clients that reuse them (seen as failed requests in this project's own tests). The head
    // clock below starts at a head's first byte instead (at accept for the first).
    let mut builder = http1::Builder::new();
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        // Closed to make room (`make_room`, counted there): dropping it closes the socket.
        () = requests.close.cancelled() => return,
        () = requests.head_overdue(limits.header_read_timeout) => {
            metrics.refused(Refusal::HeaderTimeout);
            tracing::debug!("closed a connection whose request head was too slow");
            return;
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        match refusal(&e, &requests) {
            Some(reason) => {
                metrics.refused(reason);
                tracing::debug!(
                    reason = reason.metric_label(),
                    "closed a slow HTTP connection"
                );
            }
            None => tracing::debug!(error = %e, "an HTTP connection ended with an error"),
        }
    }
}

/// What a connection's error says about its client: a refusal to count, or `None` for the ordinary
/// ends (a kept-alive connection closed while idle between requests, a malformed request hyper
/// answered 400, a client that hung up).
fn refusal(e: &hyper::Error, requests: &Requests) -> Option<Refusal> {
    // Idle between requests: no request handled, no head begun since the last one.
    let between_requests = requests.started.load(Ordering::Relaxed) > 0
        && requests.active.load(Ordering::Relaxed) == 0
        && requests.head().is_none();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(stalled) = s
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Stalled>())
        {
            return (stalled.writing || !between_requests).then_some(Refusal::IdleTimeout);
        }
        source = s.source();
    }
    None
}

/// The requests of one connection, for [`refusal`], and its place among the [`Waiting`] while
/// none is being handled.
#[derive(Debug)]
struct Requests {
    /// Handed to the app so far.
    started: AtomicU32,
    /// Being handled now (its answer not yet made).
    active: AtomicU32,
    waiting: Arc<Waiting>,
    /// Its ticket in `waiting` while it waits for a request.
    ticket: Mutex<Option<u64>>,
    /// Cancelled to close the connection and make room for a new one.
    close: CancellationToken,
    /// When the request head being read began (its first byte; the accept for the first one);
    /// `None` while a request is handled or none has begun.
    head: Mutex<Option<tokio::time::Instant>>,
    /// Woken when `head` changes.
    head_changed: tokio::sync::Notify,
}

impl Requests {
    fn new(waiting: Arc<Waiting>) -> Self {
        Self {
            started: AtomicU32::new(0),
            active: AtomicU32::new(0),
            waiting,
            ticket: Mutex::new(None),
            close: CancellationToken::new(),
            head: Mutex::new(None),
            head_changed: tokio::sync::Notify::new(),
        }
    }

    fn head(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request head begins now (unless one already has).
    fn head_begins(&self) {
        let mut head = self.head();
        if head.is_none() {
            *head = Some(tokio::time::Instant::now());
            self.head_changed.notify_waiters();
        }
    }

    /// Bytes arrived: while no request is handled, they begin the next head. (A request's body is
    /// read while it is handled.)
    fn bytes_arrived(&self) {
        let waiting = self.ticket().is_some();
        if waiting {
            self.head_begins();
        }
    }

    /// Resolves once a head has taken `limit` since it began; pending while none is being read.
    async fn head_overdue(&self, limit: Duration) {
        loop {
            let changed = self.head_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let began = *self.head();
            match began {
                Some(began) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(began + limit) => return,
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn ticket(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.ticket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a request from now: may be closed to make room.
    fn waits(&self) {
        let mut ticket = self.ticket();
        if ticket.is_none() {
            *ticket = Some(self.waiting.enter(&self.close));
        }
    }

    /// Handles a request, or has ended: not to be closed to make room.
    fn busy(&self) {
        if let Some(t) = self.ticket().take() {
            self.waiting.leave(t);
        }
    }
}

/// One request being handled, from the app's call to its answer (or its cancellation).
struct Handling(Arc<Requests>);

impl Handling {
    fn start(requests: &Arc<Requests>) -> Self {
        requests.started.fetch_add(1, Ordering::Relaxed);
        requests.active.fetch_add(1, Ordering::Relaxed);
        requests.busy();
        *requests.head() = None;
        requests.head_changed.notify_waiters();
        Self(Arc::clone(requests))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Its answer is made (hyper may still be writing it): waiting for the next request.
            self.0.waits();
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The error a [`Stall`] ends its connection with (inside an `io::Error` of kind `TimedOut`).
#[derive(Debug)]
struct Stalled {
    /// A write was waiting: the client stopped reading its answer.
    writing: bool,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.writing {
            "the client stopped reading (server.idle_timeout)"
        } else {
            "the client sent nothing (server.idle_timeout)"
        })
    }
}

impl std::error::Error for Stalled {}

/// A socket that fails with [`Stalled`] once no byte has moved either way for `idle` while a read or
/// a write waits on it. hyper bounds how long a request head takes, not a body nor an answer the
/// client does not read: this does, with one timer, re-armed only after progress.
struct Stall<T> {
    io: T,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Whether `timer` runs from the latest progress (it is set at the first wait after one).
    armed: bool,
    /// Whether a write is waiting now, so a stall is blamed on the right direction.
    write_waits: bool,
    /// Told when bytes arrive, to time request heads from their first byte.
    requests: Option<Arc<Requests>>,
}

impl<T> Stall<T> {
    fn new(io: T, idle: Duration) -> Self {
        Self {
            io,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            write_waits: false,
            requests: None,
        }
    }

    /// Tells `requests` when bytes arrive.
    fn watched_by(mut self, requests: &Arc<Requests>) -> Self {
        self.requests = Some(Arc::clone(requests));
        self
    }

    /// An operation would wait: `Ready` with the error once `idle` has passed since the last progress.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.idle;
            self.timer.as_mut().reset(deadline);
            self.armed = true;
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            Stalled {
                writing: self.write_waits,
            },
        ))
    }

    /// Bytes moved (or the operation ended otherwise): the next wait starts a new `idle`.
    fn progress<R>(&mut self, done: R) -> Poll<R> {
        self.armed = false;
        Poll::Ready(done)
    }

    /// A write-side operation's result through the stall timer.
    fn write_side<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(done) => {
                self.write_waits = false;
                self.progress(done)
            }
            Poll::Pending => {
                self.write_waits = true;
                self.wait(cx).map(Err)
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(done) => {
                if buf.filled().len() > before
                    && let Some(requests) = &this.requests
                {
                    requests.bytes_arrived();
                }
                this.progress(done)
            }
            Poll::Pending => this.wait(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write_side(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write_side(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.write_side(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.write_side(polled, cx)
    }
}

/// Warns when `max_connections` leaves the daemon too few of the process's file descriptors for its
/// own work (the limit then protects nothing: accepting would fail with `EMFILE` first).
pub fn check_fd_headroom(limits: &ServerLimits) {
    let soft = procfs::process::Process::myself()
        .and_then(|me| me.limits())
        .map(|l| l.max_open_files.soft_limit);
    let Ok(procfs::process::LimitValue::Value(soft)) = soft else {
        return;
    };
    if limits.max_connections as u64 + FD_RESERVE > soft {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = soft,
            reserve = FD_RESERVE,
            "server.max_connections plus the daemon's own file descriptors exceed the open-file limit \
             (ulimit -n): lower server.max_connections or raise the limit"
        );
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    fn stalled(e: &io::Error) -> &Stalled {
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Stalled>())
            .unwrap_or_else(|| panic!("not a stall: {e}"))
    }

    /// A client that sends a byte every 6 s keeps its connection past `IDLE` in all; once it stops,
    /// the read fails `IDLE` after its last byte, blamed on the client sending nothing.
    #[tokio::test(start_paused = true)]
    async fn a_read_fails_once_nothing_arrived_for_the_idle_time() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Stall::new(server, IDLE);
        let writer = tokio::spawn(async move {
            for byte in b"abc" {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client.write_all(&[*byte]).await.expect("write");
            }
            client // kept open, silent
        });
        let mut buf = [0u8; 1];
        for byte in b"abc" {
            server
                .read_exact(&mut buf)
                .await
                .expect("a byte within IDLE");
            assert_eq!(buf[0], *byte);
        }
        let last = Instant::now();
        let e = server.read(&mut buf).await.expect_err("stalled");
        assert!(!stalled(&e).writing);
        assert_eq!(Instant::now() - last, IDLE);
        drop(writer.await.expect("writer"));
    }

    /// A client that stops reading: once the buffer between is full, the write fails after `IDLE`,
    /// blamed on the client not reading.
    #[tokio::test(start_paused = true)]
    async fn a_write_fails_once_the_client_stopped_reading_for_the_idle_time() {
        let (_client, server) = tokio::io::duplex(64);
        let mut server = Stall::new(server, IDLE);
        server.write_all(&[0; 64]).await.expect("fits the buffer");
        let full = Instant::now();
        let e = server.write_all(&[0; 64]).await.expect_err("stalled");
        assert!(stalled(&e).writing);
        assert_eq!(Instant::now() - full, IDLE);
    }

    /// At the limit, the connection that has waited longest for a request is closed to make room,
    /// not one being handled; with none waiting, there is no room.
    #[tokio::test]
    async fn room_is_made_by_closing_the_oldest_waiting_connection() {
        let slots = Arc::new(Semaphore::new(3));
        let waiting = Arc::new(Waiting::default());
        let mut held = Vec::new();
        let mut connections = Vec::new();
        for _ in 0..3 {
            let requests = Requests::new(Arc::clone(&waiting));
            requests.waits();
            held.push(Arc::clone(&slots).try_acquire_owned().expect("a slot"));
            connections.push(Arc::new(requests));
        }
        // The oldest gets a request: the second is now the one waiting longest.
        let handling = Handling::start(&connections[0]);
        // A connection's task frees its slot when it is closed.
        let freed = connections
            .iter()
            .zip(held)
            .map(|(c, slot)| {
                let close = c.close.clone();
                tokio::spawn(async move {
                    close.cancelled().await;
                    drop(slot);
                })
            })
            .collect::<Vec<_>>();
        assert!(make_room(&slots, &waiting).await.is_some());
        let closed: Vec<bool> = connections.iter().map(|c| c.close.is_cancelled()).collect();
        assert_eq!(closed, [false, true, false]);
        assert!(make_room(&slots, &waiting).await.is_some());
        assert!(connections[2].close.is_cancelled());
        assert!(
            make_room(&slots, &waiting).await.is_none(),
            "the only other connection is handling a request"
        );
        drop(handling);
        assert!(!connections[0].close.is_cancelled());
        assert!(waiting.close_oldest(), "waiting again once answered");
        for f in freed {
            f.await.expect("freed");
        }
    }
}
