//! When polls are due: cycles aligned to wall-clock boundaries in the utility's time zone (issue 7 §4, DESIGN
//! §13), with an optional deterministic spread per device, and the time rules every polling actor is given.
//!
//! A 15-minute cycle falls on :00/:15/:30/:45 local time, 1 h on the hour, 1 d at local midnight, 2 h on even
//! hours counted from local midnight; a cycle that does not divide a day restarts its grid at every local
//! midnight (the day's last slot is shorter). A boundary is an instant at which the zone's wall clock shows a
//! grid time, so across a DST switch the polls follow the wall clock: spring forward skips the hour that does
//! not exist, fall back polls the repeated hour's grid times twice (a 15-minute cycle keeps polling every 15
//! minutes, a 1 d cycle is 23 or 25 hours long). Cycles longer than a day align to local midnight when they are
//! whole days (day numbers divisible by the cycle's days), and are not aligned otherwise.
//!
//! The functions here are pure (time is passed in); the actors read their injected clock and turn the result
//! into a tokio delay. This module deliberately does not schedule anything itself.

use std::time::Duration;

use drivers::calendar::{Zone, DAY_MS};

use crate::model::{TimePlausibility, Timestamp};

/// What every polling actor needs to know about time: the utility's zone, the spread of polls over a fleet,
/// and the plausibility limits of reading times. Resolved by configuration and passed in (no global).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRules {
    /// `[server] timezone`.
    pub zone: Zone,
    /// `defaults.spread`: each device polls this much after its boundary at most (0: on the boundary).
    pub spread: Duration,
    /// `defaults.future_tolerance` and `defaults.max_age`.
    pub plausibility: TimePlausibility,
}

impl Default for TimeRules {
    fn default() -> TimeRules {
        TimeRules { zone: Zone::default(), spread: Duration::ZERO, plausibility: TimePlausibility::default() }
    }
}

impl TimeRules {
    /// When a value of `cycle` polled by device `id` is next due after a tick that started at `now`: the next
    /// aligned boundary plus the device's spread offset. Boundaries closer than half a cycle (at most a second)
    /// after `now` are passed over, so a clock a little behind the timer never polls the same slot twice.
    pub fn next_due(&self, id: &str, cycle: Duration, now: Timestamp) -> Timestamp {
        let cycle_ms = millis(cycle);
        let guard = (cycle_ms / 2).min(1000);
        let offset = spread_offset(id, self.spread).min(cycle_ms.saturating_sub(1).max(0));
        let shifted = now.plus_millis(guard - offset);
        next_boundary(shifted, cycle, &self.zone).plus_millis(offset)
    }

    /// The tokio delay from `now` until [`TimeRules::next_due`].
    pub fn delay_until_next(&self, id: &str, cycle: Duration, now: Timestamp) -> Duration {
        let due = self.next_due(id, cycle, now);
        Duration::from_millis(u64::try_from(due.0.saturating_sub(now.0)).unwrap_or(0))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The first aligned boundary of `cycle` strictly after `now` in `zone` (see the module documentation).
pub fn next_boundary(now: Timestamp, cycle: Duration, zone: &Zone) -> Timestamp {
    let cycle_ms = millis(cycle);
    if cycle_ms <= 0 {
        return now.plus_millis(1);
    }
    if cycle_ms > DAY_MS && cycle_ms % DAY_MS != 0 {
        return now.plus_millis(cycle_ms);
    }
    let mut t = now.0.saturating_add(1);
    // Each round either returns or moves `t` to the next offset change; a cycle spans few of those.
    for _ in 0..16 {
        let offset = zone.offset_seconds_at(t) * 1000;
        let candidate = grid_at_or_after(t + offset, cycle_ms) - offset;
        match zone.next_transition_after(t) {
            Some(change) if change <= candidate => t = change,
            _ => return Timestamp(candidate),
        }
    }
    Timestamp(t)
}

/// The smallest wall-clock time (ms since 1970-01-01 00:00 on the wall) at or after `wall` on the grid.
fn grid_at_or_after(wall: i64, cycle_ms: i64) -> i64 {
    let day = wall.div_euclid(DAY_MS);
    if cycle_ms >= DAY_MS {
        let days = cycle_ms / DAY_MS;
        let first = if wall.rem_euclid(DAY_MS) == 0 { day } else { day + 1 };
        return (first + (days - first.rem_euclid(days)) % days) * DAY_MS;
    }
    let into_day = wall.rem_euclid(DAY_MS);
    let slot = (into_day + cycle_ms - 1) / cycle_ms * cycle_ms;
    day * DAY_MS + slot.min(DAY_MS)
}

/// The device's deterministic offset in `[0, spread)`: FNV-1a of its id, so it is the same after every restart
/// and on every build (std's hasher is neither).
pub fn spread_offset(id: &str, spread: Duration) -> i64 {
    let spread_ms = millis(spread);
    if spread_ms <= 0 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::try_from(hash % spread_ms.unsigned_abs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::calendar::LocalTime;

    fn at(zone: &Zone, (year, month, day): (i64, i64, i64), hour: i64, minute: i64, second: i64) -> Timestamp {
        let local = LocalTime { year, month, day, hour, minute, second, millis: 0 };
        Timestamp(zone.to_instant(local).expect("a valid local time"))
    }

    fn local(zone: &Zone, t: Timestamp) -> (i64, i64, i64, i64, i64, i64) {
        let l = zone.to_local(t.0);
        (l.year, l.month, l.day, l.hour, l.minute, l.second)
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn quarter_hours_hours_and_days_fall_on_local_boundaries() {
        let sh = Zone::named("Asia/Shanghai").expect("bundled");
        let now = at(&sh, (2026, 12, 3), 10, 7, 13);
        assert_eq!(local(&sh, next_boundary(now, 15 * MIN, &sh)), (2026, 12, 3, 10, 15, 0));
        assert_eq!(local(&sh, next_boundary(now, 60 * MIN, &sh)), (2026, 12, 3, 11, 0, 0));
        assert_eq!(local(&sh, next_boundary(now, 120 * MIN, &sh)), (2026, 12, 3, 12, 0, 0));
        assert_eq!(local(&sh, next_boundary(now, 24 * 60 * MIN, &sh)), (2026, 12, 4, 0, 0, 0));
        // Strictly after: a tick on the boundary is due one cycle later.
        let on = at(&sh, (2026, 12, 3), 10, 15, 0);
        assert_eq!(local(&sh, next_boundary(on, 15 * MIN, &sh)), (2026, 12, 3, 10, 30, 0));
        // Local midnight, not UTC midnight (which is 08:00 in Shanghai).
        assert_eq!(next_boundary(on, 24 * 60 * MIN, &sh).0 % DAY_MS, 16 * 3_600_000);
        // A cycle that does not divide a day starts again at midnight: 7 minutes, 23:55 → 00:00.
        let late = at(&sh, (2026, 12, 3), 23, 55, 0);
        assert_eq!(local(&sh, next_boundary(late, 7 * MIN, &sh)), (2026, 12, 4, 0, 0, 0));
    }

    #[test]
    fn month_and_year_ends_roll_over() {
        let sh = Zone::named("Asia/Shanghai").expect("bundled");
        let feb = at(&sh, (2028, 2, 28), 23, 50, 0);
        assert_eq!(local(&sh, next_boundary(feb, 15 * MIN, &sh)), (2028, 2, 29, 0, 0, 0), "leap day");
        let feb = at(&sh, (2026, 2, 28), 23, 50, 0);
        assert_eq!(local(&sh, next_boundary(feb, 15 * MIN, &sh)), (2026, 3, 1, 0, 0, 0));
        let nye = at(&sh, (2026, 12, 31), 23, 59, 59);
        assert_eq!(local(&sh, next_boundary(nye, 24 * 60 * MIN, &sh)), (2027, 1, 1, 0, 0, 0));
    }

    #[test]
    fn dst_switches_follow_the_wall_clock() {
        let berlin = Zone::named("Europe/Berlin").expect("bundled");
        // Spring forward, 2026-03-29 02:00 → 03:00: after 01:45 comes 03:00, one real quarter hour later.
        let before = at(&berlin, (2026, 3, 29), 1, 45, 0);
        let next = next_boundary(before, 15 * MIN, &berlin);
        assert_eq!(local(&berlin, next), (2026, 3, 29, 3, 0, 0));
        assert_eq!(next.0 - before.0, 15 * 60_000);
        // Hourly: 01:00 → 03:00 (02:00 does not exist), one real hour.
        let one = at(&berlin, (2026, 3, 29), 1, 0, 0);
        assert_eq!(local(&berlin, next_boundary(one, 60 * MIN, &berlin)), (2026, 3, 29, 3, 0, 0));
        // The day is 23 hours long: midnight to midnight.
        let midnight = at(&berlin, (2026, 3, 29), 0, 0, 0);
        let next_midnight = next_boundary(midnight, 24 * 60 * MIN, &berlin);
        assert_eq!(local(&berlin, next_midnight), (2026, 3, 30, 0, 0, 0));
        assert_eq!(next_midnight.0 - midnight.0, 23 * 3_600_000);
        // Fall back, 2026-10-25 03:00 → 02:00: the repeated hour is polled too, every real 15 minutes.
        let mut t = at(&berlin, (2026, 10, 25), 1, 45, 0);
        let mut seen = Vec::new();
        for _ in 0..10 {
            let n = next_boundary(t, 15 * MIN, &berlin);
            assert_eq!(n.0 - t.0, 15 * 60_000, "every real quarter hour");
            t = n;
            let (_, _, _, h, m, _) = local(&berlin, t);
            seen.push((h, m));
        }
        assert_eq!(&seen[..6], &[(2, 0), (2, 15), (2, 30), (2, 45), (2, 0), (2, 15)]);
        let midnight = at(&berlin, (2026, 10, 25), 0, 0, 0);
        assert_eq!(next_boundary(midnight, 24 * 60 * MIN, &berlin).0 - midnight.0, 25 * 3_600_000);
    }

    #[test]
    fn spread_is_deterministic_below_its_limit_and_spreads_a_fleet() {
        let spread = Duration::from_secs(300);
        assert_eq!(spread_offset("qs-c1", spread), spread_offset("qs-c1", spread));
        assert_eq!(spread_offset("qs-c1", Duration::ZERO), 0);
        let offsets: Vec<i64> = (0..500).map(|i| spread_offset(&format!("conc-{i}"), spread)).collect();
        assert!(offsets.iter().all(|o| (0..300_000).contains(o)));
        let distinct: std::collections::HashSet<i64> = offsets.iter().map(|o| o / 10_000).collect();
        assert!(distinct.len() >= 25, "500 devices land in most of the 30 ten-second bins: {}", distinct.len());
        // A known value, so that a change of the hash (and of every device's poll time) is noticed.
        assert_eq!(spread_offset("qs-c1", spread), 285_480);
    }

    #[test]
    fn next_due_adds_the_offset_and_never_repeats_a_slot() {
        let sh = Zone::named("Asia/Shanghai").expect("bundled");
        let rules = TimeRules { zone: sh.clone(), spread: Duration::from_secs(300), ..TimeRules::default() };
        let offset = spread_offset("dev", rules.spread);
        let now = at(&sh, (2026, 12, 3), 10, 7, 13);
        let due = rules.next_due("dev", 15 * MIN, now);
        assert_eq!(due.0, at(&sh, (2026, 12, 3), 10, 15, 0).0 + offset);
        // A timer that fired a little before the clock reached the slot does not poll it again.
        let early = Timestamp(due.0 - 20);
        assert_eq!(rules.next_due("dev", 15 * MIN, early).0, due.0 + 15 * 60_000);
        let plain = TimeRules { zone: sh.clone(), ..TimeRules::default() };
        assert_eq!(plain.delay_until_next("dev", 15 * MIN, now), Duration::from_secs(7 * 60 + 47));
    }
}
