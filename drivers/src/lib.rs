//! Field protocols and the device simulator.
//!
//! # Layout
//! - [`registers`]: register data types, word orders, decoding (pure).
//! - [`modbus`]: a guarded Modbus TCP client (timeouts, reconnect after failure).
//! - [`rtu`]: Modbus RTU over serial lines: one half-duplex line at a time, t3.5 silences, late-reply guard; and a
//!   simulated line of several slaves on a pty, paced to the baud rate.
//! - [`hj212`]: HJ 212-2017 water-quality stations: frame codec, a listener for stations to push to, a simulated
//!   station.
//! - [`sim`]: Modbus TCP servers that play concentrators and water-quality loggers, with fault injection.
//!
//! **Invariant:** this crate never imports `waterworks-actors` or `waterworks-hmi`. It speaks registers and
//! bytes; what a register means is configuration (`config/devices/*.toml`).

pub mod hj212;
pub mod modbus;
pub mod registers;
pub mod rtu;
pub mod sim;
