//! Simulated field devices for tests, benchmarks and the demo, with faults injected on demand, and the one
//! fault-injection HTTP API over all of them.
//!
//! # Layout
//! - [`modbus`]: Modbus TCP servers playing concentrators, water-quality loggers and register valves
//!   ([`modbus::ModbusSim`]); their register models serve the RTU line too.
//! - [`rtu`]: several Modbus RTU slaves on one pty, paced to the baud rate ([`rtu::RtuSim`]).
//! - [`cjt188`]: CJ/T 188 meters behind a TCP transparent gateway or on a pty serial line
//!   ([`cjt188::Cjt188Sim`]).
//! - [`hj212`]: an HJ 212 station pushing real-time, minute and hour data to a listener ([`hj212::Hj212Sim`]).
//! - [`mqtt`]: meters and concentrators publishing readings to an MQTT broker ([`mqtt::MqttSim`]).
//! - [`control`]: [`control::SimControl`], the fault-injection HTTP API (loopback only) over any of them.
//! - `rng`: the deterministic random numbers every simulator draws from.
//!
//! # Names
//! Every simulator follows one scheme, `P` being the protocol (`Modbus`, `Rtu`, `Cjt188`, `Hj212`, `Mqtt`):
//! `PSim` runs the simulated devices (dropping it stops them), `PSimSpec` says what to start, `PSimHandle` is
//! a cloneable handle for a control API, `PFault` is the fault (its JSON form is what the control API takes),
//! `PSimError` is why it could not start or do what it was asked, `PSimStats` its counters where it has any.
//!
//! **Invariant:** the simulators speak the protocols with `waterworks-drivers`' own codecs and framing, so a
//! simulator and a client never disagree on the wire format by accident. This crate never imports the model,
//! the actors or the HMI, and reads no configuration file: the server's `src/simulation.rs` turns its configuration
//! into specs. Nothing here is meant to face a network.

pub mod cjt188;
pub mod control;
pub mod hj212;
pub mod modbus;
pub mod mqtt;
mod rng;
pub mod rtu;
