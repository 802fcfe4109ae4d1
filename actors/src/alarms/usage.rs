//! The usage watch (issue 9 §1, R-B2, R-B5): at the end of each period it computes, from the stored readings,
//! each meter's abnormal usage and continuous night flow, and each zone's leakage rate, and raises or clears
//! their alarms through `AlarmOp::Condition` (one condition, one alarm), like the alarm engine.
//!
//! - **Abnormal usage** (`AlarmClass::AbnormalUsage`, device = the meter's device, detail = the meter): a
//!   meter's usage over a **day** (local midnight to midnight) more than `1 + ratio` (30 %) times its mean
//!   over the same weekday of the previous `history_weeks` weeks (8), given at least `min_history` (4) complete
//!   such days. A day, because R-B2 asks for a short window and a burst or a running toilet should show the
//!   next morning, not at month end; the same weekday, because households use water by the week (weekends
//!   differ), so Saturday is compared with Saturdays. Incomplete data or too little history: no verdict, and
//!   the condition stays as it was.
//! - **Night flow** (`AlarmClass::NightFlow`, same key): every hour of the night window (02:00–05:00 local by
//!   default) of that day used more than `night_min_litres`, from hourly readings only (a day's reading spread
//!   over the night is not flow).
//! - **Zone leakage** (`AlarmClass::ZoneLeakage`, device = the zone id): `(Σ masters − Σ members) / Σ masters`
//!   over the zone's period (a day, or a calendar month), every meter complete, above the threshold. Each
//!   result is stored (`store::usage`) so `/api/zones` shows it, complete or not.
//!
//! **Periods and catch-up.** Days end at local midnight in the utility's zone (DESIGN §13; a DST day is 23
//! or 25 hours). The watch remembers in the store the end of the last day it evaluated
//! (`Op::Usage(UsageOp::Through)`, committed with that day's results), and at start evaluates each day missed
//! while it was down, oldest first, at most [`MAX_CATCH_UP_DAYS`]; the first start ever evaluates only the day
//! that ended last. A day is evaluated once `settle` has passed after its end, so late readings arrive first.
//!
//! The clock is injected ([`SharedClock`]); the timer is a tokio timer re-armed after each look (tests pause
//! time). A failed read or submit is logged and tried again at the next look.
//!
//! What it deliberately does not do: read the change feed (usage needs whole periods of history, which the
//! store has), acknowledge anything, or decide a reading's flags (the volume check did).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drivers::calendar::{LocalTime, Zone};

use crate::model::{AbnormalRule, DeviceId, MeterId, MeterStatus, RegionId, Timestamp, UsagePoint, UsageRules, Volume};
use crate::store::StoredReading;
use crate::tree::RegionSpec;

/// The most days evaluated after a downtime (older days are not looked at again).
pub const MAX_CATCH_UP_DAYS: usize = 31;

/// A zone's accounting period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
}

/// A zone (district metered area) with its master meters, resolved from `[[zone]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneSpec {
    pub id: String,
    pub name: String,
    /// The region its alarm is filed under (that of its first master meter).
    pub region: RegionId,
    /// Master (district) meters: what flowed into the zone.
    pub masters: Vec<MeterId>,
    /// Member meters: what was used (billed) inside it. Never a master of this zone.
    pub members: Vec<MeterId>,
    /// The leakage rate (0–1) above which the zone's alarm is raised.
    pub threshold: f64,
    pub period: Period,
}

/// Where a meter is: its device and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterPlace {
    pub device: DeviceId,
    pub region: RegionId,
}

/// Every meter of every kind (concentrators, CJ/T 188 gateways, MQTT groups) with its device and region, in
/// configuration order.
pub fn meter_places(regions: &[RegionSpec]) -> Vec<(MeterId, MeterPlace)> {
    let mut out = Vec::new();
    for r in regions {
        let place = |device: &DeviceId| MeterPlace { device: device.clone(), region: r.id.clone() };
        for d in &r.devices {
            if let crate::field::DeviceKindSpec::Concentrator(c) = &d.kind {
                out.extend(c.meters.iter().map(|m| (m.id.clone(), place(&d.id))));
            }
        }
        for g in &r.cjt188 {
            out.extend(g.meters.iter().map(|m| (m.id.clone(), place(&g.id))));
        }
        for g in &r.mqtt {
            out.extend(g.meters.iter().map(|m| (m.clone(), place(&g.id))));
        }
    }
    out
}

/// What the watch is configured with (`[usage]` and `[[zone]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct UsageSettings {
    pub abnormal: AbnormalRule,
    /// How many earlier same weekdays the mean is taken over.
    pub history_weeks: u32,
    /// The night window, local hours `start..end` (02..05).
    pub night_start_hour: u8,
    pub night_end_hour: u8,
    /// Litres an hour above which an hour of the night counts as flow.
    pub night_min_litres: i64,
    /// How long after a day's end it is evaluated (late readings first).
    pub settle: Duration,
    pub zones: Vec<Arc<ZoneSpec>>,
}

impl Default for UsageSettings {
    fn default() -> UsageSettings {
        UsageSettings {
            abnormal: AbnormalRule::default(),
            history_weeks: 8,
            night_start_hour: 2,
            night_end_hour: 5,
            night_min_litres: 10,
            settle: Duration::from_secs(15 * 60),
            zones: Vec::new(),
        }
    }
}

/// The local midnight starting the day of `ts`.
pub fn day_start(zone: &Zone, ts: Timestamp) -> Timestamp {
    let l = zone.to_local(ts.0);
    local(zone, l.year, l.month, l.day, 0).unwrap_or(ts)
}

/// The instant of local `year-month-day hour:00` (`None`: no such date).
pub fn local(zone: &Zone, year: i64, month: i64, day: i64, hour: i64) -> Option<Timestamp> {
    let t = LocalTime { year, month, day, hour, minute: 0, second: 0, millis: 0 };
    zone.to_instant(t).map(Timestamp)
}

/// The local midnight `days` days after the one starting at `start` (negative: before).
pub fn add_days(zone: &Zone, start: Timestamp, days: i64) -> Timestamp {
    let l = zone.to_local(start.0);
    let base = drivers::calendar::days_from_civil(l.year, l.month, l.day).unwrap_or(0) + days;
    match drivers::calendar::civil_from_days(base) {
        Some((y, m, d)) => local(zone, y, m, d, 0).unwrap_or(start),
        None => start,
    }
}

/// The local first of the month of `ts`, and `months` months after it.
pub fn month_start(zone: &Zone, ts: Timestamp, months: i64) -> Timestamp {
    let l = zone.to_local(ts.0);
    let index = l.year * 12 + (l.month - 1) + months;
    local(zone, index.div_euclid(12), index.rem_euclid(12) + 1, 1, 0).unwrap_or(ts)
}

/// Bucket widths the usage API and pages offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
    Month,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            "month" => Some(Bucket::Month),
            _ => None,
        }
    }
}

/// The bucket edges in `zone` from the bucket holding `from` to the one holding `to` (inclusive), at most
/// `max` buckets (the edges stop early).
pub fn bucket_edges(zone: &Zone, bucket: Bucket, from: Timestamp, to: Timestamp, max: usize) -> Vec<Timestamp> {
    let mut edges = Vec::new();
    let mut t = match bucket {
        Bucket::Hour => {
            let l = zone.to_local(from.0);
            local(zone, l.year, l.month, l.day, l.hour).filter(|t| *t <= from).unwrap_or(day_start(zone, from))
        }
        Bucket::Day => day_start(zone, from),
        Bucket::Month => month_start(zone, from, 0),
    };
    edges.push(t);
    while t <= to && edges.len() <= max {
        let next = match bucket {
            // An hour is an hour of elapsed time (a DST day has 23 or 25 of them).
            Bucket::Hour => t.plus_millis(3_600_000),
            Bucket::Day => add_days(zone, t, 1),
            Bucket::Month => month_start(zone, t, 1),
        };
        if next <= t {
            break;
        }
        t = next;
        edges.push(t);
    }
    edges
}

/// A stored reading as the usage model takes it (`None`: a volume that does not parse, never expected).
pub fn point(r: &StoredReading) -> Option<UsagePoint> {
    let m3: f64 = r.volume_m3.parse().ok()?;
    let volume = Volume::from_m3(m3).ok()?;
    let status = MeterStatus(r.status.iter().filter_map(|n| MeterStatus::flag_for(n)).fold(0, |a, f| a | f));
    Some(UsagePoint { ts: r.ts, volume, status })
}

/// The most readings read for one meter in one computation (a year of 15-minute readings).
pub const MAX_READINGS: usize = 40_000;

/// The rules of daily and monthly usage, and of hourly usage (which needs hourly readings).
pub fn rules_for(bucket: Bucket) -> UsageRules {
    match bucket {
        Bucket::Hour => UsageRules { max_gap_ms: crate::model::usage::HOURLY_MAX_GAP_MS, ..UsageRules::default() },
        Bucket::Day | Bucket::Month => UsageRules::default(),
    }
}

/// Meter places by id.
pub type Places = HashMap<MeterId, MeterPlace>;
