//! The HTTP server's connection loop (issue 8 §3): accepts connections, serves each over hyper's HTTP/1.1
//! with upgrades (the live stream), and keeps strangers from exhausting it:
//!
//! - **Idle timeout** (`server.idle_timeout`): a connection waiting for a request, new or kept alive after a
//!   response, that sends no byte of one within this time is closed. So is one whose request body, or whose
//!   response, stops moving for this long (a stalled upload, a client that stopped reading).
//! - **Header timeout** (`server.header_timeout`): once the first byte of a request arrived, the whole head
//!   must follow within this time (slowloris).
//! - **Connection cap** (`server.max_connections`): at the cap, a new connection evicts the connection that has
//!   been idle (or trickling a head) the longest, so an idle flood cannot lock real clients out; only when every
//!   slot holds a request in progress or a live stream is the newcomer answered `503` with `Retry-After` by the
//!   server itself and closed. When `accept` fails because the process ran out of file descriptors, the
//!   longest-idle connection is evicted as well, so `/healthz` keeps answering under a lowered file limit.
//!
//! Every limit reached is counted (`actors::metrics::LimitMetrics`) and logged, at most on powers of two of its
//! counter so a flood cannot drown the log.
//!
//! **Native TLS** (optional, issue 8 §5; `crate::tls`): the handshake runs through the same limited socket, so
//! it is bounded like a request head (`header_timeout` from its first byte, `idle_timeout` before it). A
//! connection whose first byte is not a TLS handshake record (plain HTTP sent to the HTTPS port) is answered
//! `400` in plain text saying so and closed; a failed handshake closes the connection. Either is logged
//! (rate-limited) and never disturbs other connections.
//!
//! What this module deliberately does not do: HTTP/2, per-address
//! limits (behind a proxy every client has one address), timeouts of handlers (a valve command may take its
//! `confirm_timeout`), or timeouts of upgraded connections (the live stream pings and times out its own writes).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};

use actors::api::Handle;
use actors::metrics::Metrics;

/// The HTTP server's resource limits (`[server]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// A whole request head must arrive within this after its first byte.
    pub header_timeout: Duration,
    /// A connection with no byte of a request for this long is closed; so is one whose body or response stalls.
    pub idle_timeout: Duration,
    /// Connections open at once, live streams included.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// How long a refused client is told to wait, in seconds.
const RETRY_AFTER_S: u64 = 5;
/// How long the server spends telling a refused client so (writing the 503 and draining its request).
const REFUSAL_BUDGET: Duration = Duration::from_secs(1);

/// Where a connection is in its life; decides which timeout applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (new, or kept alive after a response).
    Idle,
    /// The first byte of a request head arrived; the rest must follow within `header_timeout`.
    Head,
    /// The request body is arriving; each byte restarts `idle_timeout`.
    Body,
    /// The handler runs or the response is written: no read timeout.
    Handler,
    /// Handed over to the live stream, which keeps its own limits.
    Upgraded,
    /// Chosen for eviction; closing.
    Evicted,
}

struct ConnState {
    phase: Phase,
    /// When the phase began; in `Body`, when the last byte arrived.
    since: Instant,
    /// The task of the read that waits now: woken when the phase gains a deadline the read did not arm.
    reader: Option<Waker>,
}

/// One connection as the registry sees it.
struct Conn {
    state: Mutex<ConnState>,
    evict: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Conn {
    fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    fn set(&self, phase: Phase) {
        let mut s = lock(&self.state);
        if !matches!(s.phase, Phase::Upgraded | Phase::Evicted) {
            s.phase = phase;
            s.since = Instant::now();
        }
    }

    /// The response is finished: the connection waits for the next request. hyper may already be waiting to
    /// read it (armed with no deadline while the handler ran), so that read is woken to arm the idle timeout.
    fn response_done(&self) {
        let mut s = lock(&self.state);
        if matches!(s.phase, Phase::Body | Phase::Handler) {
            s.phase = Phase::Idle;
            s.since = Instant::now();
            if let Some(reader) = s.reader.take() {
                reader.wake();
            }
        }
    }

    /// The request body is finished or no longer wanted.
    fn body_done(&self) {
        let mut s = lock(&self.state);
        if s.phase == Phase::Body {
            s.phase = Phase::Handler;
            s.since = Instant::now();
        }
    }

    fn on_read(&self) {
        let mut s = lock(&self.state);
        match s.phase {
            Phase::Idle => {
                s.phase = Phase::Head;
                s.since = Instant::now();
            }
            Phase::Body => s.since = Instant::now(),
            _ => {}
        }
    }

    /// When a read that is waiting (in the task of `waker`) must give up, and why.
    fn read_deadline(&self, limits: &ServerLimits, waker: &Waker) -> Option<(Instant, Timeout)> {
        let mut s = lock(&self.state);
        if !s.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            s.reader = Some(waker.clone());
        }
        match s.phase {
            Phase::Idle => Some((s.since + limits.idle_timeout, Timeout::Idle)),
            Phase::Head => Some((s.since + limits.header_timeout, Timeout::Header)),
            Phase::Body => Some((s.since + limits.idle_timeout, Timeout::Body)),
            Phase::Handler | Phase::Upgraded | Phase::Evicted => None,
        }
    }
}

/// Which time limit closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    Idle,
    Header,
    Body,
    Write,
}

impl Timeout {
    fn name(self) -> &'static str {
        match self {
            Timeout::Idle => "idle",
            Timeout::Header => "header",
            Timeout::Body => "body",
            Timeout::Write => "write",
        }
    }
}

/// Logs the `n`th occurrence of a limit only when `n` is a power of two: the first ones with their detail, then
/// ever more rarely, each line saying the running total. Counting (the metrics) is never limited.
fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

/// Every open connection, for the cap and eviction.
struct Registry {
    handle: Handle,
    limits: ServerLimits,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Connection tasks still running (not counting upgraded connections, whose tasks have ended).
    tasks: AtomicUsize,
    tasks_done: Notify,
}

impl Registry {
    fn metrics(&self) -> &Metrics {
        self.handle.metrics()
    }

    fn len(&self) -> usize {
        lock(&self.conns).len()
    }

    fn register(self: &Arc<Self>) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            state: Mutex::new(ConnState { phase: Phase::Idle, since: Instant::now(), reader: None }),
            evict: Notify::new(),
        });
        lock(&self.conns).insert(id, conn.clone());
        self.metrics().limits.http_connections.fetch_add(1, Ordering::Relaxed);
        (id, conn)
    }

    fn deregister(&self, id: u64) {
        if lock(&self.conns).remove(&id).is_some() {
            self.metrics().limits.http_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes the connection that has waited longest without a request in progress. False when every
    /// connection is busy (a request in progress, a live stream) or already being evicted.
    fn evict_one(&self, why: &'static str) -> bool {
        let victim = {
            let conns = lock(&self.conns);
            conns
                .values()
                .filter_map(|c| {
                    let s = lock(&c.state);
                    matches!(s.phase, Phase::Idle | Phase::Head).then(|| (s.since, c.clone()))
                })
                .min_by_key(|(since, _)| *since)
                .map(|(_, c)| c)
        };
        let Some(victim) = victim else { return false };
        victim.set(Phase::Evicted);
        victim.evict.notify_one();
        let limits = &self.metrics().limits;
        limits.http_evicted.fetch_add(1, Ordering::Relaxed);
        let n = limits.http_evicted.load(Ordering::Relaxed);
        if worth_logging(n) {
            tracing::warn!(
                message = "Closed an idle HTTP connection to make room.",
                reason = why,
                max_connections = self.limits.max_connections,
                evicted_total = n
            );
        }
        true
    }

    fn timed_out(&self, kind: Timeout, peer: SocketAddr) {
        let l = &self.metrics().limits;
        let counter = match kind {
            Timeout::Idle => &l.http_timeout_idle,
            Timeout::Header => &l.http_timeout_header,
            Timeout::Body => &l.http_timeout_body,
            Timeout::Write => &l.http_timeout_write,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::info!(message = "HTTP connection timed out.", timeout = kind.name(), %peer, total = n);
        } else {
            tracing::debug!(message = "HTTP connection timed out.", timeout = kind.name(), %peer, total = n);
        }
    }

    /// Answers 503 with `Retry-After` and closes, without holding a slot.
    fn refuse(&self, mut stream: TcpStream, peer: SocketAddr) {
        let n = self.metrics().limits.http_refused_full.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::warn!(
                message = "HTTP connection refused: every connection is busy.",
                %peer,
                max_connections = self.limits.max_connections,
                refused_total = n
            );
        }
        tokio::spawn(async move {
            let body =
                r#"{"error":"the server is at its connection limit; try again shortly","code":"too_many_connections"}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {RETRY_AFTER_S}\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(REFUSAL_BUDGET, async {
                stream.write_all(answer.as_bytes()).await?;
                stream.shutdown().await?;
                // Read what the client sent before closing, so the close is not a reset that discards the answer.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<_, io::Error>(())
            })
            .await;
        });
    }

    fn accept_failed(&self, e: &io::Error) -> bool {
        let n = self.metrics().limits.http_accept_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::warn!(message = "Accepting an HTTP connection failed.", error = %e, total = n);
        }
        // EMFILE (24) and ENFILE (23), the same numbers on Linux and the BSDs: out of file descriptors. Free one.
        matches!(e.raw_os_error(), Some(23 | 24)) && self.evict_one("out of file descriptors")
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then lets requests in progress finish
/// (the caller bounds how long it waits). Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve<F>(listener: TcpListener, router: Router, handle: Handle, limits: ServerLimits, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    serve_with(listener, router, handle, limits, None, shutdown).await;
}

/// [`serve`], over TLS when `tls` is given (every connection; plain HTTP is refused with 400).
pub async fn serve_with<F>(
    listener: TcpListener,
    router: Router,
    handle: Handle,
    limits: ServerLimits,
    tls: Option<crate::tls::ServerTls>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let registry = Arc::new(Registry {
        handle,
        limits,
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        tasks: AtomicUsize::new(0),
        tasks_done: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // After an eviction the descriptor is free as soon as that task runs; otherwise back off.
                let pause = if registry.accept_failed(&e) { 2 } else { 50 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        if registry.len() >= limits.max_connections && !registry.evict_one("connection limit") {
            registry.refuse(stream, peer);
            continue;
        }
        let (id, conn) = registry.register();
        registry.tasks.fetch_add(1, Ordering::AcqRel);
        let registry = registry.clone();
        let router = router.clone();
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, id, conn, registry.clone(), router, acceptor, stop).await;
            if registry.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
                registry.tasks_done.notify_waiters();
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let done = registry.tasks_done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if registry.tasks.load(Ordering::Acquire) == 0 {
            break;
        }
        done.await;
    }
}

/// A TLS record starts with its content type; a handshake's is 22 (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 0x16;

/// Counts a TLS connection that failed before HTTP (`waterworks_tls_failures_total`; logged on powers of two).
fn tls_failed(counter: &AtomicU64, peer: SocketAddr, why: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if worth_logging(n) {
        tracing::info!(message = "TLS connection failed before HTTP.", %peer, reason = why, total = n);
    } else {
        tracing::debug!(message = "TLS connection failed before HTTP.", %peer, reason = why, total = n);
    }
}

/// Answers a plain-HTTP request on the TLS port with 400 and closes (nginx does the same).
async fn refuse_plain_http(stream: &mut TcpStream) {
    let body = r#"{"error":"this port speaks HTTPS; use https://","code":"tls_required"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_BUDGET, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        let io = LimitedIo::new(stream, peer, id, conn.clone(), registry);
        drive(io, peer, conn, router, stop).await;
        return;
    };
    let mut io = LimitedIo::new(stream, peer, id, conn.clone(), registry.clone());
    // The first byte tells TLS from plain HTTP; waiting for it is the idle phase (timeout, eviction).
    let mut first = [0u8; 1];
    let idle = registry.limits.idle_timeout;
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(idle, io.inner.peek(&mut first)) => peeked,
        () = conn.evict.notified() => return,
    };
    match peeked {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1)) => {
            tls_failed(&registry.metrics().limits.tls_plain_http, peer, "plain HTTP on the TLS port");
            refuse_plain_http(&mut io.inner).await;
            return;
        }
        Ok(_) => return,
        Err(_) => {
            registry.timed_out(Timeout::Idle, peer);
            return;
        }
    }
    // Bounded by the limited socket: the hello's first byte started the header timeout.
    let accepted = tokio::select! {
        accepted = acceptor.accept(io) => accepted,
        () = conn.evict.notified() => return,
    };
    match accepted {
        Ok(tls) => {
            // Handshake done: the connection waits for its first request like a new one.
            conn.set(Phase::Idle);
            drive(tls, peer, conn, router, stop).await;
        }
        Err(e) => tls_failed(&registry.metrics().limits.tls_handshake_failed, peer, &e.to_string()),
    }
}

/// Serves HTTP/1.1 (with upgrades) over `io` until it closes, the connection is evicted or the server stops.
async fn drive<I>(io: I, peer: SocketAddr, conn: Arc<Conn>, router: Router, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let conn = service_conn.clone();
        let mut router = router.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = if http_body::Body::is_end_stream(&body) {
                conn.set(Phase::Handler);
                Body::new(body)
            } else {
                conn.set(Phase::Body);
                Body::new(RequestBody { inner: body, conn: conn.clone() })
            };
            let response = match tower_service::Service::call(&mut router, Request::from_parts(parts, body)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                conn.set(Phase::Upgraded);
            }
            Ok::<_, Infallible>(response.map(|inner| ResponseBody { inner, conn }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own timeouts (above) replace hyper's header timer, which starts when the connection goes idle.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(message = "HTTP connection ended with an error.", %peer, error = %e);
            }
        }
        () = conn.evict.notified() => {}
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// The request body, telling the connection when it is complete (the handler runs without a read timeout).
struct RequestBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.inner.is_end_stream() {
            self.conn.body_done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.conn.body_done();
    }
}

/// The response body, telling the connection when it is written (the connection is idle again).
struct ResponseBody {
    inner: Body,
    conn: Arc<Conn>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.conn.response_done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.conn.response_done();
    }
}

/// The socket with the read and write time limits of its connection's phase; leaves the registry when dropped
/// (so an upgraded connection keeps its slot until the live stream closes it).
struct LimitedIo {
    inner: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    read_sleep: Pin<Box<Sleep>>,
    write_sleep: Pin<Box<Sleep>>,
    /// When a write first found the socket full and has not progressed since.
    write_blocked_since: Option<Instant>,
}

impl LimitedIo {
    fn new(inner: TcpStream, peer: SocketAddr, id: u64, conn: Arc<Conn>, registry: Arc<Registry>) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        LimitedIo {
            inner,
            peer,
            id,
            conn,
            registry,
            read_sleep: Box::pin(tokio::time::sleep_until(far)),
            write_sleep: Box::pin(tokio::time::sleep_until(far)),
            write_blocked_since: None,
        }
    }

    fn expire(&self, kind: Timeout) -> io::Error {
        self.registry.timed_out(kind, self.peer);
        io::Error::new(io::ErrorKind::TimedOut, format!("{} timeout", kind.name()))
    }
}

impl Drop for LimitedIo {
    fn drop(&mut self) {
        self.registry.deregister(self.id);
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.on_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some((deadline, kind)) = this.conn.read_deadline(&this.registry.limits, cx.waker()) else {
                    return Poll::Pending;
                };
                if this.read_sleep.deadline() != deadline {
                    this.read_sleep.as_mut().reset(deadline);
                }
                match this.read_sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(this.expire(kind))),
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending if this.conn.phase() != Phase::Upgraded => {
                let since = *this.write_blocked_since.get_or_insert_with(Instant::now);
                let deadline = since + this.registry.limits.idle_timeout;
                if this.write_sleep.deadline() != deadline {
                    this.write_sleep.as_mut().reset(deadline);
                }
                match this.write_sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(this.expire(Timeout::Write))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Pending => Poll::Pending,
            ready => {
                this.write_blocked_since = None;
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
