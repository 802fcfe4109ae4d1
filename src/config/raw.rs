//! The raw schema: exactly what a configuration file or a device model file says, as serde reads it, with
//! unknown keys rejected (`deny_unknown_fields`) so that a misspelt key is an error naming it. Nothing here
//! checks a value, fills a default or does I/O; the resolvers beside this module turn these into specs.
//!
//! A new key goes into the struct of its table here (an `Option` unless it is required), and is resolved in
//! the module of its concern: `[server]`, `[supervision]`, `[store]`, `[live]`, `[simulator]` and `[defaults]`
//! in `mod.rs`; `[[line]]` in `lines.rs`; `[[region.concentrator]]` and `[[region.logger]]` in `field.rs`;
//! `[[region.cjt188]]` in `cjt188.rs`; `[hj212]` and `[[region.station]]` in `hj212.rs`; `[mqtt]`,
//! `[[mqtt.topics]]` and `[[region.mqtt]]` in `mqtt.rs`; `[[region.valve]]` in `valves.rs`; device model files
//! in `models.rs`. A renamed key stays here under its old name too (so the file still reads), and its resolver
//! reports it as a problem naming the old key and its replacement (issue 7: `validate` names both).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::problems::Problem;

/// Reads a TOML file into `T`, with the parser's message (which names the key and line) on failure.
pub(super) fn parse_toml<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, Problem> {
    toml::from_str(text).map_err(|e| Problem::error(file, "", e.to_string().trim_end().replace('\n', "\n      ")))
}

// ---------------------------------------------------------------------------------------------------------
// The configuration file.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) supervision: RawSupervision,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) live: RawLive,
    pub(super) simulator: Option<RawSimulator>,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    pub(super) hj212: Option<RawHj212>,
    pub(super) mqtt: Option<RawMqtt>,
    #[serde(default)]
    pub(super) line: Vec<RawLine>,
    #[serde(default)]
    pub(super) region: Vec<RawRegion>,
    /// `[alarms]`, resolved in `alarms.rs` (the shape is the alarm settings' own).
    pub(super) alarms: Option<actors::alarms::AlarmSettings>,
    /// `[usage]` and `[[zone]]` (issue 9 §1), resolved in `zones.rs`.
    pub(super) usage: Option<super::zones::RawUsage>,
    #[serde(default)]
    pub(super) zone: Vec<super::zones::RawZone>,
    /// `[alarm_positions]` (issue 9 §3): operator position name -> the regions it answers for, resolved in
    /// `positions.rs`.
    pub(super) alarm_positions: Option<BTreeMap<String, Vec<String>>>,
    /// `[[person]]` (issue 10 §2): the people the notifier may tell, resolved in `people.rs`.
    #[serde(default)]
    pub(super) person: Vec<super::people::RawPerson>,
}

/// An RS-485 serial line shared by Modbus RTU slaves; devices use it with `address = "rtu:<id>"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLine {
    pub(super) id: String,
    pub(super) path: String,
    pub(super) baud: Option<u32>,
    /// Data bits, parity, stop bits: "8N1", "8E1", "8O1", "8N2".
    pub(super) format: Option<String>,
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqtt {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    /// Stable across restarts: the broker keeps the persistent session under it.
    pub(super) client_id: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) keep_alive: Option<String>,
    pub(super) max_backoff: Option<String>,
    #[serde(default)]
    pub(super) topics: Vec<RawMqttTopic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqttTopic {
    pub(super) filter: String,
    /// The meter id is this topic level (0-based) ...
    pub(super) meter_topic_level: Option<usize>,
    /// ... or this JSON pointer in the payload.
    pub(super) meter: Option<String>,
    /// JSON pointer to an array of readings (a concentrator's message); absent: one reading per message.
    pub(super) readings: Option<String>,
    pub(super) volume: String,
    pub(super) scale: Option<f64>,
    pub(super) unit: Option<String>,
    /// Absent only with `time_fallback = "arrival"` (a payload that never carries a time).
    pub(super) time: Option<String>,
    /// Needed with `time`.
    pub(super) time_format: Option<String>,
    /// `"arrival"`: a reading without a time is stored at its arrival time, flagged `time_from_arrival`.
    pub(super) time_fallback: Option<String>,
    pub(super) status: Option<RawMqttStatus>,
    /// Further status sources (`[[mqtt.topics.flags]]`), OR-ed with `status`.
    #[serde(default)]
    pub(super) flags: Vec<RawMqttStatus>,
}

/// One status source: a path and exactly one of `bits`, `names`, `bool`, `values`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqttStatus {
    pub(super) path: String,
    pub(super) bits: Option<BTreeMap<String, u8>>,
    pub(super) names: Option<BTreeMap<String, String>>,
    /// The flag a boolean field sets when true.
    #[serde(rename = "bool")]
    pub(super) flag: Option<String>,
    /// Enumerated value → flag (`""`: a known value that sets none).
    pub(super) values: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMqttGroup {
    pub(super) id: String,
    pub(super) name: Option<String>,
    /// Some meter of the group publishes at least this often.
    pub(super) interval: Option<String>,
    pub(super) meters: RawMeters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHj212 {
    pub(super) listen: String,
    /// Limits against strangers (issue 8 §3).
    pub(super) max_connections: Option<u64>,
    pub(super) max_unverified_per_peer: Option<u64>,
    pub(super) verify_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStation {
    pub(super) id: String,
    pub(super) name: Option<String>,
    /// The station's MN (device unique code).
    pub(super) mn: String,
    pub(super) password: Option<String>,
    /// The station uploads at least this often.
    pub(super) interval: Option<String>,
    /// The station's clock: "+08:00" (default, China), "Z", "-05:30".
    pub(super) utc_offset: Option<String>,
    /// Which limits apply by default: "plant_outlet" (default), "network_end" or "source".
    pub(super) site_type: Option<String>,
    pub(super) factors: Vec<RawFactor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFactor {
    pub(super) factor: String,
    pub(super) name: Option<String>,
    pub(super) unit: Option<String>,
    pub(super) low: Option<f64>,
    pub(super) high: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) secure_cookies: Option<bool>,
    pub(super) session_idle: Option<String>,
    pub(super) max_concurrent_logins: Option<usize>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    /// Native TLS (issue 8 §5): PEM certificate chain and private key, both or neither.
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    /// The origin browsers see, when a proxy does not pass `Host` through (issue 8 §5).
    pub(super) public_origin: Option<String>,
    pub(super) devices_dir: Option<PathBuf>,
    /// The utility's IANA time zone (issue 7 §4); resolved with the `[defaults]` time keys in `mod.rs`.
    pub(super) timezone: Option<String>,
    /// The HTTP server's limits (issue 8 §3).
    pub(super) header_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) max_connections: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervision {
    pub(super) base_backoff: Option<String>,
    pub(super) max_backoff: Option<String>,
    pub(super) stable_after: Option<String>,
    pub(super) max_restarts: Option<usize>,
    pub(super) window: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) max_batch_ops: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLive {
    pub(super) replay: Option<usize>,
    pub(super) channel: Option<usize>,
    /// Clients that stop reading (issue 8 §3): the ping interval and the write timeout.
    pub(super) ping: Option<String>,
    pub(super) write_timeout: Option<String>,
    /// How often each live-stream session sends a heartbeat frame (issue 9 §4).
    pub(super) heartbeat: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSimulator {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) speed: Option<f64>,
    pub(super) seed: Option<u64>,
    /// Wall-clock time a simulated valve takes to travel.
    pub(super) valve_travel: Option<String>,
    /// The demo breaks something this often (`incidents.rs`); absent: never.
    pub(super) incidents: Option<String>,
    /// How long each incident lasts (default 5 minutes).
    pub(super) incident_length: Option<String>,
    /// The leak each zone's simulated master meter measures beyond its members, percent (issue 9 §1).
    pub(super) zone_leak_percent: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) retry_delay: Option<String>,
    pub(super) failover_after: Option<u32>,
    pub(super) probe_every: Option<u32>,
    /// Time keys (issue 7 §4); resolved with `server.timezone` in `mod.rs`.
    pub(super) spread: Option<String>,
    pub(super) future_tolerance: Option<String>,
    pub(super) max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    pub(super) id: String,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) concentrator: Vec<RawConcentrator>,
    #[serde(default)]
    pub(super) logger: Vec<RawLogger>,
    #[serde(default)]
    pub(super) valve: Vec<RawValve>,
    #[serde(default)]
    pub(super) station: Vec<RawStation>,
    #[serde(default)]
    pub(super) cjt188: Vec<RawCjt188>,
    #[serde(default)]
    pub(super) mqtt: Vec<RawMqttGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCjt188 {
    pub(super) id: String,
    pub(super) name: Option<String>,
    /// host:port of the transparent gateway (serial-to-TCP or 4G DTU) ...
    pub(super) address: Option<String>,
    /// ... or the id of a `[[line]]` the meters hang on directly (this gateway then owns that line).
    pub(super) line: Option<String>,
    /// "2004" (default) or "2018".
    pub(super) edition: Option<String>,
    /// DI byte order in requests: "big" (90 1F) or "little" (1F 90); the edition's default otherwise.
    pub(super) di_order: Option<String>,
    /// Wake-up FE bytes before each request.
    pub(super) preamble: Option<usize>,
    pub(super) timeout: Option<String>,
    pub(super) cycle: Option<String>,
    pub(super) meters: Vec<RawCjt188Meter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCjt188Meter {
    pub(super) id: String,
    /// 14 BCD digits, written A6..A0 as on the meter's label.
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValve {
    pub(super) id: String,
    pub(super) name: Option<String>,
    /// A Modbus valve: its address and model ...
    pub(super) address: Option<String>,
    pub(super) unit_id: Option<i64>,
    pub(super) model: Option<String>,
    /// ... or a CJ/T 188 valve meter behind a configured gateway.
    pub(super) cjt188: Option<RawValveCjt188>,
    pub(super) timeout: Option<String>,
    /// How often the position is read outside commands.
    pub(super) poll: Option<String>,
    pub(super) confirm_timeout: Option<String>,
    pub(super) confirm_poll: Option<String>,
    /// A queued command older than this is refused (issue 8 §3).
    pub(super) command_expiry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConcentrator {
    pub(super) id: String,
    /// Backup paths (R-A8), tried in order after the primary `address`.
    #[serde(default)]
    pub(super) backup: Vec<String>,
    pub(super) failover_after: Option<u32>,
    pub(super) probe_every: Option<u32>,
    pub(super) name: Option<String>,
    pub(super) address: String,
    pub(super) unit_id: Option<i64>,
    pub(super) model: String,
    pub(super) cycle: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) retry_delay: Option<String>,
    pub(super) meters: RawMeters,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawMeters {
    Series { prefix: String, first: u32, count: u32, width: Option<usize> },
    List(Vec<RawMeter>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawMeter {
    Id(String),
    Slot { id: String, slot: u16 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogger {
    pub(super) id: String,
    /// Backup paths (R-A8), tried in order after the primary `address`.
    #[serde(default)]
    pub(super) backup: Vec<String>,
    pub(super) failover_after: Option<u32>,
    pub(super) probe_every: Option<u32>,
    pub(super) name: Option<String>,
    /// Free text naming the place ("清水水厂 出厂水"); the device's name when `name` is absent.
    pub(super) site: Option<String>,
    /// Which limits apply by default: "plant_outlet" (default), "network_end" or "source".
    pub(super) site_type: Option<String>,
    pub(super) address: String,
    pub(super) unit_id: Option<i64>,
    pub(super) model: String,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<u32>,
    pub(super) retry_delay: Option<String>,
    pub(super) parameters: Vec<RawParameter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParameter {
    pub(super) name: String,
    pub(super) cycle: Option<String>,
    pub(super) low: Option<f64>,
    pub(super) high: Option<f64>,
}

// ---------------------------------------------------------------------------------------------------------
// Device model files (`config/devices/*.toml`, `server.devices_dir`).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) model: String,
    pub(super) kind: String,
    pub(super) description: Option<String>,
    pub(super) meters: Option<RawMeterBlock>,
    pub(super) parameters: Option<BTreeMap<String, RawRegister>>,
    pub(super) valve: Option<RawValveInterface>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValveCjt188 {
    /// The id of a `[[region.cjt188]]` gateway.
    pub(super) gateway: String,
    /// The meter's 14-digit address.
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValveInterface {
    pub(super) command: RawValveCommand,
    pub(super) status: RawValveStatus,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValveCommand {
    /// A holding register written (function 6) with `open` or `close` ...
    pub(super) address: Option<u16>,
    pub(super) open: Option<u16>,
    pub(super) close: Option<u16>,
    /// ... or a coil (function 5): on = open, off = close.
    pub(super) coil: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValveStatus {
    pub(super) function: i64,
    pub(super) address: u16,
    pub(super) closed: u16,
    pub(super) open: u16,
    pub(super) moving: u16,
    pub(super) fault: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeterBlock {
    pub(super) function: i64,
    pub(super) base: u16,
    pub(super) stride: u16,
    pub(super) max_registers: Option<u16>,
    pub(super) volume: RawField,
    pub(super) status: Option<RawField>,
    #[serde(default)]
    pub(super) status_bits: BTreeMap<String, u8>,
    /// The volume register's bits when the concentrator has no reading for the slot (e.g. 0xFFFFFFFF).
    pub(super) no_data: Option<u64>,
    /// A status-word bit set while the slot's meter was not read.
    pub(super) no_data_bit: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub(super) offset: u16,
    #[serde(rename = "type")]
    pub(super) data_type: String,
    pub(super) order: Option<String>,
    pub(super) scale: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegister {
    pub(super) function: i64,
    pub(super) address: u16,
    #[serde(rename = "type")]
    pub(super) data_type: String,
    pub(super) order: Option<String>,
    pub(super) scale: Option<f64>,
    pub(super) unit: String,
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, problems, MINIMAL};

    #[test]
    fn unknown_keys_are_rejected_naming_the_key() {
        check(&format!("{MINIMAL}\nfoo = 1\n"), &["unknown field `foo`"]);
        check(&MINIMAL.replace("model =", "modle = \"x\"\nmodel ="), &["unknown field `modle`"]);
        check("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n", &["unknown field `port`"]);
    }

    #[test]
    fn a_toml_syntax_error_names_the_line() {
        let got = problems("[server\nlisten = 1");
        assert!(got[0].contains("test.toml") && got[0].contains("line 1"), "{got:?}");
    }
}
