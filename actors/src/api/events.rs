//! The events domain's API: the durable event journal (from the store), the live stream (subscribe with
//! resume, and a fresh snapshot, from the live hub) and the event bus itself. It does not publish events on
//! anyone's behalf: actors publish what they observe.

use super::{blocking, hub, ApiError, HandleParts, ACTOR_TIMEOUT};
use crate::event::{EventBus, EventView};
use crate::hub::{HubMsg, LiveFrame, Resume, Subscription};
use crate::store::{EventFilter, EventStore};
use crate::supervisor::Slot;

/// The event journal and the live stream. Cheap to clone.
#[derive(Clone)]
pub struct EventsApi {
    store: std::sync::Arc<dyn EventStore>,
    hub: Slot<HubMsg>,
    bus: EventBus,
}

impl EventsApi {
    pub(super) fn new(parts: &HandleParts) -> EventsApi {
        EventsApi { store: parts.stores.events.clone(), hub: parts.hub.clone(), bus: parts.events.clone() }
    }

    /// The event bus (to subscribe to events as they are committed).
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The event journal (every committed event), newest first, narrowed by `filter`, at most `limit`.
    pub async fn journal(&self, filter: EventFilter, limit: usize) -> Result<Vec<EventView>, ApiError> {
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from > to {
                return Err(ApiError::BadRequest("`from` is after `to`".into()));
            }
        }
        let store = self.store.clone();
        let records = blocking(move || store.events(&filter, limit)).await?;
        Ok(records.iter().filter_map(|r| r.view()).collect())
    }

    /// Subscribes to the live stream, resuming after `resume` if the hub still holds what followed.
    pub async fn subscribe(&self, resume: Option<Resume>) -> Result<Subscription, ApiError> {
        ractor::call_t!(hub(&self.hub)?, HubMsg::Subscribe, ACTOR_TIMEOUT.as_millis() as u64, resume)
            .map_err(|_| ApiError::Unavailable("the live hub".into()))
    }

    /// The whole live state as one frame, for a client that fell behind.
    pub async fn snapshot(&self) -> Result<LiveFrame, ApiError> {
        ractor::call_t!(hub(&self.hub)?, HubMsg::Snapshot, ACTOR_TIMEOUT.as_millis() as u64)
            .map_err(|_| ApiError::Unavailable("the live hub".into()))
    }
}
