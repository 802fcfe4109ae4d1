//! CJ/T 188 meters (`[[region.cjt188]]`): behind a transparent gateway (`address = "host:port"`) or on a
//! serial line of their own (`line = "<line id>"`, which the gateway then owns alone), with the edition, DI
//! order and preamble of the meters. Meter ids go through the checks every kind's meters get (`meters.rs`);
//! each meter's 14-digit address is checked here.
//!
//! Valves that are CJ/T 188 valve meters refer to a gateway here but are resolved in `valves.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actors::cjt188::{Cjt188Meter, Cjt188Spec};
use actors::model::{DeviceId, MeterId};
use drivers::cjt188::{Address, Cjt188Link, Cjt188Model, DiOrder};

use super::meters::check_meter_count;
use super::problems::RTU_PREFIX;
use super::{RegionScope, Resolver};

/// The `[[region.cjt188]]` gateways of a region.
pub(super) fn resolve_gateways(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<Cjt188Spec>> {
    let mut gateways = Vec::new();
    for (gi, g) in region.raw.cjt188.iter().enumerate() {
        let key = format!("{}.cjt188[{gi}] ({})", region.key, g.id);
        let check = &mut rs.check;
        check.device_id(&key, &g.id);
        let link = match (&g.address, &g.line) {
            (Some(address), None) => {
                check.address(&format!("{key}.address"), address);
                if address.starts_with(RTU_PREFIX) {
                    check.add(format!("{key}.address"), "a CJ/T 188 line is given as line = \"<line id>\"");
                }
                Some(Cjt188Link::Tcp(address.clone()))
            }
            (None, Some(line)) => match rs.lines.settings.iter().find(|(id, _)| id == line) {
                Some((_, settings)) => {
                    if let Some(other) = rs.lines.cjt188_owned.insert(line.clone(), g.id.clone()) {
                        check.add(
                            format!("{key}.line"),
                            format!("line {line:?} is already owned by CJ/T 188 gateway {other:?}"),
                        );
                    }
                    Some(Cjt188Link::Serial(settings.clone()))
                }
                None => {
                    check.add(format!("{key}.line"), format!("{line:?} names no [[line]]"));
                    None
                }
            },
            _ => {
                check.add(&key, "give either address = \"host:port\" (a transparent gateway) or line = \"<line id>\"");
                None
            }
        };
        let mut model = match g.edition.as_deref().unwrap_or("2004") {
            "2004" => Cjt188Model::edition_2004(),
            "2018" => Cjt188Model::edition_2018(),
            other => {
                check.add(
                    format!("{key}.edition"),
                    format!("{other:?} is not a CJ/T 188 edition; expected \"2004\" or \"2018\""),
                );
                Cjt188Model::edition_2004()
            }
        };
        match g.di_order.as_deref() {
            None => {}
            Some("big") => model.di_order = DiOrder::BigEndian,
            Some("little") => model.di_order = DiOrder::LittleEndian,
            Some(other) => check
                .add(format!("{key}.di_order"), format!("{other:?}: expected \"big\" (90 1F) or \"little\" (1F 90)")),
        }
        if let Some(p) = g.preamble {
            model.preamble = p;
        }
        if let Err(e) = model.check() {
            check.add(format!("{key}.preamble"), e.to_string());
        }
        let timeout = check.duration(&format!("{key}.timeout"), g.timeout.as_ref(), rs.defaults.timeout);
        let cycle = check.duration(&format!("{key}.cycle"), g.cycle.as_ref(), Duration::from_secs(15 * 60));
        check_meter_count(check, &format!("{key}.meters"), g.meters.len());
        let mut meters = Vec::new();
        let mut addresses = HashSet::new();
        for (mi, m) in g.meters.iter().enumerate() {
            let mkey = format!("{key}.meters[{mi}] ({})", m.id);
            check.meter_id(&mkey, &g.id, &m.id);
            match m.address.parse::<Address>() {
                Ok(a) if a.is_bcd() => {
                    if !addresses.insert(m.address.clone()) {
                        check.add(format!("{mkey}.address"), "address used twice on this gateway");
                    }
                    meters.push(Cjt188Meter { id: MeterId::new(m.id.clone()), address: a });
                }
                _ => check.add(format!("{mkey}.address"), format!("{:?} is not 14 decimal digits", m.address)),
            }
        }
        rs.device_models.insert(DeviceId::new(g.id.clone()), "cjt188".to_owned());
        let Some(link) = link else { continue };
        gateways.push(Arc::new(Cjt188Spec {
            id: DeviceId::new(g.id.clone()),
            name: g.name.clone().unwrap_or_else(|| g.id.clone()),
            region: region.id.clone(),
            link,
            line: g.line.clone(),
            timeout,
            model,
            cycle,
            meters,
        }));
    }
    gateways
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn a_cjt188_gateway_owns_its_serial_line_alone() {
        let line = "[[line]]\nid = \"mbus-1\"\npath = \"/dev/ttyUSB1\"\nbaud = 2400\nformat = \"8E1\"\n";
        let gateway = |link: &str| {
            format!(
                "[[region.cjt188]]\nid = \"g1\"\n{link}\nmeters = [{{ id = \"CJ-1\", address = \"00000000000001\" }}]\n"
            )
        };
        let ok = format!("{line}{MINIMAL}{}", gateway("line = \"mbus-1\""));
        let c = parse("t", &ok, None).unwrap_or_else(|e| panic!("{e}"));
        let g = &c.tree.regions[0].cjt188[0];
        let drivers::cjt188::Cjt188Link::Serial(settings) = &g.link else { panic!("a serial link: {:?}", g.link) };
        assert_eq!(
            (settings.path.as_str(), settings.baud, settings.format().to_string()),
            ("/dev/ttyUSB1", 2400, "8E1".into())
        );
        check(
            &format!("{MINIMAL}{}", gateway("line = \"mbus-9\"")),
            &["cjt188[0] (g1).line: \"mbus-9\" names no [[line]]"],
        );
        check(
            &format!("{line}{MINIMAL}{}", gateway("line = \"mbus-1\"\naddress = \"10.0.0.9:4001\"")),
            &["give either address"],
        );
        check(&format!("{MINIMAL}{}", gateway("")), &["give either address"]);
        let two = ok.clone() + &gateway("line = \"mbus-1\"").replace("\"g1\"", "\"g2\"").replace("CJ-1", "CJ-2");
        check(&two, &["line \"mbus-1\" is already owned by CJ/T 188 gateway \"g1\""]);
        let shared = ok.replace("address = \"10.0.0.5:502\"", "address = \"rtu:mbus-1\"");
        check(&shared, &["owned by CJ/T 188 gateway \"g1\"; Modbus RTU cannot share it"]);
    }

    #[test]
    fn meter_addresses_are_14_digits_once_per_gateway() {
        let gateway = |a: &str, b: &str| {
            format!(
                "{MINIMAL}[[region.cjt188]]\nid = \"g1\"\naddress = \"10.0.0.9:4001\"\n\
                 meters = [{{ id = \"CJ-1\", address = \"{a}\" }}, {{ id = \"CJ-2\", address = \"{b}\" }}]\n"
            )
        };
        check(
            &gateway("00000000000001", "00000000000001"),
            &["cjt188[0] (g1).meters[1] (CJ-2).address: address used twice on this gateway"],
        );
        check(&gateway("0000000000001A", "00000000000002"), &["\"0000000000001A\" is not 14 decimal digits"]);
        check(
            &gateway("00000000000001", "00000000000002").replace(":4001\"", ":4001\"\nedition = \"2010\""),
            &["cjt188[0] (g1).edition: \"2010\" is not a CJ/T 188 edition"],
        );
    }
}
