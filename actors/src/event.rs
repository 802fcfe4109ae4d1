//! Facts that happen to devices and to the server: comm lost and restored, path switches, restarts, limit
//! crossings. A closed enum: everything that can happen is listed here.
//!
//! Events are **durable** (DESIGN §12). [`EventBus::publish`] hands an event to a pump task that commits it
//! through the store writer (`Op::Event`); the writer gives it a change-feed sequence number in that commit
//! and only then delivers it to subscribers (the live hub). So every event a screen shows is in the store, a
//! reload or a second operator sees past events (`Store::events`), and the alarm engine, the notifier and
//! billing read them from the feed with a cursor of their own. The broadcast to subscribers stays lossy
//! (a slow subscriber sees `Lagged`): it is for screens only.
//!
//! What this module does not do: decide what an event means (alarms do), or render it in a language (the
//! HMI renders `kind` + `params`; `message` is the English text for logs and scripts).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::model::{
    CommEvent, DeviceId, ErrorCode, ErrorParams, FaultClearing, LiveEvent, MeterId, RegionId, SwitchReason, Timestamp,
    ValveState,
};
use crate::store::{Op, StoreHandle};

/// Which limit a water-quality value crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSide {
    Low,
    High,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A device missed two consecutive cycles (R-A4).
    /// `error` is the last error's English text; `error_code` and `error_params` render it in a language
    /// (issue 7 §7; absent when the error had no code, and in events stored before them).
    CommLost {
        device: DeviceId,
        region: RegionId,
        ts: Timestamp,
        misses: u32,
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<ErrorCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_params: Option<ErrorParams>,
    },
    /// Data flows again from a comm-lost device.
    CommRestored { device: DeviceId, region: RegionId, ts: Timestamp, after_misses: u32 },
    /// One meter behind a device that delivers data missed two consecutive cycles (issue 7 §4). Not raised
    /// while the device itself is comm-lost: `CommLost` covers its meters.
    MeterCommLost { device: DeviceId, meter: MeterId, region: RegionId, ts: Timestamp, misses: u32 },
    /// Data flows again from a comm-lost meter.
    MeterCommRestored { device: DeviceId, meter: MeterId, region: RegionId, ts: Timestamp, after_misses: u32 },
    /// A device moved to another communication path (R-A8).
    PathSwitched { device: DeviceId, region: RegionId, ts: Timestamp, from: String, to: String, reason: SwitchReason },
    /// A valve went into fault: a command was not confirmed, or the valve reports a fault (R-A7, issue 7 §5).
    /// `reason` is the English text; `error_code` and `error_params` render it in a language (issue 7 §7;
    /// absent in events stored before them).
    ValveFault {
        device: DeviceId,
        region: RegionId,
        ts: Timestamp,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<ErrorCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_params: Option<ErrorParams>,
    },
    /// A valve's fault cleared: a read-back showed the commanded position, or an operator reset it.
    ValveFaultCleared { device: DeviceId, region: RegionId, ts: Timestamp, how: FaultClearing },
    /// A valve's position changed (issue 9 §1): `uncommanded` when a poll found it moved with no command
    /// running and away from its last commanded position (or with no command ever); not when it returned
    /// to that position, or when a command succeeded (then `from` is where it was before the command).
    ValveMoved {
        device: DeviceId,
        region: RegionId,
        ts: Timestamp,
        from: ValveState,
        to: ValveState,
        uncommanded: bool,
    },
    /// A supervised actor stopped and will be restarted after `delay`.
    #[serde(rename = "actor_restart")]
    ChildRestarting {
        supervisor: String,
        child: String,
        reason: String,
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// A water-quality value left its acceptable range (R-A6, GB 5749-2022 limits from configuration).
    LimitCrossed {
        device: DeviceId,
        region: RegionId,
        ts: Timestamp,
        parameter: String,
        value: f64,
        unit: String,
        side: LimitSide,
        limit: Option<f64>,
    },
    /// A water-quality value is back within its range after a crossing.
    LimitCleared { device: DeviceId, region: RegionId, ts: Timestamp, parameter: String, value: f64, unit: String },
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Event {
    /// The stable code of the event (the serde tag), as the HMI and the journal filter name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::CommLost { .. } => "comm_lost",
            Event::CommRestored { .. } => "comm_restored",
            Event::MeterCommLost { .. } => "meter_comm_lost",
            Event::MeterCommRestored { .. } => "meter_comm_restored",
            Event::PathSwitched { .. } => "path_switched",
            Event::ValveFault { .. } => "valve_fault",
            Event::ValveFaultCleared { .. } => "valve_fault_cleared",
            Event::ValveMoved { .. } => "valve_moved",
            Event::ChildRestarting { .. } => "actor_restart",
            Event::LimitCrossed { .. } => "limit_crossed",
            Event::LimitCleared { .. } => "limit_cleared",
        }
    }

    /// A device went comm-lost with the last error of `status`.
    pub fn comm_lost(
        device: &DeviceId,
        region: &RegionId,
        ts: Timestamp,
        misses: u32,
        status: &crate::model::CommStatus,
    ) -> Event {
        Event::CommLost {
            device: device.clone(),
            region: region.clone(),
            ts,
            misses,
            error: status.last_error.clone(),
            error_code: status.last_error_code,
            error_params: status.last_error_code.and(status.last_error_params.clone()),
        }
    }

    /// When it happened, if the event says so itself.
    pub fn ts(&self) -> Option<Timestamp> {
        match self {
            // A restart is stamped when it is published.
            Event::ChildRestarting { .. } => None,
            other => other.to_live(Timestamp(0)).map(|l| l.ts),
        }
    }

    /// The event as the HMI shows it, if the HMI shows it at all.
    pub fn to_live(&self, now: Timestamp) -> Option<LiveEvent> {
        match self {
            Event::CommLost { device, region, ts, misses, error, .. } => Some(LiveEvent {
                kind: "comm_lost",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: match error {
                    Some(e) => format!("{misses} consecutive cycles missed: {e}"),
                    None => format!("{misses} consecutive cycles missed"),
                },
            }),
            Event::CommRestored { device, region, ts, after_misses } => Some(LiveEvent {
                kind: "comm_restored",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: format!("data flows again after {after_misses} missed cycles"),
            }),
            Event::MeterCommLost { device, meter, region, ts, misses } => Some(LiveEvent {
                kind: "meter_comm_lost",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: format!("meter {meter}: {misses} consecutive cycles missed"),
            }),
            Event::MeterCommRestored { device, meter, region, ts, after_misses } => Some(LiveEvent {
                kind: "meter_comm_restored",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: format!("meter {meter}: data flows again after {after_misses} missed cycles"),
            }),
            Event::PathSwitched { device, region, ts, from, to, reason } => Some(LiveEvent {
                kind: "path_switched",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: match reason {
                    SwitchReason::Failover => format!("{from} failed; now on {to}"),
                    SwitchReason::PrimaryRecovered => format!("primary answers again; back from {from} to {to}"),
                },
            }),
            Event::ValveFault { device, region, ts, reason, .. } => Some(LiveEvent {
                kind: "valve_fault",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: reason.clone(),
            }),
            Event::ValveFaultCleared { device, region, ts, how } => Some(LiveEvent {
                kind: "valve_fault_cleared",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: match how {
                    FaultClearing::ReadBack { state } => format!("read back {}", state.as_str()),
                    FaultClearing::Reset { by, reason } => format!("reset by {by}: {reason}"),
                },
            }),
            Event::ValveMoved { device, region, ts, from, to, uncommanded } => Some(LiveEvent {
                kind: "valve_moved",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: if *uncommanded {
                    format!("moved from {} to {} without a command", from.as_str(), to.as_str())
                } else {
                    format!("{} as commanded (was {})", to.as_str(), from.as_str())
                },
            }),
            Event::ChildRestarting { supervisor, child, reason, delay } => Some(LiveEvent {
                kind: "actor_restart",
                device: None,
                region: None,
                ts: now,
                message: format!("{supervisor}/{child} {reason}; restart in {} ms", delay.as_millis()),
            }),
            Event::LimitCrossed { device, region, ts, parameter, value, unit, side, limit } => Some(LiveEvent {
                kind: "limit_crossed",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: match (side, limit) {
                    (LimitSide::Low, Some(l)) => format!("{parameter} {value} {unit} below its low limit {l}"),
                    (LimitSide::High, Some(l)) => format!("{parameter} {value} {unit} above its high limit {l}"),
                    (LimitSide::Low, None) => format!("{parameter} {value} {unit} below its low limit"),
                    (LimitSide::High, None) => format!("{parameter} {value} {unit} above its high limit"),
                },
            }),
            Event::LimitCleared { device, region, ts, parameter, value, unit } => Some(LiveEvent {
                kind: "limit_cleared",
                device: Some(device.clone()),
                region: Some(region.clone()),
                ts: *ts,
                message: format!("{parameter} {value} {unit} back within its limits"),
            }),
        }
    }
}

/// A committed event: its change-feed sequence number, when it happened, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub ts: Timestamp,
    pub event: Event,
}

/// An event as screens and the API show it: the live rendering, its feed sequence number (`id`, so a page
/// can merge history and live frames without duplicates), and its parameters for rendering in a language.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    pub id: u64,
    #[serde(flatten)]
    pub live: LiveEvent,
    /// The event's own fields (`misses`, `from`, `parameter`, …), values as strings.
    pub params: BTreeMap<String, String>,
}

impl EventRecord {
    pub fn view(&self) -> Option<EventView> {
        let live = self.event.to_live(self.ts)?;
        let mut params = BTreeMap::new();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&self.event) {
            for (k, v) in fields {
                let v = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                if k != "kind" {
                    params.insert(k, v);
                }
            }
        }
        Some(EventView { id: self.seq, live, params })
    }
}

/// Events waiting for their commit, at most this many; past it the store is not keeping up, and publishing
/// reports the loss loudly (metrics and an error log line) rather than growing without bound.
const PUMP_QUEUE: usize = 65_536;

/// Events taken into one store submission.
const PUMP_BATCH: usize = 1_024;

/// The bus of [`Event`]s: publish (durably, then broadcast) and subscribe. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<EventRecord>,
    pump: Option<mpsc::Sender<(Timestamp, Event)>>,
    clock: Option<SharedClock>,
    metrics: Option<Arc<Metrics>>,
    /// Sequence numbers of a volatile bus (no store; unit tests of parts that publish).
    volatile_seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("durable", &self.pump.is_some()).finish()
    }
}

impl EventBus {
    /// A bus without a store: events go straight to subscribers, numbered locally. For unit tests of parts
    /// that publish; the server always uses [`EventBus::durable`].
    pub fn volatile(capacity: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(capacity.max(1)).0,
            pump: None,
            clock: None,
            metrics: None,
            volatile_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A bus whose events are committed through `store` before subscribers see them. The store writer must
    /// be given this bus ([`crate::store::StoreWriterArgs::events`]) so it can deliver what it committed.
    /// Must be called inside a tokio runtime (it starts the pump task).
    pub fn durable(capacity: usize, store: StoreHandle, clock: SharedClock, metrics: Arc<Metrics>) -> EventBus {
        let (pump_tx, pump_rx) = mpsc::channel(PUMP_QUEUE);
        tokio::spawn(pump(pump_rx, store, metrics.clone()));
        EventBus {
            tx: broadcast::channel(capacity.max(1)).0,
            pump: Some(pump_tx),
            clock: Some(clock),
            metrics: Some(metrics),
            volatile_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Publishes an event: it is committed, then delivered to subscribers. Never blocks.
    pub fn publish(&self, event: Event) {
        let ts = event.ts().or_else(|| self.clock.as_ref().map(|c| c.now())).unwrap_or(Timestamp(0));
        match &self.pump {
            Some(pump) => {
                if let Err(e) = pump.try_send((ts, event)) {
                    if let Some(m) = &self.metrics {
                        Metrics::inc(&m.events_dropped);
                    }
                    let event = match e {
                        mpsc::error::TrySendError::Full((_, ev)) | mpsc::error::TrySendError::Closed((_, ev)) => ev,
                    };
                    tracing::error!(message = "Event not recorded: the store is not keeping up.", kind = event.kind(), event = ?event);
                }
            }
            None => {
                let seq = self.volatile_seq.fetch_add(1, Ordering::SeqCst) + 1;
                self.deliver(EventRecord { seq, ts, event });
            }
        }
    }

    /// Hands a committed event to subscribers (the store writer calls this after the commit).
    pub(crate) fn deliver(&self, record: EventRecord) {
        // No receiver is not an error: nobody is listening yet.
        let _ = self.tx.send(record);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    /// Logs and publishes a device's change of comm-lost state (R-A4), with the last error of `status` (its
    /// text, code and parameters) when lost.
    pub fn comm_status(
        &self,
        event: CommEvent,
        device: &DeviceId,
        region: &RegionId,
        ts: Timestamp,
        status: &crate::model::CommStatus,
    ) {
        match event {
            CommEvent::Lost { misses } => self.comm_lost(Event::comm_lost(device, region, ts, misses, status)),
            restored => self.comm(restored, device, region, ts, None),
        }
    }

    /// Logs and publishes an [`Event::CommLost`] (anything else is published as it is).
    pub fn comm_lost(&self, event: Event) {
        if let Event::CommLost { device, region, misses, error, .. } = &event {
            tracing::warn!(message = "Device comm-lost.", device = %device, region = %region, misses, error = error.as_deref().unwrap_or(""));
        }
        self.publish(event);
    }

    /// Logs and publishes a device's change of comm-lost state (R-A4) with an error text without a code.
    pub fn comm(&self, event: CommEvent, device: &DeviceId, region: &RegionId, ts: Timestamp, error: Option<String>) {
        match event {
            CommEvent::Lost { misses } => {
                let (device, region) = (device.clone(), region.clone());
                let (error_code, error_params) = (None, None);
                self.comm_lost(Event::CommLost { device, region, ts, misses, error, error_code, error_params });
            }
            CommEvent::Restored { after_misses } => {
                tracing::info!(message = "Device communication restored.", device = %device, region = %region, after_misses);
                self.publish(Event::CommRestored { device: device.clone(), region: region.clone(), ts, after_misses });
            }
        }
    }
}

impl EventBus {
    /// Logs and publishes a meter's change of comm-lost state (issue 7 §4).
    pub fn meter_comm(&self, event: CommEvent, device: &DeviceId, meter: &MeterId, region: &RegionId, ts: Timestamp) {
        let (device, meter, region) = (device.clone(), meter.clone(), region.clone());
        match event {
            CommEvent::Lost { misses } => {
                tracing::warn!(message = "Meter comm-lost.", device = %device, meter = %meter, region = %region, misses);
                self.publish(Event::MeterCommLost { device, meter, region, ts, misses });
            }
            CommEvent::Restored { after_misses } => {
                tracing::info!(message = "Meter communication restored.", device = %device, meter = %meter, region = %region, after_misses);
                self.publish(Event::MeterCommRestored { device, meter, region, ts, after_misses });
            }
        }
    }
}

/// Commits published events in order, as many per submission as are waiting. A failed commit is retried
/// with capped backoff (the writer may be restarting); events are never reordered or skipped.
async fn pump(mut rx: mpsc::Receiver<(Timestamp, Event)>, store: StoreHandle, metrics: Arc<Metrics>) {
    let mut batch: Vec<(Timestamp, Event)> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < PUMP_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let ops = batch.iter().map(|(ts, e)| Op::Event(*ts, e.clone())).collect();
            match store.submit(ops).await {
                Ok(_) => break,
                Err(error) => {
                    Metrics::inc(&metrics.event_commit_retries);
                    tracing::warn!(message = "Events not committed yet; retrying.", events = batch.len(), %error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_stored_form_and_kind_is_its_tag() {
        let d = DeviceId::new("c1");
        let r = RegionId::new("r1");
        let events = vec![
            Event::CommLost {
                device: d.clone(),
                region: r.clone(),
                ts: Timestamp(5),
                misses: 2,
                error: Some("x".into()),
                error_code: None,
                error_params: None,
            },
            Event::CommRestored { device: d.clone(), region: r.clone(), ts: Timestamp(6), after_misses: 3 },
            Event::MeterCommLost {
                device: d.clone(),
                meter: MeterId::new("m1"),
                region: r.clone(),
                ts: Timestamp(6),
                misses: 2,
            },
            Event::MeterCommRestored {
                device: d.clone(),
                meter: MeterId::new("m1"),
                region: r.clone(),
                ts: Timestamp(6),
                after_misses: 2,
            },
            Event::PathSwitched {
                device: d.clone(),
                region: r.clone(),
                ts: Timestamp(7),
                from: "a".into(),
                to: "b".into(),
                reason: SwitchReason::Failover,
            },
            Event::ChildRestarting {
                supervisor: "s".into(),
                child: "c".into(),
                reason: "failed".into(),
                delay: Duration::from_millis(250),
            },
            Event::LimitCrossed {
                device: d.clone(),
                region: r.clone(),
                ts: Timestamp(8),
                parameter: "free_chlorine".into(),
                value: 0.1,
                unit: "mg/L".into(),
                side: LimitSide::Low,
                limit: Some(0.3),
            },
            Event::LimitCleared {
                device: d,
                region: r,
                ts: Timestamp(9),
                parameter: "p".into(),
                value: 1.0,
                unit: "u".into(),
            },
        ];
        for e in events {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["kind"], e.kind(), "{json}");
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
            let view = EventRecord { seq: 9, ts: Timestamp(100), event: e.clone() }.view().unwrap();
            assert_eq!(view.live.kind, e.kind());
            assert!(!view.params.contains_key("kind"));
        }
    }

    #[test]
    fn a_view_carries_the_event_fields_as_params() {
        let e = Event::CommLost {
            device: DeviceId::new("c1"),
            region: RegionId::new("r1"),
            ts: Timestamp(5),
            misses: 2,
            error: None,
            error_code: None,
            error_params: None,
        };
        let v = EventRecord { seq: 3, ts: Timestamp(5), event: e }.view().unwrap();
        assert_eq!(v.id, 3);
        assert_eq!(v.params.get("misses").map(String::as_str), Some("2"));
        assert_eq!(v.params.get("device").map(String::as_str), Some("c1"));
        assert!(!v.params.contains_key("error"), "absent fields are left out");
    }

    #[test]
    fn a_comm_lost_event_carries_its_error_code_and_one_stored_without_it_still_reads() {
        let mut status = crate::model::CommStatus::new("p".into(), 1);
        let timeout = crate::model::CommError::new(ErrorCode::Timeout, "no reply within 250ms").with("ms", 250);
        status.record_failure(Timestamp(4), false, &timeout);
        let e = Event::comm_lost(&DeviceId::new("c1"), &RegionId::new("r1"), Timestamp(5), 2, &status);
        let v = EventRecord { seq: 3, ts: Timestamp(5), event: e.clone() }.view().unwrap();
        assert_eq!(v.params.get("error").map(String::as_str), Some("no reply within 250ms"));
        assert_eq!(v.params.get("error_code").map(String::as_str), Some("timeout"));
        assert_eq!(v.params.get("error_params").map(String::as_str), Some(r#"{"ms":250}"#));
        let mut old = serde_json::to_value(&e).unwrap();
        old.as_object_mut().unwrap().retain(|k, _| k != "error_code" && k != "error_params");
        let old: Event = serde_json::from_value(old).unwrap();
        assert!(matches!(old, Event::CommLost { error_code: None, error_params: None, .. }), "{old:?}");
    }

    #[test]
    fn meter_comm_events_render_for_the_live_stream() {
        let (device, meter, region) = (DeviceId::new("g1"), MeterId::new("CJ-2"), RegionId::new("east"));
        let lost = Event::MeterCommLost {
            device: device.clone(),
            meter: meter.clone(),
            region: region.clone(),
            ts: Timestamp(7),
            misses: 2,
        };
        let live = lost.to_live(Timestamp(0)).expect("shown");
        assert_eq!(
            (live.kind, live.device.as_ref(), live.region.as_ref(), live.ts),
            ("meter_comm_lost", Some(&device), Some(&region), Timestamp(7))
        );
        assert_eq!(live.message, "meter CJ-2: 2 consecutive cycles missed");
        let view = EventRecord { seq: 1, ts: Timestamp(7), event: lost }.view().unwrap();
        assert_eq!(view.params.get("meter").map(String::as_str), Some("CJ-2"), "the HMI can name the meter");
        let back = Event::MeterCommRestored { device, meter, region, ts: Timestamp(9), after_misses: 3 };
        let live = back.to_live(Timestamp(0)).expect("shown");
        assert_eq!(
            (live.kind, live.message.as_str()),
            ("meter_comm_restored", "meter CJ-2: data flows again after 3 missed cycles")
        );
    }

    #[tokio::test]
    async fn a_volatile_bus_numbers_and_delivers_at_once() {
        let bus = EventBus::volatile(8);
        let mut rx = bus.subscribe();
        bus.publish(Event::ChildRestarting {
            supervisor: "s".into(),
            child: "c".into(),
            reason: "r".into(),
            delay: Duration::ZERO,
        });
        let got = rx.recv().await.unwrap();
        assert_eq!(got.seq, 1);
    }
}
