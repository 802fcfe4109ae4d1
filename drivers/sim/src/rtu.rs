//! A simulated RS-485 line: several Modbus RTU slaves sharing one pseudo-terminal, each playing a concentrator,
//! water-quality logger or valve from [`crate::modbus`]'s register models, each answering only its own unit id.
//!
//! **Timing is the point.** A pty moves bytes instantly and ignores baud rate and parity, so the simulator
//! keeps the wire time itself: a request occupies the line for its length in character times from the moment
//! its first byte arrives; the addressed slave starts its reply t3.5 after the request's end (the silence by
//! which an RTU slave recognises the end of a frame) plus any injected delay; the reply is written byte by byte,
//! each byte no earlier than the moment its last stop bit would have left a real transmitter; and replies never
//! overlap on the line. A character is 1 start bit + data bits + parity bit + stop bits (10 bits for 8N1, 11 for
//! 8E1). Timers are only as fine as tokio's (1 ms wheel, rounded up), so a byte may come a millisecond or two
//! late, never early: measured rates are at or below what a real line would allow.
//!
//! **How a client finds the line:** [`RtuSim::path`] is the pty's slave side (`/dev/pts/N`, from
//! `tokio_serial::SerialStream::pair()`), which a client opens like any serial port. The simulator keeps its own
//! handle on that side open, so a client may close and reopen the path at will without the pty hanging up.
//!
//! Faults are per slave ([`RtuFault`]): silence, a delay, an exception, garbage bytes, a bad CRC, forced logger
//! values, a stuck valve. A request with a bad CRC is dropped, as a real slave drops it. Answers are computed when the request
//! is heard, so a delayed reply carries the values of its own moment. This module deliberately does not parse
//! configuration, and runs no HTTP control API of its own (tests drive it directly; the fault-injection API,
//! [`crate::control`], uses [`RtuSimHandle`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_serial::{SerialPort, SerialStream};

use crate::modbus::device::Device;
use crate::modbus::exception::exception_pdu;
use crate::modbus::{check_device, new_model, ModbusFault, SimClock, SimKind};
use drivers::rtu::frame::{self, Length, MAX_FRAME};
use drivers::rtu::{CharFormat, LineSettings};

/// Bytes of an unfinished request older than this (or t3.5, if longer) are dropped, as a slave drops a frame cut
/// short by silence.
const STALLED_REQUEST: Duration = Duration::from_millis(10);
/// Pause after a failed read of the pty, so that a persistent error does not spin.
const READ_BACKOFF: Duration = Duration::from_millis(10);

/// Why the RTU simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RtuSimError {
    #[error("invalid simulated slave {slave}: {reason}")]
    InvalidSlave { slave: String, reason: String },
    #[error("unit id {0} is used by two slaves")]
    DuplicateUnit(u8),
    #[error("invalid line: {0}")]
    InvalidLine(String),
    #[error("cannot create a pty: {0}")]
    Pty(String),
    #[error("no simulated slave with unit id {0}")]
    UnknownUnit(u8),
    #[error("invalid fault for unit {unit}: {reason}")]
    InvalidFault { unit: u8, reason: String },
}

/// What a slave does wrong. `RtuFault::default()` is a healthy slave. In order of precedence: `silent`, then
/// the reply is delayed by `delay_ms`, and is `garbage`, or else the `exception` or the normal answer (with
/// `values` forced, and a valve `stuck`), sent with a `bad_crc` if asked.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtuFault {
    /// Hears requests, never answers (a dead slave).
    pub silent: bool,
    /// Starts the reply this much later than it could.
    pub delay_ms: u64,
    /// Answers every request with this exception code.
    pub exception: Option<u8>,
    /// Answers with bytes that contain no valid frame.
    pub garbage: bool,
    /// Answers with a well-formed frame whose CRC is wrong.
    pub bad_crc: bool,
    /// Forces a logger parameter to a value, by parameter name.
    pub values: BTreeMap<String, f64>,
    /// A valve accepts commands but never moves.
    pub stuck: bool,
    /// Meter slots of a concentrator whose meters stopped answering it (as `ModbusFault::silent_meters`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silent_meters: Vec<u16>,
}

impl RtuFault {
    /// The TCP simulator's fault type carries what the register models look at (forced values, a stuck valve,
    /// silent meters).
    fn model_fault(&self) -> ModbusFault {
        ModbusFault {
            values: self.values.clone(),
            stuck: self.stuck,
            silent_meters: self.silent_meters.clone(),
            ..ModbusFault::default()
        }
    }
}

/// One simulated slave as a control API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlaveStatus {
    pub id: String,
    pub unit_id: u8,
    /// `concentrator`, `logger` or `valve`.
    pub kind: &'static str,
    pub fault: RtuFault,
    /// Requests with a valid CRC addressed to this slave, whatever its fault did with them.
    pub requests: u64,
    /// Replies (garbage included) completely written to the line.
    pub replies: u64,
}

/// One simulated slave on the line.
#[derive(Debug, Clone, PartialEq)]
pub struct RtuSlaveSpec {
    pub id: String,
    /// 1 to 247.
    pub unit_id: u8,
    pub kind: SimKind,
    pub fault: RtuFault,
}

/// The whole line: its speed and character format, the slaves on it, and the simulation's time and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RtuSimSpec {
    pub baud: u32,
    pub format: CharFormat,
    pub slaves: Vec<RtuSlaveSpec>,
    /// Simulated time runs this many times faster than wall time (meter consumption, drift); wire timing does not.
    pub speed: f64,
    pub seed: u64,
}

#[derive(Debug)]
struct Slave {
    unit_id: u8,
    device: Device,
    fault: Mutex<RtuFault>,
    /// Replies completely written to the line.
    replies: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    clock: SimClock,
    slaves: Vec<Slave>,
    /// Requests heard with a valid CRC, for any unit.
    frames: AtomicU64,
    /// Requests dropped for a bad CRC or because they could not be framed.
    bad_frames: AtomicU64,
}

impl Shared {
    fn slave(&self, unit: u8) -> Option<&Slave> {
        self.slaves.iter().find(|s| s.unit_id == unit)
    }

    fn set_fault(&self, unit: u8, fault: RtuFault) -> Result<(), RtuSimError> {
        let slave = self.slave(unit).ok_or(RtuSimError::UnknownUnit(unit))?;
        let invalid = |reason: String| RtuSimError::InvalidFault { unit, reason };
        check_exception(fault.exception).map_err(invalid)?;
        // Checks forced values against the slave's parameters.
        slave.device.set_fault(fault.model_fault()).map_err(invalid)?;
        tracing::info!(message = "fault set", slave = %slave.device.id, unit, fault = ?fault);
        *slave.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
        Ok(())
    }

    fn status(&self, slave: &Slave) -> SlaveStatus {
        SlaveStatus {
            id: slave.device.id.clone(),
            unit_id: slave.unit_id,
            kind: slave.device.kind,
            fault: slave.fault.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            requests: slave.device.requests(),
            replies: slave.replies.load(Ordering::Relaxed),
        }
    }
}

/// A cloneable handle on a running line's slaves, for the fault-injection API ([`crate::control`]). It does
/// not keep the line running: once the [`RtuSim`] is shut down, faults set here change nothing.
#[derive(Debug, Clone)]
pub struct RtuSimHandle {
    path: String,
    shared: Arc<Shared>,
}

impl RtuSimHandle {
    /// The line's pty path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Every slave, in spec order.
    pub fn slaves(&self) -> Vec<SlaveStatus> {
        self.shared.slaves.iter().map(|s| self.shared.status(s)).collect()
    }

    pub fn status(&self, unit: u8) -> Option<SlaveStatus> {
        self.shared.slave(unit).map(|s| self.shared.status(s))
    }

    /// As [`RtuSim::set_fault`].
    pub fn set_fault(&self, unit: u8, fault: RtuFault) -> Result<(), RtuSimError> {
        self.shared.set_fault(unit, fault)
    }
}

/// Wire timing of the simulated line.
#[derive(Debug, Clone, Copy)]
struct Wire {
    baud: u32,
    format: CharFormat,
}

impl Wire {
    fn time(self, bytes: usize) -> Duration {
        self.format.wire_time(self.baud, bytes)
    }

    fn silence(self) -> Duration {
        self.format.silence(self.baud)
    }
}

/// A running simulated line. Dropping it stops it; [`RtuSim::shutdown`] also waits.
#[derive(Debug)]
pub struct RtuSim {
    path: String,
    baud: u32,
    format: CharFormat,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// The pty's slave side, held open so that a client closing its end never hangs the pty up.
    _keep_open: SerialStream,
}

impl RtuSim {
    /// Checks the spec, creates the pty and starts answering. Must be called inside a tokio runtime.
    pub fn start(spec: RtuSimSpec) -> Result<RtuSim, RtuSimError> {
        if spec.baud == 0 {
            return Err(RtuSimError::InvalidLine("baud rate must be above 0".to_owned()));
        }
        if !(spec.speed.is_finite() && spec.speed > 0.0) {
            return Err(RtuSimError::InvalidLine(format!("speed must be a finite number above 0, got {}", spec.speed)));
        }
        let mut units = BTreeMap::new();
        for slave in &spec.slaves {
            let invalid = |reason: String| RtuSimError::InvalidSlave { slave: slave.id.clone(), reason };
            if !(1..=247).contains(&slave.unit_id) {
                return Err(invalid(format!("unit id {} is outside 1 to 247", slave.unit_id)));
            }
            if units.insert(slave.unit_id, ()).is_some() {
                return Err(RtuSimError::DuplicateUnit(slave.unit_id));
            }
            check_device(&slave.kind, &slave.fault.model_fault()).map_err(invalid)?;
            check_exception(slave.fault.exception).map_err(invalid)?;
        }
        let (master, keep_open) = SerialStream::pair().map_err(|e| RtuSimError::Pty(e.to_string()))?;
        let path = keep_open.name().ok_or_else(|| RtuSimError::Pty("the pty has no path".to_owned()))?;

        let clock = SimClock::start(spec.speed);
        // An RTU slave has no socket address; the field only means something to the TCP simulator.
        let no_addr = SocketAddr::from(([0, 0, 0, 0], 0));
        let slaves = spec
            .slaves
            .into_iter()
            .map(|s| {
                let model = new_model(s.kind, spec.seed, &s.id, &clock);
                Slave {
                    unit_id: s.unit_id,
                    device: Device::new(s.id, no_addr, s.unit_id, model, ModbusFault::default()),
                    fault: Mutex::new(s.fault),
                    replies: AtomicU64::new(0),
                }
            })
            .collect();
        let shared = Arc::new(Shared { clock, slaves, frames: AtomicU64::new(0), bad_frames: AtomicU64::new(0) });
        let wire = Wire { baud: spec.baud, format: spec.format };
        let task = tokio::spawn(run_line(master, Arc::clone(&shared), wire));
        tracing::info!(message = "simulated rtu line started", path = %path, baud = spec.baud, format = %spec.format);
        Ok(RtuSim { path, baud: spec.baud, format: spec.format, shared, task: Some(task), _keep_open: keep_open })
    }

    /// The serial device path a client opens.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Settings for a client of this line, with the given reply timeout.
    pub fn line_settings(&self, timeout: Duration) -> LineSettings {
        let CharFormat { data_bits, parity, stop_bits } = self.format;
        LineSettings { path: self.path.clone(), baud: self.baud, data_bits, parity, stop_bits, timeout }
    }

    /// Replaces a slave's fault; it applies from the next request the slave hears.
    pub fn set_fault(&self, unit: u8, fault: RtuFault) -> Result<(), RtuSimError> {
        self.shared.set_fault(unit, fault)
    }

    /// A handle for the fault-injection API (see [`RtuSimHandle`]).
    pub fn handle(&self) -> RtuSimHandle {
        RtuSimHandle { path: self.path.clone(), shared: Arc::clone(&self.shared) }
    }

    pub fn fault(&self, unit: u8) -> Option<RtuFault> {
        self.shared.slave(unit).map(|s| s.fault.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Requests with a valid CRC addressed to `unit`, whatever its fault did with them.
    pub fn requests(&self, unit: u8) -> Option<u64> {
        self.shared.slave(unit).map(|s| s.device.requests())
    }

    /// Replies (garbage included) `unit` has completely written to the line.
    pub fn replies(&self, unit: u8) -> Option<u64> {
        self.shared.slave(unit).map(|s| s.replies.load(Ordering::Relaxed))
    }

    /// Requests with a valid CRC heard on the line, for any unit.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Requests dropped for a bad CRC or an unknown length.
    pub fn bad_frames(&self) -> u64 {
        self.shared.bad_frames.load(Ordering::Relaxed)
    }

    /// The simulator's current truth for a concentrator's meter, m³.
    pub fn meter_volume(&self, unit: u8, slot: u16) -> Option<f64> {
        self.shared.slave(unit)?.device.meter_volume(slot, self.shared.clock.now())
    }

    /// The value a logger last served for a parameter, as the client decodes it.
    pub fn parameter_value(&self, unit: u8, name: &str) -> Option<f64> {
        self.shared.slave(unit)?.device.parameter_value(name)
    }

    /// Stops the line and waits until its task is gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RtuSim {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn check_exception(code: Option<u8>) -> Result<(), String> {
    match code {
        Some(0) => Err("exception code 0 is not a modbus exception".to_owned()),
        Some(c) if c >= 0x80 => Err(format!("exception code {c} does not fit in 7 bits")),
        _ => Ok(()),
    }
}

/// A reply waiting for its turn on the line.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    /// When its first byte may start.
    at: Instant,
    /// Ties go to the earlier request.
    seq: u64,
    slave: usize,
    bytes: Vec<u8>,
}

/// A reply being written, one character time per byte.
#[derive(Debug)]
struct Sending {
    start: Instant,
    slave: usize,
    bytes: Vec<u8>,
    written: usize,
}

/// The line's transmit side: replies in start order, paced, one at a time.
#[derive(Debug)]
struct Transmitter {
    wire: Wire,
    queue: BinaryHeap<Reverse<Scheduled>>,
    current: Option<Sending>,
    /// When the last reply's last byte has left the line.
    free_at: Instant,
    seq: u64,
}

impl Transmitter {
    fn schedule(&mut self, at: Instant, slave: usize, bytes: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, slave, bytes }));
    }

    /// When something is next due: the next byte of the current reply, or the start of the next one.
    fn next_due(&self) -> Option<Instant> {
        match &self.current {
            Some(s) => Some(s.start + self.wire.time(s.written + 1)),
            None => self.queue.peek().map(|Reverse(next)| next.at.max(self.free_at)),
        }
    }

    /// Writes every byte that is due by now.
    async fn pump(&mut self, port: &mut SerialStream, shared: &Shared) -> std::io::Result<()> {
        let now = Instant::now();
        loop {
            if self.current.is_none() {
                let start = match self.queue.peek() {
                    Some(Reverse(next)) if next.at.max(self.free_at) <= now => next.at.max(self.free_at),
                    _ => return Ok(()),
                };
                let Some(Reverse(next)) = self.queue.pop() else { return Ok(()) };
                self.current = Some(Sending { start, slave: next.slave, bytes: next.bytes, written: 0 });
            }
            let Some(sending) = self.current.as_mut() else { return Ok(()) };
            // Bytes whose last stop bit has left the transmitter by now.
            let elapsed = now.saturating_duration_since(sending.start);
            let char_time = self.wire.time(1);
            let due = ((elapsed.as_nanos() / char_time.as_nanos().max(1)) as usize).min(sending.bytes.len());
            if due > sending.written {
                port.write_all(&sending.bytes[sending.written..due]).await?;
                sending.written = due;
            }
            if sending.written < sending.bytes.len() {
                return Ok(());
            }
            self.free_at = sending.start + self.wire.time(sending.bytes.len());
            shared.slaves[sending.slave].replies.fetch_add(1, Ordering::Relaxed);
            self.current = None;
        }
    }
}

/// Serves the line until the task is aborted.
async fn run_line(mut port: SerialStream, shared: Arc<Shared>, wire: Wire) {
    let mut tx = Transmitter { wire, queue: BinaryHeap::new(), current: None, free_at: Instant::now(), seq: 0 };
    let mut rx: Vec<u8> = Vec::with_capacity(2 * MAX_FRAME);
    // When the first byte of the request being received arrived.
    let mut rx_started = Instant::now();
    let mut rx_last = Instant::now();
    let stall = wire.silence().max(STALLED_REQUEST);
    let mut chunk = [0u8; MAX_FRAME];
    loop {
        let tx_due = tx.next_due();
        let rx_stalled = (!rx.is_empty()).then(|| rx_last + stall);
        tokio::select! {
            read = port.read(&mut chunk) => match read {
                Ok(0) | Err(_) => {
                    // Only a pty whose every slave-side handle is closed fails to read; ours holds one open,
                    // so this is transient at worst.
                    sleep(READ_BACKOFF).await;
                }
                Ok(n) => {
                    let now = Instant::now();
                    if rx.is_empty() {
                        rx_started = now;
                    }
                    rx_last = now;
                    rx.extend_from_slice(&chunk[..n]);
                    take_requests(&mut rx, &mut rx_started, &shared, &mut tx);
                }
            },
            _ = sleep_until(tx_due.unwrap_or_else(Instant::now)), if tx_due.is_some() => {
                if let Err(error) = tx.pump(&mut port, &shared).await {
                    tracing::debug!(message = "simulated rtu reply not written", error = %error);
                    tx.current = None;
                }
            }
            _ = sleep_until(rx_stalled.unwrap_or_else(Instant::now)), if rx_stalled.is_some() => {
                // A request cut short by silence: dropped, as a slave drops it.
                shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                rx.clear();
            }
        }
    }
}

/// Handles every complete request at the front of `rx`.
fn take_requests(rx: &mut Vec<u8>, rx_started: &mut Instant, shared: &Shared, tx: &mut Transmitter) {
    loop {
        let len = match frame::request_length(rx) {
            Length::Known(len) if len <= rx.len() => len,
            // Wait for the rest, or for the silence that drops it.
            Length::Known(_) | Length::NeedMore | Length::Unknown => return,
        };
        let request: Vec<u8> = rx.drain(..len).collect();
        // The request was on the wire from its first byte's arrival (or from when the line became free).
        let end = (*rx_started).max(tx.free_at) + tx.wire.time(len);
        *rx_started = end;
        if !frame::crc_ok(&request) {
            shared.bad_frames.fetch_add(1, Ordering::Relaxed);
            // A slave that loses sync drops everything up to the next silence.
            rx.clear();
            return;
        }
        shared.frames.fetch_add(1, Ordering::Relaxed);
        answer(&request, end, shared, tx);
    }
}

/// Lets the addressed slave (if any) answer a CRC-valid request whose last byte left the wire at `end`.
fn answer(request: &[u8], end: Instant, shared: &Shared, tx: &mut Transmitter) {
    let (unit, pdu) = (request[0], &request[1..request.len() - frame::CRC_LEN]);
    let t = shared.clock.now();
    if unit == 0 {
        // Broadcast: every slave acts on it, none answers.
        for slave in &shared.slaves {
            let fault = slave.fault.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if !fault.silent {
                slave.device.answer(pdu, t, &fault.model_fault());
            }
        }
        return;
    }
    let Some(index) = shared.slaves.iter().position(|s| s.unit_id == unit) else { return };
    let slave = &shared.slaves[index];
    slave.device.count_request();
    let fault = slave.fault.lock().unwrap_or_else(PoisonError::into_inner).clone();
    if fault.silent {
        return;
    }
    let function = pdu[0];
    let bytes = if fault.garbage {
        garbage(unit, function)
    } else {
        let reply = match fault.exception {
            Some(code) => exception_pdu(function, code),
            None => slave.device.answer(pdu, t, &fault.model_fault()),
        };
        let mut bytes = frame::encode(unit, &reply);
        if fault.bad_crc {
            let n = bytes.len();
            bytes[n - 2] ^= 0xFF;
            bytes[n - 1] ^= 0x5A;
        }
        bytes
    };
    let at = end + tx.wire.silence() + Duration::from_millis(fault.delay_ms);
    tx.schedule(at, index, bytes);
}

/// Bytes that contain no valid RTU frame: the start of a reply whose byte count (255) overruns any frame,
/// then noise. A client that frames by the byte count alone would wait for 255 more bytes.
fn garbage(unit: u8, function: u8) -> Vec<u8> {
    let mut bytes = vec![unit, function, 0xFF];
    bytes.extend_from_slice(b"\xBA\xADnoise!\x00\xFF");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_rejects_unknown_keys_and_fills_defaults() {
        let fault: RtuFault = serde_json::from_str(r#"{"bad_crc": true, "stuck": true}"#).expect("valid fault");
        assert_eq!(fault, RtuFault { bad_crc: true, stuck: true, ..RtuFault::default() });
        assert!(fault.model_fault().stuck, "a stuck valve reaches the register model");
        assert!(serde_json::from_str::<RtuFault>(r#"{"disconnect": true}"#).is_err());
    }

    #[test]
    fn garbage_contains_no_frame_for_any_unit_or_function() {
        for unit in 1..=247 {
            for function in [1, 2, 3, 4, 5, 6, 15, 16] {
                let bytes = garbage(unit, function);
                assert_eq!(frame::find_frame(&bytes, frame::reply_length), None, "unit {unit} function {function}");
            }
        }
    }

    #[test]
    fn exception_codes_must_fit() {
        assert!(check_exception(None).is_ok());
        assert!(check_exception(Some(2)).is_ok());
        assert!(check_exception(Some(0)).is_err());
        assert!(check_exception(Some(0x80)).is_err());
    }
}
