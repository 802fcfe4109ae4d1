//! `[alarm_positions]` (issue 9 §3): the operator positions the alarm KPIs count per. (Not under `[alarms]`:
//! that table is the alarm settings, which admins also edit at runtime; positions are the control room's
//! layout.)
//!
//! ```toml
//! [alarm_positions]
//! east = ["r1", "r2"]   # one operator's desk answers for these regions
//! west = ["r3"]
//! ```
//!
//! Without it every region is one position (`control_room`): a county utility staffs one duty operator per
//! shift, and splitting the count by region would hide that one person's flood (see `actors::alarms::kpi`).
//! With it every region belongs to exactly one position: a region left out, named twice or unknown is a
//! problem at its key.

use std::collections::{BTreeMap, HashMap};

use actors::alarms::kpi::AlarmPositions;
use actors::model::RegionId;
use actors::tree::RegionSpec;

use super::problems::Check;

/// Resolves `[alarm_positions]` against the configured regions.
pub(super) fn resolve_positions(
    check: &mut Check,
    raw: Option<&BTreeMap<String, Vec<String>>>,
    regions: &[RegionSpec],
) -> AlarmPositions {
    let Some(raw) = raw else { return AlarmPositions::default() };
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let mut positions = Vec::new();
    for (name, members) in raw {
        let key = format!("alarm_positions.{name}");
        check.id(&key, name);
        if members.is_empty() {
            check.add(&key, "a position answers for at least one region");
        }
        for region in members {
            if !regions.iter().any(|r| r.id.as_str() == region) {
                check.add(&key, format!("no [[region]] {region:?}"));
            } else if let Some(first) = owner.insert(region, name) {
                check.add(&key, format!("region {region:?} is already at position {first:?}"));
            }
        }
        positions.push((name.clone(), members.iter().map(|r| RegionId::new(r.clone())).collect()));
    }
    if !positions.is_empty() {
        for r in regions.iter().filter(|r| !owner.contains_key(r.id.as_str())) {
            check.add("alarm_positions", format!("region {:?} is at no position", r.id.as_str()));
        }
    }
    AlarmPositions::new(positions)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, problems, MINIMAL};

    #[test]
    fn every_region_is_at_exactly_one_position() {
        let two = format!("{MINIMAL}[[region]]\nid = \"r2\"\n");
        assert_eq!(
            problems(&format!("{two}[alarm_positions]\neast = [\"r1\"]\nwest = [\"r2\"]\n")),
            Vec::<String>::new()
        );
        assert_eq!(problems(&two), Vec::<String>::new(), "no positions: one for all");
        check(
            &format!("{two}[alarm_positions]\neast = [\"r1\"]\n"),
            &["alarm_positions: region \"r2\" is at no position"],
        );
        check(
            &format!("{two}[alarm_positions]\neast = [\"r1\", \"r2\"]\nwest = [\"r2\", \"r9\"]\n"),
            &[
                "alarm_positions.west: region \"r2\" is already at position \"east\"",
                "alarm_positions.west: no [[region]] \"r9\"",
            ],
        );
        check(
            &format!("{two}[alarm_positions]\neast = [\"r1\", \"r2\"]\nnobody = []\n"),
            &["alarm_positions.nobody: a position answers"],
        );
    }
}
