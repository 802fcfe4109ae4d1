//! Modbus field devices: concentrators of remote-read meters (`[[region.concentrator]]`, R-A1) and
//! water-quality loggers (`[[region.logger]]`, R-A2), both polled through a register model over a Modbus path
//! with backups (R-A8). What they share (address, backups, unit id, timeout, retries, failover) is resolved
//! once, in [`modbus_link`].
//!
//! Limits and default cycles of water-quality parameters are domain facts in `actors::model::quality`, not
//! here; which unit of which line a device answers as is checked in `cross.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actors::field::{ConcentratorSpec, DeviceKindSpec, DeviceSpec, LoggerSpec, ParameterSpec};
use actors::modbus_link::ModbusPath;
use actors::model::{default_cycle, DeviceId};

use super::lines::modbus_path;
use super::meters::resolve_meters;
use super::models::{model_of, volume_precision_limit, DeviceModel};
use super::{RegionScope, Resolver};

/// What every Modbus device entry has in common, as written.
pub(super) struct RawDeviceCommon<'a> {
    pub(super) id: &'a str,
    pub(super) address: &'a str,
    pub(super) backup: &'a [String],
    pub(super) unit_id: Option<i64>,
    pub(super) model: &'a str,
    pub(super) timeout: Option<&'a String>,
    pub(super) retries: Option<u32>,
    pub(super) retry_delay: Option<&'a String>,
    pub(super) failover_after: Option<u32>,
    pub(super) probe_every: Option<u32>,
}

/// The resolved communication settings of a Modbus device.
pub(super) struct Link {
    pub(super) target: ModbusPath,
    pub(super) backups: Vec<ModbusPath>,
    pub(super) failover_after: u32,
    pub(super) probe_every: u32,
    pub(super) retries: u32,
    pub(super) retry_delay: Duration,
}

/// The id, paths and retry settings of a Modbus device at `key` (its model is recorded for the simulator).
pub(super) fn modbus_link(rs: &mut Resolver, key: &str, d: RawDeviceCommon<'_>) -> Link {
    let check = &mut rs.check;
    check.device_id(key, d.id);
    check.address(&format!("{key}.address"), d.address);
    let unit_id = check.unit_id(key, d.unit_id);
    rs.device_models.insert(DeviceId::new(d.id), d.model.to_owned());
    let timeout = check.duration(&format!("{key}.timeout"), d.timeout, rs.defaults.timeout);
    let target = modbus_path(d.address, unit_id, timeout);
    let mut backups = Vec::new();
    for (i, b) in d.backup.iter().enumerate() {
        check.address(&format!("{key}.backup[{i}]"), b);
        if b == d.address || d.backup[..i].contains(b) {
            check.add(format!("{key}.backup[{i}]"), format!("{b:?} is already a path of this device"));
        }
        backups.push(modbus_path(b, unit_id, timeout));
    }
    let failover_after = d.failover_after.unwrap_or(rs.defaults.failover_after);
    let probe_every = d.probe_every.unwrap_or(rs.defaults.probe_every);
    check.at_least_one(&format!("{key}.failover_after"), failover_after);
    check.at_least_one(&format!("{key}.probe_every"), probe_every);
    let retry_delay = check.duration(&format!("{key}.retry_delay"), d.retry_delay, rs.defaults.retry_delay);
    Link {
        target,
        backups,
        failover_after,
        probe_every,
        retries: d.retries.unwrap_or(rs.defaults.retries),
        retry_delay,
    }
}

/// The `[[region.concentrator]]` entries of a region.
pub(super) fn resolve_concentrators(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<DeviceSpec>> {
    let mut devices = Vec::new();
    for (ci, c) in region.raw.concentrator.iter().enumerate() {
        let key = format!("{}.concentrator[{ci}] ({})", region.key, c.id);
        let link = modbus_link(
            rs,
            &key,
            RawDeviceCommon {
                id: &c.id,
                address: &c.address,
                backup: &c.backup,
                unit_id: c.unit_id,
                model: &c.model,
                timeout: c.timeout.as_ref(),
                retries: c.retries,
                retry_delay: c.retry_delay.as_ref(),
                failover_after: c.failover_after,
                probe_every: c.probe_every,
            },
        );
        let check = &mut rs.check;
        let cycle = check.duration(&format!("{key}.cycle"), c.cycle.as_ref(), Duration::from_secs(15 * 60));
        let layout = model_of(check, &key, &rs.models, &c.model, "a concentrator", |m| match m {
            DeviceModel::Concentrator(l) => Some(l.clone()),
            _ => None,
        });
        let meters = resolve_meters(check, &key, &c.id, &c.meters);
        let mut slots = HashSet::new();
        for m in &meters {
            if !slots.insert(m.slot) {
                check.add(format!("{key}.meters"), format!("slot {} is used twice", m.slot));
            }
            if let Some(l) = &layout {
                if u32::from(l.base) + (u32::from(m.slot) + 1) * u32::from(l.stride) > 65536 {
                    check.add(
                        format!("{key}.meters"),
                        format!("meter {:?} (slot {}) lies past register 65535", m.id.as_str(), m.slot),
                    );
                }
            }
        }
        let Some(layout) = layout else { continue };
        if let Some(limit) = volume_precision_limit(&layout.volume) {
            check.warn(
                format!("{key}.model"),
                format!(
                    "model {:?} decodes the meter volume from an f32 register (scale {}): from {limit} m³ on, \
                     a volume loses its third decimal (f32 keeps 24 significant bits)",
                    c.model, layout.volume.scale
                ),
            );
        }
        devices.push(Arc::new(DeviceSpec {
            id: DeviceId::new(c.id.clone()),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            region: region.id.clone(),
            target: link.target,
            backups: link.backups,
            failover_after: link.failover_after,
            probe_every: link.probe_every,
            retries: link.retries,
            retry_delay: link.retry_delay,
            kind: DeviceKindSpec::Concentrator(ConcentratorSpec { cycle, meters, layout }),
        }));
    }
    devices
}

/// The `[[region.logger]]` entries of a region.
pub(super) fn resolve_loggers(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<DeviceSpec>> {
    let mut devices = Vec::new();
    for (li, l) in region.raw.logger.iter().enumerate() {
        let key = format!("{}.logger[{li}] ({})", region.key, l.id);
        let link = modbus_link(
            rs,
            &key,
            RawDeviceCommon {
                id: &l.id,
                address: &l.address,
                backup: &l.backup,
                unit_id: l.unit_id,
                model: &l.model,
                timeout: l.timeout.as_ref(),
                retries: l.retries,
                retry_delay: l.retry_delay.as_ref(),
                failover_after: l.failover_after,
                probe_every: l.probe_every,
            },
        );
        let check = &mut rs.check;
        let registers = model_of(check, &key, &rs.models, &l.model, "a logger", |m| match m {
            DeviceModel::Logger(p) => Some(p.clone()),
            _ => None,
        });
        let site = check.site_type(&key, l.site_type.as_ref());
        if l.parameters.is_empty() {
            check.add(format!("{key}.parameters"), "lists no parameter");
        }
        let mut names = HashSet::new();
        let mut parameters = Vec::new();
        for (pi, p) in l.parameters.iter().enumerate() {
            let pkey = format!("{key}.parameters[{pi}] ({})", p.name);
            if !names.insert(p.name.clone()) {
                check.add(&pkey, "parameter listed twice");
            }
            let cycle = check.duration(&format!("{pkey}.cycle"), p.cycle.as_ref(), default_cycle(&p.name));
            let (low, high) = check.quality_limits(&pkey, site, &p.name, p.low, p.high);
            let Some(regs) = &registers else { continue };
            match regs.get(&p.name) {
                Some((register, unit)) => parameters.push(ParameterSpec {
                    name: p.name.clone(),
                    register: *register,
                    unit: unit.clone(),
                    low,
                    high,
                    cycle,
                }),
                None => check.add(
                    format!("{pkey}.name"),
                    format!(
                        "model {:?} has no parameter {:?}; it has: {}",
                        l.model,
                        p.name,
                        regs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        if registers.is_none() {
            continue;
        }
        // The free-text `site` names the device when `name` is absent.
        let name = l.name.clone().or_else(|| l.site.clone()).unwrap_or_else(|| l.id.clone());
        devices.push(Arc::new(DeviceSpec {
            id: DeviceId::new(l.id.clone()),
            name,
            region: region.id.clone(),
            target: link.target,
            backups: link.backups,
            failover_after: link.failover_after,
            probe_every: link.probe_every,
            retries: link.retries,
            retry_delay: link.retry_delay,
            kind: DeviceKindSpec::Logger(LoggerSpec { parameters }),
        }));
    }
    devices
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actors::field::DeviceKindSpec;

    use super::super::parse;
    use super::super::testing::{check, warnings, MINIMAL};

    #[test]
    fn minimal_config_gets_r_a1_defaults() {
        let c = parse("t", MINIMAL, None).unwrap();
        let d = &c.tree.regions[0].devices[0];
        assert_eq!(d.shortest_cycle(), Duration::from_secs(15 * 60));
        assert_eq!(d.target.unit_id(), 1);
        assert_eq!(d.target.timeout(), Duration::from_secs(3));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_concentrator_with_an_f32_volume_model_is_a_warning_naming_model_and_device() {
        let f32_model = MINIMAL.replace("ww-concentrator-v1", "hx-c200");
        let got = warnings(&f32_model);
        assert_eq!(
            got,
            vec!["warning: test.toml: region[0] (r1).concentrator[0] (c1).model: model \"hx-c200\" decodes the meter \
                 volume from an f32 register (scale 1): from 16384 m³ on, a volume loses its third decimal (f32 \
                 keeps 24 significant bits)"
                .to_owned()]
        );
        // An integer volume (litres in a u32) has no such limit.
        assert!(warnings(MINIMAL).is_empty());
    }

    fn logger(site_type: &str, chlorine: &str) -> String {
        format!(
            "{MINIMAL}[[region.logger]]\nid = \"w1\"\naddress = \"10.0.0.6:502\"\nmodel = \"ww-wq-logger-v1\"\n\
             {site_type}\nparameters = [{{ name = \"free_chlorine\"{chlorine} }}, {{ name = \"ph\" }}]\n"
        )
    }

    fn limits(text: &str) -> Vec<(String, Option<f64>, Option<f64>)> {
        let c = parse("t", text, None).unwrap_or_else(|e| panic!("{e}"));
        let d = c.tree.regions[0].devices.iter().find(|d| d.id.as_str() == "w1").unwrap();
        let DeviceKindSpec::Logger(l) = &d.kind else { panic!("a logger") };
        l.parameters.iter().map(|p| (p.name.clone(), p.low, p.high)).collect()
    }

    #[test]
    fn a_logger_takes_the_limits_of_its_site_type() {
        let chlorine_ph =
            |low, high| vec![("free_chlorine".to_owned(), low, high), ("ph".to_owned(), Some(6.5), Some(8.5))];
        // Without the key: the plant outlet, as before the key existed.
        assert_eq!(limits(&logger("", "")), chlorine_ph(Some(0.3), Some(2.0)));
        assert_eq!(limits(&logger("site_type = \"plant_outlet\"", "")), chlorine_ph(Some(0.3), Some(2.0)));
        assert_eq!(limits(&logger("site_type = \"network_end\"", "")), chlorine_ph(Some(0.05), Some(2.0)));
        // A configured side overrides the default of that side only.
        assert_eq!(limits(&logger("site_type = \"network_end\"", ", low = 0.1")), chlorine_ph(Some(0.1), Some(2.0)));
        let source = limits(&logger("site_type = \"source\"", ""));
        assert_eq!(source, vec![("free_chlorine".to_owned(), None, None), ("ph".to_owned(), None, None)]);
        check(
            &logger("site_type = \"tap\"", ""),
            &["logger[0] (w1).site_type: \"tap\" is not a site type; expected \"plant_outlet\""],
        );
    }
}
