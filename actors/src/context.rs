//! What every device actor shares: the store (reads), the writer (commits), the live hub, the event bus, the
//! clock, the time rules and the counters. Cheap to clone; the tree hands a clone to each actor's arguments.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::event::EventBus;
use crate::hub::HubMsg;
use crate::metrics::Metrics;
use crate::store::{FieldStore, StoreHandle};
use crate::supervisor::Slot;

#[derive(Clone)]
pub struct DeviceContext {
    /// Field data as the store holds it (reads; writes go through `writer`).
    pub store: Arc<dyn FieldStore>,
    pub writer: StoreHandle,
    pub hub: Slot<HubMsg>,
    pub events: EventBus,
    pub clock: SharedClock,
    /// The utility's zone, the poll spread and the reading-time limits (issue 7 §4).
    pub time: Arc<crate::schedule::TimeRules>,
    pub metrics: Arc<Metrics>,
    /// The CJ/T 188 gateways' actors, by device id (valves on their meters go through them).
    pub gateways: Arc<std::collections::HashMap<String, Slot<crate::cjt188::Cjt188Msg>>>,
    /// The RS-485 lines, by id.
    pub buses: Arc<std::collections::HashMap<String, Slot<crate::rtu_bus::RtuBusMsg>>>,
}

impl DeviceContext {
    /// Sends a device's new view to the live hub (dropped while the hub restarts; it reloads from the store).
    pub fn publish(&self, view: crate::model::DeviceView) {
        if let Some(hub) = self.hub.get() {
            let _ = hub.cast(HubMsg::Device(Box::new(view)));
        }
    }
}
