//! Simulated CJ/T 188 water meters with valves, with faults injected per meter at run time, reached either
//! through a transparent gateway (one TCP server passing frames to the meters and their replies back) or on a
//! serial line (a pty, every exchange paced to the line's baud rate): [`SimLink`].
//!
//! # Layout
//! - `meter`: the pure meter model (volume, valve, the answer to one request, the meter clock).
//! - `server`: the TCP listener and one task per connection, or the task on the pty, and the faults applied to
//!   each reply.
//! - here: the spec ([`Cjt188SimSpec`], [`SimMeterSpec`]), [`Cjt188Fault`], and the handle [`Cjt188Sim`].
//!
//! Time: volumes follow tokio's clock (elapsed time since start), so a test with a paused clock controls
//! them exactly; the meter clock in replies is the wall clock at start plus that elapsed time, in China
//! Standard Time.
//!
//! Like a bus, the gateway answers only requests addressed to one of its meters (or the wildcard, when it
//! has exactly one meter); anything else gets no reply at all. A byte stream that is not CJ/T 188 closes its
//! own connection and is counted ([`Cjt188Sim::malformed`]).
//!
//! **Invariant:** one meter's fault never affects another meter, and each connection has its own task.
//! Over TCP this module deliberately does not model bus contention: requests on two connections are answered
//! concurrently, where a real gateway would serialise them on its one bus. A serial line has one stream and
//! answers one request at a time.

mod meter;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use tokio_serial::{SerialPort, SerialStream};

use drivers::cjt188::frame::{Address, MeterType, MAX_PREAMBLE};
use drivers::cjt188::payload::{DiOrder, StBits, Volume, VolumeUnit};
use drivers::rtu::CharFormat;
use meter::MeterState;

/// Why the simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Cjt188SimError {
    #[error("invalid gateway spec: {0}")]
    InvalidSpec(String),
    #[error("simulated gateway cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create the simulated serial line: {0}")]
    Pty(String),
    #[error("no simulated meter {0}")]
    UnknownMeter(Address),
}

/// What a meter does wrong. `Cjt188Fault::default()` is a healthy meter.
///
/// When several are set they apply in this order: `disconnect`, `silent`, `delay_ms`, then the reply is
/// `garbage`, else an abnormal reply with `abnormal`, else the normal reply; then `bad_checksum` spoils the
/// reply's checksum, and `noise` and `foreign_frame` put junk bytes and another meter's frame before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cjt188Fault {
    /// Read requests, never answer (the connection stays open).
    pub silent: bool,
    /// Answer this many milliseconds late.
    pub delay_ms: u64,
    /// Answer with bytes that start like a frame but declare an impossible length.
    pub garbage: bool,
    /// Close the connection as soon as a request for this meter arrives.
    pub disconnect: bool,
    /// Send the reply with its checksum off by one.
    pub bad_checksum: bool,
    /// Answer every request with an abnormal reply (D6 set).
    pub abnormal: bool,
    /// Put line noise (bytes without 68) before the reply.
    pub noise: bool,
    /// Put a valid reply from another address before the reply, as a late answer on a shared bus would.
    pub foreign_frame: bool,
}

/// One simulated meter.
#[derive(Debug, Clone)]
pub struct SimMeterSpec {
    /// Must be BCD and unique on the gateway.
    pub address: Address,
    pub meter_type: MeterType,
    /// Reading at start; also reported as the settlement-day flow.
    pub initial: Volume,
    /// Flow while the valve is open, millilitres per second of tokio time.
    pub flow_ml_per_s: u64,
    /// The unit the meter reports in; it truncates to two decimals of it.
    pub unit: VolumeUnit,
    pub valve_open: bool,
    /// A valve that never moves: valve commands are acknowledged with the unchanged state.
    pub stuck: bool,
    pub battery_low: bool,
    pub magnetic_tamper: bool,
    /// DI byte order in replies; `None` echoes the request's bytes.
    pub reply_di_order: Option<DiOrder>,
    pub fault: Cjt188Fault,
}

impl SimMeterSpec {
    /// A healthy cold-water meter at `address`: 123.456 m³ at start, 0.1 l/s, reporting in litres
    /// (10 ml resolution), valve open.
    pub fn new(address: Address) -> Self {
        SimMeterSpec {
            address,
            meter_type: MeterType::COLD_WATER,
            initial: Volume::from_millilitres(123_456_000),
            flow_ml_per_s: 100,
            unit: VolumeUnit::Litre,
            valve_open: true,
            stuck: false,
            battery_low: false,
            magnetic_tamper: false,
            reply_di_order: None,
            fault: Cjt188Fault::default(),
        }
    }
}

/// How the simulated meters are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimLink {
    /// A transparent gateway listening here; port 0 picks a free port, see [`Cjt188Sim::addr`].
    Tcp(SocketAddr),
    /// A serial line on a new pty (see [`Cjt188Sim::path`]), every exchange paced to `baud` and `format`.
    Serial { baud: u32, format: CharFormat },
}

/// A transparent gateway or a serial line, and the meters on its bus.
#[derive(Debug, Clone)]
pub struct Cjt188SimSpec {
    pub link: SimLink,
    /// FE bytes the meters send before every reply.
    pub preamble: usize,
    /// The status table every meter on this gateway uses.
    pub st_bits: StBits,
    pub meters: Vec<SimMeterSpec>,
}

/// One meter's state, shared by the connections and the handle.
#[derive(Debug)]
pub(crate) struct Meter {
    address: Address,
    fault: Mutex<Cjt188Fault>,
    /// Well-framed requests addressed to this meter, whatever its fault did with them.
    requests: AtomicU64,
    state: Mutex<MeterState>,
}

/// What the tasks and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    preamble: usize,
    st_bits: StBits,
    meters: Vec<Meter>,
    /// Tokio time at start: volumes follow elapsed tokio time.
    origin: Instant,
    /// Wall-clock Unix seconds at start, for the meter clock.
    origin_unix: i64,
    /// Connections closed because the peer sent bytes that are not CJ/T 188 frames.
    malformed: AtomicU64,
}

/// Locks `mutex` even if a task panicked while holding it: every update here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn meter(&self, address: &Address) -> Result<&Meter, Cjt188SimError> {
        self.meters.iter().find(|m| m.address == *address).ok_or(Cjt188SimError::UnknownMeter(*address))
    }

    fn set_fault(&self, address: &Address, fault: Cjt188Fault) -> Result<(), Cjt188SimError> {
        *lock(&self.meter(address)?.fault) = fault.clone();
        tracing::info!(message = "fault set", meter = %address, fault = ?fault);
        Ok(())
    }

    fn fault(&self, address: &Address) -> Option<Cjt188Fault> {
        self.meter(address).ok().map(|m| lock(&m.fault).clone())
    }

    fn requests(&self, address: &Address) -> Option<u64> {
        self.meter(address).ok().map(|m| m.requests.load(Ordering::Relaxed))
    }

    /// The meter clock now, as BCD bytes.
    fn clock(&self) -> [u8; 7] {
        let elapsed = i64::try_from(self.origin.elapsed().as_secs()).unwrap_or(i64::MAX);
        meter::clock_bytes(self.origin_unix.saturating_add(elapsed))
    }
}

/// Where a running simulator is reached.
#[derive(Debug)]
enum Endpoint {
    Tcp(SocketAddr),
    Serial {
        path: String,
        /// The pty's slave side, held open so that a client closing its end never hangs the pty up.
        _keep_open: SerialStream,
    },
}

/// A running simulated gateway or line. Dropping it stops it too; [`Cjt188Sim::shutdown`] also waits.
#[derive(Debug)]
pub struct Cjt188Sim {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    task: Option<JoinHandle<()>>,
}

impl Cjt188Sim {
    /// Checks the spec, binds the listener or creates the pty, then serves. Nothing is opened if the spec is
    /// invalid. Must be called inside a tokio runtime.
    pub async fn start(spec: Cjt188SimSpec) -> Result<Cjt188Sim, Cjt188SimError> {
        check_spec(&spec).map_err(Cjt188SimError::InvalidSpec)?;
        let origin_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let meters = spec
            .meters
            .into_iter()
            .map(|m| Meter {
                address: m.address,
                fault: Mutex::new(m.fault),
                requests: AtomicU64::new(0),
                state: Mutex::new(MeterState::new(
                    m.address,
                    m.meter_type,
                    m.initial,
                    m.flow_ml_per_s,
                    m.unit,
                    m.valve_open,
                    m.stuck,
                    m.battery_low,
                    m.magnetic_tamper,
                    m.reply_di_order,
                )),
            })
            .collect();
        let shared = Arc::new(Shared {
            preamble: spec.preamble,
            st_bits: spec.st_bits,
            meters,
            origin: Instant::now(),
            origin_unix: i64::try_from(origin_unix).unwrap_or(0),
            malformed: AtomicU64::new(0),
        });
        let (endpoint, task) = match spec.link {
            SimLink::Tcp(listen) => {
                let bind_error = |source| Cjt188SimError::Bind { addr: listen, source };
                let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
                let addr = listener.local_addr().map_err(bind_error)?;
                tracing::info!(message = "simulated cj/t 188 gateway listening", addr = %addr, meters = shared.meters.len());
                (Endpoint::Tcp(addr), tokio::spawn(server::run_listener(listener, Arc::clone(&shared))))
            }
            SimLink::Serial { baud, format } => {
                let (master, keep_open) = SerialStream::pair().map_err(|e| Cjt188SimError::Pty(e.to_string()))?;
                let path = keep_open.name().ok_or_else(|| Cjt188SimError::Pty("the pty has no path".to_owned()))?;
                tracing::info!(message = "simulated cj/t 188 serial line started", path = %path, baud, format = %format, meters = shared.meters.len());
                let wire = server::Wire { baud, format };
                let task = tokio::spawn(server::run_serial(master, Arc::clone(&shared), wire));
                (Endpoint::Serial { path, _keep_open: keep_open }, task)
            }
        };
        Ok(Cjt188Sim { shared, endpoint, task: Some(task) })
    }

    /// The address the gateway listens on (the real port when the spec said port 0); `None` on a serial line.
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.endpoint {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Serial { .. } => None,
        }
    }

    /// The serial device a master opens; `None` for a TCP gateway.
    pub fn path(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Tcp(_) => None,
            Endpoint::Serial { path, .. } => Some(path),
        }
    }

    /// Meter addresses in spec order.
    pub fn addresses(&self) -> Vec<Address> {
        self.shared.meters.iter().map(|m| m.address).collect()
    }

    /// Replaces a meter's fault; it applies from the next request, also on open connections.
    pub fn set_fault(&self, address: &Address, fault: Cjt188Fault) -> Result<(), Cjt188SimError> {
        self.shared.set_fault(address, fault)
    }

    pub fn fault(&self, address: &Address) -> Option<Cjt188Fault> {
        self.shared.fault(address)
    }

    /// A handle for the fault-injection API (see [`Cjt188SimHandle`]).
    pub fn handle(&self) -> Cjt188SimHandle {
        Cjt188SimHandle { shared: Arc::clone(&self.shared) }
    }

    /// Makes a meter's valve stuck (it never moves) or free again.
    pub fn set_stuck(&self, address: &Address, stuck: bool) -> Result<(), Cjt188SimError> {
        lock(&self.shared.meter(address)?.state).stuck = stuck;
        Ok(())
    }

    /// Well-framed requests a meter has received so far, whatever its fault did with them.
    pub fn requests(&self, address: &Address) -> Option<u64> {
        self.shared.requests(address)
    }

    /// Connections closed because the peer sent bytes that are not CJ/T 188 frames.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }

    /// The simulator's truth: a meter's volume now (before the unit's truncation).
    pub fn volume(&self, address: &Address) -> Option<Volume> {
        let meter = self.shared.meter(address).ok()?;
        let elapsed = self.shared.origin.elapsed();
        let volume = lock(&meter.state).volume(elapsed);
        Some(volume)
    }

    /// The simulator's truth: whether a meter's valve is open.
    pub fn valve_open(&self, address: &Address) -> Option<bool> {
        self.shared.meter(address).ok().map(|m| lock(&m.state).valve_open)
    }

    /// Stops the listener and every connection (or the line), and waits until they are gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Cjt188Sim {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A cloneable handle on a running gateway's meters, for the fault-injection API ([`crate::control`]). It
/// does not keep the gateway running: once the [`Cjt188Sim`] is shut down, faults set here change nothing.
#[derive(Debug, Clone)]
pub struct Cjt188SimHandle {
    shared: Arc<Shared>,
}

impl Cjt188SimHandle {
    /// As [`Cjt188Sim::set_fault`].
    pub fn set_fault(&self, address: &Address, fault: Cjt188Fault) -> Result<(), Cjt188SimError> {
        self.shared.set_fault(address, fault)
    }

    pub fn fault(&self, address: &Address) -> Option<Cjt188Fault> {
        self.shared.fault(address)
    }

    /// As [`Cjt188Sim::requests`].
    pub fn requests(&self, address: &Address) -> Option<u64> {
        self.shared.requests(address)
    }

    /// As [`Cjt188Sim::malformed`]: for the whole gateway, not per meter.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }
}

/// The checks run before anything is bound.
fn check_spec(spec: &Cjt188SimSpec) -> Result<(), String> {
    if let SimLink::Serial { baud: 0, .. } = spec.link {
        return Err("baud rate must be above 0".to_owned());
    }
    if spec.preamble > MAX_PREAMBLE {
        return Err(format!("preamble of {} bytes is longer than {MAX_PREAMBLE}", spec.preamble));
    }
    spec.st_bits.check().map_err(|e| e.to_string())?;
    if spec.meters.is_empty() {
        return Err("a gateway needs at least one meter".to_owned());
    }
    for (i, m) in spec.meters.iter().enumerate() {
        if !m.address.is_bcd() {
            return Err(format!("meter address {} is not BCD", m.address));
        }
        if spec.meters[..i].iter().any(|other| other.address == m.address) {
            return Err(format!("meter address {} is used twice", m.address));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(meters: Vec<SimMeterSpec>) -> Cjt188SimSpec {
        Cjt188SimSpec {
            link: SimLink::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            preamble: 2,
            st_bits: StBits::STANDARD,
            meters,
        }
    }

    fn address(s: &str) -> Address {
        s.parse().unwrap_or(Address::WILDCARD)
    }

    #[test]
    fn spec_checks() {
        let a = SimMeterSpec::new(address("00000000000001"));
        assert_eq!(check_spec(&spec(vec![a.clone()])), Ok(()));
        assert!(check_spec(&spec(vec![])).is_err_and(|e| e.contains("at least one meter")));
        assert!(check_spec(&spec(vec![a.clone(), a.clone()])).is_err_and(|e| e.contains("used twice")));
        let wildcard = SimMeterSpec::new(Address::WILDCARD);
        assert!(check_spec(&spec(vec![wildcard])).is_err_and(|e| e.contains("not BCD")));
        let mut long = spec(vec![a.clone()]);
        long.preamble = 17;
        assert!(check_spec(&long).is_err());
        let mut bad_bits = spec(vec![a]);
        bad_bits.st_bits.meter_fault = Some(40);
        assert!(check_spec(&bad_bits).is_err());
    }

    #[test]
    fn fault_json_rejects_unknown_keys_and_fills_defaults() {
        let fault: Cjt188Fault = serde_json::from_str(r#"{"bad_checksum": true}"#).expect("valid fault json");
        assert_eq!(fault, Cjt188Fault { bad_checksum: true, ..Cjt188Fault::default() });
        assert!(serde_json::from_str::<Cjt188Fault>(r#"{"checksum": true}"#).is_err());
    }
}
