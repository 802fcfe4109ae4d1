//! `[alarms]` (issue 9 §1): alarm settings per class, per site type and per device, in the shape of
//! `actors::alarms::AlarmSettings` (the same shape the administrators' page saves at runtime):
//!
//! ```toml
//! [alarms.class.meter_battery_low]      # every alarm class by its wire name
//! enabled = false
//! priority = "low"                      # low, medium, high, urgent
//! [alarms.site.network_end]             # plant_outlet, network_end, source
//! deadband_percent = 5                  # of the series' smallest limit (default 2)
//! on_delay_s = 120                      # a level is entered after it held this long (default 0)
//! off_delay_s = 60
//! low_low_factor = 0.5                  # low-low = 0.5 × the GB 5749 low limit (default: no low-low)
//! high_high = { turbidity = 3.0 }       # absolute high-high per parameter
//! [alarms.device.east-wq]               # one device: the same keys, and `class`
//! class = { quality_low = { priority = "urgent" } }
//! ```
//!
//! Stage one is serde (unknown keys, unknown classes, site types and priorities are refused with the
//! parser's message naming them); stage two here checks every value and that each device entry names a
//! configured device, and collects each logger's and station's site type for the engine.

use std::collections::HashMap;

use actors::alarms::settings::AlarmSetup;
use actors::alarms::AlarmSettings;
use actors::model::{DeviceId, SiteType};
use actors::tree::RegionSpec;

use super::problems::Check;
use super::raw::RawRegion;

/// Checks `[alarms]` against the resolved regions; returns the settings and every water-quality device's site
/// type (an unknown site type was reported where the device is, and counts as the default here).
pub(super) fn resolve_alarms(
    check: &mut Check,
    raw: Option<&AlarmSettings>,
    raw_regions: &[RawRegion],
    regions: &[RegionSpec],
) -> AlarmSetup {
    let settings = raw.cloned().unwrap_or_default();
    let known = |d: &DeviceId| {
        regions.iter().any(|r| {
            r.devices.iter().any(|x| x.id == *d)
                || r.stations.iter().any(|x| x.id == *d)
                || r.valves.iter().any(|x| x.id == *d)
                || r.cjt188.iter().any(|x| x.id == *d)
                || r.mqtt.iter().any(|x| x.id == *d)
        })
    };
    for (key, problem) in settings.problems(known) {
        check.add(format!("alarms.{key}"), problem);
    }
    let site = |s: Option<&String>| s.and_then(|s| s.parse::<SiteType>().ok()).unwrap_or_default();
    let mut sites = HashMap::new();
    for r in raw_regions {
        for l in &r.logger {
            sites.insert(DeviceId::new(l.id.clone()), site(l.site_type.as_ref()));
        }
        for st in &r.station {
            sites.insert(DeviceId::new(st.id.clone()), site(st.site_type.as_ref()));
        }
    }
    AlarmSetup { settings, sites }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, problems, MINIMAL};
    use actors::model::{AlarmClass, DeviceId, Priority, SiteType};

    const LOGGER: &str = r#"
[[region.logger]]
id = "w1"
address = "10.0.0.6:502"
model = "ww-wq-logger-v1"
site_type = "network_end"
parameters = [{ name = "free_chlorine" }]
"#;

    #[test]
    fn alarms_resolve_with_the_site_type_of_each_logger() {
        let text = format!(
            "{MINIMAL}{LOGGER}\n[alarms.class.meter_battery_low]\nenabled = false\n\
             [alarms.site.network_end]\non_delay_s = 120\nlow_low_factor = 0.5\n\
             [alarms.device.c1.class.meter_tamper]\npriority = \"urgent\"\n"
        );
        let c = parse("test.toml", &text, None).unwrap_or_else(|e| panic!("{e}"));
        let a = &c.tree.alarms;
        assert_eq!(a.sites.get(&DeviceId::new("w1")), Some(&SiteType::NetworkEnd));
        assert!(!a.settings.enabled(AlarmClass::MeterBatteryLow, &DeviceId::new("c1"), None));
        assert_eq!(a.settings.priority(AlarmClass::MeterTamper, &DeviceId::new("c1"), None), Priority::Urgent);
        assert_eq!(a.settings.site[&SiteType::NetworkEnd].on_delay_s, Some(120));
        // No [alarms]: the defaults.
        assert_eq!(parse("test.toml", MINIMAL, None).unwrap().tree.alarms.settings, Default::default());
    }

    #[test]
    fn bad_alarm_settings_are_reported_with_their_key() {
        check(
            &format!("{MINIMAL}\n[alarms.site.plant_outlet]\ndeadband_percent = 90\noff_delay_s = 999999\n"),
            &["alarms.site.plant_outlet.deadband_percent: must be 0 to 50", "alarms.site.plant_outlet.off_delay_s"],
        );
        check(
            &format!("{MINIMAL}\n[alarms.device.nowhere]\non_delay_s = 5\n"),
            &["alarms.device.nowhere: no such device"],
        );
        check(&format!("{MINIMAL}\n[alarms.class.quality_lo]\nenabled = false\n"), &["quality_lo"]);
        check(&format!("{MINIMAL}\n[alarms.class.quality_low]\npriority = \"p1\"\n"), &["p1"]);
        check(&format!("{MINIMAL}\n[alarms.site.river]\n"), &["river"]);
        check(&format!("{MINIMAL}\n[alarms]\ncolour = 1\n"), &["colour"]);
        assert!(problems(&format!("{MINIMAL}\n[alarms.device.c1]\non_delay_s = 5\n")).is_empty());
    }
}
