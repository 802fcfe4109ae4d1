//! The network side of the simulated gateway: its listener task, one task per connection, and the faults
//! applied to each reply.
//!
//! A connection reads request frames (skipping wake-up bytes and noise as a meter does), hands each to the
//! addressed meter, and writes the reply with the meter's fault applied. A corrupt frame closes only its own
//! connection and is counted. This module deliberately does not compute replies (that is `meter.rs`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::meter::Answer;
use super::{lock, Fault, Meter, Shared};
use crate::cjt188::frame::{decode, encode, junk_len, Address, Frame, PREAMBLE_BYTE, START_BYTE};

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Line noise put before a reply by [`Fault::noise`]: no 68 among it, so a reader can only skip it.
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

/// The next frame from the peer; `None` when the peer closed, the link failed, or the bytes were corrupt.
async fn next_frame(stream: &mut TcpStream, buf: &mut Vec<u8>, peer: SocketAddr, shared: &Shared) -> Option<Frame> {
    loop {
        let junk = junk_len(buf);
        buf.drain(..junk);
        match decode(buf) {
            Ok(Some((frame, used))) => {
                buf.drain(..used);
                return Some(frame);
            }
            Ok(None) => {
                let mut chunk = [0u8; 256];
                match stream.read(&mut chunk).await {
                    Ok(0) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(error) => {
                        tracing::debug!(message = "connection failed", peer = %peer, error = %error);
                        return None;
                    }
                }
            }
            Err(error) => {
                shared.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "corrupt frame, closing the connection", peer = %peer, error = %error);
                return None;
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

/// Serves one connection: read a request, look at the addressed meter's fault as it is now, answer (or not).
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    // Replies are small and must not wait for more data to fill a segment.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(request) = next_frame(&mut stream, &mut buf, peer, &shared).await {
        if request.control.is_reply() {
            continue;
        }
        let Some(meter) = addressed(&shared, &request.address) else { continue };
        meter.requests.fetch_add(1, Ordering::Relaxed);
        let fault = lock(&meter.fault).clone();
        if fault.disconnect {
            tracing::debug!(message = "fault: disconnect", meter = %meter.address, peer = %peer);
            return;
        }
        if fault.silent {
            continue;
        }
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        let reply = respond(&shared, meter, &request, &fault);
        if reply.is_empty() {
            continue;
        }
        if let Err(error) = stream.write_all(&reply).await {
            tracing::debug!(message = "reply not sent", meter = %meter.address, peer = %peer, error = %error);
            return;
        }
    }
}

/// The bytes `meter` sends for `request` under `fault` (silence, delay and disconnection are handled by the
/// caller); empty for no reply.
fn respond(shared: &Shared, meter: &Meter, request: &Frame, fault: &Fault) -> Vec<u8> {
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
