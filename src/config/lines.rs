//! Serial lines (`[[line]]`, RS-485) and the paths to Modbus devices: `host:port` over TCP, or `rtu:<line id>`
//! for a unit on a line. A line is shared by Modbus RTU slaves, or owned by one CJ/T 188 gateway alone.
//!
//! Which device answers as which unit of which line is a cross-check over every section (`cross.rs`); this
//! module only resolves the lines themselves and who owns them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actors::modbus_link::ModbusPath;
use drivers::modbus::TcpTarget;
use drivers::rtu::LineSettings;

use super::problems::{Check, RTU_PREFIX};
use super::raw::RawLine;

/// The configured lines.
pub(super) struct Lines {
    /// Each line's id and settings, in file order (the tree starts one bus per line).
    pub(super) settings: Vec<(String, LineSettings)>,
    pub(super) ids: HashSet<String>,
    /// Lines owned by a CJ/T 188 gateway, with its id: no other device may use them.
    pub(super) cjt188_owned: HashMap<String, String>,
}

/// Resolves every `[[line]]`.
pub(super) fn resolve_lines(check: &mut Check, raw: &[RawLine]) -> Lines {
    let mut lines = Lines { settings: Vec::new(), ids: HashSet::new(), cjt188_owned: HashMap::new() };
    for (li, l) in raw.iter().enumerate() {
        let key = format!("line[{li}] ({})", l.id);
        check.id(&key, &l.id);
        if !lines.ids.insert(l.id.clone()) {
            check.add(format!("{key}.id"), "line id used twice");
        }
        let timeout = check.duration(&format!("{key}.timeout"), l.timeout.as_ref(), Duration::from_millis(500));
        match LineSettings::new(l.path.clone(), l.baud.unwrap_or(9600), l.format.as_deref().unwrap_or("8N1"), timeout) {
            Ok(settings) => lines.settings.push((l.id.clone(), settings)),
            Err(e) => check.add(&key, e.to_string()),
        }
    }
    lines
}

/// The path to a Modbus device at `address`: `host:port`, or `rtu:<line id>` (a unit on that line).
pub(super) fn modbus_path(address: &str, unit_id: u8, timeout: Duration) -> ModbusPath {
    match address.strip_prefix(RTU_PREFIX) {
        Some(line) => ModbusPath::Rtu { line: line.to_owned(), unit_id, timeout },
        None => ModbusPath::Tcp(TcpTarget { addr: address.to_owned(), unit_id, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn a_line_needs_a_unique_id_and_a_known_format() {
        let line = |id: &str, format: &str| {
            format!("[[line]]\nid = \"{id}\"\npath = \"/dev/ttyUSB0\"\nformat = \"{format}\"\n")
        };
        check(
            &format!("{}{}{MINIMAL}", line("l1", "8N1"), line("l1", "8N1")),
            &["line[1] (l1).id: line id used twice"],
        );
        check(&format!("{}{MINIMAL}", line("l 1", "8N1")), &["line[0] (l 1).id: ids are 1-64"]);
        check(&format!("{}{MINIMAL}", line("l1", "9Z9")), &["line[0] (l1): "]);
    }
}
