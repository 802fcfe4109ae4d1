//! HJ 212-2017 (污染物在线监控（监测）系统数据传输标准), the protocol Chinese water-quality stations use to push
//! their data to a monitoring centre over TCP: a frame codec and a listener for the centre's side. The simulated
//! station is in the `waterworks-sim` crate.
//!
//! # Layout
//! - `codec`: [`Packet`], [`decode`], [`encode`], [`crc16`], the data reply ([`data_response`]) and the
//!   helpers that read factor values and data flags out of the `CP` part. Pure: no I/O, no clock.
//! - `framing`: [`LineFramer`], which cuts a TCP byte stream into CR LF-terminated frames with a bounded buffer.
//! - `listener`: [`Hj212Listener`], a TCP server that decodes frames, hands packets to the caller through a
//!   bounded channel and sends the data reply only after the caller has acknowledged the packet.
//!
//! # The two directions
//! Stations connect to us and push: uploads (`CN=2011` real-time, `2051` minute, `2061` hour data) flow in,
//! and the only thing flowing out is the data reply (`CN=9014`) to uploads whose `Flag` asks for one. Commands
//! from the centre to a station (`1xxx`, `3xxx`) are not implemented.
//!
//! **Invariant:** nothing a peer sends can panic the codec or grow a connection's memory without bound; a bad
//! frame is rejected on its own and the connection carries on with the next one.
//!
//! This module deliberately knows nothing about what a factor means for the utility (limits, alarms, units):
//! it speaks codes such as `w01001` and strings such as `7.21`; configuration gives them a meaning.

mod codec;
mod framing;
mod listener;

use std::net::SocketAddr;

pub use codec::{
    crc16, data_response, decode, encode, frame_segment, Cp, CpParam, DataFlag, FactorReading, FactorValue, Packet,
    FRAME_OVERHEAD, MAX_DATA_LEN, MAX_FRAME_LEN, STANDARD_MAX_DATA_LEN,
};
pub use framing::LineFramer;
pub use listener::{Ack, Hj212Listener, ListenerConfig, ListenerStats, Received, Rejection};

/// Everything that can go wrong with HJ 212: a frame that does not decode, a packet that cannot be encoded, a
/// station that fails the password check, a bad configuration.
///
/// Messages quote at most a short, escaped excerpt of what the peer sent, so that a log line stays one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hj212Error {
    #[error("frame of {len} bytes is shorter than the {FRAME_OVERHEAD}-byte minimum")]
    TooShort { len: usize },
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("no line end within {max} bytes; the bytes up to the next line end are dropped")]
    Oversized { max: usize },
    #[error("{len} bytes of garbage before a ## header")]
    Garbage { len: usize },
    #[error("frame does not start with ##")]
    BadHeader,
    #[error("frame does not end with CR LF")]
    MissingTrailer,
    #[error("length field {0:?} is not four decimal digits")]
    BadLength(String),
    #[error("length field says {declared} bytes but the data segment has {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("crc field {0:?} is not four hex digits")]
    BadCrcText(String),
    /// `expected` is the CRC computed over the data segment as received, `actual` the one the frame carries.
    #[error("crc mismatch: the data segment gives {expected:04X}, the frame says {actual:04X}")]
    CrcMismatch { expected: u16, actual: u16 },
    #[error("data segment is not valid utf-8")]
    NotUtf8,
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {0:?} is given twice")]
    DuplicateField(String),
    #[error("unknown field {0:?} before CP")]
    UnknownField(String),
    #[error("bad field {field}: {reason}")]
    BadField { field: String, reason: String },
    #[error("bad CP: {0}")]
    BadCp(String),
    #[error("packet cannot be encoded: {0}")]
    Unencodable(String),
    #[error("wrong password for station {mn:?}")]
    WrongPassword { mn: String },
    #[error("station {mn:?} is not in the password list")]
    UnknownStation { mn: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// Command numbers (`CN`) this crate uses or names; the standard's command table lists the rest.
pub mod cn {
    /// Real-time data upload (`-Rtd` values).
    pub const REALTIME_DATA: &str = "2011";
    /// Daily data upload.
    pub const DAY_DATA: &str = "2031";
    /// Minute data upload (`-Avg`, `-Min`, `-Max`).
    pub const MINUTE_DATA: &str = "2051";
    /// Hourly data upload.
    pub const HOUR_DATA: &str = "2061";
    /// Request response (`QnRtn`), station to centre.
    pub const REQUEST_RESPONSE: &str = "9011";
    /// Execution result (`ExeRtn`), station to centre.
    pub const EXECUTION_RESULT: &str = "9012";
    /// Notification response (通知应答): answers a notification command, not a data upload.
    pub const NOTIFICATION_RESPONSE: &str = "9013";
    /// Data response (数据应答): the centre's answer to a data upload whose `Flag` asks for one.
    pub const DATA_RESPONSE: &str = "9014";

    /// Whether `cn` is a data upload (the 2xxx family: real-time, status, day, minute, hour data, restart time),
    /// which the centre answers with [`DATA_RESPONSE`].
    pub fn is_data_upload(cn: &str) -> bool {
        cn.len() == 4 && cn.starts_with('2') && cn.bytes().all(|b| b.is_ascii_digit())
    }
}

/// System codes (`ST`).
pub mod st {
    /// Surface water quality monitoring (地表水质量监测).
    pub const SURFACE_WATER: &str = "21";
    /// Surface-water pollution source (地表水体环境污染源).
    pub const SURFACE_WATER_POLLUTION: &str = "32";
    /// System interaction (系统交互): replies such as `9014` carry it.
    pub const SYSTEM: &str = "91";
}

/// The `Flag` field (拆分包及应答标志): bits `V5 V4 V3 V2 V1 V0 D A`, most significant first.
///
/// - `A` (bit 0): the sender wants a reply.
/// - `D` (bit 1): the packet is one of several; `PNUM` (packet count) and `PNO` (packet number) are present.
/// - `V5..V0` (bits 7..2): the standard's version, `000000` for HJ/T 212-2005 and `000001` for HJ 212-2017.
///
/// So a 2017 station sends `Flag=4` (no reply wanted), `Flag=5` (reply wanted) or `Flag=7` (packetised, reply
/// wanted). The bit layout follows the standard's table as implemented by srdgame/lua-HJ212
/// (`hj212/packet/data.lua`: `flag = (ver << 2) + ack`, split packets `flag + 2`) and caoyiliang/HJ212
/// (`Enum.cs`: `HJT212_2017 = 4`).
pub mod flag {
    /// `A`: a reply is requested.
    pub const REPLY: u8 = 0b0000_0001;
    /// `D`: the packet carries `PNUM` and `PNO`.
    pub const PACKETISED: u8 = 0b0000_0010;
    /// The version field of HJ 212-2017 (`000001`) in place.
    pub const V2017: u8 = 0b0000_0100;

    /// The version number in `flag` (0 = 2005, 1 = 2017).
    pub fn version(flag: u8) -> u8 {
        flag >> 2
    }
}

/// Factor (monitoring item) codes seen in public HJ 212 water-quality implementations (see DOMAIN.md §2.7; not
/// checked against the standard's Appendix B).
pub mod factor {
    pub const PH: &str = "w01001";
    pub const TURBIDITY: &str = "w01003";
    pub const DISSOLVED_OXYGEN: &str = "w01009";
    pub const WATER_TEMPERATURE: &str = "w01010";
    pub const CONDUCTIVITY: &str = "w01014";
    pub const COD: &str = "w01018";
    pub const PERMANGANATE_INDEX: &str = "w01019";
    pub const TOTAL_NITROGEN: &str = "w21001";
    pub const AMMONIA_NITROGEN: &str = "w21003";
    pub const TOTAL_PHOSPHORUS: &str = "w21011";
    pub const MERCURY: &str = "w20111";
    pub const CADMIUM: &str = "w20115";
    pub const CHROMIUM_VI: &str = "w20117";
    pub const ARSENIC: &str = "w20119";
    pub const LEAD: &str = "w20120";
    pub const MANGANESE: &str = "w20124";
    pub const IRON: &str = "w20125";
}
