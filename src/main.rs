//! `waterworks`: the command line. Thin on purpose: parse arguments, load and validate configuration,
//! then hand over to [`waterworks::app`]. Every failure ends as one clear paragraph and a non-zero exit,
//! never a panic trace (R-A5).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sim::control::SimControl;
use waterworks::app::{self, RunOptions};
use waterworks::config;

#[derive(Parser)]
#[command(name = "waterworks", version, about = "Supervisory control and business server for water utilities")]
struct Cli {
    /// How log lines are written to stderr: `text` (one readable line each) or `json` (one JSON object
    /// each, for log shippers). Either way without colour codes unless stderr is a terminal.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The format of log lines (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the embedded demo village when no --config is given).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP listen address, overriding server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory, overriding server.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve the fault-injection HTTP API over the in-process simulator here (loopback only), e.g.
        /// 127.0.0.1:9090. Only with a configuration that enables the simulator, such as the demo.
        #[arg(long)]
        sim_control: Option<SocketAddr>,
    },
    /// Recover an admin account while the server is stopped: USER (default admin) becomes an enabled admin
    /// with a new generated password (printed once; it must be changed at the next login), without a second
    /// factor, and every session of theirs ends. Audited. Refused while a server holds the store.
    ResetAdmin {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory, overriding server.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// Check a configuration: exit 0, or print every problem and exit 2.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run only the field simulator for the configured devices at their configured addresses: Modbus TCP
    /// devices, CJ/T 188 gateways, RS-485 lines (on pseudo-terminals), HJ 212 stations and MQTT meters.
    Simulate {
        #[arg(long)]
        config: PathBuf,
        /// Inject a fault: ID=silent | ID=delay:MS | ID=exception:CODE | ID=garbage | ID=disconnect |
        /// ID=value:PARAM=X (several comma-separated). Repeatable.
        #[arg(long = "fault")]
        faults: Vec<String>,
        /// Serve the fault-injection HTTP API over every simulated device here (loopback only), e.g.
        /// 127.0.0.1:9090.
        #[arg(long)]
        control: Option<SocketAddr>,
        /// Simulated time speed-up (overrides [simulator] speed).
        #[arg(long)]
        speed: Option<f64>,
    },
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn fail(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {}", text.trim_end());
}

/// Whether log lines may carry ANSI colour codes: only when they go to a terminal (never into journald, a
/// pipe or a file), and never when `NO_COLOR` is set (no-color.org).
fn colour_logs() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_modbus=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour_logs()).init(),
        // One JSON object per line: `timestamp`, `level`, `target`, and the event's `fields` (`message` among
        // them); `flatten_event` would mix field names with those keys, so fields stay under `fields`.
        LogFormat::Json => builder.json().with_ansi(false).with_current_span(false).init(),
    }
    // A panic anywhere is logged as one line through tracing, not printed as a trace to the user.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        tracing::error!(message = "Panic caught; the supervisor will restart the actor.", error = %payload, location = %location);
    }));
}

fn load_config(path: Option<&PathBuf>) -> Result<config::Config, ExitCode> {
    let loaded = match path {
        Some(p) => config::load(p),
        None => config::demo(),
    };
    loaded.map_err(|e| {
        fail(&e.to_string());
        ExitCode::from(2)
    })
}

/// A server or simulator that starts logs each configuration warning (`validate` prints them instead).
fn log_warnings(config: &config::Config) {
    for w in &config.warnings {
        tracing::warn!(message = "Configuration warning.", warning = %w);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            fail(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Run { config: None, listen: None, data_dir: None, sim_control: None }) {
            Command::Validate { config } => match load_config(Some(&config)) {
                Ok(c) => {
                    // Warnings do not fail validation (exit 0), but each is shown with its file and key.
                    for w in &c.warnings {
                        say(&w.to_string());
                    }
                    say(&format!("{}: ok ({})", config.display(), c.summary()));
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            },
            Command::Run { config, listen, data_dir, sim_control } => run(config, listen, data_dir, sim_control).await,
            Command::ResetAdmin { config, data_dir, user } => reset_admin(config, data_dir, &user),
            Command::Simulate { config, faults, control, speed } => simulate(config, faults, control, speed).await,
        }
    })
}

async fn run(
    config: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    sim_control: Option<SocketAddr>,
) -> ExitCode {
    let cfg = match load_config(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    log_warnings(&cfg);
    let admin_password = std::env::var("WATERWORKS_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    let opts = RunOptions { listen, data_dir, admin_password, clock: None, sim_control };
    if let (Err(e), Some(addr)) = (app::check_options(&cfg, &opts), sim_control) {
        fail(&format!("--sim-control {addr}: {e}"));
        return ExitCode::from(2);
    }
    let mut app = match app::start(cfg, opts).await {
        Ok(app) => app,
        Err(e) => {
            fail(&format!("{e:#}"));
            return ExitCode::FAILURE;
        }
    };
    let scheme = if app.tls { "https" } else { "http" };
    say(&format!("Waterworks is running. HMI: {scheme}://{}/  (data in {})", app.addr, app.data_dir.display()));
    if let Some(addr) = app.sim_control_addr {
        say(&format!("fault-injection API on http://{addr}/devices"));
    }
    if let Some(pw) = &app.generated_admin_password {
        say(&format!("First start: created user \"admin\" with password {pw}  (shown once; it must be changed at the first login; set WATERWORKS_ADMIN_PASSWORD to choose it)"));
    }
    let (result, how) = tokio::select! {
        r = app.wait() => (r, "the supervision tree or the HTTP server stopped; see the log"),
        signal = shutdown_signal() => (Ok(()), signal),
    };
    tracing::info!(message = "Shutting down.", cause = how);
    app.shutdown_because(how, result.is_ok()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn reset_admin(config: Option<PathBuf>, data_dir: Option<PathBuf>, user: &str) -> ExitCode {
    let cfg = match load_config(config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = data_dir.unwrap_or_else(|| cfg.server.data_dir.clone());
    let store = match actors::store::Store::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            fail(&format!("cannot reset the admin: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let now = actors::clock::Clock::now(&actors::clock::SystemClock);
    match actors::api::reset_admin_offline(&store, user, now) {
        Ok(password) => {
            say(&format!(
                "User {:?} is an enabled admin with password {password}  (shown once; it must be changed at the next login; every session of theirs ended)",
                actors::policy::normalise_username(user).unwrap_or_else(|_| user.to_owned())
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            fail(&format!("cannot reset {user:?}: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn simulate(config: PathBuf, faults: Vec<String>, control: Option<SocketAddr>, speed: Option<f64>) -> ExitCode {
    let cfg = match load_config(Some(&config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    log_warnings(&cfg);
    if let Some((listen, Err(e))) = control.map(|l| (l, sim::control::check_listen(l))) {
        fail(&format!("--control {listen}: {e}"));
        return ExitCode::from(2);
    }
    let settings = cfg.simulator.clone().unwrap_or(config::SimulatorSettings {
        speed: 1.0,
        seed: 1,
        valve_travel: std::time::Duration::from_secs(3),
        incidents: None,
        zone_leak: 0.0,
    });
    let mut spec =
        match waterworks::simulation::spec_from_config(&cfg, speed.unwrap_or(settings.speed), settings.seed, None) {
            Ok(s) => s,
            Err(e) => {
                fail(&e.to_string());
                return ExitCode::from(2);
            }
        };
    for flag in &faults {
        match sim::modbus::parse_fault_flag(flag) {
            Ok((id, fault)) => match spec.devices.iter_mut().find(|d| d.id == id) {
                Some(d) => d.fault = fault,
                None => {
                    fail(&format!("--fault {flag}: no device {id:?} in {}", config.display()));
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                fail(&format!("--fault {flag}: {e}"));
                return ExitCode::from(2);
            }
        }
    }
    let sim = match sim::modbus::ModbusSim::start(spec).await {
        Ok(s) => s,
        Err(e) => {
            fail(&format!("cannot start the simulator: {e}"));
            return ExitCode::FAILURE;
        }
    };
    for id in sim.device_ids() {
        if let Some(addr) = sim.addr(&id) {
            say(&format!("simulating {id} on {addr}"));
        }
    }
    let mut controlled = SimControl::default();
    controlled.add_modbus_tcp(&sim);
    // The other kinds of device, from the same configuration.
    let seed = settings.seed;
    let gateways = match waterworks::simulation::start_cjt188(&cfg, seed, None).await {
        Ok(g) => g,
        Err(e) => {
            fail(&format!("cannot simulate: {e}"));
            return ExitCode::FAILURE;
        }
    };
    controlled.add_cjt188(&gateways, |g| waterworks::simulation::cjt188_meters(&cfg, g));
    for (id, g) in &gateways {
        match (g.addr(), g.path()) {
            (Some(addr), _) => say(&format!("simulating CJ/T 188 gateway {id} on {addr}")),
            (None, Some(path)) => say(&format!(
                "simulating CJ/T 188 meters of {id} on the serial line {path} (point the server's [[line]] path at it)"
            )),
            (None, None) => {}
        }
    }
    let lines = match waterworks::simulation::start_rtu(&cfg, speed.unwrap_or(settings.speed), seed).await {
        Ok(l) => l,
        Err(e) => {
            fail(&format!("cannot simulate: {e}"));
            return ExitCode::FAILURE;
        }
    };
    controlled.add_rtu_lines(&lines, |id| waterworks::simulation::primary_line(&cfg, id));
    for (id, l) in &lines {
        say(&format!("simulating RS-485 line {id} on {} (point the server's [[line]] path at it)", l.path()));
    }
    let mut stations = Vec::new();
    if let Some(listen) = cfg.tree.hj212_listen {
        let server =
            if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen };
        for (id, spec) in waterworks::simulation::stations_from_config(&cfg, server, seed) {
            let mn = spec.mn.clone();
            match sim::hj212::Hj212Sim::start(spec).await {
                Ok(s) => {
                    say(&format!("simulating HJ 212 station {id} (MN {mn}), pushing to {server}"));
                    controlled.add_station(&id, &mn, server, &s);
                    stations.push(s);
                }
                Err(e) => {
                    fail(&format!("cannot simulate HJ 212 station {mn}: {e}"));
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let mut meters = Vec::new();
    if let Some(mqtt) = &cfg.tree.mqtt {
        for group in cfg.tree.regions.iter().flat_map(|r| r.mqtt.iter()) {
            let ids = group.meters.iter().map(|m| m.to_string()).collect();
            let layout = sim::mqtt::SimLayout::PerMeter { topic: "water/{meter}/reading".into() };
            let mut spec =
                sim::mqtt::MqttSimSpec::new(mqtt.host.clone(), mqtt.port, format!("sim-{}", group.id), ids, layout);
            spec.interval = group.interval / 2;
            // Reading times from now on, one interval apart, so they are plausible (issue 7 §4: readings dated
            // in the future or long ago are flagged and not shown).
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            spec.start_ts_ms = i64::try_from(now).unwrap_or(0);
            spec.step_ms = i64::try_from(spec.interval.as_millis()).unwrap_or(1).max(1);
            match sim::mqtt::MqttSim::start(spec) {
                Ok(m) => {
                    say(&format!(
                        "simulating MQTT meters of {} on water/{{meter}}/reading at {}:{}",
                        group.id, mqtt.host, mqtt.port
                    ));
                    controlled.add_mqtt(group.id.as_str(), format!("{}:{}", mqtt.host, mqtt.port), &m);
                    meters.push(m);
                }
                Err(e) => {
                    fail(&format!("cannot simulate MQTT meters: {e}"));
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let mut control_server = None;
    if let Some(listen) = control {
        match controlled.serve(listen).await {
            Ok(server) => {
                say(&format!("fault-injection API on http://{}/devices", server.addr));
                control_server = Some(server);
            }
            Err(e) => {
                fail(&format!("cannot serve the fault-injection API: {e}"));
                return ExitCode::FAILURE;
            }
        }
    }
    shutdown_signal().await;
    if let Some(server) = control_server {
        server.shutdown().await;
    }
    for m in meters {
        m.shutdown().await;
    }
    for s in stations {
        s.shutdown().await;
    }
    for (_, l) in lines {
        l.shutdown().await;
    }
    for (_, g) in gateways {
        g.shutdown().await;
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => "signal SIGINT",
        _ = term => "signal SIGTERM",
    }
}
