//! The network side of one simulated device: its listener task, one task per connection, and the faults
//! applied to each request.
//!
//! Every device has its own listener task and every connection its own task, so a silent or slow device only
//! ever holds up its own clients. A peer that sends something other than Modbus TCP has its connection
//! counted, logged and closed; the listener never stops for it. This module deliberately does not compute
//! register values (that is `device.rs`) or parse faults (that is `fault.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::device::Device;
use super::exception::{exception_pdu, GATEWAY_TARGET_FAILED};
use super::fault::ModbusFault;
use super::mbap::{self, Request, FRAME_COMPLETION};
use super::SimClock;

/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections for `device` until the task is aborted. Aborting it also ends every connection,
/// because the connection tasks live in a [`JoinSet`] that aborts them when dropped.
pub(crate) async fn run_listener(listener: TcpListener, device: Arc<Device>, clock: SimClock) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, Arc::clone(&device), clock));
                }
                Err(error) => {
                    tracing::warn!(message = "accept failed", device = %device.id, error = %error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    if error.is_panic() {
                        tracing::warn!(message = "connection task panicked", device = %device.id, error = %error);
                    }
                }
            }
        }
    }
}

/// Serves one connection: read a request, look at the device's fault as it is now, answer (or not).
async fn serve_connection(stream: TcpStream, peer: SocketAddr, device: Arc<Device>, clock: SimClock) {
    // Replies are small and must not wait for more data to fill a segment.
    let _ = stream.set_nodelay(true);
    // Buffered, so that a request usually costs one read system call rather than one for its header, one for
    // its PDU and one to find the socket empty; bytes of a next request stay buffered for the next frame.
    let mut stream = BufReader::new(stream);
    loop {
        let request = match mbap::read_request(&mut stream, FRAME_COMPLETION).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) if error.is_malformed() => {
                device.count_malformed();
                tracing::warn!(
                    message = "malformed request, closing the connection",
                    device = %device.id,
                    peer = %peer,
                    error = %error
                );
                return;
            }
            Err(error) => {
                tracing::debug!(message = "connection failed", device = %device.id, peer = %peer, error = %error);
                return;
            }
        };
        device.count_request();
        let fault = device.fault();
        if fault.disconnect {
            tracing::debug!(message = "fault: disconnect", device = %device.id, peer = %peer);
            return;
        }
        if fault.silent {
            continue;
        }
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        let frame = respond(&device, &request, &fault, clock.now());
        if let Err(error) = stream.write_all(&frame).await {
            tracing::debug!(message = "reply not sent", device = %device.id, peer = %peer, error = %error);
            return;
        }
    }
}

/// The reply frame to `request` under `fault` (silence, delay and disconnection are handled by the caller).
fn respond(device: &Device, request: &Request, fault: &ModbusFault, t: f64) -> Vec<u8> {
    if fault.garbage {
        return mbap::garbage(request.transaction_id);
    }
    let function = request.pdu.first().copied().unwrap_or(0);
    let addressed_to_us = matches!(request.unit_id, 0 | 255) || request.unit_id == device.unit_id;
    let pdu = match fault.exception {
        Some(code) => exception_pdu(function, code),
        None if !addressed_to_us => exception_pdu(function, GATEWAY_TARGET_FAILED),
        None => device.answer(&request.pdu, t, fault),
    };
    mbap::reply(request.transaction_id, request.unit_id, &pdu)
}
