//! Field protocols: codecs, framing and guarded clients. The simulators are in the `waterworks-sim` crate
//! (`drivers/sim`).
//!
//! # Layout
//! - [`registers`]: register data types, word orders, decoding (pure).
//! - [`calendar`]: Gregorian dates from and to day counts (pure); the one calendar of every protocol.
//! - [`cjt188`]: CJ/T 188 household water meters: frame codec, a guarded master.
//! - [`modbus`]: a guarded Modbus TCP client (timeouts, reconnect after failure).
//! - [`log_limit`]: at most a burst of log lines per window for floods of bad input (counting is not limited).
//! - [`net`]: connecting to a device over TCP within a time limit, for every protocol client.
//! - [`serial`]: opening and closing serial ports, for every protocol on a serial line.
//! - [`mqtt`]: MQTT ingestion of meter readings: payload mappings from configuration, a subscribing client that
//!   acknowledges only committed messages, the reconnect backoff.
//! - [`rtu`]: Modbus RTU over serial lines: framing, one half-duplex line at a time, t3.5 silences, late-reply
//!   guard.
//! - [`hj212`]: HJ 212-2017 water-quality stations: frame codec, a listener for stations to push to.
//!
//! **Invariant:** this crate never imports `waterworks-model`, `waterworks-actors`, `waterworks-hmi` or
//! `waterworks-sim`, and does not speak HTTP (no axum); `tests/dependency_rules.rs` checks it. It speaks
//! registers, topics and bytes; what a register means is configuration (`config/devices/*.toml`).

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
