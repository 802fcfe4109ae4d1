//! Simulated Modbus devices: our own Modbus TCP servers that play meter concentrators, water-quality loggers
//! and register valves, with faults injected on demand ([`ModbusSim`]); the register models are shared with
//! the simulated RS-485 line ([`crate::rtu`]). Faults are set through [`ModbusSimHandle`], which the one
//! fault-injection HTTP API ([`crate::control`]) holds.
//!
//! # Layout
//! - `spec`: what to simulate ([`ModbusSimSpec`], [`SimDeviceSpec`], layouts) and the checks run before any bind.
//! - `fault`: [`ModbusFault`] and the `--fault` flag syntax ([`parse_fault_flag`]).
//! - `meters`, `logger`: the pure models (volumes from a seeded daily profile; quality values with drift).
//! - `device`: one device's shared state and the answer to a request PDU; `exception`: the exception codes.
//! - `mbap`, `server`: hand-written Modbus TCP framing, and the listener and connection tasks applying faults.
//!
//! Time: simulated time is the wall time at [`ModbusSim::start`] plus the elapsed time × [`ModbusSimSpec::speed`];
//! the daily profile uses China Standard Time (UTC+8).
//!
//! **Invariant:** one device's fault never affects another device: each device has its own listener task
//! and each connection its own task. A malformed request closes only its own connection.
//!
//! This module deliberately does not read configuration files, does not speak HTTP, and is not meant to face a
//! network.

pub(crate) mod device;
pub(crate) mod exception;
mod fault;
mod logger;
mod mbap;
mod meters;
mod server;
mod spec;
mod valve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use fault::{parse_fault_flag, ModbusFault};
pub use spec::{
    ConcentratorLayout, DistrictMeter, FieldSpec, ModbusSimSpec, SimDeviceSpec, SimKind, SimParameter, ValveLayout,
};

use crate::rng::{fnv1a, hash2};
use device::{Device, Model};
use logger::Logger;
use meters::Concentrator;

/// Why the simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ModbusSimError {
    #[error("invalid simulator spec: {0}")]
    InvalidSpec(String),
    #[error("invalid simulated device {device}: {reason}")]
    InvalidDevice { device: String, reason: String },
    #[error("simulated device {device} cannot listen on {addr}: {source}")]
    Bind { device: String, addr: SocketAddr, source: std::io::Error },
    #[error("no simulated device {0:?}")]
    UnknownDevice(String),
    #[error("invalid fault for device {device}: {reason}")]
    InvalidFault { device: String, reason: String },
    #[error("bad fault flag {flag:?}: {reason}")]
    FaultFlag { flag: String, reason: String },
}

/// Simulated time: the wall clock at start, then elapsed monotonic time × speed. Copy, so every task has one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SimClock {
    /// Unix seconds at start.
    origin_unix: f64,
    origin: tokio::time::Instant,
    speed: f64,
}

impl SimClock {
    pub(crate) fn start(speed: f64) -> Self {
        // A wall clock before 1970 is a broken host; simulated time then starts at the epoch.
        let origin_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        SimClock { origin_unix, origin: tokio::time::Instant::now(), speed }
    }

    /// Simulated Unix seconds now.
    pub(crate) fn now(&self) -> f64 {
        self.origin_unix + self.origin.elapsed().as_secs_f64() * self.speed
    }
}

/// Checks a device's layout, and that `fault` fits it (forced values must name its logger parameters).
pub(crate) fn check_device(kind: &SimKind, fault: &ModbusFault) -> Result<(), String> {
    spec::check_kind(kind)?;
    let parameters: Vec<&str> = match kind {
        SimKind::Logger(parameters) => parameters.iter().map(|p| p.name.as_str()).collect(),
        SimKind::Concentrator(_) | SimKind::Valve(_) => Vec::new(),
    };
    let meters = match kind {
        SimKind::Concentrator(layout) => layout.meters,
        SimKind::Logger(_) | SimKind::Valve(_) => 0,
    };
    fault.check_for(&parameters, meters)
}

/// The register model of a device `id` of `kind`, seeded from the simulation seed and the id, so the same seed
/// gives the same meters whatever the transport (Modbus TCP here, RTU in [`crate::rtu`]).
pub(crate) fn new_model(kind: SimKind, seed: u64, id: &str, clock: &SimClock) -> Model {
    let seed = hash2(seed, fnv1a(id.as_bytes()));
    match kind {
        SimKind::Concentrator(layout) => Model::Concentrator(Concentrator::new(layout, seed, clock.now())),
        SimKind::Logger(parameters) => Model::Logger(Logger::new(parameters, seed)),
        SimKind::Valve(layout) => Model::Valve(valve::Valve::new(layout)),
    }
}

/// What the tasks and the control API share.
#[derive(Debug)]
pub(crate) struct Shared {
    clock: SimClock,
    /// In spec order.
    devices: Vec<Arc<Device>>,
}

impl Shared {
    fn device(&self, id: &str) -> Option<&Arc<Device>> {
        self.devices.iter().find(|d| d.id == id)
    }

    fn status(&self, id: &str) -> Option<DeviceStatus> {
        self.device(id).map(|d| DeviceStatus {
            id: d.id.clone(),
            addr: d.addr,
            kind: d.kind,
            unit_id: d.unit_id,
            fault: d.fault(),
            requests: d.requests(),
            malformed: d.malformed(),
        })
    }

    fn set_fault(&self, id: &str, fault: ModbusFault) -> Result<(), ModbusSimError> {
        let device = self.device(id).ok_or_else(|| ModbusSimError::UnknownDevice(id.to_owned()))?;
        device
            .set_fault(fault.clone())
            .map_err(|reason| ModbusSimError::InvalidFault { device: id.to_owned(), reason })?;
        tracing::info!(message = "fault set", device = %id, fault = ?fault);
        Ok(())
    }
}

/// One simulated device as a control API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStatus {
    pub id: String,
    pub addr: SocketAddr,
    /// `concentrator`, `logger` or `valve`.
    pub kind: &'static str,
    pub unit_id: u8,
    pub fault: ModbusFault,
    /// Well-framed requests received, whatever the fault did with them.
    pub requests: u64,
    /// Connections closed because the peer sent something that was not a Modbus TCP request.
    pub malformed: u64,
}

/// A cloneable handle on a running simulator's devices, for the fault-injection API ([`crate::control`]).
/// It does not keep the devices running: once the [`ModbusSim`] is shut down, faults set here change nothing.
#[derive(Debug, Clone)]
pub struct ModbusSimHandle {
    shared: Arc<Shared>,
}

impl ModbusSimHandle {
    /// Every device, in spec order.
    pub fn statuses(&self) -> Vec<DeviceStatus> {
        self.shared.devices.iter().filter_map(|d| self.shared.status(&d.id)).collect()
    }

    pub fn status(&self, id: &str) -> Option<DeviceStatus> {
        self.shared.status(id)
    }

    /// As [`ModbusSim::set_fault`].
    pub fn set_fault(&self, id: &str, fault: ModbusFault) -> Result<(), ModbusSimError> {
        self.shared.set_fault(id, fault)
    }

    /// As [`ModbusSim::set_meter_flag`].
    pub fn set_meter_flag(&self, id: &str, slot: u16, name: &str, on: bool) -> bool {
        self.shared.device(id).is_some_and(|d| d.set_meter_flag(slot, name, on))
    }
}

/// A running set of simulated devices. Dropping it stops them too; [`ModbusSim::shutdown`] also waits.
#[derive(Debug)]
pub struct ModbusSim {
    shared: Arc<Shared>,
    /// One task per device; each owns its connections.
    listeners: Vec<JoinHandle<()>>,
}

impl ModbusSim {
    /// Checks the spec, binds every device's listener, then starts serving. Nothing is bound if the spec is
    /// invalid, and a bind failure (naming the device and address) releases the listeners already bound.
    pub async fn start(spec: ModbusSimSpec) -> Result<ModbusSim, ModbusSimError> {
        spec::check_spec(&spec).map_err(ModbusSimError::InvalidSpec)?;
        for device in &spec.devices {
            let invalid = |reason: String| ModbusSimError::InvalidDevice { device: device.id.clone(), reason };
            check_device(&device.kind, &device.fault).map_err(invalid)?;
        }
        let mut listeners = Vec::with_capacity(spec.devices.len());
        for device in &spec.devices {
            let bind_error = |source| ModbusSimError::Bind { device: device.id.clone(), addr: device.listen, source };
            let listener = TcpListener::bind(device.listen).await.map_err(bind_error)?;
            let addr = listener.local_addr().map_err(bind_error)?;
            listeners.push((listener, addr));
        }

        let clock = SimClock::start(spec.speed);
        let mut devices = Vec::with_capacity(spec.devices.len());
        for (device, (_, addr)) in spec.devices.into_iter().zip(&listeners) {
            let model = new_model(device.kind, spec.seed, &device.id, &clock);
            // The fault was checked against this device's parameters above.
            devices.push(Arc::new(Device::new(device.id, *addr, device.unit_id, model, device.fault)));
        }

        let shared = Arc::new(Shared { clock, devices });
        let listeners = listeners
            .into_iter()
            .zip(&shared.devices)
            .map(|((listener, addr), device)| {
                tracing::info!(
                    message = "simulated device listening",
                    device = %device.id,
                    addr = %addr,
                    kind = device.kind
                );
                tokio::spawn(server::run_listener(listener, Arc::clone(device), clock))
            })
            .collect();
        Ok(ModbusSim { shared, listeners })
    }

    /// A handle for the fault-injection API (see [`ModbusSimHandle`]).
    pub fn handle(&self) -> ModbusSimHandle {
        ModbusSimHandle { shared: Arc::clone(&self.shared) }
    }

    /// The address a device actually listens on (the real port when the spec said port 0).
    pub fn addr(&self, id: &str) -> Option<SocketAddr> {
        self.shared.device(id).map(|d| d.addr)
    }

    /// Device ids in spec order.
    pub fn device_ids(&self) -> Vec<String> {
        self.shared.devices.iter().map(|d| d.id.clone()).collect()
    }

    /// Replaces a device's fault; it applies from the next request, also on open connections.
    pub fn set_fault(&self, id: &str, fault: ModbusFault) -> Result<(), ModbusSimError> {
        self.shared.set_fault(id, fault)
    }

    pub fn fault(&self, id: &str) -> Option<ModbusFault> {
        self.shared.device(id).map(|d| d.fault())
    }

    /// Well-framed requests a device has received so far, whatever its fault did with them.
    pub fn requests(&self, id: &str) -> Option<u64> {
        self.shared.device(id).map(|d| d.requests())
    }

    /// Connections a device closed because the peer sent something that was not a Modbus TCP request.
    pub fn malformed(&self, id: &str) -> Option<u64> {
        self.shared.device(id).map(|d| d.malformed())
    }

    /// The simulator's current truth for a concentrator's meter, m³; `None` for an unknown device or slot,
    /// or a device that is not a concentrator.
    pub fn meter_volume(&self, id: &str, slot: u16) -> Option<f64> {
        self.shared.device(id)?.meter_volume(slot, self.shared.clock.now())
    }

    /// A simulated valve's position now: `Some(true)` open, `Some(false)` closed, `None` while moving (or
    /// not a valve).
    pub fn valve_open(&self, id: &str) -> Option<bool> {
        let t = self.shared.clock.now();
        self.shared.device(id).and_then(|d| d.valve_open(t))
    }

    /// Sets or clears the status bit `name` (e.g. `magnetic_tamper`) of the meter in `slot` of a simulated
    /// concentrator, from its next read on; false for an unknown device, slot or bit.
    pub fn set_meter_flag(&self, id: &str, slot: u16, name: &str, on: bool) -> bool {
        self.shared.device(id).is_some_and(|d| d.set_meter_flag(slot, name, on))
    }

    /// Turns a simulated valve to open or closed at once, without a command (as by hand on site); false
    /// for an unknown device or one that is not a valve.
    pub fn turn_valve_by_hand(&self, id: &str, open: bool) -> bool {
        self.shared.device(id).is_some_and(|d| d.turn_valve_by_hand(open))
    }

    /// Commands a simulated valve has accepted.
    pub fn valve_commands(&self, id: &str) -> Option<u64> {
        self.shared.device(id).and_then(|d| d.valve_commands())
    }

    /// The value a logger last served for a parameter, as the client decodes it; `None` for an unknown device
    /// or parameter, or before the parameter was first read.
    pub fn parameter_value(&self, id: &str, name: &str) -> Option<f64> {
        self.shared.device(id)?.parameter_value(name)
    }

    /// Stops every listener and connection, and waits until they are gone.
    pub async fn shutdown(mut self) {
        for task in std::mem::take(&mut self.listeners) {
            // A listener never ends by itself; aborting it drops its connections with it.
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ModbusSim {
    fn drop(&mut self) {
        for task in &self.listeners {
            task.abort();
        }
    }
}
