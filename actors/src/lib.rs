//! The Waterworks domain model and its supervision tree of actors.
//!
//! # Layout
//! - [`model`]: the pure domain model (no I/O, no clock, no tokio or ractor).
//! - [`store`]: the durable store (redb) and its group-commit writer actor.
//! - [`runtime`]: restarting supervisors with backoff and escalation: the static [`supervisor`] and the
//!   dynamic one for actors started on demand ([`runtime::dynamic`]).
//! - [`hub`]: the live-state hub behind the WebSocket stream.
//! - [`field`]: one actor per concentrator and per water-quality data logger.
//! - [`cjt188`]: CJ/T 188 meters behind a transparent gateway or on a serial line, one actor per gateway.
//! - [`modbus_link`]: how a Modbus device or valve is reached (TCP, or a unit on an RS-485 line) and the
//!   connection along that path.
//! - [`meter_book`]: per-meter comm status and the volume check, shared by every actor that reads meters.
//! - [`mqtt`]: meters that publish over MQTT: one actor per meter group, and the broker connection.
//! - [`rtu_bus`]: one actor per RS-485 serial line, serialising every device's requests on it.
//! - [`station`]: HJ 212 water-quality stations that push data, and the listener that routes them.
//! - [`valve`]: one actor per remote valve: commands with read-back confirmation, audited.
//! - [`tree`]: builds the whole supervision tree from resolved configuration.
//! - [`api`]: what the `hmi` crate may call: one narrow handle per business domain (field, events, users,
//!   system), built and handed out by the composite [`api::Handle`].
//! - [`comm_error`]: each driver's errors as a code and parameters for the HMI, beside the English text.
//! - [`event`], [`metrics`], [`clock`]: durable events and their bus, counters, the injected clock.
//! - [`policy`]: password policy, user-name normalisation and look-alike skeletons (pure).
//! - [`totp`]: RFC 6238 one-time codes (the optional second factor of admins and operators).
//! - [`feed`]: consumers of the durable change feed (cursor persisted with their results).
//! - [`alarms`]: the alarm engine (a feed consumer) and shelf expiry.
//!
//! **Invariant:** this crate knows no HTTP, JSON-over-HTTP or config file format; `src/` resolves config
//! into the `*Args`/`*Spec` types here, and `hmi` turns [`api`] calls into HTTP.

pub mod alarms;
pub mod api;
pub mod auth;
pub mod cjt188;
pub mod clock;
pub mod comm_error;
pub mod context;
pub mod event;
pub mod feed;
pub mod field;
pub mod hub;
pub mod meter_book;
pub mod metrics;
pub mod modbus_link;
pub mod mqtt;
pub mod notify;
pub mod plausible;
pub mod policy;
pub mod restore;
pub mod rtu_bus;
pub mod runtime;
pub mod schedule;
pub mod station;
pub mod store;
pub mod totp;
pub mod tree;
pub mod valve;

/// The pure domain model, a crate of its own (`actors/model`); re-exported so `crate::model::…` reads as before.
pub use model;

/// The static supervisor, at its old path (it lives in [`runtime`]).
pub use runtime::supervisor;
