//! The live stream at `/ws` (issue 2 §8, DESIGN.md §6): a snapshot (or the missed frames when resuming with
//! `?since=SEQ&epoch=E`), then deltas, events and alarm transitions with rising sequence numbers, and a
//! `heartbeat` frame every `live.heartbeat` (it carries the client's sequence and takes none of its own), so
//! a page can tell a stalled server from a quiet plant (issue 9 §4).
//!
//! A client that falls behind the hub's broadcast gets `{"type":"resync"}` and a fresh snapshot on the same
//! socket, never a silent gap; frames it already has through the snapshot are skipped. A client that stops
//! reading is dropped (issue 8 §3): every `live.ping` the server pings, and a client that has sent nothing (no
//! pong) since the previous ping is closed, since a client that does not read cannot answer; a send that
//! takes longer than `live.write_timeout` (the socket's buffers are full) drops it too. Either is counted in
//! `waterworks_ws_dropped_total` and logged; the client's reconnect with `?since=` (or a snapshot) covers what
//! it missed. So a client can never hold memory or a connection without bound. When the hub is
//! restarted the session resubscribes (a new epoch means a snapshot). A session whose login expired or was
//! closed is disconnected at the next check.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use actors::hub::{LiveFrame, Resume, Wire};
use actors::metrics::Metrics;

use crate::error::AppError;
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

/// How the live stream finds clients that stopped reading (`[live] ping`, `write_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLimits {
    /// A ping this often; a client silent since the previous ping (no pong) is dropped.
    pub ping: Duration,
    /// A send that takes longer than this means the client stopped reading.
    pub write_timeout: Duration,
    /// A heartbeat frame this often (issue 9 §4): the page tells a stalled server from a quiet plant.
    pub heartbeat: Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            ping: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// Why a client was dropped.
#[derive(Clone, Copy, Debug)]
enum Dropped {
    NoPong,
    WriteTimeout,
}

fn dropped(metrics: &Metrics, username: &str, why: Dropped) {
    let (counter, reason) = match why {
        Dropped::NoPong => (&metrics.limits.ws_dropped_no_pong, "no pong since the last ping"),
        Dropped::WriteTimeout => (&metrics.limits.ws_dropped_write_timeout, "a send timed out"),
    };
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(message = "Live stream client stopped reading; dropped.", username = %username, reason, total = n);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    since: Option<u64>,
    epoch: Option<String>,
    /// `z=1`: frames over [`COMPRESS_OVER`] bytes come zlib-compressed in binary frames (issue 9 §4).
    z: Option<u8>,
}

/// Frames longer than this go compressed to a client that asked (`?z=1`): in practice the snapshot, which
/// for 12,000 meters is about 2 MB of JSON and a tenth of that compressed. Small frames stay text.
pub const COMPRESS_OVER: usize = 32 * 1024;

/// The client of one live stream: its user, and whether it takes compressed frames.
struct Peer {
    auth: AuthUser,
    compress: bool,
}

impl std::ops::Deref for Peer {
    type Target = AuthUser;
    fn deref(&self) -> &AuthUser {
        &self.auth
    }
}

/// zlib (RFC 1950) of a frame, as the page's `DecompressionStream('deflate')` reads it. Level 1: the snapshot
/// shrinks about tenfold at a few milliseconds per megabyte.
fn zlib(text: &str) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(text.as_bytes(), 1)
}

/// Refuses cross-site WebSocket handshakes: a browser always sends `Origin`, and it must name this server (the
/// same rule as state-changing requests, `edge::is_own_origin`).
fn same_origin(headers: &HeaderMap, config: &crate::HmiConfig) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser (scripts, tests)
    };
    crate::edge::Origin::parse(origin)
        .is_some_and(|o| crate::edge::is_own_origin(&o, headers, config.public_origin.as_ref(), config.tls))
}

pub async fn upgrade(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    if !same_origin(&headers, &state.config) {
        Metrics::inc(&state.metrics.bad_requests);
        return Err(AppError::Forbidden("cross-origin WebSocket refused".into()));
    }
    let Query(q) = query.map_err(|e| AppError::BadRequest(format!("bad query: {}", e.body_text())))?;
    let resume = match (q.since, q.epoch) {
        (Some(seq), Some(epoch)) => Some(Resume { epoch, seq }),
        _ => None,
    };
    let user = Peer { auth: user, compress: q.z == Some(1) };
    Ok(ws.max_message_size(64 * 1024).on_upgrade(move |socket| session(socket, state, user, resume)))
}

/// Counts a connected client for as long as it lives.
struct ClientGauge<'a>(&'a Metrics);

impl Drop for ClientGauge<'_> {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Sends a JSON frame, redacted for a crew member (`redact`, issue 8 §5); a large one compressed in a binary
/// frame if the client asked (`?z=1`), off the async threads.
async fn send_text(sink: &mut Sink, json: &str, limits: &LiveLimits, metrics: &Metrics, user: &Peer) -> bool {
    let username = user.user.username.as_str();
    let text = if crate::redact::applies(user.user.role) { crate::redact::frame(json) } else { json.to_owned() };
    let msg = if user.compress && text.len() > COMPRESS_OVER {
        match tokio::task::spawn_blocking(move || zlib(&text)).await {
            Ok(bytes) => Message::Binary(bytes.into()),
            Err(_) => return false,
        }
    } else {
        Message::Text(Utf8Bytes::from(text))
    };
    send_message(sink, msg, limits, metrics, username).await
}

/// Sends within the write timeout; false when the client is gone or too slow (a timeout is counted).
async fn send_message(sink: &mut Sink, msg: Message, limits: &LiveLimits, metrics: &Metrics, username: &str) -> bool {
    match tokio::time::timeout(limits.write_timeout, sink.send(msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            dropped(metrics, username, Dropped::WriteTimeout);
            false
        }
    }
}

async fn session(socket: WebSocket, state: AppState, user: Peer, mut resume: Option<Resume>) {
    let metrics = &*state.metrics;
    metrics.ws_clients.fetch_add(1, Ordering::Relaxed);
    let _gauge = ClientGauge(metrics);
    let username = user.user.username.clone();
    tracing::info!(message = "Live stream opened.", username = %username, resume = resume.is_some());
    let (mut sink, mut stream) = socket.split();
    let limits = state.config.live;
    let mut ping = tokio::time::interval(limits.ping);
    ping.tick().await;
    let mut heartbeat = tokio::time::interval(limits.heartbeat.max(Duration::from_millis(100)));
    // After a freeze, one heartbeat, not a burst of the missed ones.
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let every_ms = u64::try_from(limits.heartbeat.as_millis()).unwrap_or(u64::MAX);
    // Whether the client sent anything (a pong, typically) since the last ping.
    let mut heard = true;
    'subscription: loop {
        let sub = match state.api.events().subscribe(resume.take()).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(message = "Live stream cannot subscribe.", username = %username, error = %e);
                let close = Message::Close(Some(CloseFrame {
                    code: 1011,
                    reason: Utf8Bytes::from_static("live hub unavailable"),
                }));
                let _ = send_message(&mut sink, close, &limits, metrics, &username).await;
                return;
            }
        };
        let epoch = sub.epoch.clone();
        for frame in &sub.initial {
            if !send_text(&mut sink, &frame.json, &limits, metrics, &user).await {
                return;
            }
        }
        let mut last_seq = sub.upto;
        let mut rx = sub.rx;
        loop {
            tokio::select! {
                frame = rx.recv() => match frame {
                    Ok(LiveFrame { seq, json }) => {
                        if seq <= last_seq {
                            continue;
                        }
                        if !send_text(&mut sink, &json, &limits, metrics, &user).await {
                            tracing::info!(message = "Live stream client too slow or gone; dropped.", username = %username);
                            return;
                        }
                        last_seq = seq;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        Metrics::inc(&metrics.ws_resyncs);
                        tracing::info!(message = "Live stream client fell behind; resync.", username = %username, missed);
                        if !send_text(&mut sink, &Wire::Resync { reason: "lagged" }.to_json(), &limits, metrics, &user).await {
                            return;
                        }
                        match state.api.events().snapshot().await {
                            Ok(snap) => {
                                if !send_text(&mut sink, &snap.json, &limits, metrics, &user).await {
                                    return;
                                }
                                last_seq = snap.seq;
                            }
                            Err(_) => continue 'subscription,
                        }
                    }
                    Err(RecvError::Closed) => {
                        // The hub restarted. Resume (a new epoch gets a snapshot).
                        let _ = send_text(&mut sink, &Wire::Resync { reason: "hub_restarted" }.to_json(), &limits, metrics, &user).await;
                        resume = Some(Resume { epoch: epoch.clone(), seq: last_seq });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue 'subscription;
                    }
                },
                incoming = stream.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break 'subscription,
                    // The stream is one-way; anything else from the client (pongs) only shows it reads.
                    Some(Ok(_)) => heard = true,
                },
                _ = heartbeat.tick() => {
                    if !send_text(&mut sink, &Wire::Heartbeat { seq: last_seq, every_ms }.to_json(), &limits, metrics, &user).await {
                        return;
                    }
                }
                _ = ping.tick() => {
                    if let Some(token) = &user.token {
                        if !state.api.users().session_live(token) {
                            let close = Message::Close(Some(CloseFrame { code: 4401, reason: Utf8Bytes::from_static("session ended") }));
                            let _ = send_message(&mut sink, close, &limits, metrics, &username).await;
                            break 'subscription;
                        }
                    }
                    if !heard {
                        dropped(metrics, &username, Dropped::NoPong);
                        break 'subscription;
                    }
                    heard = false;
                    if !send_message(&mut sink, Message::Ping(Default::default()), &limits, metrics, &username).await {
                        break 'subscription;
                    }
                }
            }
        }
    }
    tracing::info!(message = "Live stream closed.", username = %username);
}
