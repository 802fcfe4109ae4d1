//! Payload mappings: where a vendor's JSON payload keeps the meter id, the cumulative volume, the time and the
//! status, so that a new vendor is configuration, not code (R-A9). [`map`] turns one MQTT message into readings.
//!
//! # Paths
//! A [`FieldPath`] is a JSON Pointer (RFC 6901): `/reading/vol`, `/meters/0/id`, `~1` for a `/` inside a key,
//! `~0` for a `~`, and the empty string for the whole value. When the mapping has a `readings` array, each
//! element is one reading and paths are taken from the element; a path written with a leading `^` (`^/time`) is
//! taken from the payload root instead, for what a concentrator sends once for all its meters.
//!
//! # The meter id
//! Either a field of the payload ([`MeterSource::Field`], a string or a non-negative integer), or a level of the
//! topic name ([`MeterSource::TopicLevel`]): level 1 of `water/M-0042/reading` is `M-0042`, so the filter
//! `water/+/reading` with `meter_topic_level = 1` reads the id from the `+`. Levels count from 0.
//!
//! **Invariant:** [`map`] never panics and changes nothing: a payload either maps completely or is refused as a
//! whole with a [`MapError`] that names the path and the reason (R-G3). One bad element of a concentrator's
//! array refuses the whole message, because a partial commit could not be told apart from a complete one.
//!
//! This module does not know what a status name means to the utility; it passes on the names the mapping
//! gives the device's bits.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::time::rfc3339_to_ms;

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z); later times are refused as absurd.
const MAX_TS_MS: i64 = 253_402_300_799_999;
/// The largest cumulative volume accepted (as the model's `Volume`): far beyond any meter's register.
const MAX_VOLUME_M3: f64 = 1e12;
/// Longest meter id accepted.
const MAX_METER_ID_LEN: usize = 128;

/// Volume units a payload may state, and their factor to m³. China bills water in 吨 (tonnes), i.e. m³.
pub const VOLUME_UNITS: [(&str, f64); 10] = [
    ("m3", 1.0),
    ("m³", 1.0),
    ("M3", 1.0),
    ("t", 1.0),
    ("吨", 1.0),
    ("L", 0.001),
    ("l", 0.001),
    ("dm3", 0.001),
    ("升", 0.001),
    ("kL", 1.0),
];

/// A place in a JSON payload: a JSON Pointer, optionally anchored at the payload root with `^`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// As written in the configuration; shown in errors.
    text: String,
    /// `^/…`: taken from the payload root even inside an array of readings.
    from_root: bool,
    /// The pointer proper, without the `^`.
    pointer: String,
}

impl FieldPath {
    /// Parses a path: `""`, `/a/b`, or `^/a/b`.
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let (from_root, pointer) = match text.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(format!("path {text:?} must start with '/' (a JSON pointer such as \"/reading/vol\")"));
        }
        let mut chars = pointer.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!("path {text:?}: '~' must be followed by 0 or 1 ('~0' is '~', '~1' is '/')"));
            }
        }
        Ok(FieldPath { text: text.to_owned(), from_root, pointer: pointer.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path is taken from the payload root inside an array of readings.
    pub fn from_root(&self) -> bool {
        self.from_root
    }

    /// The value at this path, and the path to show for it.
    fn lookup<'v>(&self, at: &At<'v>) -> (Option<&'v Value>, String) {
        let (value, shown) = match at.element {
            Some((base, element)) if !self.from_root => {
                (element.pointer(&self.pointer), format!("{base}{}", self.pointer))
            }
            _ => (at.root.pointer(&self.pointer), self.pointer.clone()),
        };
        // The empty pointer is the whole payload; say so instead of printing nothing.
        (value, if shown.is_empty() { "(payload)".to_owned() } else { shown })
    }
}

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldPath::parse(s)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the meter id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterSource {
    /// A payload field holding a string or a non-negative integer.
    Field(FieldPath),
    /// A level of the topic name, counted from 0 (`water/+/reading` → level 1).
    TopicLevel(usize),
}

/// How a payload writes its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// An integer: seconds since the Unix epoch.
    EpochS,
    /// An integer: milliseconds since the Unix epoch.
    EpochMs,
    /// A string such as `2024-03-01T12:00:00+08:00` (strict RFC 3339, an offset is required).
    Rfc3339,
}

impl FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epoch_s" => Ok(TimeFormat::EpochS),
            "epoch_ms" => Ok(TimeFormat::EpochMs),
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            other => Err(format!("unknown time format {other:?} (known: epoch_s, epoch_ms, rfc3339)")),
        }
    }
}

/// How a payload writes a meter's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSpec {
    /// A non-negative integer whose bits mean something: `(bit, name)`; bits not listed are ignored.
    Bits { path: FieldPath, bits: Vec<(u8, String)> },
    /// An array of strings. `names` maps a vendor's name to ours; when it is empty the names are taken as they
    /// are, otherwise names not listed are ignored.
    Names { path: FieldPath, names: Vec<(String, String)> },
}

impl StatusSpec {
    fn path(&self) -> &FieldPath {
        match self {
            StatusSpec::Bits { path, .. } | StatusSpec::Names { path, .. } => path,
        }
    }
}

/// Where things sit in one vendor's payload. Built from configuration; [`PayloadMapping::check`] says what is
/// wrong with one before it is used.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadMapping {
    /// `None`: the payload is one reading. `Some(path)`: the value there is an array of readings (a concentrator
    /// publishing its meters, or a meter publishing a day of hourly readings).
    pub readings: Option<FieldPath>,
    pub meter: MeterSource,
    /// The cumulative volume, a JSON number.
    pub volume: FieldPath,
    /// Multiplies the number at `volume` (and the unit's factor, if any) to give m³: `0.001` for litres.
    pub scale: f64,
    /// Where the payload states the volume's unit (one of [`VOLUME_UNITS`]); its factor applies on top of
    /// `scale`, which is then normally 1.
    pub unit: Option<FieldPath>,
    pub time: FieldPath,
    pub time_format: TimeFormat,
    /// `None`: the payload carries no status. A configured status field that is absent or `null` means no flags.
    pub status: Option<StatusSpec>,
}

impl PayloadMapping {
    /// A mapping for a payload that is one reading with the given fields, scale 1, no unit and no status.
    pub fn single(meter: MeterSource, volume: FieldPath, time: FieldPath, time_format: TimeFormat) -> PayloadMapping {
        PayloadMapping { readings: None, meter, volume, scale: 1.0, unit: None, time, time_format, status: None }
    }

    /// Every problem of this mapping, as `(key, reason)`, keyed like the proposed TOML (`scale`, `status.bits`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.scale.is_finite() || self.scale <= 0.0 {
            out.push(("scale", format!("must be a positive number, not {}", self.scale)));
        }
        if self.readings.as_ref().is_some_and(FieldPath::from_root) {
            out.push(("readings", "the readings array is always taken from the payload root; drop the '^'".into()));
        }
        if let Some(StatusSpec::Bits { bits, .. }) = &self.status {
            for (bit, name) in bits {
                if *bit > 63 {
                    out.push(("status.bits", format!("bit {bit} of {name:?} is beyond bit 63")));
                }
                if name.is_empty() {
                    out.push(("status.bits", format!("bit {bit} has an empty name")));
                }
            }
        }
        if let Some(StatusSpec::Names { names, .. }) = &self.status {
            if names.iter().any(|(vendor, ours)| vendor.is_empty() || ours.is_empty()) {
                out.push(("status.names", "names must not be empty".into()));
            }
        }
        out
    }

    /// The first problem of [`PayloadMapping::problems`], as one message.
    pub fn check(&self) -> Result<(), String> {
        match self.problems().into_iter().next() {
            Some((key, reason)) => Err(format!("{key}: {reason}")),
            None => Ok(()),
        }
    }
}

/// One reading as the payload gave it, in the units the server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedReading {
    pub meter: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// Cumulative volume in m³ (not rounded; the model rounds to the litre).
    pub volume_m3: f64,
    /// Status names in the mapping's order; empty when none is set.
    pub status: Vec<String>,
}

/// Why a message produced no readings. Paths are the full JSON pointer in the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("{path}: missing")]
    Missing { path: String },
    #[error("{path}: expected {expected}, got {got}")]
    WrongType { path: String, expected: &'static str, got: &'static str },
    #[error("{path}: {reason}")]
    BadValue { path: String, reason: String },
    #[error("topic {topic:?}, level {level}: {reason}")]
    Topic { topic: String, level: usize, reason: String },
    /// Raised by the ingest, not by [`map`]: the message came on a subscription that is no longer configured.
    #[error("no configured topic filter matches {topic:?}")]
    NoMapping { topic: String },
}

/// Where paths are resolved: the payload root, and inside an array the current element with its path.
struct At<'v> {
    root: &'v Value,
    element: Option<(&'v str, &'v Value)>,
}

/// Maps one message. Returns every reading of the payload, in order, or the first reason it cannot be mapped.
pub fn map(mapping: &PayloadMapping, topic: &str, payload: &[u8]) -> Result<Vec<MappedReading>, MapError> {
    let root: Value = serde_json::from_slice(payload).map_err(|e| MapError::NotJson(e.to_string()))?;
    match &mapping.readings {
        None => Ok(vec![map_one(mapping, topic, &At { root: &root, element: None })?]),
        Some(path) => {
            let (value, shown) = path.lookup(&At { root: &root, element: None });
            let elements = match value {
                None => return Err(MapError::Missing { path: shown }),
                Some(Value::Array(elements)) => elements,
                Some(other) => return Err(wrong_type(shown, "an array of readings", other)),
            };
            let mut out = Vec::with_capacity(elements.len());
            let prefix = path.pointer.as_str();
            for (i, element) in elements.iter().enumerate() {
                let base = format!("{prefix}/{i}");
                out.push(map_one(mapping, topic, &At { root: &root, element: Some((&base, element)) })?);
            }
            Ok(out)
        }
    }
}

fn map_one(mapping: &PayloadMapping, topic: &str, at: &At<'_>) -> Result<MappedReading, MapError> {
    let meter = match &mapping.meter {
        MeterSource::Field(path) => meter_from_field(path, at)?,
        MeterSource::TopicLevel(level) => meter_from_topic(topic, *level)?,
    };

    let (value, path) = required(&mapping.volume, at)?;
    let raw = value.as_f64().ok_or_else(|| wrong_type(path.clone(), "a number", value))?;
    let unit_factor = match &mapping.unit {
        None => 1.0,
        Some(unit_path) => unit_factor(unit_path, at)?,
    };
    let volume_m3 = raw * mapping.scale * unit_factor;
    if !volume_m3.is_finite() {
        return Err(MapError::BadValue { path, reason: format!("volume {raw} does not scale to a finite number") });
    }
    if volume_m3 < 0.0 {
        return Err(MapError::BadValue { path, reason: format!("a cumulative volume cannot be negative ({raw})") });
    }
    if volume_m3 > MAX_VOLUME_M3 {
        return Err(MapError::BadValue {
            path,
            reason: format!("{volume_m3:e} m3 is beyond any meter's register ({MAX_VOLUME_M3:e} m3)"),
        });
    }

    let ts_ms = time_ms(&mapping.time, mapping.time_format, at)?;
    let status = match &mapping.status {
        None => Vec::new(),
        Some(spec) => status_names(spec, at)?,
    };
    Ok(MappedReading { meter, ts_ms, volume_m3, status })
}

/// The value at `path`, refusing an absent one. `null` is returned as it is, for a type error naming it.
fn required<'v>(path: &FieldPath, at: &At<'v>) -> Result<(&'v Value, String), MapError> {
    match path.lookup(at) {
        (Some(value), shown) => Ok((value, shown)),
        (None, shown) => Err(MapError::Missing { path: shown }),
    }
}

fn meter_from_field(path: &FieldPath, at: &At<'_>) -> Result<String, MapError> {
    let (value, shown) = required(path, at)?;
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_u64() {
            Some(n) => n.to_string(),
            None => return Err(wrong_type(shown, "a string or a non-negative integer", value)),
        },
        other => return Err(wrong_type(shown, "a string or a non-negative integer", other)),
    };
    check_meter_id(&id).map_err(|reason| MapError::BadValue { path: shown, reason })?;
    Ok(id)
}

fn meter_from_topic(topic: &str, level: usize) -> Result<String, MapError> {
    let err = |reason: String| MapError::Topic { topic: topic.to_owned(), level, reason };
    let Some(id) = topic.split('/').nth(level) else {
        return Err(err(format!("the topic has only {} levels", topic.split('/').count())));
    };
    check_meter_id(id).map_err(err)?;
    Ok(id.to_owned())
}

fn check_meter_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("the meter id is empty".to_owned());
    }
    if id.chars().count() > MAX_METER_ID_LEN {
        return Err(format!("the meter id is longer than {MAX_METER_ID_LEN} characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("the meter id {id:?} contains control characters"));
    }
    Ok(())
}

fn unit_factor(path: &FieldPath, at: &At<'_>) -> Result<f64, MapError> {
    let (value, shown) = required(path, at)?;
    let Value::String(unit) = value else { return Err(wrong_type(shown, "a string", value)) };
    match VOLUME_UNITS.iter().find(|(name, _)| name == unit) {
        Some((_, factor)) => Ok(*factor),
        None => {
            let known: Vec<&str> = VOLUME_UNITS.iter().map(|(name, _)| *name).collect();
            Err(MapError::BadValue {
                path: shown,
                reason: format!("unknown volume unit {unit:?} (known: {})", known.join(", ")),
            })
        }
    }
}

fn time_ms(path: &FieldPath, format: TimeFormat, at: &At<'_>) -> Result<i64, MapError> {
    let (value, shown) = required(path, at)?;
    let ms = match format {
        TimeFormat::EpochS | TimeFormat::EpochMs => {
            let Some(n) = value.as_i64() else {
                return Err(wrong_type(shown, "an integer (epoch time)", value));
            };
            let factor = if format == TimeFormat::EpochS { 1000 } else { 1 };
            n.checked_mul(factor).ok_or_else(|| MapError::BadValue {
                path: shown.clone(),
                reason: format!("epoch time {n} is out of range"),
            })?
        }
        TimeFormat::Rfc3339 => {
            let Value::String(text) = value else {
                return Err(wrong_type(shown, "an RFC 3339 string", value));
            };
            rfc3339_to_ms(text).map_err(|reason| MapError::BadValue { path: shown.clone(), reason })?
        }
    };
    if !(0..=MAX_TS_MS).contains(&ms) {
        return Err(MapError::BadValue {
            path: shown,
            reason: format!("time {ms} ms since 1970 is outside 1970..=9999 (seconds and milliseconds mixed up?)"),
        });
    }
    Ok(ms)
}

fn status_names(spec: &StatusSpec, at: &At<'_>) -> Result<Vec<String>, MapError> {
    let (value, shown) = match spec.path().lookup(at) {
        (None | Some(Value::Null), _) => return Ok(Vec::new()),
        (Some(value), shown) => (value, shown),
    };
    match spec {
        StatusSpec::Bits { bits, .. } => {
            let Some(word) = value.as_u64() else {
                return Err(wrong_type(shown, "a non-negative integer (status bits)", value));
            };
            Ok(bits
                .iter()
                .filter(|(bit, _)| *bit < 64 && word & (1u64 << bit) != 0)
                .map(|(_, name)| name.clone())
                .collect())
        }
        StatusSpec::Names { names, .. } => {
            let Value::Array(items) = value else {
                return Err(wrong_type(shown, "an array of status names", value));
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Value::String(name) = item else {
                    return Err(wrong_type(format!("{shown}/{i}"), "a string", item));
                };
                if names.is_empty() {
                    out.push(name.clone());
                } else if let Some((_, ours)) = names.iter().find(|(vendor, _)| vendor == name) {
                    out.push(ours.clone());
                }
            }
            Ok(out)
        }
    }
}

fn wrong_type(path: String, expected: &'static str, got: &Value) -> MapError {
    MapError::WrongType { path, expected, got: json_type(got) }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "fractional number",
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => "negative integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
