//! The wire side of the simulated meters: a TCP listener with one task per connection, or one task on a pty
//! serial line; and the faults applied to each reply.
//!
//! A stream reads request frames (skipping wake-up bytes and noise as a meter does), hands each to the
//! addressed meter, and writes the reply with the meter's fault applied. A corrupt frame is counted; it closes
//! its own TCP connection, and on a serial line only its own bytes are dropped. On a serial line every exchange
//! takes its wire time at the line's baud rate: the reply is complete only after the request and the reply
//! would have crossed the line, one exchange at a time, as on a real half-duplex bus.
//! This module deliberately does not compute replies (that is `meter.rs`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_serial::SerialStream;

use super::meter::Answer;
use super::{lock, Cjt188Fault, Meter, Shared};
use drivers::cjt188::frame::{decode, encode, junk_len, Address, Frame, PREAMBLE_BYTE, START_BYTE};
use drivers::rtu::CharFormat;

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Pause after a failed read of the pty, so the loop does not spin.
const READ_BACKOFF: Duration = Duration::from_millis(20);
/// Line noise put before a reply by [`Cjt188Fault::noise`]: no 68 among it, so a reader can only skip it.
const NOISE: [u8; 6] = [0x00, 0xFF, 0x55, 0x16, 0xFE, 0x13];

/// Accepts connections until the task is aborted. Aborting it also ends every connection, because the
/// connection tasks live in a [`JoinSet`] that aborts them when dropped.
pub(crate) async fn run_listener(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, Arc::clone(&shared)));
                }
                Err(error) => {
                    tracing::warn!(message = "accept failed", error = %error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    if error.is_panic() {
                        tracing::warn!(message = "connection task panicked", error = %error);
                    }
                }
            }
        }
    }
}

/// Why a stream stopped yielding frames.
enum End {
    /// The peer closed or the link failed.
    Closed,
    /// Bytes that are not CJ/T 188 (counted).
    Corrupt,
}

/// The next frame from the peer and the bytes it took on the wire (with its wake-up bytes).
async fn next_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    peer: &str,
    shared: &Shared,
) -> Result<(Frame, usize), End> {
    let mut skipped = 0;
    loop {
        let junk = junk_len(buf);
        buf.drain(..junk);
        skipped += junk;
        match decode(buf) {
            Ok(Some((frame, used))) => {
                buf.drain(..used);
                return Ok((frame, skipped + used));
            }
            Ok(None) => {
                let mut chunk = [0u8; 256];
                match stream.read(&mut chunk).await {
                    Ok(0) => return Err(End::Closed),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(error) => {
                        tracing::debug!(message = "connection failed", peer = %peer, error = %error);
                        return Err(End::Closed);
                    }
                }
            }
            Err(error) => {
                shared.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "corrupt frame", peer = %peer, error = %error);
                buf.clear();
                return Err(End::Corrupt);
            }
        }
    }
}

/// The meter a frame is for: the one with its address, or the only meter for the wildcard.
fn addressed<'a>(shared: &'a Shared, address: &Address) -> Option<&'a Meter> {
    if address.is_wildcard() {
        return match shared.meters.as_slice() {
            [only] => Some(only),
            _ => None,
        };
    }
    shared.meters.iter().find(|m| m.address == *address)
}

/// Serves one TCP connection until it closes, sends a corrupt frame, or a fault disconnects it.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    // Replies are small and must not wait for more data to fill a segment.
    let _ = stream.set_nodelay(true);
    let _ = serve(&mut stream, &peer.to_string(), &shared, None).await;
}

/// A serial line: its baud rate and character format, which pace every exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    pub(crate) baud: u32,
    pub(crate) format: CharFormat,
}

/// Serves the simulated line on the pty's master side until the task is aborted. A corrupt frame or a
/// "disconnect" fault drops only what was received; a line cannot be hung up.
pub(crate) async fn run_serial(mut port: SerialStream, shared: Arc<Shared>, wire: Wire) {
    loop {
        if let End::Closed = serve(&mut port, "serial line", &shared, Some(wire)).await {
            // Only a pty whose every slave-side handle is closed fails to read; the simulator holds one open,
            // so this is transient at worst.
            tokio::time::sleep(READ_BACKOFF).await;
        }
    }
}

/// Reads requests from `stream` and answers each as the addressed meter's fault says, until the stream ends.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: &str,
    shared: &Shared,
    wire: Option<Wire>,
) -> End {
    let mut buf = Vec::new();
    loop {
        let (request, request_bytes) = match next_frame(stream, &mut buf, peer, shared).await {
            Ok(next) => next,
            Err(end) => return end,
        };
        let received = tokio::time::Instant::now();
        if request.control.is_reply() {
            continue;
        }
        let Some(meter) = addressed(shared, &request.address) else { continue };
        meter.requests.fetch_add(1, Ordering::Relaxed);
        let fault = lock(&meter.fault).clone();
        if fault.disconnect && wire.is_none() {
            tracing::debug!(message = "fault: disconnect", meter = %meter.address, peer = %peer);
            return End::Closed;
        }
        if fault.silent || fault.disconnect {
            continue;
        }
        let delay = Duration::from_millis(fault.delay_ms);
        if wire.is_none() && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let reply = respond(shared, meter, &request, &fault);
        if reply.is_empty() {
            continue;
        }
        if let Some(wire) = wire {
            // A pty delivers bytes at once; the line would have taken this long to carry the request, then the
            // reply (after the meter's delay). The next request is read only after this reply, so exchanges never
            // overlap.
            let on_wire = wire.format.wire_time(wire.baud, request_bytes + reply.len());
            tokio::time::sleep_until(received + delay + on_wire).await;
        }
        if let Err(error) = stream.write_all(&reply).await {
            tracing::debug!(message = "reply not sent", meter = %meter.address, peer = %peer, error = %error);
            return End::Closed;
        }
    }
}

/// The bytes `meter` sends for `request` under `fault` (silence, delay and disconnection are handled by the
/// caller); empty for no reply.
fn respond(shared: &Shared, meter: &Meter, request: &Frame, fault: &Cjt188Fault) -> Vec<u8> {
    if fault.garbage {
        return garbage(meter.address);
    }
    let elapsed = shared.origin.elapsed();
    let answer = lock(&meter.state).answer(request, elapsed, shared.clock(), &shared.st_bits, fault.abnormal);
    let Answer::Reply(frame) = answer else { return Vec::new() };
    // Replies are built by the meter model and are never too long; no reply beats a panic all the same.
    let Ok(mut reply) = encode(&frame, shared.preamble) else { return Vec::new() };
    if fault.bad_checksum {
        if let Some(cs) = reply.len().checked_sub(2).and_then(|i| reply.get_mut(i)) {
            *cs = cs.wrapping_add(1);
        }
    }
    let mut out = Vec::with_capacity(2 * reply.len() + NOISE.len());
    if fault.noise {
        out.extend_from_slice(&NOISE);
    }
    if fault.foreign_frame {
        // Flipping the lowest bit of A0 keeps the address BCD and makes it another meter's.
        let mut wire = frame.address.wire();
        wire[0] ^= 0x01;
        let foreign = Frame { address: Address::from_wire(wire), ..frame.clone() };
        out.extend_from_slice(&encode(&foreign, shared.preamble).unwrap_or_default());
    }
    out.extend_from_slice(&reply);
    out
}

/// Bytes that start like a reply from `address` but declare a data length of 255, which no reader accepts.
fn garbage(address: Address) -> Vec<u8> {
    let mut out = vec![PREAMBLE_BYTE, PREAMBLE_BYTE, START_BYTE, 0x10];
    out.extend_from_slice(&address.wire());
    out.extend_from_slice(&[0x81, 0xFF, 0x90, 0x1F, 0x00, 0x12, 0x34]);
    out
}
