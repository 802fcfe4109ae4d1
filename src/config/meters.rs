//! Meter lists, one way for every device kind that has meters: a concentrator's slots, an MQTT group's
//! meters and a CJ/T 188 gateway's meters all go through [`resolve_meters`] or, for lists of another shape,
//! [`check_meter_count`] and `Check::meter_id`, so each gets the same id syntax, duplicate and count checks
//! with the same messages.
//!
//! What a meter is beyond its id (a register slot, a 14-digit address) stays with its kind's module.

use actors::field::MeterSpec;
use actors::model::MeterId;

use super::problems::Check;
use super::raw::{RawMeter, RawMeters};

/// The most meters one device may list (slots are `u16`).
pub(super) const MAX_METERS: u32 = 65_535;

/// The number of meters a list names: at least one, at most [`MAX_METERS`] (reported at `key`).
pub(super) fn check_meter_count(check: &mut Check, key: &str, count: usize) {
    if count == 0 {
        check.add(key, "lists no meter");
    } else if count > MAX_METERS as usize {
        check.add(key, format!("lists {count} meters; at most {MAX_METERS}"));
    }
}

/// The meters of device `owner` from a series (`{ prefix, first, count, width }`, slots 0…), a list of ids
/// (slot = position) or a list of `{ id, slot }`, each checked (syntax, unique across every device), with the
/// count checked too; problems are reported at `{key}.meters`.
pub(super) fn resolve_meters(check: &mut Check, key: &str, owner: &str, raw: &RawMeters) -> Vec<MeterSpec> {
    let mkey = format!("{key}.meters");
    let meters: Vec<MeterSpec> = match raw {
        RawMeters::Series { prefix, first, count, width } => {
            let width = width.unwrap_or(4);
            if *count == 0 || *count > MAX_METERS {
                check.add(format!("{mkey}.count"), format!("must be 1..={MAX_METERS}"));
            }
            (0..(*count).min(MAX_METERS))
                .map(|i| MeterSpec {
                    id: MeterId::new(format!("{prefix}{:0width$}", u64::from(*first) + u64::from(i))),
                    slot: i as u16,
                })
                .collect()
        }
        RawMeters::List(list) => {
            check_meter_count(check, &mkey, list.len());
            list.iter()
                .take(MAX_METERS as usize)
                .enumerate()
                .map(|(i, m)| match m {
                    RawMeter::Id(id) => MeterSpec { id: MeterId::new(id.clone()), slot: i as u16 },
                    RawMeter::Slot { id, slot } => MeterSpec { id: MeterId::new(id.clone()), slot: *slot },
                })
                .collect()
        }
    };
    for m in &meters {
        check.meter_id(&mkey, owner, m.id.as_str());
    }
    meters
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, problems, MINIMAL};

    /// An MQTT group with `meters`, after the concentrator of MINIMAL (meters M1, M2).
    fn group(meters: &str) -> String {
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nclient_id = \"ww\"\n[[mqtt.topics]]\nfilter = \"w/+/r\"\nmeter_topic_level = 1\n\
             volume = \"/v\"\ntime = \"/t\"\ntime_format = \"epoch_s\"\n{MINIMAL}[[region.mqtt]]\nid = \"g1\"\nmeters = {meters}\n"
        )
    }

    #[test]
    fn an_mqtt_group_gets_the_meter_checks_a_concentrator_gets() {
        assert_eq!(problems(&group("[\"N1\", \"N2\"]")), Vec::<String>::new());
        check(&group("[\"N 1\"]"), &["region[0] (r1).mqtt[0] (g1).meters: meter id \"N 1\": ids are 1-64 letters"]);
        check(&group("[\"N1\", \"N1\"]"), &["mqtt[0] (g1).meters: meter \"N1\" is also configured on \"g1\""]);
        check(&group("[\"M2\"]"), &["mqtt[0] (g1).meters: meter \"M2\" is also configured on \"c1\""]);
        check(&group("{ prefix = \"N\", first = 1, count = 0 }"), &["mqtt[0] (g1).meters.count: must be 1..=65535"]);
        check(
            &group("{ prefix = \"N\", first = 1, count = 70000 }"),
            &["mqtt[0] (g1).meters.count: must be 1..=65535"],
        );
        check(&group("{ prefix = \"N \", first = 1, count = 2 }"), &["meter id \"N 0001\": ids are 1-64"]);
        check(&group("[]"), &["mqtt[0] (g1).meters: lists no meter"]);
    }

    #[test]
    fn concentrator_and_cjt188_meters_get_the_same_checks() {
        check(&MINIMAL.replace("[\"M1\", \"M2\"]", "[\"M 1\"]"), &["concentrator[0] (c1).meters: meter id \"M 1\""]);
        check(&MINIMAL.replace("[\"M1\", \"M2\"]", "[]"), &["concentrator[0] (c1).meters: lists no meter"]);
        let gateway = |id: &str| {
            format!(
                "{MINIMAL}[[region.cjt188]]\nid = \"g1\"\naddress = \"10.0.0.9:4001\"\nmeters = [{{ id = \"{id}\", address = \"00000000000001\" }}]\n"
            )
        };
        check(&gateway("C 1"), &["cjt188[0] (g1).meters[0] (C 1): meter id \"C 1\": ids are 1-64"]);
        check(&gateway("M1"), &["cjt188[0] (g1).meters[0] (M1): meter \"M1\" is also configured on \"c1\""]);
        check(
            &format!("{MINIMAL}[[region.cjt188]]\nid = \"g1\"\naddress = \"10.0.0.9:4001\"\nmeters = []\n"),
            &["cjt188[0] (g1).meters: lists no meter"],
        );
    }
}
