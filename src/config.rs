//! Configuration in two stages: raw TOML (serde, unknown keys rejected) → a validated [`Config`] holding the
//! resolved specs the actors take. Every problem is collected with the file and key it concerns, so
//! `waterworks validate` reports all of them at once (R-A5). Nothing here opens a socket.
//!
//! Device models (`config/devices/*.toml`, R-A9) are built in from the repository's `config/devices/` and
//! may be added to or overridden by a `devices_dir` next to the config file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use actors::cjt188::{Cjt188Meter, Cjt188Spec};
use actors::field::{
    ConcentratorSpec, DeviceKindSpec, DeviceSpec, FieldLayout, LoggerSpec, MeterLayout, MeterSpec, ParameterSpec,
};
use actors::modbus_link::ModbusPath;
use actors::model::{DeviceId, MeterId, MeterStatus, RegionId};
use actors::mqtt::MqttGroupSpec;
use actors::station::{StationParameter, StationSpec};
use actors::supervisor::RestartPolicy;
use actors::tree::{RegionSpec, TreeSpec};
use actors::valve::{RegisterValve, ValveInterface, ValveSpec};
use drivers::modbus::TcpTarget;
use drivers::mqtt::{FieldPath, MeterSource, MqttSettings, PayloadMapping, StatusSpec, TimeFallback, TimeFormat};
use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};

/// The embedded demo village.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Device models shipped with the program: (file name, contents).
pub const BUILTIN_MODELS: &[(&str, &str)] = &[
    ("ww-concentrator-v1.toml", include_str!("../config/devices/ww-concentrator-v1.toml")),
    ("hx-c200.toml", include_str!("../config/devices/hx-c200.toml")),
    ("ww-wq-logger-v1.toml", include_str!("../config/devices/ww-wq-logger-v1.toml")),
    ("ww-valve-v1.toml", include_str!("../config/devices/ww-valve-v1.toml")),
    ("ww-valve-coil-v1.toml", include_str!("../config/devices/ww-valve-coil-v1.toml")),
];

/// One problem in the configuration: where, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// All problems found; displayed one per line.
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

// ---------------------------------------------------------------------------------------------------------
// Raw form: exactly what the file says.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    supervision: RawSupervision,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    live: RawLive,
    simulator: Option<RawSimulator>,
    #[serde(default)]
    defaults: RawDefaults,
    hj212: Option<RawHj212>,
    mqtt: Option<RawMqtt>,
    #[serde(default)]
    line: Vec<RawLine>,
    #[serde(default)]
    region: Vec<RawRegion>,
}

/// An RS-485 serial line shared by Modbus RTU slaves; devices use it with `address = "rtu:<id>"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    id: String,
    path: String,
    baud: Option<u32>,
    /// Data bits, parity, stop bits: "8N1", "8E1", "8O1", "8N2".
    format: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    host: String,
    port: Option<u16>,
    /// Stable across restarts: the broker keeps the persistent session under it.
    client_id: String,
    username: Option<String>,
    password: Option<String>,
    keep_alive: Option<String>,
    max_backoff: Option<String>,
    #[serde(default)]
    topics: Vec<RawMqttTopic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttTopic {
    filter: String,
    /// The meter id is this topic level (0-based) ...
    meter_topic_level: Option<usize>,
    /// ... or this JSON pointer in the payload.
    meter: Option<String>,
    /// JSON pointer to an array of readings (a concentrator's message); absent: one reading per message.
    readings: Option<String>,
    volume: String,
    scale: Option<f64>,
    unit: Option<String>,
    /// Absent only with `time_fallback = "arrival"` (a payload that never carries a time).
    time: Option<String>,
    /// Needed with `time`.
    time_format: Option<String>,
    /// `"arrival"`: a reading without a time is stored at its arrival time, flagged `time_from_arrival`.
    time_fallback: Option<String>,
    status: Option<RawMqttStatus>,
    /// Further status sources (`[[mqtt.topics.flags]]`), OR-ed with `status`.
    #[serde(default)]
    flags: Vec<RawMqttStatus>,
}

/// One status source: a path and exactly one of `bits`, `names`, `bool`, `values`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttStatus {
    path: String,
    bits: Option<BTreeMap<String, u8>>,
    names: Option<BTreeMap<String, String>>,
    /// The flag a boolean field sets when true.
    #[serde(rename = "bool")]
    flag: Option<String>,
    /// Enumerated value → flag (`""`: a known value that sets none).
    values: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttGroup {
    id: String,
    name: Option<String>,
    /// Some meter of the group publishes at least this often.
    interval: Option<String>,
    meters: RawMeters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHj212 {
    listen: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: String,
    name: Option<String>,
    /// The station's MN (device unique code).
    mn: String,
    password: Option<String>,
    /// The station uploads at least this often.
    interval: Option<String>,
    /// The station's clock: "+08:00" (default, China), "Z", "-05:30".
    utc_offset: Option<String>,
    factors: Vec<RawFactor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFactor {
    factor: String,
    name: Option<String>,
    unit: Option<String>,
    low: Option<f64>,
    high: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    secure_cookies: Option<bool>,
    session_idle: Option<String>,
    devices_dir: Option<PathBuf>,
    /// The utility's IANA time zone (issue 7 §4); see [`resolve_time`].
    timezone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervision {
    base_backoff: Option<String>,
    max_backoff: Option<String>,
    stable_after: Option<String>,
    max_restarts: Option<usize>,
    window: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    max_batch_ops: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLive {
    replay: Option<usize>,
    channel: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulator {
    #[serde(default)]
    enabled: bool,
    speed: Option<f64>,
    seed: Option<u64>,
    /// Wall-clock time a simulated valve takes to travel.
    valve_travel: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<String>,
    retries: Option<u32>,
    retry_delay: Option<String>,
    failover_after: Option<u32>,
    probe_every: Option<u32>,
    /// Time keys (issue 7 §4); see [`resolve_time`].
    spread: Option<String>,
    future_tolerance: Option<String>,
    max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    id: String,
    name: Option<String>,
    #[serde(default)]
    concentrator: Vec<RawConcentrator>,
    #[serde(default)]
    logger: Vec<RawLogger>,
    #[serde(default)]
    valve: Vec<RawValve>,
    #[serde(default)]
    station: Vec<RawStation>,
    #[serde(default)]
    cjt188: Vec<RawCjt188>,
    #[serde(default)]
    mqtt: Vec<RawMqttGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCjt188 {
    id: String,
    name: Option<String>,
    /// host:port of the transparent gateway (serial-to-TCP or 4G DTU) ...
    address: Option<String>,
    /// ... or the id of a `[[line]]` the meters hang on directly (this gateway then owns that line).
    line: Option<String>,
    /// "2004" (default) or "2018".
    edition: Option<String>,
    /// DI byte order in requests: "big" (90 1F) or "little" (1F 90); the edition's default otherwise.
    di_order: Option<String>,
    /// Wake-up FE bytes before each request.
    preamble: Option<usize>,
    timeout: Option<String>,
    cycle: Option<String>,
    meters: Vec<RawCjt188Meter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCjt188Meter {
    id: String,
    /// 14 BCD digits, written A6..A0 as on the meter's label.
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValve {
    id: String,
    name: Option<String>,
    /// A Modbus valve: its address and model ...
    address: Option<String>,
    unit_id: Option<i64>,
    model: Option<String>,
    /// ... or a CJ/T 188 valve meter behind a configured gateway.
    cjt188: Option<RawValveCjt188>,
    timeout: Option<String>,
    /// How often the position is read outside commands.
    poll: Option<String>,
    confirm_timeout: Option<String>,
    confirm_poll: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcentrator {
    id: String,
    /// Backup paths (R-A8), tried in order after the primary `address`.
    #[serde(default)]
    backup: Vec<String>,
    failover_after: Option<u32>,
    probe_every: Option<u32>,
    name: Option<String>,
    address: String,
    unit_id: Option<i64>,
    model: String,
    cycle: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    retry_delay: Option<String>,
    meters: RawMeters,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMeters {
    Series { prefix: String, first: u32, count: u32, width: Option<usize> },
    List(Vec<RawMeter>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMeter {
    Id(String),
    Slot { id: String, slot: u16 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogger {
    id: String,
    /// Backup paths (R-A8), tried in order after the primary `address`.
    #[serde(default)]
    backup: Vec<String>,
    failover_after: Option<u32>,
    probe_every: Option<u32>,
    name: Option<String>,
    site: Option<String>,
    address: String,
    unit_id: Option<i64>,
    model: String,
    timeout: Option<String>,
    retries: Option<u32>,
    retry_delay: Option<String>,
    parameters: Vec<RawParameter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParameter {
    name: String,
    cycle: Option<String>,
    low: Option<f64>,
    high: Option<f64>,
}

// Device model files.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    model: String,
    kind: String,
    description: Option<String>,
    meters: Option<RawMeterBlock>,
    parameters: Option<BTreeMap<String, RawRegister>>,
    valve: Option<RawValveInterface>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValveCjt188 {
    /// The id of a `[[region.cjt188]]` gateway.
    gateway: String,
    /// The meter's 14-digit address.
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValveInterface {
    command: RawValveCommand,
    status: RawValveStatus,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValveCommand {
    /// A holding register written (function 6) with `open` or `close` ...
    address: Option<u16>,
    open: Option<u16>,
    close: Option<u16>,
    /// ... or a coil (function 5): on = open, off = close.
    coil: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValveStatus {
    function: i64,
    address: u16,
    closed: u16,
    open: u16,
    moving: u16,
    fault: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeterBlock {
    function: i64,
    base: u16,
    stride: u16,
    max_registers: Option<u16>,
    volume: RawField,
    status: Option<RawField>,
    #[serde(default)]
    status_bits: BTreeMap<String, u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    offset: u16,
    #[serde(rename = "type")]
    data_type: String,
    order: Option<String>,
    scale: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    function: i64,
    address: u16,
    #[serde(rename = "type")]
    data_type: String,
    order: Option<String>,
    scale: Option<f64>,
    unit: String,
}

// ---------------------------------------------------------------------------------------------------------
// Resolved form.

/// A validated device model.
#[derive(Clone, Debug)]
pub enum DeviceModel {
    Concentrator(MeterLayout),
    Logger(BTreeMap<String, (RegisterSpec, String)>),
    Valve(RegisterValve),
}

/// In-process simulation of the configured devices (the demo).
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorSettings {
    pub speed: f64,
    pub seed: u64,
    /// Wall-clock travel time of simulated valves.
    pub valve_travel: Duration,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub secure_cookies: bool,
    pub session_idle: Duration,
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from (a path, or "embedded demo").
    pub source: String,
    pub server: ServerConfig,
    pub tree: TreeSpec,
    pub simulator: Option<SimulatorSettings>,
    /// The device models in use, by name (the simulator plays them).
    pub models: HashMap<String, DeviceModel>,
    /// Each device's model name.
    pub device_models: HashMap<DeviceId, String>,
}

/// Parses a duration such as `500ms`, `30s`, `15m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.parse().map_err(|_| format!("{text:?} is not a duration like \"500ms\", \"30s\", \"15m\", \"2h\""))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return Err(format!("{text:?} has no unit; use ms, s, m, h or d")),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 366.0 * 86400.0 {
        return Err(format!("{text:?} must be more than 0 and at most a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Default sampling cycle of a water-quality parameter (R-A2).
fn default_parameter_cycle(name: &str) -> Duration {
    match name {
        "ph" | "dissolved_oxygen" => Duration::from_secs(2 * 3600),
        "ammonia" | "lead" | "cadmium" | "arsenic" | "mercury" | "chromium6" | "iron" | "manganese" => {
            Duration::from_secs(4 * 3600)
        }
        // Free chlorine and turbidity have their own configured cycles (R-A2); this is the default.
        _ => Duration::from_secs(15 * 60),
    }
}

/// Default limits (low, high) per GB 5749-2022, plant outlet (DOMAIN.md §1); sites override.
fn default_limits(name: &str) -> (Option<f64>, Option<f64>) {
    match name {
        "free_chlorine" => (Some(0.3), Some(2.0)),
        "turbidity" => (None, Some(1.0)),
        "ph" => (Some(6.5), Some(8.5)),
        "ammonia" => (None, Some(0.5)),
        "lead" => (None, Some(0.01)),
        "cadmium" => (None, Some(0.005)),
        "arsenic" => (None, Some(0.01)),
        "mercury" => (None, Some(0.001)),
        "chromium6" => (None, Some(0.05)),
        "iron" => (None, Some(0.3)),
        "manganese" => (None, Some(0.1)),
        _ => (None, None),
    }
}

/// A JSON pointer from the config, or a problem naming its key.
fn field_path(check: &mut Check, key: &str, field: &str, text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap_or_else(|e| {
        check.add(format!("{key}.{field}"), e);
        FieldPath::parse("/").unwrap_or_else(|_| unreachable!("\"/\" is a valid pointer"))
    })
}

/// The broker settings and topic mappings (R-A9: a new vendor's payload is configuration).
fn resolve_mqtt(check: &mut Check, m: &RawMqtt, simulated: bool) -> MqttSettings {
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
        (_, Some(format)) => format.parse().unwrap_or_else(|e: String| {
            check.add(format!("{key}.time_format"), e);
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
        Some(text) => text.parse().unwrap_or_else(|e: String| {
            check.add(format!("{key}.time_fallback"), e);
            TimeFallback::Refuse
        }),
    };
}

/// One status source of an MQTT topic mapping (`[mqtt.topics.status]` or one `[[mqtt.topics.flags]]`, at
/// `key`): its path and exactly one of `bits`, `names`, `bool`, `values`.
fn resolve_mqtt_status(check: &mut Check, key: &str, st: &RawMqttStatus) -> StatusSpec {
    let path = FieldPath::parse(&st.path).unwrap_or_else(|e| {
        check.add(format!("{key}.path"), e);
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

/// The parameter name and unit of common HJ 212 water factor codes (DOMAIN.md §2.7).
fn known_factor(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "w01001" => ("ph", "pH"),
        "w01003" => ("turbidity", "NTU"),
        "w01009" => ("dissolved_oxygen", "mg/L"),
        "w01010" => ("temperature", "°C"),
        "w01014" => ("conductivity", "µS/cm"),
        "w21003" => ("ammonia", "mg/L"),
        "w20120" => ("lead", "mg/L"),
        "w20115" => ("cadmium", "mg/L"),
        "w20119" => ("arsenic", "mg/L"),
        "w20111" => ("mercury", "mg/L"),
        "w20117" => ("chromium6", "mg/L"),
        "w20124" => ("manganese", "mg/L"),
        "w20125" => ("iron", "mg/L"),
        _ => return None,
    })
}

/// `+08:00`, `Z`, `-05:30` → minutes east of UTC.
fn parse_utc_offset(text: &str) -> Result<i32, String> {
    if text == "Z" {
        return Ok(0);
    }
    let bad = || format!("{text:?} is not a UTC offset like \"+08:00\" or \"Z\"");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// Checks a device id: well formed, and not used by another device of any kind.
fn check_device_id(check: &mut Check, device_ids: &mut HashSet<String>, key: &str, id: &str) {
    if !valid_id(id) {
        check.add(format!("{key}.id"), "ids are 1-64 letters, digits, '-', '_' or '.'");
    }
    if !device_ids.insert(id.to_owned()) {
        check.add(format!("{key}.id"), format!("device id {id:?} is used twice"));
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Collects problems while resolving.
struct Check {
    file: String,
    problems: Vec<Problem>,
}

impl Check {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { file: self.file.clone(), key: key.into(), message: message.into() });
    }

    fn duration(&mut self, key: &str, value: Option<&String>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => parse_duration(v).unwrap_or_else(|e| {
                self.add(key, e);
                default
            }),
        }
    }
}

/// Reads a TOML file into `T`, with the parser's message (which names the key and line) on failure.
fn parse_toml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Problem> {
    toml::from_str(text).map_err(|e| Problem {
        file: file.to_owned(),
        key: String::new(),
        message: e.to_string().trim_end().replace('\n', "\n      "),
    })
}

fn resolve_field(check: &mut Check, key: &str, raw: &RawField) -> Option<FieldLayout> {
    let data_type: Result<DataType, _> = raw.data_type.parse();
    let order: Result<WordOrder, _> = raw.order.as_deref().unwrap_or("ABCD").parse();
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        check.add(format!("{key}.scale"), "must be a finite number other than 0");
    }
    match (data_type, order) {
        (Ok(data_type), Ok(word_order)) => Some(FieldLayout { offset: raw.offset, data_type, word_order, scale }),
        (dt, wo) => {
            if let Err(e) = dt {
                check.add(format!("{key}.type"), e.to_string());
            }
            if let Err(e) = wo {
                check.add(format!("{key}.order"), e.to_string());
            }
            None
        }
    }
}

fn resolve_model(check: &mut Check, raw: RawModel) -> Option<(String, DeviceModel)> {
    let _ = raw.description;
    match raw.kind.as_str() {
        "concentrator" => {
            if raw.parameters.is_some() {
                check.add("parameters", "a concentrator model has [meters], not [parameters]");
            }
            let Some(m) = raw.meters else {
                check.add("meters", "a concentrator model needs a [meters] table");
                return None;
            };
            let function = Function::try_from(m.function).map_err(|e| check.add("meters.function", e.to_string())).ok();
            let volume = resolve_field(check, "meters.volume", &m.volume);
            let status = match &m.status {
                Some(s) => resolve_field(check, "meters.status", s).map(Some),
                None => Some(None),
            };
            let max_registers = m.max_registers.unwrap_or(120);
            if max_registers == 0 || max_registers > 125 {
                check.add("meters.max_registers", "must be 1..=125 (the Modbus limit for one read)");
            }
            if m.stride == 0 {
                check.add("meters.stride", "must be at least 1");
            }
            let mut status_bits = Vec::new();
            for (name, bit) in &m.status_bits {
                match MeterStatus::device_flag_for(name) {
                    Some(flag) if *bit < 16 => status_bits.push((*bit, flag)),
                    Some(_) => check.add(format!("meters.status_bits.{name}"), "bit must be 0..=15"),
                    None => check.add(
                        format!("meters.status_bits.{name}"),
                        format!("unknown status; expected one of {}", MeterStatus::device_names()),
                    ),
                }
            }
            if !m.status_bits.is_empty() && m.status.is_none() {
                check.add("meters.status_bits", "status bits need a meters.status field");
            }
            let (function, volume, status) = (function?, volume?, status?);
            let extent = status.map_or(volume.end(), |s| s.end().max(volume.end()));
            if extent > m.stride {
                check.add(
                    "meters.stride",
                    format!("the fields need {extent} registers but a slot has only {}", m.stride),
                );
            }
            if extent > max_registers {
                check.add("meters.max_registers", "smaller than one meter slot");
            }
            if let Some(s) = status {
                if s.data_type != DataType::U16 {
                    check.add("meters.status.type", "a status word must be u16");
                }
            }
            Some((
                raw.model,
                DeviceModel::Concentrator(MeterLayout {
                    function,
                    base: m.base,
                    stride: m.stride,
                    volume,
                    status,
                    status_bits,
                    max_registers,
                }),
            ))
        }
        "logger" => {
            if raw.meters.is_some() {
                check.add("meters", "a logger model has [parameters], not [meters]");
            }
            let Some(params) = raw.parameters.filter(|p| !p.is_empty()) else {
                check.add("parameters", "a logger model needs at least one [parameters.NAME] table");
                return None;
            };
            let mut out = BTreeMap::new();
            for (name, r) in params {
                let key = format!("parameters.{name}");
                let function = Function::try_from(r.function)
                    .map_err(|e| check.add(format!("{key}.function"), e.to_string()))
                    .ok();
                let field = resolve_field(
                    check,
                    &key,
                    &RawField { offset: 0, data_type: r.data_type, order: r.order, scale: r.scale },
                );
                if let (Some(function), Some(f)) = (function, field) {
                    if u32::from(r.address) + u32::from(f.data_type.register_count()) > 65536 {
                        check.add(format!("{key}.address"), "the value runs past register 65535");
                    }
                    out.insert(
                        name,
                        (
                            RegisterSpec {
                                function,
                                address: r.address,
                                data_type: f.data_type,
                                word_order: f.word_order,
                                scale: f.scale,
                            },
                            r.unit,
                        ),
                    );
                }
            }
            Some((raw.model, DeviceModel::Logger(out)))
        }
        "valve" => {
            let Some(v) = raw.valve else {
                check.add("valve", "a valve model needs a [valve] table");
                return None;
            };
            let status_function = Function::try_from(v.status.function)
                .map_err(|e| check.add("valve.status.function", e.to_string()))
                .ok()?;
            let (command_coil, command_address, open_value, close_value) = match (&v.command, v.command.coil) {
                (RawValveCommand { address: Some(a), open: Some(o), close: Some(c), coil: None }, _) => {
                    if o == c {
                        check.add("valve.command", "open and close values must differ");
                    }
                    (false, *a, *o, *c)
                }
                (RawValveCommand { address: None, open: None, close: None, .. }, Some(coil)) => (true, coil, 1, 0),
                _ => {
                    check.add("valve.command", "give either address, open and close (a register) or coil");
                    (false, 0, 1, 2)
                }
            };
            let codes = [v.status.closed, v.status.open, v.status.moving, v.status.fault];
            if (0..codes.len()).any(|i| codes[i + 1..].contains(&codes[i])) {
                check.add("valve.status", "closed, open, moving and fault codes must all differ");
            }
            if !command_coil && status_function == Function::Holding && v.status.address == command_address {
                check.add("valve.status.address", "the status register cannot be the command register");
            }
            Some((
                raw.model,
                DeviceModel::Valve(RegisterValve {
                    command_coil,
                    command_address,
                    open_value,
                    close_value,
                    status_function,
                    status_address: v.status.address,
                    closed_code: v.status.closed,
                    open_code: v.status.open,
                    moving_code: v.status.moving,
                    fault_code: v.status.fault,
                }),
            ))
        }
        other => {
            check.add("kind", format!("unknown kind {other:?}; expected \"concentrator\", \"logger\" or \"valve\""));
            None
        }
    }
}

/// Loads the built-in models, then every `*.toml` in `dir` (if given and present).
fn load_models(dir: Option<&Path>, problems: &mut Vec<Problem>) -> HashMap<String, DeviceModel> {
    let mut files: Vec<(String, String)> =
        BUILTIN_MODELS.iter().map(|(n, t)| (format!("(built in) devices/{n}"), (*t).to_owned())).collect();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                for p in paths {
                    match std::fs::read_to_string(&p) {
                        Ok(text) => files.push((p.display().to_string(), text)),
                        Err(e) => problems.push(Problem {
                            file: p.display().to_string(),
                            key: String::new(),
                            message: format!("cannot read: {e}"),
                        }),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(Problem {
                file: dir.display().to_string(),
                key: String::new(),
                message: format!("cannot read directory: {e}"),
            }),
        }
    }
    let mut models = HashMap::new();
    for (file, text) in files {
        match parse_toml::<RawModel>(&file, &text) {
            Ok(raw) => {
                let mut check = Check { file: file.clone(), problems: Vec::new() };
                if let Some((name, model)) = resolve_model(&mut check, raw) {
                    if check.problems.is_empty() {
                        models.insert(name, model);
                    }
                }
                problems.extend(check.problems);
            }
            Err(p) => problems.push(p),
        }
    }
    models
}

/// What every device entry has in common, as written.
struct RawDeviceCommon<'a> {
    id: &'a str,
    address: &'a str,
    backup: &'a [String],
    unit_id: Option<i64>,
    model: &'a str,
    timeout: Option<&'a String>,
    retries: Option<u32>,
    retry_delay: Option<&'a String>,
    failover_after: Option<u32>,
    probe_every: Option<u32>,
}

/// The resolved communication settings of a device.
struct Link {
    target: ModbusPath,
    backups: Vec<ModbusPath>,
    failover_after: u32,
    probe_every: u32,
    retries: u32,
    retry_delay: Duration,
}

/// An address naming a serial line instead of a TCP address: `rtu:<line id>`.
const RTU_PREFIX: &str = "rtu:";

/// The path to a Modbus device at `address`: `host:port`, or `rtu:<line id>` (a unit on that line).
fn modbus_path(address: &str, unit_id: u8, timeout: Duration) -> ModbusPath {
    match address.strip_prefix(RTU_PREFIX) {
        Some(line) => ModbusPath::Rtu { line: line.to_owned(), unit_id, timeout },
        None => ModbusPath::Tcp(TcpTarget { addr: address.to_owned(), unit_id, timeout }),
    }
}

/// The address of a device: `host:port` with a port, or `rtu:<line id>` (checked against the lines later).
fn check_address(check: &mut Check, key: &str, address: &str) {
    if address.starts_with(RTU_PREFIX) {
        return;
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => check.add(key, format!("{address:?} is not host:port")),
    }
}

/// Parses and validates configuration text. `file` names it in messages; `base_dir` resolves `devices_dir`.
pub fn parse(file: &str, text: &str, base_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = parse_toml(file, text).map_err(|p| ConfigErrors(vec![p]))?;
    let mut check = Check { file: file.to_owned(), problems: Vec::new() };

    let devices_dir = raw.server.devices_dir.as_ref().map(|d| match base_dir {
        Some(b) if d.is_relative() => b.join(d),
        _ => d.clone(),
    });
    let models = load_models(devices_dir.as_deref(), &mut check.problems);

    let listen = raw.server.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        check.add("server.listen", format!("{listen:?} is not an IP address and port, e.g. \"0.0.0.0:8080\""));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let server = ServerConfig {
        listen,
        data_dir: raw.server.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/waterworks")),
        secure_cookies: raw.server.secure_cookies.unwrap_or(false),
        session_idle: check.duration(
            "server.session_idle",
            raw.server.session_idle.as_ref(),
            Duration::from_secs(8 * 3600),
        ),
    };

    let d = RestartPolicy::default();
    let s = &raw.supervision;
    let policy = RestartPolicy {
        base_backoff: check.duration("supervision.base_backoff", s.base_backoff.as_ref(), d.base_backoff),
        max_backoff: check.duration("supervision.max_backoff", s.max_backoff.as_ref(), d.max_backoff),
        stable_after: check.duration("supervision.stable_after", s.stable_after.as_ref(), d.stable_after),
        max_restarts: s.max_restarts.unwrap_or(d.max_restarts),
        window: check.duration("supervision.window", s.window.as_ref(), d.window),
    };
    if policy.max_backoff < policy.base_backoff {
        check.add("supervision.max_backoff", "must not be shorter than base_backoff");
    }

    let simulator = match raw.simulator {
        Some(sim) if sim.enabled => {
            let speed = sim.speed.unwrap_or(1.0);
            if !(speed.is_finite() && speed > 0.0 && speed <= 1e6) {
                check.add("simulator.speed", "must be more than 0 and at most 1000000");
            }
            let valve_travel =
                check.duration("simulator.valve_travel", sim.valve_travel.as_ref(), Duration::from_secs(3));
            Some(SimulatorSettings { speed, seed: sim.seed.unwrap_or(1), valve_travel })
        }
        _ => None,
    };

    let default_timeout = check.duration("defaults.timeout", raw.defaults.timeout.as_ref(), Duration::from_secs(3));
    let default_retries = raw.defaults.retries.unwrap_or(2);
    let default_retry_delay =
        check.duration("defaults.retry_delay", raw.defaults.retry_delay.as_ref(), Duration::from_secs(30));
    let default_failover_after = raw.defaults.failover_after.unwrap_or(3);
    let default_probe_every = raw.defaults.probe_every.unwrap_or(5);
    if default_failover_after == 0 {
        check.add("defaults.failover_after", "must be at least 1");
    }
    if default_probe_every == 0 {
        check.add("defaults.probe_every", "must be at least 1");
    }

    let mut region_ids = HashSet::new();
    let mut device_ids = HashSet::new();
    let mut meter_ids: HashMap<String, String> = HashMap::new();
    let mut device_models = HashMap::new();
    let mut station_mns = HashSet::new();
    let mut lines = Vec::new();
    let mut line_ids = HashSet::new();
    for (li, l) in raw.line.iter().enumerate() {
        let key = format!("line[{li}] ({})", l.id);
        if !valid_id(&l.id) {
            check.add(format!("{key}.id"), "ids are 1-64 letters, digits, '-', '_' or '.'");
        }
        if !line_ids.insert(l.id.clone()) {
            check.add(format!("{key}.id"), "line id used twice");
        }
        let timeout = check.duration(&format!("{key}.timeout"), l.timeout.as_ref(), Duration::from_millis(500));
        match drivers::rtu::LineSettings::new(
            l.path.clone(),
            l.baud.unwrap_or(9600),
            l.format.as_deref().unwrap_or("8N1"),
            timeout,
        ) {
            Ok(settings) => lines.push((l.id.clone(), settings)),
            Err(e) => check.add(&key, e.to_string()),
        }
    }
    // Lines owned by a CJ/T 188 gateway, with its id: no other device may use them.
    let mut cjt188_lines: HashMap<String, String> = HashMap::new();
    let mut regions = Vec::new();
    if raw.region.is_empty() {
        check.add("region", "no [[region]] configured: there is nothing to supervise");
    }
    for (ri, r) in raw.region.iter().enumerate() {
        let rkey = format!("region[{ri}] ({})", r.id);
        if !valid_id(&r.id) {
            check.add(format!("{rkey}.id"), "ids are 1-64 letters, digits, '-', '_' or '.'");
        }
        if !region_ids.insert(r.id.clone()) {
            check.add(format!("{rkey}.id"), format!("region id {:?} is used twice", r.id));
        }
        let mut devices = Vec::new();
        let mut common = |check: &mut Check, key: &str, d: RawDeviceCommon<'_>| -> Link {
            let RawDeviceCommon {
                id,
                address,
                backup,
                unit_id,
                model,
                timeout,
                retries,
                retry_delay,
                failover_after,
                probe_every,
            } = d;
            check_device_id(check, &mut device_ids, key, id);
            check_address(check, &format!("{key}.address"), address);
            let unit_id = unit_id.unwrap_or(1);
            if !(0..=247).contains(&unit_id) {
                check.add(format!("{key}.unit_id"), format!("{unit_id} is not a Modbus unit id (0-247)"));
            }
            device_models.insert(DeviceId::new(id), model.to_owned());
            let timeout = check.duration(&format!("{key}.timeout"), timeout, default_timeout);
            let unit_id = unit_id.clamp(0, 247) as u8;
            let target = modbus_path(address, unit_id, timeout);
            let mut backups = Vec::new();
            for (i, b) in backup.iter().enumerate() {
                check_address(check, &format!("{key}.backup[{i}]"), b);
                if b == address || backup[..i].contains(b) {
                    check.add(format!("{key}.backup[{i}]"), format!("{b:?} is already a path of this device"));
                }
                backups.push(modbus_path(b, unit_id, timeout));
            }
            let failover_after = failover_after.unwrap_or(default_failover_after);
            let probe_every = probe_every.unwrap_or(default_probe_every);
            if failover_after == 0 {
                check.add(format!("{key}.failover_after"), "must be at least 1");
            }
            if probe_every == 0 {
                check.add(format!("{key}.probe_every"), "must be at least 1");
            }
            let retry_delay = check.duration(&format!("{key}.retry_delay"), retry_delay, default_retry_delay);
            Link {
                target,
                backups,
                failover_after,
                probe_every,
                retries: retries.unwrap_or(default_retries),
                retry_delay,
            }
        };
        for (ci, c) in r.concentrator.iter().enumerate() {
            let key = format!("{rkey}.concentrator[{ci}] ({})", c.id);
            let link = common(
                &mut check,
                &key,
                RawDeviceCommon {
                    id: &c.id,
                    address: &c.address,
                    backup: &c.backup,
                    unit_id: c.unit_id,
                    model: &c.model,
                    timeout: c.timeout.as_ref(),
                    retries: c.retries,
                    retry_delay: c.retry_delay.as_ref(),
                    failover_after: c.failover_after,
                    probe_every: c.probe_every,
                },
            );
            let cycle = check.duration(&format!("{key}.cycle"), c.cycle.as_ref(), Duration::from_secs(15 * 60));
            let layout = model_of(&mut check, &key, &models, &c.model, "a concentrator", |m| match m {
                DeviceModel::Concentrator(l) => Some(l.clone()),
                _ => None,
            });
            let meters: Vec<MeterSpec> = match &c.meters {
                RawMeters::Series { prefix, first, count, width } => {
                    let width = width.unwrap_or(4);
                    if *count == 0 || *count > 65_535 {
                        check.add(format!("{key}.meters.count"), "must be 1..=65535");
                    }
                    (0..(*count).min(65_535))
                        .map(|i| MeterSpec {
                            id: MeterId::new(format!("{prefix}{:0width$}", first + i)),
                            slot: i as u16,
                        })
                        .collect()
                }
                RawMeters::List(list) => {
                    if list.is_empty() {
                        check.add(format!("{key}.meters"), "lists no meter");
                    }
                    list.iter()
                        .enumerate()
                        .map(|(i, m)| match m {
                            RawMeter::Id(id) => MeterSpec { id: MeterId::new(id.clone()), slot: i as u16 },
                            RawMeter::Slot { id, slot } => MeterSpec { id: MeterId::new(id.clone()), slot: *slot },
                        })
                        .collect()
                }
            };
            let mut slots = HashSet::new();
            for m in &meters {
                if !valid_id(m.id.as_str()) {
                    check.add(
                        format!("{key}.meters"),
                        format!("meter id {:?}: ids are 1-64 letters, digits, '-', '_' or '.'", m.id.as_str()),
                    );
                }
                if let Some(other) = meter_ids.insert(m.id.to_string(), c.id.clone()) {
                    check.add(
                        format!("{key}.meters"),
                        format!("meter {:?} is also configured on {other:?}", m.id.as_str()),
                    );
                }
                if !slots.insert(m.slot) {
                    check.add(format!("{key}.meters"), format!("slot {} is used twice", m.slot));
                }
                if let Some(l) = &layout {
                    if u32::from(l.base) + (u32::from(m.slot) + 1) * u32::from(l.stride) > 65536 {
                        check.add(
                            format!("{key}.meters"),
                            format!("meter {:?} (slot {}) lies past register 65535", m.id.as_str(), m.slot),
                        );
                    }
                }
            }
            if let Some(layout) = layout {
                devices.push(Arc::new(DeviceSpec {
                    id: DeviceId::new(c.id.clone()),
                    name: c.name.clone().unwrap_or_else(|| c.id.clone()),
                    region: RegionId::new(r.id.clone()),
                    target: link.target,
                    backups: link.backups,
                    failover_after: link.failover_after,
                    probe_every: link.probe_every,
                    retries: link.retries,
                    retry_delay: link.retry_delay,
                    kind: DeviceKindSpec::Concentrator(ConcentratorSpec { cycle, meters, layout }),
                }));
            }
        }
        for (li, l) in r.logger.iter().enumerate() {
            let key = format!("{rkey}.logger[{li}] ({})", l.id);
            let link = common(
                &mut check,
                &key,
                RawDeviceCommon {
                    id: &l.id,
                    address: &l.address,
                    backup: &l.backup,
                    unit_id: l.unit_id,
                    model: &l.model,
                    timeout: l.timeout.as_ref(),
                    retries: l.retries,
                    retry_delay: l.retry_delay.as_ref(),
                    failover_after: l.failover_after,
                    probe_every: l.probe_every,
                },
            );
            let registers = model_of(&mut check, &key, &models, &l.model, "a logger", |m| match m {
                DeviceModel::Logger(p) => Some(p.clone()),
                _ => None,
            });
            if l.parameters.is_empty() {
                check.add(format!("{key}.parameters"), "lists no parameter");
            }
            let mut names = HashSet::new();
            let mut parameters = Vec::new();
            for (pi, p) in l.parameters.iter().enumerate() {
                let pkey = format!("{key}.parameters[{pi}] ({})", p.name);
                if !names.insert(p.name.clone()) {
                    check.add(&pkey, "parameter listed twice");
                }
                let cycle =
                    check.duration(&format!("{pkey}.cycle"), p.cycle.as_ref(), default_parameter_cycle(&p.name));
                let (dlow, dhigh) = default_limits(&p.name);
                let (low, high) = (p.low.or(dlow), p.high.or(dhigh));
                if let (Some(lo), Some(hi)) = (low, high) {
                    if lo >= hi {
                        check.add(&pkey, format!("low ({lo}) must be below high ({hi})"));
                    }
                }
                if low.is_some_and(|v| !v.is_finite()) || high.is_some_and(|v| !v.is_finite()) {
                    check.add(&pkey, "limits must be finite numbers");
                }
                if let Some(regs) = &registers {
                    match regs.get(&p.name) {
                        Some((register, unit)) => parameters.push(ParameterSpec {
                            name: p.name.clone(),
                            register: *register,
                            unit: unit.clone(),
                            low,
                            high,
                            cycle,
                        }),
                        None => check.add(
                            format!("{pkey}.name"),
                            format!(
                                "model {:?} has no parameter {:?}; it has: {}",
                                l.model,
                                p.name,
                                regs.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ),
                    }
                }
            }
            let _ = &l.site;
            if registers.is_some() {
                let name = match (&l.name, &l.site) {
                    (Some(n), _) => n.clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => l.id.clone(),
                };
                devices.push(Arc::new(DeviceSpec {
                    id: DeviceId::new(l.id.clone()),
                    name,
                    region: RegionId::new(r.id.clone()),
                    target: link.target,
                    backups: link.backups,
                    failover_after: link.failover_after,
                    probe_every: link.probe_every,
                    retries: link.retries,
                    retry_delay: link.retry_delay,
                    kind: DeviceKindSpec::Logger(LoggerSpec { parameters }),
                }));
            }
        }
        let mut groups = Vec::new();
        for (gi, g) in r.mqtt.iter().enumerate() {
            let key = format!("{rkey}.mqtt[{gi}] ({})", g.id);
            check_device_id(&mut check, &mut device_ids, &key, &g.id);
            let interval =
                check.duration(&format!("{key}.interval"), g.interval.as_ref(), Duration::from_secs(15 * 60));
            let meters: Vec<MeterId> = match &g.meters {
                RawMeters::Series { prefix, first, count, width } => {
                    let width = width.unwrap_or(4);
                    (0..(*count).min(65_535)).map(|i| MeterId::new(format!("{prefix}{:0width$}", first + i))).collect()
                }
                RawMeters::List(list) => list
                    .iter()
                    .map(|m| match m {
                        RawMeter::Id(id) | RawMeter::Slot { id, .. } => MeterId::new(id.clone()),
                    })
                    .collect(),
            };
            if meters.is_empty() {
                check.add(format!("{key}.meters"), "lists no meter");
            }
            for m in &meters {
                if let Some(other) = meter_ids.insert(m.to_string(), g.id.clone()) {
                    check.add(
                        format!("{key}.meters"),
                        format!("meter {:?} is also configured on {other:?}", m.as_str()),
                    );
                }
            }
            device_models.insert(DeviceId::new(g.id.clone()), "mqtt".to_owned());
            groups.push(Arc::new(MqttGroupSpec {
                id: DeviceId::new(g.id.clone()),
                name: g.name.clone().unwrap_or_else(|| g.id.clone()),
                region: RegionId::new(r.id.clone()),
                meters,
                interval,
            }));
        }
        let mut gateways = Vec::new();
        for (gi, g) in r.cjt188.iter().enumerate() {
            let key = format!("{rkey}.cjt188[{gi}] ({})", g.id);
            check_device_id(&mut check, &mut device_ids, &key, &g.id);
            let link = match (&g.address, &g.line) {
                (Some(address), None) => {
                    check_address(&mut check, &format!("{key}.address"), address);
                    if address.starts_with(RTU_PREFIX) {
                        check.add(format!("{key}.address"), "a CJ/T 188 line is given as line = \"<line id>\"");
                    }
                    Some(drivers::cjt188::Cjt188Link::Tcp(address.clone()))
                }
                (None, Some(line)) => match lines.iter().find(|(id, _)| id == line) {
                    Some((_, settings)) => {
                        if let Some(other) = cjt188_lines.insert(line.clone(), g.id.clone()) {
                            check.add(
                                format!("{key}.line"),
                                format!("line {line:?} is already owned by CJ/T 188 gateway {other:?}"),
                            );
                        }
                        Some(drivers::cjt188::Cjt188Link::Serial(settings.clone()))
                    }
                    None => {
                        check.add(format!("{key}.line"), format!("{line:?} names no [[line]]"));
                        None
                    }
                },
                _ => {
                    check.add(
                        &key,
                        "give either address = \"host:port\" (a transparent gateway) or line = \"<line id>\"",
                    );
                    None
                }
            };
            let mut model = match g.edition.as_deref().unwrap_or("2004") {
                "2004" => drivers::cjt188::Cjt188Model::edition_2004(),
                "2018" => drivers::cjt188::Cjt188Model::edition_2018(),
                other => {
                    check.add(
                        format!("{key}.edition"),
                        format!("{other:?} is not a CJ/T 188 edition; expected \"2004\" or \"2018\""),
                    );
                    drivers::cjt188::Cjt188Model::edition_2004()
                }
            };
            match g.di_order.as_deref() {
                None => {}
                Some("big") => model.di_order = drivers::cjt188::DiOrder::BigEndian,
                Some("little") => model.di_order = drivers::cjt188::DiOrder::LittleEndian,
                Some(other) => check.add(
                    format!("{key}.di_order"),
                    format!("{other:?}: expected \"big\" (90 1F) or \"little\" (1F 90)"),
                ),
            }
            if let Some(p) = g.preamble {
                model.preamble = p;
            }
            if let Err(e) = model.check() {
                check.add(format!("{key}.preamble"), e);
            }
            let timeout = check.duration(&format!("{key}.timeout"), g.timeout.as_ref(), default_timeout);
            let cycle = check.duration(&format!("{key}.cycle"), g.cycle.as_ref(), Duration::from_secs(15 * 60));
            if g.meters.is_empty() {
                check.add(format!("{key}.meters"), "lists no meter");
            }
            let mut meters = Vec::new();
            let mut addresses = HashSet::new();
            for (mi, m) in g.meters.iter().enumerate() {
                let mkey = format!("{key}.meters[{mi}] ({})", m.id);
                if !valid_id(&m.id) {
                    check.add(&mkey, "meter ids are 1-64 letters, digits, '-', '_' or '.'");
                }
                if let Some(other) = meter_ids.insert(m.id.clone(), g.id.clone()) {
                    check.add(&mkey, format!("meter {:?} is also configured on {other:?}", m.id));
                }
                match m.address.parse::<drivers::cjt188::Address>() {
                    Ok(a) if a.is_bcd() => {
                        if !addresses.insert(m.address.clone()) {
                            check.add(format!("{mkey}.address"), "address used twice on this gateway");
                        }
                        meters.push(Cjt188Meter { id: MeterId::new(m.id.clone()), address: a });
                    }
                    _ => check.add(format!("{mkey}.address"), format!("{:?} is not 14 decimal digits", m.address)),
                }
            }
            device_models.insert(DeviceId::new(g.id.clone()), "cjt188".to_owned());
            let Some(link) = link else { continue };
            gateways.push(Arc::new(Cjt188Spec {
                id: DeviceId::new(g.id.clone()),
                name: g.name.clone().unwrap_or_else(|| g.id.clone()),
                region: RegionId::new(r.id.clone()),
                link,
                line: g.line.clone(),
                timeout,
                model,
                cycle,
                meters,
            }));
        }
        let mut stations = Vec::new();
        for (si, st) in r.station.iter().enumerate() {
            let key = format!("{rkey}.station[{si}] ({})", st.id);
            check_device_id(&mut check, &mut device_ids, &key, &st.id);
            if st.mn.is_empty() || st.mn.len() > 64 || !st.mn.chars().all(|c| c.is_ascii_alphanumeric()) {
                check.add(format!("{key}.mn"), "an MN is 1-64 letters and digits");
            }
            if !station_mns.insert(st.mn.clone()) {
                check.add(format!("{key}.mn"), format!("MN {:?} is used by two stations", st.mn));
            }
            let interval = check.duration(&format!("{key}.interval"), st.interval.as_ref(), Duration::from_secs(60));
            let utc_offset_minutes =
                parse_utc_offset(st.utc_offset.as_deref().unwrap_or("+08:00")).unwrap_or_else(|e| {
                    check.add(format!("{key}.utc_offset"), e);
                    480
                });
            if st.factors.is_empty() {
                check.add(format!("{key}.factors"), "lists no factor");
            }
            let mut parameters = Vec::new();
            for (fi, f) in st.factors.iter().enumerate() {
                let fkey = format!("{key}.factors[{fi}] ({})", f.factor);
                let known = known_factor(&f.factor);
                let (Some(name), Some(unit)) = (
                    f.name.clone().or(known.map(|k| k.0.to_owned())),
                    f.unit.clone().or(known.map(|k| k.1.to_owned())),
                ) else {
                    check.add(&fkey, "unknown factor code: give it a name and a unit");
                    continue;
                };
                if parameters.iter().any(|p: &StationParameter| p.name == name || p.factor == f.factor) {
                    check.add(&fkey, "factor or parameter listed twice");
                }
                let (dlow, dhigh) = default_limits(&name);
                let (low, high) = (f.low.or(dlow), f.high.or(dhigh));
                if let (Some(lo), Some(hi)) = (low, high) {
                    if lo >= hi {
                        check.add(&fkey, format!("low ({lo}) must be below high ({hi})"));
                    }
                }
                parameters.push(StationParameter { factor: f.factor.clone(), name, unit, low, high });
            }
            stations.push(Arc::new(StationSpec {
                id: DeviceId::new(st.id.clone()),
                name: st.name.clone().unwrap_or_else(|| st.id.clone()),
                region: RegionId::new(r.id.clone()),
                mn: st.mn.clone(),
                password: st.password.clone(),
                interval,
                parameters,
                utc_offset_minutes,
            }));
        }
        let mut valves = Vec::new();
        for (vi, v) in r.valve.iter().enumerate() {
            let key = format!("{rkey}.valve[{vi}] ({})", v.id);
            check_device_id(&mut check, &mut device_ids, &key, &v.id);
            let unit_id = v.unit_id.unwrap_or(1);
            if !(0..=247).contains(&unit_id) {
                check.add(format!("{key}.unit_id"), format!("{unit_id} is not a Modbus unit id (0-247)"));
            }
            let timeout = check.duration(&format!("{key}.timeout"), v.timeout.as_ref(), default_timeout);
            let poll = check.duration(&format!("{key}.poll"), v.poll.as_ref(), Duration::from_secs(60));
            let confirm_timeout =
                check.duration(&format!("{key}.confirm_timeout"), v.confirm_timeout.as_ref(), Duration::from_secs(60));
            let confirm_poll =
                check.duration(&format!("{key}.confirm_poll"), v.confirm_poll.as_ref(), Duration::from_secs(2));
            if confirm_poll > confirm_timeout {
                check.add(format!("{key}.confirm_poll"), "must not be longer than confirm_timeout");
            }
            let interface = match (&v.address, &v.model, &v.cjt188) {
                (Some(address), Some(model), None) => {
                    check_address(&mut check, &format!("{key}.address"), address);
                    device_models.insert(DeviceId::new(v.id.clone()), model.clone());
                    let path = modbus_path(address, unit_id.clamp(0, 247) as u8, timeout);
                    match models.get(model) {
                        Some(DeviceModel::Valve(valve)) => {
                            Some(ValveInterface::Register { path, valve: valve.clone() })
                        }
                        Some(_) => {
                            check.add(format!("{key}.model"), format!("model {model:?} is not a valve"));
                            None
                        }
                        None => {
                            check.add(
                                format!("{key}.model"),
                                format!("unknown model {model:?}; known: {}", known(&models)),
                            );
                            None
                        }
                    }
                }
                (None, None, Some(c)) => {
                    let gateway = r.cjt188.iter().find(|g| g.id == c.gateway);
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
            if let Some(interface) = interface {
                valves.push(Arc::new(ValveSpec {
                    id: DeviceId::new(v.id.clone()),
                    name: v.name.clone().unwrap_or_else(|| v.id.clone()),
                    region: RegionId::new(r.id.clone()),
                    timeout,
                    interface,
                    poll,
                    confirm_timeout,
                    confirm_poll,
                }));
            }
        }
        regions.push(RegionSpec {
            id: RegionId::new(r.id.clone()),
            name: r.name.clone().unwrap_or_else(|| r.id.clone()),
            devices,
            valves,
            stations,
            cjt188: gateways,
            mqtt: groups,
        });
    }

    // Every Modbus path of every device and valve: its key for messages, and the path.
    let mut modbus_paths: Vec<(String, &ModbusPath)> = Vec::new();
    for region in &regions {
        for d in &region.devices {
            modbus_paths.extend(d.paths().enumerate().map(|(i, p)| (format!("device {} path {i}", d.id), p)));
        }
        for v in &region.valves {
            if let ValveInterface::Register { path, .. } = &v.interface {
                modbus_paths.push((format!("valve {}", v.id), path));
            }
        }
    }
    // Which device answers as each unit of each line.
    let mut units: HashMap<(&str, u8), &str> = HashMap::new();
    for (key, path) in &modbus_paths {
        match path {
            ModbusPath::Tcp(t) => {
                if simulator.is_none() && t.addr.ends_with(":0") {
                    check.add(format!("{key}.address"), "port 0 is only allowed with [simulator] enabled = true");
                }
            }
            ModbusPath::Rtu { line, unit_id, .. } => {
                if !line_ids.contains(line) {
                    check.add(key, format!("\"rtu:{line}\" names no [[line]]"));
                }
                if let Some(gateway) = cjt188_lines.get(line) {
                    check.add(
                        key,
                        format!("line {line:?} is owned by CJ/T 188 gateway {gateway:?}; Modbus RTU cannot share it"),
                    );
                }
                if *unit_id == 0 || *unit_id > 247 {
                    check.add(format!("{key}.unit_id"), "an RTU slave needs a unit id of 1-247");
                }
                let owner = key.split(" path ").next().unwrap_or(key);
                match units.insert((line, *unit_id), owner) {
                    Some(other) if other != owner => check
                        .add(format!("{key}.unit_id"), format!("unit {unit_id} on line {line:?} is already {other}")),
                    _ => {}
                }
            }
        }
    }
    let hj212_listen = match &raw.hj212 {
        Some(h) => match h.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                check.add(
                    "hj212.listen",
                    format!("{:?} is not an IP address and port, e.g. \"0.0.0.0:9212\"", h.listen),
                );
                None
            }
        },
        None => None,
    };
    if station_mns.is_empty() != hj212_listen.is_none() {
        if hj212_listen.is_none() {
            check.add("hj212", "stations are configured but [hj212] listen is missing");
        } else {
            check.add("hj212", "[hj212] is configured but no [[region.station]] uses it");
        }
    }
    let mqtt = raw.mqtt.as_ref().map(|m| resolve_mqtt(&mut check, m, simulator.is_some()));
    let any_group = raw.region.iter().any(|r| !r.mqtt.is_empty());
    if any_group && mqtt.is_none() {
        check.add("mqtt", "MQTT meter groups are configured but [mqtt] (the broker) is missing");
    }
    let time = resolve_time(&mut check, &raw.server, &raw.defaults);
    if !check.problems.is_empty() {
        return Err(ConfigErrors(check.problems));
    }
    let max_batch_ops = raw.store.max_batch_ops.unwrap_or(50_000).max(1);
    let tree = TreeSpec {
        regions,
        policy,
        max_batch_ops,
        live_replay: raw.live.replay.unwrap_or(4096).max(1),
        live_channel: raw.live.channel.unwrap_or(1024).max(1),
        hj212_listen,
        mqtt,
        lines,
        time,
    };
    Ok(Config { source: file.to_owned(), server, tree, simulator, models, device_models })
}

// ---- Time (issue 7 §4): `server.timezone`, `defaults.spread`, `defaults.future_tolerance`, `defaults.max_age`.

/// The utility's zone, the poll spread and the reading-time limits. An unknown zone is a problem with file and
/// key; the zone database is the one bundled into the binary, so what validates here runs on any machine.
fn resolve_time(check: &mut Check, server: &RawServer, defaults: &RawDefaults) -> actors::schedule::TimeRules {
    let zone = match server.timezone.as_deref() {
        None => drivers::calendar::Zone::default(),
        Some(name) => drivers::calendar::Zone::named(name).unwrap_or_else(|e| {
            check.add("server.timezone", e.to_string());
            drivers::calendar::Zone::default()
        }),
    };
    let spread = check.duration("defaults.spread", defaults.spread.as_ref(), Duration::ZERO);
    let limits = actors::model::TimePlausibility::default();
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let future = check.duration(
        "defaults.future_tolerance",
        defaults.future_tolerance.as_ref(),
        Duration::from_millis(limits.future_tolerance_ms.unsigned_abs()),
    );
    // Durations stop at a year elsewhere; an age limit may be longer (whole days, up to ten years).
    let long_days = defaults.max_age.as_deref().and_then(|v| v.strip_suffix('d')?.parse::<u64>().ok());
    let max_age = match long_days {
        Some(days) if (366..=3650).contains(&days) => Duration::from_secs(days * 86_400),
        _ => check.duration(
            "defaults.max_age",
            defaults.max_age.as_ref(),
            Duration::from_millis(limits.max_age_ms.unsigned_abs()),
        ),
    };
    if max_age.is_zero() {
        check.add("defaults.max_age", "must be more than 0 (every reading would be stale)");
    }
    let plausibility =
        actors::model::TimePlausibility { future_tolerance_ms: millis(future), max_age_ms: millis(max_age) };
    actors::schedule::TimeRules { zone, spread, plausibility }
}

impl Config {
    /// What the configuration describes, for `validate`: "2 regions: 5 Modbus devices, 1 CJ/T 188 gateway …".
    pub fn summary(&self) -> String {
        let regions = &self.tree.regions;
        let count = |f: &dyn Fn(&RegionSpec) -> usize| regions.iter().map(f).sum::<usize>();
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![plural(count(&|r| r.devices.len()), "Modbus device", "Modbus devices")];
        let kinds: [(usize, &str, &str); 4] = [
            (count(&|r| r.cjt188.len()), "CJ/T 188 gateway", "CJ/T 188 gateways"),
            (count(&|r| r.valves.len()), "valve", "valves"),
            (count(&|r| r.stations.len()), "HJ 212 station", "HJ 212 stations"),
            (count(&|r| r.mqtt.len()), "MQTT meter group", "MQTT meter groups"),
        ];
        parts.extend(kinds.iter().filter(|(n, ..)| *n > 0).map(|(n, one, many)| plural(*n, one, many)));
        if !self.tree.lines.is_empty() {
            parts.push(plural(self.tree.lines.len(), "serial line", "serial lines"));
        }
        format!("{}: {}", plural(regions.len(), "region", "regions"), parts.join(", "))
    }
}

/// The device model `name` as the kind `want` (extracted by `pick`), or a problem naming the key.
fn model_of<T>(
    check: &mut Check,
    key: &str,
    models: &HashMap<String, DeviceModel>,
    name: &str,
    want: &str,
    pick: impl Fn(&DeviceModel) -> Option<T>,
) -> Option<T> {
    match models.get(name) {
        Some(m) => {
            let picked = pick(m);
            if picked.is_none() {
                check.add(format!("{key}.model"), format!("model {name:?} is not {want}"));
            }
            picked
        }
        None => {
            check.add(format!("{key}.model"), format!("unknown model {name:?}; known: {}", known(models)));
            None
        }
    }
}

fn known(models: &HashMap<String, DeviceModel>) -> String {
    let mut names: Vec<&str> = models.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Problem { file: file.clone(), key: String::new(), message: format!("cannot read: {e}") }])
    })?;
    parse(&file, &text, path.parent())
}

/// The embedded demo village.
pub fn demo() -> Result<Config, ConfigErrors> {
    parse("embedded demo.toml", DEMO_TOML, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse("test.toml", text, None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn check(text: &str, expect: &[&str]) {
        let got = problems(text);
        for e in expect {
            assert!(got.iter().any(|g| g.contains(e)), "expected a problem containing {e:?}, got {got:#?}");
        }
    }

    const MINIMAL: &str = r#"
[[region]]
id = "r1"
[[region.concentrator]]
id = "c1"
address = "10.0.0.5:502"
model = "ww-concentrator-v1"
meters = ["M1", "M2"]
"#;

    #[test]
    fn demo_and_example_are_valid() {
        let demo = demo().unwrap();
        assert!(demo.simulator.is_some());
        assert_eq!(demo.tree.regions.len(), 2);
        let example = parse("example.toml", include_str!("../config/example.toml"), None).unwrap();
        let c = &example.tree.regions[0].devices[0];
        assert_eq!(c.shortest_cycle(), Duration::from_secs(900));
        let logger = example.tree.regions[0].devices.iter().find(|d| d.id.as_str() == "qs-wq01").unwrap();
        let DeviceKindSpec::Logger(l) = &logger.kind else { panic!("logger") };
        // Every kind of device and link is in the annotated example.
        let r = &example.tree.regions[0];
        assert_eq!((r.cjt188.len(), r.valves.len(), r.stations.len(), r.mqtt.len()), (2, 2, 1, 1));
        assert_eq!(example.tree.lines.len(), 2);
        // The NB-IoT topic: several status sources and the arrival-time fallback (issue 7 §6).
        let nb = &example.tree.mqtt.as_ref().unwrap().topics[1].1;
        assert_eq!((nb.flags.len(), nb.time.is_none(), nb.time_fallback), (3, true, TimeFallback::Arrival));
        let ph = l.parameters.iter().find(|p| p.name == "ph").unwrap();
        // R-A2 defaults and GB 5749-2022 limits.
        assert_eq!(ph.cycle, Duration::from_secs(7200));
        assert_eq!((ph.low, ph.high), (Some(6.5), Some(8.5)));
        let ammonia = l.parameters.iter().find(|p| p.name == "ammonia").unwrap();
        assert_eq!(ammonia.cycle, Duration::from_secs(4 * 3600));
    }

    #[test]
    fn minimal_config_gets_r_a1_defaults() {
        let c = parse("t", MINIMAL, None).unwrap();
        let d = &c.tree.regions[0].devices[0];
        assert_eq!(d.shortest_cycle(), Duration::from_secs(15 * 60));
        assert_eq!(d.target.unit_id(), 1);
        assert_eq!(d.target.timeout(), Duration::from_secs(3));
    }

    #[test]
    fn a_cjt188_gateway_owns_its_serial_line_alone() {
        let line = "[[line]]\nid = \"mbus-1\"\npath = \"/dev/ttyUSB1\"\nbaud = 2400\nformat = \"8E1\"\n";
        let gateway = |link: &str| {
            format!(
                "[[region.cjt188]]\nid = \"g1\"\n{link}\nmeters = [{{ id = \"CJ-1\", address = \"00000000000001\" }}]\n"
            )
        };
        let ok = format!("{line}{MINIMAL}{}", gateway("line = \"mbus-1\""));
        let c = parse("t", &ok, None).unwrap_or_else(|e| panic!("{e}"));
        let g = &c.tree.regions[0].cjt188[0];
        let drivers::cjt188::Cjt188Link::Serial(settings) = &g.link else { panic!("a serial link: {:?}", g.link) };
        assert_eq!(
            (settings.path.as_str(), settings.baud, settings.format().to_string()),
            ("/dev/ttyUSB1", 2400, "8E1".into())
        );
        check(
            &format!("{MINIMAL}{}", gateway("line = \"mbus-9\"")),
            &["cjt188[0] (g1).line: \"mbus-9\" names no [[line]]"],
        );
        check(
            &format!("{line}{MINIMAL}{}", gateway("line = \"mbus-1\"\naddress = \"10.0.0.9:4001\"")),
            &["give either address"],
        );
        check(&format!("{MINIMAL}{}", gateway("")), &["give either address"]);
        let two = ok.clone() + &gateway("line = \"mbus-1\"").replace("\"g1\"", "\"g2\"").replace("CJ-1", "CJ-2");
        check(&two, &["line \"mbus-1\" is already owned by CJ/T 188 gateway \"g1\""]);
        let shared = ok.replace("address = \"10.0.0.5:502\"", "address = \"rtu:mbus-1\"");
        check(&shared, &["owned by CJ/T 188 gateway \"g1\"; Modbus RTU cannot share it"]);
    }

    #[test]
    fn two_devices_cannot_answer_as_the_same_unit_of_a_line() {
        let line = "[[line]]\nid = \"rs485-1\"\npath = \"/dev/ttyUSB0\"\n";
        let on_line = MINIMAL.replace("address = \"10.0.0.5:502\"", "address = \"rtu:rs485-1\"\nunit_id = 3");
        let valve = "[[region.valve]]\nid = \"v1\"\naddress = \"rtu:rs485-1\"\nunit_id = 3\nmodel = \"ww-valve-v1\"\n";
        check(
            &format!("{line}{on_line}{valve}"),
            &["valve v1.unit_id: unit 3 on line \"rs485-1\" is already device c1"],
        );
        let c = parse("t", &format!("{line}{on_line}{}", valve.replace("unit_id = 3", "unit_id = 4")), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let v = &c.tree.regions[0].valves[0];
        assert_eq!(v.path(), "primary rtu rs485-1 unit 4");
        check(&format!("{on_line}{valve}"), &["valve v1: \"rtu:rs485-1\" names no [[line]]"]);
    }

    #[test]
    fn unknown_keys_are_rejected_naming_the_key() {
        check(&format!("{MINIMAL}\nfoo = 1\n"), &["unknown field `foo`"]);
        check(&MINIMAL.replace("model =", "modle = \"x\"\nmodel ="), &["unknown field `modle`"]);
        check("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n", &["unknown field `port`"]);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let text = r#"
[server]
listen = "localhost"
[defaults]
timeout = "3 parsecs"
[[region]]
id = "r1"
[[region.concentrator]]
id = "c1"
address = "nohostport"
unit_id = 300
model = "nope"
cycle = "0s"
meters = ["M1", "M1"]
[[region.concentrator]]
id = "c1"
address = "h:1"
model = "ww-wq-logger-v1"
meters = ["M1"]
[[region.logger]]
id = "w1"
address = "h:2"
model = "ww-wq-logger-v1"
parameters = [{ name = "chlorine" }, { name = "ph", low = 9, high = 8 }]
"#;
        check(
            text,
            &[
                "test.toml: server.listen: \"localhost\" is not an IP address and port",
                "defaults.timeout: \"3 parsecs\" has no unit",
                "region[0] (r1).concentrator[0] (c1).address: \"nohostport\" is not host:port",
                "concentrator[0] (c1).unit_id: 300 is not a Modbus unit id",
                "concentrator[0] (c1).model: unknown model \"nope\"; known: hx-c200, ww-concentrator-v1, ww-valve-coil-v1, ww-valve-v1, ww-wq-logger-v1",
                "concentrator[0] (c1).cycle: \"0s\" must be more than 0",
                "concentrator[0] (c1).meters: meter \"M1\" is also configured on \"c1\"",
                "concentrator[1] (c1).id: device id \"c1\" is used twice",
                "concentrator[1] (c1).model: model \"ww-wq-logger-v1\" is not a concentrator",
                "logger[0] (w1).parameters[0] (chlorine).name: model \"ww-wq-logger-v1\" has no parameter \"chlorine\"",
                "logger[0] (w1).parameters[1] (ph): low (9) must be below high (8)",
            ],
        );
    }

    #[test]
    fn a_broken_device_model_is_reported_with_its_file_and_key() {
        let dir = std::env::temp_dir().join(format!("ww-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.toml"),
            "model = \"bad\"\nkind = \"concentrator\"\n[meters]\nfunction = 6\nbase = 0\nstride = 1\nvolume = { offset = 0, type = \"float\", order = \"XYZW\" }\n",
        )
        .unwrap();
        let text = format!("[server]\ndevices_dir = \"{}\"\n{MINIMAL}", dir.display());
        check(
            &text,
            &[
                "bad.toml: meters.function: unknown read function \"6\"",
                "bad.toml: meters.volume.type: unknown data type \"float\"",
                "bad.toml: meters.volume.order: unknown word order \"XYZW\"",
            ],
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_toml_syntax_error_names_the_line() {
        let got = problems("[server\nlisten = 1");
        assert!(got[0].contains("test.toml") && got[0].contains("line 1"), "{got:?}");
    }

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
        // A Modbus model cannot map its bits onto the server's own flags either.
        let dir = std::env::temp_dir().join(format!("ww-models-srv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("srv.toml"),
            "model = \"srv\"\nkind = \"concentrator\"\n[meters]\nfunction = 3\nbase = 0\nstride = 3\nvolume = { offset = 0, type = \"u32\" }\nstatus = { offset = 2, type = \"u16\" }\n[meters.status_bits]\ntime_from_arrival = 3\n",
        )
        .unwrap();
        check(
            &format!("[server]\ndevices_dir = \"{}\"\n{MINIMAL}", dir.display()),
            &["srv.toml: meters.status_bits.time_from_arrival: unknown status; expected one of valve_closed"],
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn time_keys_resolve_and_an_unknown_zone_names_file_and_key() {
        let text = MINIMAL_FOR_TIME.to_owned()
            + "[defaults]\nspread = \"2m\"\nfuture_tolerance = \"1m\"\nmax_age = \"500d\"\n";
        let c = parse("test.toml", &text, None).expect("valid");
        assert_eq!(c.tree.time.zone.name(), "Europe/Berlin");
        assert_eq!(c.tree.time.spread, Duration::from_secs(120));
        assert_eq!(c.tree.time.plausibility.future_tolerance_ms, 60_000);
        assert_eq!(c.tree.time.plausibility.max_age_ms, 500 * 86_400_000);
        let defaults =
            parse("test.toml", &MINIMAL_FOR_TIME.replace("timezone = \"Europe/Berlin\"\n", ""), None).expect("valid");
        assert_eq!(defaults.tree.time.zone.name(), "Asia/Shanghai", "the default zone");
        assert_eq!(defaults.tree.time.spread, Duration::ZERO);
        let bad = problems(&MINIMAL_FOR_TIME.replace("Europe/Berlin", "Asia/Beijing"));
        assert!(
            bad.iter().any(|p| p.contains("test.toml") && p.contains("server.timezone") && p.contains("Asia/Beijing")),
            "{bad:?}"
        );
    }

    const MINIMAL_FOR_TIME: &str = r#"[server]
timezone = "Europe/Berlin"

[[region]]
id = "r"

[[region.concentrator]]
id = "c1"
address = "127.0.0.1:502"
model = "ww-concentrator-v1"
meters = ["m1"]

"#;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10y").is_err());
    }
}
