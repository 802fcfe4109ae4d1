//! Modbus RTU framing: the CRC-16/MODBUS, request frames, and finding complete frames in received bytes by the
//! length their function code implies.
//!
//! RTU frames are `unit, function, data…, crc low, crc high`. A frame carries no length field, so the length is
//! derived from the function code (and, for reads and multiple writes, a byte-count field). Pure functions over
//! byte slices, public so that a simulated slave (the `waterworks-sim` crate) frames its answers with the same
//! code the client checks them with; this module deliberately does not read ports or know about timing.

/// Bytes of the CRC at the end of every frame.
pub const CRC_LEN: usize = 2;
/// The longest RTU frame (Modbus over Serial Line §2.5.1: 256 bytes).
pub const MAX_FRAME: usize = 256;

/// CRC-16/MODBUS (reflected polynomial 0xA001, initial value 0xFFFF), as sent: low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// A frame for `unit` carrying `pdu` (function code first), with its CRC appended.
pub fn encode(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1 + pdu.len() + CRC_LEN);
    frame.push(unit);
    frame.extend_from_slice(pdu);
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// Whether `frame` (unit through CRC) ends with the right CRC.
pub fn crc_ok(frame: &[u8]) -> bool {
    frame.len() >= 2 + CRC_LEN && {
        let (body, crc) = frame.split_at(frame.len() - CRC_LEN);
        crc16(body) == u16::from_le_bytes([crc[0], crc[1]])
    }
}

/// The full length of a frame starting at `bytes[0]`, as far as it can be told yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The frame is this many bytes long (it may not all be there yet).
    Known(usize),
    /// More bytes are needed to know (the function code or byte count has not arrived).
    NeedMore,
    /// The function code gives no length: not a frame this side can understand.
    Unknown,
}

/// Length of a reply (server to client) frame from its function code.
pub fn reply_length(bytes: &[u8]) -> Length {
    let Some(&function) = bytes.get(1) else {
        return Length::NeedMore;
    };
    match function {
        // Reads: unit, function, byte count, data, crc.
        0x01..=0x04 => bytes.get(2).map_or(Length::NeedMore, |&n| Length::Known(3 + usize::from(n) + CRC_LEN)),
        // Single writes echo the request; multiple writes echo address and quantity.
        0x05 | 0x06 | 0x0F | 0x10 => Length::Known(8),
        // Exception: unit, function | 0x80, code, crc.
        0x81..=0xFF => Length::Known(5),
        _ => Length::Unknown,
    }
}

/// Length of a request (client to server) frame from its function code.
pub fn request_length(bytes: &[u8]) -> Length {
    let Some(&function) = bytes.get(1) else {
        return Length::NeedMore;
    };
    match function {
        // Reads and single writes: unit, function, two 16-bit fields, crc.
        0x01..=0x06 => Length::Known(8),
        // Multiple writes: unit, function, address, quantity, byte count, data, crc.
        0x0F | 0x10 => bytes.get(6).map_or(Length::NeedMore, |&n| Length::Known(7 + usize::from(n) + CRC_LEN)),
        _ => Length::Unknown,
    }
}

/// What [`scan`] found in received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A complete frame with a good CRC at `bytes[start..start + len]`.
    Found { start: usize, len: usize },
    /// No frame yet. The first `noise` bytes cannot start one (the frame they would start is complete with a bad
    /// CRC, too long, or of an unknown function), and can be dropped; the rest may still become a frame.
    Pending { noise: usize },
}

/// Looks for the first complete frame with a good CRC in `bytes`, trying every start offset, so that noise before
/// a frame (a byte from a transceiver switching direction, the tail of an earlier frame) never hides it, and a
/// frame delayed in the middle is still found when its last byte comes.
pub fn scan(bytes: &[u8], length: fn(&[u8]) -> Length) -> Scan {
    let mut first_possible = None;
    for start in 0..bytes.len() {
        match length(&bytes[start..]) {
            Length::Known(len) if len > MAX_FRAME => {}
            Length::Known(len) if start + len <= bytes.len() => {
                if crc_ok(&bytes[start..start + len]) {
                    return Scan::Found { start, len };
                }
            }
            Length::Unknown => {}
            Length::Known(_) | Length::NeedMore => {
                first_possible.get_or_insert(start);
            }
        }
    }
    Scan::Pending { noise: first_possible.unwrap_or(bytes.len()) }
}

/// The first complete frame with a good CRC in `bytes`, as `(start, length)` ([`scan`] without the noise count).
pub fn find_frame(bytes: &[u8], length: fn(&[u8]) -> Length) -> Option<(usize, usize)> {
    match scan(bytes, length) {
        Scan::Found { start, len } => Some((start, len)),
        Scan::Pending { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_frames() {
        // Read 10 holding registers from 0 at unit 1: the textbook frame 01 03 00 00 00 0A C5 CD.
        assert_eq!(encode(1, &[0x03, 0x00, 0x00, 0x00, 0x0A]), [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]);
        // Write register 1 = 3 at unit 0x11: 11 06 00 01 00 03 9A 9B.
        assert_eq!(encode(0x11, &[0x06, 0x00, 0x01, 0x00, 0x03]), [0x11, 0x06, 0x00, 0x01, 0x00, 0x03, 0x9A, 0x9B]);
        assert!(crc_ok(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]));
        assert!(!crc_ok(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCC]));
        assert!(!crc_ok(&[0x01, 0x03]));
    }

    #[test]
    fn lengths_follow_the_function_code() {
        assert_eq!(reply_length(&[1]), Length::NeedMore);
        assert_eq!(reply_length(&[1, 3]), Length::NeedMore);
        assert_eq!(reply_length(&[1, 3, 20]), Length::Known(25));
        assert_eq!(reply_length(&[1, 6]), Length::Known(8));
        assert_eq!(reply_length(&[1, 0x83]), Length::Known(5));
        assert_eq!(reply_length(&[1, 0x2B]), Length::Unknown);
        assert_eq!(request_length(&[1, 4]), Length::Known(8));
        assert_eq!(request_length(&[1, 0x10, 0, 0, 0, 2]), Length::NeedMore);
        assert_eq!(request_length(&[1, 0x10, 0, 0, 0, 2, 4]), Length::Known(13));
        assert_eq!(request_length(&[1, 0x2B]), Length::Unknown);
    }

    #[test]
    fn frames_are_found_behind_noise_and_not_in_it() {
        let reply = encode(7, &[3, 4, 0, 1, 0, 2]);
        let mut noisy = vec![0x00, 0xFF, 0x07];
        noisy.extend_from_slice(&reply);
        assert_eq!(find_frame(&noisy, reply_length), Some((3, reply.len())));
        assert_eq!(find_frame(&noisy[..noisy.len() - 1], reply_length), None, "incomplete");
        let mut bad = reply.clone();
        *bad.last_mut().expect("not empty") ^= 0xFF;
        assert_eq!(find_frame(&bad, reply_length), None, "bad crc");
        let request = encode(7, &[0x10, 0, 5, 0, 1, 2, 0xAB, 0xCD]);
        assert_eq!(find_frame(&request, request_length), Some((0, 11)));
        // An unknown function and an overlong byte count cannot start a frame; the partial reply after them can.
        let mut pending = vec![7, 0x2B, 7, 3, 0xFF];
        pending.extend_from_slice(&reply[..4]);
        assert_eq!(scan(&pending, reply_length), Scan::Pending { noise: 5 });
    }
}
