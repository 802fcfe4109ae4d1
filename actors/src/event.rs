//! Facts broadcast to whoever listens (the live hub now; the alarm engine, notifications and work orders
//! later). A closed enum: everything that can happen is listed here.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::model::{CommEvent, DeviceId, LiveEvent, RegionId, SwitchReason, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A device missed two consecutive cycles (R-A4).
    CommLost { device: DeviceId, region: RegionId, ts: Timestamp, misses: u32, error: Option<String> },
    /// Data flows again from a comm-lost device.
    CommRestored { device: DeviceId, region: RegionId, ts: Timestamp, after_misses: u32 },
    /// A device moved to another communication path (R-A8).
    PathSwitched { device: DeviceId, region: RegionId, ts: Timestamp, from: String, to: String, reason: SwitchReason },
    /// A supervised actor stopped and will be restarted after `delay`.
    ChildRestarting { supervisor: String, child: String, reason: String, delay: Duration },
}

impl Event {
    /// The event as the HMI shows it, if the HMI shows it at all.
    pub fn to_live(&self, now: Timestamp) -> Option<LiveEvent> {
        match self {
            Event::CommLost { device, region, ts, misses, error } => Some(LiveEvent {
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
            Event::ChildRestarting { supervisor, child, reason, delay } => Some(LiveEvent {
                kind: "actor_restart",
                device: None,
                region: None,
                ts: now,
                message: format!("{supervisor}/{child} {reason}; restart in {} ms", delay.as_millis()),
            }),
        }
    }
}

/// The broadcast bus of [`Event`]s. Publishing never blocks; a slow listener loses the oldest events and is
/// told so by `RecvError::Lagged`.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus { tx: broadcast::channel(capacity.max(1)).0 }
    }
    pub fn publish(&self, event: Event) {
        // No receiver is not an error: nobody is listening yet.
        let _ = self.tx.send(event);
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Logs and publishes a device's change of comm-lost state (R-A4).
    pub fn comm(&self, event: CommEvent, device: &DeviceId, region: &RegionId, ts: Timestamp, error: Option<String>) {
        match event {
            CommEvent::Lost { misses } => {
                tracing::warn!(message = "Device comm-lost.", device = %device, region = %region, misses, error = error.as_deref().unwrap_or(""));
                self.publish(Event::CommLost { device: device.clone(), region: region.clone(), ts, misses, error });
            }
            CommEvent::Restored { after_misses } => {
                tracing::info!(message = "Device communication restored.", device = %device, region = %region, after_misses);
                self.publish(Event::CommRestored { device: device.clone(), region: region.clone(), ts, after_misses });
            }
        }
    }
}
