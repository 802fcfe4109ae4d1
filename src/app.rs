//! Start-up and shutdown of a running server, in an order that fails early and clearly (R-A5):
//! validated config → store opened and checked → HTTP port bound → simulator (demo) → supervision tree →
//! first admin → serve. Each failure is one paragraph naming the file, key or path and the reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use actors::api::Handle;
use actors::clock::{SharedClock, SystemClock};
use actors::metrics::Metrics;
use actors::store::Store;
use sim::modbus::ModbusSim;

use crate::config::Config;
use sim::control::{ControlServer, SimControl};

/// Overrides from the command line.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// The first admin's password (from `WATERWORKS_ADMIN_PASSWORD`); generated when absent.
    pub admin_password: Option<String>,
    pub clock: Option<SharedClock>,
    /// Serve the fault-injection API over the in-process simulators here (loopback only); needs the simulator.
    pub sim_control: Option<SocketAddr>,
}

/// A running server.
pub struct App {
    pub addr: SocketAddr,
    /// The HTTP port speaks TLS (`server.tls_cert`; issue 8 §5).
    pub tls: bool,
    pub handle: Handle,
    /// The in-process simulator, when the configuration enables it (the demo, tests).
    pub sim: Option<ModbusSim>,
    /// Set when no account existed and a password was generated for `admin`: show it once.
    pub generated_admin_password: Option<String>,
    pub data_dir: PathBuf,
    /// Where HJ 212 stations connect, when stations are configured.
    pub hj212_addr: Option<SocketAddr>,
    /// Simulated HJ 212 stations pushing to this server (the demo).
    pub stations: Vec<sim::hj212::Hj212Sim>,
    /// The demo's own MQTT broker process (killed on drop) and its simulated MQTT meters.
    pub demo_broker: Option<tokio::process::Child>,
    pub mqtt_sims: Vec<sim::mqtt::MqttSim>,
    /// Simulated RS-485 lines, by line id (the demo).
    pub rtu_sims: Vec<(String, sim::rtu::RtuSim)>,
    /// Simulated CJ/T 188 gateways, by device id (the demo).
    pub cjt188_sims: Vec<(String, sim::cjt188::Cjt188Sim)>,
    /// Where the fault-injection API listens, when asked for (`RunOptions::sim_control`).
    pub sim_control_addr: Option<SocketAddr>,
    sim_control: Option<ControlServer>,
    /// The demo's incidents (`[simulator] incidents`), aborted at shutdown.
    incidents: Option<JoinHandle<()>>,
    root: ractor::ActorRef<actors::supervisor::SupervisorMsg>,
    root_join: JoinHandle<()>,
    server: JoinHandle<()>,
    stop_server: oneshot::Sender<()>,
}

/// Why the run options do not fit the configuration.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// `--sim-control` with a configuration that simulates nothing; names the configuration.
    #[error(
        "{0} does not enable the simulator ([simulator] enabled = true), so there is no simulated device to \
         break; use `waterworks simulate --control` beside this server instead"
    )]
    NoSimulator(String),
    /// `--sim-control` on an address the fault-injection API may not listen on.
    #[error("{0}")]
    SimControl(sim::control::ServeError),
}

/// Checks the options against the configuration before anything starts.
pub fn check_options(config: &Config, opts: &RunOptions) -> Result<(), OptionsError> {
    if let Some(listen) = opts.sim_control {
        if config.simulator.is_none() {
            return Err(OptionsError::NoSimulator(config.source.clone()));
        }
        sim::control::check_listen(listen).map_err(OptionsError::SimControl)?;
    }
    Ok(())
}

/// Starts everything. The config must already be validated.
pub async fn start(mut config: Config, opts: RunOptions) -> anyhow::Result<App> {
    check_options(&config, &opts).map_err(|e| anyhow!("{e}"))?;
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| config.server.data_dir.clone());
    let store = Store::open(&data_dir).map_err(|e| anyhow!("cannot start: {e}"))?;
    let tls = match &config.server.tls {
        Some(files) => Some(files.load().map_err(|e| anyhow!("cannot start: {}: {e}", e.key()))?),
        None => None,
    };
    let listen = opts.listen.unwrap_or(config.server.listen);
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program, or another waterworks, is using it; choose another with --listen or server.listen)"
        } else {
            ""
        };
        anyhow!("cannot listen on {listen}: {e}{hint}")
    })?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let mut cjt188_sims = Vec::new();
    let mut rtu_sims = Vec::new();
    let mut control = SimControl::default();
    let sim = match config.simulator.clone() {
        Some(settings) => {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let spec = crate::simulation::spec_from_config(&config, settings.speed, settings.seed, Some(loopback))
                .map_err(|e| anyhow!("cannot simulate: {e}"))?;
            let sim = ModbusSim::start(spec).await.map_err(|e| anyhow!("cannot start the simulator: {e}"))?;
            crate::simulation::point_at(&mut config, &sim);
            control.add_modbus_tcp(&sim);
            let gateways = crate::simulation::start_cjt188(&config, settings.seed, Some(loopback))
                .await
                .map_err(|e| anyhow!("cannot simulate: {e}"))?;
            crate::simulation::point_cjt188_at(&mut config, &gateways);
            control.add_cjt188(&gateways, |g| crate::simulation::cjt188_meters(&config, g));
            cjt188_sims = gateways;
            let lines = crate::simulation::start_rtu(&config, settings.speed, settings.seed)
                .await
                .map_err(|e| anyhow!("cannot simulate: {e}"))?;
            crate::simulation::point_lines_at(&mut config, &lines);
            control.add_rtu_lines(&lines, |id| crate::simulation::primary_line(&config, id));
            rtu_sims = lines;
            Some(sim)
        }
        None => None,
    };

    // The demo breaks something now and then, when configured (issue 9).
    let incidents = match (&sim, config.simulator.as_ref().and_then(|s| s.incidents)) {
        (Some(sim), Some(settings)) => {
            let plan = crate::incidents::plan(&config);
            Some(tokio::spawn(crate::incidents::run(plan, settings, sim.handle())))
        }
        _ => None,
    };

    // The demo's MQTT meters need a broker: with [mqtt] port = 0, start Mosquitto if it is installed.
    let mut demo_broker = None;
    if let (Some(_), Some(mqtt)) = (&config.simulator, config.tree.mqtt.as_mut()) {
        if mqtt.port == 0 {
            match crate::simulation::start_broker(&data_dir).await {
                Ok((child, port)) => {
                    mqtt.port = port;
                    demo_broker = Some(child);
                }
                Err(e) => {
                    tracing::warn!(message = "No MQTT broker for the demo's MQTT meters; they will show comm-lost.", error = %e)
                }
            }
        }
    }

    let clock: SharedClock = opts.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let metrics = Arc::new(Metrics::default());
    let tree = actors::tree::start(config.tree.clone(), store.clone().into(), clock, metrics)
        .await
        .map_err(|e| anyhow!("cannot start the supervision tree: {e}"))?;
    let hj212_addr = tree.hj212_addr;
    let mut stations = Vec::new();
    if let (Some(settings), Some(addr)) = (&config.simulator, hj212_addr) {
        let server = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
        for (id, spec) in crate::simulation::stations_from_config(&config, server, settings.seed) {
            let mn = spec.mn.clone();
            let station = sim::hj212::Hj212Sim::start(spec)
                .await
                .map_err(|e| anyhow!("cannot simulate HJ 212 station {mn}: {e}"))?;
            control.add_station(&id, &mn, server, &station);
            stations.push(station);
        }
    }
    let mut mqtt_sims = Vec::new();
    if let (Some(settings), Some(mqtt), Some(_)) = (&config.simulator, &config.tree.mqtt, &demo_broker) {
        for group in config.tree.regions.iter().flat_map(|r| r.mqtt.iter()) {
            let meters = group.meters.iter().map(|m| m.to_string()).collect();
            let layout = sim::mqtt::SimLayout::PerMeter { topic: "water/{meter}/reading".into() };
            let mut spec =
                sim::mqtt::MqttSimSpec::new(mqtt.host.clone(), mqtt.port, format!("demo-{}", group.id), meters, layout);
            spec.interval = group.interval / 2;
            // Reading times from now on, one interval apart, so they are plausible (issue 7 §4: readings dated
            // in the future or long ago are flagged and not shown).
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            spec.start_ts_ms = i64::try_from(now).unwrap_or(0);
            spec.step_ms = i64::try_from(spec.interval.as_millis()).unwrap_or(1).max(1);
            spec.seed = settings.seed;
            let meters = sim::mqtt::MqttSim::start(spec).map_err(|e| anyhow!("cannot simulate MQTT meters: {e}"))?;
            control.add_mqtt(group.id.as_str(), format!("{}:{}", mqtt.host, mqtt.port), &meters);
            mqtt_sims.push(meters);
        }
    }
    // Audited before anyone can log in: what this start found (a crash of the previous run, a changed
    // configuration) and the start itself; this run is marked as running until a clean stop (issue 8 §4).
    let start_info = actors::api::StartInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: config.source.clone(),
        config_hash: config.text_hash.clone(),
    };
    let findings =
        tree.handle.audit().server_started(&start_info).await.map_err(|e| anyhow!("cannot audit the start: {e}"))?;
    if findings.crashed.is_some() {
        tracing::warn!(
            message = "Started after a crash: the previous run recorded no clean stop; see the audit journal."
        );
    }
    let generated_admin_password = tree
        .handle
        .users()
        .ensure_first_admin(opts.admin_password.clone())
        .await
        .map_err(|e| anyhow!("cannot create the first admin: {e}"))?;

    let sim_control = match opts.sim_control {
        Some(listen) => Some(control.serve(listen).await.map_err(|e| anyhow!("cannot serve: {e}"))?),
        None => None,
    };

    let hmi_config = hmi::HmiConfig {
        secure_cookies: config.server.secure_cookies,
        tls: tls.is_some(),
        public_origin: config.server.public_origin.clone(),
        session_idle: config.server.session_idle,
        live: config.server.live,
        max_concurrent_logins: config.server.max_concurrent_logins,
        trusted_proxies: config.server.trusted_proxies.clone(),
    };
    let router = hmi::router(tree.handle.clone(), hmi_config);
    let tls_on = tls.is_some();
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server =
        tokio::spawn(hmi::serve_with(listener, router, tree.handle.clone(), config.server.limits, tls, async move {
            let _ = stopped.await;
        }));
    tracing::info!(message = "Waterworks running.", %addr, config = %config.source, data_dir = %data_dir.display(), simulated = sim.is_some());
    Ok(App {
        addr,
        tls: tls_on,
        handle: tree.handle,
        sim,
        generated_admin_password,
        data_dir,
        hj212_addr,
        stations,
        cjt188_sims,
        rtu_sims,
        sim_control_addr: sim_control.as_ref().map(|c| c.addr),
        sim_control,
        demo_broker,
        mqtt_sims,
        incidents,
        root: tree.root,
        root_join: tree.join,
        server,
        stop_server,
    })
}

impl App {
    /// Waits until the supervision tree dies (escalation past the root) or the HTTP server fails.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = &mut self.root_join => Err(anyhow!("the supervision tree stopped: restart intensity exceeded at the root; see the log above")),
            r = &mut self.server => match r {
                Ok(()) => Ok(()),
                Err(e) => Err(anyhow!("the HTTP server task ended: {e}")),
            },
        }
    }

    /// Stops serving, stops the tree (the store writer finishes its batch), stops the simulator; audited as a
    /// clean stop asked for by the caller.
    pub async fn shutdown(self) {
        self.shutdown_because("requested by the process", true).await
    }

    /// An orderly stop: audited with `how` (the signal, or the failure when `ok` is false) before anything
    /// stops, with the run marker cleared in the same submission, so the next start does not report a crash.
    pub async fn shutdown_because(self, how: &str, ok: bool) {
        if let Err(e) = self.handle.audit().server_stopping(how, ok).await {
            tracing::error!(message = "The clean stop could not be audited; the next start will report a crash.", error = %e);
        }
        if let Some(task) = self.incidents {
            task.abort();
        }
        if let Some(control) = self.sim_control {
            control.shutdown().await;
        }
        let _ = self.stop_server.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.server).await;
        self.root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.root_join).await;
        for station in self.stations {
            station.shutdown().await;
        }
        for sim in self.mqtt_sims {
            sim.shutdown().await;
        }
        if let Some(mut broker) = self.demo_broker {
            let _ = broker.kill().await;
            let _ = std::fs::remove_file(crate::simulation::broker_pid_file(&self.data_dir));
        }
        for (_, line) in self.rtu_sims {
            line.shutdown().await;
        }
        for (_, gateway) in self.cjt188_sims {
            gateway.shutdown().await;
        }
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}
