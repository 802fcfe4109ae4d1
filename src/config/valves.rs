//! Remote valves (`[[region.valve]]`): a Modbus register or coil valve (its own path and a `kind = "valve"`
//! model), or a CJ/T 188 valve meter reached through a gateway of the same region, with the timing of
//! commands and read-backs.
//!
//! Which unit of which line a register valve answers as is a cross-check (`cross.rs`).

use std::sync::Arc;
use std::time::Duration;

use actors::model::DeviceId;
use actors::valve::{ValveInterface, ValveSpec};

use super::lines::modbus_path;
use super::models::{model_of, DeviceModel};
use super::{RegionScope, Resolver};

/// The `[[region.valve]]` entries of a region (after its CJ/T 188 gateways, which valve meters refer to).
pub(super) fn resolve_valves(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<ValveSpec>> {
    let mut valves = Vec::new();
    for (vi, v) in region.raw.valve.iter().enumerate() {
        let key = format!("{}.valve[{vi}] ({})", region.key, v.id);
        let check = &mut rs.check;
        check.device_id(&key, &v.id);
        let unit_id = check.unit_id(&key, v.unit_id);
        let timeout = check.duration(&format!("{key}.timeout"), v.timeout.as_ref(), rs.defaults.timeout);
        let poll = check.duration(&format!("{key}.poll"), v.poll.as_ref(), Duration::from_secs(60));
        let confirm_timeout =
            check.duration(&format!("{key}.confirm_timeout"), v.confirm_timeout.as_ref(), Duration::from_secs(60));
        let confirm_poll =
            check.duration(&format!("{key}.confirm_poll"), v.confirm_poll.as_ref(), Duration::from_secs(2));
        let command_expiry =
            check.duration(&format!("{key}.command_expiry"), v.command_expiry.as_ref(), Duration::from_secs(30));
        if confirm_poll > confirm_timeout {
            check.add(format!("{key}.confirm_poll"), "must not be longer than confirm_timeout");
        }
        let interface = match (&v.address, &v.model, &v.cjt188) {
            (Some(address), Some(model), None) => {
                check.address(&format!("{key}.address"), address);
                rs.device_models.insert(DeviceId::new(v.id.clone()), model.clone());
                let path = modbus_path(address, unit_id, timeout);
                model_of(check, &key, &rs.models, model, "a valve", |m| match m {
                    DeviceModel::Valve(valve) => Some(valve.clone()),
                    _ => None,
                })
                .map(|valve| ValveInterface::Register { path, valve })
            }
            (None, None, Some(c)) => {
                let gateway = region.raw.cjt188.iter().find(|g| g.id == c.gateway);
                match (gateway, c.address.parse::<drivers::cjt188::Address>()) {
                    (None, _) => {
                        check.add(
                            format!("{key}.cjt188.gateway"),
                            format!("no [[region.cjt188]] {:?} in this region", c.gateway),
                        );
                        None
                    }
                    (Some(g), Ok(a)) if g.meters.iter().any(|m| m.address == c.address) => {
                        Some(ValveInterface::Cjt188 { gateway: DeviceId::new(g.id.clone()), address: a })
                    }
                    (Some(_), _) => {
                        check.add(
                            format!("{key}.cjt188.address"),
                            format!("{:?} is not a meter of gateway {:?}", c.address, c.gateway),
                        );
                        None
                    }
                }
            }
            _ => {
                check.add(&key, "give either address and model (a Modbus valve) or cjt188 = { gateway, address }");
                None
            }
        };
        let Some(interface) = interface else { continue };
        valves.push(Arc::new(ValveSpec {
            id: DeviceId::new(v.id.clone()),
            name: v.name.clone().unwrap_or_else(|| v.id.clone()),
            region: region.id.clone(),
            timeout,
            interface,
            poll,
            confirm_timeout,
            confirm_poll,
            command_expiry,
        }));
    }
    valves
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn a_valve_is_either_a_modbus_valve_or_a_cjt188_valve_meter() {
        let valve = |body: &str| format!("{MINIMAL}[[region.valve]]\nid = \"v1\"\n{body}\n");
        check(
            &valve("address = \"10.0.0.7:502\"\nmodel = \"hx-c200\""),
            &["valve[0] (v1).model: model \"hx-c200\" is not a valve"],
        );
        check(&valve(""), &["valve[0] (v1): give either address and model"]);
        check(
            &valve("cjt188 = { gateway = \"g9\", address = \"00000000000001\" }"),
            &["valve[0] (v1).cjt188.gateway: no [[region.cjt188]] \"g9\" in this region"],
        );
        check(
            &valve("address = \"10.0.0.7:502\"\nmodel = \"ww-valve-v1\"\nconfirm_poll = \"2m\""),
            &["valve[0] (v1).confirm_poll: must not be longer than confirm_timeout"],
        );
    }
}
