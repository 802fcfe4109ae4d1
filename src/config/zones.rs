//! `[usage]` (the rules of abnormal usage and night flow, R-B2) and `[[zone]]` (zones with master meters and
//! their leakage threshold, R-B5), issue 9 §1. Resolved after the regions, since zones name their meters,
//! devices and regions.
//!
//! ```toml
//! [usage]
//! abnormal_percent = 30     # a day's use more than 30 % above the mean of the same weekday
//! history_weeks = 8         # … over the previous 8 weeks
//! min_history = 4           # … of which at least 4 had complete data
//! abnormal_min_m3 = 0.1     # a day's use up to this is never abnormal
//! night_start = 2           # night flow: every hour from 02:00 …
//! night_end = 5             # … to 05:00 local used more than
//! night_min_m3 = 0.01       # … 10 litres
//! settle = "15m"            # a day is evaluated this long after local midnight
//!
//! [[zone]]
//! id = "east"
//! name = "东区"
//! masters = ["EAST-IN"]     # master (district) meters: what flowed in
//! meters = ["M1", "M2"]     # member meters, and/or
//! devices = ["c1"]          # … every meter of these devices, and/or
//! regions = ["r1"]          # … every meter of these regions (masters of the zone excluded)
//! threshold = 12            # leakage rate alarm above 12 % (CJJ 92-2016 level 2)
//! period = "day"            # or "month"
//! ```
//!
//! Checks: zone ids (syntax, unique), at least one master, every named meter, device and region known, no
//! meter a member of two zones, no master also named as a member of its zone, a zone with members, the
//! numbers in range.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actors::alarms::usage::{meter_places, MeterPlace, Period, UsageSettings, ZoneSpec};
use actors::model::{AbnormalRule, MeterId};
use actors::tree::RegionSpec;
use serde::Deserialize;

use super::problems::{valid_id, Check};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsage {
    abnormal_percent: Option<f64>,
    history_weeks: Option<u32>,
    min_history: Option<u32>,
    abnormal_min_m3: Option<f64>,
    night_start: Option<u8>,
    night_end: Option<u8>,
    night_min_m3: Option<f64>,
    settle: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    id: String,
    name: Option<String>,
    #[serde(default)]
    masters: Vec<String>,
    #[serde(default)]
    meters: Vec<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    /// Percent.
    threshold: Option<f64>,
    period: Option<String>,
}

/// The default leakage threshold, percent: CJJ 92-2016's level 2 (DOMAIN §6).
const DEFAULT_THRESHOLD_PERCENT: f64 = 12.0;

/// Litres of a non-negative m³ value at `key` (a problem otherwise).
fn litres(check: &mut Check, key: &str, m3: Option<f64>, default: i64) -> i64 {
    match m3 {
        None => default,
        Some(v) if v.is_finite() && (0.0..=1e6).contains(&v) => (v * 1000.0).round() as i64,
        Some(v) => {
            check.add(key, format!("{v} is out of range 0–1000000 m³"));
            default
        }
    }
}

/// `[usage]` and every `[[zone]]`.
pub(super) fn resolve_usage(
    check: &mut Check,
    raw: Option<&RawUsage>,
    zones: &[RawZone],
    regions: &[RegionSpec],
) -> UsageSettings {
    let d = UsageSettings::default();
    let empty = RawUsage::default();
    let u = raw.unwrap_or(&empty);
    let ratio = match u.abnormal_percent {
        None => d.abnormal.ratio,
        Some(p) if p.is_finite() && p > 0.0 && p <= 1000.0 => p / 100.0,
        Some(p) => {
            check.add("usage.abnormal_percent", format!("{p} is out of range (more than 0, at most 1000)"));
            d.abnormal.ratio
        }
    };
    let history_weeks = u.history_weeks.unwrap_or(d.history_weeks);
    if !(1..=52).contains(&history_weeks) {
        check.add("usage.history_weeks", format!("{history_weeks} is out of range 1–52"));
    }
    let min_history = u.min_history.unwrap_or(d.abnormal.min_history as u32);
    if min_history == 0 || min_history > history_weeks {
        check.add("usage.min_history", format!("{min_history} must be at least 1 and at most history_weeks"));
    }
    let (night_start_hour, night_end_hour) =
        (u.night_start.unwrap_or(d.night_start_hour), u.night_end.unwrap_or(d.night_end_hour));
    if night_start_hour >= night_end_hour || night_end_hour > 24 {
        check.add("usage.night_end", "the night window needs 0 ≤ night_start < night_end ≤ 24 (local hours)");
    }
    let settle = check.duration("usage.settle", u.settle.as_ref(), d.settle);
    if settle > Duration::from_secs(12 * 3600) {
        check.add("usage.settle", "must be at most 12h");
    }
    let abnormal = AbnormalRule {
        ratio,
        min_history: min_history as usize,
        min_litres: litres(check, "usage.abnormal_min_m3", u.abnormal_min_m3, d.abnormal.min_litres),
    };
    let night_min_litres = litres(check, "usage.night_min_m3", u.night_min_m3, d.night_min_litres);
    let zones = resolve_zones(check, zones, regions);
    UsageSettings { abnormal, history_weeks, night_start_hour, night_end_hour, night_min_litres, settle, zones }
}

fn resolve_zones(check: &mut Check, raw: &[RawZone], regions: &[RegionSpec]) -> Vec<Arc<ZoneSpec>> {
    let places: Vec<(MeterId, MeterPlace)> = meter_places(regions);
    let known: HashMap<&str, &MeterPlace> = places.iter().map(|(m, p)| (m.as_str(), p)).collect();
    let mut ids = HashSet::new();
    // Member meter → the zone it is a member of.
    let mut member_of: HashMap<MeterId, String> = HashMap::new();
    let mut out = Vec::new();
    for (zi, z) in raw.iter().enumerate() {
        let key = format!("zone[{zi}] ({})", z.id);
        if !valid_id(&z.id) {
            check.add(format!("{key}.id"), "ids are 1-64 letters, digits, '-', '_' or '.'");
        }
        if !ids.insert(z.id.clone()) {
            check.add(format!("{key}.id"), format!("zone id {:?} is used twice", z.id));
        }
        if z.masters.is_empty() {
            check.add(format!("{key}.masters"), "a zone needs at least one master (district) meter");
        }
        let mut masters = Vec::new();
        for m in &z.masters {
            match known.get(m.as_str()) {
                Some(_) if masters.iter().any(|x: &MeterId| x.as_str() == m) => {
                    check.add(format!("{key}.masters"), format!("meter {m:?} is named twice"))
                }
                Some(_) => masters.push(MeterId::new(m.clone())),
                None => check.add(format!("{key}.masters"), format!("no meter {m:?} is configured")),
            }
        }
        let mut members: Vec<MeterId> = Vec::new();
        for m in &z.meters {
            if z.masters.contains(m) {
                check.add(format!("{key}.meters"), format!("meter {m:?} is a master of this zone"));
            } else if known.contains_key(m.as_str()) {
                members.push(MeterId::new(m.clone()));
            } else {
                check.add(format!("{key}.meters"), format!("no meter {m:?} is configured"));
            }
        }
        for d in &z.devices {
            let of: Vec<&MeterId> = places.iter().filter(|(_, p)| p.device.as_str() == d).map(|(m, _)| m).collect();
            if of.is_empty() {
                check.add(format!("{key}.devices"), format!("no device {d:?} with meters is configured"));
            }
            members.extend(of.into_iter().filter(|m| !masters.contains(m)).cloned());
        }
        for r in &z.regions {
            if !regions.iter().any(|x| x.id.as_str() == r) {
                check.add(format!("{key}.regions"), format!("no region {r:?} is configured"));
            }
            let of = places.iter().filter(|(_, p)| p.region.as_str() == r).map(|(m, _)| m);
            members.extend(of.filter(|m| !masters.contains(m)).cloned());
        }
        let mut seen = HashSet::new();
        members.retain(|m| seen.insert(m.clone()));
        if members.is_empty() && !(z.meters.is_empty() && z.devices.is_empty() && z.regions.is_empty()) {
            check.add(format!("{key}.meters"), "the zone has no member meters besides its masters");
        } else if members.is_empty() {
            check.add(format!("{key}.meters"), "a zone needs member meters (meters, devices or regions)");
        }
        for m in &members {
            if let Some(other) = member_of.insert(m.clone(), z.id.clone()) {
                if other != z.id {
                    check.add(
                        format!("{key}.meters"),
                        format!("meter {:?} is also a member of zone {other:?}", m.as_str()),
                    );
                }
            }
        }
        let threshold = match z.threshold {
            None => DEFAULT_THRESHOLD_PERCENT,
            Some(t) if t.is_finite() && t > 0.0 && t < 100.0 => t,
            Some(t) => {
                check.add(format!("{key}.threshold"), format!("{t} % is out of range (more than 0, less than 100)"));
                DEFAULT_THRESHOLD_PERCENT
            }
        };
        let period = match z.period.as_deref() {
            None => Period::Day,
            Some(p) => Period::parse(p).unwrap_or_else(|| {
                check.add(format!("{key}.period"), format!("{p:?} is not \"day\" or \"month\""));
                Period::Day
            }),
        };
        let Some(first) = masters.first().and_then(|m| known.get(m.as_str())) else { continue };
        out.push(Arc::new(ZoneSpec {
            id: z.id.clone(),
            name: z.name.clone().unwrap_or_else(|| z.id.clone()),
            region: first.region.clone(),
            masters,
            members,
            threshold: threshold / 100.0,
            period,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, problems, MINIMAL};

    /// MINIMAL has concentrator c1 (meters M1, M2) in region r1; add c2 (M3, MASTER) in r2.
    fn with(zones: &str) -> String {
        format!(
            "{MINIMAL}[[region]]\nid = \"r2\"\n[[region.concentrator]]\nid = \"c2\"\naddress = \"10.0.0.6:502\"\n\
             model = \"ww-concentrator-v1\"\nmeters = [\"M3\", \"MASTER\"]\n{zones}"
        )
    }

    #[test]
    fn a_zone_resolves_its_members() {
        let text = with(
            "[[zone]]\nid = \"z1\"\nmasters = [\"MASTER\"]\nregions = [\"r2\"]\nmeters = [\"M1\"]\nthreshold = 15\n\
             period = \"month\"\n",
        );
        let c = parse("test.toml", &text, None).expect("valid");
        let z = &c.tree.usage.zones[0];
        let members: Vec<&str> = z.members.iter().map(|m| m.as_str()).collect();
        assert_eq!(members, vec!["M1", "M3"], "the master is not a member of its own region's zone");
        assert_eq!(z.region.as_str(), "r2");
        assert!((z.threshold - 0.15).abs() < 1e-9);
        assert_eq!(z.period, actors::alarms::usage::Period::Month);
        let d = parse("test.toml", &with(""), None).expect("valid");
        assert!(d.tree.usage.zones.is_empty());
        assert!((d.tree.usage.abnormal.ratio - 0.30).abs() < 1e-9, "30 % by default (R-B2)");
    }

    #[test]
    fn zone_problems() {
        check(
            &with("[[zone]]\nid = \"z1\"\nmasters = [\"NOPE\"]\nmeters = [\"M9\"]\ndevices = [\"c9\"]\nregions = [\"r9\"]\n"),
            &[
                "zone[0] (z1).masters: no meter \"NOPE\" is configured",
                "zone[0] (z1).meters: no meter \"M9\" is configured",
                "zone[0] (z1).devices: no device \"c9\" with meters is configured",
                "zone[0] (z1).regions: no region \"r9\" is configured",
            ],
        );
        check(
            &with("[[zone]]\nid = \"z1\"\nmasters = [\"MASTER\"]\nmeters = [\"MASTER\", \"M1\"]\n"),
            &["zone[0] (z1).meters: meter \"MASTER\" is a master of this zone"],
        );
        check(
            &with(
                "[[zone]]\nid = \"z1\"\nmasters = [\"MASTER\"]\nmeters = [\"M1\"]\n\
                 [[zone]]\nid = \"z2\"\nmasters = [\"M3\"]\ndevices = [\"c1\"]\n",
            ),
            &["zone[1] (z2).meters: meter \"M1\" is also a member of zone \"z1\""],
        );
        check(
            &with("[[zone]]\nid = \"z1\"\nmeters = [\"M1\"]\n"),
            &["zone[0] (z1).masters: a zone needs at least one master"],
        );
        check(
            &with("[[zone]]\nid = \"z1\"\nmasters = [\"MASTER\"]\n"),
            &["zone[0] (z1).meters: a zone needs member meters"],
        );
        check(
            &with("[[zone]]\nid = \"z 1\"\nmasters = [\"MASTER\"]\nmeters = [\"M1\"]\nthreshold = 100\nperiod = \"week\"\n"),
            &["zone[0] (z 1).id: ids are", "threshold: 100 % is out of range", "period: \"week\" is not"],
        );
        check(
            &with("[[zone]]\nid = \"z1\"\nmasters = [\"MASTER\"]\nmeters = [\"M1\"]\n[[zone]]\nid = \"z1\"\nmasters = [\"M3\"]\nmeters = [\"M2\"]\n"),
            &["zone[1] (z1).id: zone id \"z1\" is used twice"],
        );
        check(
            &with("[usage]\nabnormal_percent = 0\nhistory_weeks = 2\nmin_history = 3\nnight_start = 5\nnight_end = 2\nnight_min_m3 = -1\n"),
            &[
                "usage.abnormal_percent: 0 is out of range",
                "usage.min_history: 3 must be at least 1 and at most history_weeks",
                "usage.night_end: the night window needs",
                "usage.night_min_m3: -1 is out of range",
            ],
        );
        check(&with("[usage]\nnight = 3\n"), &["unknown field `night`"]);
        assert!(problems(&with("[usage]\nabnormal_percent = 40\nnight_min_m3 = 0.02\n")).is_empty());
    }
}
