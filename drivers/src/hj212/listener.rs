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
//! This module does not store data, does not send commands to stations, and does not reassemble packetised
//! uploads: each packet is delivered on its own.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
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
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
}

impl ListenerConfig {
    /// Defaults: no password check, 10 s to acknowledge, 10 min idle timeout, 256 connections.
    pub fn new(listen: SocketAddr) -> Self {
        ListenerConfig {
            listen,
            passwords: None,
            ack_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_connections: 256,
        }
    }

    fn check(&self) -> Result<(), Hj212Error> {
        let invalid = |reason: &str| Err(Hj212Error::InvalidConfig(reason.to_owned()));
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1");
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
    /// Connections closed at once because `max_connections` were open.
    pub refused_connections: u64,
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
    /// One permit per connection.
    slots: Arc<Semaphore>,
    /// Rejections are all counted, but at most a burst of them logged per minute.
    reject_log: std::sync::Mutex<LogLimit>,
}

impl Shared {
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
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let reject_log = std::sync::Mutex::new(LogLimit::new(LOGGED_REJECTIONS_PER_MINUTE, Duration::from_secs(60)));
        let shared = Arc::new(Shared { config, stats, slots, reject_log });
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
                Ok((stream, peer)) => match Arc::clone(&shared.slots).try_acquire_owned() {
                    Ok(permit) => {
                        shared.stats.send_modify(|s| {
                            s.connections += 1;
                            s.open_connections += 1;
                        });
                        let guard = Connection { shared: Arc::clone(&shared), _permit: permit };
                        let span = tracing::info_span!("hj212_connection", peer = %peer);
                        connections.spawn(serve(stream, peer, guard, deliver.clone()).instrument(span));
                    }
                    Err(_) => {
                        tracing::warn!(message = "too many hj212 connections; closing a new one", peer = %peer);
                        shared.stats.send_modify(|s| s.refused_connections += 1);
                    }
                },
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

/// Holds a connection slot and keeps `open_connections` right however the task ends (abort included).
struct Connection {
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Connection {
    fn drop(&mut self) {
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
    loop {
        let read = match shared.config.idle_timeout {
            Some(limit) => match tokio::time::timeout(limit, stream.read(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    tracing::info!(message = "hj212 connection idle; closing it", peer = %peer);
                    return;
                }
            },
            None => stream.read(&mut buf).await,
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
            if !handle(&mut stream, peer, shared, &deliver, packet, frame.len()).await {
                return;
            }
        }
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
