//! Configuration in two stages: raw TOML (`raw.rs`: serde, unknown keys rejected, no checks) → a validated
//! [`Config`] holding the resolved specs the actors take. Every problem is collected with the file and key it
//! concerns (`problems.rs`), so `waterworks validate` reports all of them at once (R-A5); warnings (a likely
//! surprise that does not stop loading) are kept in [`Config::warnings`]. Nothing here opens a socket; the
//! only I/O is reading the file and the device model directory.
//!
//! One module per concern: `problems` (the collector and the checks every kind shares), `raw` (the schema),
//! `models` (device register models), `meters` (meter lists of every kind), `lines` (serial lines and Modbus
//! paths), `field` (Modbus concentrators and loggers), `cjt188`, `hj212`, `mqtt`, `valves`, and `cross`
//! (checks between sections). This module holds the entry points, the top-level tables (`[server]`,
//! `[supervision]`, `[store]`, `[live]`, `[simulator]`, `[defaults]`, with the time keys `server.timezone`,
//! `defaults.spread`, `defaults.future_tolerance`, `defaults.max_age` in [`resolve_time`]) and the order in
//! which sections resolve.
//! A new top-level key (say `[server] timezone`) goes into `raw.rs` `RawServer` and [`resolve_server`] here;
//! a new key of a device kind goes into its raw struct and its kind's module.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::model::{DeviceId, RegionId};
use actors::supervisor::RestartPolicy;
use actors::tree::{RegionSpec, TreeSpec};

mod alarms;
mod cjt188;
mod cross;
mod field;
mod hj212;
mod lines;
mod meters;
mod models;
mod mqtt;
mod people;
mod positions;
mod problems;
mod raw;
#[cfg(test)]
mod testing;
mod valves;
mod zones;

pub use models::{DeviceModel, BUILTIN_MODELS};
pub use problems::{parse_duration, ConfigErrors, DurationError, Problem, Severity};

use lines::Lines;
use problems::Check;
use raw::{parse_toml, RawConfig, RawDefaults, RawRegion, RawServer, RawSimulator, RawSupervision};

/// BLAKE2b-128 of a configuration's text, in hex.
fn text_hash(text: &str) -> String {
    use blake2::digest::consts::U16;
    use blake2::Digest;
    let digest = blake2::Blake2b::<U16>::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The embedded demo village.
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// In-process simulation of the configured devices (the demo).
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorSettings {
    pub speed: f64,
    pub seed: u64,
    /// Wall-clock travel time of simulated valves.
    pub valve_travel: Duration,
    /// `incidents`, `incident_length`: the demo breaks something now and then (`crate::incidents`).
    pub incidents: Option<crate::incidents::IncidentSettings>,
    /// `simulator.zone_leak_percent` / 100: what a zone's simulated master meter measures beyond its members.
    pub zone_leak: f64,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub secure_cookies: bool,
    pub session_idle: Duration,
    /// Timeouts and the connection cap of the HTTP server (issue 8 §3).
    pub limits: hmi::ServerLimits,
    /// `[live] ping`, `write_timeout`: how the live stream drops clients that stopped reading.
    pub live: hmi::LiveLimits,
    /// Password checks allowed at once (issue 8 §1); default the number of cores.
    pub max_concurrent_logins: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed (issue 8 §1); default none.
    pub trusted_proxies: Vec<hmi::client::Cidr>,
    /// Native TLS (issue 8 §5): the certificate chain and key files, checked by loading them; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `server.public_origin` (issue 8 §5): the origin state-changing requests must name; default the `Host`.
    pub public_origin: Option<hmi::edge::Origin>,
}

/// `server.tls_cert` and `server.tls_key`, resolved against the configuration file's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks both files (again at start: they may have changed since `validate`).
    pub fn load(&self) -> Result<hmi::tls::ServerTls, hmi::tls::TlsError> {
        hmi::tls::load(&self.cert, &self.key)
    }
}

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from (a path, or "embedded demo").
    pub source: String,
    /// A hash of the file's text (BLAKE2b-128, hex): the start audits a change from the last run's (issue 8 §4).
    pub text_hash: String,
    pub server: ServerConfig,
    pub tree: TreeSpec,
    pub simulator: Option<SimulatorSettings>,
    /// The device models in use, by name (the simulator plays them).
    pub models: HashMap<String, DeviceModel>,
    /// Each device's model name.
    pub device_models: HashMap<DeviceId, String>,
    /// Things that load but will likely surprise (`validate` prints them; `run` logs them).
    pub warnings: Vec<Problem>,
}

/// Per-device defaults (`[defaults]`) for the keys a device may leave out.
struct Defaults {
    timeout: Duration,
    retries: u32,
    retry_delay: Duration,
    failover_after: u32,
    probe_every: u32,
}

/// What resolving one file carries from section to section.
struct Resolver {
    check: Check,
    models: HashMap<String, DeviceModel>,
    defaults: Defaults,
    lines: Lines,
    /// Each device's model name ("cjt188" and "mqtt" for kinds without a register model).
    device_models: HashMap<DeviceId, String>,
    /// HJ 212 station MNs (unique across regions: the gateway routes by MN).
    station_mns: HashSet<String>,
}

/// The region a section is resolved in: its key for messages, its id and what the file says of it.
struct RegionScope<'a> {
    key: String,
    id: RegionId,
    raw: &'a RawRegion,
}

/// Parses and validates configuration text. `file` names it in messages; `base_dir` resolves `devices_dir`.
pub fn parse(file: &str, text: &str, base_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = parse_toml(file, text).map_err(|p| ConfigErrors(vec![p]))?;
    let mut check = Check::new(file);

    let devices_dir = raw.server.devices_dir.as_ref().map(|d| match base_dir {
        Some(b) if d.is_relative() => b.join(d),
        _ => d.clone(),
    });
    let mut model_problems = Vec::new();
    let models = models::load_models(devices_dir.as_deref(), &mut model_problems);
    check.extend(model_problems);

    let mut server = resolve_server(&mut check, &raw.server);
    server.tls = resolve_tls(&mut check, &raw.server, base_dir);
    if raw.server.tls_cert.is_none() && raw.server.tls_key.is_none() && !server.listen.ip().is_loopback() {
        check.warn(
            "server.listen",
            format!(
                "{} serves plain HTTP beyond this host: passwords and session cookies cross the network in clear \
                 text; listen on 127.0.0.1 behind a TLS reverse proxy, or set server.tls_cert and tls_key",
                server.listen
            ),
        );
    }
    let d = hmi::LiveLimits::default();
    server.live = hmi::LiveLimits {
        ping: check.duration("live.ping", raw.live.ping.as_ref(), d.ping),
        write_timeout: check.duration("live.write_timeout", raw.live.write_timeout.as_ref(), d.write_timeout),
        heartbeat: check.duration("live.heartbeat", raw.live.heartbeat.as_ref(), d.heartbeat),
    };
    let policy = resolve_supervision(&mut check, &raw.supervision);
    let simulator = resolve_simulator(&mut check, raw.simulator.as_ref());
    let defaults = resolve_defaults(&mut check, &raw.defaults);
    let time = resolve_time(&mut check, &raw.server, &raw.defaults);
    let lines = lines::resolve_lines(&mut check, &raw.line);
    let mut rs =
        Resolver { check, models, defaults, lines, device_models: HashMap::new(), station_mns: HashSet::new() };

    let regions = resolve_regions(&mut rs, &raw.region);
    let usage = zones::resolve_usage(&mut rs.check, raw.usage.as_ref(), &raw.zone, &regions);
    let hj212_listen = hj212::resolve_listen(&mut rs.check, raw.hj212.as_ref());
    let hj212_limits = hj212::resolve_limits(&mut rs.check, raw.hj212.as_ref());
    let mqtt = raw.mqtt.as_ref().map(|m| mqtt::resolve_broker(&mut rs.check, m, simulator.is_some()));
    cross::check_sections(
        &mut rs.check,
        &cross::Sections {
            regions: &regions,
            lines: &rs.lines,
            simulated: simulator.is_some(),
            hj212_listen: hj212_listen.is_some(),
            mqtt_broker: mqtt.is_some(),
        },
    );

    let alarms = alarms::resolve_alarms(&mut rs.check, raw.alarms.as_ref(), &raw.region, &regions);
    let alarm_positions = positions::resolve_positions(&mut rs.check, raw.alarm_positions.as_ref(), &regions);
    let people = people::resolve_people(&mut rs.check, &raw.person);
    let Resolver { check, models, lines, device_models, .. } = rs;
    let warnings = check.finish()?;
    let tree = TreeSpec {
        regions,
        policy,
        max_batch_ops: raw.store.max_batch_ops.unwrap_or(50_000).max(1),
        live_replay: raw.live.replay.unwrap_or(4096).max(1),
        live_channel: raw.live.channel.unwrap_or(1024).max(1),
        hj212_listen,
        hj212_limits,
        mqtt,
        lines: lines.settings,
        time,
        alarms,
        usage,
        alarm_positions,
        people,
    };
    let text_hash = text_hash(text);
    Ok(Config { source: file.to_owned(), text_hash, server, tree, simulator, models, device_models, warnings })
}

/// `[server]`.
fn resolve_server(check: &mut Check, raw: &RawServer) -> ServerConfig {
    let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        check.add("server.listen", format!("{listen:?} is not an IP address and port, e.g. \"127.0.0.1:8080\""));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    ServerConfig {
        listen,
        data_dir: raw.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/waterworks")),
        secure_cookies: raw.secure_cookies.unwrap_or(false),
        session_idle: check.duration("server.session_idle", raw.session_idle.as_ref(), Duration::from_secs(8 * 3600)),
        limits: resolve_server_limits(check, raw),
        live: hmi::LiveLimits::default(),
        max_concurrent_logins: match raw.max_concurrent_logins {
            Some(0) => {
                check.add("server.max_concurrent_logins", "must be at least 1".to_owned());
                1
            }
            Some(n) => n,
            None => hmi::guard::default_max_concurrent(),
        },
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .flatten()
            .filter_map(|entry| match entry.parse() {
                Ok(cidr) => Some(cidr),
                Err(e) => {
                    check.add("server.trusted_proxies", format!("{e}"));
                    None
                }
            })
            .collect(),
        tls: None,
        public_origin: raw.public_origin.as_deref().and_then(|o| match o.parse() {
            Ok(origin) => Some(origin),
            Err(e) => {
                check.add("server.public_origin", e);
                None
            }
        }),
    }
}

/// `server.tls_cert` and `tls_key`: both or neither; relative paths from the configuration file's directory; the
/// files are loaded, so an unreadable file, bad PEM or a key that does not fit is a problem at its key.
fn resolve_tls(check: &mut Check, raw: &RawServer, base_dir: Option<&Path>) -> Option<TlsFiles> {
    let place = |p: &PathBuf| match base_dir {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.clone(),
    };
    match (&raw.tls_cert, &raw.tls_key) {
        (None, None) => None,
        (Some(_), None) => {
            check.add("server.tls_key", "missing: native TLS needs both tls_cert and tls_key");
            None
        }
        (None, Some(_)) => {
            check.add("server.tls_cert", "missing: native TLS needs both tls_cert and tls_key");
            None
        }
        (Some(cert), Some(key)) => {
            let files = TlsFiles { cert: place(cert), key: place(key) };
            match files.load() {
                Ok(_) => Some(files),
                Err(e) => {
                    check.add(e.key(), e.to_string());
                    None
                }
            }
        }
    }
}

/// `server.header_timeout`, `idle_timeout` (positive durations, as every duration), `max_connections`.
fn resolve_server_limits(check: &mut Check, raw: &RawServer) -> hmi::ServerLimits {
    let d = hmi::ServerLimits::default();
    let header_timeout = check.duration("server.header_timeout", raw.header_timeout.as_ref(), d.header_timeout);
    let idle_timeout = check.duration("server.idle_timeout", raw.idle_timeout.as_ref(), d.idle_timeout);
    let max_connections = match raw.max_connections {
        None => d.max_connections,
        Some(n) if (1..=1_000_000).contains(&n) => usize::try_from(n).unwrap_or(d.max_connections),
        Some(n) => {
            check.add("server.max_connections", format!("{n} is out of range 1–1000000"));
            d.max_connections
        }
    };
    hmi::ServerLimits { header_timeout, idle_timeout, max_connections }
}

/// `[supervision]`: the restart policy of every supervisor.
fn resolve_supervision(check: &mut Check, s: &RawSupervision) -> RestartPolicy {
    let d = RestartPolicy::default();
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
    policy
}

/// `[simulator]`: present and enabled, or no simulator.
fn resolve_simulator(check: &mut Check, raw: Option<&RawSimulator>) -> Option<SimulatorSettings> {
    let sim = raw.filter(|s| s.enabled)?;
    let speed = sim.speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0 && speed <= 1e6) {
        check.add("simulator.speed", "must be more than 0 and at most 1000000");
    }
    let valve_travel = check.duration("simulator.valve_travel", sim.valve_travel.as_ref(), Duration::from_secs(3));
    let incidents = sim.incidents.as_ref().map(|_| crate::incidents::IncidentSettings {
        every: check.duration("simulator.incidents", sim.incidents.as_ref(), Duration::from_secs(20 * 60)),
        length: check.duration("simulator.incident_length", sim.incident_length.as_ref(), Duration::from_secs(300)),
    });
    let zone_leak = match sim.zone_leak_percent {
        None => 0.0,
        Some(p) if p.is_finite() && (0.0..90.0).contains(&p) => p / 100.0,
        Some(p) => {
            check.add("simulator.zone_leak_percent", format!("{p} is out of range 0–90"));
            0.0
        }
    };
    Some(SimulatorSettings { speed, seed: sim.seed.unwrap_or(1), valve_travel, incidents, zone_leak })
}

/// `[defaults]`.
fn resolve_defaults(check: &mut Check, raw: &RawDefaults) -> Defaults {
    let defaults = Defaults {
        timeout: check.duration("defaults.timeout", raw.timeout.as_ref(), Duration::from_secs(3)),
        retries: raw.retries.unwrap_or(2),
        retry_delay: check.duration("defaults.retry_delay", raw.retry_delay.as_ref(), Duration::from_secs(30)),
        failover_after: raw.failover_after.unwrap_or(3),
        probe_every: raw.probe_every.unwrap_or(5),
    };
    check.at_least_one("defaults.failover_after", defaults.failover_after);
    check.at_least_one("defaults.probe_every", defaults.probe_every);
    defaults
}

/// The time keys (issue 7 §4): `server.timezone`, `defaults.spread`, `defaults.future_tolerance`,
/// `defaults.max_age`: the utility's zone, the poll spread and the reading-time limits. An unknown zone is a
/// problem with file and key; the zone database is the one bundled into the binary, so what validates here runs
/// on any machine.
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

/// Every `[[region]]` and the devices of every kind in it. The order of kinds is the order in which
/// duplicates are reported ("meter M1 is also configured on c1" names the earlier one).
fn resolve_regions(rs: &mut Resolver, raw: &[RawRegion]) -> Vec<RegionSpec> {
    if raw.is_empty() {
        rs.check.add("region", "no [[region]] configured: there is nothing to supervise");
    }
    let mut region_ids = HashSet::new();
    let mut regions = Vec::new();
    for (ri, r) in raw.iter().enumerate() {
        let scope = RegionScope { key: format!("region[{ri}] ({})", r.id), id: RegionId::new(r.id.clone()), raw: r };
        rs.check.id(&scope.key, &r.id);
        if !region_ids.insert(r.id.clone()) {
            rs.check.add(format!("{}.id", scope.key), format!("region id {:?} is used twice", r.id));
        }
        let mut devices = field::resolve_concentrators(rs, &scope);
        devices.extend(field::resolve_loggers(rs, &scope));
        let mqtt = mqtt::resolve_groups(rs, &scope);
        let cjt188 = cjt188::resolve_gateways(rs, &scope);
        let stations = hj212::resolve_stations(rs, &scope);
        let valves = valves::resolve_valves(rs, &scope);
        regions.push(RegionSpec {
            id: scope.id,
            name: r.name.clone().unwrap_or_else(|| r.id.clone()),
            devices,
            valves,
            stations,
            cjt188,
            mqtt,
        });
    }
    regions
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

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![Problem::error(file.clone(), "", format!("cannot read: {e}"))]))?;
    parse(&file, &text, path.parent())
}

/// The embedded demo village.
pub fn demo() -> Result<Config, ConfigErrors> {
    parse("embedded demo.toml", DEMO_TOML, None)
}

#[cfg(test)]
mod tests {
    use super::testing::{check, problems};
    use super::*;
    use actors::field::DeviceKindSpec;
    use drivers::mqtt::TimeFallback;

    #[test]
    fn http_limits_have_defaults_and_are_checked() {
        let c = parse("test.toml", super::testing::MINIMAL, None).unwrap();
        assert_eq!(c.server.limits, hmi::ServerLimits::default());
        let text = format!(
            "[server]\nheader_timeout = \"2s\"\nidle_timeout = \"30s\"\nmax_connections = 64\n{}",
            super::testing::MINIMAL
        );
        let c = parse("test.toml", &text, None).unwrap();
        let want = hmi::ServerLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
        };
        assert_eq!(c.server.limits, want);
        let bad = format!(
            "[server]\nheader_timeout = \"0s\"\nidle_timeout = \"soon\"\nmax_connections = 0\n{}",
            super::testing::MINIMAL
        );
        check(
            &bad,
            &[
                "test.toml: server.header_timeout",
                "test.toml: server.idle_timeout",
                "test.toml: server.max_connections",
            ],
        );
    }

    #[test]
    fn hj212_limits_have_defaults_and_are_checked() {
        let station = "[[region.station]]\nid = \"st1\"\nmn = \"ST0001\"\nfactors = [{ factor = \"w01001\" }]\n";
        let with =
            |keys: &str| format!("[hj212]\nlisten = \"127.0.0.1:9212\"\n{keys}{}{station}", super::testing::MINIMAL);
        let c = parse("test.toml", &with(""), None).unwrap();
        assert_eq!(c.tree.hj212_limits, actors::station::Hj212Limits::default());
        let keys =
            "max_connections = 64\nmax_unverified_per_peer = 2\nverify_timeout = \"5s\"\nidle_timeout = \"2m\"\n";
        let c = parse("test.toml", &with(keys), None).unwrap();
        let want = actors::station::Hj212Limits {
            max_connections: 64,
            max_unverified_per_peer: 2,
            verify_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
        };
        assert_eq!(c.tree.hj212_limits, want);
        let bad = "max_connections = 0\nmax_unverified_per_peer = 0\nverify_timeout = \"0s\"\nidle_timeout = \"x\"\n";
        check(
            &with(bad),
            &["hj212.max_connections", "hj212.max_unverified_per_peer", "hj212.verify_timeout", "hj212.idle_timeout"],
        );
    }

    #[test]
    fn plain_http_beyond_loopback_is_a_warning() {
        let with = |listen: &str| format!("[server]\nlisten = \"{listen}\"\n{}", super::testing::MINIMAL);
        let w = super::testing::warnings(&with("0.0.0.0:8080"));
        assert!(w.iter().any(|w| w.contains("server.listen") && w.contains("plain HTTP beyond this host")), "{w:?}");
        assert!(super::testing::warnings(&with("127.0.0.1:8080")).is_empty());
        assert!(super::testing::warnings(&with("[::1]:8080")).is_empty());
    }

    #[test]
    fn demo_and_example_are_valid() {
        let demo = demo().unwrap();
        assert!(demo.simulator.is_some());
        assert_eq!(demo.tree.regions.len(), 2);
        let example = parse("example.toml", include_str!("../../config/example.toml"), None).unwrap();
        // Behind its TLS proxy the example listens on loopback only, in plain HTTP (issue 8 §5).
        assert!(example.server.listen.ip().is_loopback(), "{}", example.server.listen);
        assert_eq!(example.server.trusted_proxies.len(), 1);
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
    fn login_limits_and_trusted_proxies_resolve_and_bad_ones_are_named() {
        let text = "[server]\nmax_concurrent_logins = 3\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n"
            .to_owned()
            + testing::MINIMAL;
        let c = parse("test.toml", &text, None).expect("valid");
        assert_eq!(c.server.max_concurrent_logins, 3);
        let shown: Vec<String> = c.server.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8"]);
        let c = parse("test.toml", testing::MINIMAL, None).expect("valid");
        assert!(c.server.trusted_proxies.is_empty() && c.server.max_concurrent_logins >= 1);
        check(
            "[server]\nmax_concurrent_logins = 0\ntrusted_proxies = [\"proxy.lan\", \"10.0.0.0/40\"]\n",
            &[
                "server.max_concurrent_logins: must be at least 1",
                "server.trusted_proxies: \"proxy.lan\" is not an IP address or CIDR block",
                "server.trusted_proxies: \"10.0.0.0/40\" is not",
            ],
        );
    }

    #[test]
    fn a_configuration_without_regions_or_with_bad_defaults_is_refused() {
        check("", &["test.toml: region: no [[region]] configured"]);
        check("[defaults]\nprobe_every = 0\n", &["defaults.probe_every: must be at least 1"]);
        check("[supervision]\nbase_backoff = \"1m\"\nmax_backoff = \"1s\"\n", &["supervision.max_backoff: must not"]);
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
}
