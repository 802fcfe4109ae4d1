//! Checks between sections, run once every section is resolved: every Modbus path of every device and valve
//! against the lines (a line exists, is not owned by a CJ/T 188 gateway, and no two devices answer as the
//! same unit of it), port 0 only with the simulator, and that HJ 212 stations and MQTT groups have their
//! listener and broker (and a listener has stations).
//!
//! A rule that concerns one section only belongs in that section's module, not here.

use std::collections::HashMap;

use actors::modbus_link::ModbusPath;
use actors::tree::RegionSpec;
use actors::valve::ValveInterface;

use super::lines::Lines;
use super::problems::Check;

/// What the cross-checks look at.
pub(super) struct Sections<'a> {
    pub(super) regions: &'a [RegionSpec],
    pub(super) lines: &'a Lines,
    pub(super) simulated: bool,
    pub(super) hj212_listen: bool,
    pub(super) mqtt_broker: bool,
}

/// Runs every cross-check.
pub(super) fn check_sections(check: &mut Check, s: &Sections<'_>) {
    modbus_paths(check, s);
    let any_station = s.regions.iter().any(|r| !r.stations.is_empty());
    if any_station && !s.hj212_listen {
        check.add("hj212", "stations are configured but [hj212] listen is missing");
    }
    if !any_station && s.hj212_listen {
        check.add("hj212", "[hj212] is configured but no [[region.station]] uses it");
    }
    if s.regions.iter().any(|r| !r.mqtt.is_empty()) && !s.mqtt_broker {
        check.add("mqtt", "MQTT meter groups are configured but [mqtt] (the broker) is missing");
    }
}

/// Every Modbus path of every device and valve: its line, its unit, its port.
fn modbus_paths(check: &mut Check, s: &Sections<'_>) {
    // Every path with its key for messages.
    let mut paths: Vec<(String, &ModbusPath)> = Vec::new();
    for region in s.regions {
        for d in &region.devices {
            paths.extend(d.paths().enumerate().map(|(i, p)| (format!("device {} path {i}", d.id), p)));
        }
        for v in &region.valves {
            if let ValveInterface::Register { path, .. } = &v.interface {
                paths.push((format!("valve {}", v.id), path));
            }
        }
    }
    // Which device answers as each unit of each line.
    let mut units: HashMap<(&str, u8), &str> = HashMap::new();
    for (key, path) in &paths {
        match path {
            ModbusPath::Tcp(t) => {
                if !s.simulated && t.addr.ends_with(":0") {
                    check.add(format!("{key}.address"), "port 0 is only allowed with [simulator] enabled = true");
                }
            }
            ModbusPath::Rtu { line, unit_id, .. } => {
                if !s.lines.ids.contains(line) {
                    check.add(key, format!("\"rtu:{line}\" names no [[line]]"));
                }
                if let Some(gateway) = s.lines.cjt188_owned.get(line) {
                    check.add(
                        key,
                        format!("line {line:?} is owned by CJ/T 188 gateway {gateway:?}; Modbus RTU cannot share it"),
                    );
                }
                if *unit_id == 0 || *unit_id > 247 {
                    check.add(format!("{key}.unit_id"), "an RTU slave needs a unit id of 1-247");
                }
                let owner = key.split(" path ").next().unwrap_or(key);
                match units.insert((line, *unit_id), owner) {
                    Some(other) if other != owner => check
                        .add(format!("{key}.unit_id"), format!("unit {unit_id} on line {line:?} is already {other}")),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn two_devices_cannot_answer_as_the_same_unit_of_a_line() {
        let line = "[[line]]\nid = \"rs485-1\"\npath = \"/dev/ttyUSB0\"\n";
        let on_line = MINIMAL.replace("address = \"10.0.0.5:502\"", "address = \"rtu:rs485-1\"\nunit_id = 3");
        let valve = "[[region.valve]]\nid = \"v1\"\naddress = \"rtu:rs485-1\"\nunit_id = 3\nmodel = \"ww-valve-v1\"\n";
        check(
            &format!("{line}{on_line}{valve}"),
            &["valve v1.unit_id: unit 3 on line \"rs485-1\" is already device c1"],
        );
        let c = parse("t", &format!("{line}{on_line}{}", valve.replace("unit_id = 3", "unit_id = 4")), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let v = &c.tree.regions[0].valves[0];
        assert_eq!(v.path(), "primary rtu rs485-1 unit 4");
        check(&format!("{on_line}{valve}"), &["valve v1: \"rtu:rs485-1\" names no [[line]]"]);
    }

    #[test]
    fn stations_and_groups_need_their_listener_and_broker() {
        let station = "[[region.station]]\nid = \"s1\"\nmn = \"MN1\"\nfactors = [{ factor = \"w01001\" }]\n";
        check(&format!("{MINIMAL}{station}"), &["test.toml: hj212: stations are configured but [hj212] listen"]);
        check(
            &format!("[hj212]\nlisten = \"127.0.0.1:9212\"\n{MINIMAL}"),
            &["hj212: [hj212] is configured but no [[region.station]] uses it"],
        );
        check(
            &format!("{MINIMAL}[[region.mqtt]]\nid = \"g1\"\nmeters = [\"N1\"]\n"),
            &["mqtt: MQTT meter groups are configured but [mqtt] (the broker) is missing"],
        );
        check(&MINIMAL.replace("10.0.0.5:502", "10.0.0.5:0"), &["device c1 path 0.address: port 0 is only allowed"]);
    }
}
