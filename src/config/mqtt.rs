//! MQTT: the broker (`[mqtt]`), the payload mappings of its topics (`[[mqtt.topics]]`, R-A9: a new vendor's
//! payload is configuration) and the groups of meters that publish through it (`[[region.mqtt]]`).
//! A group's meters go through the same checks as every kind's meters (`meters.rs`).
//!
//! That groups need a broker is a cross-check (`cross.rs`). This module does not connect to anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actors::model::{DeviceId, MeterId, MeterStatus};
use actors::mqtt::MqttGroupSpec;
use drivers::mqtt::{
    FieldPath, MeterSource, MqttSettings, PayloadMapping, StatusSpec, TimeFallback, TimeFormat, UnknownName,
};

use super::meters::resolve_meters;
use super::problems::Check;
use super::raw::{RawMqtt, RawMqttStatus, RawMqttTopic};
use super::{RegionScope, Resolver};

/// A JSON pointer from the config, or a problem naming its key.
fn field_path(check: &mut Check, key: &str, field: &str, text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| {
        check.add(format!("{key}.{field}"), e.to_string());
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
        let readings = t.readings.as_ref().map(|r| field_path(check, &key, "readings", r));
        let unit = t.unit.as_ref().map(|u| field_path(check, &key, "unit", u));
        let mut mapping = PayloadMapping::single(meter, volume, FieldPath::whole(), TimeFormat::EpochMs);
        resolve_mqtt_time(check, &key, t, &mut mapping);
        mapping.readings = readings;
        mapping.unit = unit;
        mapping.status = t.status.as_ref().map(|st| resolve_mqtt_status(check, &format!("{key}.status"), st));
        mapping.flags = t
            .flags
            .iter()
            .enumerate()
            .map(|(j, st)| resolve_mqtt_status(check, &format!("{key}.flags[{j}]"), st))
            .collect();
        check_mqtt_status_names(check, &key, &mapping);
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

/// The time of an MQTT topic mapping: `time` + `time_format`, and `time_fallback` (issue 7 §6).
fn resolve_mqtt_time(check: &mut Check, key: &str, t: &RawMqttTopic, mapping: &mut PayloadMapping) {
    mapping.time = t.time.as_ref().map(|p| field_path(check, key, "time", p));
    mapping.time_format = match (&t.time, &t.time_format) {
        (_, Some(format)) => format.parse().unwrap_or_else(|e: UnknownName| {
            check.add(format!("{key}.time_format"), e.to_string());
            TimeFormat::EpochMs
        }),
        (Some(_), None) => {
            check.add(format!("{key}.time_format"), "needed with time: epoch_s, epoch_ms or rfc3339");
            TimeFormat::EpochMs
        }
        (None, None) => TimeFormat::EpochMs,
    };
    mapping.time_fallback = match &t.time_fallback {
        None => TimeFallback::Refuse,
        Some(text) => text.parse().unwrap_or_else(|e: UnknownName| {
            check.add(format!("{key}.time_fallback"), e.to_string());
            TimeFallback::Refuse
        }),
    };
}

/// One status source of an MQTT topic mapping (`[mqtt.topics.status]` or one `[[mqtt.topics.flags]]`, at
/// `key`): its path and exactly one of `bits`, `names`, `bool`, `values`.
fn resolve_mqtt_status(check: &mut Check, key: &str, st: &RawMqttStatus) -> StatusSpec {
    let path = FieldPath::parse(&st.path).unwrap_or_else(|e| {
        check.add(format!("{key}.path"), e.to_string());
        FieldPath::whole()
    });
    let pairs = |map: &BTreeMap<String, String>| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match (&st.bits, &st.names, &st.flag, &st.values) {
        (Some(bits), None, None, None) => {
            StatusSpec::Bits { path, bits: bits.iter().map(|(n, b)| (*b, n.clone())).collect() }
        }
        (None, Some(names), None, None) => StatusSpec::Names { path, names: pairs(names) },
        (None, None, Some(name), None) => StatusSpec::Bool { path, name: name.clone() },
        (None, None, None, Some(values)) => StatusSpec::Values { path, values: pairs(values) },
        _ => {
            check.add(key.to_owned(), "give exactly one of bits, names, bool or values");
            StatusSpec::Names { path, names: Vec::new() }
        }
    }
}

/// Every status name an MQTT topic mapping gives must be one a device can report (`MeterStatus`); the
/// server's own flags (`status_unreadable`, `time_from_arrival`) cannot be mapped.
fn check_mqtt_status_names(check: &mut Check, key: &str, mapping: &PayloadMapping) {
    for (prefix, spec) in mapping.status_sources() {
        for name in spec.flag_names() {
            if !name.is_empty() && MeterStatus::device_flag_for(name).is_none() {
                check.add(
                    format!("{key}.{prefix}.{}", spec.kind_key()),
                    format!("unknown status {name:?}; expected one of {}", MeterStatus::device_names()),
                );
            }
        }
    }
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
    use drivers::mqtt::{StatusSpec, TimeFallback};

    use super::super::parse;
    use super::super::testing::{check, MINIMAL};

    /// An MQTT broker with one topic mapping whose body is `topic` (keys after `filter`), and a group.
    fn with_mqtt_topic(topic: &str) -> String {
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"ww\"\n[[mqtt.topics]]\nfilter = \"nb/+/up\"\n\
             meter_topic_level = 1\nvolume = \"/vol\"\n{topic}\n{MINIMAL}\n[[region.mqtt]]\nid = \"nb\"\nmeters = [\"N1\"]\n"
        )
    }

    #[test]
    fn mqtt_status_sources_time_fallback_and_their_problems() {
        // Old keys unchanged, plus several flag sources of every kind and the arrival-time fallback.
        let ok = with_mqtt_topic(
            r#"time_fallback = "arrival"
[mqtt.topics.status]
path = "/st"
bits = { battery_low = 1 }
[[mqtt.topics.flags]]
path = "/battery_low"
bool = "battery_low"
[[mqtt.topics.flags]]
path = "/valve"
values = { "0" = "", "1" = "valve_closed", "2" = "valve_fault" }
[[mqtt.topics.flags]]
path = "/alarms"
names = { LEAK = "reverse_flow" }"#,
        );
        let c = parse("t", &ok, None).unwrap_or_else(|e| panic!("{e}"));
        let mqtt = c.tree.mqtt.as_ref().expect("mqtt settings");
        let mapping = &mqtt.topics[0].1;
        assert_eq!((mapping.time.as_ref(), mapping.time_fallback), (None, TimeFallback::Arrival));
        let kinds: Vec<(String, &str)> = mapping.status_sources().map(|(k, s)| (k, s.kind_key())).collect();
        assert_eq!(
            kinds,
            [("status", "bits"), ("flags[0]", "bool"), ("flags[1]", "values"), ("flags[2]", "names")]
                .map(|(k, v)| (k.to_owned(), v))
        );
        let StatusSpec::Values { values, .. } = &mapping.flags[1] else { panic!("values: {:?}", mapping.flags[1]) };
        assert_eq!(values[2], ("2".to_owned(), "valve_fault".to_owned()));

        check(
            &with_mqtt_topic(
                r#"time = "/t"
[mqtt.topics.status]
path = "st"
bits = { battery_dead = 1 }
[[mqtt.topics.flags]]
path = "/b"
bool = "status_unreadable"
[[mqtt.topics.flags]]
path = "/v~2"
values = {}
[[mqtt.topics.flags]]
path = "/x"
bool = "battery_low"
values = { "1" = "valve_closed" }
[[mqtt.topics.flags]]
path = "/n"
names = { X = "valve_stuck" }"#,
            ),
            &[
                "test.toml: mqtt.topics[0].time_format: needed with time",
                "mqtt.topics[0].status.path: path \"st\" must start with '/'",
                "mqtt.topics[0].status.bits: unknown status \"battery_dead\"; expected one of valve_closed, battery_low",
                "mqtt.topics[0].flags[0].bool: unknown status \"status_unreadable\"",
                "mqtt.topics[0].flags[1].path: path \"/v~2\": '~' must be followed by 0 or 1",
                "mqtt.topics[0].flags[1].values: must list at least one value",
                "mqtt.topics[0].flags[2]: give exactly one of bits, names, bool or values",
                "mqtt.topics[0].flags[3].names: unknown status \"valve_stuck\"",
            ],
        );
        check(&with_mqtt_topic(""), &["mqtt.topics[0].time: give the time's path, or time_fallback = \"arrival\""]);
        check(
            &with_mqtt_topic("time = \"/t\"\ntime_format = \"epoch_s\"\ntime_fallback = \"now\""),
            &["mqtt.topics[0].time_fallback: unknown time fallback \"now\" (known: refuse, arrival)"],
        );
        check(
            &with_mqtt_topic(
                "time = \"/t\"\ntime_format = \"epoch_s\"\n[[mqtt.topics.flags]]\npath = \"/s\"\nbits = {}",
            ),
            &["mqtt.topics[0].flags[0].bits: must map at least one bit to a status name"],
        );
        // A device model's status bits are held to the same names: `models.rs`.
    }

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
            &["mqtt.topics[0].status: give exactly one of bits, names, bool or values"],
        );
    }
}
