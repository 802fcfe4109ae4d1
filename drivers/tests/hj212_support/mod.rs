//! Helpers shared by the HJ 212 integration tests: a listener on port 0, frames to send, and waits on events
//! with an upper bound (the bound only turns a hang into a failure; no test sleeps to let things happen).
//!
//! Not every test file uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use waterworks_drivers::hj212::{crc16, encode, Cp, FactorValue, Hj212Listener, ListenerConfig, Packet, Received};

/// Upper bound on any wait; reached only when something is broken.
pub const LIMIT: Duration = Duration::from_secs(10);

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Frames a data segment by hand (independently of the codec's encoder), with a correct length and CRC.
pub fn frame(segment: &str) -> Vec<u8> {
    frame_bytes(segment.as_bytes())
}

pub fn frame_bytes(segment: &[u8]) -> Vec<u8> {
    let mut out = format!("##{:04}", segment.len()).into_bytes();
    out.extend_from_slice(segment);
    out.extend_from_slice(format!("{:04X}\r\n", crc16(segment)).as_bytes());
    out
}

/// A real-time upload from station `mn` with pH and turbidity values.
pub fn upload(qn: &str, mn: &str, pw: &str, flag: u8) -> Packet {
    let mut p = Packet::new("21", "2011", mn);
    p.qn = Some(qn.to_owned());
    p.pw = Some(pw.to_owned());
    p.flag = Some(flag);
    p.cp = Cp {
        data_time: Some("20240301120000".to_owned()),
        params: Vec::new(),
        values: vec![
            FactorValue::new("w01001", "Rtd", "7.21"),
            FactorValue::new("w01001", "Flag", "N"),
            FactorValue::new("w01003", "Rtd", "0.31"),
            FactorValue::new("w01003", "Flag", "N"),
        ],
    };
    p
}

/// The encoded frame of [`upload`].
pub fn upload_frame(qn: &str, mn: &str, pw: &str, flag: u8) -> Vec<u8> {
    encode(&upload(qn, mn, pw, flag)).expect("test upload encodes")
}

pub async fn start_listener(config: ListenerConfig, capacity: usize) -> (Hj212Listener, mpsc::Receiver<Received>) {
    let (tx, rx) = mpsc::channel(capacity);
    match Hj212Listener::start(config, tx).await {
        Ok(listener) => (listener, rx),
        Err(e) => panic!("listener did not start: {e}"),
    }
}

/// The next delivered packet.
pub async fn recv(rx: &mut mpsc::Receiver<Received>) -> Received {
    match tokio::time::timeout(LIMIT, rx.recv()).await {
        Ok(Some(received)) => received,
        Ok(None) => panic!("the listener closed the channel"),
        Err(_) => panic!("no packet delivered within {LIMIT:?}"),
    }
}

/// Waits until `check` holds for the watched value and returns that value.
pub async fn until<T: Clone + Debug>(rx: &mut watch::Receiver<T>, what: &str, check: impl FnMut(&T) -> bool) -> T {
    let outcome = tokio::time::timeout(LIMIT, rx.wait_for(check)).await.map(|seen| seen.map(|value| value.clone()));
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(_)) => panic!("waiting until {what}: the sender is gone"),
        Err(_) => panic!("timed out waiting until {what}; last seen {:?}", *rx.borrow()),
    }
}

/// Reads one CR LF-terminated line (a reply) from `stream`.
pub async fn read_line(stream: &mut TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match tokio::time::timeout(LIMIT, stream.read(&mut byte)).await {
            Ok(Ok(1)) => line.push(byte[0]),
            Ok(Ok(_)) => panic!("connection closed after {:?}", String::from_utf8_lossy(&line)),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => panic!("no reply line within {LIMIT:?}; got {:?}", String::from_utf8_lossy(&line)),
        }
    }
    line
}

/// Asserts that nothing has arrived on `stream` yet, without waiting. Loopback delivers a write into the
/// receiver's buffer before the write returns, so a reply sent earlier would be visible here.
pub fn assert_nothing_to_read(stream: TcpStream) -> TcpStream {
    let std_stream = stream.into_std().expect("tokio stream converts to std");
    let mut byte = [0u8; 1];
    match std_stream.peek(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("expected nothing to read yet, got {other:?}"),
    }
    TcpStream::from_std(std_stream).expect("std stream converts back")
}
