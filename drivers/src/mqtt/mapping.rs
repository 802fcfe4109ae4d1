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
//! # Status flags
//! A mapping may read flags from several places of the payload ([`PayloadMapping::status`] and
//! [`PayloadMapping::flags`]), each a [`StatusSpec`]: a bit word, an array of names, a boolean, or an enumerated
//! value. The names they give are gathered (OR-ed) into one list. A status source that is absent or `null` gives
//! no flags.
//!
//! # The time
//! A payload without a time is refused, unless the mapping says [`TimeFallback::Arrival`]: then the reading has
//! no time of its own ([`MappedReading::ts_ms`] is `None`) and the receiver stamps it with its arrival time.
//!
//! **Invariant:** [`map`] never panics and changes nothing: a payload either maps completely or is refused as a
//! whole with a [`MapError`] that names the path and the reason (R-G3). One bad element of a concentrator's
//! array refuses the whole message, because a partial commit could not be told apart from a complete one.
//! The one exception is the status: when the meter, volume and time decode but a status source does not, the
//! reading is kept, with the problem in [`MappedReading::status_error`], because refusing it would lose
//! billing data over a flag (issue 7 §6).
//!
//! This module does not know what a status name means to the utility; it passes on the names the mapping
//! gives the device's bits and values (the configuration checks them against the model's names).

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

/// Why a configured path is not a JSON Pointer (optionally anchored with `^`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} must start with '/' (a JSON pointer such as \"/reading/vol\")")]
    NoSlash(String),
    #[error("path {0:?}: '~' must be followed by 0 or 1 ('~0' is '~', '~1' is '/')")]
    BadEscape(String),
}

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
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        let (from_root, pointer) = match text.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(PathError::NoSlash(text.to_owned()));
        }
        let mut chars = pointer.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(PathError::BadEscape(text.to_owned()));
            }
        }
        Ok(FieldPath { text: text.to_owned(), from_root, pointer: pointer.to_owned() })
    }

    /// The empty pointer: the whole payload (or the whole element inside an array of readings).
    pub fn whole() -> FieldPath {
        FieldPath { text: String::new(), from_root: false, pointer: String::new() }
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
    type Err = PathError;
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

/// A configured name that is not one of the known ones (a time format, a time fallback).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?} (known: {known})")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub known: &'static str,
}

impl FromStr for TimeFormat {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "epoch_s" => Ok(TimeFormat::EpochS),
            "epoch_ms" => Ok(TimeFormat::EpochMs),
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            other => {
                Err(UnknownName { what: "time format", name: other.to_owned(), known: "epoch_s, epoch_ms, rfc3339" })
            }
        }
    }
}

/// What to do with a reading whose payload has no time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TimeFallback {
    /// Refuse it (the default): a reading without a time cannot be billed by period.
    #[default]
    Refuse,
    /// Keep it; the receiver uses its arrival time and says so ([`MappedReading::ts_ms`] is `None`).
    Arrival,
}

impl FromStr for TimeFallback {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(TimeFallback::Refuse),
            "arrival" => Ok(TimeFallback::Arrival),
            other => Err(UnknownName { what: "time fallback", name: other.to_owned(), known: "refuse, arrival" }),
        }
    }
}

/// How a payload writes a meter's status, or one part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSpec {
    /// A non-negative integer whose bits mean something: `(bit, name)`; bits not listed are ignored.
    Bits { path: FieldPath, bits: Vec<(u8, String)> },
    /// An array of strings. `names` maps a vendor's name to ours; when it is empty the names are taken as they
    /// are, otherwise names not listed are ignored.
    Names { path: FieldPath, names: Vec<(String, String)> },
    /// A boolean (`true`/`false`, or the integers 1/0): true sets the flag `name`.
    Bool { path: FieldPath, name: String },
    /// One value out of a closed set, an integer or a string: `(value as text, name)`. A listed value sets the
    /// flag `name`, or none when `name` is empty (`"0" = ""`: open, nothing to flag); a value not listed is a
    /// decode problem, not silence.
    Values { path: FieldPath, values: Vec<(String, String)> },
}

impl StatusSpec {
    pub fn path(&self) -> &FieldPath {
        match self {
            StatusSpec::Bits { path, .. }
            | StatusSpec::Names { path, .. }
            | StatusSpec::Bool { path, .. }
            | StatusSpec::Values { path, .. } => path,
        }
    }

    /// The configuration key of this kind of spec: `bits`, `names`, `bool` or `values`.
    pub fn kind_key(&self) -> &'static str {
        match self {
            StatusSpec::Bits { .. } => "bits",
            StatusSpec::Names { .. } => "names",
            StatusSpec::Bool { .. } => "bool",
            StatusSpec::Values { .. } => "values",
        }
    }

    /// Every flag name this spec can give (not the vendor's names), for checking against the model's names.
    pub fn flag_names(&self) -> Vec<&str> {
        match self {
            StatusSpec::Bits { bits, .. } => bits.iter().map(|(_, n)| n.as_str()).collect(),
            StatusSpec::Names { names, .. } => names.iter().map(|(_, ours)| ours.as_str()).collect(),
            StatusSpec::Bool { name, .. } => vec![name.as_str()],
            StatusSpec::Values { values, .. } => {
                values.iter().map(|(_, n)| n.as_str()).filter(|n| !n.is_empty()).collect()
            }
        }
    }

    /// The problems of this spec, keyed under `prefix` (`status` or `flags[2]`).
    fn problems(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        let key = format!("{prefix}.{}", self.kind_key());
        let mut add = |reason: String| out.push((key.clone(), reason));
        match self {
            StatusSpec::Bits { bits, .. } => {
                if bits.is_empty() {
                    add("must map at least one bit to a status name".into());
                }
                for (bit, name) in bits {
                    if *bit > 63 {
                        add(format!("bit {bit} of {name:?} is beyond bit 63"));
                    }
                    if name.is_empty() {
                        add(format!("bit {bit} has an empty name"));
                    }
                }
            }
            StatusSpec::Names { names, .. } => {
                if names.iter().any(|(vendor, ours)| vendor.is_empty() || ours.is_empty()) {
                    add("names must not be empty".into());
                }
            }
            StatusSpec::Bool { name, .. } => {
                if name.is_empty() {
                    add("must name the status flag that true sets".into());
                }
            }
            StatusSpec::Values { values, .. } => {
                if values.is_empty() {
                    add("must list at least one value".into());
                }
                if values.iter().any(|(value, _)| value.is_empty()) {
                    add("a value must not be empty".into());
                }
            }
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
    /// Where the reading's time is; `None` only with [`TimeFallback::Arrival`] (the payload never has one).
    pub time: Option<FieldPath>,
    pub time_format: TimeFormat,
    /// When the time is absent (or `null`, or not configured).
    pub time_fallback: TimeFallback,
    /// `None`: the payload carries no status. A configured status field that is absent or `null` means no flags.
    pub status: Option<StatusSpec>,
    /// Further status sources, each at its own path; their flags are OR-ed with those of `status`.
    pub flags: Vec<StatusSpec>,
}

impl PayloadMapping {
    /// A mapping for a payload that is one reading with the given fields, scale 1, no unit and no status.
    pub fn single(meter: MeterSource, volume: FieldPath, time: FieldPath, time_format: TimeFormat) -> PayloadMapping {
        PayloadMapping {
            readings: None,
            meter,
            volume,
            scale: 1.0,
            unit: None,
            time: Some(time),
            time_format,
            time_fallback: TimeFallback::Refuse,
            status: None,
            flags: Vec::new(),
        }
    }

    /// Every status source with its key: `status`, then `flags[0]`, `flags[1]`, …
    pub fn status_sources(&self) -> impl Iterator<Item = (String, &StatusSpec)> {
        let status = self.status.iter().map(|s| ("status".to_owned(), s));
        status.chain(self.flags.iter().enumerate().map(|(i, s)| (format!("flags[{i}]"), s)))
    }

    /// Every problem of this mapping, as `(key, reason)`, keyed like the TOML (`scale`, `status.bits`,
    /// `flags[1].values`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.scale.is_finite() || self.scale <= 0.0 {
            out.push(("scale".into(), format!("must be a positive number, not {}", self.scale)));
        }
        if self.readings.as_ref().is_some_and(FieldPath::from_root) {
            out.push((
                "readings".into(),
                "the readings array is always taken from the payload root; drop the '^'".into(),
            ));
        }
        if self.time.is_none() && self.time_fallback != TimeFallback::Arrival {
            out.push(("time".into(), "give the time's path, or time_fallback = \"arrival\"".into()));
        }
        for (prefix, spec) in self.status_sources() {
            spec.problems(&prefix, &mut out);
        }
        out
    }

    /// The first problem of [`PayloadMapping::problems`].
    pub fn check(&self) -> Result<(), MappingProblem> {
        match self.problems().into_iter().next() {
            Some((key, reason)) => Err(MappingProblem { key, reason }),
            None => Ok(()),
        }
    }
}

/// A problem of a [`PayloadMapping`]: the key it concerns (`time`, `status.bits`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct MappingProblem {
    pub key: String,
    pub reason: String,
}

/// One reading as the payload gave it, in the units the server uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedReading {
    pub meter: String,
    /// Milliseconds since the Unix epoch, UTC. `None`: the payload had no time and the mapping's
    /// [`TimeFallback::Arrival`] says to use the arrival time, which the receiver supplies and flags.
    pub ts_ms: Option<i64>,
    /// Cumulative volume in m³ (not rounded; the model rounds to the litre).
    pub volume_m3: f64,
    /// Status names in the mapping's order, each once; empty when none is set.
    pub status: Vec<String>,
    /// A status source that could not be decoded (the first one); `status` then holds what the others gave.
    /// The meter, volume and time are good.
    pub status_error: Option<MapError>,
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

    let ts_ms = match &mapping.time {
        Some(path) => time_ms(path, mapping.time_format, mapping.time_fallback, at)?,
        None if mapping.time_fallback == TimeFallback::Arrival => None,
        None => return Err(MapError::Missing { path: "(time: no path configured)".to_owned() }),
    };
    // Every source is read even after one fails: the flags that did decode are still true.
    let mut status: Vec<String> = Vec::new();
    let mut status_error = None;
    for (_, spec) in mapping.status_sources() {
        match status_names(spec, at) {
            Ok(names) => {
                for name in names {
                    if !status.contains(&name) {
                        status.push(name);
                    }
                }
            }
            Err(e) => {
                status_error.get_or_insert(e);
            }
        }
    }
    Ok(MappedReading { meter, ts_ms, volume_m3, status, status_error })
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
    check_meter_id(&id).map_err(|e| MapError::BadValue { path: shown, reason: e.to_string() })?;
    Ok(id)
}

fn meter_from_topic(topic: &str, level: usize) -> Result<String, MapError> {
    let err = |reason: String| MapError::Topic { topic: topic.to_owned(), level, reason };
    let Some(id) = topic.split('/').nth(level) else {
        return Err(err(format!("the topic has only {} levels", topic.split('/').count())));
    };
    check_meter_id(id).map_err(|e| err(e.to_string()))?;
    Ok(id.to_owned())
}

/// Why a meter id taken from a payload or a topic is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum MeterIdError {
    #[error("the meter id is empty")]
    Empty,
    #[error("the meter id is longer than {MAX_METER_ID_LEN} characters")]
    TooLong,
    #[error("the meter id {0:?} contains control characters")]
    Control(String),
}

fn check_meter_id(id: &str) -> Result<(), MeterIdError> {
    if id.trim().is_empty() {
        return Err(MeterIdError::Empty);
    }
    if id.chars().count() > MAX_METER_ID_LEN {
        return Err(MeterIdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(MeterIdError::Control(id.to_owned()));
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

/// The time at `path`; `None` when it is absent or `null` and the fallback is the arrival time.
fn time_ms(path: &FieldPath, format: TimeFormat, fallback: TimeFallback, at: &At<'_>) -> Result<Option<i64>, MapError> {
    let (value, shown) = match path.lookup(at) {
        (None | Some(Value::Null), _) if fallback == TimeFallback::Arrival => return Ok(None),
        (Some(value), shown) => (value, shown),
        (None, shown) => return Err(MapError::Missing { path: shown }),
    };
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
            rfc3339_to_ms(text).map_err(|e| MapError::BadValue { path: shown.clone(), reason: e.to_string() })?
        }
    };
    if !(0..=MAX_TS_MS).contains(&ms) {
        return Err(MapError::BadValue {
            path: shown,
            reason: format!("time {ms} ms since 1970 is outside 1970..=9999 (seconds and milliseconds mixed up?)"),
        });
    }
    Ok(Some(ms))
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
        StatusSpec::Bool { name, .. } => {
            let set = match value {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_u64() == Some(0) => false,
                Value::Number(n) if n.as_u64() == Some(1) => true,
                other => return Err(wrong_type(shown, "a boolean (or 0/1)", other)),
            };
            Ok(if set { vec![name.clone()] } else { Vec::new() })
        }
        StatusSpec::Values { values, .. } => {
            let key = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.as_i64().is_some() => n.to_string(),
                other => return Err(wrong_type(shown, "an integer or a string (an enumerated status)", other)),
            };
            match values.iter().find(|(v, _)| *v == key) {
                Some((_, name)) if name.is_empty() => Ok(Vec::new()),
                Some((_, name)) => Ok(vec![name.clone()]),
                None => {
                    let known: Vec<&str> = values.iter().map(|(v, _)| v.as_str()).collect();
                    Err(MapError::BadValue {
                        path: shown,
                        reason: format!("unknown status value {value} (known: {})", known.join(", ")),
                    })
                }
            }
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
