//! MQTT ingestion of meter readings: NB-IoT meters and concentrators publish JSON to a broker, the server
//! subscribes, maps each payload to readings through configuration, and acknowledges a message only once its
//! readings are committed (DESIGN.md §5, R-A1, R-A9, R-G2, R-G3).
//!
//! # Layout
//! - `mapping`: [`PayloadMapping`] (where a vendor keeps meter id, volume, unit, time and status) and [`map`],
//!   which turns one message into [`MappedReading`]s or a [`MapError`] naming the path. Pure: no I/O, no clock.
//! - `time`: [`rfc3339_to_ms`], a strict RFC 3339 parser. Pure.
//! - `topic`: topic filter checks and matching. Pure.
//! - `ingest`: [`MqttIngest`], the subscribing client (rumqttc) with a persistent session, manual
//!   acknowledgements after commit, capped exponential reconnect backoff and a bounded hand-over channel.
//! - `backoff`: [`Backoff`], the capped exponential delay between connection attempts.
//!
//! # The two directions
//! Readings flow in (PUBLISH from the broker); what flows out is SUBSCRIBE once per session and one PUBACK per
//! committed message. No commands are sent to meters.
//!
//! **Invariant:** a message is acknowledged to the broker only after the caller says its readings are committed,
//! or when it carries no reading at all (malformed). Everything else the broker delivers again.
//!
//! Built without TLS (rumqttc `default-features = false`), to keep the build lean: the broker is expected on
//! loopback or a trusted network. MQTT 3.1.1 only.

mod backoff;
mod ingest;
mod mapping;
mod time;
mod topic;

pub use backoff::Backoff;
pub use ingest::{AckHandle, Incoming, IngestStats, MqttIngest, MqttSettings};
pub use mapping::{
    map, FieldPath, MapError, MappedReading, MappingProblem, MeterSource, PathError, PayloadMapping, StatusSpec,
    TimeFallback, TimeFormat, UnknownName, VOLUME_UNITS,
};
pub use time::{ms_to_rfc3339, rfc3339_to_ms, Rfc3339Error};
pub use topic::{check_filter, topic_matches, FilterError};

/// What can go wrong when starting an MQTT client. Connection failures after the start are not errors: they
/// are retried, counted and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}
