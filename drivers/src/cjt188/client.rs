//! A CJ/T 188 master: requests to meters and their replies over any byte stream (a TCP connection to a
//! transparent gateway, or a serial port), with a timeout per request.
//!
//! Two layers of failure, as in `modbus.rs`: `Err(Cjt188Error)` when there was no valid reply, `Ok(Err(
//! AbnormalReply))` when the meter answered with the abnormal bit (D6) set, meaning "no".
//!
//! **Contract:** after any `Err`, the state of the stream is unknown (half a reply may still be on its way),
//! so the [`Cjt188Client`] refuses further requests ([`Cjt188Error::Poisoned`]) and its owner drops it and
//! the stream, and opens a new one. [`Cjt188Master`] does that by itself: over TCP with a new connection, on a
//! serial line with the same port under a fresh client. An abnormal reply is a valid reply and keeps the stream.
//!
//! While waiting for its reply, the client skips line noise, wake-up bytes, its own request echoed back (an
//! RS-485 adapter may do that), and whole frames that are not the answer: from another meter, to another
//! function, or (with [`Cjt188Model::match_ser`]) with another SER, a late reply to an earlier request.
//! A corrupt frame (bad length, checksum or end byte) is not skipped: it fails the request at once.
//!
//! This module deliberately does not retry, schedule, or decide what a reading means: that belongs to the
//! device actor that owns the client.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_serial::SerialStream;

use super::frame::{decode, encode, junk_len, Address, Control, Frame, FrameError};
use super::payload::{
    parse_metering_reply, parse_valve_reply, read_metering_request, valve_request, Cjt188Model, MeteringData,
    ModelError, PayloadError, ValveState,
};
use crate::rtu::LineSettings;

/// Bytes read from the stream at a time; a whole 901F reply with preamble fits.
const READ_CHUNK: usize = 256;

/// Why a request produced no valid reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cjt188Error {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: crate::net::ConnectError },
    #[error("transport error: {0}")]
    Transport(String),
    /// The gateway closed or reset the connection (the same words as Modbus TCP's).
    #[error("connection closed by device")]
    Closed,
    #[error("corrupt frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad reply: {0}")]
    BadReply(String),
    #[error("invalid meter model: {0}")]
    Model(ModelError),
    #[error("the connection failed earlier and must be replaced")]
    Poisoned,
}

/// A meter's abnormal reply (D6 of C set): a valid reply meaning the meter would or could not do it.
///
/// The data field is kept as sent because vendors disagree on its layout: KingDa's firmware sends SER and
/// a two-byte ST, ng-gateway expects one status byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbnormalReply {
    pub control: Control,
    pub data: Vec<u8>,
}

impl fmt::Display for AbnormalReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "abnormal reply {} with data [", self.control)?;
        for (i, b) in self.data.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02X}")?;
        }
        f.write_str("]")
    }
}

impl std::error::Error for AbnormalReply {}

/// The outcome of one request: transport layer outside, the meter's "no" inside.
pub type Cjt188Result<T> = Result<Result<T, AbnormalReply>, Cjt188Error>;

/// A CJ/T 188 master over one byte stream. Owned by one device actor; `&mut self`, never shared.
#[derive(Debug)]
pub struct Cjt188Client<T> {
    io: T,
    model: Cjt188Model,
    timeout: Duration,
    /// SER of the next request; wraps.
    serial: u8,
    /// Bytes read but not yet used.
    buf: Vec<u8>,
    /// Set by any `Err`; see the module's contract.
    poisoned: bool,
    /// Frames skipped while waiting for replies (other meters, stale replies, echoes).
    skipped: u64,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Cjt188Client<T> {
    /// A client speaking `model` over `io`, giving every request `timeout` for its whole exchange.
    pub fn new(io: T, model: Cjt188Model, timeout: Duration) -> Self {
        Cjt188Client { io, model, timeout, serial: 0, buf: Vec::with_capacity(READ_CHUNK), poisoned: false, skipped: 0 }
    }

    pub fn model(&self) -> &Cjt188Model {
        &self.model
    }

    /// Whether a failed request has made this client unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Frames skipped so far while waiting for replies.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    /// SER of the next request.
    pub fn next_serial(&self) -> u8 {
        self.serial
    }

    /// Sets SER of the next request, so that a replacement client continues the sequence and a late reply
    /// meant for its predecessor is not taken for its own.
    pub fn set_next_serial(&mut self, serial: u8) {
        self.serial = serial;
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The stream, e.g. to close it.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Reads 901F metering data from the meter at `address`.
    pub async fn read_meter(&mut self, address: &Address) -> Cjt188Result<MeteringData> {
        let serial = self.take_serial();
        let request = read_metering_request(&self.model, *address, serial);
        let st_bits = self.model.st_bits;
        self.exchange(&request, |data| parse_metering_reply(data, &st_bits)).await
    }

    /// Opens or closes the valve of the meter at `address`; returns the valve state the meter reports in its
    /// reply. A meter may report the old state while its motor still runs: confirm with a later read.
    pub async fn set_valve(&mut self, address: &Address, open: bool) -> Cjt188Result<ValveState> {
        let serial = self.take_serial();
        let request = valve_request(&self.model, *address, serial, open);
        let st_bits = self.model.st_bits;
        self.exchange(&request, |data| parse_valve_reply(data, &st_bits).map(|(_, status)| status.valve)).await
    }

    /// Sends `request` and returns the first frame that answers it (see the module doc for what is
    /// skipped). The reply's data field is not checked; [`Self::read_meter`] and [`Self::set_valve`] do that.
    pub async fn transact(&mut self, request: &Frame) -> Cjt188Result<Frame> {
        if self.poisoned {
            return Err(Cjt188Error::Poisoned);
        }
        let outcome = match self.model.check() {
            Err(reason) => Err(Cjt188Error::Model(reason)),
            Ok(()) => {
                let limit = self.timeout;
                let deadline = Instant::now() + limit;
                match timeout_at(deadline, self.send_and_wait(request)).await {
                    Err(_) => Err(Cjt188Error::Timeout(limit)),
                    Ok(outcome) => outcome,
                }
            }
        };
        self.poisoned = outcome.is_err();
        outcome.map(|frame| {
            if frame.control.is_abnormal() {
                Err(AbnormalReply { control: frame.control, data: frame.data })
            } else {
                Ok(frame)
            }
        })
    }

    /// [`Self::transact`], then `parse` on a normal reply's data field; a parse failure poisons the client.
    async fn exchange<R>(
        &mut self,
        request: &Frame,
        parse: impl FnOnce(&[u8]) -> Result<R, PayloadError>,
    ) -> Cjt188Result<R> {
        match self.transact(request).await? {
            Err(abnormal) => Ok(Err(abnormal)),
            Ok(reply) => match parse(&reply.data) {
                Ok(value) => Ok(Ok(value)),
                Err(reason) => {
                    self.poisoned = true;
                    Err(Cjt188Error::BadReply(reason.to_string()))
                }
            },
        }
    }

    fn take_serial(&mut self) -> u8 {
        let serial = self.serial;
        self.serial = self.serial.wrapping_add(1);
        serial
    }

    async fn send_and_wait(&mut self, request: &Frame) -> Result<Frame, Cjt188Error> {
        let bytes = encode(request, self.model.preamble)?;
        // Whatever is left from an earlier exchange is stale.
        self.buf.clear();
        let transport = |e: std::io::Error| {
            if crate::net::closed_by_peer(&e) {
                Cjt188Error::Closed
            } else {
                Cjt188Error::Transport(e.to_string())
            }
        };
        self.io.write_all(&bytes).await.map_err(transport)?;
        self.io.flush().await.map_err(transport)?;
        loop {
            let junk = junk_len(&self.buf);
            self.buf.drain(..junk);
            match decode(&self.buf)? {
                Some((frame, used)) => {
                    self.buf.drain(..used);
                    if answers(request, &frame, self.model.match_ser) {
                        return Ok(frame);
                    }
                    self.skipped += 1;
                    tracing::debug!(
                        message = "skipped a frame that does not answer the request",
                        address = %frame.address,
                        control = %frame.control,
                        expected = %request.address
                    );
                }
                None => {
                    let mut chunk = [0u8; READ_CHUNK];
                    let n = self.io.read(&mut chunk).await.map_err(transport)?;
                    if n == 0 {
                        return Err(Cjt188Error::Closed);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// Whether `reply` answers `request`: sent by a meter, to the same function, from the addressed meter (any
/// meter for the wildcard), and for a normal reply with `match_ser`, carrying the request's SER. A normal
/// reply too short to carry a SER is taken as the answer, so that it fails as a bad reply instead of
/// being waited past.
fn answers(request: &Frame, reply: &Frame, match_ser: bool) -> bool {
    if !reply.control.is_reply() || reply.control.function() != request.control.function() {
        return false;
    }
    if !request.address.is_wildcard() && reply.address != request.address {
        return false;
    }
    if match_ser && !reply.control.is_abnormal() {
        if let (Some(sent), Some(got)) = (request.data.get(2), reply.data.get(2)) {
            return sent == got;
        }
    }
    true
}

/// Where a master reaches its meters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cjt188Link {
    /// A transparent gateway at `host:port` (resolved at every connect, so a DNS change is picked up after a
    /// reconnect).
    Tcp(String),
    /// A serial line (RS-485 or an M-Bus level converter) the master owns alone: CJ/T 188 meters commonly run
    /// 2400 8E1. The settings' `timeout` is replaced by the target's.
    Serial(LineSettings),
}

impl fmt::Display for Cjt188Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cjt188Link::Tcp(addr) => write!(f, "tcp {addr}"),
            Cjt188Link::Serial(s) => write!(f, "serial {} {} {}", s.path, s.baud, s.format()),
        }
    }
}

/// How a master reaches its meters, and how long it gives each request.
#[derive(Debug, Clone)]
pub struct Cjt188Target {
    pub link: Cjt188Link,
    /// Bounds connecting, and every request's reply. On a serial line the wire time of the request and of the
    /// longest reply is added, so the timeout means the same at 1200 baud as over TCP.
    pub timeout: Duration,
    pub model: Cjt188Model,
}

/// Bytes on the wire of the longest exchange this master makes, besides the wake-up preambles: a 901F read
/// request (16) and its reply (35 in the 2004 layout, 44 at most with vendor extras), rounded up.
const EXCHANGE_BYTES: usize = 64;

/// After this many requests in a row that timed out, a serial port is reopened: a whole line gone silent is how a
/// wedged USB adapter looks. One dead meter among live ones never triggers it.
const REOPEN_AFTER_TIMEOUTS: u32 = 3;

/// The byte stream under a master: a TCP connection or a serial port.
#[derive(Debug)]
pub enum Port {
    Tcp(TcpStream),
    Serial(SerialStream),
}

impl AsyncRead for Port {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Port::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Port::Serial(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Port {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Port::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Port::Serial(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Port::Tcp(s) => Pin::new(s).poll_flush(cx),
            Port::Serial(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Port::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Port::Serial(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Port {
    fn close(self) {
        match self {
            Port::Tcp(_) => {}
            Port::Serial(port) => crate::serial::close(port),
        }
    }
}

/// A CJ/T 188 master over a TCP gateway or a serial line that opens its stream lazily and recovers after
/// failures by itself:
/// - over TCP, any failure drops the connection (the client's contract) and the next request reconnects;
/// - on a serial line, the port is kept after a timeout or a bad reply (a dead or garbled meter costs only its
///   own request: input is discarded before every request, and a late reply is told apart by address and SER),
///   and reopened after a port error or [`REOPEN_AFTER_TIMEOUTS`] timeouts in a row.
///
/// One master owns its stream: every request to every meter behind it is serialised by `&mut self`, which is
/// what a half-duplex bus needs.
#[derive(Debug)]
pub struct Cjt188Master {
    target: Cjt188Target,
    client: Option<Cjt188Client<Port>>,
    /// SER of the next request, carried across reconnects.
    serial: u8,
    /// How many times the stream was opened; lets tests and status see reconnects.
    connects: u64,
    /// Frames skipped on earlier streams; see [`Cjt188Master::skipped_frames`].
    skipped_before: u64,
    /// Serial requests in a row that timed out.
    timeouts_in_a_row: u32,
}

impl Cjt188Master {
    /// Creates a master; nothing is opened until the first request.
    pub fn new(target: Cjt188Target) -> Self {
        Cjt188Master { target, client: None, serial: 0, connects: 0, skipped_before: 0, timeouts_in_a_row: 0 }
    }

    pub fn target(&self) -> &Cjt188Target {
        &self.target
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// Number of times the stream was opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Frames skipped so far while waiting for replies (other meters, stale replies, echoes), over all
    /// streams.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped_before + self.client.as_ref().map_or(0, Cjt188Client::skipped_frames)
    }

    /// Closes the stream (if any); the next request opens it again.
    pub fn disconnect(&mut self) {
        if let Some(client) = self.client.take() {
            self.serial = client.next_serial();
            self.skipped_before += client.skipped_frames();
            client.into_inner().close();
        }
    }

    /// Reads 901F metering data from the meter at `address`.
    pub async fn read_meter(&mut self, address: &Address) -> Cjt188Result<MeteringData> {
        let outcome = self.connect().await?.read_meter(address).await;
        self.after(outcome)
    }

    /// Opens or closes the valve of the meter at `address`; see [`Cjt188Client::set_valve`].
    pub async fn set_valve(&mut self, address: &Address, open: bool) -> Cjt188Result<ValveState> {
        let outcome = self.connect().await?.set_valve(address, open).await;
        self.after(outcome)
    }

    /// Recovers after a failure: see the type's documentation.
    fn after<R>(&mut self, outcome: Cjt188Result<R>) -> Cjt188Result<R> {
        let Err(error) = &outcome else {
            self.timeouts_in_a_row = 0;
            return outcome;
        };
        let keep_port = match error {
            Cjt188Error::Timeout(_) => {
                self.timeouts_in_a_row += 1;
                self.timeouts_in_a_row < REOPEN_AFTER_TIMEOUTS
            }
            Cjt188Error::Frame(_) | Cjt188Error::BadReply(_) => {
                self.timeouts_in_a_row = 0;
                true
            }
            _ => false,
        };
        match self.client.take() {
            Some(client) if keep_port && matches!(self.target.link, Cjt188Link::Serial(_)) => {
                // A serial line has no connection to replace: the same port under a fresh client, which
                // discards what is left of the failed exchange before its next request.
                self.skipped_before += client.skipped_frames();
                let next = client.next_serial();
                let mut fresh = Cjt188Client::new(client.into_inner(), self.target.model, self.request_timeout());
                fresh.set_next_serial(next);
                self.client = Some(fresh);
            }
            Some(client) => {
                self.client = Some(client);
                self.disconnect();
                self.timeouts_in_a_row = 0;
            }
            None => {}
        }
        outcome
    }

    /// The whole time one request may take, see [`Cjt188Target::timeout`].
    fn request_timeout(&self) -> Duration {
        match &self.target.link {
            Cjt188Link::Tcp(_) => self.target.timeout,
            Cjt188Link::Serial(s) => {
                let total = self.target.timeout + s.wire_time(EXCHANGE_BYTES + 2 * self.target.model.preamble);
                // Whole milliseconds, so that messages read "1312ms", not "1.311666667s".
                Duration::from_millis(u64::try_from(total.as_micros().div_ceil(1000)).unwrap_or(u64::MAX))
            }
        }
    }

    async fn connect(&mut self) -> Result<&mut Cjt188Client<Port>, Cjt188Error> {
        if self.client.is_none() {
            let port = match &self.target.link {
                Cjt188Link::Tcp(addr) => crate::net::connect(addr, self.target.timeout)
                    .await
                    .map(Port::Tcp)
                    .map_err(|reason| Cjt188Error::Connect { addr: addr.clone(), reason })?,
                Cjt188Link::Serial(settings) => {
                    crate::serial::open(settings).map(Port::Serial).map_err(|reason| Cjt188Error::Connect {
                        addr: settings.path.clone(),
                        reason: crate::net::ConnectError::Failed(reason.to_string()),
                    })?
                }
            };
            let mut client = Cjt188Client::new(port, self.target.model, self.request_timeout());
            client.set_next_serial(self.serial);
            self.connects += 1;
            self.client = Some(client);
        }
        let client = self.client.as_mut().ok_or(Cjt188Error::Poisoned)?;
        if let Port::Serial(port) = client.get_ref() {
            // Whatever arrived since the last exchange (a late reply, noise) answers nothing we will ask.
            crate::serial::discard_input(port);
        }
        Ok(client)
    }
}
