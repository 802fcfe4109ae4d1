//! Alarm settings (issue 9 §1 "each configurable per site or device class with sensible defaults", §5 "admins
//! edit alarm settings"): per alarm class enable/disable and a priority; per site type (`plant_outlet`,
//! `network_end`, `source`) and per device the deadband, the on/off delays and the high-high/low-low levels
//! of water-quality series, and class overrides too.
//!
//! One shape serves the configuration file (`[alarms]`, read by `src/config/alarms.rs`) and the API
//! (`GET`/`PUT /api/alarm-settings`, JSON): unknown keys are refused, and [`AlarmSettings::problems`] checks
//! every value with the key it concerns, so the file and the page report the same mistakes.
//!
//! **What wins.** A device's own entry, then its site type's entry, then the top-level class entry, then the
//! built-in default ([`AlarmClass::default_priority`], every class enabled; a deadband of 2 % of the series'
//! smallest limit; no delays). High-high and low-low: an absolute level per parameter (device, then site), or
//! derived from the series' GB 5749 high/low limit by `high_high_factor` / `low_low_factor` (device, then
//! site); with neither, a series has no high-high/low-low level (GB 5749-2022 gives one limit per parameter,
//! and DOMAIN.md §5 found no sourced second level, so none is invented).
//!
//! A disabled class raises nothing; a standing alarm of it clears at its next evaluation.
//!
//! What it does not do: read files or the store (the config resolver and `store/alarm_settings.rs` do).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::{AlarmClass, AnalogConfig, AnalogLimits, DeviceId, Priority, SiteType};

/// The most device entries (bounded input; a county has a few thousand devices at most).
pub const MAX_DEVICES: usize = 10_000;
/// The most parameters in one `high_high` or `low_low` table.
pub const MAX_PARAMETERS: usize = 64;
/// The longest parameter name.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest on/off delay (one day).
pub const MAX_DELAY_S: u64 = 86_400;
/// The widest deadband, in percent of the series' smallest limit.
pub const MAX_DEADBAND_PERCENT: f64 = 50.0;
/// The default deadband, in percent of the series' smallest non-zero limit.
pub const DEFAULT_DEADBAND_PERCENT: f64 = 2.0;

/// A class's enable flag and priority; absent: the next level decides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// What a site type or one device overrides; every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class: BTreeMap<AlarmClass, ClassSettings>,
    /// In percent of the series' smallest non-zero limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadband_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_delay_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_delay_s: Option<u64>,
    /// Absolute high-high levels by parameter, in the parameter's unit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub high_high: BTreeMap<String, f64>,
    /// Absolute low-low levels by parameter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub low_low: BTreeMap<String, f64>,
    /// High-high = this × the series' high limit, where no absolute level is given (more than 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_high_factor: Option<f64>,
    /// Low-low = this × the series' low limit, where no absolute level is given (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_low_factor: Option<f64>,
}

/// Every alarm setting (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSettings {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class: BTreeMap<AlarmClass, ClassSettings>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub site: BTreeMap<SiteType, Overrides>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub device: BTreeMap<DeviceId, Overrides>,
}

/// One problem with a setting: the key (`site.network_end.on_delay_s`) and what is wrong.
pub type SettingProblem = (String, String);

impl Overrides {
    fn problems(&self, at: &str, out: &mut Vec<SettingProblem>) {
        if let Some(d) = self.deadband_percent {
            if !(d.is_finite() && (0.0..=MAX_DEADBAND_PERCENT).contains(&d)) {
                out.push((format!("{at}.deadband_percent"), format!("must be 0 to {MAX_DEADBAND_PERCENT}")));
            }
        }
        for (name, v) in [("on_delay_s", self.on_delay_s), ("off_delay_s", self.off_delay_s)] {
            if v.is_some_and(|v| v > MAX_DELAY_S) {
                out.push((format!("{at}.{name}"), format!("must be at most {MAX_DELAY_S} (one day)")));
            }
        }
        if self.high_high_factor.is_some_and(|f| !(f.is_finite() && f > 1.0 && f <= 100.0)) {
            out.push((format!("{at}.high_high_factor"), "must be more than 1 and at most 100".into()));
        }
        if self.low_low_factor.is_some_and(|f| !(f.is_finite() && (0.0..1.0).contains(&f))) {
            out.push((format!("{at}.low_low_factor"), "must be at least 0 and less than 1".into()));
        }
        for (name, table) in [("high_high", &self.high_high), ("low_low", &self.low_low)] {
            if table.len() > MAX_PARAMETERS {
                out.push((format!("{at}.{name}"), format!("lists more than {MAX_PARAMETERS} parameters")));
            }
            for (p, v) in table {
                if p.is_empty() || p.chars().count() > MAX_NAME_CHARS {
                    out.push((format!("{at}.{name}"), format!("parameter names are 1 to {MAX_NAME_CHARS} characters")));
                } else if !v.is_finite() {
                    out.push((format!("{at}.{name}.{p}"), "must be a finite number".into()));
                }
            }
        }
    }
}

impl AlarmSettings {
    /// Every problem, each with its key; empty when the settings are good. `known` says whether a device id
    /// is configured (a setting for an unknown device is a mistake, not a no-op).
    pub fn problems(&self, known: impl Fn(&DeviceId) -> bool) -> Vec<SettingProblem> {
        let mut out = Vec::new();
        if self.device.len() > MAX_DEVICES {
            out.push(("device".into(), format!("lists more than {MAX_DEVICES} devices")));
        }
        for (site, o) in &self.site {
            o.problems(&format!("site.{site}"), &mut out);
        }
        for (device, o) in &self.device {
            if !known(device) {
                out.push((format!("device.{device}"), "no such device in the configuration".into()));
            }
            o.problems(&format!("device.{device}"), &mut out);
        }
        out
    }

    fn class_setting<T>(
        &self,
        class: AlarmClass,
        device: &DeviceId,
        site: Option<SiteType>,
        pick: impl Fn(&ClassSettings) -> Option<T>,
    ) -> Option<T> {
        let of = |o: Option<&Overrides>| o.and_then(|o| o.class.get(&class)).and_then(&pick);
        of(self.device.get(device))
            .or_else(|| of(site.and_then(|s| self.site.get(&s))))
            .or_else(|| self.class.get(&class).and_then(&pick))
    }

    /// The priority an alarm of `class` on `device` (at a site of type `site`, if it has one) is raised with.
    pub fn priority(&self, class: AlarmClass, device: &DeviceId, site: Option<SiteType>) -> Priority {
        self.class_setting(class, device, site, |c| c.priority).unwrap_or_else(|| class.default_priority())
    }

    /// Whether alarms of `class` on `device` are raised at all.
    pub fn enabled(&self, class: AlarmClass, device: &DeviceId, site: Option<SiteType>) -> bool {
        self.class_setting(class, device, site, |c| c.enabled).unwrap_or(true)
    }

    /// A water-quality series' limits and deadband/delays with these settings applied over `base` (its
    /// high/low limits from the configuration, and the built-in deadband and delays).
    pub fn series(
        &self,
        device: &DeviceId,
        parameter: &str,
        site: Option<SiteType>,
        base: (AnalogLimits, AnalogConfig),
    ) -> (AnalogLimits, AnalogConfig) {
        let (mut limits, mut analog) = base;
        let own = self.device.get(device);
        let at_site = site.and_then(|s| self.site.get(&s));
        let pick = |f: &dyn Fn(&Overrides) -> Option<f64>| own.and_then(f).or_else(|| at_site.and_then(f));
        if let Some(p) = pick(&|o| o.deadband_percent) {
            analog.deadband = smallest_limit(&limits).map_or(0.0, |s| s * p / 100.0);
        }
        let delay = |f: &dyn Fn(&Overrides) -> Option<u64>| own.and_then(f).or_else(|| at_site.and_then(f));
        if let Some(s) = delay(&|o| o.on_delay_s) {
            analog.on_delay_ms = i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        }
        if let Some(s) = delay(&|o| o.off_delay_s) {
            analog.off_delay_ms = i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        }
        let high = limits.high;
        let low = limits.low;
        if let Some(hh) = pick(&|o| o.high_high.get(parameter).copied())
            .or_else(|| pick(&|o| o.high_high_factor).zip(high).map(|(f, h)| f * h))
        {
            limits.high_high = Some(hh);
        }
        if let Some(ll) = pick(&|o| o.low_low.get(parameter).copied())
            .or_else(|| pick(&|o| o.low_low_factor).zip(low).map(|(f, l)| f * l))
        {
            limits.low_low = Some(ll);
        }
        (limits, analog)
    }
}

/// The smallest non-zero limit of a series, by magnitude.
pub fn smallest_limit(limits: &AnalogLimits) -> Option<f64> {
    let s = [limits.high_high, limits.high, limits.low, limits.low_low]
        .into_iter()
        .flatten()
        .map(f64::abs)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    s.is_finite().then_some(s)
}

/// What the configuration gives the alarm engine: `[alarms]`, and the site type of each logger and station.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlarmSetup {
    pub settings: AlarmSettings,
    pub sites: HashMap<DeviceId, SiteType>,
}

/// The settings in force at start: those an administrator saved (they replace the configuration's until
/// saved again), else the configuration's. A store that cannot read them is logged and the configuration's
/// apply.
pub fn in_force(stores: &crate::store::Stores, configured: &AlarmSettings) -> SharedSettings {
    let settings = match stores.alarms.alarm_settings() {
        Ok(Some(saved)) => {
            if saved != *configured {
                tracing::warn!(
                    message =
                        "Alarm settings saved by an administrator are in force, not the configuration's [alarms]."
                );
            }
            saved
        }
        Ok(None) => configured.clone(),
        Err(e) => {
            tracing::error!(message = "Saved alarm settings cannot be read; the configuration's apply.", error = %e);
            configured.clone()
        }
    };
    SharedSettings::new(settings)
}

/// The settings in force, shared by the engine (which reads them at every batch) and the API (which replaces
/// them once the store has committed the change). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SharedSettings(Arc<RwLock<Arc<AlarmSettings>>>);

impl SharedSettings {
    pub fn new(settings: AlarmSettings) -> SharedSettings {
        SharedSettings(Arc::new(RwLock::new(Arc::new(settings))))
    }

    pub fn get(&self) -> Arc<AlarmSettings> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, settings: AlarmSettings) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w1() -> DeviceId {
        DeviceId::new("w1")
    }

    #[test]
    fn a_device_beats_its_site_type_which_beats_the_class_which_beats_the_default() {
        let json = r#"{
            "class": { "meter_battery_low": { "enabled": false }, "quality_low": { "priority": "medium" } },
            "site": { "network_end": { "class": { "quality_low": { "priority": "urgent" } } } },
            "device": { "w1": { "class": { "quality_low": { "priority": "low" } } } }
        }"#;
        let s: AlarmSettings = serde_json::from_str(json).unwrap();
        let (other, end) = (DeviceId::new("w2"), Some(SiteType::NetworkEnd));
        assert_eq!(s.priority(AlarmClass::QualityLow, &w1(), end), Priority::Low);
        assert_eq!(s.priority(AlarmClass::QualityLow, &other, end), Priority::Urgent);
        assert_eq!(s.priority(AlarmClass::QualityLow, &other, Some(SiteType::Source)), Priority::Medium);
        assert_eq!(s.priority(AlarmClass::QualityHigh, &other, None), Priority::High, "the built-in default");
        assert!(!s.enabled(AlarmClass::MeterBatteryLow, &other, None));
        assert!(s.enabled(AlarmClass::MeterTamper, &other, None));
        // It writes back to the same shape (the API's GET gives what PUT takes).
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<AlarmSettings>(&json).unwrap(), s);
    }

    #[test]
    fn series_get_delays_deadband_and_high_high_low_low_from_site_and_device() {
        let json = r#"{
            "site": { "plant_outlet": {
                "on_delay_s": 120, "deadband_percent": 10, "low_low_factor": 0.5, "high_high": { "turbidity": 3.0 } } },
            "device": { "w1": { "off_delay_s": 30, "low_low": { "free_chlorine": 0.1 } } }
        }"#;
        let s: AlarmSettings = serde_json::from_str(json).unwrap();
        let base =
            (AnalogLimits { low: Some(0.3), high: Some(2.0), ..AnalogLimits::default() }, AnalogConfig::default());
        let plant = Some(SiteType::PlantOutlet);
        let (l, a) = s.series(&DeviceId::new("w2"), "free_chlorine", plant, base);
        assert_eq!((l.low_low, l.high_high), (Some(0.15), None), "derived from the low limit");
        assert_eq!((a.on_delay_ms, a.off_delay_ms), (120_000, 0));
        assert!((a.deadband - 0.03).abs() < 1e-9, "10 % of 0.3: {}", a.deadband);
        let (l, a) = s.series(&w1(), "free_chlorine", plant, base);
        assert_eq!((l.low_low, a.on_delay_ms, a.off_delay_ms), (Some(0.1), 120_000, 30_000), "the device's own");
        let (l, _) = s.series(
            &w1(),
            "turbidity",
            plant,
            (AnalogLimits { high: Some(1.0), ..AnalogLimits::default() }, AnalogConfig::default()),
        );
        assert_eq!(l.high_high, Some(3.0));
        assert_eq!(
            AlarmSettings::default().series(&w1(), "free_chlorine", plant, base),
            base,
            "no settings, no change"
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_their_key() {
        let bad = r#"{
            "site": { "network_end": {
                "deadband_percent": 80, "on_delay_s": 100000, "low_low_factor": 1.5, "high_high": { "": 1.0 } } },
            "device": { "ghost": { "high_high_factor": 0.5 } }
        }"#;
        let s: AlarmSettings = serde_json::from_str(bad).unwrap();
        let got = s.problems(|d| d.as_str() != "ghost");
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        for want in [
            "site.network_end.deadband_percent",
            "site.network_end.on_delay_s",
            "site.network_end.low_low_factor",
            "site.network_end.high_high",
            "device.ghost",
            "device.ghost.high_high_factor",
        ] {
            assert!(keys.contains(&want), "{want} in {got:?}");
        }
        let unknown = [
            r#"{"class": {"quality_lo": {"priority": "low"}}}"#,
            r#"{"class": {"quality_low": {"priority": "p1"}}}"#,
            r#"{"site": {"river": {}}}"#,
            r#"{"colour": 1}"#,
            r#"{"device": {"w1": {"on_delay_s": -1}}}"#,
        ];
        for text in unknown {
            assert!(serde_json::from_str::<AlarmSettings>(text).is_err(), "{text}");
        }
        assert_eq!(AlarmSettings::default().problems(|_| false), vec![]);
    }
}
