//! The compact binary encoding of a change-feed data entry (issue 7 §8): the readings and samples of one
//! commit, about 20 bytes per reading instead of about 130 as JSON.
//!
//! Layout (all integers LEB128 varints; signed ones zigzag-coded first):
//!
//! ```text
//! tag 0x01
//! strings:  count, then per string: length, UTF-8 bytes      (device ids, parameters, units)
//! base_ts:  signed                                            (every time below is relative to it)
//! readings: count, then per reading:
//!           meter (length, UTF-8 bytes), device (string index), ts - base_ts (signed), litres (signed),
//!           status (unsigned), extras (one byte: 1 = meter clock follows, 2 = settlement volume follows),
//!           [meter clock - ts (signed)], [settlement litres (signed)]
//! samples:  count, then per sample:
//!           device, parameter, unit (string indexes), ts - base_ts (signed), value (f64, 8 bytes
//!           little-endian), flags (one byte)
//! ```
//!
//! Entries written before this encoding existed are JSON objects (first byte `{`) and still decode. Decoding
//! never trusts the bytes: every length and index is checked against what is left, the strings copied out of
//! the table are bounded by a multiple of the entry's length, and a damaged entry gives an error naming what is
//! wrong, never a panic or an allocation far beyond its own size.
//!
//! What this module does not do: decide what goes into an entry (that is `Store::apply`) or read the table.

use std::collections::HashMap;

use crate::model::{DeviceId, MeterId, MeterReading, MeterStatus, QualityFlags, QualitySample, Timestamp, Volume};

/// The first byte of a binary entry.
const TAG_V1: u8 = 0x01;
/// The first byte of an entry written as JSON before the binary encoding.
const TAG_JSON: u8 = b'{';

/// Decoded string bytes allowed per byte of entry (plus [`EXPANSION_SLACK`]): far above what real entries
/// need (about 1.5 for readings, 3 for samples), far below what a damaged one could ask for.
const EXPANSION_LIMIT: usize = 16;
const EXPANSION_SLACK: usize = 64 * 1024;

const EXTRA_CLOCK: u8 = 1;
const EXTRA_SETTLEMENT: u8 = 2;

/// Why a stored feed entry cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedDecodeError {
    #[error("the entry is empty")]
    Empty,
    #[error("unknown entry format (first byte {0:#04x})")]
    UnknownFormat(u8),
    #[error("the entry ends early, in {0}")]
    Truncated(&'static str),
    #[error("a number in {0} is too long")]
    Overlong(&'static str),
    #[error("{what} refers to string {index}, but the entry has {count}")]
    BadIndex { what: &'static str, index: u64, count: usize },
    #[error("a string is not valid UTF-8")]
    BadUtf8,
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    #[error("the entry's strings would expand to more than {0} bytes")]
    TooLarge(usize),
    #[error("{0} trailing bytes after the entry")]
    Trailing(usize),
    #[error("JSON entry: {0}")]
    Json(String),
}

/// The readings and samples of one feed entry, decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedData {
    pub readings: Vec<MeterReading>,
    pub samples: Vec<QualitySample>,
}

/// Builds one entry from borrowed readings and samples (the writer's submissions stay where they are).
#[derive(Default)]
pub(crate) struct FeedEncoder<'a> {
    readings: Vec<&'a MeterReading>,
    samples: Vec<&'a QualitySample>,
}

impl<'a> FeedEncoder<'a> {
    pub(crate) fn reading(&mut self, r: &'a MeterReading) {
        self.readings.push(r);
    }
    pub(crate) fn sample(&mut self, s: &'a QualitySample) {
        self.samples.push(s);
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.readings.is_empty() && self.samples.is_empty()
    }

    /// The encoded entry. Meter ids are written in place (nearly every meter appears once per commit);
    /// device ids, parameters and units, which repeat, go through the string table, with the previous
    /// string checked first because consecutive readings nearly always share their device.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut index: HashMap<&str, u64> = HashMap::new();
        let mut strings: Vec<&str> = Vec::new();
        let mut last: Option<(&str, u64)> = None;
        let mut intern = |s: &'a str| -> u64 {
            if let Some((prev, i)) = last {
                if prev == s {
                    return i;
                }
            }
            let i = *index.entry(s).or_insert_with(|| {
                strings.push(s);
                strings.len() as u64 - 1
            });
            last = Some((s, i));
            i
        };
        let base = self.readings.iter().map(|r| r.ts.0).chain(self.samples.iter().map(|s| s.ts.0)).min().unwrap_or(0);
        // Body first (it decides the string table), then the table in front of it.
        let mut body = Vec::with_capacity(self.readings.len() * 12 + self.samples.len() * 20 + 16);
        put_i64(&mut body, base);
        put_u64(&mut body, self.readings.len() as u64);
        for r in &self.readings {
            put_u64(&mut body, r.meter.as_str().len() as u64);
            body.extend_from_slice(r.meter.as_str().as_bytes());
            put_u64(&mut body, intern(r.device.as_str()));
            put_i64(&mut body, r.ts.0.wrapping_sub(base));
            put_i64(&mut body, r.volume.litres());
            put_u64(&mut body, u64::from(r.status.0));
            let extras = if r.meter_clock.is_some() { EXTRA_CLOCK } else { 0 }
                | if r.settlement_volume.is_some() { EXTRA_SETTLEMENT } else { 0 };
            body.push(extras);
            if let Some(clock) = r.meter_clock {
                put_i64(&mut body, clock.0.wrapping_sub(r.ts.0));
            }
            if let Some(v) = r.settlement_volume {
                put_i64(&mut body, v.litres());
            }
        }
        put_u64(&mut body, self.samples.len() as u64);
        for s in &self.samples {
            put_u64(&mut body, intern(s.device.as_str()));
            put_u64(&mut body, intern(s.parameter.as_str()));
            put_u64(&mut body, intern(s.unit.as_str()));
            put_i64(&mut body, s.ts.0.wrapping_sub(base));
            body.extend_from_slice(&s.value.to_le_bytes());
            body.push(s.flags.0);
        }
        let table_len: usize = strings.iter().map(|s| s.len() + 2).sum();
        let mut out = Vec::with_capacity(1 + 5 + table_len + body.len());
        out.push(TAG_V1);
        put_u64(&mut out, strings.len() as u64);
        for s in &strings {
            put_u64(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&body);
        out
    }
}

/// Decodes a stored entry, binary or (written before the binary encoding) JSON.
pub fn decode(bytes: &[u8]) -> Result<FeedData, FeedDecodeError> {
    match bytes.first() {
        None => Err(FeedDecodeError::Empty),
        Some(&TAG_V1) => decode_v1(&bytes[1..]),
        Some(&TAG_JSON) => decode_json(bytes),
        Some(&other) => Err(FeedDecodeError::UnknownFormat(other)),
    }
}

fn decode_json(bytes: &[u8]) -> Result<FeedData, FeedDecodeError> {
    #[derive(serde::Deserialize)]
    struct Json {
        #[serde(default)]
        readings: Vec<MeterReading>,
        #[serde(default)]
        samples: Vec<QualitySample>,
    }
    let j: Json = serde_json::from_slice(bytes).map_err(|e| FeedDecodeError::Json(e.to_string()))?;
    Ok(FeedData { readings: j.readings, samples: j.samples })
}

fn decode_v1(bytes: &[u8]) -> Result<FeedData, FeedDecodeError> {
    let mut r = Reader { bytes, at: 0 };
    // Every string takes at least one byte (its length), every reading at least six and every sample at
    // least thirteen: counts larger than the bytes left are refused before anything is allocated.
    let count = r.count("string table", 1)?;
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.count("string", 1)?;
        let raw = r.take(len, "string")?;
        strings.push(std::str::from_utf8(raw).map_err(|_| FeedDecodeError::BadUtf8)?);
    }
    // Each reference to a table string is copied into the decoded value, so a damaged entry could ask for far
    // more memory than it is long; real entries expand a few times at most (a short device id per reading).
    let budget = bytes.len().saturating_mul(EXPANSION_LIMIT).saturating_add(EXPANSION_SLACK);
    let copied = std::cell::Cell::new(0usize);
    let string = |what: &'static str, index: u64| -> Result<&str, FeedDecodeError> {
        let s = usize::try_from(index).ok().and_then(|i| strings.get(i).copied()).ok_or(FeedDecodeError::BadIndex {
            what,
            index,
            count: strings.len(),
        })?;
        copied.set(copied.get().saturating_add(s.len()));
        if copied.get() > budget {
            return Err(FeedDecodeError::TooLarge(budget));
        }
        Ok(s)
    };
    let base = r.i64("base time")?;
    // Differences are taken and undone with wrapping arithmetic, so every i64 time round-trips exactly.
    let time = |delta: i64| base.wrapping_add(delta);
    let n = r.count("readings", 6)?;
    let mut readings = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.count("reading meter", 1)?;
        let meter =
            MeterId::new(std::str::from_utf8(r.take(len, "reading meter")?).map_err(|_| FeedDecodeError::BadUtf8)?);
        let device = DeviceId::new(string("reading device", r.u64("reading")?)?);
        let ts = time(r.i64("reading time")?);
        let litres = r.i64("reading volume")?;
        let status = u16::try_from(r.u64("reading status")?).map_err(|_| FeedDecodeError::OutOfRange("status"))?;
        let extras = r.byte("reading extras")?;
        if extras & !(EXTRA_CLOCK | EXTRA_SETTLEMENT) != 0 {
            return Err(FeedDecodeError::OutOfRange("reading extras"));
        }
        let meter_clock =
            if extras & EXTRA_CLOCK != 0 { Some(Timestamp(ts.wrapping_add(r.i64("meter clock")?))) } else { None };
        let settlement_volume =
            if extras & EXTRA_SETTLEMENT != 0 { Some(Volume::from_litres(r.i64("settlement")?)) } else { None };
        readings.push(MeterReading {
            meter,
            device,
            ts: Timestamp(ts),
            volume: Volume::from_litres(litres),
            status: MeterStatus(status),
            meter_clock,
            settlement_volume,
        });
    }
    let n = r.count("samples", 13)?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let device = DeviceId::new(string("sample device", r.u64("sample")?)?);
        let parameter = string("sample parameter", r.u64("sample")?)?.to_owned();
        let unit = string("sample unit", r.u64("sample")?)?.to_owned();
        let ts = time(r.i64("sample time")?);
        let raw = r.take(8, "sample value")?;
        let mut value = [0u8; 8];
        value.copy_from_slice(raw);
        let flags = r.byte("sample flags")?;
        samples.push(QualitySample {
            device,
            parameter,
            ts: Timestamp(ts),
            value: f64::from_le_bytes(value),
            unit,
            flags: QualityFlags(flags),
        });
    }
    if r.at != bytes.len() {
        return Err(FeedDecodeError::Trailing(bytes.len() - r.at));
    }
    Ok(FeedData { readings, samples })
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn byte(&mut self, what: &'static str) -> Result<u8, FeedDecodeError> {
        let b = *self.bytes.get(self.at).ok_or(FeedDecodeError::Truncated(what))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'b [u8], FeedDecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(FeedDecodeError::Truncated(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FeedDecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            let part = u64::from(b & 0x7F);
            if shift == 63 && part > 1 {
                return Err(FeedDecodeError::Overlong(what));
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FeedDecodeError::Overlong(what))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, FeedDecodeError> {
        let z = self.u64(what)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A count of items that each take at least `min_bytes`: refused when the bytes left cannot hold them.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, FeedDecodeError> {
        let n = self.u64(what)?;
        let left = self.bytes.len() - self.at;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_bytes) <= left => Ok(n),
            _ => Err(FeedDecodeError::Truncated(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(meter: &str, device: &str, ts: i64, litres: i64) -> MeterReading {
        MeterReading {
            meter: MeterId::new(meter),
            device: DeviceId::new(device),
            ts: Timestamp(ts),
            volume: Volume::from_litres(litres),
            status: MeterStatus(MeterStatus::BATTERY_LOW),
            meter_clock: None,
            settlement_volume: None,
        }
    }

    fn sample(device: &str, parameter: &str, ts: i64, value: f64) -> QualitySample {
        QualitySample {
            device: DeviceId::new(device),
            parameter: parameter.into(),
            ts: Timestamp(ts),
            value,
            unit: "mg/L".into(),
            flags: QualityFlags(QualityFlags::BELOW_LOW),
        }
    }

    fn encode(readings: &[MeterReading], samples: &[QualitySample]) -> Vec<u8> {
        let mut e = FeedEncoder::default();
        readings.iter().for_each(|r| e.reading(r));
        samples.iter().for_each(|s| e.sample(s));
        e.encode()
    }

    fn mixed() -> (Vec<MeterReading>, Vec<QualitySample>) {
        let mut readings = vec![
            reading("m-1", "c1", 1_767_225_600_000, 123_456),
            reading("m-2", "c1", 1_767_225_599_000, 0),
            reading("水表-3", "gw", i64::MAX, i64::MIN),
            reading("m-4", "gw", i64::MIN, i64::MAX),
        ];
        readings[0].meter_clock = Some(Timestamp(1_767_225_540_000));
        readings[0].settlement_volume = Some(Volume::from_litres(120_000));
        readings[1].settlement_volume = Some(Volume::from_litres(-5));
        readings[3].meter_clock = Some(Timestamp(i64::MAX));
        readings[2].status = MeterStatus(u16::MAX);
        let samples = vec![
            sample("logger", "chlorine", 1_767_225_600_000, 0.1),
            sample("logger", "turbidity", 1_767_225_600_000, f64::MAX),
            sample("hj", "pH", 0, -0.0),
        ];
        (readings, samples)
    }

    #[test]
    fn an_entry_round_trips_exactly_including_extremes() {
        let (readings, samples) = mixed();
        let bytes = encode(&readings, &samples);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.readings, readings);
        assert_eq!(back.samples.len(), samples.len());
        for (a, b) in back.samples.iter().zip(&samples) {
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!(
                (&a.device, &a.parameter, a.ts, &a.unit, a.flags),
                (&b.device, &b.parameter, b.ts, &b.unit, b.flags)
            );
        }
        assert_eq!(decode(&encode(&[], &[])).unwrap(), FeedData::default());
    }

    #[test]
    fn entries_of_one_smallest_reading_or_sample_round_trip() {
        // The smallest items: every count check must let exactly these through.
        let mut r = reading("", "", 0, 0);
        r.status = MeterStatus(0);
        let s = QualitySample {
            device: DeviceId::new(""),
            parameter: String::new(),
            ts: Timestamp(0),
            value: 0.0,
            unit: String::new(),
            flags: QualityFlags(0),
        };
        for (readings, samples) in [(vec![r.clone()], vec![]), (vec![], vec![s.clone()]), (vec![r], vec![s])] {
            let back = decode(&encode(&readings, &samples)).unwrap();
            assert_eq!((back.readings, back.samples), (readings, samples));
        }
    }

    #[test]
    fn a_concentrator_cycle_costs_about_twenty_bytes_per_reading() {
        let readings: Vec<_> =
            (0..120).map(|i| reading(&format!("m-{i:05}"), "c-0001", 1_767_225_600_000 + i, 1_000_000 + i)).collect();
        let bytes = encode(&readings, &[]);
        let json = serde_json::to_vec(&readings).unwrap();
        assert!(bytes.len() <= 20 * readings.len(), "{} bytes for 120 readings", bytes.len());
        assert!(bytes.len() * 5 < json.len(), "binary {} vs JSON {}", bytes.len(), json.len());
    }

    #[test]
    fn json_entries_written_before_the_binary_encoding_still_read() {
        let (readings, samples) = mixed();
        let json =
            serde_json::to_vec(&serde_json::json!({ "readings": readings[..2], "samples": samples[..1] })).unwrap();
        let back = decode(&json).unwrap();
        assert_eq!(back.readings, readings[..2]);
        assert_eq!(back.samples, samples[..1]);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_value_never_a_panic() {
        let (readings, samples) = mixed();
        let bytes = encode(&readings, &samples);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "a prefix of {len} bytes decoded");
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let _ = decode(&damaged);
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(FeedDecodeError::Trailing(1)));
        assert_eq!(decode(&[0x07]), Err(FeedDecodeError::UnknownFormat(0x07)));
        assert_eq!(decode(&[]), Err(FeedDecodeError::Empty));
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        // Tag, an empty string table, base time 0, then a reading count of 2^62.
        let mut bytes = vec![TAG_V1, 0, 0];
        put_u64(&mut bytes, 1 << 62);
        assert_eq!(decode(&bytes), Err(FeedDecodeError::Truncated("readings")));
        let mut bytes = vec![TAG_V1];
        put_u64(&mut bytes, u64::MAX);
        assert_eq!(decode(&bytes), Err(FeedDecodeError::Truncated("string table")));
    }

    #[test]
    fn an_entry_whose_references_would_expand_it_enormously_is_refused() {
        // One 100 KiB device id, then 10,000 readings that all point at it: 1 GB if decoded.
        let device = "d".repeat(100 * 1024);
        let readings: Vec<_> = (0..10_000).map(|i| reading("", &device, i, 0)).collect();
        let bytes = encode(&readings, &[]);
        let got = decode(&bytes).map(|d| d.readings.len());
        assert!(matches!(got, Err(FeedDecodeError::TooLarge(_))), "{} bytes: {got:?}", bytes.len());
        // A real concentrator cycle and a logger's samples are far inside the limit.
        let readings: Vec<_> =
            (0..120).map(|i| reading(&format!("m-{i}"), "concentrator-with-a-long-id", i, 0)).collect();
        let samples: Vec<_> =
            (0..40).map(|i| sample("water-quality-logger-01", &format!("param-{i}"), i, 1.0)).collect();
        assert!(decode(&encode(&readings, &samples)).is_ok());
    }

    #[test]
    fn a_string_index_past_the_table_is_named() {
        // One string "c", base 0, one reading of meter "m" whose device index is 5.
        let mut bytes = vec![TAG_V1, 1, 1, b'c', 0, 1, 1, b'm', 5, 0, 0, 0, 0, 0];
        assert_eq!(decode(&bytes), Err(FeedDecodeError::BadIndex { what: "reading device", index: 5, count: 1 }));
        bytes[8] = 0;
        assert!(decode(&bytes).is_ok(), "{:?}", decode(&bytes));
    }
}
