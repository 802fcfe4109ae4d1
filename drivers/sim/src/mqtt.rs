//! Simulated MQTT meters: a client that publishes QoS 1 JSON readings for N meters at an interval, as NB-IoT
//! meters (one message per meter) or a concentrator (one message with every meter) would, with faults on demand.
//!
//! Each round publishes one reading per meter. The reading time of round `k` is `start_ts_ms + k * step_ms`, so a
//! test knows every `(meter, time)` key the simulator will send without asking it; volumes rise by a few litres a
//! round from a seed, and status bits follow a fixed pattern (battery low on every fourth meter, a magnetic
//! tamper now and then).
//!
//! The simulator is a well-behaved device: a stable client id with a persistent session, so that messages the
//! broker has not acknowledged are sent again after a reconnect (rumqttc does so when the broker reports
//! `session_present`); the event loop is polled in its own task and publishing happens in another
//! (LIBRARY-NOTES.md §3); reconnects back off up to a cap.
//!
//! Faults: [`MqttSim::inject_malformed`] sends extra messages that cannot be mapped (truncated JSON, a JSON
//! array, a bare string), in addition to the round's readings; [`MqttSim::pause`] stops publishing until
//! [`MqttSim::resume`]; [`MqttSimHandle::set_fault`] does both for a control API ([`MqttFault`]).
//!
//! It does not subscribe to anything and takes no commands.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use drivers::mqtt::{
    check_filter, ms_to_rfc3339, Backoff, FieldPath, MeterSource, MqttError, PayloadMapping, StatusSpec, TimeFallback,
    TimeFormat,
};

/// Requests rumqttc queues while the broker is away; publishing waits beyond that, like a device's buffer.
const REQUEST_CAPACITY: usize = 16;
/// The placeholder for the meter id in a per-meter topic.
pub const METER_PLACEHOLDER: &str = "{meter}";

/// The status bits the simulator sets, as `(bit, name)`; the names are the server's (R-A1).
const STATUS_BITS: [(u8, &str); 5] =
    [(0, "valve_closed"), (1, "battery_low"), (2, "magnetic_tamper"), (3, "reverse_flow"), (4, "meter_fault")];
/// The concentrator layout's vendor names for the same flags.
const VENDOR_NAMES: [(&str, &str); 5] = [
    ("VALVE_CLOSED", "valve_closed"),
    ("BATT_LOW", "battery_low"),
    ("MAG_TAMPER", "magnetic_tamper"),
    ("REVERSE", "reverse_flow"),
    ("FAULT", "meter_fault"),
];

/// What the simulated devices publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimLayout {
    /// One message per meter and round, on `topic` with [`METER_PLACEHOLDER`] replaced by the meter id:
    /// `{"meter":"M1","ts":1709251200000,"volume_l":123456,"status":2}` (epoch milliseconds, litres, status
    /// bits).
    PerMeter { topic: String },
    /// One message per round for all meters, on `topic`:
    /// `{"concentrator":"C1","time":"2024-03-01T00:00:00.000Z","meters":[{"id":"M1","volume":123.456,"unit":"m3",
    /// "alarms":["BATT_LOW"]}]}` (one RFC 3339 time for all, m³ with a unit field, status as vendor names).
    Concentrator { id: String, topic: String },
}

impl SimLayout {
    /// The subscription filter that catches this layout's messages.
    pub fn filter(&self) -> String {
        match self {
            SimLayout::PerMeter { topic } => topic.replace(METER_PLACEHOLDER, "+"),
            SimLayout::Concentrator { topic, .. } => topic.clone(),
        }
    }

    /// The payload mapping that reads this layout's messages; for the per-meter layout the meter id is taken
    /// from the topic level that holds the placeholder.
    pub fn mapping(&self) -> PayloadMapping {
        let path = |p: &str| FieldPath::parse(p).unwrap_or_else(|_| unreachable!("the simulator's paths are valid"));
        match self {
            SimLayout::PerMeter { topic } => {
                let level = topic.split('/').position(|l| l == METER_PLACEHOLDER).unwrap_or(0);
                PayloadMapping {
                    readings: None,
                    meter: MeterSource::TopicLevel(level),
                    volume: path("/volume_l"),
                    scale: 0.001,
                    unit: None,
                    time: Some(path("/ts")),
                    time_format: TimeFormat::EpochMs,
                    time_fallback: TimeFallback::Refuse,
                    status: Some(StatusSpec::Bits {
                        path: path("/status"),
                        bits: STATUS_BITS.iter().map(|(b, n)| (*b, (*n).to_owned())).collect(),
                    }),
                    flags: Vec::new(),
                }
            }
            SimLayout::Concentrator { .. } => PayloadMapping {
                readings: Some(path("/meters")),
                meter: MeterSource::Field(path("/id")),
                volume: path("/volume"),
                scale: 1.0,
                unit: Some(path("/unit")),
                time: Some(path("^/time")),
                time_format: TimeFormat::Rfc3339,
                time_fallback: TimeFallback::Refuse,
                status: Some(StatusSpec::Names {
                    path: path("/alarms"),
                    names: VENDOR_NAMES.iter().map(|(v, o)| ((*v).to_owned(), (*o).to_owned())).collect(),
                }),
                flags: Vec::new(),
            },
        }
    }
}

/// Settings of one simulated group of meters.
#[derive(Debug, Clone)]
pub struct MqttSimSpec {
    pub host: String,
    pub port: u16,
    /// Stable: the broker keeps the simulator's session under it.
    pub client_id: String,
    pub meters: Vec<String>,
    pub layout: SimLayout,
    /// Wall-clock time between rounds.
    pub interval: Duration,
    /// Reading time of round 0, ms since the epoch.
    pub start_ts_ms: i64,
    /// Reading time advance per round (simulated time; 15 minutes in a realistic setup).
    pub step_ms: i64,
    /// Stop publishing after this many rounds; `None` publishes until shut down.
    pub rounds: Option<u64>,
    /// Seeds the volume increments.
    pub seed: u64,
    /// Start paused (see [`MqttSim::resume`]), e.g. to inject faults before the first message.
    pub start_paused: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl MqttSimSpec {
    /// A spec with defaults: rounds every second, 15 minutes of reading time per round from 2024-03-01, no round
    /// limit, not paused, backoff 200 ms to 5 s.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        client_id: impl Into<String>,
        meters: Vec<String>,
        layout: SimLayout,
    ) -> Self {
        MqttSimSpec {
            host: host.into(),
            port,
            client_id: client_id.into(),
            meters,
            layout,
            interval: Duration::from_secs(1),
            start_ts_ms: 1_709_251_200_000,
            step_ms: 15 * 60 * 1000,
            rounds: None,
            seed: 1,
            start_paused: false,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The reading time of `round`.
    pub fn ts_of_round(&self, round: u64) -> i64 {
        self.start_ts_ms.saturating_add(self.step_ms.saturating_mul(i64::try_from(round).unwrap_or(i64::MAX)))
    }

    fn check(&self) -> Result<(), MqttError> {
        let invalid = |reason: String| Err(MqttError::InvalidConfig(reason));
        if self.client_id.is_empty() {
            return invalid("client_id must not be empty".into());
        }
        if self.meters.is_empty() {
            return invalid("at least one meter is needed".into());
        }
        if let Some(m) = self.meters.iter().find(|m| m.is_empty() || m.contains(['/', '+', '#', '\0'])) {
            return invalid(format!("meter id {m:?} cannot be part of a topic"));
        }
        let topic = match &self.layout {
            SimLayout::PerMeter { topic } => {
                if !topic.split('/').any(|l| l == METER_PLACEHOLDER) {
                    return invalid(format!("topic {topic:?} needs a whole level {METER_PLACEHOLDER}"));
                }
                topic.replace(METER_PLACEHOLDER, "x")
            }
            SimLayout::Concentrator { topic, .. } => topic.clone(),
        };
        if topic.contains(['+', '#']) {
            return invalid(format!("topic {topic:?} must not contain wildcards"));
        }
        check_filter(&topic).map_err(|e| MqttError::InvalidConfig(e.to_string()))?;
        if self.interval.is_zero() || self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return invalid("interval and backoff must be positive, max_backoff ≥ initial_backoff".into());
        }
        if self.step_ms < 0 || self.start_ts_ms < 0 {
            return invalid("start_ts_ms and step_ms must not be negative".into());
        }
        Ok(())
    }
}

/// Counters of a simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MqttSimStats {
    /// Rounds fully handed to the client.
    pub rounds: u64,
    /// Messages handed to the client (malformed ones included).
    pub published: u64,
    /// Of those, deliberately malformed.
    pub malformed: u64,
    /// PUBACKs received from the broker (a message sent again after a reconnect may be acknowledged twice).
    pub confirmed: u64,
    /// Connections established.
    pub connects: u64,
    pub connection_errors: u64,
    /// Whether publishing is paused.
    pub paused: bool,
}

/// The faults of a group of simulated meters, as a control API sets them. `MqttFault::default()` is a
/// healthy group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttFault {
    /// Publish nothing (the connection stays up), as [`MqttSim::pause`].
    pub paused: bool,
    /// Malformed messages still to send, one before each of the next readings (see [`MqttSim::inject_malformed`]).
    pub malformed: u64,
}

/// A cloneable handle on a running simulator's controls and counters, for a control API that also serves other
/// simulators. It does not keep the simulator running: once the [`MqttSim`] is shut down, faults set here
/// change nothing.
#[derive(Debug, Clone)]
pub struct MqttSimHandle {
    stats: watch::Sender<MqttSimStats>,
    controls: Arc<watch::Sender<Controls>>,
}

impl MqttSimHandle {
    pub fn stats(&self) -> MqttSimStats {
        self.stats.borrow().clone()
    }

    /// Whether publishing is paused, and the malformed messages not sent yet.
    pub fn fault(&self) -> MqttFault {
        let controls = self.controls.borrow();
        MqttFault { paused: controls.paused, malformed: controls.malformed_pending }
    }

    /// Replaces the fault: pauses or resumes, and sets the number of malformed messages still to send.
    pub fn set_fault(&self, fault: MqttFault) {
        self.controls.send_modify(|c| {
            c.paused = fault.paused;
            c.malformed_pending = fault.malformed;
        });
        self.stats.send_modify(|s| s.paused = fault.paused);
        tracing::info!(message = "fault set", fault = ?fault);
    }
}

/// Runtime controls shared with the publishing task.
#[derive(Debug, Default)]
struct Controls {
    paused: bool,
    malformed_pending: u64,
}

/// A running simulator. Dropping it stops it.
#[derive(Debug)]
pub struct MqttSim {
    stats: watch::Sender<MqttSimStats>,
    controls: Arc<watch::Sender<Controls>>,
    tasks: Vec<JoinHandle<()>>,
}

impl MqttSim {
    /// Checks `spec` and starts publishing (call it inside a Tokio runtime).
    pub fn start(spec: MqttSimSpec) -> Result<MqttSim, MqttError> {
        spec.check()?;
        let mut options = MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
        options.set_keep_alive(Duration::from_secs(30)).set_clean_session(false).set_max_packet_size(1 << 20, 1 << 20);
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (stats, _) = watch::channel(MqttSimStats { paused: spec.start_paused, ..MqttSimStats::default() });
        let controls = Arc::new(watch::Sender::new(Controls { paused: spec.start_paused, malformed_pending: 0 }));
        let span = tracing::info_span!("mqtt_sim", client_id = %spec.client_id);
        let poller = tokio::spawn(
            poll(eventloop, Backoff::new(spec.initial_backoff, spec.max_backoff), stats.clone())
                .instrument(span.clone()),
        );
        let publisher = tokio::spawn(publish(spec, client, Arc::clone(&controls), stats.clone()).instrument(span));
        Ok(MqttSim { stats, controls, tasks: vec![poller, publisher] })
    }

    pub fn stats(&self) -> MqttSimStats {
        self.stats.borrow().clone()
    }

    /// A receiver that sees every change of the counters.
    pub fn subscribe(&self) -> watch::Receiver<MqttSimStats> {
        self.stats.subscribe()
    }

    /// A handle for the fault-injection API (see [`MqttSimHandle`]).
    pub fn handle(&self) -> MqttSimHandle {
        MqttSimHandle { stats: self.stats.clone(), controls: Arc::clone(&self.controls) }
    }

    /// Messages handed to the client so far.
    pub fn published(&self) -> u64 {
        self.stats.borrow().published
    }

    /// Stops publishing after the message in progress; the connection stays up.
    pub fn pause(&self) {
        self.controls.send_modify(|c| c.paused = true);
        self.stats.send_modify(|s| s.paused = true);
    }

    pub fn resume(&self) {
        self.controls.send_modify(|c| c.paused = false);
        self.stats.send_modify(|s| s.paused = false);
    }

    /// Sends `count` malformed messages, one before each of the next `count` readings.
    pub fn inject_malformed(&self, count: u64) {
        self.controls.send_modify(|c| c.malformed_pending += count);
    }

    /// Stops both tasks (without a DISCONNECT: like a device losing power).
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MqttSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Polls the event loop for ever, counting PUBACKs and backing off after errors.
async fn poll(mut eventloop: EventLoop, mut backoff: Backoff, stats: watch::Sender<MqttSimStats>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff.connected();
                stats.send_modify(|s| s.connects += 1);
                tracing::debug!(message = "simulator connected", session_present = connack.session_present);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => stats.send_modify(|s| s.confirmed += 1),
            Ok(_) => {}
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(message = "simulator connection failed", error = %error, retry_in_ms = delay.as_millis() as u64);
                stats.send_modify(|s| s.connection_errors += 1);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One meter's simulated register.
struct Meter {
    id: String,
    index: usize,
    litres: u64,
    /// State of the meter's own random sequence (SplitMix64).
    rng: u64,
}

impl Meter {
    /// The next number of the meter's sequence below `n` (SplitMix64; the modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }

    fn status_bits(&self, round: u64) -> u64 {
        let battery = u64::from(self.index % 4 == 3) << 1;
        let tamper = u64::from((round + self.index as u64) % 10 == 9) << 2;
        battery | tamper
    }
}

/// Publishes rounds until the round limit, honouring pause and malformed injections.
async fn publish(
    spec: MqttSimSpec,
    client: AsyncClient,
    control: Arc<watch::Sender<Controls>>,
    stats: watch::Sender<MqttSimStats>,
) {
    let mut controls = control.subscribe();
    let mut meters: Vec<Meter> = spec
        .meters
        .iter()
        .enumerate()
        .map(|(index, id)| {
            // FNV-1a of the id: a seed per meter that does not depend on the meter's position or on std's hasher.
            let hash =
                id.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
            let mut meter = Meter { id: id.clone(), index, litres: 0, rng: spec.seed ^ hash };
            meter.litres = 1_000_000 + meter.below(9_000_000);
            meter
        })
        .collect();
    let mut ticks = tokio::time::interval(spec.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut malformed_sent = 0u64;
    for round in 0.. {
        if spec.rounds.is_some_and(|limit| round >= limit) {
            return;
        }
        ticks.tick().await;
        let ts = spec.ts_of_round(round);
        for meter in &mut meters {
            meter.litres += meter.below(40);
        }
        let messages: Vec<(String, String)> = match &spec.layout {
            SimLayout::PerMeter { topic } => meters
                .iter()
                .map(|m| {
                    let payload = format!(
                        r#"{{"meter":"{}","ts":{ts},"volume_l":{},"status":{}}}"#,
                        m.id,
                        m.litres,
                        m.status_bits(round)
                    );
                    (topic.replace(METER_PLACEHOLDER, &m.id), payload)
                })
                .collect(),
            SimLayout::Concentrator { id, topic } => {
                let entries: Vec<String> = meters
                    .iter()
                    .map(|m| {
                        let bits = m.status_bits(round);
                        let alarms: Vec<String> = STATUS_BITS
                            .iter()
                            .zip(VENDOR_NAMES)
                            .filter(|((bit, _), _)| bits & (1 << bit) != 0)
                            .map(|(_, (vendor, _))| format!("\"{vendor}\""))
                            .collect();
                        format!(
                            r#"{{"id":"{}","volume":{}.{:03},"unit":"m3","alarms":[{}]}}"#,
                            m.id,
                            m.litres / 1000,
                            m.litres % 1000,
                            alarms.join(",")
                        )
                    })
                    .collect();
                let payload = format!(
                    r#"{{"concentrator":"{id}","time":"{}","meters":[{}]}}"#,
                    ms_to_rfc3339(ts),
                    entries.join(",")
                );
                vec![(topic.clone(), payload)]
            }
        };
        for (topic, payload) in messages {
            // Paused: wait here, between two messages, until resumed.
            if controls.wait_for(|c| !c.paused).await.is_err() {
                return;
            }
            let inject = control.send_if_modified(|c| {
                let take = c.malformed_pending > 0;
                c.malformed_pending = c.malformed_pending.saturating_sub(1);
                take
            });
            if inject {
                let bad = malformed_payload(malformed_sent, &payload);
                malformed_sent += 1;
                if client.publish(topic.clone(), QoS::AtLeastOnce, false, bad).await.is_err() {
                    return;
                }
                stats.send_modify(|s| {
                    s.published += 1;
                    s.malformed += 1;
                });
            }
            if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                return;
            }
            stats.send_modify(|s| s.published += 1);
        }
        stats.send_modify(|s| s.rounds += 1);
    }
}

/// The `n`-th malformed payload: truncated JSON, then a JSON array, then a bare string, in turn.
fn malformed_payload(n: u64, good: &str) -> Vec<u8> {
    match n % 3 {
        0 => good.as_bytes().get(..good.len() / 2).unwrap_or_default().to_vec(),
        1 => b"[]".to_vec(),
        _ => b"\"garbage\"".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_rejects_unknown_keys_and_fills_defaults() {
        let fault: MqttFault = serde_json::from_str(r#"{"malformed": 3}"#).expect("valid fault");
        assert_eq!(fault, MqttFault { paused: false, malformed: 3 });
        assert!(serde_json::from_str::<MqttFault>(r#"{"silent": true}"#).is_err());
    }

    #[tokio::test]
    async fn the_handle_pauses_and_queues_malformed_messages() {
        let spec = MqttSimSpec::new(
            "127.0.0.1",
            1,
            "t",
            vec!["M1".into()],
            SimLayout::PerMeter { topic: "water/{meter}/reading".into() },
        );
        let meters = MqttSim::start(MqttSimSpec { start_paused: true, ..spec }).expect("valid spec");
        let handle = meters.handle();
        assert_eq!(handle.fault(), MqttFault { paused: true, malformed: 0 });
        // Paused, so that nothing takes the malformed messages before they are looked at.
        handle.set_fault(MqttFault { paused: true, malformed: 2 });
        assert_eq!(handle.fault(), MqttFault { paused: true, malformed: 2 });
        handle.set_fault(MqttFault::default());
        assert_eq!(handle.fault(), MqttFault::default());
        assert!(!meters.stats().paused);
        meters.shutdown().await;
    }
}
