//! Modbus RTU over serial lines (RS-485). The simulated line is in the `waterworks-sim` crate.
//!
//! # Layout
//! - `settings`: [`LineSettings`] (port, baud, character format, timeout), [`CharFormat`] (`"8E1"`), timing.
//! - [`frame`]: CRC-16/MODBUS, request frames, finding frames by the length their function code implies (pure;
//!   public for the simulated line in `waterworks-sim`).
//! - `line`: [`RtuLine`], one serial line and its exchanges; [`LineCounters`].
//!
//! # Line settings
//! `path` (e.g. `/dev/ttyUSB0`), `baud`, `data_bits` (RTU needs 8; 7 is refused, it is Modbus ASCII), `parity`
//! and `stop_bits` (Modbus's default is 8E1; 8N2 is the standard no-parity form, 8N1 is common in the field), and
//! `timeout`, the reply timeout of every request. [`LineSettings::new`] parses the format from `"8N1"`-style
//! text. A character is 1 start bit + data + parity + stop bits (10 bits for 8N1, 11 for 8E1 and 8N2); the
//! inter-frame silence t3.5 is 3.5 characters, and 1.75 ms above 19 200 baud, as the Modbus serial-line
//! specification says.
//!
//! # What [`RtuLine`] guarantees
//! - **One exchange at a time.** It is `&mut self` and owned by one task: the half-duplex bus never carries two
//!   requests at once. Several device actors on one line can share it as `Arc<tokio::sync::Mutex<RtuLine>>`
//!   (tokio's mutex is fair, so each gets its turn in order, and a dead slave holds the line for its own
//!   timeout only), or talk to one task that owns it.
//! - **Every request has a deadline**: the request's own wire time plus `timeout` after it was written. A dead
//!   slave costs its exchange slot (t3.5, its request, its timeout) and nothing else; the other slaves' requests
//!   are not delayed by it.
//! - **Silence between frames.** A request is written only after the line has been silent for t3.5 since the
//!   last byte received, or for a frame gap (t3.5, at least 20 ms) after noise; whatever the port received in
//!   between is discarded.
//! - **Only a matching frame is an answer**: CRC right, the addressed unit, the request's function code (or its
//!   exception), and the right length (as many registers as asked; a write's echo of address and value). Noise
//!   before a frame is skipped, a reply that stalls halfway (a busy adapter or scheduler) is still taken when its
//!   last byte comes, and a frame from another unit is dropped and counted as stale. Bytes that never become a
//!   valid reply make the request fail with `BadReply` at its deadline, not sooner.
//! - **A late reply is never taken for the answer to a later request.** After a request to unit U goes
//!   unanswered (timeout, or bytes that were no valid reply), U's next request first listens until U's late
//!   reply has been heard and dropped, or until a late-reply window as long as `timeout` has passed. A reply
//!   up to twice the timeout late is therefore recognised wherever it lands: during U's wait, or during another
//!   unit's exchange, where its unit id gives it away (which also ends U's wait early). What no RTU client can do
//!   (there is no transaction id) is tell a reply more than twice its timeout late from a fresh reply of the same
//!   shape from the same unit: choose the timeout above the slowest slave's reply time.
//!   The window costs time only when U is asked again within one timeout of its failure (a single slave
//!   polled back to back: a dead one then costs up to two timeouts per request). On a bus of several slaves
//!   polled in turn the window has passed by the time U's turn comes back.
//! - **Reopening**: after a read or write error of the port itself, and after three exchanges in a row in which
//!   not one byte arrived (a silent line looks like a wedged USB adapter, and reopening costs nothing there).
//!   Not after a single timeout: reopening a port does not stop a slave from sending its late reply, only
//!   listening for it does; draining before each request discards what reopening would have flushed; and reopening
//!   a USB adapter takes time that would make a dead slave cost more than its timeout.
//! - Device exceptions are replies (`Ok(Err(Exception))`), transport failures are `Err(ModbusError)`, as in
//!   [`crate::modbus`].
//!
//! [`LineCounters`] counts requests, replies, exceptions, timeouts, bad replies, transport errors, opens and
//! reopens, stale frames, received and discarded bytes, and late-reply waits.
//!
//! # Why not tokio-modbus's RTU client
//! The project uses tokio-modbus for TCP. Its RTU client (0.17) cannot give the guarantees above: it clears only
//! its own read buffer before a request, not what the port received meanwhile; it fails an exchange on a frame
//! from another unit instead of skipping it, so one late reply also costs the next slave its poll; after a bad
//! CRC it drops a byte and waits for more (tokio-modbus#60), turning every corrupted reply into a full timeout
//! and possibly resynchronising inside noise; and it knows nothing of t3.5 or when the last byte arrived. The
//! framing it would save is a CRC and a length table, so this module frames RTU itself over
//! `tokio_serial::SerialStream`.
//!
//! This module deliberately does not decide what to poll, how often, or what a register means.

pub mod frame;
mod line;
mod settings;

pub use line::{LineCounters, RtuLine};
pub use settings::{CharFormat, DataBits, LineSettings, Parity, SettingsError, StopBits};
