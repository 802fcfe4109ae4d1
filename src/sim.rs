//! Turns the validated configuration into what the simulator plays: each configured device, with the
//! register layout of its model, so that the simulator and the server read the same register maps.

use std::net::SocketAddr;

use actors::field::{DeviceKindSpec, FieldLayout};
use actors::model::MeterStatus;
use drivers::sim::{ConcentratorLayout, Fault, FieldSpec, SimDeviceSpec, SimKind, SimParameter, SimSpec};

use crate::config::Config;

fn field(f: &FieldLayout) -> FieldSpec {
    FieldSpec { offset: f.offset, data_type: f.data_type, word_order: f.word_order, scale: f.scale }
}

/// The simulation of every configured device. `listen_override` replaces each address (port 0 for the
/// in-process demo and tests); otherwise each device's configured address must be an IP and port.
pub fn spec_from_config(
    config: &Config,
    speed: f64,
    seed: u64,
    listen_override: Option<SocketAddr>,
) -> Result<SimSpec, String> {
    let mut devices = Vec::new();
    for region in &config.tree.regions {
        for d in &region.devices {
            let listen = match listen_override {
                Some(a) => a,
                None => d.target.addr.parse::<SocketAddr>().map_err(|_| {
                    format!(
                        "device {}: address {:?} must be an IP address and port to be simulated",
                        d.id, d.target.addr
                    )
                })?,
            };
            let kind = match &d.kind {
                DeviceKindSpec::Concentrator(c) => {
                    let l = &c.layout;
                    let meters = c.meters.iter().map(|m| m.slot).max().map_or(0, |s| s.saturating_add(1));
                    let status_bits = l
                        .status_bits
                        .iter()
                        .filter_map(|(bit, flag)| {
                            MeterStatus::NAMES.iter().find(|(_, f)| f == flag).map(|(n, _)| ((*n).to_owned(), *bit))
                        })
                        .collect();
                    SimKind::Concentrator(ConcentratorLayout {
                        meters,
                        function: l.function,
                        base: l.base,
                        stride: l.stride,
                        volume: field(&l.volume),
                        status: l.status.as_ref().map(field),
                        status_bits,
                    })
                }
                DeviceKindSpec::Logger(l) => SimKind::Logger(
                    l.parameters.iter().map(|p| SimParameter { name: p.name.clone(), spec: p.register }).collect(),
                ),
            };
            devices.push(SimDeviceSpec {
                id: d.id.to_string(),
                listen,
                unit_id: d.target.unit_id,
                kind,
                fault: Fault::default(),
            });
        }
    }
    Ok(SimSpec { devices, speed, seed })
}

/// Points every device of the configuration at the address the simulator bound for it.
pub fn point_at(config: &mut Config, sim: &drivers::sim::Simulator) {
    for region in &mut config.tree.regions {
        for d in &mut region.devices {
            if let Some(addr) = sim.addr(d.id.as_str()) {
                std::sync::Arc::make_mut(d).target.addr = addr.to_string();
            }
        }
    }
}
