//! [`RtuLine`]: one half-duplex serial line and the Modbus RTU exchanges on it, one at a time.
//!
//! What an exchange does, in order: refuse a request that cannot be sent (broadcast or reserved unit id, a
//! register count out of range); open the port if it is closed; if the unit's previous request went unanswered
//! less than a late-reply window ago, listen for its late reply until the window ends; wait until the line has
//! been silent for t3.5 after the last byte received (longer after noise) and discard anything that arrived
//! meanwhile; write the request; read until a frame from the addressed unit with the right function, length and
//! CRC is complete, or the deadline passes. Frames from other units on the way are discarded (and settle those
//! units' late replies).
//!
//! This module deliberately does not decide what to poll or when; it is owned by whoever drives the line.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_serial::SerialStream;

use super::frame::{self, Scan, MAX_FRAME};
use super::settings::LineSettings;
use crate::modbus::{ConnectError, Exception, ModbusError, ModbusResult};
use crate::registers::Function;

/// The silence required before a request after noise, whatever the baud rate: t3.5 is the protocol's gap, but
/// bytes reach a program in chunks (USB serial adapters hold them up to their latency timer, 16 ms by default on
/// FTDI chips, and the scheduler adds its own delay), so a babbling slave may look silent for less than this
/// while it is still sending.
const FRAME_GAP_FLOOR: Duration = Duration::from_millis(20);
/// After this many exchanges in a row without a single byte received, the port is reopened: the whole line has
/// gone silent, which is how a wedged USB adapter looks, and reopening costs nothing on a line that answers
/// nobody anyway. One dead slave among live ones never triggers it.
const REOPEN_AFTER_SILENT_EXCHANGES: u32 = 3;
/// The most registers one read may ask for (functions 3 and 4).
const MAX_READ: u16 = 125;

/// What has happened on a line so far; counts only ever grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCounters {
    /// Requests written to the line.
    pub requests: u64,
    /// Valid replies, exceptions included.
    pub replies: u64,
    /// Valid replies that were Modbus exceptions.
    pub exceptions: u64,
    /// Requests that got nothing at all before their deadline.
    pub timeouts: u64,
    /// Requests that got bytes but no valid reply (bad CRC, garbage, a reply that does not fit the request).
    pub bad_replies: u64,
    /// Failures of the port itself (read or write errors); each closes the port.
    pub transport_errors: u64,
    /// Times the port was opened; the first open is not a reopen.
    pub opens: u64,
    pub reopens: u64,
    /// Complete, CRC-valid frames that answered no current request (late replies, other units) and were dropped.
    pub stale_frames: u64,
    /// Bytes received, whatever they were.
    pub received_bytes: u64,
    /// Bytes dropped as noise or as the unread rest of a frame.
    pub discarded_bytes: u64,
    /// Times a request waited for the late reply its unit still owed.
    pub late_waits: u64,
}

/// The reply a request expects besides unit and function code.
#[derive(Debug, Clone)]
enum Expect {
    /// A read of this many registers.
    Registers(u16),
    /// A single write: the reply echoes address and value.
    Echo([u8; 4]),
}

/// How a complete, CRC-valid frame relates to the current request.
enum Verdict {
    /// The reply: the data after the byte count (reads), nothing (writes), or an exception.
    Answer(Result<Vec<u8>, Exception>),
    /// Another unit's frame.
    Foreign(u8),
    /// The addressed unit, but not a reply to this request (a late reply to an earlier one, most likely).
    Mismatch(String),
}

/// One Modbus RTU serial line. Owned by one task; `&mut self` makes every exchange wait for the previous one,
/// which is what a half-duplex RS-485 bus needs. See the module documentation of [`crate::rtu`] for the
/// guarantees.
#[derive(Debug)]
pub struct RtuLine {
    settings: LineSettings,
    port: Option<SerialStream>,
    /// When the last byte was received (or the port opened): the next request waits for silence after it.
    last_rx: Option<Instant>,
    /// Noise was seen since the line was last quiet, so the next request waits for a frame gap, not just t3.5.
    dirty: bool,
    /// Units whose last request went unanswered, with the end of the window in which their late reply is awaited
    /// before they are asked again.
    owing: BTreeMap<u8, Instant>,
    /// Exchanges in a row in which not one byte arrived.
    silent_exchanges: u32,
    /// Received bytes not yet framed.
    buf: Vec<u8>,
    counters: LineCounters,
}

impl RtuLine {
    /// A line with these settings; the port is opened by the first request (and reopened after port failures).
    pub fn new(settings: LineSettings) -> Self {
        RtuLine {
            settings,
            port: None,
            last_rx: None,
            dirty: false,
            owing: BTreeMap::new(),
            silent_exchanges: 0,
            buf: Vec::with_capacity(2 * MAX_FRAME),
            counters: LineCounters::default(),
        }
    }

    pub fn settings(&self) -> &LineSettings {
        &self.settings
    }

    pub fn counters(&self) -> LineCounters {
        self.counters
    }

    pub fn is_open(&self) -> bool {
        self.port.is_some()
    }

    /// Closes the port; the next request opens it again.
    pub fn close(&mut self) {
        if let Some(port) = self.port.take() {
            crate::serial::close(port);
        }
        self.buf.clear();
    }

    /// The late-reply window after a request that went unanswered: as long as the timeout itself, so a reply up
    /// to twice the timeout late is recognised as late.
    fn late_window(&self) -> Duration {
        self.settings.timeout
    }

    /// The silence required before a request after noise.
    fn frame_gap(&self) -> Duration {
        self.settings.silence().max(FRAME_GAP_FLOOR)
    }

    /// Reads `count` registers with function 3 (holding) or 4 (input) from `unit`. The reply must carry exactly
    /// `count` registers.
    pub async fn read_registers(
        &mut self,
        unit: u8,
        function: Function,
        address: u16,
        count: u16,
    ) -> ModbusResult<Vec<u16>> {
        if !(1..=MAX_READ).contains(&count) {
            return Err(ModbusError::Protocol(format!("cannot read {count} registers: 1 to {MAX_READ} per request")));
        }
        let [a_hi, a_lo] = address.to_be_bytes();
        let [c_hi, c_lo] = count.to_be_bytes();
        let pdu = [function.code(), a_hi, a_lo, c_hi, c_lo];
        let reply = self.exchange(unit, &pdu, Expect::Registers(count)).await?;
        Ok(reply.map(|data| data.chunks_exact(2).map(|w| u16::from_be_bytes([w[0], w[1]])).collect()))
    }

    /// Writes one holding register (function 6) of `unit`; the reply must echo the request.
    pub async fn write_register(&mut self, unit: u8, address: u16, value: u16) -> ModbusResult<()> {
        let [a_hi, a_lo] = address.to_be_bytes();
        let [v_hi, v_lo] = value.to_be_bytes();
        let reply = self.exchange(unit, &[6, a_hi, a_lo, v_hi, v_lo], Expect::Echo([a_hi, a_lo, v_hi, v_lo])).await?;
        Ok(reply.map(drop))
    }

    /// Writes one coil (function 5) of `unit`; the reply must echo the request.
    pub async fn write_coil(&mut self, unit: u8, address: u16, on: bool) -> ModbusResult<()> {
        let [a_hi, a_lo] = address.to_be_bytes();
        let value = if on { 0xFF } else { 0x00 };
        let reply = self.exchange(unit, &[5, a_hi, a_lo, value, 0], Expect::Echo([a_hi, a_lo, value, 0])).await?;
        Ok(reply.map(drop))
    }

    /// One request and its reply, with the bookkeeping every outcome needs.
    async fn exchange(&mut self, unit: u8, pdu: &[u8], expect: Expect) -> ModbusResult<Vec<u8>> {
        if !(1..=247).contains(&unit) {
            return Err(ModbusError::Protocol(format!(
                "unit id {unit} cannot be polled: 0 is broadcast (no reply) and 248 to 255 are reserved"
            )));
        }
        self.open()?;
        let received_before = self.counters.received_bytes;
        let outcome = self.exchange_open(unit, pdu, &expect).await;
        match &outcome {
            Ok(Ok(_)) => self.counters.replies += 1,
            Ok(Err(_)) => {
                self.counters.replies += 1;
                self.counters.exceptions += 1;
            }
            Err(error) => {
                match error {
                    ModbusError::Timeout(_) => self.counters.timeouts += 1,
                    ModbusError::Transport(_) => self.counters.transport_errors += 1,
                    _ => self.counters.bad_replies += 1,
                }
                tracing::debug!(message = "rtu request failed", path = %self.settings.path, unit, %error);
            }
        }
        match &outcome {
            Err(ModbusError::Transport(_)) => self.close(),
            // The unit may still answer; its next request first waits out the late-reply window.
            Err(ModbusError::Timeout(_) | ModbusError::BadReply(_)) => {
                self.owing.insert(unit, Instant::now() + self.late_window());
            }
            _ => {}
        }
        let heard_nothing =
            matches!(outcome, Err(ModbusError::Timeout(_))) && self.counters.received_bytes == received_before;
        self.silent_exchanges = if heard_nothing { self.silent_exchanges + 1 } else { 0 };
        if self.silent_exchanges >= REOPEN_AFTER_SILENT_EXCHANGES {
            self.silent_exchanges = 0;
            self.close();
        }
        outcome
    }

    async fn exchange_open(&mut self, unit: u8, pdu: &[u8], expect: &Expect) -> ModbusResult<Vec<u8>> {
        if let Some(until) = self.owing.remove(&unit) {
            if Instant::now() < until {
                self.counters.late_waits += 1;
                self.listen_for_late_reply(unit, until).await?;
            }
        }
        self.wait_for_quiet_line().await?;
        let request = frame::encode(unit, pdu);
        let port = self.port.as_mut().ok_or_else(not_open)?;
        if let Err(e) = port.write_all(&request).await {
            return Err(ModbusError::Transport(format!("cannot write to {}: {e}", self.settings.path)));
        }
        self.counters.requests += 1;
        // The timeout runs from the end of the request on the wire; `write_all` returns when the bytes are
        // handed to the driver, before they are sent.
        let deadline = Instant::now() + self.settings.wire_time(request.len()) + self.settings.timeout;
        self.receive_reply(unit, pdu[0], expect, deadline).await
    }

    /// Opens the port if it is closed.
    fn open(&mut self) -> Result<(), ModbusError> {
        if self.port.is_some() {
            return Ok(());
        }
        let s = &self.settings;
        let port = crate::serial::open(s).map_err(|reason| ModbusError::Connect {
            addr: s.path.clone(),
            reason: ConnectError::Failed(reason.to_string()),
        })?;
        self.port = Some(port);
        self.buf.clear();
        self.counters.opens += 1;
        if self.counters.opens > 1 {
            self.counters.reopens += 1;
        }
        // The specification asks for a silent interval before the first frame, too.
        self.last_rx = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }

    /// Reads what arrives before `until` into the buffer. `Ok(false)` when `until` passed first.
    async fn read_some(&mut self, until: Instant) -> Result<bool, ModbusError> {
        let port = self.port.as_mut().ok_or_else(not_open)?;
        let mut chunk = [0u8; MAX_FRAME];
        match timeout_at(until, port.read(&mut chunk)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(ModbusError::Transport(format!("{} was closed", self.settings.path))),
            Ok(Ok(n)) => {
                self.last_rx = Some(Instant::now());
                self.counters.received_bytes += n as u64;
                self.buf.extend_from_slice(&chunk[..n]);
                // A line that never pauses could grow the buffer without end; keep the newest bytes only.
                if self.buf.len() > 2 * MAX_FRAME {
                    let excess = self.buf.len() - MAX_FRAME;
                    self.buf.drain(..excess);
                    self.discard(excess);
                }
                Ok(true)
            }
            Ok(Err(e)) => Err(ModbusError::Transport(format!("cannot read from {}: {e}", self.settings.path))),
        }
    }

    fn discard(&mut self, bytes: usize) {
        if bytes > 0 {
            self.counters.discarded_bytes += bytes as u64;
            self.dirty = true;
        }
    }

    /// Takes complete, CRC-valid frames out of the buffer, front to back, until `decide` returns a value for
    /// one. Frames for which `decide` returns `None` are counted as stale; bytes that cannot start a frame are
    /// dropped as noise; bytes that may still become one stay.
    fn take_frames<T>(&mut self, mut decide: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
        loop {
            match frame::scan(&self.buf, frame::reply_length) {
                Scan::Found { start, len } => {
                    let frame: Vec<u8> = self.buf.drain(..start + len).skip(start).collect();
                    self.discard(start);
                    if let Some(found) = decide(&frame) {
                        return Some(found);
                    }
                    self.counters.stale_frames += 1;
                }
                Scan::Pending { noise } => {
                    self.buf.drain(..noise);
                    self.discard(noise);
                    return None;
                }
            }
        }
    }

    /// Listens until `until` for the late reply `unit` still owes, and drops it (and anything else heard).
    async fn listen_for_late_reply(&mut self, unit: u8, until: Instant) -> Result<(), ModbusError> {
        loop {
            let mut settled = false;
            let mut owing = std::mem::take(&mut self.owing);
            self.take_frames(|frame| {
                owing.remove(&frame[0]);
                settled |= frame[0] == unit;
                None::<()>
            });
            self.owing = owing;
            if settled || !self.read_some(until).await? {
                return Ok(());
            }
        }
    }

    /// Waits until nothing has been received for t3.5 (a frame gap after noise), dropping whatever arrives
    /// meanwhile. Gives up after one timeout on a line that never falls silent.
    async fn wait_for_quiet_line(&mut self) -> Result<(), ModbusError> {
        let give_up = Instant::now() + self.settings.timeout;
        loop {
            let need = if self.dirty || !self.buf.is_empty() { self.frame_gap() } else { self.settings.silence() };
            if let Some(last) = self.last_rx {
                sleep_until(last + need).await;
            }
            let stale = self.buf.len() + self.drain_now()?;
            self.buf.clear();
            if stale == 0 {
                self.dirty = false;
                return Ok(());
            }
            self.discard(stale);
            self.last_rx = Some(Instant::now());
            if Instant::now() >= give_up {
                return Err(ModbusError::Transport(format!(
                    "{} never fell silent for {need:?} within {:?}",
                    self.settings.path, self.settings.timeout
                )));
            }
        }
    }

    /// Reads and counts whatever the driver holds right now, without waiting.
    fn drain_now(&mut self) -> Result<usize, ModbusError> {
        let port = self.port.as_mut().ok_or_else(not_open)?;
        let mut chunk = [0u8; MAX_FRAME];
        let mut total = 0;
        loop {
            match port.try_read(&mut chunk) {
                Ok(0) => return Err(ModbusError::Transport(format!("{} was closed", self.settings.path))),
                Ok(n) => {
                    total += n;
                    self.counters.received_bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ModbusError::Transport(format!("cannot read from {}: {e}", self.settings.path))),
            }
        }
    }

    /// Reads until the reply to the request just written is complete, or `deadline`.
    async fn receive_reply(
        &mut self,
        unit: u8,
        function: u8,
        expect: &Expect,
        deadline: Instant,
    ) -> ModbusResult<Vec<u8>> {
        let mut mismatch: Option<String> = None;
        let noise_before = self.counters.discarded_bytes;
        loop {
            let mut owing = std::mem::take(&mut self.owing);
            let answer = self.take_frames(|frame| match judge(frame, unit, function, expect) {
                Verdict::Answer(answer) => Some(answer),
                Verdict::Foreign(other) => {
                    // A late reply from another unit: that unit owes nothing any more.
                    owing.remove(&other);
                    None
                }
                Verdict::Mismatch(why) => {
                    mismatch = Some(why);
                    None
                }
            });
            self.owing = owing;
            if let Some(answer) = answer {
                // Bytes after the reply belong to nothing we asked; the next request waits for quiet.
                let rest = self.buf.len();
                self.buf.clear();
                self.discard(rest);
                return Ok(answer);
            }
            // No gap ends a frame here: a reply stalled halfway (a busy USB adapter or scheduler) is still
            // taken when its last byte comes, and noise never hides a frame behind it (see `frame::scan`).
            if !self.read_some(deadline).await? {
                break;
            }
        }
        // Whatever is left never became a frame.
        let rest = self.buf.len();
        self.buf.clear();
        self.discard(rest);
        if let Some(why) = mismatch {
            return Err(ModbusError::BadReply(why));
        }
        let noise = self.counters.discarded_bytes - noise_before;
        if noise > 0 {
            return Err(ModbusError::BadReply(format!(
                "no valid reply from unit {unit} within {:?}, only {noise} bytes of noise (bad crc or garbage)",
                self.settings.timeout
            )));
        }
        Err(ModbusError::Timeout(self.settings.timeout))
    }
}

/// How `frame` (complete, CRC checked) relates to a request of `function` to `unit` expecting `expect`.
fn judge(frame: &[u8], unit: u8, function: u8, expect: &Expect) -> Verdict {
    if frame[0] != unit {
        return Verdict::Foreign(frame[0]);
    }
    let code = frame[1];
    let body = &frame[2..frame.len() - frame::CRC_LEN];
    if code == function | 0x80 {
        return Verdict::Answer(Err(Exception(body[0])));
    }
    if code != function {
        return Verdict::Mismatch(format!("unit {unit} answered function {code} to a request of function {function}"));
    }
    match expect {
        Expect::Registers(count) => {
            if body.len() == 1 + 2 * usize::from(*count) {
                Verdict::Answer(Ok(body[1..].to_vec()))
            } else {
                Verdict::Mismatch(format!("asked unit {unit} for {count} registers, the reply carries {}", body[0] / 2))
            }
        }
        Expect::Echo(echo) => {
            if body == echo {
                Verdict::Answer(Ok(Vec::new()))
            } else {
                Verdict::Mismatch(format!(
                    "unit {unit}'s write reply {body:02X?} does not echo the request {echo:02X?}"
                ))
            }
        }
    }
}

fn not_open() -> ModbusError {
    ModbusError::Transport("the port is not open".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn exchanges_can_run_on_any_runtime_thread() {
        let settings = LineSettings::new("/dev/null", 9600, "8E1", Duration::from_millis(100)).expect("valid");
        let mut line = RtuLine::new(settings);
        is_send(&line.read_registers(1, Function::Holding, 0, 1));
        is_send(&line.write_register(1, 0, 1));
        is_send(&line.write_coil(1, 0, true));
    }

    #[test]
    fn only_matching_frames_answer() {
        let read = Expect::Registers(2);
        let reply = [7, 3, 4, 0, 1, 0, 2, 0, 0];
        assert!(matches!(judge(&reply, 7, 3, &read), Verdict::Answer(Ok(data)) if data == [0, 1, 0, 2]));
        assert!(matches!(judge(&reply, 8, 3, &read), Verdict::Foreign(7)));
        assert!(matches!(judge(&reply, 7, 4, &read), Verdict::Mismatch(_)));
        assert!(matches!(judge(&reply, 7, 3, &Expect::Registers(3)), Verdict::Mismatch(_)));
        assert!(matches!(judge(&[7, 0x83, 2, 0, 0], 7, 3, &read), Verdict::Answer(Err(Exception(2)))));
        let echo = Expect::Echo([0, 5, 0x12, 0x34]);
        assert!(matches!(judge(&[7, 6, 0, 5, 0x12, 0x34, 0, 0], 7, 6, &echo), Verdict::Answer(Ok(_))));
        assert!(matches!(judge(&[7, 6, 0, 5, 0x12, 0x35, 0, 0], 7, 6, &echo), Verdict::Mismatch(_)));
    }
}
