//! Field protocols and the device simulator.
//!
//! # Layout
//! - [`registers`]: register data types, word orders, decoding (pure).
//! - [`calendar`]: Gregorian dates from and to day counts (pure); the one calendar of every protocol.
//! - [`cjt188`]: CJ/T 188 household water meters: frame codec, a guarded master, a simulated gateway.
//! - [`modbus`]: a guarded Modbus TCP client (timeouts, reconnect after failure).
//! - [`log_limit`]: at most a burst of log lines per window for floods of bad input (counting is not limited).
//! - [`net`]: connecting to a device over TCP within a time limit, for every protocol client.
//! - [`serial`]: opening and closing serial ports, for every protocol on a serial line.
//! - [`mqtt`]: MQTT ingestion of meter readings: payload mappings from configuration, a subscribing client that
//!   acknowledges only committed messages, simulated MQTT meters.
//! - [`rtu`]: Modbus RTU over serial lines: one half-duplex line at a time, t3.5 silences, late-reply guard; and a
//!   simulated line of several slaves on a pty, paced to the baud rate.
//! - [`hj212`]: HJ 212-2017 water-quality stations: frame codec, a listener for stations to push to, a simulated
//!   station.
//! - [`sim`]: Modbus TCP servers that play concentrators and water-quality loggers, with fault injection.
//!
//! **Invariant:** this crate never imports `waterworks-actors` or `waterworks-hmi`. It speaks registers, topics and
//! bytes; what a register means is configuration (`config/devices/*.toml`).

pub mod calendar;
pub mod cjt188;
pub mod hj212;
pub mod log_limit;
pub mod modbus;
pub mod mqtt;
pub mod net;
pub mod registers;
pub mod rtu;
pub mod serial;
pub mod sim;
