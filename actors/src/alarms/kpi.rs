//! Alarm system performance (issue 9 §3; ISA-18.2 / EEMUA 191, DOMAIN.md §5): from the journal's activity
//! of a window ([`AlarmActivity`]) and the standing alarms, the figures an alarm-management review asks for,
//! against the usual targets. Pure: the records, the standing alarms, the window and "now" are passed in.
//!
//! - **Rate per operator position**: annunciations (transitions into `unacknowledged`) counted in 10-minute
//!   and hourly buckets aligned to the clock, average and peak, and the 10-minute buckets that were a flood
//!   (at least 10). Targets: about 1 per 10 minutes on average, fewer than 10 in any 10 minutes.
//! - **Standing** (condition holds, visible), **unacknowledged**, **stale** (standing for more than 24 h),
//!   **shelved**, **suppressed by design**, **out of service**: from the standing alarms, now.
//! - **Chattering**: an alarm activated at least 3 times within one minute; **frequent**: the 10 alarms
//!   activated most often in the window.
//!
//! **Positions.** A position is one operator's desk: the regions whose alarms that operator answers. By
//! default every region is one position ([`AlarmPositions::default`]): a county utility staffs one duty
//! operator per shift in one control room, and counting per region would divide that one person's load by
//! the number of regions and hide a flood. `[alarm_positions]` splits regions between desks where a utility
//! has several.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{Alarm, AlarmState, Priority, RegionId, Timestamp};
use crate::store::AlarmActivity;

/// Ten minutes, the ISA-18.2 rate bucket.
pub const TEN_MIN_MS: i64 = 600_000;
/// One hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Target: average annunciations per 10 minutes per position ("very likely acceptable", Bransby & Jenkinson).
pub const TARGET_AVG_PER_10MIN: f64 = 1.0;
/// Target: a 10-minute bucket with this many annunciations or more is a flood (EEMUA: 10 in 10 minutes).
pub const FLOOD_PER_10MIN: u32 = 10;
/// A standing alarm older than this is stale.
pub const STALE_AFTER_MS: i64 = 24 * HOUR_MS;
/// Chattering: this many activations of one alarm…
pub const CHATTER_COUNT: usize = 3;
/// …within this time.
pub const CHATTER_WITHIN_MS: i64 = 60_000;
/// How many alarms the "frequent" list names.
pub const TOP_FREQUENT: usize = 10;
/// At most this many stale or chattering alarms are listed (all are counted).
pub const MAX_LISTED: usize = 100;
/// The name of the one position when none are configured.
pub const DEFAULT_POSITION: &str = "control_room";

/// Operator positions: each a name and the regions it answers for. A region no position names belongs to
/// the first position (configuration refuses that; the default has one position for everything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmPositions {
    positions: Vec<(String, Vec<RegionId>)>,
}

impl Default for AlarmPositions {
    fn default() -> Self {
        AlarmPositions { positions: vec![(DEFAULT_POSITION.to_owned(), Vec::new())] }
    }
}

impl AlarmPositions {
    /// Positions as configured (at least one; an empty list is the default).
    pub fn new(positions: Vec<(String, Vec<RegionId>)>) -> AlarmPositions {
        if positions.is_empty() {
            AlarmPositions::default()
        } else {
            AlarmPositions { positions }
        }
    }

    /// The index of the position that answers for `region`.
    fn index_of(&self, region: &RegionId) -> usize {
        self.positions.iter().position(|(_, regions)| regions.contains(region)).unwrap_or(0)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.positions.iter().map(|(n, _)| n.as_str())
    }
}

/// The targets the figures are judged against (sent with them, so the page draws the same lines).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Targets {
    pub avg_per_10min: f64,
    pub flood_per_10min: u32,
    pub stale_after_ms: i64,
    pub chatter_count: usize,
    pub chatter_within_ms: i64,
}

/// One position's annunciation rate over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PositionKpi {
    pub name: String,
    /// The regions it answers for (empty: every region).
    pub regions: Vec<RegionId>,
    /// Annunciations in the window.
    pub total: u64,
    pub avg_per_10min: f64,
    pub peak_per_10min: u32,
    /// Start of the busiest 10 minutes (`None` without any annunciation).
    pub peak_10min_at: Option<Timestamp>,
    pub avg_per_hour: f64,
    pub peak_per_hour: u32,
    pub peak_hour_at: Option<Timestamp>,
    /// 10-minute buckets with at least [`FLOOD_PER_10MIN`] annunciations.
    pub floods: u32,
    /// Annunciations in the last 10 minutes and the last hour before `to`.
    pub last_10min: u32,
    pub last_hour: u32,
    /// Standing alarms of its regions now.
    pub standing: u32,
    /// Counts per 10-minute bucket, the first starting at [`AlarmKpi::buckets_from`].
    pub per_10min: Vec<u32>,
    /// Whether average and peak are within the targets.
    pub avg_ok: bool,
    pub peak_ok: bool,
}

/// One alarm among the stale, chattering or frequent ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmCount {
    /// The alarm's id (`class~device~detail`).
    pub id: String,
    pub class: &'static str,
    pub device: String,
    pub detail: String,
    pub region: RegionId,
    /// Activations in the window.
    pub activations: u32,
    /// The most activations within any one minute.
    pub max_per_minute: u32,
}

/// A standing alarm older than [`STALE_AFTER_MS`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StaleAlarm {
    pub id: String,
    pub region: RegionId,
    pub priority: Priority,
    pub state: AlarmState,
    pub raised_at: Timestamp,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmKpi {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Start of the first 10-minute bucket (the window's start, rounded down to 10 minutes).
    pub buckets_from: Timestamp,
    pub targets: Targets,
    pub positions: Vec<PositionKpi>,
    pub standing: u32,
    pub unacknowledged: u32,
    pub stale: u32,
    pub shelved: u32,
    pub suppressed: u32,
    pub out_of_service: u32,
    /// How many alarms chattered in the window (the list holds at most [`MAX_LISTED`]).
    pub chattering_count: u32,
    pub chattering: Vec<AlarmCount>,
    pub frequent: Vec<AlarmCount>,
    pub stale_alarms: Vec<StaleAlarm>,
    /// The journal scan stopped at its limit: the counts are lower bounds.
    pub truncated: bool,
}

/// Computes the report of the window `[from, to]`.
pub fn compute(
    positions: &AlarmPositions,
    activity: &AlarmActivity,
    standing: &[Alarm],
    from: Timestamp,
    to: Timestamp,
) -> AlarmKpi {
    let to = Timestamp(to.0.max(from.0));
    let buckets_from = from.0.div_euclid(TEN_MIN_MS) * TEN_MIN_MS;
    let n_buckets = usize::try_from((to.0 - buckets_from) / TEN_MIN_MS + 1).unwrap_or(1);
    let windows_10min = ((to.0 - from.0) as f64 / TEN_MIN_MS as f64).max(1.0);

    let n_pos = positions.positions.len();
    let mut buckets = vec![vec![0u32; n_buckets]; n_pos];
    let mut hours: Vec<HashMap<i64, u32>> = vec![HashMap::new(); n_pos];
    let mut last_10 = vec![0u32; n_pos];
    let mut last_h = vec![0u32; n_pos];
    let mut activations: HashMap<String, (&crate::model::AlarmKey, &RegionId, Vec<i64>)> = HashMap::new();
    for r in &activity.records {
        if r.annunciated {
            let p = positions.index_of(&r.region);
            let b = usize::try_from((r.at.0 - buckets_from) / TEN_MIN_MS).unwrap_or(0).min(n_buckets - 1);
            buckets[p][b] += 1;
            *hours[p].entry(r.at.0.div_euclid(HOUR_MS)).or_default() += 1;
            if r.at.0 > to.0 - TEN_MIN_MS {
                last_10[p] += 1;
            }
            if r.at.0 > to.0 - HOUR_MS {
                last_h[p] += 1;
            }
        }
        if r.activated {
            activations.entry(r.key.id()).or_insert_with(|| (&r.key, &r.region, Vec::new())).2.push(r.at.0);
        }
    }

    let mut standing_per = vec![0u32; n_pos];
    let (mut n_standing, mut unack, mut shelved, mut suppressed, mut oos) = (0, 0, 0, 0, 0);
    let mut stale_alarms = Vec::new();
    let mut stale = 0;
    for a in standing {
        match a.state {
            AlarmState::Shelved => shelved += 1,
            AlarmState::SuppressedByDesign => suppressed += 1,
            AlarmState::OutOfService => oos += 1,
            _ => {}
        }
        if a.state.unacknowledged() {
            unack += 1;
        }
        if a.active && !a.state.hidden() {
            n_standing += 1;
            standing_per[positions.index_of(&a.region)] += 1;
            let raised = a.raised_at.unwrap_or(a.since);
            if to.0 - raised.0 > STALE_AFTER_MS {
                stale += 1;
                stale_alarms.push(StaleAlarm {
                    id: a.key.id(),
                    region: a.region.clone(),
                    priority: a.priority,
                    state: a.state,
                    raised_at: raised,
                });
            }
        }
    }
    stale_alarms.sort_by_key(|s| s.raised_at);
    stale_alarms.truncate(MAX_LISTED);

    let mut counts: Vec<AlarmCount> = activations
        .into_iter()
        .map(|(id, (key, region, mut times))| {
            times.sort_unstable();
            AlarmCount {
                id,
                class: key.class.as_str(),
                device: key.device.to_string(),
                detail: key.detail.clone(),
                region: region.clone(),
                activations: u32::try_from(times.len()).unwrap_or(u32::MAX),
                max_per_minute: max_within(&times, CHATTER_WITHIN_MS),
            }
        })
        .collect();
    counts.sort_by(|a, b| b.activations.cmp(&a.activations).then_with(|| a.id.cmp(&b.id)));
    let frequent: Vec<AlarmCount> = counts.iter().take(TOP_FREQUENT).cloned().collect();
    let mut chattering: Vec<AlarmCount> =
        counts.into_iter().filter(|c| c.max_per_minute as usize >= CHATTER_COUNT).collect();
    chattering.sort_by(|a, b| b.max_per_minute.cmp(&a.max_per_minute).then_with(|| a.id.cmp(&b.id)));
    let chattering_count = u32::try_from(chattering.len()).unwrap_or(u32::MAX);
    chattering.truncate(MAX_LISTED);

    let hours_in_window = ((to.0 - from.0) as f64 / HOUR_MS as f64).max(1.0);
    let positions_kpi = positions
        .positions
        .iter()
        .enumerate()
        .map(|(p, (name, regions))| {
            let per_10min = std::mem::take(&mut buckets[p]);
            let total: u64 = per_10min.iter().map(|c| u64::from(*c)).sum();
            let (peak_i, peak) = per_10min
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, usize::MAX - i))
                .map_or((0, 0), |(i, c)| (i, *c));
            let (peak_hour, peak_h) =
                hours[p].iter().max_by_key(|(h, c)| (**c, -**h)).map_or((0, 0), |(h, c)| (*h, *c));
            let avg = total as f64 / windows_10min;
            PositionKpi {
                name: name.clone(),
                regions: regions.clone(),
                total,
                avg_per_10min: avg,
                peak_per_10min: peak,
                peak_10min_at: (peak > 0).then(|| Timestamp(buckets_from + peak_i as i64 * TEN_MIN_MS)),
                avg_per_hour: total as f64 / hours_in_window,
                peak_per_hour: peak_h,
                peak_hour_at: (peak_h > 0).then_some(Timestamp(peak_hour * HOUR_MS)),
                floods: u32::try_from(per_10min.iter().filter(|c| **c >= FLOOD_PER_10MIN).count()).unwrap_or(u32::MAX),
                last_10min: last_10[p],
                last_hour: last_h[p],
                standing: standing_per[p],
                avg_ok: avg <= TARGET_AVG_PER_10MIN,
                peak_ok: peak < FLOOD_PER_10MIN,
                per_10min,
            }
        })
        .collect();

    AlarmKpi {
        from,
        to,
        buckets_from: Timestamp(buckets_from),
        targets: Targets {
            avg_per_10min: TARGET_AVG_PER_10MIN,
            flood_per_10min: FLOOD_PER_10MIN,
            stale_after_ms: STALE_AFTER_MS,
            chatter_count: CHATTER_COUNT,
            chatter_within_ms: CHATTER_WITHIN_MS,
        },
        positions: positions_kpi,
        standing: n_standing,
        unacknowledged: unack,
        stale,
        shelved,
        suppressed,
        out_of_service: oos,
        chattering_count,
        chattering,
        frequent,
        stale_alarms,
        truncated: activity.truncated,
    }
}

/// The most of the sorted `times` inside any span of `within` (inclusive).
fn max_within(times: &[i64], within: i64) -> u32 {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while t - times[start] > within {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmClass, AlarmKey, DeviceId};
    use crate::store::ActivityRecord;

    const T0: i64 = 1_779_998_400_000; // an hour boundary

    fn rec(region: &str, device: &str, at: i64, annunciated: bool, activated: bool) -> ActivityRecord {
        ActivityRecord {
            at: Timestamp(at),
            region: RegionId::new(region),
            key: AlarmKey::new(AlarmClass::CommLost, &DeviceId::new(device), ""),
            annunciated,
            activated,
        }
    }

    fn alarm(region: &str, device: &str, state: AlarmState, active: bool, raised: i64) -> Alarm {
        let key = AlarmKey::new(AlarmClass::QualityLow, &DeviceId::new(device), "chlorine");
        let mut a = Alarm::new(key, RegionId::new(region), Priority::High, Timestamp(raised));
        a.state = state;
        a.active = active;
        a.raised_at = Some(Timestamp(raised));
        a
    }

    #[test]
    fn the_rate_peak_and_floods_are_found_per_position() {
        // One day; position "east" = r1, "west" = r2. East: one annunciation every 20 minutes (average 0.5 per
        // 10 min), plus a flood of 12 in the 10 minutes starting at T0 + 5 h. West: nothing but one.
        let positions = AlarmPositions::new(vec![
            ("east".into(), vec![RegionId::new("r1")]),
            ("west".into(), vec![RegionId::new("r2")]),
        ]);
        let mut records = Vec::new();
        for i in 0..72 {
            records.push(rec("r1", &format!("c{i}"), T0 + i * 2 * TEN_MIN_MS + 1_000, true, true));
        }
        let flood = T0 + 5 * HOUR_MS;
        for i in 0..12 {
            records.push(rec("r1", &format!("f{i}"), flood + 30_000 + i * 10_000, true, true));
        }
        records.push(rec("r2", "w", T0 + 100, true, true));
        records.push(rec("r2", "w", T0 + 200, false, true)); // behind a shelf: no annunciation
        let activity = AlarmActivity { records, truncated: false };
        let k = compute(&positions, &activity, &[], Timestamp(T0), Timestamp(T0 + 24 * HOUR_MS));
        let east = &k.positions[0];
        assert_eq!(east.total, 84);
        assert_eq!(east.peak_per_10min, 13, "the flood's bucket also holds one regular annunciation");
        assert_eq!(east.peak_10min_at, Some(Timestamp(flood)));
        assert_eq!(east.floods, 1);
        assert!(!east.peak_ok && east.avg_ok, "{east:?}");
        assert!((east.avg_per_10min - 84.0 / 144.0).abs() < 1e-9);
        assert_eq!(east.peak_per_hour, 15, "3 regular ones in that hour");
        assert_eq!(east.peak_hour_at, Some(Timestamp(flood)));
        assert_eq!(east.per_10min.len(), 145);
        assert_eq!(east.per_10min[30], 13);
        let west = &k.positions[1];
        assert_eq!((west.total, west.peak_per_10min, west.floods), (1, 1, 0));
        assert!(west.avg_ok && west.peak_ok);
        // The default: one position for every region.
        let k = compute(&AlarmPositions::default(), &activity, &[], Timestamp(T0), Timestamp(T0 + 24 * HOUR_MS));
        assert_eq!((k.positions.len(), k.positions[0].name.as_str(), k.positions[0].total), (1, "control_room", 85));
    }

    #[test]
    fn chattering_and_frequent_alarms_are_found() {
        // "chatty" activates 3 times within 50 s (chattering); "busy" 5 times, 5 minutes apart (frequent, not
        // chattering); "pair" twice within a minute (neither).
        let mut records = Vec::new();
        for s in [0, 20_000, 50_000] {
            records.push(rec("r1", "chatty", T0 + 600_000 + s, true, true));
        }
        for i in 0..5 {
            records.push(rec("r1", "busy", T0 + i * 300_000, true, true));
        }
        records.push(rec("r1", "pair", T0, true, true));
        records.push(rec("r1", "pair", T0 + 59_000, false, true));
        for i in 0..12 {
            records.push(rec("r1", &format!("once{i:02}"), T0 + i, true, true));
        }
        let activity = AlarmActivity { records, truncated: false };
        let k = compute(&AlarmPositions::default(), &activity, &[], Timestamp(T0), Timestamp(T0 + HOUR_MS));
        let chat: Vec<_> = k.chattering.iter().map(|c| (c.device.as_str(), c.max_per_minute)).collect();
        assert_eq!(chat, vec![("chatty", 3)]);
        assert_eq!(k.chattering_count, 1);
        let top: Vec<_> = k.frequent.iter().map(|c| (c.device.as_str(), c.activations)).take(3).collect();
        assert_eq!(top, vec![("busy", 5), ("chatty", 3), ("pair", 2)]);
        assert_eq!(k.frequent.len(), TOP_FREQUENT);
        assert_eq!(max_within(&[0, 60_000, 60_001, 120_001], 60_000), 2);
    }

    #[test]
    fn stale_standing_shelved_and_out_of_service_are_counted_now() {
        let now = T0 + 48 * HOUR_MS;
        let standing = vec![
            alarm("r1", "old", AlarmState::Acknowledged, true, now - 25 * HOUR_MS),
            alarm("r1", "new", AlarmState::Unacknowledged, true, now - HOUR_MS),
            alarm("r1", "rtn", AlarmState::ReturnedUnacknowledged, false, now - 30 * HOUR_MS),
            alarm("r1", "shelf", AlarmState::Shelved, true, now - 30 * HOUR_MS),
            alarm("r1", "oos", AlarmState::OutOfService, false, now - 30 * HOUR_MS),
            alarm("r1", "sup", AlarmState::SuppressedByDesign, true, now - 30 * HOUR_MS),
        ];
        let k = compute(
            &AlarmPositions::default(),
            &AlarmActivity::default(),
            &standing,
            Timestamp(now - HOUR_MS),
            Timestamp(now),
        );
        assert_eq!((k.standing, k.unacknowledged, k.stale), (2, 2, 1));
        assert_eq!((k.shelved, k.out_of_service, k.suppressed), (1, 1, 1));
        assert_eq!(k.stale_alarms[0].id, "quality_low~old~chlorine");
        assert_eq!(k.positions[0].standing, 2);
    }
}
