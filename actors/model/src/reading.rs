//! Readings and samples as they are stored: meter volumes with status bits, water-quality values with flags.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{DeviceId, MeterId};

/// Milliseconds since the Unix epoch, UTC. The model never reads a clock; callers pass this in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }
    pub fn plus_millis(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// A cumulative water volume with exactly three decimals of m³ (R-A1), held as whole litres so that it is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Volume {
    litres: i64,
}

/// Why a decoded number cannot be a meter volume.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {0} is not a finite number")]
    NotFinite(f64),
    #[error("volume {0} m3 is negative")]
    Negative(f64),
    #[error("volume {0} m3 is beyond any meter's register")]
    TooLarge(f64),
}

impl Volume {
    /// The largest cumulative volume accepted: 10^12 m³, far beyond any 8-digit meter register.
    const MAX_M3: f64 = 1e12;

    pub fn from_litres(litres: i64) -> Volume {
        Volume { litres }
    }

    /// Rounds a decoded m³ value to the litre (3 decimals, half away from zero).
    pub fn from_m3(m3: f64) -> Result<Volume, VolumeError> {
        if !m3.is_finite() {
            return Err(VolumeError::NotFinite(m3));
        }
        if m3 < 0.0 {
            return Err(VolumeError::Negative(m3));
        }
        if m3 > Self::MAX_M3 {
            return Err(VolumeError::TooLarge(m3));
        }
        Ok(Volume { litres: (m3 * 1000.0).round() as i64 })
    }

    pub fn litres(self) -> i64 {
        self.litres
    }
}

impl fmt::Display for Volume {
    /// Formats as m³ with exactly three decimals, e.g. `1234.567`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.litres < 0 { "-" } else { "" };
        let abs = self.litres.unsigned_abs();
        write!(f, "{sign}{}.{:03}", abs / 1000, abs % 1000)
    }
}

/// Status bits of a meter, by meaning (the register bit positions are per device model, R-A1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeterStatus(pub u16);

impl MeterStatus {
    pub const VALVE_CLOSED: u16 = 1 << 0;
    pub const BATTERY_LOW: u16 = 1 << 1;
    pub const MAGNETIC_TAMPER: u16 = 1 << 2;
    pub const REVERSE_FLOW: u16 = 1 << 3;
    pub const METER_FAULT: u16 = 1 << 4;
    /// The meter's valve reports a fault (stuck, motor error): neither surely open nor surely closed.
    pub const VALVE_FAULT: u16 = 1 << 5;
    /// Set by the server, never by a device: the payload's status could not be decoded, so the other flags
    /// are incomplete. The volume and time were decoded and are good (issue 7 §6).
    pub const STATUS_UNREADABLE: u16 = 1 << 6;
    /// Set by the server, never by a device: the payload carried no time, and the reading's time is when the
    /// server received it (a configured fallback, issue 7 §6).
    pub const TIME_FROM_ARRIVAL: u16 = 1 << 7;
    // Bits set by the volume check (issue 7 §4, see `volume_check`), high so that device flags keep the low bits.
    /// The cumulative volume fell below the previous reading's.
    pub const VOLUME_FELL: u16 = 1 << 10;
    /// The volume fell from near the register's maximum to near zero: the register wrapped.
    pub const ROLLOVER: u16 = 1 << 11;
    /// A large fall to a small value that is not a wrap, or a rise the meter cannot have measured: likely a
    /// different meter (a swap) or a misread.
    pub const SUSPECTED_SWAP: u16 = 1 << 12;
    /// Excluded from usage computations until an operator reviewed it.
    pub const NEEDS_REVIEW: u16 = 1 << 13;
    /// The flags only the server sets; a device's status is never mapped onto them.
    /// The reading is dated further in the future than the tolerance allows ([`TimePlausibility`]).
    pub const TIME_FUTURE: u16 = 1 << 14;
    /// The reading is dated older than the age limit ([`TimePlausibility`]).
    pub const TIME_STALE: u16 = 1 << 15;
    pub const SERVER_FLAGS: u16 = Self::STATUS_UNREADABLE
        | Self::TIME_FROM_ARRIVAL
        | Self::VOLUME_FELL
        | Self::ROLLOVER
        | Self::SUSPECTED_SWAP
        | Self::NEEDS_REVIEW
        | Self::TIME_FUTURE
        | Self::TIME_STALE;

    /// The status names the model knows, in bit order; config maps device bits onto these (except the
    /// [`MeterStatus::SERVER_FLAGS`]).
    pub const NAMES: [(&'static str, u16); 14] = [
        ("valve_closed", Self::VALVE_CLOSED),
        ("battery_low", Self::BATTERY_LOW),
        ("magnetic_tamper", Self::MAGNETIC_TAMPER),
        ("reverse_flow", Self::REVERSE_FLOW),
        ("meter_fault", Self::METER_FAULT),
        ("valve_fault", Self::VALVE_FAULT),
        ("status_unreadable", Self::STATUS_UNREADABLE),
        ("time_from_arrival", Self::TIME_FROM_ARRIVAL),
        ("volume_fell", Self::VOLUME_FELL),
        ("rollover", Self::ROLLOVER),
        ("suspected_swap", Self::SUSPECTED_SWAP),
        ("needs_review", Self::NEEDS_REVIEW),
        ("time_future", Self::TIME_FUTURE),
        ("time_stale", Self::TIME_STALE),
    ];

    /// Whether usage computations must skip this reading until it is reviewed.
    pub fn needs_review(self) -> bool {
        self.0 & Self::NEEDS_REVIEW != 0
    }

    pub fn flag_for(name: &str) -> Option<u16> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The flag of a name a device's status may be mapped onto: a known name that is not a server flag.
    pub fn device_flag_for(name: &str) -> Option<u16> {
        Self::flag_for(name).filter(|f| f & Self::SERVER_FLAGS == 0)
    }

    /// The names a device's status may be mapped onto, in bit order, for messages: `valve_closed, …`.
    pub fn device_names() -> String {
        let names: Vec<&str> =
            Self::NAMES.iter().filter(|(_, f)| f & Self::SERVER_FLAGS == 0).map(|(n, _)| *n).collect();
        names.join(", ")
    }

    /// Translates a raw device status word through a bit map `(device bit, model flag)`.
    pub fn from_device_word(word: u16, map: &[(u8, u16)]) -> MeterStatus {
        let mut bits = 0;
        for &(bit, flag) in map {
            if bit < 16 && word & (1 << bit) != 0 {
                bits |= flag;
            }
        }
        MeterStatus(bits)
    }

    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES.iter().filter(|(_, f)| self.0 & f != 0).map(|(n, _)| *n).collect()
    }

    /// With the flag of a reading time's verdict added.
    pub fn with_time(self, verdict: TimeVerdict) -> MeterStatus {
        match verdict {
            TimeVerdict::Plausible => self,
            TimeVerdict::Future => MeterStatus(self.0 | Self::TIME_FUTURE),
            TimeVerdict::Stale => MeterStatus(self.0 | Self::TIME_STALE),
        }
    }

    /// Whether the reading's time is implausible, so it must not be shown as the current value.
    pub fn time_implausible(self) -> bool {
        self.0 & (Self::TIME_FUTURE | Self::TIME_STALE) != 0
    }
}

/// Limits on when a reading may be dated, relative to the server's clock (issue 7 §4): a reading from the
/// future (a meter clock or a payload time gone wrong) or from long ago (a replayed backlog, a reset meter
/// clock) is kept but flagged, counted, and not shown as the device's current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimePlausibility {
    /// How far in the future a reading may be dated (clock skew between device and server).
    pub future_tolerance_ms: i64,
    /// How old a reading may be.
    pub max_age_ms: i64,
}

/// The verdict on one reading's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeVerdict {
    Plausible,
    Future,
    Stale,
}

impl Default for TimePlausibility {
    /// 5 minutes into the future, 400 days into the past.
    fn default() -> TimePlausibility {
        TimePlausibility { future_tolerance_ms: 5 * 60_000, max_age_ms: 400 * 86_400_000 }
    }
}

impl TimePlausibility {
    /// Judges a reading dated `ts` when the server's clock reads `now`. The limits themselves are plausible.
    pub fn judge(&self, ts: Timestamp, now: Timestamp) -> TimeVerdict {
        if ts.0 > now.0.saturating_add(self.future_tolerance_ms) {
            TimeVerdict::Future
        } else if ts.0 < now.0.saturating_sub(self.max_age_ms) {
            TimeVerdict::Stale
        } else {
            TimeVerdict::Plausible
        }
    }
}

/// One meter reading as committed to the store (and carried by the change feed). `ts` is when it was
/// measured: when the read that carried it returned (Modbus, CJ/T 188, per meter), or the time the device sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeterReading {
    pub meter: MeterId,
    pub device: DeviceId,
    pub ts: Timestamp,
    pub volume: Volume,
    pub status: MeterStatus,
    /// What the meter's own clock showed, where the protocol carries it (CJ/T 188 901F), converted with the
    /// configured zone. (`default`: feed entries written before this field existed still read.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter_clock: Option<Timestamp>,
    /// The cumulative volume on the last settlement day, where the protocol carries it (CJ/T 188 901F).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_volume: Option<Volume>,
}

/// Quality flags of a water-quality sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QualityFlags(pub u8);

impl QualityFlags {
    pub const BELOW_LOW: u8 = 1 << 0;
    pub const ABOVE_HIGH: u8 = 1 << 1;
    /// The device itself flagged the value as not normal (maintenance, calibration, fault…): not trusted (R-A6).
    pub const DEVICE_FLAGGED: u8 = 1 << 2;
    /// Dated too far in the future ([`TimePlausibility`]).
    pub const TIME_FUTURE: u8 = 1 << 6;
    /// Dated too long ago ([`TimePlausibility`]).
    pub const TIME_STALE: u8 = 1 << 7;

    /// With the flag of a sample time's verdict added.
    pub fn with_time(self, verdict: TimeVerdict) -> QualityFlags {
        match verdict {
            TimeVerdict::Plausible => self,
            TimeVerdict::Future => QualityFlags(self.0 | Self::TIME_FUTURE),
            TimeVerdict::Stale => QualityFlags(self.0 | Self::TIME_STALE),
        }
    }

    /// Whether the sample's time is implausible, so it must not be shown as the current value.
    pub fn time_implausible(self) -> bool {
        self.0 & (Self::TIME_FUTURE | Self::TIME_STALE) != 0
    }

    /// Compares a value with its limits (both inclusive bounds of the acceptable range).
    pub fn against_limits(value: f64, low: Option<f64>, high: Option<f64>) -> QualityFlags {
        let mut bits = 0;
        if low.is_some_and(|l| value < l) {
            bits |= Self::BELOW_LOW;
        }
        if high.is_some_and(|h| value > h) {
            bits |= Self::ABOVE_HIGH;
        }
        QualityFlags(bits)
    }

    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.0 & Self::BELOW_LOW != 0 {
            v.push("low");
        }
        if self.0 & Self::ABOVE_HIGH != 0 {
            v.push("high");
        }
        if self.0 & Self::DEVICE_FLAGGED != 0 {
            v.push("device_flag");
        }
        if self.0 & Self::TIME_FUTURE != 0 {
            v.push("time_future");
        }
        if self.0 & Self::TIME_STALE != 0 {
            v.push("time_stale");
        }
        v
    }
}

/// One water-quality sample as committed to the store (and carried by the change feed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualitySample {
    pub device: DeviceId,
    pub parameter: String,
    pub ts: Timestamp,
    pub value: f64,
    pub unit: String,
    pub flags: QualityFlags,
}

impl QualitySample {
    /// The store key of this sample's series: `device/parameter`.
    pub fn series(&self) -> String {
        series_key(&self.device, &self.parameter)
    }
}

/// The series key of a logger parameter.
pub fn series_key(device: &DeviceId, parameter: &str) -> String {
    format!("{device}/{parameter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_keeps_three_decimals_exactly() {
        assert_eq!(Volume::from_m3(123.456).unwrap().to_string(), "123.456");
        assert_eq!(Volume::from_m3(0.0005).unwrap().to_string(), "0.001");
        assert_eq!(Volume::from_m3(7.0).unwrap().to_string(), "7.000");
        assert_eq!(Volume::from_litres(-1500).to_string(), "-1.500");
        assert!(matches!(Volume::from_m3(-0.1), Err(VolumeError::Negative(_))));
        assert!(matches!(Volume::from_m3(f64::NAN), Err(VolumeError::NotFinite(_))));
        assert!(matches!(Volume::from_m3(1e13), Err(VolumeError::TooLarge(_))));
    }

    #[test]
    fn device_status_bits_map_to_model_flags() {
        let map = [(7, MeterStatus::VALVE_CLOSED), (5, MeterStatus::BATTERY_LOW)];
        let s = MeterStatus::from_device_word(0b1010_0000, &map);
        assert_eq!(s.names(), vec!["valve_closed", "battery_low"]);
        assert_eq!(MeterStatus::from_device_word(0, &map).names(), Vec::<&str>::new());
        assert_eq!(MeterStatus::device_flag_for("meter_fault"), Some(MeterStatus::METER_FAULT));
        assert_eq!(MeterStatus::device_flag_for("needs_review"), None, "a device cannot set the server's own flags");
        assert_eq!(MeterStatus::device_flag_for("rollover"), None);
        let flagged = MeterStatus(MeterStatus::ROLLOVER | MeterStatus::NEEDS_REVIEW);
        assert_eq!(flagged.names(), vec!["rollover", "needs_review"]);
        assert!(flagged.needs_review());
    }

    #[test]
    fn server_flags_are_known_names_but_not_device_names() {
        assert_eq!(MeterStatus::flag_for("status_unreadable"), Some(MeterStatus::STATUS_UNREADABLE));
        assert_eq!(MeterStatus::device_flag_for("status_unreadable"), None);
        assert_eq!(MeterStatus::device_flag_for("time_from_arrival"), None);
        assert_eq!(MeterStatus::device_flag_for("valve_fault"), Some(MeterStatus::VALVE_FAULT));
        assert_eq!(
            MeterStatus::device_names(),
            "valve_closed, battery_low, magnetic_tamper, reverse_flow, meter_fault, valve_fault"
        );
        let s = MeterStatus(MeterStatus::STATUS_UNREADABLE | MeterStatus::TIME_FROM_ARRIVAL | MeterStatus::BATTERY_LOW);
        assert_eq!(s.names(), vec!["battery_low", "status_unreadable", "time_from_arrival"]);
    }

    #[test]
    fn reading_times_beyond_the_limits_are_flagged() {
        let rule = TimePlausibility::default();
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(rule.judge(now, now), TimeVerdict::Plausible);
        assert_eq!(rule.judge(now.plus_millis(5 * 60_000), now), TimeVerdict::Plausible, "the tolerance is inclusive");
        assert_eq!(rule.judge(now.plus_millis(5 * 60_000 + 1), now), TimeVerdict::Future);
        assert_eq!(rule.judge(now.plus_millis(-400 * 86_400_000), now), TimeVerdict::Plausible);
        assert_eq!(rule.judge(now.plus_millis(-400 * 86_400_000 - 1), now), TimeVerdict::Stale);
        let status = MeterStatus(MeterStatus::BATTERY_LOW).with_time(TimeVerdict::Future);
        assert_eq!(status.names(), vec!["battery_low", "time_future"]);
        assert!(status.time_implausible() && !MeterStatus(MeterStatus::BATTERY_LOW).time_implausible());
        assert_eq!(MeterStatus::device_flag_for("time_future"), None, "a device bit never maps onto a server flag");
        let flags = QualityFlags(QualityFlags::BELOW_LOW).with_time(TimeVerdict::Stale);
        assert_eq!(flags.names(), vec!["low", "time_stale"]);
        assert!(flags.time_implausible());
        assert_eq!(QualityFlags(0).with_time(TimeVerdict::Plausible), QualityFlags(0));
    }

    #[test]
    fn quality_flags_against_limits() {
        // GB 5749-2022: free chlorine at the plant outlet 0.3..=2.0 mg/L.
        assert_eq!(QualityFlags::against_limits(0.25, Some(0.3), Some(2.0)).names(), vec!["low"]);
        assert_eq!(QualityFlags::against_limits(0.3, Some(0.3), Some(2.0)).names(), Vec::<&str>::new());
        assert_eq!(QualityFlags::against_limits(1.2, None, Some(1.0)).names(), vec!["high"]);
    }
}
