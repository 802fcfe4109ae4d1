//! The plausibility check of cumulative meter volumes (issue 7 §4): a new reading compared with the meter's
//! previous reading flags a fall, a register wrap (rollover) and a likely meter swap, instead of letting them
//! pass as normal readings. The reading is always kept; the check only decides its flags
//! ([`MeterStatus::VOLUME_FELL`], [`MeterStatus::ROLLOVER`], [`MeterStatus::SUSPECTED_SWAP`] and
//! [`MeterStatus::NEEDS_REVIEW`]).
//!
//! **Usage computations must skip readings flagged `needs_review` until an operator reviewed them** (billing
//! adds the review action). A flagged reading still becomes the baseline of the next check: after a swap or a
//! wrap the register has moved for good, and comparing later readings with the old value would flag all of them.
//!
//! Pure: the previous reading, the register's modulus and the limits are passed in. What it deliberately does
//! not do: estimate usage, decide what a reviewer accepts, or look at more than one previous reading.
//!
//! The rule, for a new reading `v` at `t` after the previous `p` at `t0`, with `allowed` = the most the meter
//! can measure in `t - t0` (`max_flow × hours + slack`):
//! - no previous reading → normal; `t ≤ t0` (a late or repeated reading) → not checked;
//! - `v ≥ p`: normal, unless `v − p > allowed`: a jump the meter cannot have measured → suspected swap;
//! - `v < p`, and for a modulus `M` of the register (the configured one, or the next power of ten above `p`,
//!   at least 10⁴ m³, for a mechanical register of that many digits): `p ≥ 90 % of M`, `v ≤ 10 % of M` and
//!   `(M − p) + v ≤ allowed` → rollover;
//! - `v < p` by at least [`SWAP_MIN_FALL_LITRES`] to at most [`NEW_METER_MAX_LITRES`] → suspected swap
//!   (a new meter starts near zero);
//! - any other fall → volume fell.

use super::reading::{MeterStatus, Timestamp, Volume};

/// The highest flow assumed for a meter whose size is not known: 12.5 m³/h, the overload flow (Q4) of a DN32
/// meter, above any household meter (DN15 3.125, DN20 5, DN25 7.875 m³/h), so that a shop or a school on a
/// larger household meter is not flagged.
pub const DEFAULT_MAX_FLOW_LITRES_PER_HOUR: i64 = 12_500;
/// Added to the most a meter can measure between two readings, for reading-time jitter and rounding: 1 m³.
pub const DEFAULT_SLACK_LITRES: i64 = 1_000;
/// A fall to at most this volume (10 m³) looks like a new meter (new meters start at zero or a little test water).
pub const NEW_METER_MAX_LITRES: i64 = 10_000;
/// A fall of less than this (1 m³) to a small value is a fall, not a swap.
pub const SWAP_MIN_FALL_LITRES: i64 = 1_000;
/// The smallest modulus assumed for a register whose size is not known: a 4-digit register (10⁴ m³).
pub const MIN_DECADE_LITRES: i64 = 10_000_000;

/// How much a meter can measure; defaults are the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeLimits {
    pub max_flow_litres_per_hour: i64,
    pub slack_litres: i64,
}

impl Default for VolumeLimits {
    fn default() -> Self {
        VolumeLimits { max_flow_litres_per_hour: DEFAULT_MAX_FLOW_LITRES_PER_HOUR, slack_litres: DEFAULT_SLACK_LITRES }
    }
}

impl VolumeLimits {
    /// The most a meter can measure in `elapsed_ms`, in litres.
    pub(crate) fn allowed(&self, elapsed_ms: i64) -> i128 {
        i128::from(self.max_flow_litres_per_hour) * i128::from(elapsed_ms.max(0)) / 3_600_000
            + i128::from(self.slack_litres)
    }
}

/// What the check decided about a new reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeVerdict {
    /// Nothing to compare with, or a plausible rise.
    Normal,
    /// Not newer than the previous reading (a late or repeated one): not checked, and not a new baseline.
    NotNewer,
    /// The volume fell.
    Fell,
    /// The register wrapped from near its maximum to near zero.
    Rollover,
    /// A large fall to a small value that is not a wrap: likely a new meter.
    Swap,
    /// A rise the meter cannot have measured in the time: likely another meter or a misread.
    Jump,
}

impl VolumeVerdict {
    /// The status flags a reading with this verdict is stored with.
    pub fn flags(self) -> MeterStatus {
        let review = MeterStatus::NEEDS_REVIEW;
        MeterStatus(match self {
            VolumeVerdict::Normal | VolumeVerdict::NotNewer => 0,
            VolumeVerdict::Fell => MeterStatus::VOLUME_FELL | review,
            VolumeVerdict::Rollover => MeterStatus::ROLLOVER | review,
            VolumeVerdict::Swap => MeterStatus::VOLUME_FELL | MeterStatus::SUSPECTED_SWAP | review,
            VolumeVerdict::Jump => MeterStatus::SUSPECTED_SWAP | review,
        })
    }

    /// Whether the reading is flagged (stored as not normal).
    pub fn is_flagged(self) -> bool {
        self.flags().0 != 0
    }

    /// Whether the reading becomes the baseline of the meter's next check.
    pub fn is_new_baseline(self) -> bool {
        self != VolumeVerdict::NotNewer
    }

    /// A name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            VolumeVerdict::Normal => "normal",
            VolumeVerdict::NotNewer => "not_newer",
            VolumeVerdict::Fell => "volume_fell",
            VolumeVerdict::Rollover => "rollover",
            VolumeVerdict::Swap => "suspected_swap",
            VolumeVerdict::Jump => "implausible_jump",
        }
    }
}

/// The modulus assumed for a register whose size is not known, holding `p` litres: the next power of ten
/// above `p`, at least [`MIN_DECADE_LITRES`] (a mechanical register of that many digits).
pub(crate) fn assumed_modulus(p: i128) -> i128 {
    let mut m = i128::from(MIN_DECADE_LITRES);
    while m <= p {
        m *= 10;
    }
    m
}

/// Checks a new reading `(ts, volume)` against the meter's previous one. `register_modulus` is the first
/// volume the meter's register cannot show (e.g. 100 000 m³ for a 5-digit register), if known.
pub fn check(
    previous: Option<(Timestamp, Volume)>,
    ts: Timestamp,
    volume: Volume,
    register_modulus: Option<Volume>,
    limits: &VolumeLimits,
) -> VolumeVerdict {
    let Some((t0, p)) = previous else { return VolumeVerdict::Normal };
    if ts <= t0 {
        return VolumeVerdict::NotNewer;
    }
    let allowed = limits.allowed(ts.0.saturating_sub(t0.0));
    let (p, v) = (i128::from(p.litres()), i128::from(volume.litres()));
    if v >= p {
        return if v - p > allowed { VolumeVerdict::Jump } else { VolumeVerdict::Normal };
    }
    let decade = assumed_modulus(p);
    let wrapped = register_modulus
        .map(|m| i128::from(m.litres()))
        .into_iter()
        .chain([decade])
        .any(|m| p < m && p * 10 >= m * 9 && v * 10 <= m && (m - p) + v <= allowed);
    if wrapped {
        VolumeVerdict::Rollover
    } else if p - v >= i128::from(SWAP_MIN_FALL_LITRES) && v <= i128::from(NEW_METER_MAX_LITRES) {
        VolumeVerdict::Swap
    } else {
        VolumeVerdict::Fell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn m3(s: &str) -> Volume {
        Volume::from_m3(s.parse().expect("a number")).expect("a volume")
    }

    /// What a case says, its previous `(ms, m³)`, its new `(ms, m³)`, the register modulus and the verdict.
    type Case = (&'static str, Option<(i64, &'static str)>, (i64, &'static str), Option<&'static str>, VolumeVerdict);

    /// One case: previous `(ms, m³)`, new `(ms, m³)`, register modulus in m³.
    fn check_case(previous: Option<(i64, &str)>, new: (i64, &str), modulus: Option<&str>) -> VolumeVerdict {
        check(
            previous.map(|(t, v)| (Timestamp(t), m3(v))),
            Timestamp(new.0),
            m3(new.1),
            modulus.map(m3),
            &VolumeLimits::default(),
        )
    }

    #[test]
    fn the_volume_check_table() {
        use VolumeVerdict::*;
        let q = HOUR / 4;
        let cases: &[Case] = &[
            ("first reading", None, (q, "5.000"), None, Normal),
            ("a normal rise", Some((0, "100.000")), (q, "100.250"), None, Normal),
            ("no use", Some((0, "100.000")), (q, "100.000"), None, Normal),
            ("a late reading", Some((q, "100.000")), (0, "99.000"), None, NotNewer),
            ("a repeated reading", Some((q, "100.000")), (q, "100.000"), None, NotNewer),
            ("a fall of one litre", Some((0, "100.000")), (q, "99.999"), None, Fell),
            ("a fall to a large value", Some((0, "1800.000")), (q, "523.000"), None, Fell),
            ("a 5-digit register wraps", Some((0, "99999.999")), (q, "0.120"), None, Rollover),
            ("a configured register wraps", Some((0, "4294967.000")), (q, "0.200"), Some("4294967.296"), Rollover),
            ("a CJ/T 188 BCD register wraps", Some((0, "999999.50")), (q, "0.30"), Some("1000000"), Rollover),
            // Near the top of its decade, but 1 000 m³ in 15 minutes is not use: a swap, not a wrap.
            ("too much use for a wrap", Some((0, "99000.000")), (q, "0.500"), None, Swap),
            ("a new meter", Some((0, "1234.567")), (q, "0.004"), None, Swap),
            ("a fall of less than 1 m³ to a small value", Some((0, "0.800")), (q, "0.100"), None, Fell),
            // 12.5 m³/h × 0.25 h + 1 m³ = 4.125 m³ is the most in 15 minutes.
            ("the most a meter can measure", Some((0, "100.000")), (q, "104.125"), None, Normal),
            ("a litre beyond it", Some((0, "100.000")), (q, "104.126"), None, Jump),
            ("a jump to another meter's value", Some((0, "12.000")), (q, "3456.000"), None, Jump),
            ("a month offline allows a month's use", Some((0, "100.000")), (30 * 24 * HOUR, "400.000"), None, Normal),
        ];
        for (what, previous, new, modulus, want) in cases {
            assert_eq!(check_case(*previous, *new, *modulus), *want, "{what}");
        }
    }

    #[test]
    fn flags_of_each_verdict() {
        use VolumeVerdict::*;
        assert_eq!(Normal.flags().names(), Vec::<&str>::new());
        assert_eq!(NotNewer.flags().names(), Vec::<&str>::new());
        assert_eq!(Fell.flags().names(), vec!["volume_fell", "needs_review"]);
        assert_eq!(Rollover.flags().names(), vec!["rollover", "needs_review"]);
        assert_eq!(Swap.flags().names(), vec!["volume_fell", "suspected_swap", "needs_review"]);
        assert_eq!(Jump.flags().names(), vec!["suspected_swap", "needs_review"]);
        assert!(!NotNewer.is_new_baseline() && Swap.is_new_baseline());
        assert!(Jump.is_flagged() && !Normal.is_flagged());
    }
}
