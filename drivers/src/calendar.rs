//! Dates, wall-clock times and time zones for every protocol and actor that needs them (HJ 212 `DataTime` and
//! QN, the CJ/T 188 meter clock, RFC 3339 in MQTT payloads, cycles aligned to local time): a thin layer over
//! [jiff](https://docs.rs/jiff) so that the rest of the code speaks milliseconds since the Unix epoch and plain
//! numbers, and only this file knows the crate.
//!
//! The time-zone database is the one bundled into the binary (jiff's `tzdb-bundle-always`), never the system's
//! `/usr/share/zoneinfo`: the server then behaves the same on every machine, inside a hardened systemd unit
//! and in tests. A new tzdb release arrives with a jiff update.
//!
//! This file deliberately does not decide policy (which zone a device uses, when a cycle is due): it converts.
//! Years outside −9999…9999 (jiff's range) are refused with `None`, not wrapped.

use jiff::civil::{Date, DateTime};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Span, Timestamp, Unit};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days in `month` (1–12) of `year`; 0 for a month that does not exist or a year outside −9999…9999.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    date(year, month, 1).map_or(0, |d| i64::from(d.days_in_month()))
}

/// Days since 1970-01-01 of the date `year`-`month`-`day`; `None` for a date that does not exist.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    let span = EPOCH.until((Unit::Day, date(year, month, day)?)).ok()?;
    Some(i64::from(span.get_days()))
}

/// The date `(year, month, day)` of `days` since 1970-01-01: the inverse of [`days_from_civil`]; `None`
/// outside jiff's range.
pub fn civil_from_days(days: i64) -> Option<(i64, i64, i64)> {
    let d = EPOCH.checked_add(Span::new().try_days(days).ok()?).ok()?;
    Some((i64::from(d.year()), i64::from(d.month()), i64::from(d.day())))
}

/// 1970-01-01, day 0.
const EPOCH: Date = Date::constant(1970, 1, 1);

fn date(year: i64, month: i64, day: i64) -> Option<Date> {
    Date::new(i16::try_from(year).ok()?, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// A wall-clock reading: what a clock on the wall of the given zone shows (no zone, no offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub millis: i64,
}

impl LocalTime {
    fn to_jiff(self) -> Option<DateTime> {
        let d = date(self.year, self.month, self.day)?;
        let t = jiff::civil::Time::new(
            i8::try_from(self.hour).ok()?,
            i8::try_from(self.minute).ok()?,
            i8::try_from(self.second).ok()?,
            i32::try_from(self.millis.checked_mul(1_000_000)?).ok()?,
        )
        .ok()?;
        Some(d.to_datetime(t))
    }
}

/// Why a time-zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {name:?} (expected an IANA name such as \"Asia/Shanghai\")")]
pub struct UnknownZone {
    pub name: String,
}

/// A time zone of the bundled IANA database, or a fixed UTC offset. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    tz: TimeZone,
    name: String,
}

impl Zone {
    /// The utility's default zone (`[server] timezone`).
    pub const DEFAULT_NAME: &'static str = "Asia/Shanghai";

    /// The zone of this IANA name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`), from the bundled database.
    pub fn named(name: &str) -> Result<Zone, UnknownZone> {
        let tz = TimeZoneDatabase::bundled().get(name).map_err(|_| UnknownZone { name: name.to_owned() })?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { tz, name })
    }

    /// A zone that is always `minutes` east of UTC (an HJ 212 station's `utc_offset`); `None` beyond ±25 h.
    pub fn fixed_minutes(minutes: i32) -> Option<Zone> {
        let offset = jiff::tz::Offset::from_seconds(minutes.checked_mul(60)?).ok()?;
        Some(Zone { tz: TimeZone::fixed(offset), name: offset.to_string() })
    }

    pub fn utc() -> Zone {
        Zone { tz: TimeZone::UTC, name: "UTC".to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offset from UTC in force at `ms`, in seconds (east positive).
    pub fn offset_seconds_at(&self, ms: i64) -> i64 {
        i64::from(self.tz.to_offset(timestamp(ms)).seconds())
    }

    /// The first instant strictly after `ms` at which the offset changes (a DST switch), if any.
    pub fn next_transition_after(&self, ms: i64) -> Option<i64> {
        self.tz.following(timestamp(ms)).next().map(|t| t.timestamp().as_millisecond())
    }

    /// The wall-clock reading of the instant `ms`.
    pub fn to_local(&self, ms: i64) -> LocalTime {
        let dt = self.tz.to_datetime(timestamp(ms));
        LocalTime {
            year: i64::from(dt.year()),
            month: i64::from(dt.month()),
            day: i64::from(dt.day()),
            hour: i64::from(dt.hour()),
            minute: i64::from(dt.minute()),
            second: i64::from(dt.second()),
            millis: i64::from(dt.millisecond()),
        }
    }

    /// The instant a wall clock of this zone shows `local`, in ms since the epoch; `None` for an impossible date
    /// or time. A reading the clock skips (spring forward) is moved forward by the gap (02:30 → 03:30), one it
    /// shows twice (fall back) is the first (jiff's "compatible" rule, as RFC 5545 and Temporal do).
    pub fn to_instant(&self, local: LocalTime) -> Option<i64> {
        let ts = self.tz.to_ambiguous_timestamp(local.to_jiff()?).compatible().ok()?;
        Some(ts.as_millisecond())
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::named(Zone::DEFAULT_NAME).unwrap_or_else(|_| Zone::fixed_minutes(8 * 60).unwrap_or_else(Zone::utc))
    }
}

/// The jiff timestamp of `ms`, clamped into jiff's range (years −9999…9999).
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(9999, 12, 31), Some(2_932_896));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
        assert_eq!(civil_from_days(-1), Some((1969, 12, 31)));
        assert_eq!(civil_from_days(11_016), Some((2000, 2, 29)));
        assert_eq!(civil_from_days(3_000_000), None, "past 9999-12-31");
    }

    #[test]
    fn the_two_conversions_are_inverses_and_months_have_their_days() {
        for days in (-800_000..2_932_896).step_by(997) {
            let (y, m, d) = civil_from_days(days).expect("in range");
            assert!((1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d), "{days}: {y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        assert_eq!((days_in_month(2024, 2), days_in_month(1900, 2), days_in_month(2000, 2)), (29, 28, 29));
        assert_eq!((days_in_month(2023, 4), days_in_month(2023, 12), days_in_month(2023, 13)), (30, 31, 0));
        assert_eq!(days_in_month(10_000, 1), 0);
    }

    #[test]
    fn zones_come_from_the_bundled_database() {
        let sh = Zone::named("Asia/Shanghai").expect("bundled");
        assert_eq!(sh.name(), "Asia/Shanghai");
        assert_eq!(Zone::default(), sh);
        assert_eq!(sh.offset_seconds_at(1_700_000_000_000), 8 * 3600);
        assert_eq!(sh.next_transition_after(1_700_000_000_000), None, "China has had no DST since 1991");
        let err = Zone::named("Mars/Olympus_Mons").expect_err("unknown");
        assert!(err.to_string().contains("Mars/Olympus_Mons"), "{err}");
    }

    #[test]
    fn local_times_convert_both_ways_across_dst() {
        let berlin = Zone::named("Europe/Berlin").expect("bundled");
        let lt = |year, month, day, hour, minute| LocalTime { year, month, day, hour, minute, second: 0, millis: 0 };
        // 2026-03-29 02:00 CET jumps to 03:00 CEST; 01:00 UTC is the switch.
        let switch = berlin.to_instant(lt(2026, 3, 29, 3, 0)).expect("exists");
        assert_eq!(berlin.next_transition_after(switch - 1), Some(switch));
        assert_eq!(berlin.next_transition_after(switch), berlin.next_transition_after(switch + 1), "strictly after");
        assert_eq!(berlin.to_instant(lt(2026, 3, 29, 2, 30)), Some(switch + 1_800_000), "moved by the gap");
        assert_eq!(berlin.to_local(switch), lt(2026, 3, 29, 3, 0));
        assert_eq!(berlin.offset_seconds_at(switch - 1), 3600);
        assert_eq!(berlin.offset_seconds_at(switch), 7200);
        // 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice, the first one is taken.
        let first = berlin.to_instant(lt(2026, 10, 25, 2, 30)).expect("exists");
        assert_eq!(berlin.offset_seconds_at(first), 7200);
        assert_eq!(berlin.to_local(first + 3_600_000), lt(2026, 10, 25, 2, 30));
        let fixed = Zone::fixed_minutes(8 * 60).expect("valid");
        assert_eq!(fixed.to_instant(lt(1970, 1, 1, 8, 0)), Some(0));
        assert_eq!(berlin.to_instant(lt(2026, 2, 30, 0, 0)), None);
    }
}
