//! The water-quality logger model: per parameter a nominal value chosen by name, slow drift and small noise,
//! kept inside physical bounds, and how the values fill registers.
//!
//! Pure: time comes in as simulated Unix seconds. Values are a function of seed, parameter and time only, so
//! they are reproducible. It deliberately does not model sensor failures or calibration; forced values
//! (`ModbusFault::values`) are the way to show an out-of-range reading.

use std::collections::BTreeMap;

use drivers::registers::Function;

use super::spec::SimParameter;
use crate::rng::{fnv1a, hash2, unit, SplitMix64};

/// Noise changes every this many simulated seconds, like a sensor's update interval.
const NOISE_SECONDS: f64 = 5.0;
/// Periods of the two drift components, simulated seconds.
const DRIFT_SLOW_SECONDS: f64 = 6.0 * 3600.0;
const DRIFT_FAST_SECONDS: f64 = 47.0 * 60.0;

/// What a parameter's value looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Behaviour {
    pub(crate) nominal: f64,
    /// Largest departure from nominal through drift.
    pub(crate) drift: f64,
    /// Largest departure through noise, on top of drift.
    pub(crate) noise: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// The behaviour of a parameter, chosen by its name (case-insensitive, a few common aliases).
pub(crate) fn behaviour(name: &str) -> Behaviour {
    let b = |nominal: f64, drift: f64, noise: f64, max: f64| Behaviour { nominal, drift, noise, min: 0.0, max };
    match name.to_ascii_lowercase().as_str() {
        "free_chlorine" | "chlorine" | "residual_chlorine" => b(0.5, 0.08, 0.01, 5.0),
        "turbidity" => b(0.3, 0.08, 0.02, 4000.0),
        "ph" => b(7.2, 0.15, 0.02, 14.0),
        "dissolved_oxygen" | "do" => b(8.0, 0.4, 0.05, 20.0),
        "ammonia" | "ammonia_nitrogen" | "nh3" => b(0.12, 0.03, 0.005, 100.0),
        "lead" => b(0.003, 0.0008, 0.0001, 10.0),
        "cadmium" => b(0.001, 0.0003, 0.00005, 10.0),
        "arsenic" => b(0.002, 0.0005, 0.0001, 10.0),
        "mercury" => b(0.0002, 0.00005, 0.00001, 10.0),
        "chromium6" | "chromium_vi" | "cr6" => b(0.01, 0.002, 0.0005, 10.0),
        "temperature" | "temp" | "water_temperature" => b(15.0, 1.5, 0.05, 40.0),
        "conductivity" | "ec" => b(350.0, 15.0, 2.0, 10_000.0),
        _ => b(1.0, 0.05, 0.01, f64::MAX),
    }
}

/// One parameter as simulated.
#[derive(Debug, Clone)]
struct Parameter {
    spec: SimParameter,
    behaviour: Behaviour,
    /// Key for this parameter's noise.
    seed: u64,
    /// Drift phases in radians, so that parameters do not drift in step.
    phases: (f64, f64),
    /// The value last served (as the client decodes it), `None` before the first read.
    last_served: Option<f64>,
}

/// The simulated state of one water-quality logger.
#[derive(Debug, Clone)]
pub(crate) struct Logger {
    parameters: Vec<Parameter>,
}

impl Logger {
    pub(crate) fn new(parameters: Vec<SimParameter>, seed: u64) -> Self {
        let parameters = parameters
            .into_iter()
            .map(|spec| {
                let mut rng = SplitMix64::new(hash2(seed, fnv1a(spec.name.as_bytes())));
                let tau = std::f64::consts::TAU;
                Parameter {
                    behaviour: behaviour(&spec.name),
                    seed: rng.next_u64(),
                    phases: (rng.range(0.0, tau), rng.range(0.0, tau)),
                    last_served: None,
                    spec,
                }
            })
            .collect();
        Logger { parameters }
    }

    /// The parameter names, in spec order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.parameters.iter().map(|p| p.spec.name.as_str())
    }

    /// The value last served for `name`; `None` for an unknown name or before the first read of it.
    pub(crate) fn last_served(&self, name: &str) -> Option<f64> {
        self.parameters.iter().find(|p| p.spec.name == name).and_then(|p| p.last_served)
    }

    /// Fills the registers of every parameter read with `function` in the range starting at `start`, using
    /// `forced` values where given. Registers of no parameter stay `None`.
    pub(crate) fn fill(
        &mut self,
        function: Function,
        start: u16,
        out: &mut [Option<u16>],
        t: f64,
        forced: &BTreeMap<String, f64>,
    ) {
        let first = u32::from(start);
        let end = first + out.len() as u32;
        for p in self.parameters.iter_mut().filter(|p| p.spec.spec.function == function) {
            let spec = p.spec.spec;
            let p_first = u32::from(spec.address);
            let p_end = p_first + u32::from(spec.data_type.register_count());
            if p_end <= first || p_first >= end {
                continue;
            }
            let value = forced.get(&p.spec.name).copied().unwrap_or_else(|| value_at(p, t));
            let words = spec.encode(value);
            for (i, word) in words.iter().enumerate() {
                let address = p_first + i as u32;
                if (first..end).contains(&address) {
                    out[(address - first) as usize] = Some(*word);
                }
            }
            if first <= p_first && p_end <= end {
                // What the client decodes, so tests and the control API compare like with like. A forced
                // value beyond an integer type's range is served saturated, and is recorded as such.
                p.last_served = spec.decode(&words).ok();
            }
        }
    }
}

/// The simulated value of `p` at `t`: nominal plus drift plus noise, clamped to the physical bounds.
fn value_at(p: &Parameter, t: f64) -> f64 {
    let b = p.behaviour;
    let tau = std::f64::consts::TAU;
    let drift = 0.7 * (tau * t / DRIFT_SLOW_SECONDS + p.phases.0).sin()
        + 0.3 * (tau * t / DRIFT_FAST_SECONDS + p.phases.1).sin();
    let tick = (t / NOISE_SECONDS).floor() as i64;
    let noise = 2.0 * unit(hash2(p.seed, tick as u64)) - 1.0;
    (b.nominal + b.drift * drift + b.noise * noise).clamp(b.min, b.max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::registers::{DataType, RegisterSpec, WordOrder};

    const T0: f64 = 1_772_323_200.0;

    fn parameter(name: &str, address: u16, data_type: DataType, scale: f64) -> SimParameter {
        SimParameter {
            name: name.to_owned(),
            spec: RegisterSpec { function: Function::Input, address, data_type, word_order: WordOrder::Cdab, scale },
        }
    }

    #[test]
    fn every_named_parameter_stays_near_nominal_and_in_bounds() {
        let names = [
            "free_chlorine",
            "turbidity",
            "ph",
            "dissolved_oxygen",
            "ammonia",
            "lead",
            "cadmium",
            "arsenic",
            "mercury",
            "chromium6",
            "temperature",
            "conductivity",
            "something_else",
        ];
        let specs = names.iter().enumerate().map(|(i, n)| parameter(n, 2 * i as u16, DataType::F32, 1.0)).collect();
        let logger = Logger::new(specs, 5);
        for p in &logger.parameters {
            let b = p.behaviour;
            assert!(b.drift + b.noise < b.nominal, "{} could go negative", p.spec.name);
            for k in 0..2000 {
                let v = value_at(p, T0 + f64::from(k) * 97.0);
                assert!(v >= 0.0 && (v - b.nominal).abs() <= b.drift + b.noise + 1e-12, "{} = {v}", p.spec.name);
            }
        }
        assert_eq!(behaviour("PH").nominal, 7.2);
        assert_eq!(behaviour("something_else").nominal, 1.0);
    }

    #[test]
    fn values_drift_and_are_reproducible() {
        let a = Logger::new(vec![parameter("ph", 0, DataType::F32, 1.0)], 11);
        let b = Logger::new(vec![parameter("ph", 0, DataType::F32, 1.0)], 11);
        let (pa, pb) = (&a.parameters[0], &b.parameters[0]);
        assert_eq!(value_at(pa, T0), value_at(pb, T0));
        let values: Vec<f64> = (0..100).map(|k| value_at(pa, T0 + f64::from(k) * 600.0)).collect();
        let spread = values.iter().copied().fold(f64::MIN, f64::max) - values.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread > 0.1, "pH barely moves: spread {spread}");
    }

    #[test]
    fn fill_encodes_forced_values_and_records_what_was_served() {
        let mut logger = Logger::new(
            vec![parameter("ph", 0, DataType::I16, 0.01), parameter("turbidity", 4, DataType::F32, 1.0)],
            1,
        );
        let mut out = vec![None; 6];
        let forced = BTreeMap::from([("turbidity".to_owned(), 5.5)]);
        logger.fill(Function::Input, 0, &mut out, T0, &forced);
        assert!(out[0].is_some());
        assert_eq!(&out[1..4], &[None, None, None]);
        // 5.5 = 0x40B00000, CDAB puts the low word first.
        assert_eq!(&out[4..], &[Some(0x0000), Some(0x40B0)]);
        assert_eq!(logger.last_served("turbidity"), Some(5.5));
        let ph = logger.last_served("ph").unwrap_or(0.0);
        assert!((ph - 7.2).abs() < 0.2 && (ph * 100.0 - (ph * 100.0).round()).abs() < 1e-9, "{ph}");
        assert_eq!(logger.last_served("lead"), None);
        let mut holding = vec![None; 2];
        logger.fill(Function::Holding, 0, &mut holding, T0, &BTreeMap::new());
        assert_eq!(holding, vec![None, None]);
    }
}
