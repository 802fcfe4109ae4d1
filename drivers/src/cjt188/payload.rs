//! The data field of the CJ/T 188 frames this crate speaks: data identifiers (DI) and their byte order,
//! per-model settings, 901F metering data (volumes, units, meter time, status bits) and A017 valve control.
//!
//! Pure and panic-free: payloads come in as bytes and go out as values or errors. This module deliberately
//! does not frame (that is `frame.rs`) and does not decide what a status flag means for the utility: it
//! names the flags a model's table gives, and the caller decides about alarms and billing.
//!
//! Volumes are integer **millilitres** ([`Volume`]). CJ/T 188 sends XXXXXX.XX in the meter's unit, and
//! with the unit "litre" that is a resolution of 10 ml, which neither whole litres nor m³ with three
//! decimals can hold; millilitres hold every unit code exactly.

use std::fmt;

use super::frame::{bcd_to_u8, u8_to_bcd, Address, Control, Frame, MeterType};

/// Metering data: current and settlement-day cumulative flow, meter time, status.
pub const DI_METERING: u16 = 0x901F;
/// Valve control.
pub const DI_VALVE: u16 = 0xA017;
/// Valve operation byte: open.
pub const VALVE_OPEN: u8 = 0x55;
/// Valve operation byte: close.
pub const VALVE_CLOSE: u8 = 0x99;
/// Length of a 901F reply's data field: DI 2, SER 1, two flows of 5, time 7, ST 2.
pub const METERING_DATA_LEN: usize = 22;

/// Why a data field does not hold what its function and DI promise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("data field is {got} bytes, expected {expected}")]
    Length { expected: &'static str, got: usize },
    #[error("data identifier is {got:02X?}, expected {expected:04X} in either byte order")]
    Di { expected: u16, got: [u8; 2] },
    #[error("{0} is not BCD")]
    Bcd(&'static str),
    #[error("unit code 0x{0:02X} is not a volume unit")]
    Unit(u8),
    #[error("valve operation 0x{0:02X} is neither open (55) nor close (99)")]
    ValveOp(u8),
}

/// Why a meter model (its status bits, its preamble) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{name} bit {bit} is outside the 16-bit status word")]
    BitOutside { name: &'static str, bit: u8 },
    #[error("the valve mask is empty")]
    EmptyMask,
    #[error("valve {name} pattern 0x{pattern:04X} has bits outside the mask 0x{mask:04X}")]
    PatternOutsideMask { name: &'static str, pattern: u16, mask: u16 },
    #[error("the valve open, closed and abnormal patterns must differ")]
    SamePatterns,
    #[error("preamble of {got} bytes is longer than {max}")]
    Preamble { got: usize, max: usize },
}

/// The byte order of a two-byte data identifier on the wire. Implementations disagree: ng-gateway sends
/// 2004 DIs high byte first (90 1F) and 2018 DIs low byte first (1F 90); the widely copied 901F example
/// reply carries 1F 90. Requests use the model's order; replies are accepted in either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiOrder {
    /// `90 1F`
    BigEndian,
    /// `1F 90`
    LittleEndian,
}

impl DiOrder {
    pub fn bytes(self, di: u16) -> [u8; 2] {
        match self {
            DiOrder::BigEndian => di.to_be_bytes(),
            DiOrder::LittleEndian => di.to_le_bytes(),
        }
    }
}

/// Whether two wire bytes are `di` in either byte order.
pub fn di_matches(bytes: [u8; 2], di: u16) -> bool {
    u16::from_be_bytes(bytes) == di || u16::from_le_bytes(bytes) == di
}

/// The edition of CJ/T 188 a meter model follows. Only the defaults of [`Cjt188Model::edition_2004`] and
/// [`Cjt188Model::edition_2018`] depend on it: this codec speaks the same frames to both, and does not
/// implement the 2018 security layer (SM4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Edition {
    #[serde(rename = "2004")]
    V2004,
    #[serde(rename = "2018")]
    V2018,
}

/// Where a model keeps its valve state in the status word: `status & mask` equals one of the patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ValveBits {
    pub mask: u16,
    pub open: u16,
    pub closed: u16,
    pub abnormal: u16,
}

/// A model's table of status bits. The status word is ST1 | ST2 << 8 (ST1 is sent first), so bit 0 is D0 of
/// the first ST byte and bit 8 is D0 of the second. Flags a model does not report are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StBits {
    pub valve: ValveBits,
    pub battery_low: Option<u8>,
    pub magnetic_tamper: Option<u8>,
    pub meter_fault: Option<u8>,
}

impl StBits {
    /// The 2004 layout as KingDa's meter firmware sends it: ST1 D1 D0 valve (00 open, 01 closed, 11
    /// abnormal), ST1 D2 battery low; no magnetic or fault flag.
    pub const STANDARD: StBits = StBits {
        valve: ValveBits { mask: 0x0003, open: 0x0000, closed: 0x0001, abnormal: 0x0003 },
        battery_low: Some(2),
        magnetic_tamper: None,
        meter_fault: None,
    };

    /// [`StBits::STANDARD`] plus KingDa's vendor flags: ST2 D3 magnetic attack, ST2 D4 fault.
    ///
    /// From KingDa's `CJT_188_ST_Stuct`: an STM8 (big-endian) 16-bit word whose high byte, sent first, holds
    /// the valve and battery bits and whose low byte holds "magnetism" (bit 3) and "fault" (bit 4).
    pub const KINGDA: StBits = StBits { magnetic_tamper: Some(11), meter_fault: Some(12), ..StBits::STANDARD };

    /// Checks that every bit position is inside the 16-bit word and the valve patterns fit the mask and differ.
    pub fn check(&self) -> Result<(), ModelError> {
        for (name, bit) in [
            ("battery_low", self.battery_low),
            ("magnetic_tamper", self.magnetic_tamper),
            ("meter_fault", self.meter_fault),
        ] {
            if let Some(bit) = bit {
                if bit > 15 {
                    return Err(ModelError::BitOutside { name, bit });
                }
            }
        }
        let v = self.valve;
        if v.mask == 0 {
            return Err(ModelError::EmptyMask);
        }
        for (name, pattern) in [("open", v.open), ("closed", v.closed), ("abnormal", v.abnormal)] {
            if pattern & !v.mask != 0 {
                return Err(ModelError::PatternOutsideMask { name, pattern, mask: v.mask });
            }
        }
        if v.open == v.closed || v.open == v.abnormal || v.closed == v.abnormal {
            return Err(ModelError::SamePatterns);
        }
        Ok(())
    }

    /// Names the flags of the raw status word `raw`.
    pub fn decode(&self, raw: u16) -> Status {
        let v = self.valve;
        let valve = match raw & v.mask {
            bits if bits == v.open => ValveState::Open,
            bits if bits == v.closed => ValveState::Closed,
            bits if bits == v.abnormal => ValveState::Abnormal,
            bits => ValveState::Other(bits),
        };
        Status {
            raw,
            valve,
            battery_low: bit_set(raw, self.battery_low),
            magnetic_tamper: bit_set(raw, self.magnetic_tamper),
            meter_fault: bit_set(raw, self.meter_fault),
        }
    }

    /// The raw status word a meter of this model sends for these flags (what a simulated meter needs).
    pub fn encode(&self, valve: ValveState, battery_low: bool, magnetic_tamper: bool, meter_fault: bool) -> u16 {
        let v = self.valve;
        let valve_bits = match valve {
            ValveState::Open => v.open,
            ValveState::Closed => v.closed,
            ValveState::Abnormal => v.abnormal,
            ValveState::Other(bits) => bits,
        } & v.mask;
        let flag = |on: bool, bit: Option<u8>| match (on, bit) {
            (true, Some(bit)) => 1u16.checked_shl(u32::from(bit)).unwrap_or(0),
            _ => 0,
        };
        valve_bits
            | flag(battery_low, self.battery_low)
            | flag(magnetic_tamper, self.magnetic_tamper)
            | flag(meter_fault, self.meter_fault)
    }
}

/// Whether `bit` is set in `raw`; a missing or out-of-range position reads as clear.
fn bit_set(raw: u16, bit: Option<u8>) -> bool {
    bit.and_then(|b| 1u16.checked_shl(u32::from(b))).is_some_and(|mask| raw & mask != 0)
}

/// What differs between meter models: these are configuration, per model, not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cjt188Model {
    /// Sent as T in requests. Replies are not checked against it: a meter answers with its own type.
    pub meter_type: MeterType,
    /// Byte order of DIs in requests; replies are accepted in either order.
    pub di_order: DiOrder,
    pub st_bits: StBits,
    pub edition: Edition,
    /// Wake-up bytes (FE) before every request; vendors use 2 to 4.
    pub preamble: usize,
    /// Whether a reply must carry the request's SER. A reply with another SER is taken for a late reply to
    /// an earlier request and skipped. Turn off for meters that always answer SER 00.
    pub match_ser: bool,
}

impl Cjt188Model {
    /// A 2004-edition cold-water valve meter: DIs high byte first, the standard status bits, 2 FE.
    pub fn edition_2004() -> Self {
        Cjt188Model {
            meter_type: MeterType::COLD_WATER,
            di_order: DiOrder::BigEndian,
            st_bits: StBits::STANDARD,
            edition: Edition::V2004,
            preamble: 2,
            match_ser: true,
        }
    }

    /// A 2018-edition cold-water valve meter: DIs low byte first (as ng-gateway sends them), 4 FE.
    pub fn edition_2018() -> Self {
        Cjt188Model { di_order: DiOrder::LittleEndian, edition: Edition::V2018, preamble: 4, ..Self::edition_2004() }
    }

    /// Checks the model before any request uses it.
    pub fn check(&self) -> Result<(), ModelError> {
        if self.preamble > super::frame::MAX_PREAMBLE {
            return Err(ModelError::Preamble { got: self.preamble, max: super::frame::MAX_PREAMBLE });
        }
        self.st_bits.check()
    }
}

impl Default for Cjt188Model {
    fn default() -> Self {
        Self::edition_2004()
    }
}

/// A volume in millilitres; exact for every CJ/T 188 volume unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Volume {
    millilitres: u64,
}

impl Volume {
    pub const fn from_millilitres(millilitres: u64) -> Self {
        Volume { millilitres }
    }

    pub const fn millilitres(self) -> u64 {
        self.millilitres
    }

    /// In m³; exact to 1 ml below 2^53 ml (9 × 10^12 m³).
    pub fn cubic_metres(self) -> f64 {
        self.millilitres as f64 / 1_000_000.0
    }
}

impl fmt::Display for Volume {
    /// As m³ with six decimals (exact).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06} m³", self.millilitres / 1_000_000, self.millilitres % 1_000_000)
    }
}

/// The volume unit codes of CJ/T 188.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeUnit {
    /// 0x29
    Litre,
    /// 0x2A
    Litre10,
    /// 0x2B
    Litre100,
    /// 0x2C
    CubicMetre,
    /// 0x2D
    CubicMetre10,
    /// 0x2E
    CubicMetre100,
}

impl VolumeUnit {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x29 => VolumeUnit::Litre,
            0x2A => VolumeUnit::Litre10,
            0x2B => VolumeUnit::Litre100,
            0x2C => VolumeUnit::CubicMetre,
            0x2D => VolumeUnit::CubicMetre10,
            0x2E => VolumeUnit::CubicMetre100,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            VolumeUnit::Litre => 0x29,
            VolumeUnit::Litre10 => 0x2A,
            VolumeUnit::Litre100 => 0x2B,
            VolumeUnit::CubicMetre => 0x2C,
            VolumeUnit::CubicMetre10 => 0x2D,
            VolumeUnit::CubicMetre100 => 0x2E,
        }
    }

    /// Millilitres in one hundredth of the unit (the last digit of XXXXXX.XX).
    pub fn millilitres_per_hundredth(self) -> u64 {
        match self {
            VolumeUnit::Litre => 10,
            VolumeUnit::Litre10 => 100,
            VolumeUnit::Litre100 => 1_000,
            VolumeUnit::CubicMetre => 10_000,
            VolumeUnit::CubicMetre10 => 100_000,
            VolumeUnit::CubicMetre100 => 1_000_000,
        }
    }
}

/// Hundredths of a unit that fit in 4 BCD bytes: 999 999.99 is the largest reading.
const FLOW_ROLLOVER: u64 = 100_000_000;

/// A cumulative flow as the meter sent it: the volume and the unit that gives its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reading {
    pub volume: Volume,
    pub unit: VolumeUnit,
}

impl Reading {
    /// Decodes 4 BCD bytes (lowest two digits first, two decimals) and a unit code.
    fn decode(bytes: &[u8], what: &'static str) -> Result<Reading, PayloadError> {
        let [d0, d1, d2, d3, unit] = bytes else {
            return Err(PayloadError::Length { expected: "5 (a flow)", got: bytes.len() });
        };
        let mut hundredths = 0u64;
        for b in [d3, d2, d1, d0] {
            hundredths = hundredths * 100 + u64::from(bcd_to_u8(*b).ok_or(PayloadError::Bcd(what))?);
        }
        let unit = VolumeUnit::from_code(*unit).ok_or(PayloadError::Unit(*unit))?;
        Ok(Reading { volume: Volume::from_millilitres(hundredths * unit.millilitres_per_hundredth()), unit })
    }

    /// Encodes like a meter: the volume truncated to the unit's hundredths, rolled over past 999 999.99.
    fn encode(self) -> [u8; 5] {
        let mut hundredths = self.volume.millilitres() / self.unit.millilitres_per_hundredth() % FLOW_ROLLOVER;
        let mut out = [0u8; 5];
        for byte in out.iter_mut().take(4) {
            // Below 100 by construction, so the BCD conversion cannot fail.
            *byte = u8_to_bcd((hundredths % 100) as u8).unwrap_or(0);
            hundredths /= 100;
        }
        out[4] = self.unit.code();
        out
    }
}

/// The meter's real-time clock, as it sent it (local time of the meter, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MeterTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl MeterTime {
    /// Decodes `ss mm hh DD MM YY(lo) YY(hi)` in BCD; `None` for non-BCD bytes or an impossible date or time.
    pub fn decode(bytes: [u8; 7]) -> Option<MeterTime> {
        let mut v = [0u8; 7];
        for (out, b) in v.iter_mut().zip(bytes) {
            *out = bcd_to_u8(b)?;
        }
        let [second, minute, hour, day, month, year_lo, year_hi] = v;
        let t = MeterTime { year: u16::from(year_hi) * 100 + u16::from(year_lo), month, day, hour, minute, second };
        t.is_valid().then_some(t)
    }

    /// The seven BCD bytes; `None` if the time is impossible (year above 9999 included).
    pub fn encode(self) -> Option<[u8; 7]> {
        if !self.is_valid() {
            return None;
        }
        let year_hi = u8::try_from(self.year / 100).ok()?;
        let year_lo = u8::try_from(self.year % 100).ok()?;
        let mut out = [0u8; 7];
        for (o, v) in out.iter_mut().zip([self.second, self.minute, self.hour, self.day, self.month, year_lo, year_hi])
        {
            *o = u8_to_bcd(v)?;
        }
        Some(out)
    }

    fn is_valid(&self) -> bool {
        self.year <= 9999
            && (1..=crate::calendar::days_in_month(i64::from(self.year), i64::from(self.month)))
                .contains(&i64::from(self.day))
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }
}

impl fmt::Display for MeterTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// The valve state in a status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValveState {
    Open,
    Closed,
    Abnormal,
    /// A pattern the model's table does not name (for example 10 in the standard layout), masked.
    Other(u16),
}

/// A status word and the flags the model's table names in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// ST1 | ST2 << 8.
    pub raw: u16,
    pub valve: ValveState,
    pub battery_low: bool,
    pub magnetic_tamper: bool,
    pub meter_fault: bool,
}

/// A decoded 901F reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeteringData {
    /// SER of the reply.
    pub serial: u8,
    /// Current cumulative flow.
    pub current: Reading,
    /// Cumulative flow on the last settlement day; `None` when the meter sent a non-BCD value or an unknown
    /// unit there (seen on meters that never settled), which does not spoil the current reading.
    pub settlement: Option<Reading>,
    /// The meter clock; `None` when it is not BCD or not a possible date and time (an unset clock).
    pub time: Option<MeterTime>,
    /// The clock bytes as sent, `ss mm hh DD MM YY YY`.
    pub raw_time: [u8; 7],
    pub status: Status,
}

/// DI, SER and the rest of a data field.
pub fn split_header(data: &[u8]) -> Result<([u8; 2], u8, &[u8]), PayloadError> {
    match data {
        [di0, di1, ser, rest @ ..] => Ok(([*di0, *di1], *ser, rest)),
        _ => Err(PayloadError::Length { expected: "at least 3 (DI and SER)", got: data.len() }),
    }
}

/// Splits off DI and SER and checks the DI (either byte order).
fn expect_di(data: &[u8], di: u16) -> Result<(u8, &[u8]), PayloadError> {
    let (got, ser, rest) = split_header(data)?;
    if !di_matches(got, di) {
        return Err(PayloadError::Di { expected: di, got });
    }
    Ok((ser, rest))
}

/// The request for 901F metering data: C = 01, DI in the model's order, SER.
pub fn read_metering_request(model: &Cjt188Model, address: Address, serial: u8) -> Frame {
    let [di0, di1] = model.di_order.bytes(DI_METERING);
    Frame {
        meter_type: model.meter_type,
        address,
        control: Control::request(Control::READ_DATA),
        data: vec![di0, di1, serial],
    }
}

/// The request to open (55) or close (99) the valve: C = 04, DI A017 in the model's order, SER, operation.
pub fn valve_request(model: &Cjt188Model, address: Address, serial: u8, open: bool) -> Frame {
    let [di0, di1] = model.di_order.bytes(DI_VALVE);
    let op = if open { VALVE_OPEN } else { VALVE_CLOSE };
    Frame {
        meter_type: model.meter_type,
        address,
        control: Control::request(Control::WRITE_DATA),
        data: vec![di0, di1, serial, op],
    }
}

/// Decodes the data field of a normal 901F reply (C = 81) through the model's status table.
pub fn parse_metering_reply(data: &[u8], st_bits: &StBits) -> Result<MeteringData, PayloadError> {
    if data.len() != METERING_DATA_LEN {
        return Err(PayloadError::Length { expected: "22 (901F metering data)", got: data.len() });
    }
    let (serial, rest) = expect_di(data, DI_METERING)?;
    let current = Reading::decode(&rest[0..5], "current flow")?;
    let settlement = Reading::decode(&rest[5..10], "settlement-day flow").ok();
    let mut raw_time = [0u8; 7];
    raw_time.copy_from_slice(&rest[10..17]);
    let status = st_bits.decode(u16::from_le_bytes([rest[17], rest[18]]));
    Ok(MeteringData { serial, current, settlement, time: MeterTime::decode(raw_time), raw_time, status })
}

/// The data field of a normal 901F reply, as a meter builds it (for the simulator and tests).
pub fn metering_reply_data(
    di: [u8; 2],
    serial: u8,
    current: Reading,
    settlement: Reading,
    time: [u8; 7],
    status: u16,
) -> Vec<u8> {
    let mut data = Vec::with_capacity(METERING_DATA_LEN);
    data.extend_from_slice(&di);
    data.push(serial);
    data.extend_from_slice(&current.encode());
    data.extend_from_slice(&settlement.encode());
    data.extend_from_slice(&time);
    data.extend_from_slice(&status.to_le_bytes());
    data
}

/// Decodes the data field of a normal valve-control reply (C = 84): DI A017, SER, ST. Returns SER and the
/// status. ST is two bytes as in KingDa's firmware; a single ST byte (as ng-gateway expects) is accepted as ST1.
pub fn parse_valve_reply(data: &[u8], st_bits: &StBits) -> Result<(u8, Status), PayloadError> {
    let (serial, rest) = expect_di(data, DI_VALVE)?;
    let raw = match rest {
        [st1] => u16::from(*st1),
        [st1, st2] => u16::from_le_bytes([*st1, *st2]),
        _ => return Err(PayloadError::Length { expected: "4 or 5 (DI, SER, ST)", got: data.len() }),
    };
    Ok((serial, st_bits.decode(raw)))
}

/// The data field of a normal valve-control reply, as a meter builds it.
pub fn valve_reply_data(di: [u8; 2], serial: u8, status: u16) -> Vec<u8> {
    let [st1, st2] = status.to_le_bytes();
    vec![di[0], di[1], serial, st1, st2]
}

/// Decodes the data field of a valve-control request (C = 04) as a meter does: SER and open (true) or close.
pub fn parse_valve_request(data: &[u8]) -> Result<(u8, bool), PayloadError> {
    let (serial, rest) = expect_di(data, DI_VALVE)?;
    match rest {
        [VALVE_OPEN] => Ok((serial, true)),
        [VALVE_CLOSE] => Ok((serial, false)),
        [op] => Err(PayloadError::ValveOp(*op)),
        _ => Err(PayloadError::Length { expected: "4 (DI, SER, operation)", got: data.len() }),
    }
}

/// Decodes the data field of a metering read request (C = 01) as a meter does: the DI bytes as sent and SER.
pub fn parse_metering_request(data: &[u8]) -> Result<([u8; 2], u8), PayloadError> {
    let (di, serial, rest) = split_header(data)?;
    if !di_matches(di, DI_METERING) {
        return Err(PayloadError::Di { expected: DI_METERING, got: di });
    }
    if !rest.is_empty() {
        return Err(PayloadError::Length { expected: "3 (DI and SER)", got: data.len() });
    }
    Ok((di, serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_exactly() {
        // 123456.78 in every unit.
        let bytes = |unit: u8| [0x78, 0x56, 0x34, 0x12, unit];
        let ml = |unit: u8| Reading::decode(&bytes(unit), "flow").map(|r| r.volume.millilitres());
        assert_eq!(ml(0x29), Ok(123_456_780)); // 123 456.78 l
        assert_eq!(ml(0x2A), Ok(1_234_567_800)); // × 10 l
        assert_eq!(ml(0x2B), Ok(12_345_678_000)); // × 100 l
        assert_eq!(ml(0x2C), Ok(123_456_780_000)); // m³
        assert_eq!(ml(0x2D), Ok(1_234_567_800_000)); // × 10 m³
        assert_eq!(ml(0x2E), Ok(12_345_678_000_000)); // × 100 m³
        assert_eq!(ml(0x35), Err(PayloadError::Unit(0x35)), "m³/h is a flow rate, not a volume");
        assert_eq!(Reading::decode(&[0x7A, 0, 0, 0, 0x2C], "current flow"), Err(PayloadError::Bcd("current flow")));
        for unit in [0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E] {
            let reading = Reading::decode(&bytes(unit), "flow").expect("valid");
            assert_eq!(reading.encode(), bytes(unit), "unit {unit:02X}");
            assert_eq!(VolumeUnit::from_code(unit).map(VolumeUnit::code), Some(unit));
        }
    }

    #[test]
    fn encoding_truncates_and_rolls_over_like_a_meter() {
        let r = |ml: u64, unit| Reading { volume: Volume::from_millilitres(ml), unit }.encode();
        // 12.345 678 m³ in m³ with two decimals: 12.34.
        assert_eq!(r(12_345_678, VolumeUnit::CubicMetre), [0x34, 0x12, 0x00, 0x00, 0x2C]);
        // 1 000 000.01 m³ rolls over to 0.01.
        assert_eq!(r(1_000_000_010_000, VolumeUnit::CubicMetre), [0x01, 0x00, 0x00, 0x00, 0x2C]);
        assert_eq!(r(u64::MAX, VolumeUnit::Litre)[4], 0x29);
    }

    #[test]
    fn volume_display_and_m3() {
        let v = Volume::from_millilitres(556_677_000_000);
        assert_eq!(v.to_string(), "556677.000000 m³");
        assert_eq!(v.cubic_metres(), 556_677.0);
        assert_eq!(Volume::from_millilitres(10).to_string(), "0.000010 m³");
    }

    #[test]
    fn meter_time_checks_the_calendar() {
        let t = MeterTime::decode([0x31, 0x01, 0x22, 0x11, 0x05, 0x15, 0x20]);
        assert_eq!(t.map(|t| t.to_string()).as_deref(), Some("2015-05-11 22:01:31"));
        assert_eq!(t.and_then(MeterTime::encode), Some([0x31, 0x01, 0x22, 0x11, 0x05, 0x15, 0x20]));
        assert_eq!(MeterTime::decode([0; 7]), None, "an unset clock (month 0)");
        assert_eq!(MeterTime::decode([0, 0, 0, 0x29, 0x02, 0x23, 0x20]), None, "2023-02-29");
        assert!(MeterTime::decode([0, 0, 0, 0x29, 0x02, 0x24, 0x20]).is_some(), "2024-02-29");
        assert_eq!(MeterTime::decode([0, 0, 0, 0x31, 0x04, 0x24, 0x20]), None, "April 31");
        assert_eq!(MeterTime::decode([0x60, 0, 0, 0x01, 0x01, 0x24, 0x20]), None, "second 60");
        assert_eq!(MeterTime::decode([0, 0, 0x24, 0x01, 0x01, 0x24, 0x20]), None, "hour 24");
        assert_eq!(MeterTime::decode([0x0A, 0, 0, 0x01, 0x01, 0x24, 0x20]), None, "not BCD");
        let bad = MeterTime { year: 10_000, month: 1, day: 1, hour: 0, minute: 0, second: 0 };
        assert_eq!(bad.encode(), None);
    }

    #[test]
    fn status_tables() {
        assert_eq!(StBits::STANDARD.check(), Ok(()));
        assert_eq!(StBits::KINGDA.check(), Ok(()));
        let s = StBits::KINGDA.decode(0x1807);
        assert_eq!(s.valve, ValveState::Abnormal);
        assert!(s.battery_low && s.magnetic_tamper && s.meter_fault);
        assert_eq!(StBits::STANDARD.decode(0x0002).valve, ValveState::Other(0x0002));
        assert!(!StBits::STANDARD.decode(0x1800).meter_fault, "the standard table names no fault bit");
        for valve in [ValveState::Open, ValveState::Closed, ValveState::Abnormal] {
            for flags in 0..8u8 {
                let (b, m, f) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
                let raw = StBits::KINGDA.encode(valve, b, m, f);
                let s = StBits::KINGDA.decode(raw);
                assert_eq!((s.valve, s.battery_low, s.magnetic_tamper, s.meter_fault), (valve, b, m, f));
            }
        }
        let mut bad = StBits::STANDARD;
        bad.battery_low = Some(16);
        assert!(bad.check().is_err_and(|e| e.to_string().contains("battery_low bit 16")));
        assert!(!bad.decode(0xFFFF).battery_low, "an out-of-range bit reads as clear");
        let mut bad = StBits::STANDARD;
        bad.valve.closed = 0x0004;
        assert!(bad.check().is_err_and(|e| e.to_string().contains("outside the mask")));
        let mut bad = StBits::STANDARD;
        bad.valve.abnormal = bad.valve.closed;
        assert!(bad.check().is_err_and(|e| e.to_string().contains("must differ")));
        let mut bad = StBits::STANDARD;
        bad.valve.mask = 0;
        assert!(bad.check().is_err());
    }

    #[test]
    fn model_presets_and_checks() {
        assert_eq!(Cjt188Model::default().di_order, DiOrder::BigEndian);
        assert_eq!(Cjt188Model::edition_2018().di_order, DiOrder::LittleEndian);
        assert_eq!(Cjt188Model::edition_2018().check(), Ok(()));
        let too_long = Cjt188Model { preamble: 17, ..Cjt188Model::default() };
        assert!(too_long.check().is_err());
    }

    #[test]
    fn di_orders() {
        assert_eq!(DiOrder::BigEndian.bytes(DI_METERING), [0x90, 0x1F]);
        assert_eq!(DiOrder::LittleEndian.bytes(DI_METERING), [0x1F, 0x90]);
        assert!(di_matches([0x90, 0x1F], DI_METERING) && di_matches([0x1F, 0x90], DI_METERING));
        assert!(!di_matches([0x90, 0x10], DI_METERING));
    }
}
