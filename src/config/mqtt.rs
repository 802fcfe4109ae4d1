//! MQTT: the broker (`[mqtt]`), the payload mappings of its topics (`[[mqtt.topics]]`, R-A9: a new vendor's
//! payload is configuration) and the groups of meters that publish through it (`[[region.mqtt]]`).
//! A group's meters go through the same checks as every kind's meters (`meters.rs`).
//!
//! That groups need a broker is a cross-check (`cross.rs`). This module does not connect to anything.

use std::sync::Arc;
use std::time::Duration;

use actors::model::{DeviceId, MeterId};
use actors::mqtt::MqttGroupSpec;
use drivers::mqtt::{FieldPath, MeterSource, MqttSettings, PayloadMapping, StatusSpec};

use super::meters::resolve_meters;
use super::problems::Check;
use super::raw::RawMqtt;
use super::{RegionScope, Resolver};

/// A JSON pointer from the config, or a problem naming its key.
fn field_path(check: &mut Check, key: &str, field: &str, text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| {
        check.add(format!("{key}.{field}"), e);
        FieldPath::parse("/").unwrap_or_else(|_| unreachable!("\"/\" is a valid pointer"))
    })
}

/// The broker settings and topic mappings (R-A9: a new vendor's payload is configuration).
pub(super) fn resolve_broker(check: &mut Check, m: &RawMqtt, simulated: bool) -> MqttSettings {
    let mut settings = MqttSettings::new(m.host.clone(), m.port.unwrap_or(1883), m.client_id.clone());
    settings.username.clone_from(&m.username);
    settings.password.clone_from(&m.password);
    settings.keep_alive = check.duration("mqtt.keep_alive", m.keep_alive.as_ref(), settings.keep_alive);
    settings.max_backoff = check.duration("mqtt.max_backoff", m.max_backoff.as_ref(), settings.max_backoff);
    for (i, t) in m.topics.iter().enumerate() {
        let key = format!("mqtt.topics[{i}]");
        let meter = match (t.meter_topic_level, &t.meter) {
            (Some(level), None) => MeterSource::TopicLevel(level),
            (None, Some(p)) => MeterSource::Field(field_path(check, &key, "meter", p)),
            _ => {
                check.add(format!("{key}.meter"), "give exactly one of meter_topic_level or meter");
                MeterSource::TopicLevel(0)
            }
        };
        let volume = field_path(check, &key, "volume", &t.volume);
        let time = field_path(check, &key, "time", &t.time);
        let readings = t.readings.as_ref().map(|r| field_path(check, &key, "readings", r));
        let unit = t.unit.as_ref().map(|u| field_path(check, &key, "unit", u));
        let status = t.status.as_ref().map(|st| {
            let p = field_path(check, &key, "status.path", &st.path);
            match (&st.bits, &st.names) {
                (Some(bits), None) => {
                    StatusSpec::Bits { path: p, bits: bits.iter().map(|(n, b)| (*b, n.clone())).collect() }
                }
                (None, Some(names)) => {
                    StatusSpec::Names { path: p, names: names.iter().map(|(v, o)| (v.clone(), o.clone())).collect() }
                }
                _ => {
                    check.add(format!("{key}.status"), "give exactly one of bits or names");
                    StatusSpec::Names { path: p, names: Vec::new() }
                }
            }
        });
        let time_format = t.time_format.parse().unwrap_or_else(|e: String| {
            check.add(format!("{key}.time_format"), e);
            drivers::mqtt::TimeFormat::EpochMs
        });
        let mut mapping = PayloadMapping::single(meter, volume, time, time_format);
        mapping.readings = readings;
        mapping.unit = unit;
        mapping.status = status;
        mapping.scale = t.scale.unwrap_or(1.0);
        settings.topics.push((t.filter.clone(), mapping));
    }
    for (k, reason) in settings.problems() {
        // Port 0 asks the demo to start a broker of its own (only with the simulator).
        if k == "port" && settings.port == 0 && simulated {
            continue;
        }
        check.add(format!("mqtt.{k}"), reason);
    }
    settings
}

/// The `[[region.mqtt]]` meter groups of a region.
pub(super) fn resolve_groups(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<MqttGroupSpec>> {
    let mut groups = Vec::new();
    for (gi, g) in region.raw.mqtt.iter().enumerate() {
        let key = format!("{}.mqtt[{gi}] ({})", region.key, g.id);
        let check = &mut rs.check;
        check.device_id(&key, &g.id);
        let interval = check.duration(&format!("{key}.interval"), g.interval.as_ref(), Duration::from_secs(15 * 60));
        // A slot means nothing to a group: its meters are told apart by the id in the payload.
        let meters: Vec<MeterId> = resolve_meters(check, &key, &g.id, &g.meters).into_iter().map(|m| m.id).collect();
        rs.device_models.insert(DeviceId::new(g.id.clone()), "mqtt".to_owned());
        groups.push(Arc::new(MqttGroupSpec {
            id: DeviceId::new(g.id.clone()),
            name: g.name.clone().unwrap_or_else(|| g.id.clone()),
            region: region.id.clone(),
            meters,
            interval,
        }));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn a_topic_mapping_names_its_bad_keys() {
        let topic = |extra: &str| {
            format!(
                "[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"ww\"\n[[mqtt.topics]]\nfilter = \"w/+/r\"\n\
                 volume = \"/v\"\ntime = \"/t\"\ntime_format = \"epoch_s\"\n{extra}\n{MINIMAL}"
            )
        };
        check(&topic(""), &["mqtt.topics[0].meter: give exactly one of meter_topic_level or meter"]);
        check(&topic("meter = \"no-slash\""), &["mqtt.topics[0].meter: "]);
        check(
            &topic("meter_topic_level = 1\n[mqtt.topics.status]\npath = \"/s\""),
            &["mqtt.topics[0].status: give exactly one of bits or names"],
        );
    }
}
