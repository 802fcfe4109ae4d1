//! The concentrator model: meter slots with a seeded daily use, a daily consumption profile, cumulative
//! volumes integrated lazily in one-minute steps, stable status flags, and how all that fills registers.
//!
//! Pure: time comes in as simulated Unix seconds, and nothing here reads a clock or touches a socket. It
//! deliberately does not model leaks, reverse flow, meter faults or valve commands; those status bits stay
//! clear, and a meter whose valve is closed simply uses no water.
//!
//! Determinism: the flow rate is constant within each minute of simulated time, aligned to the Unix epoch,
//! and depends only on the seed, the meter and that minute. A volume is summed minute by minute in the same
//! order whatever the read pattern, so the same seed, start and read time give the same bits.

use std::collections::BTreeMap;

use drivers::registers::{encode_bits, Function};

use super::spec::ConcentratorLayout;
use crate::rng::{hash2, unit, SplitMix64};

/// Simulated seconds per integration step; volumes are exact sums over these steps.
pub(crate) const STEP_SECONDS: f64 = 60.0;
/// Local time for the daily profile is China Standard Time, UTC+8.
const LOCAL_OFFSET_SECONDS: f64 = 8.0 * 3600.0;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// Relative household water use at local hour `h` (0 ≤ h < 24): a floor through the night with its minimum
/// around 02:00–04:00, a sharp morning peak near 07:00, a small midday bump and a broad evening peak near 19:00.
/// Not normalised; [`Concentrator::new`] divides by the daily mean.
fn daily_profile(h: f64) -> f64 {
    let bump = |centre: f64, width: f64| {
        // Circular distance, so the evening peak's tail reaches past midnight.
        let mut d = (h - centre).abs();
        if d > 12.0 {
            d = 24.0 - d;
        }
        (-0.5 * (d / width).powi(2)).exp()
    };
    0.12 + 1.7 * bump(7.0, 1.0) + 0.6 * bump(12.0, 1.5) + 1.4 * bump(19.0, 1.6)
}

/// Flow of meter `m` in m³ per simulated second during `step`; `profile_mean` normalises the daily profile.
fn rate(profile_mean: f64, m: &Meter, step: i64) -> f64 {
    if m.daily_m3 == 0.0 {
        return 0.0;
    }
    let t = step as f64 * STEP_SECONDS;
    let local_hour = (t + LOCAL_OFFSET_SECONDS).rem_euclid(SECONDS_PER_DAY) / 3600.0;
    // Noise between 0.5 and 1.5 (mean 1): nobody uses water in a perfectly smooth curve.
    let noise = 0.5 + unit(hash2(m.seed, step as u64));
    m.daily_m3 / SECONDS_PER_DAY * daily_profile(local_hour) / profile_mean * noise
}

/// One meter slot.
#[derive(Debug, Clone)]
struct Meter {
    /// Mean use in m³ per simulated day; 0 when the valve is closed.
    daily_m3: f64,
    /// Reading at simulator start, m³.
    initial_m3: f64,
    /// Key for this meter's per-minute noise.
    seed: u64,
    /// Raw status word.
    status: u32,
    /// The step up to whose start `cumulative_m3` has been summed; it only moves forward.
    step: i64,
    /// Volume at the start of `step`.
    cumulative_m3: f64,
}

/// The simulated state of one concentrator and its meters.
#[derive(Debug, Clone)]
pub(crate) struct Concentrator {
    layout: ConcentratorLayout,
    /// Simulated time at which every meter showed its initial reading.
    start: f64,
    /// The latest simulated time a volume was asked for; time never runs backwards for a meter.
    latest: f64,
    /// The step containing `start`, integrated as a partial step.
    first_step: i64,
    /// Mean of [`daily_profile`] over the day's steps, so that a meter's use averages its `daily_m3`.
    profile_mean: f64,
    meters: Vec<Meter>,
    /// The volume each silent meter (`ModbusFault::silent_meters`) last showed, served again while it is
    /// silent when the layout has no "no data" marker.
    frozen: BTreeMap<u16, f64>,
}

impl Concentrator {
    /// Creates the meters behind a concentrator from `seed`, with their initial readings at simulated time `start`.
    pub(crate) fn new(layout: ConcentratorLayout, seed: u64, start: f64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let bit = |name: &str| {
            layout.status_bits.iter().find(|(n, _)| n == name).map(|(_, b)| 1u32 << u32::from(*b)).unwrap_or(0)
        };
        let (battery_low, valve_closed, tamper) = (bit("battery_low"), bit("valve_closed"), bit("magnetic_tamper"));
        let tampered_slot = rng.below(u64::from(layout.meters));
        let meters = (0..layout.meters)
            .map(|slot| {
                // A few shops, schools or leaking homes use several times the household norm.
                let daily = if rng.next_f64() < 0.04 { rng.range(1.5, 5.0) } else { rng.range(0.15, 0.8) };
                let initial = (rng.range(50.0, 3000.0) * 1000.0).round() / 1000.0;
                let mut status = 0;
                if rng.next_f64() < 0.05 {
                    status |= battery_low;
                }
                let closed = rng.next_f64() < 0.02;
                if closed {
                    status |= valve_closed;
                }
                if u64::from(slot) == tampered_slot {
                    status |= tamper;
                }
                let step_after_start = (start / STEP_SECONDS).floor() as i64 + 1;
                Meter {
                    daily_m3: if closed { 0.0 } else { daily },
                    initial_m3: initial,
                    seed: rng.next_u64(),
                    status,
                    step: step_after_start,
                    cumulative_m3: f64::NAN,
                }
            })
            .collect();
        let steps_per_day = (SECONDS_PER_DAY / STEP_SECONDS) as usize;
        let profile_mean = (0..steps_per_day).map(|i| daily_profile(i as f64 * STEP_SECONDS / 3600.0)).sum::<f64>()
            / steps_per_day as f64;
        let first_step = (start / STEP_SECONDS).floor() as i64;
        let mut meters: Vec<Meter> = meters;
        // The first, partial step runs from `start` to the next whole minute.
        for m in &mut meters {
            m.cumulative_m3 = m.initial_m3 + rate(profile_mean, m, first_step) * (m.step as f64 * STEP_SECONDS - start);
        }
        Concentrator { layout, start, latest: start, first_step, profile_mean, meters, frozen: BTreeMap::new() }
    }

    /// How many meter slots it has.
    pub(crate) fn meters(&self) -> u16 {
        self.layout.meters
    }

    /// The cumulative volume of `slot` at simulated time `t`, in m³. `None` when there is no such slot.
    ///
    /// Never falls: a `t` earlier than one already seen (two reads racing for the lock) counts as the latest
    /// time seen, and every step adds a non-negative amount.
    pub(crate) fn volume(&mut self, slot: u16, t: f64) -> Option<f64> {
        if let Some(d) = self.layout.district.filter(|d| d.slot == slot) {
            // A master meter: what every other slot used since the start, and the leak on top.
            let initial = self.meters.get(usize::from(slot))?.initial_m3;
            let mut used = 0.0;
            for s in (0..self.layout.meters).filter(|s| *s != slot) {
                let start = self.meters.get(usize::from(s)).map_or(0.0, |m| m.initial_m3);
                used += self.volume(s, t).map_or(0.0, |v| v - start);
            }
            return Some(initial + used / (1.0 - d.leak.clamp(0.0, 0.99)));
        }
        let t = t.max(self.latest);
        self.latest = t;
        let (first_step, start, profile_mean) = (self.first_step, self.start, self.profile_mean);
        let m = self.meters.get_mut(usize::from(slot))?;
        if t < m.step as f64 * STEP_SECONDS {
            // Still inside the partial first step, which `new` summed only to its end.
            return Some(m.initial_m3 + rate(profile_mean, m, first_step) * (t - start));
        }
        while (m.step + 1) as f64 * STEP_SECONDS <= t {
            m.cumulative_m3 += rate(profile_mean, m, m.step) * STEP_SECONDS;
            m.step += 1;
        }
        Some(m.cumulative_m3 + rate(profile_mean, m, m.step) * (t - m.step as f64 * STEP_SECONDS))
    }

    /// The raw status word of `slot`.
    pub(crate) fn status(&self, slot: u16) -> Option<u32> {
        self.meters.get(usize::from(slot)).map(|m| m.status)
    }

    /// Sets or clears the status bit called `name` (the layout's `status_bits`) of the meter in `slot`, as a
    /// meter that starts or stops reporting it; false for an unknown slot or a name the layout has no bit for.
    pub(crate) fn set_status_flag(&mut self, slot: u16, name: &str, on: bool) -> bool {
        let Some(bit) = self.layout.status_bits.iter().find(|(n, _)| n == name).map(|(_, b)| 1u32 << u32::from(*b))
        else {
            return false;
        };
        let Some(m) = self.meters.get_mut(usize::from(slot)) else { return false };
        if on {
            m.status |= bit;
        } else {
            m.status &= !bit;
        }
        true
    }

    /// Fills the registers this concentrator serves for `function` in the range starting at `start`.
    ///
    /// Every register inside a meter slot's block is served: the volume and status fields with their values,
    /// the rest of the block as 0 (reserved words of a real device). Registers outside every block stay `None`.
    /// A slot in `silent` (its meter does not answer the concentrator) is served with the layout's "no data"
    /// marker (the volume pattern, and the status bit set), or without one with the volume it showed when it
    /// fell silent.
    pub(crate) fn fill(&mut self, function: Function, start: u16, out: &mut [Option<u16>], t: f64, silent: &[u16]) {
        if function != self.layout.function || out.is_empty() {
            return;
        }
        let (base, stride) = (u32::from(self.layout.base), u32::from(self.layout.stride));
        let first = u32::from(start);
        let end = first + out.len() as u32;
        let blocks_end = base + u32::from(self.layout.meters) * stride;
        if end <= base || first >= blocks_end {
            return;
        }
        let first_slot = first.saturating_sub(base) / stride;
        let last_slot = (end.min(blocks_end) - 1 - base) / stride;
        for slot in first_slot..=last_slot {
            // Slots fit in u16 because the layout was checked to end within the address space.
            let Ok(slot) = u16::try_from(slot) else { break };
            let slot_base = base + u32::from(slot) * stride;
            let mut block = vec![0u16; usize::from(self.layout.stride)];
            let mut volume = self.volume(slot, t).unwrap_or(0.0);
            let is_silent = silent.contains(&slot);
            if is_silent {
                volume = *self.frozen.entry(slot).or_insert(volume);
            } else {
                self.frozen.remove(&slot);
            }
            let v = self.layout.volume;
            let words = match self.layout.no_data {
                Some(bits) if is_silent => encode_bits(bits, v.data_type, v.word_order),
                _ => v.register_spec(function, 0).encode(volume),
            };
            block[usize::from(v.offset)..usize::from(v.offset) + words.len()].copy_from_slice(&words);
            if let Some(s) = self.layout.status {
                let mut raw = self.status(slot).unwrap_or(0);
                if let (Some(bit), true) = (self.layout.no_data_bit, is_silent) {
                    raw |= 1 << bit;
                }
                let words = s.register_spec(function, 0).encode(f64::from(raw) * s.scale);
                block[usize::from(s.offset)..usize::from(s.offset) + words.len()].copy_from_slice(&words);
            }
            for (i, word) in block.into_iter().enumerate() {
                let address = slot_base + i as u32;
                if (first..end).contains(&address) {
                    out[(address - first) as usize] = Some(word);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::spec::FieldSpec;
    use drivers::registers::{DataType, WordOrder};

    /// 2026-03-01 00:00:00 UTC, a Sunday; any fixed time works.
    const T0: f64 = 1_772_323_200.0;

    fn layout(meters: u16) -> ConcentratorLayout {
        ConcentratorLayout {
            meters,
            function: Function::Holding,
            base: 100,
            stride: 4,
            volume: FieldSpec { offset: 0, data_type: DataType::U32, word_order: WordOrder::Abcd, scale: 0.001 },
            status: Some(FieldSpec { offset: 2, data_type: DataType::U16, word_order: WordOrder::Abcd, scale: 1.0 }),
            status_bits: vec![
                ("valve_closed".to_owned(), 0),
                ("battery_low".to_owned(), 1),
                ("magnetic_tamper".to_owned(), 2),
            ],
            no_data: None,
            no_data_bit: None,
            district: None,
        }
    }

    #[test]
    fn profile_has_a_night_minimum_and_two_peaks() {
        let p: Vec<f64> = (0..24).map(|h| daily_profile(f64::from(h))).collect();
        let min_hour = (0..24).min_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap_or(0);
        assert!((2..=4).contains(&min_hour), "minimum at {min_hour}");
        assert!(p[7] > p[5] && p[7] > p[10], "morning peak");
        assert!(p[19] > p[16] && p[19] > p[22], "evening peak");
    }

    #[test]
    fn meters_are_seeded_and_plausible() {
        let c = Concentrator::new(layout(400), 42, T0);
        let again = Concentrator::new(layout(400), 42, T0);
        let other = Concentrator::new(layout(400), 43, T0);
        assert!(c.meters.iter().zip(&again.meters).all(|(a, b)| a.initial_m3 == b.initial_m3 && a.status == b.status));
        assert!(c.meters.iter().zip(&other.meters).any(|(a, b)| a.initial_m3 != b.initial_m3));
        assert!(c.meters.iter().all(|m| (50.0..=3000.0).contains(&m.initial_m3)));
        let normal = c.meters.iter().filter(|m| (0.15..0.8).contains(&m.daily_m3)).count();
        assert!(normal > 350, "{normal} of 400 meters use a household amount");
        let with = |bit: u32| c.meters.iter().filter(|m| m.status & (1 << bit) != 0).count();
        assert!((8..=40).contains(&with(1)), "battery_low on {} meters", with(1));
        assert!(with(0) <= 20, "valve_closed on {} meters", with(0));
        assert_eq!(with(2), 1, "exactly one magnetic tamper");
        assert!(c.meters.iter().filter(|m| m.status & 1 != 0).all(|m| m.daily_m3 == 0.0));
    }

    #[test]
    fn a_district_slot_measures_the_others_and_the_leak() {
        let district = Some(super::super::spec::DistrictMeter { slot: 4, leak: 0.2 });
        let mut c = Concentrator::new(ConcentratorLayout { district, ..layout(5) }, 11, T0);
        let start: Vec<f64> = (0..5u16).map(|s| c.volume(s, T0).unwrap_or(0.0)).collect();
        let end = T0 + 3.0 * SECONDS_PER_DAY;
        let used: Vec<f64> = (0..5u16).map(|s| c.volume(s, end).unwrap_or(0.0) - start[usize::from(s)]).collect();
        let members: f64 = used[..4].iter().sum();
        assert!(members > 0.0);
        let rate = (used[4] - members) / used[4];
        assert!((rate - 0.2).abs() < 1e-9, "leakage rate {rate}");
    }

    #[test]
    fn volume_is_the_same_whatever_the_read_pattern() {
        let mut often = Concentrator::new(layout(5), 7, T0 + 17.5);
        let mut once = often.clone();
        let end = T0 + 2.0 * SECONDS_PER_DAY + 13.25;
        let mut last = 0.0;
        let mut t = T0;
        while t < end {
            let v = often.volume(3, t).unwrap_or(f64::NAN);
            assert!(v >= last, "volume fell from {last} to {v} at {t}");
            last = v;
            t += 37.3;
        }
        assert_eq!(often.volume(3, end), once.volume(3, end));
        assert_eq!(often.volume(3, end), once.volume(3, end), "reading twice changes nothing");
        assert!(often.volume(5, end).is_none());
    }

    #[test]
    fn daily_use_matches_the_seeded_mean() {
        let mut c = Concentrator::new(layout(50), 9, T0);
        let days = 20.0;
        for slot in 0..50u16 {
            let daily = c.meters[usize::from(slot)].daily_m3;
            let used =
                c.volume(slot, T0 + days * SECONDS_PER_DAY).unwrap_or(0.0) - c.meters[usize::from(slot)].initial_m3;
            assert!((used - daily * days).abs() <= 0.05 * daily * days + 1e-9, "slot {slot}: {used} vs {daily}/day");
        }
    }

    #[test]
    fn night_use_is_below_the_morning_peak() {
        let mut c = Concentrator::new(layout(50), 3, T0);
        // 03:00 and 07:00 China time are 19:00 and 23:00 UTC of the previous day.
        let hour = |h: f64| T0 + SECONDS_PER_DAY + (h - 8.0) * 3600.0;
        // Time only runs forward for a concentrator, so read every meter at the start of the hour first.
        let used = |c: &mut Concentrator, from: f64| -> f64 {
            let before: Vec<f64> = (0..50u16).map(|s| c.volume(s, from).unwrap_or(0.0)).collect();
            (0..50u16).map(|s| c.volume(s, from + 3600.0).unwrap_or(0.0) - before[usize::from(s)]).sum()
        };
        let night = used(&mut c, hour(3.0));
        let morning = used(&mut c, hour(7.0) - 1800.0);
        assert!(morning > 5.0 * night, "night {night}, morning {morning}");
    }

    #[test]
    fn a_silent_meter_is_served_as_no_data_or_frozen() {
        let words = |c: &mut Concentrator, t: f64, silent: &[u16]| -> Vec<u16> {
            let mut out = vec![None; 8];
            c.fill(Function::Holding, 100, &mut out, t, silent);
            out.into_iter().map(|w| w.unwrap_or(0xDEAD)).collect()
        };
        let marked = ConcentratorLayout { no_data: Some(0xFFFF_FFFF), no_data_bit: Some(15), ..layout(2) };
        let mut c = Concentrator::new(marked, 1, T0);
        let w = words(&mut c, T0 + 60.0, &[1]);
        assert_ne!(&w[0..2], &[0xFFFF, 0xFFFF], "slot 0 answers");
        assert_eq!(w[2] & 0x8000, 0);
        assert_eq!((&w[4..6], w[6] & 0x8000), (&[0xFFFF, 0xFFFF][..], 0x8000), "slot 1 is marked no data");
        // Without a marker, the silent slot keeps the volume it showed when it fell silent.
        let mut c = Concentrator::new(layout(2), 1, T0);
        let first = words(&mut c, T0 + 60.0, &[1]);
        let later = words(&mut c, T0 + 6000.0, &[1]);
        assert_eq!(&later[4..6], &first[4..6]);
        assert_ne!(&later[0..2], &first[0..2], "slot 0 goes on");
        let again = words(&mut c, T0 + 9000.0, &[]);
        assert_ne!(&again[4..6], &first[4..6], "slot 1 answers again with its current volume");
    }

    #[test]
    fn fill_serves_blocks_and_leaves_the_rest_empty() {
        let mut c = Concentrator::new(layout(3), 1, T0);
        // Registers 98..=113: two below the map, slots 0..3 (100..112), one above.
        let mut out = vec![None; 15];
        c.fill(Function::Holding, 98, &mut out, T0 + 60.0, &[]);
        assert_eq!(&out[..2], &[None, None]);
        assert!(out[2..14].iter().all(Option::is_some));
        assert_eq!(out[14], None);
        let words: Vec<u16> = out[2..4].iter().map(|w| w.unwrap_or(0)).collect();
        let litres = f64::from(u32::from(words[0]) << 16 | u32::from(words[1]));
        let truth = c.volume(0, T0 + 60.0).unwrap_or(0.0);
        assert!((litres / 1000.0 - truth).abs() <= 0.0005, "{litres} l vs {truth} m3");
        assert_eq!(out[5], Some(0), "reserved word of slot 0");
        let mut input = vec![None; 4];
        c.fill(Function::Input, 100, &mut input, T0, &[]);
        assert!(input.iter().all(Option::is_none), "function 4 is not in this map");
    }
}
