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
//! - Meter status (issue 9 §1): each meter reading's status bits raise the meter's magnetic-tamper,
//!   reverse-flow, meter-fault, battery-low and valve-fault alarms, and the volume check's flags its
//!   volume-fell, rollover and suspected-swap alarms (key: the reading's device, detail the meter id). An
//!   alarm clears at the next reading of that meter without its bit; so a volume-check alarm, raised by one
//!   suspect step of the register, clears once the next step is plausible again (the reading stays flagged
//!   for review in the store). A reading whose status could not be decoded (`STATUS_UNREADABLE`) changes no
//!   device-bit alarm; a reading with an implausible time changes none. Like meter comm-lost, these are
//!   suppressed by design while the meter's concentrator or gateway is comm-lost.
//! - Valves: `ValveFault` (a command not confirmed, or the valve reports a fault) raises the valve's
//!   command-failed alarm, `ValveFaultCleared` clears it. `ValveMoved { uncommanded: true }` (a poll found it
//!   moved with no command) raises valve-uncommanded; it clears when the valve is back at its commanded
//!   position or a command succeeds (`uncommanded: false`), or an operator resets the valve's fault. A
//!   command that never reached the valve latches no fault (it is audited; the valve's comm-lost, a
//!   `CommLost` like every device's, covers an unreachable valve).
//!
//! The engine sends a condition only when it changes, and the store applies it through the lifecycle, which
//! ignores a condition that already holds: one condition is one alarm, never two. Which conditions hold and
//! where each series stands are kept in memory and reloaded from the store ([`AlarmStore`]) at start, and
//! whenever the committed cursor is not the one the engine last produced (a batch whose results did not
//! commit is handled again from the stored state, not from what the engine had thought).
//!
//! Priorities, enabled classes, and the quality series' deadband, delays and high-high/low-low levels come
//! from the alarm settings ([`settings`]: configuration `[alarms]`, changed at runtime by administrators);
//! the engine reads them at the start of every batch, so a change applies without a restart.
//!
//! What it deliberately does not do: acknowledge, shelve, or read the clock. Operators act through
//! `api::AlarmsApi`; shelves expire in [`shelf::ShelfWatch`].
//!
//! [`AlarmStore`]: crate::store::AlarmStore

pub mod kpi;
pub mod settings;
pub mod shelf;
pub mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::event::Event;
use crate::feed::{FeedError, FeedHandler};
use crate::model::{
    AlarmClass, AlarmKey, AnalogConfig, AnalogLimits, AnalogState, DeviceId, FaultClearing, MeterId, MeterReading,
    MeterStatus, Priority, QualityFlags, QualitySample, RegionId, SiteType, Timestamp,
};
use crate::store::{AlarmOp, FeedEntry, FeedFact, Op, StoreError, Stores};

pub use settings::{AlarmSettings, SharedSettings};
pub use shelf::{ShelfWatch, ShelfWatchArgs, ShelfWatchMsg};

/// The quality alarm classes of an analog series, most severe first.
const QUALITY: [AlarmClass; 4] =
    [AlarmClass::QualityHighHigh, AlarmClass::QualityHigh, AlarmClass::QualityLow, AlarmClass::QualityLowLow];

/// The meter status bits that raise an alarm, and its class (issue 9 §1).
const METER_BITS: [(u16, AlarmClass); 8] = [
    (MeterStatus::MAGNETIC_TAMPER, AlarmClass::MeterTamper),
    (MeterStatus::REVERSE_FLOW, AlarmClass::MeterReverseFlow),
    (MeterStatus::METER_FAULT, AlarmClass::MeterFault),
    (MeterStatus::BATTERY_LOW, AlarmClass::MeterBatteryLow),
    (MeterStatus::VALVE_FAULT, AlarmClass::MeterValveFault),
    (MeterStatus::VOLUME_FELL, AlarmClass::VolumeFell),
    (MeterStatus::ROLLOVER, AlarmClass::VolumeRollover),
    (MeterStatus::SUSPECTED_SWAP, AlarmClass::VolumeSuspectedSwap),
];

/// The bits of [`METER_BITS`] the device reports (the rest the server's volume check sets).
const DEVICE_BITS: u16 = MeterStatus::MAGNETIC_TAMPER
    | MeterStatus::REVERSE_FLOW
    | MeterStatus::METER_FAULT
    | MeterStatus::BATTERY_LOW
    | MeterStatus::VALVE_FAULT;

/// Every bit of [`METER_BITS`].
const ALARM_BITS: u16 = DEVICE_BITS | MeterStatus::VOLUME_FELL | MeterStatus::ROLLOVER | MeterStatus::SUSPECTED_SWAP;

/// The classes of a meter's own alarms: suppressed by design while its device is comm-lost.
const METER_CLASSES: [AlarmClass; 9] = [
    AlarmClass::MeterCommLost,
    AlarmClass::MeterTamper,
    AlarmClass::MeterReverseFlow,
    AlarmClass::MeterFault,
    AlarmClass::MeterBatteryLow,
    AlarmClass::MeterValveFault,
    AlarmClass::VolumeFell,
    AlarmClass::VolumeRollover,
    AlarmClass::VolumeSuspectedSwap,
];

/// One watched water-quality series: where it is, its limits, its deadband and delays.
#[derive(Clone, Debug, PartialEq)]
pub struct QualitySeries {
    pub region: RegionId,
    pub limits: AnalogLimits,
    pub analog: AnalogConfig,
}

impl QualitySeries {
    /// A series with the default deadband (2 % of its smallest non-zero limit) and no delays; the alarm
    /// settings ([`settings`]) change both per site type and per device (DOMAIN.md §5 found no sourced
    /// starting values for delays).
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
    /// The status bits of [`METER_BITS`] whose alarm holds, by device and meter (an index of `active`, so a
    /// reading that changes nothing costs two lookups and no allocation).
    meter_bits: HashMap<DeviceId, HashMap<MeterId, u16>>,
}

impl Known {
    fn load(stores: &Stores, through: u64) -> Result<Known, StoreError> {
        let active: HashSet<AlarmKey> =
            stores.alarms.standing_alarms()?.into_iter().filter(|a| a.active).map(|a| a.key).collect();
        let series = stores.alarms.alarm_series()?.into_iter().collect();
        let mut meter_bits: HashMap<DeviceId, HashMap<MeterId, u16>> = HashMap::new();
        for key in &active {
            if let Some((bit, _)) = METER_BITS.iter().find(|(_, c)| *c == key.class) {
                let meters = meter_bits.entry(key.device.clone()).or_default();
                *meters.entry(MeterId::new(key.detail.as_str())).or_default() |= bit;
            }
        }
        Ok(Known { through, active, series, meter_bits })
    }

    fn comm_lost(&self, device: &DeviceId) -> bool {
        self.active.contains(&AlarmKey::new(AlarmClass::CommLost, device, ""))
    }
}

/// Raises and clears alarms from the change feed (see the module documentation).
pub struct AlarmEngine {
    /// The watched water-quality series, by device and parameter.
    pub series: HashMap<(DeviceId, String), QualitySeries>,
    /// The region of every device whose meter readings are watched (readings do not carry it).
    pub regions: HashMap<DeviceId, RegionId>,
    /// The site type of every logger and station (which site settings apply to it).
    pub sites: HashMap<DeviceId, SiteType>,
    /// The settings in force, read at every batch: an administrator's change applies from the next batch.
    pub settings: SharedSettings,
    /// The settings the batch runs with, and `series` with them applied.
    current: Arc<AlarmSettings>,
    effective: HashMap<(DeviceId, String), QualitySeries>,
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
        let effective = series.clone();
        AlarmEngine {
            series,
            regions: HashMap::new(),
            sites: HashMap::new(),
            settings: SharedSettings::default(),
            current: Arc::default(),
            effective,
            known: None,
        }
    }

    /// With the alarm settings (shared with the API, which may change them) and the site type of each
    /// water-quality device.
    pub fn with_settings(mut self, settings: SharedSettings, sites: HashMap<DeviceId, SiteType>) -> AlarmEngine {
        self.settings = settings;
        self.sites = sites;
        self.current = Arc::default();
        self.refresh();
        self
    }

    /// Takes the settings in force; recomputes the series' limits and delays when they changed.
    fn refresh(&mut self) {
        let now = self.settings.get();
        if Arc::ptr_eq(&now, &self.current) {
            return;
        }
        self.effective = self
            .series
            .iter()
            .map(|((device, parameter), base)| {
                let site = self.sites.get(device).copied();
                let (limits, analog) = now.series(device, parameter, site, (base.limits, base.analog));
                ((device.clone(), parameter.clone()), QualitySeries { region: base.region.clone(), limits, analog })
            })
            .collect();
        self.current = now;
    }

    /// With the regions of the devices whose meter readings it watches.
    pub fn with_regions(mut self, regions: HashMap<DeviceId, RegionId>) -> AlarmEngine {
        self.regions = regions;
        self
    }

    /// The priority an alarm is raised with.
    fn priority(&self, key: &AlarmKey) -> Priority {
        self.current.priority(key.class, &key.device, self.sites.get(&key.device).copied())
    }

    /// Sends the condition if it changed; says whether it did. A disabled class's condition never holds.
    fn set(&self, known: &mut Known, ops: &mut Vec<Op>, mut c: Change<'_>) -> bool {
        if c.active && !self.current.enabled(c.key.class, &c.key.device, self.sites.get(&c.key.device).copied()) {
            c.active = false;
        }
        let changed = if c.active { known.active.insert(c.key.clone()) } else { known.active.remove(&c.key) };
        if changed {
            ops.push(Op::Alarm(AlarmOp::Condition {
                priority: self.priority(&c.key),
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
        let Some(cfg) = self.effective.get(&(s.device.clone(), s.parameter.clone())) else { return };
        if s.flags.time_implausible() {
            return;
        }
        let untrusted = s.flags.0 & QualityFlags::DEVICE_FLAGGED != 0;
        let key = AlarmKey::new(AlarmClass::SensorUntrusted, &s.device, s.parameter.as_str());
        let change =
            Change { key, region: &cfg.region, active: untrusted, at: s.ts, value: Some(s.value), limit: None };
        self.set(known, ops, change);
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
                self.set(known, ops, change);
            }
        }
    }

    /// A meter reading: its status bits raise and clear the meter's status alarms (see the module docs).
    fn reading(&self, known: &mut Known, ops: &mut Vec<Op>, r: &MeterReading) {
        if r.status.time_implausible() {
            return;
        }
        let before = known.meter_bits.get(&r.device).and_then(|m| m.get(&r.meter)).copied().unwrap_or(0);
        let device_bits = if r.status.0 & MeterStatus::STATUS_UNREADABLE != 0 { before } else { r.status.0 };
        let mut now = (device_bits & DEVICE_BITS) | (r.status.0 & ALARM_BITS & !DEVICE_BITS);
        if now != 0 {
            // A disabled class's bit counts as absent, so enabling the class raises it at the next reading.
            let site = self.sites.get(&r.device).copied();
            for (bit, class) in METER_BITS {
                if now & bit != 0 && !self.current.enabled(class, &r.device, site) {
                    now &= !bit;
                }
            }
        }
        if now == before {
            return;
        }
        let Some(region) = self.regions.get(&r.device) else {
            tracing::debug!(message = "Meter status of a device not in the configuration; no alarm.", device = %r.device);
            return;
        };
        let lost = known.comm_lost(&r.device);
        for (bit, class) in METER_BITS {
            if (before ^ now) & bit == 0 {
                continue;
            }
            let active = now & bit != 0;
            let key = AlarmKey::new(class, &r.device, r.meter.as_str());
            let value = Some(f64::from(r.status.0));
            let change = Change { key, region, active, at: r.ts, value, limit: None };
            if self.set(known, ops, change) && active && lost {
                let cause = AlarmKey::new(AlarmClass::CommLost, &r.device, "").id();
                ops.push(Op::Alarm(AlarmOp::SuppressDevice { device: r.device.clone(), class, at: r.ts, cause }));
            }
        }
        let meters = known.meter_bits.entry(r.device.clone()).or_default();
        if now == 0 {
            meters.remove(&r.meter);
        } else {
            meters.insert(r.meter.clone(), now);
        }
    }

    fn event(&self, known: &mut Known, ops: &mut Vec<Op>, event: &Event) {
        let meter_class = AlarmClass::MeterCommLost;
        match event {
            Event::CommLost { device, region, ts, misses, .. } => {
                let key = AlarmKey::new(AlarmClass::CommLost, device, "");
                let cause = key.id();
                let change =
                    Change { key, region, active: true, at: *ts, value: Some(f64::from(*misses)), limit: None };
                if self.set(known, ops, change) {
                    for class in METER_CLASSES {
                        let cause = cause.clone();
                        ops.push(Op::Alarm(AlarmOp::SuppressDevice { device: device.clone(), class, at: *ts, cause }));
                    }
                }
            }
            Event::CommRestored { device, region, ts, .. } => {
                let key = AlarmKey::new(AlarmClass::CommLost, device, "");
                let change = Change { key, region, active: false, at: *ts, value: None, limit: None };
                if self.set(known, ops, change) {
                    for class in METER_CLASSES {
                        ops.push(Op::Alarm(AlarmOp::UnsuppressDevice { device: device.clone(), class, at: *ts }));
                    }
                }
            }
            Event::MeterCommLost { device, meter, region, ts, misses } => {
                let key = AlarmKey::new(meter_class, device, meter.as_str());
                let change =
                    Change { key, region, active: true, at: *ts, value: Some(f64::from(*misses)), limit: None };
                if self.set(known, ops, change) && known.comm_lost(device) {
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
                self.set(known, ops, Change { key, region, active: false, at: *ts, value: None, limit: None });
            }
            Event::ValveFault { device, region, ts, .. } => {
                let key = AlarmKey::new(AlarmClass::ValveCommandFailed, device, "");
                self.set(known, ops, Change { key, region, active: true, at: *ts, value: None, limit: None });
            }
            Event::ValveFaultCleared { device, region, ts, how } => {
                let key = AlarmKey::new(AlarmClass::ValveCommandFailed, device, "");
                self.set(known, ops, Change { key, region, active: false, at: *ts, value: None, limit: None });
                if matches!(how, FaultClearing::Reset { .. }) {
                    let key = AlarmKey::new(AlarmClass::ValveUncommanded, device, "");
                    self.set(known, ops, Change { key, region, active: false, at: *ts, value: None, limit: None });
                }
            }
            Event::ValveMoved { device, region, ts, uncommanded, .. } => {
                let key = AlarmKey::new(AlarmClass::ValveUncommanded, device, "");
                let change = Change { key, region, active: *uncommanded, at: *ts, value: None, limit: None };
                self.set(known, ops, change);
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
        self.refresh();
        let committed = stores.events.cursor(Self::NAME)?;
        let mut known = match self.known.take() {
            Some(k) if k.through == committed => k,
            _ => Known::load(stores, committed)?,
        };
        let mut ops = Vec::new();
        let mut dirty = HashSet::new();
        for entry in entries {
            match &entry.fact {
                FeedFact::Data { samples, readings } => {
                    for s in samples {
                        self.sample(&mut known, &mut dirty, &mut ops, s);
                    }
                    for r in readings {
                        self.reading(&mut known, &mut ops, r);
                    }
                }
                FeedFact::Event(record) => self.event(&mut known, &mut ops, &record.event),
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
