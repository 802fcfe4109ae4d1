//! The monitoring centre's side of HJ 212: a TCP listener that stations connect to and push their data through.
//!
//! Per connection, one task reads the stream, cuts it into frames ([`LineFramer`]), decodes each frame, checks
//! the station's password if a password list was given, and hands the packet to the caller through a bounded
//! channel as a [`Received`]. Sending on that channel waits while it is full, and while it waits the task reads
//! nothing more from its socket; so a slow caller slows the stations down through TCP instead of queueing without
//! bound.
//!
//! When a data upload asks for a reply (`Flag` bit A), the task waits for the caller's verdict on the [`Ack`]
//! before it answers: [`Ack::commit`] (the data is stored) sends the data reply `CN=9014`, while
//! [`Ack::refuse`], dropping the `Ack` or letting [`ListenerConfig::ack_timeout`] pass sends nothing, so the
//! station keeps the data and sends it again. Frames on one connection are handled strictly in order.
//!
//! A frame that fails (garbage, bad length, bad CRC, oversized, wrong password) is counted, logged with the peer
//! and the reason, kept among the [`ListenerStats::recent_rejections`], and otherwise ignored: the connection
//! stays open and the next good frame on it is accepted. HJ 212 has no negative answer to an upload.
//!
//! Strangers cannot hold the listener (issue 8 §3). A connection is *unverified* until it sends a frame that
//! decodes and passes the password check; an unverified connection is closed after
//! [`ListenerConfig::verify_timeout`], and one address may hold at most
//! [`ListenerConfig::max_unverified_per_peer`] of them (more are closed at once). At
//! [`ListenerConfig::max_connections`] a new connection evicts the oldest unverified one, so idle connections
//! from many addresses cannot lock real stations out either; only when every connection is verified is the
//! newcomer closed. Verified connections are never evicted and have the longer
//! [`ListenerConfig::idle_timeout`]. Each of these is counted in [`ListenerStats`] and logged (rate-limited).
//!
//! This module does not store data, does not send commands to stations, and does not reassemble packetised
//! uploads: each packet is delivered on its own.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::codec::{data_response, decode, encode, Packet, MAX_FRAME_LEN};
use super::framing::LineFramer;
use super::{cn, Hj212Error};
use crate::log_limit::LogLimit;

/// Rejected frames logged per minute at most (all are counted, and the latest kept in the stats).
const LOGGED_REJECTIONS_PER_MINUTE: u32 = 20;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 4096;
/// How many rejections [`ListenerStats::recent_rejections`] keeps.
const RECENT_REJECTIONS: usize = 16;
/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Bound on writing a reply to a station that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run a listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where to listen; port 0 picks a free port (see [`Hj212Listener::local_addr`]).
    pub listen: SocketAddr,
    /// `MN` → `PW`. When given, it is the list of stations allowed in: a packet from a station not in it, or
    /// with another password, is rejected like a bad frame. `None` checks no passwords.
    pub passwords: Option<HashMap<String, String>>,
    /// How long a connection waits for the caller's verdict on a packet that wants a reply.
    pub ack_timeout: Duration,
    /// Close a connection that sends nothing for this long. Stations send at least minute data, so a silent
    /// connection is usually a dead one whose peer vanished without a FIN.
    pub idle_timeout: Option<Duration>,
    /// Connections served at once. At the cap a new connection evicts the oldest unverified one, or, when every
    /// connection is verified, is closed at once.
    pub max_connections: usize,
    /// Unverified connections (no valid frame yet) one IP address may hold; more are closed at once.
    pub max_unverified_per_peer: usize,
    /// An unverified connection is closed when no valid frame came within this long.
    pub verify_timeout: Duration,
}

impl ListenerConfig {
    /// Defaults: no password check, 10 s to acknowledge, 10 min idle timeout, 256 connections, 8 unverified
    /// connections per address, 30 s to send a valid frame.
    pub fn new(listen: SocketAddr) -> Self {
        ListenerConfig {
            listen,
            passwords: None,
            ack_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_connections: 256,
            max_unverified_per_peer: 8,
            verify_timeout: Duration::from_secs(30),
        }
    }

    fn check(&self) -> Result<(), Hj212Error> {
        let invalid = |reason: &str| Err(Hj212Error::InvalidConfig(reason.to_owned()));
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1");
        }
        if self.max_unverified_per_peer == 0 {
            return invalid("max_unverified_per_peer must be at least 1");
        }
        if self.verify_timeout.is_zero() {
            return invalid("verify_timeout must be longer than zero");
        }
        if self.ack_timeout.is_zero() {
            return invalid("ack_timeout must be longer than zero");
        }
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return invalid("idle_timeout must be longer than zero (or none)");
        }
        if let Some(passwords) = &self.passwords {
            if passwords.keys().any(String::is_empty) {
                return invalid("the password list has an empty MN");
            }
        }
        Ok(())
    }
}

/// A packet a station sent, for the caller to store and then acknowledge.
#[derive(Debug)]
pub struct Received {
    pub peer: SocketAddr,
    pub packet: Packet,
    /// Length of the frame on the wire, CR LF included.
    pub raw_len: usize,
    /// The caller's verdict; the data reply waits for it.
    pub ack: Ack,
}

/// The caller's answer to one [`Received`] packet. Dropping it counts as [`Ack::refuse`].
#[derive(Debug)]
pub struct Ack {
    /// `None` when the packet wants no reply: the verdict then changes nothing.
    verdict: Option<oneshot::Sender<bool>>,
}

impl Ack {
    /// Whether the station asked for a reply, i.e. whether the verdict decides anything.
    pub fn wants_reply(&self) -> bool {
        self.verdict.is_some()
    }

    /// The packet is safely stored: the station gets its data reply.
    pub fn commit(self) {
        self.send(true);
    }

    /// The packet was not stored: no reply, so the station keeps the data and sends it again.
    pub fn refuse(self) {
        self.send(false);
    }

    fn send(mut self, verdict: bool) {
        if let Some(tx) = self.verdict.take() {
            // The connection may be gone already; then there is no one left to answer.
            let _ = tx.send(verdict);
        }
    }
}

/// One rejected frame: who sent it and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub peer: SocketAddr,
    pub error: Hj212Error,
}

/// Counters of a listener, and the last few rejections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections open now.
    pub open_connections: u64,
    /// Connections served since start.
    pub connections: u64,
    /// Connections closed at once because `max_connections` were open, all verified.
    pub refused_connections: u64,
    /// Connections closed at once because their address already held `max_unverified_per_peer` unverified ones.
    pub refused_per_peer: u64,
    /// Unverified connections closed to make room for a new one at `max_connections`.
    pub evicted: u64,
    /// Unverified connections closed because no valid frame came within `verify_timeout`.
    pub verify_timeouts: u64,
    /// Packets handed to the caller.
    pub accepted: u64,
    /// Frames rejected (bad frame, wrong password, oversized line, junk before a header).
    pub rejected: u64,
    /// Data replies sent.
    pub replied: u64,
    /// The latest rejections, oldest first.
    pub recent_rejections: VecDeque<Rejection>,
}

/// What the accept loop and the connection tasks share.
#[derive(Debug)]
struct Shared {
    config: ListenerConfig,
    stats: watch::Sender<ListenerStats>,
    /// Rejections are all counted, but at most a burst of them logged per minute.
    reject_log: std::sync::Mutex<LogLimit>,
    /// Connections refused, evicted or timed out by a limit: all counted, a burst logged per minute.
    limit_log: std::sync::Mutex<LogLimit>,
    /// Every open connection, for the per-address cap and eviction.
    tracked: std::sync::Mutex<Tracked>,
}

/// The open connections: whether each is verified, and when it opened.
#[derive(Debug, Default)]
struct Tracked {
    next_id: u64,
    conns: HashMap<u64, TrackedConn>,
}

#[derive(Debug)]
struct TrackedConn {
    ip: IpAddr,
    opened: Instant,
    verified: bool,
    evict: Arc<Notify>,
}

/// Which limit closed or refused a connection.
#[derive(Debug, Clone, Copy)]
enum Limit {
    Full,
    PerPeer,
    Evicted,
    VerifyTimeout,
}

impl Shared {
    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts and logs a connection closed by a limit.
    fn limit(&self, peer: SocketAddr, limit: Limit) {
        self.stats.send_modify(|s| match limit {
            Limit::Full => s.refused_connections += 1,
            Limit::PerPeer => s.refused_per_peer += 1,
            Limit::Evicted => s.evicted += 1,
            Limit::VerifyTimeout => s.verify_timeouts += 1,
        });
        let log = self.limit_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).check();
        if let Some(suppressed) = log {
            let message = match limit {
                Limit::Full => "hj212 connection refused: every connection is a verified station",
                Limit::PerPeer => "hj212 connection refused: too many unverified connections from this address",
                Limit::Evicted => "hj212 unverified connection closed to make room",
                Limit::VerifyTimeout => "hj212 connection closed: no valid frame in time",
            };
            tracing::warn!(message, peer = %peer, not_logged_before = suppressed);
        }
    }

    /// Unverified connections open from `ip`.
    fn unverified_from(&self, ip: IpAddr) -> usize {
        self.tracked().conns.values().filter(|c| c.ip == ip && !c.verified).count()
    }

    fn track(&self, ip: IpAddr) -> (u64, Arc<Notify>) {
        let mut t = self.tracked();
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.conns.insert(id, TrackedConn { ip, opened: Instant::now(), verified: false, evict: Arc::clone(&evict) });
        (id, evict)
    }

    fn verified(&self, id: u64) {
        if let Some(c) = self.tracked().conns.get_mut(&id) {
            c.verified = true;
        }
    }

    /// Closes the oldest unverified connection; false when there is none.
    fn evict_oldest_unverified(&self) -> bool {
        let mut t = self.tracked();
        let oldest = t.conns.iter().filter(|(_, c)| !c.verified).min_by_key(|(_, c)| c.opened).map(|(id, _)| *id);
        // Removed from the table now, so that it is not chosen twice; its task closes it.
        match oldest.and_then(|id| t.conns.remove(&id)) {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn reject(&self, peer: SocketAddr, error: Hj212Error) {
        let log = self.reject_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).check();
        if let Some(suppressed) = log {
            tracing::warn!(message = "hj212 frame rejected", peer = %peer, error = %error, not_logged_before = suppressed);
        }
        self.stats.send_modify(|s| {
            s.rejected += 1;
            if s.recent_rejections.len() >= RECENT_REJECTIONS {
                s.recent_rejections.pop_front();
            }
            s.recent_rejections.push_back(Rejection { peer, error });
        });
    }

    /// Checks the station's password against the list, if there is one.
    fn authorise(&self, packet: &Packet) -> Result<(), Hj212Error> {
        let Some(passwords) = &self.config.passwords else { return Ok(()) };
        match passwords.get(&packet.mn) {
            None => Err(Hj212Error::UnknownStation { mn: packet.mn.clone() }),
            Some(pw) if packet.pw.as_deref() != Some(pw.as_str()) => {
                Err(Hj212Error::WrongPassword { mn: packet.mn.clone() })
            }
            Some(_) => Ok(()),
        }
    }
}

/// A running listener. Dropping it stops it too; [`Hj212Listener::shutdown`] also waits.
#[derive(Debug)]
pub struct Hj212Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Hj212Listener {
    /// Checks `config`, binds, and starts accepting. Packets go to `deliver`; when its receiver is dropped the
    /// listener stops accepting and closes its connections.
    pub async fn start(config: ListenerConfig, deliver: mpsc::Sender<Received>) -> Result<Self, Hj212Error> {
        config.check()?;
        let bind_error = |e: std::io::Error| Hj212Error::Bind { addr: config.listen, reason: e.to_string() };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let (stats, _) = watch::channel(ListenerStats::default());
        let reject_log = std::sync::Mutex::new(LogLimit::new(LOGGED_REJECTIONS_PER_MINUTE, Duration::from_secs(60)));
        let limit_log = std::sync::Mutex::new(LogLimit::new(LOGGED_REJECTIONS_PER_MINUTE, Duration::from_secs(60)));
        let tracked = std::sync::Mutex::new(Tracked::default());
        let shared = Arc::new(Shared { config, stats, reject_log, limit_log, tracked });
        let task = tokio::spawn(
            accept_loop(listener, Arc::clone(&shared), deliver)
                .instrument(tracing::info_span!("hj212_listener", addr = %addr)),
        );
        tracing::info!(message = "hj212 listener started", addr = %addr);
        Ok(Hj212Listener { addr, shared, task: Some(task) })
    }

    /// The address actually bound (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Frames rejected so far.
    pub fn rejected(&self) -> u64 {
        self.shared.stats.borrow().rejected
    }

    /// Packets handed to the caller so far.
    pub fn accepted(&self) -> u64 {
        self.shared.stats.borrow().accepted
    }

    /// Data replies sent so far.
    pub fn replied(&self) -> u64 {
        self.shared.stats.borrow().replied
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ListenerStats {
        self.shared.stats.borrow().clone()
    }

    /// A receiver that sees every change of the counters, to wait for one (`wait_for`).
    pub fn subscribe(&self) -> watch::Receiver<ListenerStats> {
        self.shared.stats.subscribe()
    }

    /// Stops accepting, closes every connection and waits until they are gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            // The accept loop never ends by itself while the caller listens; aborting it drops its connections.
            task.abort();
            let _ = task.await;
        }
        tracing::info!(message = "hj212 listener stopped", addr = %self.addr);
    }
}

impl Drop for Hj212Listener {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Accepts connections until the caller drops its receiver or the task is aborted. The connection tasks live in
/// a [`JoinSet`], which aborts them when the loop ends.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, deliver: mpsc::Sender<Received>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = deliver.closed() => {
                tracing::info!(message = "packet receiver dropped; the hj212 listener stops");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.unverified_from(peer.ip()) >= shared.config.max_unverified_per_peer {
                        shared.limit(peer, Limit::PerPeer);
                        continue;
                    }
                    // The evicted connection leaves the table at once (its task closes its socket right after),
                    // so the newcomer takes its place without waiting.
                    if shared.tracked().conns.len() >= shared.config.max_connections {
                        if !shared.evict_oldest_unverified() {
                            shared.limit(peer, Limit::Full);
                            continue;
                        }
                        shared.limit(peer, Limit::Evicted);
                    }
                    let (id, evict) = shared.track(peer.ip());
                    shared.stats.send_modify(|s| {
                        s.connections += 1;
                        s.open_connections += 1;
                    });
                    let guard = Connection { shared: Arc::clone(&shared), id, evict };
                    let span = tracing::info_span!("hj212_connection", peer = %peer);
                    connections.spawn(serve(stream, peer, guard, deliver.clone()).instrument(span));
                }
                Err(error) => {
                    tracing::warn!(message = "accept failed", error = %error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    if error.is_panic() {
                        tracing::error!(message = "hj212 connection task panicked", error = %error);
                    }
                }
            }
        }
    }
}

/// Holds a connection slot and keeps `open_connections` and the tracking right however the task ends (abort
/// included).
struct Connection {
    shared: Arc<Shared>,
    id: u64,
    evict: Arc<Notify>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.tracked().conns.remove(&self.id);
        self.shared.stats.send_modify(|s| s.open_connections = s.open_connections.saturating_sub(1));
    }
}

/// Serves one station connection until it closes, idles out, fails, or the caller goes away.
async fn serve(mut stream: TcpStream, peer: SocketAddr, conn: Connection, deliver: mpsc::Sender<Received>) {
    let shared = &conn.shared;
    // Replies are small and must not wait for more data to fill a segment.
    let _ = stream.set_nodelay(true);
    let mut framer = LineFramer::new(MAX_FRAME_LEN);
    let mut buf = vec![0u8; READ_CHUNK];
    let verify_by = Instant::now() + shared.config.verify_timeout;
    let mut verified = false;
    loop {
        let deadline =
            if verified { shared.config.idle_timeout.map(|limit| Instant::now() + limit) } else { Some(verify_by) };
        let read = tokio::select! {
            () = conn.evict.notified(), if !verified => return,
            () = sleep_until_or_never(deadline) => {
                if verified {
                    tracing::info!(message = "hj212 connection idle; closing it", peer = %peer);
                } else {
                    shared.limit(peer, Limit::VerifyTimeout);
                }
                return;
            }
            read = stream.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) => {
                tracing::debug!(message = "hj212 connection closed by the station", peer = %peer);
                return;
            }
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(message = "hj212 connection failed", peer = %peer, error = %error);
                return;
            }
        };
        for item in framer.feed(buf.get(..n).unwrap_or_default()) {
            let frame = match item {
                Ok(frame) => frame,
                Err(error) => {
                    shared.reject(peer, error);
                    continue;
                }
            };
            let packet = match decode(&frame).and_then(|p| shared.authorise(&p).map(|()| p)) {
                Ok(packet) => packet,
                Err(error) => {
                    shared.reject(peer, error);
                    continue;
                }
            };
            if !verified {
                verified = true;
                shared.verified(conn.id);
            }
            if !handle(&mut stream, peer, shared, &deliver, packet, frame.len()).await {
                return;
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Delivers one packet and, if it wants one, sends the data reply once the caller commits. Returns `false`
/// when the connection should close (the caller is gone, or the reply cannot be written).
async fn handle(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    deliver: &mpsc::Sender<Received>,
    packet: Packet,
    raw_len: usize,
) -> bool {
    let reply = if packet.wants_reply() && cn::is_data_upload(&packet.cn) {
        data_response(&packet)
    } else {
        if packet.wants_reply() {
            tracing::debug!(message = "no reply implemented for this command", peer = %peer, cn = %packet.cn);
        }
        None
    };
    let (verdict_tx, verdict_rx) = oneshot::channel();
    let ack = Ack { verdict: reply.is_some().then_some(verdict_tx) };
    let (cn, mn) = (packet.cn.clone(), packet.mn.clone());
    if deliver.send(Received { peer, packet, raw_len, ack }).await.is_err() {
        tracing::debug!(message = "packet receiver dropped; closing the connection", peer = %peer);
        return false;
    }
    shared.stats.send_modify(|s| s.accepted += 1);
    tracing::debug!(message = "hj212 packet delivered", peer = %peer, cn = %cn, mn = %mn);
    let Some(reply) = reply else { return true };

    match tokio::time::timeout(shared.config.ack_timeout, verdict_rx).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Ok(Err(_)) => {
            tracing::info!(message = "packet not committed; no reply", peer = %peer, cn = %cn, mn = %mn);
            return true;
        }
        Err(_) => {
            tracing::warn!(message = "packet not acknowledged in time; no reply", peer = %peer, cn = %cn, mn = %mn);
            return true;
        }
    }
    let bytes = match encode(&reply) {
        Ok(bytes) => bytes,
        Err(error) => {
            // The reply only repeats fields that decoded, so this is not expected; the station will resend.
            tracing::warn!(message = "data reply not encodable", peer = %peer, error = %error);
            return true;
        }
    };
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await {
        Ok(Ok(())) => {
            shared.stats.send_modify(|s| s.replied += 1);
            true
        }
        Ok(Err(error)) => {
            tracing::debug!(message = "data reply not sent", peer = %peer, error = %error);
            false
        }
        Err(_) => {
            tracing::warn!(message = "station does not read its replies; closing the connection", peer = %peer);
            false
        }
    }
}
