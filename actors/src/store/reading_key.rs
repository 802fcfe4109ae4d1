//! The byte key of the readings tables (schema version 3, issue 7 §8): `(meter, time)` as one byte string
//! whose plain byte order is the order of `(meter, time)`.
//!
//! Why: redb compares a `(&str, i64)` tuple key by decoding both sides and validating the UTF-8 of each
//! string on every comparison; on the ingest path that was a quarter of the committer's instructions. A
//! `&[u8]` key is compared with `memcmp`.
//!
//! Layout: the meter id's bytes with each `0x00` written as `0x00 0xFF`, then the terminator `0x00 0x00`,
//! then the time in milliseconds as 8 bytes big-endian with the sign bit flipped (so negative times sort
//! first). The escape keeps the order right for any id, though configured ids never contain `0x00`: a meter
//! whose id is a prefix of another's ends in `0x00 0x00`, which sorts before any byte that can follow.
//!
//! What this module does not do: know the tables or their values.

use crate::model::{MeterId, MeterReading, Timestamp};

/// Bytes after the meter part: the terminator and the time.
const TAIL: usize = 2 + 8;

/// Appends the key of `meter` at `ts` to `out` (cleared first), so one buffer serves a whole commit.
pub(crate) fn encode_into(out: &mut Vec<u8>, meter: &str, ts: i64) {
    out.clear();
    prefix_into(out, meter);
    out.extend_from_slice(&time_bytes(ts));
}

/// The key of `meter` at `ts`.
pub(crate) fn encode(meter: &MeterId, ts: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(meter.as_str().len() + TAIL);
    encode_into(&mut out, meter.as_str(), ts.0);
    out
}

/// The time of a key made by [`encode`], or `None` for bytes that are not such a key.
pub(crate) fn time_of(key: &[u8]) -> Option<Timestamp> {
    let tail = key.len().checked_sub(8)?;
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&key[tail..]);
    Some(Timestamp((u64::from_be_bytes(raw) ^ (1 << 63)) as i64))
}

/// The order of the keys of two readings, without building them: meter id bytes, then time. (A byte string
/// is never a prefix of a different one's escaped form in a way that changes this order; see the module doc.)
pub(crate) fn cmp(a: &MeterReading, b: &MeterReading) -> std::cmp::Ordering {
    a.meter.as_str().as_bytes().cmp(b.meter.as_str().as_bytes()).then(a.ts.0.cmp(&b.ts.0))
}

fn prefix_into(out: &mut Vec<u8>, meter: &str) {
    for &b in meter.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn time_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_meter_then_time_order() {
        let meters = ["", "a", "a\0", "a\0b", "a\u{1}", "ab", "b", "m-1", "m-10", "m-2", "水表"];
        let times = [i64::MIN, -1, 0, 1, 1_767_225_600_000, i64::MAX];
        let mut pairs: Vec<(&str, i64)> = meters.iter().flat_map(|m| times.iter().map(move |t| (*m, *t))).collect();
        pairs.sort();
        let keys: Vec<Vec<u8>> = pairs.iter().map(|(m, t)| encode(&MeterId::new(*m), Timestamp(*t))).collect();
        for (i, w) in keys.windows(2).enumerate() {
            assert!(w[0] < w[1], "{:?} does not sort before {:?}", pairs[i], pairs[i + 1]);
        }
    }

    #[test]
    fn comparing_readings_agrees_with_comparing_their_keys() {
        let meters = ["", "a", "a\0", "a\0b", "a\u{1}", "ab", "m-1", "m-10", "水表"];
        let times = [i64::MIN, -1, 0, 1_767_225_600_000, i64::MAX];
        let readings: Vec<MeterReading> = meters
            .iter()
            .flat_map(|m| times.iter().map(move |t| (*m, *t)))
            .map(|(m, t)| MeterReading {
                meter: MeterId::new(m),
                device: crate::model::DeviceId::new("c"),
                ts: Timestamp(t),
                volume: crate::model::Volume::from_litres(0),
                status: crate::model::MeterStatus(0),
                meter_clock: None,
                settlement_volume: None,
            })
            .collect();
        for a in &readings {
            for b in &readings {
                let by_key = encode(&a.meter, a.ts).cmp(&encode(&b.meter, b.ts));
                assert_eq!(cmp(a, b), by_key, "{:?}/{} vs {:?}/{}", a.meter, a.ts.0, b.meter, b.ts.0);
            }
        }
    }

    #[test]
    fn the_time_comes_back_from_the_key() {
        for t in [i64::MIN, -5, 0, 1_767_225_600_000, i64::MAX] {
            assert_eq!(time_of(&encode(&MeterId::new("m\0x"), Timestamp(t))), Some(Timestamp(t)));
        }
        assert_eq!(time_of(&[1, 2, 3]), None);
    }
}
