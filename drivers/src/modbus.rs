//! A guarded Modbus TCP client: tokio-modbus with a timeout on every call and a fresh connection after any
//! timeout or transport error (DESIGN.md §4, LIBRARY-NOTES.md §2).
//!
//! tokio-modbus has no timeouts and no reconnect, and after a timeout the late reply of the abandoned request
//! fails the next call on the same connection (tokio-modbus#324). So a connection is treated as poisoned after
//! a timeout, a transport error or a protocol error, and dropped; the next call connects anew. A device
//! exception (the device answered "illegal address", say) is a valid reply and keeps the connection.
//!
//! Two layers of failure, as in tokio-modbus: `Err(ModbusError)` when there was no valid reply,
//! `Ok(Err(Exception))` when the device answered with an exception code.
//!
//! This client is owned by one device actor; it is `&mut self` and never shared, so one dead device only
//! ever costs its own actor its own timeout.
//!
//! A connection the device closed is [`ModbusError::ConnectionClosed`]. tokio-modbus 0.17 reports the end of
//! the stream as `io::Error::last_os_error()`, which is whatever errno the thread last saw ("Operation now
//! in progress (os error 115)", say), so the client wraps the socket in [`WatchedStream`], which notes a read
//! of zero bytes, and also maps resets and broken pipes ([`crate::net::closed_by_peer`]).

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;

pub use crate::net::ConnectError;
use crate::registers::Function;

/// Why a Modbus call produced no valid reply.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: ConnectError },
    /// The device (or a gateway on the way) closed or reset the connection.
    #[error("connection closed by device")]
    ConnectionClosed,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// A Modbus exception code returned by the device (a valid reply meaning "no").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception(pub u8);

impl Exception {
    pub fn description(self) -> &'static str {
        match self.0 {
            0x01 => "illegal function",
            0x02 => "illegal data address",
            0x03 => "illegal data value",
            0x04 => "server device failure",
            0x05 => "acknowledge",
            0x06 => "server device busy",
            0x08 => "memory parity error",
            0x0A => "gateway path unavailable",
            0x0B => "gateway target device failed to respond",
            _ => "vendor-specific exception",
        }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exception 0x{:02X} ({})", self.0, self.description())
    }
}

impl std::error::Error for Exception {}

/// The outcome of one call: transport layer outside, device exception inside.
pub type ModbusResult<T> = Result<Result<T, Exception>, ModbusError>;

/// Connection settings of one Modbus TCP device (or a slave behind a TCP gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTarget {
    /// `host:port`; resolved at every connect so a DNS change is picked up after a reconnect.
    pub addr: String,
    pub unit_id: u8,
    /// Bounds connect and every request separately.
    pub timeout: Duration,
}

/// A Modbus TCP client that reconnects lazily and never reuses a poisoned connection.
pub struct ModbusTcpClient {
    target: TcpTarget,
    ctx: Option<Context>,
    /// Set by the current connection's stream when a read found its end.
    eof: Arc<AtomicBool>,
    /// How many connections this client has opened; lets tests and status see reconnects.
    connects: u64,
}

impl ModbusTcpClient {
    /// Creates a client; nothing is opened until the first call.
    pub fn new(target: TcpTarget) -> Self {
        ModbusTcpClient { target, ctx: None, eof: Arc::default(), connects: 0 }
    }

    pub fn target(&self) -> &TcpTarget {
        &self.target
    }

    pub fn is_connected(&self) -> bool {
        self.ctx.is_some()
    }

    /// Number of connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Drops the connection (if any); the next call reconnects.
    pub fn disconnect(&mut self) {
        // Dropping the context closes the socket; an explicit async disconnect could block on a dead peer.
        self.ctx = None;
    }

    async fn connect(&mut self) -> Result<&mut Context, ModbusError> {
        let ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => {
                let addr = &self.target.addr;
                let stream = crate::net::connect(addr, self.target.timeout)
                    .await
                    .map_err(|reason| ModbusError::Connect { addr: addr.clone(), reason })?;
                self.connects += 1;
                self.eof = Arc::default();
                let stream = WatchedStream { inner: stream, eof: Arc::clone(&self.eof) };
                tokio_modbus::client::tcp::attach_slave(stream, Slave(self.target.unit_id))
            }
        };
        Ok(self.ctx.insert(ctx))
    }

    /// Runs one request under the timeout; poisons the connection on anything but a valid reply.
    async fn guarded<T, F>(&mut self, call: F) -> ModbusResult<T>
    where
        F: for<'c> FnOnce(&'c mut Context) -> futures_boxed::BoxFuture<'c, tokio_modbus::Result<T>>,
    {
        let limit = self.target.timeout;
        let ctx = self.connect().await?;
        let outcome = match timeout(limit, call(ctx)).await {
            Err(_) => Err(ModbusError::Timeout(limit)),
            Ok(Err(tokio_modbus::Error::Transport(e))) => {
                if self.eof.load(Ordering::Relaxed) || crate::net::closed_by_peer(&e) {
                    Err(ModbusError::ConnectionClosed)
                } else {
                    Err(ModbusError::Transport(e.to_string()))
                }
            }
            Ok(Err(tokio_modbus::Error::Protocol(e))) => Err(ModbusError::Protocol(e.to_string())),
            Ok(Ok(Err(code))) => Ok(Err(Exception(u8::from(code)))),
            Ok(Ok(Ok(value))) => Ok(Ok(value)),
        };
        if outcome.is_err() {
            self.disconnect();
        }
        outcome
    }

    /// Reads `count` registers with function 3 or 4. The reply length is checked.
    pub async fn read_registers(&mut self, function: Function, address: u16, count: u16) -> ModbusResult<Vec<u16>> {
        let words = self
            .guarded(move |ctx| {
                Box::pin(async move {
                    match function {
                        Function::Holding => ctx.read_holding_registers(address, count).await,
                        Function::Input => ctx.read_input_registers(address, count).await,
                    }
                })
            })
            .await?;
        match words {
            Ok(w) if w.len() != usize::from(count) => {
                self.disconnect();
                Err(ModbusError::BadReply(format!("asked for {count} registers, got {}", w.len())))
            }
            other => Ok(other),
        }
    }

    /// Writes one holding register (function 6).
    pub async fn write_register(&mut self, address: u16, value: u16) -> ModbusResult<()> {
        self.guarded(move |ctx| Box::pin(async move { ctx.write_single_register(address, value).await })).await
    }

    /// Writes one coil (function 5).
    pub async fn write_coil(&mut self, address: u16, on: bool) -> ModbusResult<()> {
        self.guarded(move |ctx| Box::pin(async move { ctx.write_single_coil(address, on).await })).await
    }

    /// Changes the unit id for the following requests (a TCP gateway in front of several slaves).
    pub fn set_unit_id(&mut self, unit_id: u8) {
        self.target.unit_id = unit_id;
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.set_slave(Slave(unit_id));
        }
    }
}

/// The TCP stream under tokio-modbus, noting when a read finds the end of the stream (the device closed
/// the connection), which tokio-modbus itself does not report recognisably.
#[derive(Debug)]
struct WatchedStream {
    inner: TcpStream,
    eof: Arc<AtomicBool>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before && buf.remaining() > 0 {
            this.eof.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A boxed future type, so that `guarded` can take a closure borrowing the context.
mod futures_boxed {
    use std::future::Future;
    use std::pin::Pin;
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}
