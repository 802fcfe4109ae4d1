//! Alarms (issue 9 §1–§2, R-B3, R-B4, R-A6; DOMAIN.md §5): the ISA-18.2 / IEC 62682 lifecycle of one alarm,
//! and the evaluation of an analog value against high-high/high/low/low-low limits with deadband and on/off
//! delays. Pure: time is passed in, nothing is stored or published here.
//!
//! **The lifecycle.** An [`Alarm`] is one alarm point (one condition of one device: "chlorine low at
//! logger W1", "comm lost at concentrator C1"). Its [`AlarmState`] is one of the seven ISA-18.2 states; beside
//! it the alarm keeps whether its condition holds now (`active`), so that leaving a shelf, a suppression or
//! out-of-service lands in the right state (re-alarm when the condition still holds). Every transition
//! returns a [`JournalRecord`] (who, when, what, from → to, value, limit); an operator action the current
//! state does not allow is a typed [`LifecycleError`], never a panic and never a silent change.
//!
//! Invariants kept by every transition: `Normal` and `ReturnedUnacknowledged` mean the condition is clear,
//! `Unacknowledged` and `Acknowledged` mean it holds; the other three hide the alarm whatever the condition.
//!
//! **Analog evaluation.** [`AnalogState::sample`] decides, from timestamped samples alone, at which
//! [`Level`] a series stands: a level is entered only once the value has stayed beyond its limit for the
//! on-delay (a brief spike raises nothing), and left only once the value has come back past the limit by the
//! deadband and stayed there for the off-delay (a value chattering around its limit raises one alarm, not
//! dozens). Delays are measured between samples: with no new sample nothing changes.
//!
//! What this module deliberately does not do: know devices' configuration, read the feed, choose priorities
//! per site (the engine in `actors::alarms` does), or decide who may do what (the API checks roles).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{DeviceId, RegionId};
use super::reading::Timestamp;

/// The ISA-18.2 alarm states (DOMAIN.md §5, letters A–G of the Beckhoff MTP list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    /// A: condition clear, nothing to do.
    Normal,
    /// B: condition active, not yet acknowledged.
    Unacknowledged,
    /// C: condition active, acknowledged.
    Acknowledged,
    /// D: condition cleared before anyone acknowledged it.
    ReturnedUnacknowledged,
    /// E: hidden by an operator until an expiry.
    Shelved,
    /// F: hidden by design (a meter's comm-lost while its concentrator is comm-lost).
    SuppressedByDesign,
    /// G: taken out of service by an administrator, with a reason.
    OutOfService,
}

impl AlarmState {
    pub const ALL: [AlarmState; 7] = [
        AlarmState::Normal,
        AlarmState::Unacknowledged,
        AlarmState::Acknowledged,
        AlarmState::ReturnedUnacknowledged,
        AlarmState::Shelved,
        AlarmState::SuppressedByDesign,
        AlarmState::OutOfService,
    ];

    /// The name on the wire (`snake_case`, as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Normal => "normal",
            AlarmState::Unacknowledged => "unacknowledged",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::ReturnedUnacknowledged => "returned_unacknowledged",
            AlarmState::Shelved => "shelved",
            AlarmState::SuppressedByDesign => "suppressed_by_design",
            AlarmState::OutOfService => "out_of_service",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        AlarmState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether an operator must still acknowledge it.
    pub fn unacknowledged(self) -> bool {
        matches!(self, AlarmState::Unacknowledged | AlarmState::ReturnedUnacknowledged)
    }

    /// Whether the alarm is hidden from the operator (shelved, suppressed or out of service).
    pub fn hidden(self) -> bool {
        matches!(self, AlarmState::Shelved | AlarmState::SuppressedByDesign | AlarmState::OutOfService)
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four priorities (ISA-18.2 recommends three or four; EEMUA's split is ≈5 % / 15 % / 80 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Medium, Priority::High, Priority::Urgent];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What kind of condition an alarm watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmClass {
    /// A water-quality value above its high-high limit.
    QualityHighHigh,
    /// A water-quality value above its high limit (GB 5749-2022 maximum).
    QualityHigh,
    /// A water-quality value below its low limit (e.g. free chlorine minimum).
    QualityLow,
    /// A water-quality value below its low-low limit.
    QualityLowLow,
    /// The device flagged the value as untrusted (HJ 212 flag not N, maintenance, sensor fault).
    SensorUntrusted,
    /// A device missed two cycles in a row (R-A4).
    CommLost,
    /// One meter behind a delivering device missed two cycles in a row.
    MeterCommLost,
    /// A meter reports a magnetic tamper (status bit).
    MeterTamper,
    /// A meter reports reverse flow (status bit).
    MeterReverseFlow,
    /// A meter reports a fault (status bit).
    MeterFault,
    /// A meter's battery is low (status bit).
    MeterBatteryLow,
    /// A meter's built-in valve reports a fault (status bit).
    MeterValveFault,
    /// The volume check found a cumulative volume that fell (issue 7 §4).
    VolumeFell,
    /// The volume check found a register rollover.
    VolumeRollover,
    /// The volume check suspects a swapped meter or a misread.
    VolumeSuspectedSwap,
    /// A valve command failed (no confirmation, refused, timed out).
    ValveCommandFailed,
    /// A valve changed position without a command.
    ValveUncommanded,
    /// A customer's usage over a window well above its own history for the same period (R-B2).
    AbnormalUsage,
    /// Flow through a meter all night long: a suspected leak behind the meter (R-B2).
    NightFlow,
    /// A zone's leakage rate (master minus members, over master) above its threshold (R-B5). The key's
    /// device is the zone id.
    ZoneLeakage,
}

impl AlarmClass {
    pub const ALL: [AlarmClass; 20] = [
        AlarmClass::QualityHighHigh,
        AlarmClass::QualityHigh,
        AlarmClass::QualityLow,
        AlarmClass::QualityLowLow,
        AlarmClass::SensorUntrusted,
        AlarmClass::CommLost,
        AlarmClass::MeterCommLost,
        AlarmClass::MeterTamper,
        AlarmClass::MeterReverseFlow,
        AlarmClass::MeterFault,
        AlarmClass::MeterBatteryLow,
        AlarmClass::MeterValveFault,
        AlarmClass::VolumeFell,
        AlarmClass::VolumeRollover,
        AlarmClass::VolumeSuspectedSwap,
        AlarmClass::ValveCommandFailed,
        AlarmClass::ValveUncommanded,
        AlarmClass::AbnormalUsage,
        AlarmClass::NightFlow,
        AlarmClass::ZoneLeakage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmClass::QualityHighHigh => "quality_high_high",
            AlarmClass::QualityHigh => "quality_high",
            AlarmClass::QualityLow => "quality_low",
            AlarmClass::QualityLowLow => "quality_low_low",
            AlarmClass::SensorUntrusted => "sensor_untrusted",
            AlarmClass::CommLost => "comm_lost",
            AlarmClass::MeterCommLost => "meter_comm_lost",
            AlarmClass::MeterTamper => "meter_tamper",
            AlarmClass::MeterReverseFlow => "meter_reverse_flow",
            AlarmClass::MeterFault => "meter_fault",
            AlarmClass::MeterBatteryLow => "meter_battery_low",
            AlarmClass::MeterValveFault => "meter_valve_fault",
            AlarmClass::VolumeFell => "volume_fell",
            AlarmClass::VolumeRollover => "volume_rollover",
            AlarmClass::VolumeSuspectedSwap => "volume_suspected_swap",
            AlarmClass::ValveCommandFailed => "valve_command_failed",
            AlarmClass::ValveUncommanded => "valve_uncommanded",
            AlarmClass::AbnormalUsage => "abnormal_usage",
            AlarmClass::NightFlow => "night_flow",
            AlarmClass::ZoneLeakage => "zone_leakage",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmClass> {
        AlarmClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The default priority of the class (configurable per site later; issue 9 §1).
    pub fn default_priority(self) -> Priority {
        match self {
            AlarmClass::QualityHighHigh | AlarmClass::QualityLowLow => Priority::Urgent,
            AlarmClass::QualityHigh
            | AlarmClass::QualityLow
            | AlarmClass::CommLost
            | AlarmClass::ValveCommandFailed
            | AlarmClass::ValveUncommanded => Priority::High,
            AlarmClass::SensorUntrusted
            | AlarmClass::MeterTamper
            | AlarmClass::MeterReverseFlow
            | AlarmClass::MeterValveFault
            | AlarmClass::VolumeSuspectedSwap
            | AlarmClass::NightFlow
            | AlarmClass::ZoneLeakage => Priority::Medium,
            AlarmClass::MeterCommLost
            | AlarmClass::MeterFault
            | AlarmClass::MeterBatteryLow
            | AlarmClass::VolumeFell
            | AlarmClass::VolumeRollover
            | AlarmClass::AbnormalUsage => Priority::Low,
        }
    }
}

/// Which alarm: one condition of one device. `detail` is the parameter (quality classes), the meter
/// (meter classes) or empty (the device's own). One key is one alarm: there is never a second alarm for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlarmKey {
    pub class: AlarmClass,
    pub device: DeviceId,
    pub detail: String,
}

impl AlarmKey {
    pub fn new(class: AlarmClass, device: &DeviceId, detail: impl Into<String>) -> AlarmKey {
        AlarmKey { class, device: device.clone(), detail: detail.into() }
    }

    /// The alarm's stable id (`class~device~detail`), its store key and its name in the API (`~` is safe in
    /// a URL path, and no id holds it: configuration allows letters, digits, `-`, `_` and `.`).
    pub fn id(&self) -> String {
        format!("{}~{}~{}", self.class.as_str(), self.device, self.detail)
    }

    /// The key of an id made by [`AlarmKey::id`]: the first two `~` split it; the detail may hold more.
    pub fn parse(id: &str) -> Option<AlarmKey> {
        let mut parts = id.splitn(3, '~');
        let class = AlarmClass::parse(parts.next()?)?;
        let device = parts.next().filter(|d| !d.is_empty())?;
        let detail = parts.next()?;
        Some(AlarmKey::new(class, &DeviceId::new(device), detail))
    }
}

impl fmt::Display for AlarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// What happened to an alarm, as the journal names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The condition began to hold.
    Activated,
    /// The condition stopped holding.
    Cleared,
    Acknowledged,
    Shelved,
    /// An operator took it off the shelf before its expiry.
    Unshelved,
    /// The shelf's time ran out.
    ShelveExpired,
    Suppressed,
    Unsuppressed,
    RemovedFromService,
    ReturnedToService,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Activated => "activated",
            Transition::Cleared => "cleared",
            Transition::Acknowledged => "acknowledged",
            Transition::Shelved => "shelved",
            Transition::Unshelved => "unshelved",
            Transition::ShelveExpired => "shelve_expired",
            Transition::Suppressed => "suppressed",
            Transition::Unsuppressed => "unsuppressed",
            Transition::RemovedFromService => "removed_from_service",
            Transition::ReturnedToService => "returned_to_service",
        }
    }
}

/// Who changed an alarm when the server did (the engine, a shelf's expiry).
pub const SYSTEM: &str = "system";

/// One line of the alarm journal: who, when, what, from → to, with the value and limit at the time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub key: AlarmKey,
    pub region: RegionId,
    pub priority: Priority,
    pub at: Timestamp,
    /// The user, or [`SYSTEM`].
    pub by: String,
    pub what: Transition,
    pub from: AlarmState,
    pub to: AlarmState,
    /// Whether the condition held after the transition.
    pub active: bool,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// The operator's comment (acknowledge) or reason (shelve, out of service), if any.
    pub comment: Option<String>,
}

/// Why an operator action is not allowed in the alarm's present state.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LifecycleError {
    #[error("an alarm in state {0} cannot be acknowledged")]
    NotAcknowledgeable(AlarmState),
    #[error("an alarm in state {0} cannot be shelved")]
    NotShelvable(AlarmState),
    #[error("the shelf must end after it begins")]
    ShelveEndsTooSoon,
    #[error("the alarm is not shelved (state {0})")]
    NotShelved(AlarmState),
    #[error("an alarm in state {0} cannot be suppressed")]
    NotSuppressible(AlarmState),
    #[error("the alarm is not suppressed (state {0})")]
    NotSuppressed(AlarmState),
    #[error("the alarm is already out of service")]
    AlreadyOutOfService,
    #[error("the alarm is not out of service (state {0})")]
    NotOutOfService(AlarmState),
}

/// One alarm point and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub key: AlarmKey,
    pub region: RegionId,
    pub priority: Priority,
    pub state: AlarmState,
    /// Whether the condition holds now (kept while hidden, so leaving a shelf can re-alarm).
    pub active: bool,
    /// When the alarm entered its present state.
    pub since: Timestamp,
    /// When the condition last became active.
    pub raised_at: Option<Timestamp>,
    /// The value and limit of the latest condition change.
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// The end of the shelf, while shelved.
    pub shelved_until: Option<Timestamp>,
    /// Who acknowledged, shelved or took it out of service last, and their comment or reason.
    pub by: Option<String>,
    pub comment: Option<String>,
}

impl Alarm {
    /// A new alarm point in state normal.
    pub fn new(key: AlarmKey, region: RegionId, priority: Priority, at: Timestamp) -> Alarm {
        Alarm {
            key,
            region,
            priority,
            state: AlarmState::Normal,
            active: false,
            since: at,
            raised_at: None,
            value: None,
            limit: None,
            shelved_until: None,
            by: None,
            comment: None,
        }
    }

    /// Whether the alarm needs a row among the standing alarms (anything but normal).
    pub fn is_standing(&self) -> bool {
        self.state != AlarmState::Normal
    }

    /// The state to return to from a shelf, a suppression or out-of-service: the alarm re-alarms when its
    /// condition still holds.
    fn visible_state(&self) -> AlarmState {
        if self.active {
            AlarmState::Unacknowledged
        } else {
            AlarmState::Normal
        }
    }

    fn go(
        &mut self,
        to: AlarmState,
        at: Timestamp,
        by: &str,
        what: Transition,
        comment: Option<String>,
    ) -> JournalRecord {
        let from = self.state;
        self.state = to;
        if from != to {
            self.since = at;
        }
        if to != AlarmState::Shelved {
            self.shelved_until = None;
        }
        JournalRecord {
            key: self.key.clone(),
            region: self.region.clone(),
            priority: self.priority,
            at,
            by: by.to_owned(),
            what,
            from,
            to,
            active: self.active,
            value: self.value,
            limit: self.limit,
            comment,
        }
    }

    /// The condition is now `active` (or not), with the value and limit that decided it. Returns a record
    /// only when the condition changed: telling an alarm twice that its condition holds changes nothing (no
    /// duplicate). While hidden the state stays; the record says the condition changed behind the shelf.
    pub fn condition(
        &mut self,
        active: bool,
        at: Timestamp,
        value: Option<f64>,
        limit: Option<f64>,
    ) -> Option<JournalRecord> {
        if active == self.active {
            return None;
        }
        self.active = active;
        self.value = value;
        self.limit = limit;
        if active {
            self.raised_at = Some(at);
        }
        let what = if active { Transition::Activated } else { Transition::Cleared };
        let to = match (self.state, active) {
            (AlarmState::Normal | AlarmState::ReturnedUnacknowledged, true) => AlarmState::Unacknowledged,
            (AlarmState::Unacknowledged, false) => AlarmState::ReturnedUnacknowledged,
            (AlarmState::Acknowledged, false) => AlarmState::Normal,
            (hidden_or_same, _) => hidden_or_same,
        };
        if to == AlarmState::Unacknowledged {
            self.by = None;
            self.comment = None;
        }
        Some(self.go(to, at, SYSTEM, what, None))
    }

    /// An operator acknowledges: active → acknowledged, returned → normal.
    pub fn acknowledge(
        &mut self,
        by: &str,
        at: Timestamp,
        comment: Option<String>,
    ) -> Result<JournalRecord, LifecycleError> {
        let to = match self.state {
            AlarmState::Unacknowledged => AlarmState::Acknowledged,
            AlarmState::ReturnedUnacknowledged => AlarmState::Normal,
            other => return Err(LifecycleError::NotAcknowledgeable(other)),
        };
        self.by = Some(by.to_owned());
        self.comment = comment.clone();
        Ok(self.go(to, at, by, Transition::Acknowledged, comment))
    }

    /// An operator shelves the alarm until `until` (any visible state; the API bounds the duration by role).
    pub fn shelve(
        &mut self,
        by: &str,
        at: Timestamp,
        until: Timestamp,
        reason: Option<String>,
    ) -> Result<JournalRecord, LifecycleError> {
        if self.state.hidden() {
            return Err(LifecycleError::NotShelvable(self.state));
        }
        if until <= at {
            return Err(LifecycleError::ShelveEndsTooSoon);
        }
        self.by = Some(by.to_owned());
        self.comment = reason.clone();
        let record = self.go(AlarmState::Shelved, at, by, Transition::Shelved, reason);
        self.shelved_until = Some(until);
        Ok(record)
    }

    /// An operator takes the alarm off the shelf before its expiry.
    pub fn unshelve(&mut self, by: &str, at: Timestamp) -> Result<JournalRecord, LifecycleError> {
        if self.state != AlarmState::Shelved {
            return Err(LifecycleError::NotShelved(self.state));
        }
        let to = self.visible_state();
        Ok(self.go(to, at, by, Transition::Unshelved, None))
    }

    /// The shelf's expiry, if it is due at `at`: back to unacknowledged when the condition still holds (a
    /// re-alarm), else normal. `None` when the alarm is not shelved or the shelf still runs.
    pub fn expire_shelf(&mut self, at: Timestamp) -> Option<JournalRecord> {
        if self.state != AlarmState::Shelved || self.shelved_until.is_some_and(|u| u > at) {
            return None;
        }
        let to = self.visible_state();
        Some(self.go(to, at, SYSTEM, Transition::ShelveExpired, None))
    }

    /// Suppression by design begins (the cause is the `comment`, e.g. the concentrator's comm-lost alarm).
    pub fn suppress(&mut self, at: Timestamp, cause: &str) -> Result<JournalRecord, LifecycleError> {
        if self.state.hidden() {
            return Err(LifecycleError::NotSuppressible(self.state));
        }
        Ok(self.go(AlarmState::SuppressedByDesign, at, SYSTEM, Transition::Suppressed, Some(cause.to_owned())))
    }

    /// Suppression by design ends: re-alarms when the condition still holds.
    pub fn unsuppress(&mut self, at: Timestamp) -> Result<JournalRecord, LifecycleError> {
        if self.state != AlarmState::SuppressedByDesign {
            return Err(LifecycleError::NotSuppressed(self.state));
        }
        let to = self.visible_state();
        Ok(self.go(to, at, SYSTEM, Transition::Unsuppressed, None))
    }

    /// An administrator takes the alarm out of service, with a reason (from any other state).
    pub fn remove_from_service(
        &mut self,
        by: &str,
        at: Timestamp,
        reason: String,
    ) -> Result<JournalRecord, LifecycleError> {
        if self.state == AlarmState::OutOfService {
            return Err(LifecycleError::AlreadyOutOfService);
        }
        self.by = Some(by.to_owned());
        self.comment = Some(reason.clone());
        Ok(self.go(AlarmState::OutOfService, at, by, Transition::RemovedFromService, Some(reason)))
    }

    /// An administrator returns it to service: re-alarms when the condition holds.
    pub fn return_to_service(&mut self, by: &str, at: Timestamp) -> Result<JournalRecord, LifecycleError> {
        if self.state != AlarmState::OutOfService {
            return Err(LifecycleError::NotOutOfService(self.state));
        }
        let to = self.visible_state();
        Ok(self.go(to, at, by, Transition::ReturnedToService, None))
    }
}

/// Where an analog value stands against its limits. Ordered from lowest to highest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    LowLow,
    Low,
    #[default]
    Normal,
    High,
    HighHigh,
}

impl Level {
    /// -1 below, 0 normal, +1 above.
    fn side(self) -> i8 {
        match self {
            Level::LowLow | Level::Low => -1,
            Level::Normal => 0,
            Level::High | Level::HighHigh => 1,
        }
    }

    /// How far from normal (0, 1 or 2).
    fn severity(self) -> u8 {
        match self {
            Level::Normal => 0,
            Level::Low | Level::High => 1,
            Level::LowLow | Level::HighHigh => 2,
        }
    }

    /// Whether the alarm point of `class` is active at this level (HH implies H, LL implies L).
    pub fn raises(self, class: AlarmClass) -> bool {
        match class {
            AlarmClass::QualityHighHigh => self == Level::HighHigh,
            AlarmClass::QualityHigh => self >= Level::High,
            AlarmClass::QualityLow => self <= Level::Low,
            AlarmClass::QualityLowLow => self == Level::LowLow,
            _ => false,
        }
    }
}

/// The limits of an analog series; each is the edge of the acceptable range (a value equal to it is fine).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalogLimits {
    pub high_high: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub low_low: Option<f64>,
}

impl AnalogLimits {
    /// The level of a value with no history: strictly beyond a limit.
    pub fn level_of(&self, v: f64) -> Level {
        let above = |t: Option<f64>| t.is_some_and(|t| v > t);
        let below = |t: Option<f64>| t.is_some_and(|t| v < t);
        if above(self.high_high) {
            Level::HighHigh
        } else if above(self.high) {
            Level::High
        } else if below(self.low_low) {
            Level::LowLow
        } else if below(self.low) {
            Level::Low
        } else {
            Level::Normal
        }
    }

    /// The limit of an alarm class (for the journal).
    pub fn limit_of(&self, class: AlarmClass) -> Option<f64> {
        match class {
            AlarmClass::QualityHighHigh => self.high_high,
            AlarmClass::QualityHigh => self.high,
            AlarmClass::QualityLow => self.low,
            AlarmClass::QualityLowLow => self.low_low,
            _ => None,
        }
    }

    fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::HighHigh => self.high_high,
            Level::High => self.high,
            Level::Low => self.low,
            Level::LowLow => self.low_low,
            Level::Normal => None,
        }
    }

    /// The level of `v` when the series stands at `current`: a level already entered is kept until the
    /// value is back past its limit by `deadband` (OPC UA Part 9 B.1.5); a more severe one is entered at once.
    pub fn level_with_deadband(&self, current: Level, deadband: f64, v: f64) -> Level {
        let raw = self.level_of(v);
        if current.side() == 0 || raw.side() == -current.side() {
            return raw;
        }
        // The most severe level between normal and `current` (on its side) that the value still holds.
        let held = [Level::HighHigh, Level::High, Level::Low, Level::LowLow]
            .into_iter()
            .filter(|l| l.side() == current.side() && l.severity() <= current.severity())
            .filter(|l| {
                self.threshold(*l).is_some_and(|t| if current.side() > 0 { v > t - deadband } else { v < t + deadband })
            })
            .max_by_key(|l| l.severity());
        match held {
            Some(h) if h.severity() > raw.severity() => h,
            _ => raw,
        }
    }
}

/// The deadband and delays of an analog alarm (OPC UA Part 9 OnDelay/OffDelay/Deadband).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalogConfig {
    /// In the value's unit; a level is left only once the value is back past its limit by this much.
    pub deadband: f64,
    /// A level is entered only after the value held it this long (ms).
    pub on_delay_ms: i64,
    /// A level is left only after the value stayed out of it this long (ms).
    pub off_delay_ms: i64,
}

impl Default for AnalogConfig {
    fn default() -> Self {
        AnalogConfig { deadband: 0.0, on_delay_ms: 0, off_delay_ms: 0 }
    }
}

/// Where one analog series stands, and the level it is moving towards while a delay runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalogState {
    pub level: Level,
    /// The level the samples point to, and since when, while its delay runs.
    pub pending: Option<(Level, Timestamp)>,
    /// The newest sample taken; older or equal ones (a replay, a late sample) change nothing.
    pub last: Option<Timestamp>,
}

impl AnalogState {
    /// Takes one sample; returns `(from, to)` when the series' level changes.
    pub fn sample(
        &mut self,
        limits: &AnalogLimits,
        cfg: &AnalogConfig,
        ts: Timestamp,
        value: f64,
    ) -> Option<(Level, Level)> {
        if !value.is_finite() || self.last.is_some_and(|l| ts <= l) {
            return None;
        }
        self.last = Some(ts);
        let target = limits.level_with_deadband(self.level, cfg.deadband.max(0.0), value);
        if target == self.level {
            self.pending = None;
            return None;
        }
        let easing =
            |to: Level| to.side() == 0 || (to.side() == self.level.side() && to.severity() < self.level.severity());
        let delay = if easing(target) { cfg.off_delay_ms } else { cfg.on_delay_ms };
        // A delay keeps running while the samples keep pointing the same way (rising from high to high-high
        // does not restart the on-delay of the alarm that is coming).
        let since = match self.pending {
            Some((p, since)) if p == target || (easing(p) == easing(target) && p.side() == target.side()) => since,
            _ => ts,
        };
        if ts.0.saturating_sub(since.0) >= delay {
            let from = self.level;
            self.level = target;
            self.pending = None;
            Some((from, target))
        } else {
            self.pending = Some((target, since));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlarmState::*;

    fn alarm(state: AlarmState, active: bool) -> Alarm {
        let mut a = Alarm::new(
            AlarmKey::new(AlarmClass::QualityLow, &DeviceId::new("w1"), "chlorine"),
            RegionId::new("r1"),
            Priority::High,
            Timestamp(0),
        );
        a.state = state;
        a.active = active;
        if state == Shelved {
            a.shelved_until = Some(Timestamp(1_000));
        }
        a
    }

    /// Every state a consistent alarm can be in: (state, condition active).
    const CONSISTENT: [(AlarmState, bool); 10] = [
        (Normal, false),
        (Unacknowledged, true),
        (Acknowledged, true),
        (ReturnedUnacknowledged, false),
        (Shelved, false),
        (Shelved, true),
        (SuppressedByDesign, false),
        (SuppressedByDesign, true),
        (OutOfService, false),
        (OutOfService, true),
    ];

    #[test]
    fn the_condition_moves_every_state_as_isa_18_2_says() {
        // (state, active before, condition now) -> (state after, a record?)
        let table = [
            (Normal, false, true, Unacknowledged, true),
            (Normal, false, false, Normal, false),
            (Unacknowledged, true, true, Unacknowledged, false),
            (Unacknowledged, true, false, ReturnedUnacknowledged, true),
            (Acknowledged, true, true, Acknowledged, false),
            (Acknowledged, true, false, Normal, true),
            (ReturnedUnacknowledged, false, true, Unacknowledged, true),
            (ReturnedUnacknowledged, false, false, ReturnedUnacknowledged, false),
            (Shelved, false, true, Shelved, true),
            (Shelved, true, false, Shelved, true),
            (Shelved, true, true, Shelved, false),
            (SuppressedByDesign, false, true, SuppressedByDesign, true),
            (SuppressedByDesign, true, false, SuppressedByDesign, true),
            (OutOfService, false, true, OutOfService, true),
            (OutOfService, true, false, OutOfService, true),
        ];
        for (state, was, now, expect, recorded) in table {
            let mut a = alarm(state, was);
            let r = a.condition(now, Timestamp(5), Some(0.1), Some(0.3));
            assert_eq!(a.state, expect, "{state} active={was} -> {now}");
            assert_eq!(a.active, now);
            assert_eq!(r.is_some(), recorded, "{state} active={was} -> {now}");
            if let Some(r) = r {
                assert_eq!((r.from, r.to, r.by.as_str(), r.at), (state, expect, SYSTEM, Timestamp(5)));
                assert_eq!((r.value, r.limit), (Some(0.1), Some(0.3)));
                assert_eq!(r.what, if now { Transition::Activated } else { Transition::Cleared });
            }
        }
    }

    #[test]
    fn acknowledge_is_allowed_only_while_unacknowledged() {
        for (state, active) in CONSISTENT {
            let mut a = alarm(state, active);
            let before = a.clone();
            let r = a.acknowledge("duty1", Timestamp(7), Some("crew sent".into()));
            match state {
                Unacknowledged => assert_eq!(a.state, Acknowledged),
                ReturnedUnacknowledged => assert_eq!(a.state, Normal),
                _ => {
                    assert_eq!(r, Err(LifecycleError::NotAcknowledgeable(state)));
                    assert_eq!(a, before, "a refused action changes nothing");
                    continue;
                }
            }
            let r = r.unwrap();
            assert_eq!(
                (r.by.as_str(), r.what, r.comment.as_deref()),
                ("duty1", Transition::Acknowledged, Some("crew sent"))
            );
            assert_eq!(a.by.as_deref(), Some("duty1"));
        }
    }

    #[test]
    fn shelve_hides_any_visible_state_until_its_expiry_and_re_alarms_if_the_condition_holds() {
        for (state, active) in CONSISTENT {
            let mut a = alarm(state, active);
            let before = a.clone();
            let r = a.shelve("duty1", Timestamp(10), Timestamp(100), Some("sensor swap".into()));
            if state.hidden() {
                assert_eq!(r, Err(LifecycleError::NotShelvable(state)), "{state}");
                assert_eq!(a, before);
                continue;
            }
            assert_eq!(r.unwrap().to, Shelved);
            assert_eq!(a.shelved_until, Some(Timestamp(100)));
            assert_eq!(a.expire_shelf(Timestamp(99)), None, "the shelf still runs");
            let r = a.expire_shelf(Timestamp(100)).expect("due");
            assert_eq!(r.what, Transition::ShelveExpired);
            assert_eq!(a.state, if active { Unacknowledged } else { Normal }, "{state}");
            assert_eq!(a.shelved_until, None);
        }
        let mut a = alarm(Normal, false);
        assert_eq!(a.shelve("d", Timestamp(10), Timestamp(10), None), Err(LifecycleError::ShelveEndsTooSoon));
        // The condition came while shelved: the expiry re-alarms.
        a.shelve("d", Timestamp(10), Timestamp(100), None).unwrap();
        a.condition(true, Timestamp(50), Some(0.1), Some(0.3)).unwrap();
        assert_eq!(a.state, Shelved);
        assert_eq!(a.expire_shelf(Timestamp(120)).unwrap().to, Unacknowledged);
    }

    #[test]
    fn unshelve_suppress_and_service_transitions_and_their_refusals() {
        type Step = fn(&mut Alarm) -> Result<JournalRecord, LifecycleError>;
        type Case = (Step, Option<AlarmState>, fn(AlarmState) -> LifecycleError);
        let unshelve: Step = |a| a.unshelve("duty1", Timestamp(20));
        let suppress: Step = |a| a.suppress(Timestamp(20), "comm_lost~c1~");
        let unsuppress: Step = |a| a.unsuppress(Timestamp(20));
        let remove: Step = |a| a.remove_from_service("admin", Timestamp(20), "analyser replaced".into());
        let restore: Step = |a| a.return_to_service("admin", Timestamp(20));
        // (step, states it is allowed from, the error otherwise)
        let realarm = |active: bool| if active { Unacknowledged } else { Normal };
        for (state, active) in CONSISTENT {
            let cases: [Case; 5] = [
                (unshelve, (state == Shelved).then(|| realarm(active)), LifecycleError::NotShelved),
                (suppress, (!state.hidden()).then_some(SuppressedByDesign), LifecycleError::NotSuppressible),
                (unsuppress, (state == SuppressedByDesign).then(|| realarm(active)), LifecycleError::NotSuppressed),
                (remove, (state != OutOfService).then_some(OutOfService), |_| LifecycleError::AlreadyOutOfService),
                (restore, (state == OutOfService).then(|| realarm(active)), LifecycleError::NotOutOfService),
            ];
            for (i, (step, allowed, err)) in cases.into_iter().enumerate() {
                let mut a = alarm(state, active);
                let before = a.clone();
                match (step(&mut a), allowed) {
                    (Ok(r), Some(to)) => {
                        assert_eq!((r.from, r.to, a.state), (state, to, to), "case {i} from {state}");
                        assert_eq!(a.active, active, "the condition is untouched");
                    }
                    (Err(e), None) => {
                        assert_eq!(e, err(state), "case {i} from {state}");
                        assert_eq!(a, before, "a refused action changes nothing");
                    }
                    (got, want) => panic!("case {i} from {state}: got {got:?}, allowed {want:?}"),
                }
            }
        }
    }

    #[test]
    fn a_journal_record_says_who_when_what_and_the_reason() {
        let mut a = alarm(Unacknowledged, true);
        let r = a.remove_from_service("admin", Timestamp(30), "analyser replaced".into()).unwrap();
        assert_eq!(r.key.id(), "quality_low~w1~chlorine");
        assert_eq!(
            (r.by.as_str(), r.at, r.what, r.from, r.to, r.comment.as_deref()),
            (
                "admin",
                Timestamp(30),
                Transition::RemovedFromService,
                Unacknowledged,
                OutOfService,
                Some("analyser replaced")
            )
        );
        assert_eq!(a.since, Timestamp(30));
    }

    #[test]
    fn alarm_ids_round_trip_and_bad_ids_are_refused() {
        let k = AlarmKey::new(AlarmClass::MeterCommLost, &DeviceId::new("c1"), "M~01");
        assert_eq!(AlarmKey::parse(&k.id()), Some(k));
        let k = AlarmKey::new(AlarmClass::CommLost, &DeviceId::new("c1"), "");
        assert_eq!(AlarmKey::parse("comm_lost~c1~"), Some(k));
        for bad in ["", "comm_lost", "comm_lost~c1", "nope~c1~", "comm_lost~~x", "comm_lost/c1/"] {
            assert_eq!(AlarmKey::parse(bad), None, "{bad}");
        }
    }

    const LIM: AnalogLimits =
        AnalogLimits { high_high: Some(4.0), high: Some(2.0), low: Some(0.3), low_low: Some(0.1) };

    #[test]
    fn levels_against_four_limits_and_the_deadband() {
        // (current level, value, deadband 0.05) -> level
        let table = [
            (Level::Normal, 1.0, Level::Normal),
            (Level::Normal, 2.0, Level::Normal),
            (Level::Normal, 2.01, Level::High),
            (Level::Normal, 4.5, Level::HighHigh),
            (Level::Normal, 0.29, Level::Low),
            (Level::Normal, 0.05, Level::LowLow),
            (Level::High, 1.96, Level::High),
            (Level::High, 1.95, Level::Normal),
            (Level::HighHigh, 3.97, Level::HighHigh),
            (Level::HighHigh, 3.9, Level::High),
            (Level::HighHigh, 1.97, Level::High),
            (Level::HighHigh, 1.0, Level::Normal),
            (Level::Low, 0.34, Level::Low),
            (Level::Low, 0.36, Level::Normal),
            (Level::LowLow, 0.14, Level::LowLow),
            (Level::LowLow, 0.2, Level::Low),
            (Level::Low, 0.05, Level::LowLow),
            (Level::High, 0.2, Level::Low),
            (Level::Low, 2.5, Level::High),
        ];
        for (current, v, expect) in table {
            assert_eq!(LIM.level_with_deadband(current, 0.05, v), expect, "{current:?} at {v}");
        }
        let only_low = AnalogLimits { low: Some(0.3), ..AnalogLimits::default() };
        assert_eq!(only_low.level_of(100.0), Level::Normal);
        assert_eq!(only_low.level_of(0.0), Level::Low);
    }

    /// Feeds `(seconds, value)` samples; returns the level changes as `(seconds, to)`.
    fn run(cfg: AnalogConfig, samples: &[(i64, f64)]) -> Vec<(i64, Level)> {
        let mut st = AnalogState::default();
        samples
            .iter()
            .filter_map(|&(s, v)| st.sample(&LIM, &cfg, Timestamp(s * 1000), v).map(|(_, to)| (s, to)))
            .collect()
    }

    #[test]
    fn delays_deadband_and_chattering() {
        let plain = AnalogConfig::default();
        let delayed = AnalogConfig { deadband: 0.05, on_delay_ms: 60_000, off_delay_ms: 30_000 };
        type Case = (&'static str, AnalogConfig, &'static [(i64, f64)], &'static [(i64, Level)]);
        let cases: [Case; 8] = [
            (
                "no delay: each crossing counts",
                plain,
                &[(0, 1.0), (10, 0.2), (20, 1.0)],
                &[(10, Level::Low), (20, Level::Normal)],
            ),
            (
                "a spike shorter than the on-delay raises nothing",
                delayed,
                &[(0, 1.0), (10, 0.2), (40, 0.2), (50, 1.0), (200, 1.0)],
                &[],
            ),
            (
                "held for the on-delay it is raised",
                delayed,
                &[(0, 1.0), (10, 0.2), (40, 0.2), (70, 0.2)],
                &[(70, Level::Low)],
            ),
            (
                "chattering within the deadband raises once and never clears",
                delayed,
                &[(0, 0.2), (60, 0.2), (70, 0.32), (80, 0.29), (90, 0.33), (100, 0.28), (110, 0.34), (200, 0.31)],
                &[(60, Level::Low)],
            ),
            (
                "clearing waits for the off-delay",
                delayed,
                &[(0, 0.2), (60, 0.2), (70, 0.5), (90, 0.5), (100, 0.5)],
                &[(60, Level::Low), (100, Level::Normal)],
            ),
            (
                "a dip during the off-delay restarts it",
                delayed,
                &[(0, 0.2), (60, 0.2), (70, 0.5), (90, 0.2), (95, 0.5), (110, 0.5), (125, 0.5)],
                &[(60, Level::Low), (125, Level::Normal)],
            ),
            (
                "rising through high into high-high keeps the on-delay running",
                delayed,
                &[(0, 2.5), (30, 4.5), (60, 4.5)],
                &[(60, Level::HighHigh)],
            ),
            (
                "late and repeated samples change nothing",
                plain,
                &[(10, 0.2), (10, 1.0), (5, 1.0), (20, 0.2)],
                &[(10, Level::Low)],
            ),
        ];
        for (what, cfg, samples, expect) in cases {
            assert_eq!(run(cfg, samples), expect, "{what}");
        }
        assert_eq!(run(plain, &[(0, f64::NAN), (1, 0.2)]), vec![(1, Level::Low)], "NaN is no sample");
    }

    #[test]
    fn levels_raise_the_classes_they_imply() {
        use AlarmClass::*;
        let table = [
            (Level::HighHigh, vec![QualityHighHigh, QualityHigh]),
            (Level::High, vec![QualityHigh]),
            (Level::Normal, vec![]),
            (Level::Low, vec![QualityLow]),
            (Level::LowLow, vec![QualityLow, QualityLowLow]),
        ];
        for (level, classes) in table {
            let got: Vec<_> = AlarmClass::ALL.into_iter().filter(|c| level.raises(*c)).collect();
            let mut want = classes.clone();
            want.sort();
            assert_eq!(got, want, "{level:?}");
        }
    }
}
