//! The CJ/T 188 link frame: meter address, meter type, control code, and the byte-level encoder and
//! incremental decoder.
//!
//! ```text
//! FE … FE | 68 | T | A0 A1 A2 A3 A4 A5 A6 | C | L | DATA (L bytes) | CS | 16
//! ```
//!
//! CS is the sum modulo 256 of every byte from `68` through the last data byte.
//!
//! Pure and panic-free: every function here takes any bytes and answers with a value or an error. This
//! module deliberately does not look inside the data field (data identifiers, metering data and valve
//! commands are `payload.rs`), and does no I/O.

use std::fmt;
use std::str::FromStr;

/// The wake-up byte sent before a frame; receivers skip any number of them.
pub const PREAMBLE_BYTE: u8 = 0xFE;
/// The byte that starts a frame.
pub const START_BYTE: u8 = 0x68;
/// The byte that ends a frame.
pub const END_BYTE: u8 = 0x16;
/// Bytes of a frame around its data field: 68, T, A0..A6, C, L before it, CS and 16 after it.
pub const OVERHEAD: usize = 13;
/// The longest data field this codec accepts or produces.
///
/// A judgement call, not a number from the standard (whose text was not read): the longest data field in
/// the data identifier tables we know is 29 bytes (a 2018 timed-freeze record after DI and SER), and 128
/// leaves room for vendor extensions and 16-byte SM4 blocks. A larger L is taken for a corrupted length
/// byte and rejected at once instead of waiting for up to 255 more bytes.
pub const MAX_DATA_LEN: usize = 128;
/// The most wake-up bytes [`encode`] writes. Vendors use 2 to 4.
pub const MAX_PREAMBLE: usize = 16;

/// Why bytes are not a CJ/T 188 frame, or a frame cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("declared data length {0} is longer than {MAX_DATA_LEN}")]
    Length(u8),
    #[error("checksum is 0x{received:02X}, the bytes sum to 0x{computed:02X}")]
    Checksum { computed: u8, received: u8 },
    #[error("frame ends with 0x{0:02X}, not 0x16")]
    EndByte(u8),
    #[error("data field of {0} bytes is longer than {MAX_DATA_LEN}")]
    DataTooLong(usize),
    #[error("preamble of {0} bytes is longer than {MAX_PREAMBLE}")]
    PreambleTooLong(usize),
}

/// A meter address: 7 bytes, BCD, stored and sent A0 (the lowest two digits) first.
///
/// Written as 14 digits from A6 down to A0, so the bytes `44 33 22 11 00 33 78` on the wire are
/// `"78330011223344"`. `AA` × 7 is the wildcard that any single meter on the bus answers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 7]);

impl Address {
    /// The wildcard address `AAAAAAAAAAAAAA`.
    pub const WILDCARD: Address = Address([0xAA; 7]);

    /// The address from its bytes in wire order (A0 first), as they are, BCD or not.
    pub const fn from_wire(bytes: [u8; 7]) -> Self {
        Address(bytes)
    }

    /// The bytes in wire order, A0 first.
    pub const fn wire(&self) -> [u8; 7] {
        self.0
    }

    pub fn is_wildcard(&self) -> bool {
        *self == Address::WILDCARD
    }

    /// Whether every byte holds two decimal digits.
    pub fn is_bcd(&self) -> bool {
        self.0.iter().all(|b| bcd_to_u8(*b).is_some())
    }
}

/// Why a string is not a meter address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("meter address {0:?} is not 14 decimal digits (or the wildcard AAAAAAAAAAAAAA)")]
pub struct AddressError(pub String);

impl FromStr for Address {
    type Err = AddressError;

    /// Parses 14 decimal digits written A6..A0, or the wildcard `AAAAAAAAAAAAAA` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.to_owned());
        if s.eq_ignore_ascii_case("AAAAAAAAAAAAAA") {
            return Ok(Address::WILDCARD);
        }
        let digits = s.as_bytes();
        if digits.len() != 14 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let mut bytes = [0u8; 7];
        // digits[0..2] is A6, digits[12..14] is A0.
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            bytes[6 - i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
        }
        Ok(Address(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits of each byte are its BCD digits; a non-BCD byte from the wire still prints readably.
        for b in self.0.iter().rev() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// The meter type byte T. An open set: vendors use codes beyond the named ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MeterType(pub u8);

impl MeterType {
    pub const COLD_WATER: MeterType = MeterType(0x10);
    pub const HOT_WATER: MeterType = MeterType(0x11);
    pub const DIRECT_DRINKING_WATER: MeterType = MeterType(0x12);
    pub const RECLAIMED_WATER: MeterType = MeterType(0x13);
    pub const HEAT: MeterType = MeterType(0x20);
    pub const COOLING: MeterType = MeterType(0x21);
    pub const HEAT_AND_COOLING: MeterType = MeterType(0x22);
    pub const GAS: MeterType = MeterType(0x30);
    pub const CUSTOM: MeterType = MeterType(0x40);
    /// Any meter type, used with a request to a meter whose type is not known.
    pub const WILDCARD: MeterType = MeterType(0xAA);

    pub fn description(self) -> &'static str {
        match self.0 {
            0x10 => "cold water",
            0x11 => "domestic hot water",
            0x12 => "direct drinking water",
            0x13 => "reclaimed water",
            0x20 => "heat",
            0x21 => "cooling",
            0x22 => "heat and cooling",
            0x30 => "gas",
            0x40 => "custom",
            0xAA => "any type",
            _ => "unknown type",
        }
    }

    /// Whether the type is one of the water meters (10 to 13).
    pub fn is_water(self) -> bool {
        (0x10..=0x13).contains(&self.0)
    }
}

impl fmt::Display for MeterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} ({})", self.0, self.description())
    }
}

/// The control code C: D7 direction (1 = meter to master), D6 abnormal reply, D5 follow-up frame,
/// D4..D0 the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Control(pub u8);

impl Control {
    const DIRECTION: u8 = 0x80;
    const ABNORMAL: u8 = 0x40;
    const FOLLOW_UP: u8 = 0x20;
    const FUNCTION: u8 = 0x1F;

    /// Function codes (D4..D0).
    pub const READ_DATA: u8 = 0x01;
    pub const READ_ADDRESS: u8 = 0x03;
    pub const WRITE_DATA: u8 = 0x04;
    pub const READ_KEY_VERSION: u8 = 0x09;
    pub const WRITE_ADDRESS: u8 = 0x15;
    pub const WRITE_MOTOR_SYNC: u8 = 0x16;

    /// A master's request for `function` (only D4..D0 of it are used).
    pub const fn request(function: u8) -> Self {
        Control(function & Self::FUNCTION)
    }

    /// A meter's normal reply to `function`.
    pub const fn reply(function: u8) -> Self {
        Control(Self::DIRECTION | (function & Self::FUNCTION))
    }

    /// A meter's abnormal reply to `function`.
    pub const fn abnormal_reply(function: u8) -> Self {
        Control(Self::DIRECTION | Self::ABNORMAL | (function & Self::FUNCTION))
    }

    /// D7: sent by a meter (true) or by the master (false).
    pub const fn is_reply(self) -> bool {
        self.0 & Self::DIRECTION != 0
    }

    /// D6: the meter could not do what was asked.
    pub const fn is_abnormal(self) -> bool {
        self.0 & Self::ABNORMAL != 0
    }

    /// D5: more frames follow.
    pub const fn has_follow_up(self) -> bool {
        self.0 & Self::FOLLOW_UP != 0
    }

    /// D4..D0.
    pub const fn function(self) -> u8 {
        self.0 & Self::FUNCTION
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}", self.0)
    }
}

/// One frame without its preamble and framing bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub meter_type: MeterType,
    pub address: Address,
    pub control: Control,
    /// The data field: for the functions this crate uses, DI (2 bytes), SER (1 byte), then the payload.
    pub data: Vec<u8>,
}

/// The 8-bit sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// Encodes `frame` after `preamble` wake-up bytes (FE).
///
/// Fails only for a data field longer than [`MAX_DATA_LEN`] or a preamble longer than [`MAX_PREAMBLE`].
pub fn encode(frame: &Frame, preamble: usize) -> Result<Vec<u8>, FrameError> {
    if preamble > MAX_PREAMBLE {
        return Err(FrameError::PreambleTooLong(preamble));
    }
    let len = match u8::try_from(frame.data.len()) {
        Ok(len) if usize::from(len) <= MAX_DATA_LEN => len,
        _ => return Err(FrameError::DataTooLong(frame.data.len())),
    };
    let mut out = Vec::with_capacity(preamble + OVERHEAD + frame.data.len());
    out.resize(preamble, PREAMBLE_BYTE);
    out.push(START_BYTE);
    out.push(frame.meter_type.0);
    out.extend_from_slice(&frame.address.wire());
    out.push(frame.control.0);
    out.push(len);
    out.extend_from_slice(&frame.data);
    out.push(checksum(&out[preamble..]));
    out.push(END_BYTE);
    Ok(out)
}

/// How many leading bytes of `buf` cannot start a frame: everything before the first `68` (the preamble and
/// any line noise), or all of `buf` when it holds no `68`. A reader drops them to keep its buffer small.
pub fn junk_len(buf: &[u8]) -> usize {
    buf.iter().position(|b| *b == START_BYTE).unwrap_or(buf.len())
}

/// Decodes the first frame in `buf`, skipping the bytes before its `68`.
///
/// - `Ok(Some((frame, consumed)))`: a frame, and how many bytes of `buf` it used, junk before it included;
/// - `Ok(None)`: no complete frame yet; read more bytes and call again with them appended;
/// - `Err(_)`: the frame starting at the first `68` is corrupt (length, checksum or end byte).
///
/// The decoder does not hunt for a later `68` after a corrupt frame: on a request/reply link a corrupt
/// reply is a failed exchange, and the caller drops the connection.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let start = junk_len(buf);
    let Some(frame) = buf.get(start..) else { return Ok(None) };
    let Some(&len) = frame.get(10) else { return Ok(None) };
    let data_len = usize::from(len);
    if data_len > MAX_DATA_LEN {
        return Err(FrameError::Length(len));
    }
    let total = OVERHEAD + data_len;
    let Some(frame) = frame.get(..total) else { return Ok(None) };
    let (body, trailer) = frame.split_at(total - 2);
    let computed = checksum(body);
    let (received, end) = (trailer[0], trailer[1]);
    if computed != received {
        return Err(FrameError::Checksum { computed, received });
    }
    if end != END_BYTE {
        return Err(FrameError::EndByte(end));
    }
    let mut address = [0u8; 7];
    address.copy_from_slice(&body[2..9]);
    let decoded = Frame {
        meter_type: MeterType(body[1]),
        address: Address(address),
        control: Control(body[9]),
        data: body[11..].to_vec(),
    };
    Ok(Some((decoded, start + total)))
}

/// The value of a BCD byte (two decimal digits), or `None` if a nibble is above 9.
pub fn bcd_to_u8(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

/// `value` (0 to 99) as a BCD byte; `None` above 99.
pub fn u8_to_bcd(value: u8) -> Option<u8> {
    (value <= 99).then_some(((value / 10) << 4) | (value % 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex {b}"))).collect()
    }

    /// The widely copied 901F reply (Fox Edge comment; xijunzhou cj188.c). Its checksum, by hand, in running
    /// sums: 68 10 44 33 22 11 00 33 78 → 0x1CD; C, L 81 16 → 0x264; DI, SER 1F 90 00 → 0x313; current flow
    /// 00 77 66 55 2C → 0x471; settlement flow 00 77 66 55 2C → 0x5CF; time 31 01 22 11 05 15 20 → 0x66E;
    /// ST 21 84 → 0x713, and 0x713 mod 256 = 0x13, the CS sent. The example is right.
    const METERING_REPLY: &str =
        "68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01 22 11 05 15 20 21 84 13 16";

    #[test]
    fn published_metering_reply_decodes() {
        let bytes = hex(METERING_REPLY);
        let (frame, used) = decode(&bytes).expect("valid frame").expect("complete frame");
        assert_eq!(used, bytes.len());
        assert_eq!(frame.meter_type, MeterType::COLD_WATER);
        assert_eq!(frame.address.to_string(), "78330011223344");
        assert_eq!(frame.control, Control::reply(Control::READ_DATA));
        assert_eq!(frame.data.len(), 0x16);
        assert_eq!(checksum(&bytes[..bytes.len() - 2]), 0x13);
    }

    #[test]
    fn address_text_round_trip() {
        let a: Address = "78330011223344".parse().expect("valid address");
        assert_eq!(a.wire(), [0x44, 0x33, 0x22, 0x11, 0x00, 0x33, 0x78]);
        assert_eq!(a.to_string(), "78330011223344");
        assert!(a.is_bcd());
        assert!(!a.is_wildcard());
        assert_eq!("aaaaaaaaaaaaaa".parse::<Address>(), Ok(Address::WILDCARD));
        assert_eq!(Address::WILDCARD.to_string(), "AAAAAAAAAAAAAA");
        assert!(!Address::WILDCARD.is_bcd());
        for bad in ["", "7833001122334", "783300112233445", "7833001122334A", "78 30011223344", "+7830011223344"] {
            assert!(bad.parse::<Address>().is_err(), "{bad:?} parsed");
        }
        let raw = Address::from_wire([0x0F, 0, 0, 0, 0, 0, 0xB0]);
        assert_eq!(raw.to_string(), "B000000000000F");
        assert!(!raw.is_bcd());
    }

    #[test]
    fn control_bits() {
        let c = Control(0xC1);
        assert!(c.is_reply() && c.is_abnormal() && !c.has_follow_up());
        assert_eq!(c.function(), Control::READ_DATA);
        assert_eq!(Control::request(Control::WRITE_DATA), Control(0x04));
        assert_eq!(Control::reply(Control::WRITE_DATA), Control(0x84));
        assert_eq!(Control::abnormal_reply(Control::WRITE_DATA), Control(0xC4));
        assert_eq!(Control::reply(Control::READ_ADDRESS), Control(0x83));
        assert!(Control(0x2A).has_follow_up());
        assert_eq!(Control(0x2A).function(), 0x0A);
    }

    #[test]
    fn bcd_helpers() {
        assert_eq!(bcd_to_u8(0x59), Some(59));
        assert_eq!(bcd_to_u8(0x5A), None);
        assert_eq!(bcd_to_u8(0xA0), None);
        assert_eq!(u8_to_bcd(7), Some(0x07));
        assert_eq!(u8_to_bcd(99), Some(0x99));
        assert_eq!(u8_to_bcd(100), None);
        assert!((0..=99).all(|v| u8_to_bcd(v).and_then(bcd_to_u8) == Some(v)));
    }
}
