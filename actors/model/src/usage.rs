//! Water used, from cumulative meter readings (issue 9 §1, R-B1, R-B2, R-B5): the usage of a meter per bucket
//! (an hour, a day, a month: the caller passes the bucket edges, computed in the utility's time zone, DESIGN
//! §13), and the rules on top of it: abnormal usage against the meter's own history, continuous night flow,
//! and a zone's leakage rate.
//!
//! **How usage is attributed.** Between two consecutive usable readings `(t0, p)` and `(t1, v)` the meter
//! measured `v − p`; it is spread over `t0..t1` in proportion to time (each bucket gets the part of the
//! interval inside it, in whole litres, rounded so that the parts add up to exactly `v − p`). So a day's usage
//! read hourly is the sum of its hours, and a bucket edge between two readings splits their difference.
//!
//! **Coverage.** Each bucket says how many of its milliseconds lie inside such an interval. An interval is
//! not counted (a gap) when it is longer than `max_gap_ms`, when the volume fell and that is not a register
//! wrap, or when it rose more than the meter can measure in the time. So a gap in the data is never read as
//! zero use: a bucket with coverage below 1 is incomplete, and the rules below decide nothing from it.
//!
//! **Skipped readings.** Readings flagged `needs_review` by the volume check (falls, rollovers, suspected
//! swaps) and readings dated implausibly are skipped until reviewed; the interval then spans from the reading
//! before them to the one after. A wrap across a skipped rollover reading counts as `(M − p) + v` for the
//! register's modulus `M` (configured, or assumed as the volume check assumes it) when it passes the same
//! test as there; a swap across skipped readings is a fall or a jump, so a gap.
//!
//! Pure: readings, edges and rules are passed in. What it deliberately does not do: read the store, know a
//! time zone, or decide which meters belong to a zone.

use super::reading::{MeterStatus, Timestamp, Volume};
use super::volume_check::{assumed_modulus, VolumeLimits};

/// One cumulative reading, as the usage computation needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsagePoint {
    pub ts: Timestamp,
    pub volume: Volume,
    pub status: MeterStatus,
}

impl UsagePoint {
    /// Whether usage may be computed from this reading: not waiting for review, plausibly dated.
    pub fn usable(&self) -> bool {
        !self.status.needs_review() && !self.status.time_implausible()
    }
}

/// How readings turn into usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRules {
    /// How much the meter can measure (a rise beyond it is not use).
    pub limits: VolumeLimits,
    /// The first volume the register cannot show, if known.
    pub modulus: Option<Volume>,
    /// The longest interval between two readings whose difference is still attributed.
    pub max_gap_ms: i64,
}

/// A day and two hours: meters read once a day still cover every day.
pub const DEFAULT_MAX_GAP_MS: i64 = 26 * 3_600_000;

/// An hour and a quarter: hourly buckets need hourly readings (a day's reading spread over 24 hours would
/// look like flow in every hour of the night).
pub const HOURLY_MAX_GAP_MS: i64 = 75 * 60_000;

impl Default for UsageRules {
    fn default() -> UsageRules {
        UsageRules { limits: VolumeLimits::default(), modulus: None, max_gap_ms: DEFAULT_MAX_GAP_MS }
    }
}

/// The usage of one bucket `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketUsage {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Litres attributed to the bucket.
    pub litres: i64,
    /// Milliseconds of the bucket inside an attributed interval.
    pub covered_ms: i64,
}

impl BucketUsage {
    pub fn length_ms(&self) -> i64 {
        self.end.0.saturating_sub(self.start.0).max(0)
    }

    /// The share of the bucket that had readings on both sides, 0 to 1.
    pub fn coverage(&self) -> f64 {
        let len = self.length_ms();
        if len == 0 {
            return 0.0;
        }
        self.covered_ms as f64 / len as f64
    }

    /// Whether every millisecond of the bucket is covered: only then is `litres` the bucket's whole use.
    pub fn complete(&self) -> bool {
        self.length_ms() > 0 && self.covered_ms >= self.length_ms()
    }
}

/// What the meter measured from `p` to `v` over `elapsed_ms`, if that is use (see the module documentation).
fn measured(p: Volume, v: Volume, elapsed_ms: i64, rules: &UsageRules) -> Option<i64> {
    let allowed = rules.limits.allowed(elapsed_ms);
    let (p, v) = (i128::from(p.litres()), i128::from(v.litres()));
    let used = if v >= p {
        v - p
    } else {
        rules
            .modulus
            .map(|m| i128::from(m.litres()))
            .into_iter()
            .chain([assumed_modulus(p)])
            .find(|&m| p < m && p * 10 >= m * 9 && v * 10 <= m)
            .map(|m| (m - p) + v)?
    };
    (used <= allowed).then(|| i64::try_from(used).ok()).flatten()
}

/// The usage per bucket of a meter's readings. `edges` are the bucket boundaries in increasing order (n + 1
/// edges give n buckets); `points` need not be sorted. Readings that are not [`UsagePoint::usable`] are
/// skipped, and of several readings at one instant the first is kept.
pub fn bucket_usage(points: &[UsagePoint], edges: &[Timestamp], rules: &UsageRules) -> Vec<BucketUsage> {
    let mut out: Vec<BucketUsage> =
        edges.windows(2).map(|w| BucketUsage { start: w[0], end: w[1], litres: 0, covered_ms: 0 }).collect();
    if out.is_empty() {
        return out;
    }
    let mut usable: Vec<UsagePoint> = points.iter().filter(|p| p.usable()).copied().collect();
    usable.sort_by_key(|p| p.ts);
    usable.dedup_by_key(|p| p.ts);
    for pair in usable.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let span = b.ts.0 - a.ts.0;
        if span > rules.max_gap_ms {
            continue;
        }
        let Some(used) = measured(a.volume, b.volume, span, rules) else { continue };
        // The litres used from `a.ts` to `t`, rounded down; parts of the interval telescope to `used`.
        let upto = |t: i64| -> i64 {
            let num = i128::from(used) * i128::from(t - a.ts.0) / i128::from(span);
            i64::try_from(num).unwrap_or(i64::MAX)
        };
        let first = out.partition_point(|bk| bk.end <= a.ts);
        for bucket in out[first..].iter_mut() {
            if bucket.start >= b.ts {
                break;
            }
            let lo = bucket.start.0.max(a.ts.0);
            let hi = bucket.end.0.min(b.ts.0);
            if hi <= lo {
                continue;
            }
            bucket.litres += upto(hi) - upto(lo);
            bucket.covered_ms += hi - lo;
        }
    }
    out
}

/// The usage of one bucket `from..to` (see [`bucket_usage`]).
pub fn usage_between(points: &[UsagePoint], from: Timestamp, to: Timestamp, rules: &UsageRules) -> BucketUsage {
    bucket_usage(points, &[from, to], rules).pop().unwrap_or(BucketUsage {
        start: from,
        end: to,
        litres: 0,
        covered_ms: 0,
    })
}

/// When a meter's usage is abnormal (R-B2): more than `1 + ratio` times its own mean over comparable past
/// windows (the same weekday in earlier weeks, say), given enough of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AbnormalRule {
    /// 0.30: more than 30 % above the mean.
    pub ratio: f64,
    /// The fewest complete past windows the mean may be taken over; fewer → no verdict.
    pub min_history: usize,
    /// Usage of at most this many litres is never abnormal (a meter that is nearly unused).
    pub min_litres: i64,
}

impl Default for AbnormalRule {
    fn default() -> AbnormalRule {
        AbnormalRule { ratio: 0.30, min_history: 4, min_litres: 100 }
    }
}

/// The verdict on one window's usage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AbnormalVerdict {
    pub abnormal: bool,
    /// The mean of the past windows, litres.
    pub mean_litres: f64,
    /// The usage above which the window is abnormal, litres.
    pub limit_litres: f64,
}

impl AbnormalRule {
    /// Judges `current` (complete) against the usage of past windows (`None` where a window was incomplete);
    /// `None` when fewer than `min_history` past windows are complete.
    pub fn judge(&self, current: i64, history: &[Option<i64>]) -> Option<AbnormalVerdict> {
        let known: Vec<i64> = history.iter().flatten().copied().collect();
        if known.len() < self.min_history.max(1) {
            return None;
        }
        let mean_litres = known.iter().map(|&l| l as f64).sum::<f64>() / known.len() as f64;
        let limit_litres = mean_litres * (1.0 + self.ratio);
        let abnormal = current > self.min_litres && current as f64 > limit_litres;
        Some(AbnormalVerdict { abnormal, mean_litres, limit_litres })
    }
}

/// Continuous night flow (a suspected leak behind the meter, DOMAIN §6): every hour of the night window used
/// more than `min_litres`. `None` when an hour is incomplete (no verdict from a gap).
pub fn night_flow(hours: &[BucketUsage], min_litres: i64) -> Option<bool> {
    if hours.is_empty() || hours.iter().any(|h| !h.complete()) {
        return None;
    }
    Some(hours.iter().all(|h| h.litres > min_litres))
}

/// A zone's leakage rate for a period (R-B5, CJJ 92-2016 综合漏损率 over a zone): (master − Σ members) /
/// master. `None` when the masters measured nothing. Negative when the members measured more (a meter
/// error or a wrongly drawn zone), kept so it shows.
pub fn leakage_rate(master_litres: i64, members_litres: i64) -> Option<f64> {
    if master_litres <= 0 {
        return None;
    }
    Some((master_litres - members_litres) as f64 / master_litres as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn pt(h: i64, litres: i64) -> UsagePoint {
        UsagePoint { ts: Timestamp(h * HOUR), volume: Volume::from_litres(litres), status: MeterStatus(0) }
    }

    fn hours(n: i64) -> Vec<Timestamp> {
        (0..=n).map(|h| Timestamp(h * HOUR)).collect()
    }

    fn litres(b: &[BucketUsage]) -> Vec<i64> {
        b.iter().map(|b| b.litres).collect()
    }

    #[test]
    fn hourly_readings_give_each_hour_its_difference() {
        let points = [pt(0, 1000), pt(1, 1100), pt(2, 1100), pt(3, 1350)];
        let b = bucket_usage(&points, &hours(3), &UsageRules::default());
        assert_eq!(litres(&b), vec![100, 0, 250]);
        assert!(b.iter().all(BucketUsage::complete), "zero use with readings on both sides is complete");
    }

    #[test]
    fn an_interval_across_an_edge_is_split_by_time() {
        // 300 L from 00:30 to 03:30: 50 L in the first hour's half, 100 L each in the next two, 50 L after.
        let points = [
            UsagePoint { ts: Timestamp(HOUR / 2), ..pt(0, 0) },
            UsagePoint { ts: Timestamp(3 * HOUR + HOUR / 2), ..pt(0, 300) },
        ];
        let b = bucket_usage(&points, &hours(4), &UsageRules::default());
        assert_eq!(litres(&b), vec![50, 100, 100, 50]);
        assert_eq!(b[0].covered_ms, HOUR / 2);
        assert!(!b[0].complete() && b[1].complete() && !b[3].complete());
        assert!((b[0].coverage() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_gap_is_not_zero_use() {
        let points = [pt(0, 0), pt(1, 10), pt(40, 500), pt(41, 520)];
        let b =
            bucket_usage(&points, &[Timestamp(0), Timestamp(24 * HOUR), Timestamp(48 * HOUR)], &UsageRules::default());
        assert_eq!(litres(&b), vec![10, 20]);
        assert!(!b[0].complete() && !b[1].complete(), "39 hours without readings exceed the gap");
        assert_eq!(b[0].covered_ms, HOUR);
        let hourly = UsageRules { max_gap_ms: HOURLY_MAX_GAP_MS, ..UsageRules::default() };
        let daily = [pt(0, 0), pt(24, 240)];
        assert_eq!(bucket_usage(&daily, &hours(24), &hourly).iter().map(|b| b.covered_ms).sum::<i64>(), 0);
        assert!(bucket_usage(&daily, &hours(24), &UsageRules::default()).iter().all(BucketUsage::complete));
    }

    #[test]
    fn flagged_readings_are_skipped() {
        let mut bad = pt(1, 9_000_000);
        bad.status = MeterStatus(MeterStatus::SUSPECTED_SWAP | MeterStatus::NEEDS_REVIEW);
        let mut future = pt(2, 5);
        future.status = MeterStatus(MeterStatus::TIME_FUTURE);
        let points = [pt(0, 1000), bad, future, pt(3, 1300)];
        let b = bucket_usage(&points, &hours(3), &UsageRules::default());
        assert_eq!(litres(&b), vec![100, 100, 100], "bridged from 00:00 to 03:00");
        assert!(b.iter().all(BucketUsage::complete));
    }

    #[test]
    fn a_register_wrap_counts_what_was_used() {
        // A 5-digit register: 99 999.900 m³ → (rollover flagged) 0.050 → 0.150 m³.
        let mut wrap = pt(1, 50);
        wrap.status = MeterStatus(MeterStatus::ROLLOVER | MeterStatus::NEEDS_REVIEW);
        let points = [pt(0, 99_999_900), wrap, pt(2, 150)];
        let b = bucket_usage(&points, &hours(2), &UsageRules::default());
        assert_eq!(b.iter().map(|b| b.litres).sum::<i64>(), 250);
        assert!(b.iter().all(BucketUsage::complete));
        // A configured 4 294 967.296 m³ register.
        let rules = UsageRules { modulus: Some(Volume::from_litres(4_294_967_296)), ..UsageRules::default() };
        let b = bucket_usage(&[pt(0, 4_294_967_000), pt(1, 200)], &hours(1), &rules);
        assert_eq!(litres(&b), vec![496]);
    }

    #[test]
    fn falls_and_jumps_are_gaps() {
        let swapped = [pt(0, 1_234_567), pt(1, 4), pt(2, 30)];
        let b = bucket_usage(&swapped, &hours(2), &UsageRules::default());
        assert_eq!(litres(&b), vec![0, 26]);
        assert!(!b[0].complete() && b[1].complete(), "a fall to a new meter is no use");
        let jumped = [pt(0, 12_000), pt(1, 3_456_000)];
        assert_eq!(bucket_usage(&jumped, &hours(1), &UsageRules::default())[0].covered_ms, 0);
    }

    #[test]
    fn out_of_order_and_repeated_readings() {
        let points = [pt(2, 300), pt(0, 100), pt(1, 200), pt(1, 200)];
        assert_eq!(litres(&bucket_usage(&points, &hours(2), &UsageRules::default())), vec![100, 100]);
        assert!(bucket_usage(&points, &[Timestamp(0)], &UsageRules::default()).is_empty());
        assert_eq!(usage_between(&[], Timestamp(0), Timestamp(HOUR), &UsageRules::default()).covered_ms, 0);
    }

    /// A small deterministic generator (the model crate has no dependencies to draw from).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn property_buckets_add_up_to_the_register_difference() {
        let mut rng = Lcg(7);
        for case in 0..500 {
            let mut t = rng.next(2 * HOUR as u64) as i64;
            let mut v = rng.next(1_000_000) as i64;
            let mut points =
                vec![UsagePoint { ts: Timestamp(t), volume: Volume::from_litres(v), status: MeterStatus(0) }];
            for _ in 0..1 + rng.next(40) {
                let dt = 1 + rng.next(2 * HOUR as u64) as i64;
                t += dt;
                v += rng.next((dt * 12_500 / HOUR) as u64 + 1) as i64;
                points.push(UsagePoint { ts: Timestamp(t), volume: Volume::from_litres(v), status: MeterStatus(0) });
            }
            // Random edges covering every reading, some between them.
            let (first, last) = (points[0].ts.0, t);
            let mut edges = vec![first - rng.next(HOUR as u64) as i64, last + 1 + rng.next(HOUR as u64) as i64];
            for _ in 0..rng.next(30) {
                edges.push(first + rng.next((last - first + 1) as u64) as i64);
            }
            edges.sort_unstable();
            edges.dedup();
            let edges: Vec<Timestamp> = edges.into_iter().map(Timestamp).collect();
            let b = bucket_usage(&points, &edges, &UsageRules::default());
            let total: i64 = b.iter().map(|b| b.litres).sum();
            assert_eq!(total, v - points[0].volume.litres(), "case {case}");
            assert_eq!(b.iter().map(|b| b.covered_ms).sum::<i64>(), last - first, "case {case}");
            assert!(b.iter().all(|b| b.litres >= 0 && b.covered_ms <= b.length_ms()), "case {case}");
            // Splitting a bucket in two never changes the sum of its halves.
            for bk in b.iter().filter(|b| b.length_ms() > 1) {
                let mid = Timestamp(bk.start.0 + bk.length_ms() / 2);
                let halves = bucket_usage(&points, &[bk.start, mid, bk.end], &UsageRules::default());
                assert_eq!(halves[0].litres + halves[1].litres, bk.litres, "case {case}");
            }
        }
    }

    #[test]
    fn abnormal_usage_against_the_mean() {
        let rule = AbnormalRule::default();
        let week = [Some(1000), Some(1000), Some(1000), Some(1000)];
        assert!(rule.judge(1400, &week).unwrap().abnormal, "40 % above");
        assert!(!rule.judge(1200, &week).unwrap().abnormal, "20 % above");
        assert!(!rule.judge(1300, &week).unwrap().abnormal, "exactly 30 % is not more than 30 %");
        assert_eq!(rule.judge(5000, &[Some(1000), None, None, Some(1000)]), None, "too little history");
        let quiet = [Some(10), Some(10), Some(10), Some(10)];
        assert!(!rule.judge(90, &quiet).unwrap().abnormal, "below the floor");
        let v = rule.judge(1400, &week).unwrap();
        assert!((v.mean_litres - 1000.0).abs() < 1e-9 && (v.limit_litres - 1300.0).abs() < 1e-9);
    }

    #[test]
    fn night_flow_needs_every_hour() {
        let h = |l, covered| BucketUsage { start: Timestamp(0), end: Timestamp(HOUR), litres: l, covered_ms: covered };
        assert_eq!(night_flow(&[h(20, HOUR), h(15, HOUR), h(30, HOUR)], 10), Some(true));
        assert_eq!(night_flow(&[h(20, HOUR), h(0, HOUR), h(30, HOUR)], 10), Some(false));
        assert_eq!(night_flow(&[h(20, HOUR), h(20, HOUR / 2)], 10), None);
        assert_eq!(night_flow(&[], 10), None);
    }

    #[test]
    fn leakage_rate_of_a_zone() {
        assert_eq!(leakage_rate(10_000, 8_000), Some(0.2));
        assert_eq!(leakage_rate(10_000, 11_000), Some(-0.1));
        assert_eq!(leakage_rate(0, 5), None);
    }
}
