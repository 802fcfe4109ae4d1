//! Turns the validated configuration into what the simulators (crate `waterworks-sim`) play: each configured
//! device, with the register layout of its model, so that a simulator and the server read the same register
//! maps; and the configured names the fault-injection API ([`sim::control::SimControl`]) lists them under.
//! It deliberately starts no HTTP server of its own and holds no simulator state.

use std::net::SocketAddr;

use actors::field::{DeviceKindSpec, FieldLayout};
use actors::modbus_link::ModbusPath;
use actors::model::MeterStatus;
use actors::valve::{RegisterValve, ValveInterface};
use drivers::cjt188::Address;
use sim::modbus::{
    ConcentratorLayout, FieldSpec, ModbusFault, ModbusSimSpec, SimDeviceSpec, SimKind, SimParameter, ValveLayout,
};

use crate::config::Config;

fn field(f: &FieldLayout) -> FieldSpec {
    FieldSpec { offset: f.offset, data_type: f.data_type, word_order: f.word_order, scale: f.scale }
}

/// Why the configuration cannot be simulated as it stands, or a simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    /// Without an override, a simulated device listens on its configured address, which must be an IP.
    #[error("{what} {id}: address {addr:?} must be an IP address and port to be simulated")]
    NotAnIpAddress { what: &'static str, id: String, addr: String },
    #[error("cjt188 {id}: {error}")]
    Cjt188 { id: String, error: sim::cjt188::Cjt188SimError },
    #[error("line {id}: {error}")]
    Line { id: String, error: sim::rtu::RtuSimError },
}

/// Why the demo's MQTT broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mosquitto is not installed (apt-get install mosquitto)")]
    NotInstalled,
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir { dir: std::path::PathBuf, source: std::io::Error },
    #[error("{0}")]
    NoPort(std::io::Error),
    #[error("cannot write {}: {source}", path.display())]
    WriteConfig { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: &'static str, source: std::io::Error },
    #[error("mosquitto did not accept connections on port {0}")]
    NotListening(u16),
}

/// The simulation of every configured device reached over Modbus TCP (devices on a serial line are played by
/// [`start_rtu`]). `listen_override` replaces each address (port 0 for the in-process demo and tests); otherwise
/// each device's configured address must be an IP and port.
pub fn spec_from_config(
    config: &Config,
    speed: f64,
    seed: u64,
    listen_override: Option<SocketAddr>,
) -> Result<ModbusSimSpec, SimulationError> {
    let mut devices = Vec::new();
    let mut add = |what: &'static str, id: String, path: &ModbusPath, kind: SimKind| -> Result<(), SimulationError> {
        let ModbusPath::Tcp(target) = path else { return Ok(()) };
        let listen = match listen_override {
            Some(a) => a,
            None => target.addr.parse::<SocketAddr>().map_err(|_| SimulationError::NotAnIpAddress {
                what,
                id: id.clone(),
                addr: target.addr.clone(),
            })?,
        };
        devices.push(SimDeviceSpec { id, listen, unit_id: target.unit_id, kind, fault: ModbusFault::default() });
        Ok(())
    };
    for region in &config.tree.regions {
        for d in &region.devices {
            add("device", d.id.to_string(), &d.target, sim_kind(d, config))?;
        }
        for v in &region.valves {
            // A CJ/T 188 valve meter is played by its gateway's simulator.
            if let ValveInterface::Register { path, valve } = &v.interface {
                add("valve", v.id.to_string(), path, valve_kind(config, valve, speed))?;
            }
        }
    }
    Ok(ModbusSimSpec { devices, speed, seed })
}

/// What the simulator plays for a register valve: its model's registers, open at start.
fn valve_kind(config: &Config, i: &RegisterValve, speed: f64) -> SimKind {
    let valve_travel = config.simulator.as_ref().map_or(std::time::Duration::from_secs(3), |s| s.valve_travel);
    SimKind::Valve(ValveLayout {
        command_coil: i.command_coil,
        command_address: i.command_address,
        open_value: i.open_value,
        close_value: i.close_value,
        status_function: i.status_function,
        status_address: i.status_address,
        closed_code: i.closed_code,
        open_code: i.open_code,
        moving_code: i.moving_code,
        fault_code: i.fault_code,
        travel_s: valve_travel.as_secs_f64() * speed,
        initially_open: true,
    })
}

/// The slot of a concentrator that plays a zone's master meter (`[[zone]] masters`), with the configured
/// leak (`simulator.zone_leak_percent`): its use is the other slots' use and the leak (issue 9 §1).
fn district_of(
    d: &actors::field::DeviceSpec,
    c: &actors::field::ConcentratorSpec,
    config: &Config,
) -> Option<sim::modbus::DistrictMeter> {
    let leak = config.simulator.as_ref().map_or(0.0, |s| s.zone_leak);
    let masters = config.tree.usage.zones.iter().flat_map(|z| z.masters.iter());
    let slot = masters.filter_map(|m| c.meters.iter().find(|x| x.id == *m)).map(|x| x.slot).next()?;
    tracing::debug!(message = "Simulating a master meter.", device = %d.id, slot, leak);
    Some(sim::modbus::DistrictMeter { slot, leak })
}

/// What the simulator plays for a Modbus device: the register layout of its model.
fn sim_kind(d: &actors::field::DeviceSpec, config: &Config) -> SimKind {
    match &d.kind {
        DeviceKindSpec::Concentrator(c) => {
            let l = &c.layout;
            let meters = c.meters.iter().map(|m| m.slot).max().map_or(0, |s| s.saturating_add(1));
            let status_bits = l
                .status_bits
                .iter()
                .filter_map(|(bit, flag)| {
                    MeterStatus::NAMES.iter().find(|(_, f)| f == flag).map(|(n, _)| ((*n).to_owned(), *bit))
                })
                .collect();
            SimKind::Concentrator(ConcentratorLayout {
                meters,
                function: l.function,
                base: l.base,
                stride: l.stride,
                volume: field(&l.volume),
                status: l.status.as_ref().map(field),
                status_bits,
                no_data: l.no_data.volume,
                no_data_bit: l.no_data.status_bit,
                district: district_of(d, c, config),
            })
        }
        DeviceKindSpec::Logger(l) => SimKind::Logger(
            l.parameters.iter().map(|p| SimParameter { name: p.name.clone(), spec: p.register }).collect(),
        ),
    }
}

/// Points every Modbus TCP device and valve of the configuration at the address the simulator bound for it.
pub fn point_at(config: &mut Config, sim: &sim::modbus::ModbusSim) {
    let point = |path: &mut ModbusPath, id: &str| {
        if let (ModbusPath::Tcp(target), Some(addr)) = (path, sim.addr(id)) {
            target.addr = addr.to_string();
        }
    };
    for region in &mut config.tree.regions {
        for d in &mut region.devices {
            let d = std::sync::Arc::make_mut(d);
            point(&mut d.target, d.id.as_str());
        }
        for v in &mut region.valves {
            let v = std::sync::Arc::make_mut(v);
            if let ValveInterface::Register { path, .. } = &mut v.interface {
                point(path, v.id.as_str());
            }
        }
    }
}

/// Simulated HJ 212 stations for the configured stations, by station (device) id, pushing real-time data to
/// `server` twice per configured interval, with values near each factor's nominal value.
pub fn stations_from_config(config: &Config, server: SocketAddr, seed: u64) -> Vec<(String, sim::hj212::Hj212SimSpec)> {
    use drivers::hj212::cn;
    use sim::hj212::default_factors;
    use sim::hj212::{FactorSpec, Hj212SimSpec};
    let nominal = |code: &str| -> FactorSpec {
        default_factors().into_iter().find(|f| f.code == code).unwrap_or_else(|| match code {
            "w20120" | "w20119" => FactorSpec::new(code, 0.003, 0.001, 4),
            "w20115" | "w20111" => FactorSpec::new(code, 0.0005, 0.0002, 5),
            "w20117" => FactorSpec::new(code, 0.01, 0.002, 4),
            _ => FactorSpec::new(code, 1.0, 0.05, 3),
        })
    };
    let mut out = Vec::new();
    for (i, region) in config.tree.regions.iter().enumerate() {
        for (j, st) in region.stations.iter().enumerate() {
            let mut spec = Hj212SimSpec::new(server, &st.mn);
            spec.pw = st.password.clone().unwrap_or_default();
            spec.factors = st.parameters.iter().map(|p| nominal(&p.factor)).collect();
            spec.uploads = vec![cn::REALTIME_DATA.to_owned()];
            spec.interval = st.interval / 2;
            spec.reconnect_delay = std::time::Duration::from_millis(200);
            spec.seed = seed ^ ((i as u64) << 32 | j as u64);
            out.push((st.id.to_string(), spec));
        }
    }
    out
}

/// Simulated CJ/T 188 gateways for the configured ones, each playing its meters (valves open, a few with a
/// low battery). `listen_override` as in [`spec_from_config`].
pub async fn start_cjt188(
    config: &Config,
    seed: u64,
    listen_override: Option<SocketAddr>,
) -> Result<Vec<(String, sim::cjt188::Cjt188Sim)>, SimulationError> {
    use drivers::cjt188::{Cjt188Link, Volume as CjtVolume};
    use sim::cjt188::{Cjt188Sim, Cjt188SimSpec, SimLink, SimMeterSpec};
    let mut out = Vec::new();
    for region in &config.tree.regions {
        for g in &region.cjt188 {
            let link = match (&g.link, listen_override) {
                (Cjt188Link::Serial(settings), _) => SimLink::Serial { baud: settings.baud, format: settings.format() },
                (Cjt188Link::Tcp(_), Some(listen)) => SimLink::Tcp(listen),
                (Cjt188Link::Tcp(addr), None) => SimLink::Tcp(addr.parse::<SocketAddr>().map_err(|_| {
                    SimulationError::NotAnIpAddress { what: "cjt188", id: g.id.to_string(), addr: addr.clone() }
                })?),
            };
            let meters = g
                .meters
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut spec = SimMeterSpec::new(m.address);
                    let k = (seed as usize).wrapping_add(i);
                    spec.initial = CjtVolume::from_millilitres(50_000_000 + (k as u64 % 97) * 13_000_000);
                    spec.flow_ml_per_s = 2 + (k as u64 % 5);
                    spec.battery_low = k % 17 == 3;
                    spec
                })
                .collect();
            let spec = Cjt188SimSpec { link, preamble: g.model.preamble, st_bits: g.model.st_bits, meters };
            let sim = Cjt188Sim::start(spec)
                .await
                .map_err(|error| SimulationError::Cjt188 { id: g.id.to_string(), error })?;
            out.push((g.id.to_string(), sim));
        }
    }
    Ok(out)
}

/// Points every CJ/T 188 gateway at its simulator: its TCP address, or its line's pseudo-terminal.
pub fn point_cjt188_at(config: &mut Config, sims: &[(String, sim::cjt188::Cjt188Sim)]) {
    use drivers::cjt188::Cjt188Link;
    for region in &mut config.tree.regions {
        for g in &mut region.cjt188 {
            if let Some((_, sim)) = sims.iter().find(|(id, _)| id == g.id.as_str()) {
                match (&mut std::sync::Arc::make_mut(g).link, sim.addr(), sim.path()) {
                    (Cjt188Link::Tcp(addr), Some(at), _) => *addr = at.to_string(),
                    (Cjt188Link::Serial(settings), _, Some(path)) => path.clone_into(&mut settings.path),
                    _ => {}
                }
            }
        }
    }
}

/// Simulated RS-485 lines for the configured ones: each plays, paced to its baud rate, every device that has a
/// path on it (as an RTU slave with the device's unit id).
pub async fn start_rtu(
    config: &Config,
    speed: f64,
    seed: u64,
) -> Result<Vec<(String, sim::rtu::RtuSim)>, SimulationError> {
    use sim::rtu::{RtuFault, RtuSim, RtuSimSpec, RtuSlaveSpec};
    let mut out = Vec::new();
    for (id, settings) in &config.tree.lines {
        let mut slaves = Vec::new();
        let mut add = |id: String, path: &ModbusPath, kind: SimKind| {
            slaves.push(RtuSlaveSpec { id, unit_id: path.unit_id(), kind, fault: RtuFault::default() });
        };
        for region in &config.tree.regions {
            for d in &region.devices {
                if let Some(path) = d.paths().find(|p| p.line() == Some(id.as_str())) {
                    add(d.id.to_string(), path, sim_kind(d, config));
                }
            }
            for v in &region.valves {
                if let ValveInterface::Register { path, valve } = &v.interface {
                    if path.line() == Some(id.as_str()) {
                        add(v.id.to_string(), path, valve_kind(config, valve, speed));
                    }
                }
            }
        }
        if slaves.is_empty() {
            continue;
        }
        let spec = RtuSimSpec { baud: settings.baud, format: settings.format(), slaves, speed, seed };
        let sim = RtuSim::start(spec).map_err(|error| SimulationError::Line { id: id.clone(), error })?;
        out.push((id.clone(), sim));
    }
    Ok(out)
}

/// Points every simulated line at its simulator's pseudo-terminal.
pub fn point_lines_at(config: &mut Config, sims: &[(String, sim::rtu::RtuSim)]) {
    for (id, settings) in &mut config.tree.lines {
        if let Some((_, sim)) = sims.iter().find(|(l, _)| l == id) {
            settings.path = sim.path().to_owned();
        }
    }
}

/// The line of a Modbus device's or register valve's primary path, if that is an RS-485 line: a slave of a
/// simulated line is listed by the fault-injection API under its own id only on its primary line.
pub fn primary_line(config: &Config, id: &str) -> Option<String> {
    config.tree.regions.iter().find_map(|r| {
        let device = r.devices.iter().find(|d| d.id.as_str() == id).map(|d| &d.target);
        let valve = || {
            r.valves.iter().find(|v| v.id.as_str() == id).and_then(|v| match &v.interface {
                ValveInterface::Register { path, .. } => Some(path),
                ValveInterface::Cjt188 { .. } => None,
            })
        };
        device.or_else(valve).and_then(|path| path.line().map(str::to_owned))
    })
}

/// The meters of the configured CJ/T 188 gateway or line `gateway`: id and address, in configuration order
/// (none for an unknown gateway).
pub fn cjt188_meters(config: &Config, gateway: &str) -> Vec<(String, Address)> {
    let spec = config.tree.regions.iter().flat_map(|r| &r.cjt188).find(|g| g.id.as_str() == gateway);
    spec.map(|g| g.meters.iter().map(|m| (m.id.to_string(), m.address)).collect()).unwrap_or_default()
}

/// The pid file of the demo's broker: `mosquitto/mosquitto.pid` in the data directory.
pub fn broker_pid_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("mosquitto").join("mosquitto.pid")
}

/// Whether process `pid` runs (exists and is not a zombie waiting to be reaped).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// Whether process `pid` is a Mosquitto running on configuration file `conf` (so on its persistence directory).
fn is_broker_of(pid: i32, conf: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let mut args = cmdline.split(|b| *b == 0);
    let program = args.next().unwrap_or_default();
    running(pid) && program.ends_with(b"mosquitto") && args.any(|a| a == conf.as_os_str().as_bytes())
}

/// Stops a broker left running on this data directory by an earlier run (its pid file names a Mosquitto on our
/// configuration file): SIGTERM, then SIGKILL if it has not gone within 2 s. Returns its pid when there was one.
async fn stop_stale_broker(data_dir: &std::path::Path, conf: &std::path::Path) -> Option<i32> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid: i32 = std::fs::read_to_string(broker_pid_file(data_dir)).ok()?.trim().parse().ok()?;
    if pid <= 1 || !is_broker_of(pid, conf) {
        return None;
    }
    tracing::warn!(
        message = "A Mosquitto from an earlier run still uses the demo's broker directory; stopping it.",
        pid,
        conf = %conf.display()
    );
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        let _ = kill(Pid::from_raw(pid), signal);
        for _ in 0..40 {
            if !running(pid) {
                return Some(pid);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Some(pid)
}

/// `setpriv` (util-linux), which starts a program with a parent-death signal (`PR_SET_PDEATHSIG`).
fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| std::path::Path::new(p).exists())
}

/// Starts a Mosquitto broker for the demo, on a free loopback port, with its persistence in the data
/// directory. Fails (with the reason) when Mosquitto is not installed.
///
/// The broker dies with the server, even when the server is killed with SIGKILL (issue 8 §5): it is started
/// through `setpriv --pdeathsig KILL`, so the kernel kills it when the thread that started it ends (the
/// runtime's thread that runs the start-up, which lives as long as the process; our code forbids `unsafe`, so
/// no `pre_exec` of our own). Its pid is written to [`broker_pid_file`]; a broker still running from an earlier
/// run (started before this, or where `setpriv` is missing) is found through that file and stopped before a
/// new one starts on the same persistence directory.
pub async fn start_broker(data_dir: &std::path::Path) -> Result<(tokio::process::Child, u16), BrokerError> {
    let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(binary) = binary else {
        return Err(BrokerError::NotInstalled);
    };
    let dir = data_dir.join("mosquitto");
    std::fs::create_dir_all(&dir).map_err(|source| BrokerError::CreateDir { dir: dir.clone(), source })?;
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(BrokerError::NoPort)?.port();
    let config = format!(
        "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest file {}/mosquitto.log\n",
        dir.display(),
        dir.display()
    );
    let conf = dir.join("mosquitto.conf");
    stop_stale_broker(data_dir, &conf).await;
    std::fs::write(&conf, config).map_err(|source| BrokerError::WriteConfig { path: conf.clone(), source })?;
    let mut command = match setpriv() {
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", binary]);
            c
        }
        None => {
            tracing::warn!(
                message =
                    "setpriv not found: the demo's Mosquitto will outlive a killed server (the next start stops it)."
            );
            tokio::process::Command::new(binary)
        }
    };
    let child = command
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BrokerError::Spawn { binary, source })?;
    // setpriv replaces itself with Mosquitto: the child's pid is the broker's.
    if let Some(pid) = child.id() {
        let pid_file = broker_pid_file(data_dir);
        std::fs::write(&pid_file, format!("{pid}\n"))
            .map_err(|source| BrokerError::WriteConfig { path: pid_file.clone(), source })?;
    }
    // Ready when it accepts connections.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((child, port));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(BrokerError::NotListening(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `waterworks simulate` on a configuration whose device has a host name, not an IP, says which device.
    #[test]
    fn a_device_without_an_ip_address_is_named() {
        let text = r#"
            [[region]]
            id = "west"
            [[region.concentrator]]
            id = "west-c1"
            address = "meters.example:502"
            model = "ww-concentrator-v1"
            meters = ["M1", "M2"]
        "#;
        let config = crate::config::parse("test.toml", text, None).expect("valid configuration");
        let e = spec_from_config(&config, 1.0, 1, None).expect_err("a host name cannot be simulated");
        assert_eq!(
            e.to_string(),
            "device west-c1: address \"meters.example:502\" must be an IP address and port to be simulated"
        );
        assert!(spec_from_config(&config, 1.0, 1, Some("127.0.0.1:0".parse().unwrap())).is_ok());
    }
}
