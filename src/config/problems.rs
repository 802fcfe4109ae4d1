//! The problem collector and the checks every section shares: one function per rule (id syntax, unique device
//! and meter ids, durations, Modbus unit ids, addresses, limits, counts), so that every device kind gets the
//! same rule with the same message. A problem names the file and the key it concerns (R-A5); a warning is a
//! problem that does not stop the configuration from loading.
//!
//! It deliberately knows nothing of any section's schema: callers pass the key to report.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use actors::model::{default_limits, SiteType};

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration loads, but something in it will likely surprise its user.
    Warning,
}

/// One problem in the configuration: where, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
    pub severity: Severity,
}

impl Problem {
    /// An error in `file` at `key` (empty: the whole file).
    pub fn error(file: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { file: file.into(), key: key.into(), message: message.into(), severity: Severity::Error }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// All errors found; displayed one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem{}:", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a text is not a duration. Each variant carries the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like \"500ms\", \"30s\", \"15m\", \"2h\"")]
    NotANumber(String),
    #[error("{0:?} has no unit; use ms, s, m, h or d")]
    NoUnit(String),
    #[error("{0:?} must be more than 0 and at most a year")]
    OutOfRange(String),
}

/// Parses a duration such as `500ms`, `30s`, `15m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| DurationError::NotANumber(text.to_owned()))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(DurationError::NoUnit(text.to_owned())),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 366.0 * 86400.0 {
        return Err(DurationError::OutOfRange(text.to_owned()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Ids of regions, lines, devices and meters: 1-64 letters, digits, '-', '_' or '.'.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const ID_RULE: &str = "ids are 1-64 letters, digits, '-', '_' or '.'";

/// An address naming a serial line instead of a TCP address: `rtu:<line id>`.
pub(super) const RTU_PREFIX: &str = "rtu:";

/// Collects problems while resolving one file, and the ids seen so far (device and meter ids are unique
/// across every kind and region).
pub(super) struct Check {
    file: String,
    problems: Vec<Problem>,
    device_ids: HashSet<String>,
    /// Meter id → the device it is configured on.
    meter_ids: HashMap<String, String>,
}

impl Check {
    pub(super) fn new(file: &str) -> Check {
        Check { file: file.to_owned(), problems: Vec::new(), device_ids: HashSet::new(), meter_ids: HashMap::new() }
    }

    /// Records an error at `key`.
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::error(self.file.clone(), key, message));
    }

    /// Records a warning at `key`: reported by `validate`, but the configuration still loads.
    pub(super) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
            severity: Severity::Warning,
        });
    }

    /// Problems found elsewhere (device model files), kept with their own file.
    pub(super) fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.problems.extend(problems);
    }

    /// Everything recorded, errors and warnings.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Whether any error (not a warning) was recorded.
    pub(super) fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// Everything recorded: the errors, or (with none) the warnings.
    pub(super) fn finish(self) -> Result<Vec<Problem>, ConfigErrors> {
        let (errors, warnings): (Vec<Problem>, Vec<Problem>) =
            self.problems.into_iter().partition(|p| p.severity == Severity::Error);
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The duration at `key`, or `default` when absent; a malformed one is a problem (and `default`).
    pub(super) fn duration(&mut self, key: &str, value: Option<&String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => parse_duration(v).unwrap_or_else(|e| {
                self.add(key, e.to_string());
                default
            }),
        }
    }

    /// The id syntax, reported at `{key}.id`.
    pub(super) fn id(&mut self, key: &str, id: &str) {
        if !valid_id(id) {
            self.add(format!("{key}.id"), ID_RULE);
        }
    }

    /// A device id of any kind: well formed, and not used by another device of any kind.
    pub(super) fn device_id(&mut self, key: &str, id: &str) {
        self.id(key, id);
        if !self.device_ids.insert(id.to_owned()) {
            self.add(format!("{key}.id"), format!("device id {id:?} is used twice"));
        }
    }

    /// A meter id on device `owner`: well formed, and not configured on any device before (reported at `key`).
    pub(super) fn meter_id(&mut self, key: &str, owner: &str, id: &str) {
        if !valid_id(id) {
            self.add(key, format!("meter id {id:?}: {ID_RULE}"));
        }
        if let Some(other) = self.meter_ids.insert(id.to_owned(), owner.to_owned()) {
            self.add(key, format!("meter {id:?} is also configured on {other:?}"));
        }
    }

    /// A count that must be at least 1.
    pub(super) fn at_least_one(&mut self, key: &str, value: u32) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }

    /// A Modbus unit id (1 when absent), reported at `{key}.unit_id`; out of range is a problem.
    pub(super) fn unit_id(&mut self, key: &str, unit_id: Option<i64>) -> u8 {
        let unit_id = unit_id.unwrap_or(1);
        if !(0..=247).contains(&unit_id) {
            self.add(format!("{key}.unit_id"), format!("{unit_id} is not a Modbus unit id (0-247)"));
        }
        unit_id.clamp(0, 247) as u8
    }

    /// The address of a device: `host:port` with a port, or `rtu:<line id>` (checked against the lines in
    /// `cross.rs`).
    pub(super) fn address(&mut self, key: &str, address: &str) {
        if address.starts_with(RTU_PREFIX) {
            return;
        }
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => self.add(key, format!("{address:?} is not host:port")),
        }
    }

    /// The site type at `{key}.site_type` (plant outlet when absent, so configurations written before the key
    /// existed keep their limits).
    pub(super) fn site_type(&mut self, key: &str, value: Option<&String>) -> SiteType {
        match value {
            None => SiteType::default(),
            Some(v) => v.parse().unwrap_or_else(|e: actors::model::quality::UnknownSiteType| {
                self.add(format!("{key}.site_type"), e.to_string());
                SiteType::default()
            }),
        }
    }

    /// The limits of water-quality `parameter` at a site of type `site`: each side as configured, or the
    /// standard's default for the site (`model::quality`); checked with [`Check::limits`].
    pub(super) fn quality_limits(
        &mut self,
        key: &str,
        site: SiteType,
        parameter: &str,
        low: Option<f64>,
        high: Option<f64>,
    ) -> (Option<f64>, Option<f64>) {
        let default = default_limits(site, parameter);
        let (low, high) = (low.or(default.and_then(|d| d.low)), high.or(default.and_then(|d| d.high)));
        self.limits(key, low, high);
        (low, high)
    }

    /// Limits of a measured value: finite, and low below high.
    pub(super) fn limits(&mut self, key: &str, low: Option<f64>, high: Option<f64>) {
        if let (Some(lo), Some(hi)) = (low, high) {
            if lo >= hi {
                self.add(key, format!("low ({lo}) must be below high ({hi})"));
            }
        }
        if low.is_some_and(|v| !v.is_finite()) || high.is_some_and(|v| !v.is_finite()) {
            self.add(key, "limits must be finite numbers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check;
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("15"), Err(DurationError::NoUnit("15".into())));
        assert_eq!(
            parse_duration("15").unwrap_err().to_string(),
            "\"15\" has no unit; use ms, s, m, h or d",
            "the problem text users see is unchanged"
        );
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10y").is_err());
    }

    #[test]
    fn a_device_id_is_unique_across_every_kind() {
        let text = r#"
[mqtt]
host = "127.0.0.1"
client_id = "ww"
[[region]]
id = "r1"
[[region.concentrator]]
id = "same"
address = "10.0.0.5:502"
model = "ww-concentrator-v1"
meters = ["M1"]
[[region.mqtt]]
id = "same"
meters = ["N1"]
[[region.station]]
id = "bad id"
mn = "X1"
factors = [{ factor = "w01001" }]
"#;
        check(
            text,
            &[
                "region[0] (r1).mqtt[0] (same).id: device id \"same\" is used twice",
                "region[0] (r1).station[0] (bad id).id: ids are 1-64 letters",
            ],
        );
    }
}
