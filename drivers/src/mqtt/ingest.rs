//! The ingest client: subscribes to meter topics on a broker and hands every message, mapped to readings, to
//! the caller, who commits the readings and only then acknowledges the message (R-G2).
//!
//! # How it runs
//! One task owns the rumqttc event loop and polls it continuously (LIBRARY-NOTES.md §3). It never awaits a
//! request to rumqttc: subscriptions and acknowledgements are queued with `try_*` calls, so the task cannot wedge
//! on rumqttc's own request channel. After a connection error it sleeps a capped, doubling delay before the next
//! attempt ([`MqttSettings::initial_backoff`] up to [`MqttSettings::max_backoff`]).
//!
//! # Not losing a message
//! - The session is persistent: a stable client id and `clean_session = false`. While the server is away the
//!   broker queues QoS 1 messages for it, and messages delivered but not acknowledged are delivered again when
//!   the session resumes.
//! - Acknowledgements are manual. A message's PUBACK is sent only when the caller calls [`AckHandle::ack`], i.e.
//!   after it has committed the readings. A message delivered on a connection that has since broken is not
//!   acknowledged any more (the ack counts in [`IngestStats::stale_acks`]): the broker delivers it again on the
//!   new connection, and the caller, whose commits must be idempotent (keyed by meter and time), acks that copy.
//! - Subscriptions (QoS 1) are made on the first connection of this process, and again whenever the broker
//!   answers a reconnect with `session_present = false` (it lost or expired the session, and with it whatever it
//!   had queued: counted in [`IngestStats::sessions_lost`]).
//!
//! # Back-pressure
//! Messages go to the caller through its bounded channel. While that channel is full the task waits, and the
//! broker holds further messages back once its in-flight window of unacknowledged messages is full (Mosquitto:
//! `max_inflight_messages`, 20). If the caller stalls for longer than the keep-alive, the broker drops the
//! connection; nothing is lost, since nothing unacknowledged is forgotten.
//!
//! # Bad input
//! A payload that does not map ([`MapError`]), or a message on a topic no configured filter matches (a
//! subscription left in the persistent session by an older configuration), is counted in
//! [`IngestStats::malformed`], logged with its topic, and handed over with `readings: Err(..)`. Its
//! [`AckHandle`] acknowledges it even when simply dropped, so that the broker does not deliver poison for ever.
//! Nothing else is disturbed.
//!
//! **Limits:** no TLS (rumqttc is built without default features); MQTT 3.1.1 only. rumqttc refuses an incoming
//! packet above [`MqttSettings::max_packet_size`] by dropping the connection, and the broker would deliver the
//! same packet again: keep the limit above anything a concentrator can send (or cap it on the broker,
//! Mosquitto's `message_size_limit`).
//!
//! This module does not store readings and does not know what a meter is beyond its id.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, Publish, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::backoff::Backoff;
use super::mapping::{map, MapError, MappedReading, MeterSource, PayloadMapping};
use super::topic::{check_filter, filter_has_level, topic_matches};
use super::MqttError;
use crate::log_limit::LogLimit;

/// How long [`MqttIngest::shutdown`] waits for the queued acknowledgements and the DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// Requests (acknowledgements, subscriptions) rumqttc's channel holds beyond the caller's channel capacity.
const REQUEST_SLACK: usize = 64;

/// Connection and subscription settings of one ingest client.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    /// Must stay the same across restarts: the broker keeps the session (subscriptions, queued and
    /// unacknowledged messages) under this id. Two clients with one id throw each other off the broker.
    pub client_id: String,
    pub username: Option<String>,
    /// Only with a username.
    pub password: Option<String>,
    /// 0 disables keep-alive pings; otherwise whole seconds from 1 s to 65 535 s.
    pub keep_alive: Duration,
    /// Topic filters with the mapping of the payloads that come on them. A message is mapped by the first filter
    /// (in this order) that its topic matches.
    pub topics: Vec<(String, PayloadMapping)>,
    /// First delay after a connection error; it doubles after each further error.
    pub initial_backoff: Duration,
    /// The delay never exceeds this. A connection that stayed up this long starts again from the initial delay.
    pub max_backoff: Duration,
    /// Bound on the TCP connect and the CONNECT/CONNACK exchange; whole seconds, at least 1.
    pub connect_timeout: Duration,
    /// Largest MQTT packet accepted (and sent), in bytes.
    pub max_packet_size: usize,
}

impl MqttSettings {
    /// Settings with no topics yet and these defaults: no credentials, keep-alive 30 s, backoff 500 ms doubling up
    /// to 30 s, connect timeout 10 s, packets up to 1 MiB.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> MqttSettings {
        MqttSettings {
            host: host.into(),
            port,
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            topics: Vec::new(),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_packet_size: 1024 * 1024,
        }
    }

    /// Every problem of these settings, as `(key, reason)`; keys are those of the proposed TOML
    /// (`topics[1].meter_topic_level`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |key: &str, reason: String| out.push((key.to_owned(), reason));
        if self.host.trim().is_empty() {
            add("host", "must not be empty".into());
        }
        if self.port == 0 {
            add("port", "must not be 0".into());
        }
        if self.client_id.is_empty() {
            add("client_id", "must not be empty: a persistent session needs a stable client id".into());
        } else if self.client_id.len() > 65_535 || self.client_id.contains(['\0', '+', '#', '/']) {
            add("client_id", format!("{:?} is not usable as an MQTT client id", self.client_id));
        }
        if self.password.is_some() && self.username.is_none() {
            add("password", "a password needs a username (MQTT 3.1.1)".into());
        }
        let ka = self.keep_alive;
        if !ka.is_zero() && (ka < Duration::from_secs(1) || ka.subsec_nanos() != 0 || ka.as_secs() > 65_535) {
            add("keep_alive", format!("must be 0 or whole seconds from 1 to 65535, not {ka:?}"));
        }
        if self.initial_backoff.is_zero() {
            add("initial_backoff", "must be longer than zero".into());
        }
        if self.max_backoff < self.initial_backoff {
            add("max_backoff", "must not be shorter than initial_backoff".into());
        }
        if self.connect_timeout < Duration::from_secs(1) || self.connect_timeout.subsec_nanos() != 0 {
            add("connect_timeout", format!("must be whole seconds, at least 1, not {:?}", self.connect_timeout));
        }
        if self.max_packet_size < 64 {
            add("max_packet_size", "must be at least 64 bytes".into());
        }
        if self.topics.is_empty() {
            add("topics", "at least one topic filter is needed".into());
        }
        for (i, (filter, mapping)) in self.topics.iter().enumerate() {
            if let Err(reason) = check_filter(filter) {
                add(&format!("topics[{i}].filter"), reason.to_string());
            }
            for (key, reason) in mapping.problems() {
                add(&format!("topics[{i}].{key}"), reason);
            }
            if let MeterSource::TopicLevel(level) = mapping.meter {
                if !filter_has_level(filter, level) {
                    add(
                        &format!("topics[{i}].meter_topic_level"),
                        format!("topics matching {filter:?} do not all have a level {level} (levels count from 0)"),
                    );
                }
            }
        }
        out
    }

    /// The first problem, as an error.
    pub fn check(&self) -> Result<(), MqttError> {
        match self.problems().into_iter().next() {
            Some((key, reason)) => Err(MqttError::InvalidConfig(format!("{key}: {reason}"))),
            None => Ok(()),
        }
    }

    fn options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(self.max_packet_size, self.max_packet_size);
        if let Some(username) = &self.username {
            options.set_credentials(username.clone(), self.password.clone().unwrap_or_default());
        }
        options
    }
}

/// One message from the broker, mapped.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    /// The readings, or why the payload gave none (then the message is already counted as malformed).
    pub readings: Result<Vec<MappedReading>, MapError>,
    /// The broker marked this as a delivery it may have made before (MQTT DUP flag); the readings may already
    /// be committed. Commits must be idempotent in any case: a redelivery does not always carry the flag.
    pub duplicate: bool,
    /// Call [`AckHandle::ack`] once the readings are committed.
    pub ack: AckHandle,
}

/// The acknowledgement of one message. [`AckHandle::ack`] sends the PUBACK; dropping the handle of a message
/// that had readings sends nothing, so the broker delivers the message again after the next reconnect.
/// A message without readings (malformed) is acknowledged when its handle is dropped, too.
#[derive(Debug)]
pub struct AckHandle {
    /// `None` for QoS 0 (nothing to acknowledge) or once sent.
    pending: Option<PendingAck>,
    ack_on_drop: bool,
}

#[derive(Debug)]
struct PendingAck {
    /// Only QoS and packet id matter to rumqttc; topic and payload are left empty.
    publish: Publish,
    /// The connection the message came on.
    connection: u64,
    acks: Arc<AckPath>,
}

impl AckHandle {
    /// Whether acknowledging still has something to do (a QoS 1 message not yet acknowledged).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The readings are committed: acknowledge the message to the broker.
    pub fn ack(mut self) {
        self.send();
    }

    fn send(&mut self) {
        if let Some(p) = self.pending.take() {
            p.acks.ack(p.publish, p.connection);
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if self.ack_on_drop {
            self.send();
        }
    }
}

/// Counters of an ingest client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// PUBLISH packets received, redeliveries included.
    pub received: u64,
    /// Of those, marked as redelivered (DUP).
    pub redelivered: u64,
    /// Messages that gave no readings (bad payload, or a topic no filter matches).
    pub malformed: u64,
    /// PUBACKs written to the connection. One the broker had not read when the connection broke is lost, and
    /// its message delivered again: a duplicate, never a loss.
    pub acked: u64,
    /// Acknowledgements not sent because their message came on a connection that has since broken (the broker
    /// delivers such a message again).
    pub stale_acks: u64,
    /// Connections established (CONNACK received).
    pub connects: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Reconnects where the broker had kept no session: whatever it had queued for us is gone.
    pub sessions_lost: u64,
    /// SUBACKs received that granted every filter.
    pub subscriptions: u64,
    /// Failed connection attempts and broken connections.
    pub connection_errors: u64,
    /// The delay slept after the latest connection error.
    pub last_backoff: Option<Duration>,
    /// The latest connection error, for a status page.
    pub last_error: Option<String>,
}

/// What acknowledgements need: the client, the current connection number, and a backlog for when rumqttc's
/// request channel is momentarily full.
#[derive(Debug)]
struct AckPath {
    client: AsyncClient,
    /// Bumped whenever a connection breaks.
    connection: AtomicU64,
    /// Acknowledgements waiting for room in rumqttc's request channel, in the order they were given. Bounded by
    /// the messages delivered and not yet acknowledged.
    backlog: Mutex<VecDeque<(u64, Publish)>>,
    stats: watch::Sender<IngestStats>,
}

impl AckPath {
    fn ack(&self, publish: Publish, connection: u64) {
        if self.connection.load(Ordering::SeqCst) != connection {
            tracing::debug!(message = "ack of a message from a broken connection dropped; the broker redelivers it");
            self.stats.send_modify(|s| s.stale_acks += 1);
            return;
        }
        let mut backlog = self.backlog.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Keep the order: while older acks wait, newer ones queue behind them.
        if backlog.is_empty() && self.client.try_ack(&publish).is_ok() {
            return;
        }
        backlog.push_back((connection, publish));
    }

    /// Moves waiting acknowledgements into rumqttc's channel while there is room. Called by the event-loop task.
    fn drain(&self) {
        let current = self.connection.load(Ordering::SeqCst);
        let mut backlog = self.backlog.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some((connection, publish)) = backlog.front() {
            if *connection != current {
                self.stats.send_modify(|s| s.stale_acks += 1);
            } else if self.client.try_ack(publish).is_err() {
                return;
            }
            backlog.pop_front();
        }
    }
}

/// A running ingest client. Dropping it stops it; [`MqttIngest::shutdown`] also lets queued acknowledgements
/// out and disconnects cleanly.
#[derive(Debug)]
pub struct MqttIngest {
    acks: Arc<AckPath>,
    connected: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MqttIngest {
    /// Checks `settings` and starts the event-loop task (call it inside a Tokio runtime). Messages go to
    /// `deliver`; when its receiver is dropped the client stops.
    pub fn start(settings: MqttSettings, deliver: mpsc::Sender<Incoming>) -> Result<MqttIngest, MqttError> {
        settings.check()?;
        let (client, mut eventloop) =
            AsyncClient::new(settings.options(), deliver.max_capacity().saturating_add(REQUEST_SLACK));
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(settings.connect_timeout.as_secs());
        eventloop.set_network_options(network);

        let (stats, _) = watch::channel(IngestStats::default());
        let acks = Arc::new(AckPath { client, connection: AtomicU64::new(0), backlog: Mutex::default(), stats });
        let (connected_tx, connected) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let span = tracing::info_span!(
            "mqtt_ingest",
            client_id = %settings.client_id,
            broker = %format_args!("{}:{}", settings.host, settings.port),
        );
        let worker = Worker {
            backoff: Backoff::new(settings.initial_backoff, settings.max_backoff),
            settings,
            acks: Arc::clone(&acks),
            connected: connected_tx,
            deliver,
            refusal_log: LogLimit::new(LOGGED_REFUSALS_PER_MINUTE, Duration::from_secs(60)),
        };
        let task = tokio::spawn(worker.run(eventloop, stop_rx).instrument(span));
        Ok(MqttIngest { acks, connected, stop: Some(stop), task: Some(task) })
    }

    /// Whether the client is connected now; watch it to see changes.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IngestStats {
        self.acks.stats.borrow().clone()
    }

    /// A receiver that sees every change of the counters, to wait for one (`wait_for`).
    pub fn subscribe_stats(&self) -> watch::Receiver<IngestStats> {
        self.acks.stats.subscribe()
    }

    pub fn received(&self) -> u64 {
        self.acks.stats.borrow().received
    }

    pub fn malformed(&self) -> u64 {
        self.acks.stats.borrow().malformed
    }

    pub fn acked(&self) -> u64 {
        self.acks.stats.borrow().acked
    }

    pub fn reconnects(&self) -> u64 {
        self.acks.stats.borrow().reconnects
    }

    /// Stops the client: sends the acknowledgements already given, disconnects (the broker keeps the session),
    /// waits until the broker has closed the connection, so it has read every acknowledgement, and until the
    /// task has ended. Messages delivered and not acknowledged come again on the next start.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The task ends within DISCONNECT_GRACE; the bound here only guards against a bug.
            let handle = task.abort_handle();
            if tokio::time::timeout(DISCONNECT_GRACE * 2, task).await.is_err() {
                handle.abort();
            }
        }
        tracing::info!(message = "mqtt ingest stopped");
    }
}

impl Drop for MqttIngest {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The state of the event-loop task.
struct Worker {
    settings: MqttSettings,
    acks: Arc<AckPath>,
    connected: watch::Sender<bool>,
    deliver: mpsc::Sender<Incoming>,
    backoff: Backoff,
    /// Refused payloads are all counted, but at most a burst of them logged per minute.
    refusal_log: LogLimit,
}

/// Refused payloads logged per minute at most.
const LOGGED_REFUSALS_PER_MINUTE: u32 = 20;

/// What the loop does after an event.
enum Next {
    Continue,
    Stop,
}

impl Worker {
    async fn run(mut self, mut eventloop: EventLoop, mut stop: oneshot::Receiver<()>) {
        let mut first_connection = true;
        let mut subscribe_due = false;
        loop {
            let event = tokio::select! {
                biased;
                _ = &mut stop => break,
                event = eventloop.poll() => event,
            };
            let next = match event {
                Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                    self.backoff.connected();
                    self.connected.send_replace(true);
                    let resumed = connack.session_present;
                    if first_connection || !resumed {
                        subscribe_due = true;
                    }
                    self.acks.stats.send_modify(|s| {
                        s.connects += 1;
                        if !first_connection {
                            s.reconnects += 1;
                            s.sessions_lost += u64::from(!resumed);
                        }
                    });
                    if !first_connection && !resumed {
                        tracing::warn!(
                            message =
                                "broker kept no session; messages it had queued for us are lost, subscribing again"
                        );
                    }
                    tracing::info!(message = "mqtt connected", session_present = resumed);
                    first_connection = false;
                    Next::Continue
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => self.deliver(publish, &mut stop).await,
                Ok(Event::Incoming(Packet::SubAck(suback))) => {
                    self.check_suback(&suback.return_codes);
                    Next::Continue
                }
                Ok(Event::Outgoing(Outgoing::PubAck(_))) => {
                    self.acks.stats.send_modify(|s| s.acked += 1);
                    Next::Continue
                }
                Ok(_) => Next::Continue,
                Err(error) => self.connection_failed(&error, &mut stop).await,
            };
            if let Next::Stop = next {
                break;
            }
            if subscribe_due {
                let filters = self
                    .settings
                    .topics
                    .iter()
                    .map(|(filter, _)| SubscribeFilter::new(filter.clone(), QoS::AtLeastOnce));
                // Not awaited: with the channel full it is tried again after the next event.
                subscribe_due = self.acks.client.try_subscribe_many(filters).is_err();
            }
            self.acks.drain();
        }
        self.disconnect(&mut eventloop).await;
    }

    /// Maps one message and hands it to the caller, waiting while the caller's channel is full.
    async fn deliver(&mut self, publish: Publish, stop: &mut oneshot::Receiver<()>) -> Next {
        let topic = publish.topic.clone();
        let readings = match self.settings.topics.iter().find(|(filter, _)| topic_matches(filter, &topic)) {
            Some((_, mapping)) => map(mapping, &topic, &publish.payload),
            None => Err(MapError::NoMapping { topic: topic.clone() }),
        };
        let malformed = readings.is_err();
        self.acks.stats.send_modify(|s| {
            s.received += 1;
            s.redelivered += u64::from(publish.dup);
            s.malformed += u64::from(malformed);
        });
        if let Err(error) = &readings {
            if let Some(suppressed) = self.refusal_log.check() {
                tracing::warn!(message = "mqtt payload refused", topic = %topic, error = %error, not_logged_before = suppressed);
            }
        }
        let pending = (publish.qos != QoS::AtMostOnce).then(|| {
            let mut header = Publish::new("", publish.qos, Vec::new());
            header.pkid = publish.pkid;
            PendingAck {
                publish: header,
                connection: self.acks.connection.load(Ordering::SeqCst),
                acks: Arc::clone(&self.acks),
            }
        });
        let incoming =
            Incoming { topic, readings, duplicate: publish.dup, ack: AckHandle { pending, ack_on_drop: malformed } };
        tokio::select! {
            biased;
            _ = stop => Next::Stop,
            sent = self.deliver.send(incoming) => match sent {
                Ok(()) => Next::Continue,
                Err(_) => {
                    tracing::info!(message = "reading receiver dropped; the mqtt ingest stops");
                    Next::Stop
                }
            },
        }
    }

    fn check_suback(&self, codes: &[SubscribeReasonCode]) {
        let mut all_granted = true;
        for (code, (filter, _)) in codes.iter().zip(&self.settings.topics) {
            if *code == SubscribeReasonCode::Failure {
                all_granted = false;
                tracing::warn!(message = "broker refused a subscription", filter = %filter);
            }
        }
        if all_granted {
            tracing::debug!(message = "subscribed", filters = self.settings.topics.len());
            self.acks.stats.send_modify(|s| s.subscriptions += 1);
        }
    }

    /// Records a connection error and sleeps the backoff delay (or until stopped).
    async fn connection_failed(&mut self, error: &ConnectionError, stop: &mut oneshot::Receiver<()>) -> Next {
        // Acknowledgements given from now on belong to a dead connection.
        self.acks.connection.fetch_add(1, Ordering::SeqCst);
        self.connected.send_replace(false);
        let delay = self.backoff.next_delay();
        tracing::warn!(
            message = "mqtt connection failed; retrying after a delay",
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
        );
        self.acks.stats.send_modify(|s| {
            s.connection_errors += 1;
            s.last_backoff = Some(delay);
            s.last_error = Some(error.to_string());
        });
        tokio::select! {
            biased;
            _ = stop => Next::Stop,
            () = tokio::time::sleep(delay) => Next::Continue,
        }
    }

    /// Lets queued acknowledgements out, then disconnects, within [`DISCONNECT_GRACE`].
    ///
    /// A PUBACK written to the socket is not yet a PUBACK the broker has processed: a broker reads a connection
    /// packet by packet, and when a new connection takes over the client id (a restarted server) or the broker
    /// stops, what it has not read yet is dropped, and the messages come again. So this waits until the broker
    /// closes the connection in answer to the DISCONNECT, which it does after everything sent before it.
    async fn disconnect(&self, eventloop: &mut EventLoop) {
        self.acks.drain();
        if !*self.connected.borrow() || self.acks.client.try_disconnect().is_err() {
            self.connected.send_replace(false);
            return;
        }
        let flushed = tokio::time::timeout(DISCONNECT_GRACE, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::PubAck(_))) => self.acks.stats.send_modify(|s| s.acked += 1),
                    // Messages still arriving are not handed over; the broker delivers them again next time.
                    Ok(_) => {}
                    // The broker closed the connection (after the DISCONNECT), or it broke: either way, done.
                    Err(_) => return,
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::debug!(message = "mqtt disconnect did not complete in time");
        }
        self.connected.send_replace(false);
    }
}
