//! The alarm engine (issue 9 §1–§2, R-B3, R-B4, R-A4, R-A6): alarms raised and cleared from the durable
//! change feed, never from the live broadcast.
//!
//! [`AlarmEngine`] is a [`FeedHandler`]: a `FeedConsumer` hands it committed entries from its persisted
//! cursor, and the alarm ops it returns commit **with** that cursor. So a standing alarm is in the store
//! exactly when the entries that raised it count as handled, and survives a restart or a SIGKILL.
//!
//! - Water quality: each sample of a watched series (a logger's or a station's parameter, limits from the
//!   device specs as `LimitWatcher` has them) goes through `model::AnalogState` (deadband, on/off delays);
//!   a level change sets the conditions of the series' high-high/high/low/low-low alarms. A sample the device
//!   flagged as untrusted raises "sensor untrusted" instead and is not evaluated; the next trusted sample
//!   clears it. Implausibly dated samples are passed over.
//! - Communication: `CommLost`/`CommRestored` set the device's comm-lost alarm; `MeterCommLost`/
//!   `MeterCommRestored` a meter's. While a device is comm-lost its meters' alarms are suppressed by design
//!   (one alarm, not 144), and return (re-alarming where still active) when it is restored.
//!
//! The engine sends a condition only when it changes, and the store applies it through the lifecycle, which
//! ignores a condition that already holds: one condition is one alarm, never two. Which conditions hold and
//! where each series stands are kept in memory and reloaded from the store ([`AlarmStore`]) at start, and
//! whenever the committed cursor is not the one the engine last produced (a batch whose results did not
//! commit is handled again from the stored state, not from what the engine had thought).
//!
//! What it deliberately does not do: acknowledge, shelve, or read the clock. Operators act through
//! `api::AlarmsApi`; shelves expire in [`shelf::ShelfWatch`].
//!
//! [`AlarmStore`]: crate::store::AlarmStore

pub mod kpi;
pub mod shelf;

use std::collections::{HashMap, HashSet};

use crate::event::Event;
use crate::feed::{FeedError, FeedHandler};
use crate::model::{
    AlarmClass, AlarmKey, AnalogConfig, AnalogLimits, AnalogState, DeviceId, QualityFlags, QualitySample, RegionId,
    Timestamp,
};
use crate::store::{AlarmOp, FeedEntry, FeedFact, Op, StoreError, Stores};

pub use shelf::{ShelfWatch, ShelfWatchArgs, ShelfWatchMsg};

/// The quality alarm classes of an analog series, most severe first.
const QUALITY: [AlarmClass; 4] =
    [AlarmClass::QualityHighHigh, AlarmClass::QualityHigh, AlarmClass::QualityLow, AlarmClass::QualityLowLow];

/// One watched water-quality series: where it is, its limits, its deadband and delays.
#[derive(Clone, Debug, PartialEq)]
pub struct QualitySeries {
    pub region: RegionId,
    pub limits: AnalogLimits,
    pub analog: AnalogConfig,
}

impl QualitySeries {
    /// A series with the default deadband (2 % of its smallest non-zero limit) and no delays. (Delays per site
    /// type are configuration to come; DOMAIN.md §5 found no sourced starting values.)
    pub fn with_defaults(region: RegionId, limits: AnalogLimits) -> QualitySeries {
        let smallest = [limits.high_high, limits.high, limits.low, limits.low_low]
            .into_iter()
            .flatten()
            .map(f64::abs)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let deadband = if smallest.is_finite() { smallest * 0.02 } else { 0.0 };
        QualitySeries { region, limits, analog: AnalogConfig { deadband, ..AnalogConfig::default() } }
    }
}

/// What the engine knows, as of the entries up to `through`.
#[derive(Default)]
struct Known {
    through: u64,
    /// The alarms whose condition holds.
    active: HashSet<AlarmKey>,
    /// Where each series stands, by `device/parameter`.
    series: HashMap<String, AnalogState>,
}

impl Known {
    fn load(stores: &Stores, through: u64) -> Result<Known, StoreError> {
        let active = stores.alarms.standing_alarms()?.into_iter().filter(|a| a.active).map(|a| a.key).collect();
        let series = stores.alarms.alarm_series()?.into_iter().collect();
        Ok(Known { through, active, series })
    }

    fn comm_lost(&self, device: &DeviceId) -> bool {
        self.active.contains(&AlarmKey::new(AlarmClass::CommLost, device, ""))
    }
}

/// Raises and clears alarms from the change feed (see the module documentation).
pub struct AlarmEngine {
    /// The watched water-quality series, by device and parameter.
    pub series: HashMap<(DeviceId, String), QualitySeries>,
    known: Option<Known>,
}

/// One condition change, as the engine sends it.
struct Change<'a> {
    key: AlarmKey,
    region: &'a RegionId,
    active: bool,
    at: Timestamp,
    value: Option<f64>,
    limit: Option<f64>,
}

impl AlarmEngine {
    pub const NAME: &'static str = "alarm-engine";

    pub fn new(series: HashMap<(DeviceId, String), QualitySeries>) -> AlarmEngine {
        AlarmEngine { series, known: None }
    }

    /// Sends the condition if it changed; says whether it did.
    fn set(known: &mut Known, ops: &mut Vec<Op>, c: Change<'_>) -> bool {
        let changed = if c.active { known.active.insert(c.key.clone()) } else { known.active.remove(&c.key) };
        if changed {
            ops.push(Op::Alarm(AlarmOp::Condition {
                priority: c.key.class.default_priority(),
                key: c.key,
                region: c.region.clone(),
                active: c.active,
                at: c.at,
                value: c.value,
                limit: c.limit,
            }));
        }
        changed
    }

    fn sample(&self, known: &mut Known, dirty: &mut HashSet<String>, ops: &mut Vec<Op>, s: &QualitySample) {
        let Some(cfg) = self.series.get(&(s.device.clone(), s.parameter.clone())) else { return };
        if s.flags.time_implausible() {
            return;
        }
        let untrusted = s.flags.0 & QualityFlags::DEVICE_FLAGGED != 0;
        let key = AlarmKey::new(AlarmClass::SensorUntrusted, &s.device, s.parameter.as_str());
        let change =
            Change { key, region: &cfg.region, active: untrusted, at: s.ts, value: Some(s.value), limit: None };
        Self::set(known, ops, change);
        if untrusted {
            return;
        }
        let series = s.series();
        let state = known.series.entry(series.clone()).or_default();
        let before = *state;
        let moved = state.sample(&cfg.limits, &cfg.analog, s.ts, s.value);
        if *state != before {
            dirty.insert(series);
        }
        let Some((from, to)) = moved else { return };
        tracing::info!(message = "Water-quality level changed.", device = %s.device, parameter = %s.parameter, value = s.value, ?from, ?to);
        for class in QUALITY {
            if from.raises(class) != to.raises(class) {
                let change = Change {
                    key: AlarmKey::new(class, &s.device, s.parameter.as_str()),
                    region: &cfg.region,
                    active: to.raises(class),
                    at: s.ts,
                    value: Some(s.value),
                    limit: cfg.limits.limit_of(class),
                };
                Self::set(known, ops, change);
            }
        }
    }

    fn event(known: &mut Known, ops: &mut Vec<Op>, event: &Event) {
        let meter_class = AlarmClass::MeterCommLost;
        match event {
            Event::CommLost { device, region, ts, misses, .. } => {
                let key = AlarmKey::new(AlarmClass::CommLost, device, "");
                let cause = key.id();
                let change =
                    Change { key, region, active: true, at: *ts, value: Some(f64::from(*misses)), limit: None };
                if Self::set(known, ops, change) {
                    ops.push(Op::Alarm(AlarmOp::SuppressDevice {
                        device: device.clone(),
                        class: meter_class,
                        at: *ts,
                        cause,
                    }));
                }
            }
            Event::CommRestored { device, region, ts, .. } => {
                let key = AlarmKey::new(AlarmClass::CommLost, device, "");
                let change = Change { key, region, active: false, at: *ts, value: None, limit: None };
                if Self::set(known, ops, change) {
                    ops.push(Op::Alarm(AlarmOp::UnsuppressDevice {
                        device: device.clone(),
                        class: meter_class,
                        at: *ts,
                    }));
                }
            }
            Event::MeterCommLost { device, meter, region, ts, misses } => {
                let key = AlarmKey::new(meter_class, device, meter.as_str());
                let change =
                    Change { key, region, active: true, at: *ts, value: Some(f64::from(*misses)), limit: None };
                if Self::set(known, ops, change) && known.comm_lost(device) {
                    let cause = AlarmKey::new(AlarmClass::CommLost, device, "").id();
                    ops.push(Op::Alarm(AlarmOp::SuppressDevice {
                        device: device.clone(),
                        class: meter_class,
                        at: *ts,
                        cause,
                    }));
                }
            }
            Event::MeterCommRestored { device, meter, region, ts, .. } => {
                let key = AlarmKey::new(meter_class, device, meter.as_str());
                Self::set(known, ops, Change { key, region, active: false, at: *ts, value: None, limit: None });
            }
            _ => {}
        }
    }
}

impl FeedHandler for AlarmEngine {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn handle(&mut self, stores: &Stores, entries: &[FeedEntry]) -> Result<Vec<Op>, FeedError> {
        let committed = stores.events.cursor(Self::NAME)?;
        let mut known = match self.known.take() {
            Some(k) if k.through == committed => k,
            _ => Known::load(stores, committed)?,
        };
        let mut ops = Vec::new();
        let mut dirty = HashSet::new();
        for entry in entries {
            match &entry.fact {
                FeedFact::Data { samples, .. } => {
                    for s in samples {
                        self.sample(&mut known, &mut dirty, &mut ops, s);
                    }
                }
                FeedFact::Event(record) => Self::event(&mut known, &mut ops, &record.event),
                FeedFact::Unreadable { .. } => {}
            }
        }
        for series in dirty {
            if let Some(&state) = known.series.get(&series) {
                ops.push(Op::Alarm(AlarmOp::Series { series, state }));
            }
        }
        known.through = entries.last().map_or(committed, |e| e.seq);
        self.known = Some(known);
        Ok(ops)
    }
}

#[cfg(test)]
mod engine_tests;
