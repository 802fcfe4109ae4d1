//! Helpers shared by the HJ 212 integration tests: frames to send, built independently of the encoder.
//!
//! Not every test file uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use waterworks_drivers::hj212::{crc16, encode, Cp, FactorValue, Packet};

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
