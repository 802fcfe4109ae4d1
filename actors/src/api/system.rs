//! The system domain's API: health of the parts that matter (store, writer, hub), the supervision tree as
//! its supervisors report it, and the counters. It commands nothing.

use std::sync::Arc;

use ractor::ActorRef;
use serde::Serialize;

use super::{hub_devices, HandleParts, ACTOR_TIMEOUT};
use crate::hub::HubMsg;
use crate::metrics::Metrics;
use crate::model::RegionId;
use crate::store::{CommitStore, StoreHandle};
use crate::supervisor::{ChildInfo, Slot, SupervisorMsg};

/// Liveness of the parts that matter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub ok: bool,
    pub store: bool,
    pub writer: bool,
    pub hub: bool,
    pub devices: usize,
    pub comm_lost: usize,
}

/// The supervision tree as reported by its supervisors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SupervisorInfo {
    pub name: String,
    pub children: Vec<ChildInfo>,
}

/// Health, supervision, metrics. Cheap to clone.
#[derive(Clone)]
pub struct SystemApi {
    store: Arc<dyn CommitStore>,
    writer: StoreHandle,
    hub: Slot<HubMsg>,
    root: ActorRef<SupervisorMsg>,
    region_supervisors: Arc<Vec<(RegionId, Slot<SupervisorMsg>)>>,
    metrics: Arc<Metrics>,
}

impl SystemApi {
    pub(super) fn new(parts: &HandleParts) -> SystemApi {
        SystemApi {
            store: parts.stores.commit.clone(),
            writer: parts.writer.clone(),
            hub: parts.hub.clone(),
            root: parts.root.clone(),
            region_supervisors: Arc::new(parts.region_supervisors.clone()),
            metrics: parts.metrics.clone(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn health(&self) -> Health {
        let store = self.store.schema_version().is_ok();
        let devices = hub_devices(&self.hub).await;
        let hub = devices.is_ok();
        let devices = devices.unwrap_or_default();
        let comm_lost = devices.iter().filter(|d| d.comm.status.comm_lost).count();
        // The writer is healthy if its slot holds a running actor.
        let writer = self.writer.actor().is_some_and(|a| matches!(a.get_status(), ractor::ActorStatus::Running));
        Health { ok: store && writer && hub, store, writer, hub, devices: devices.len(), comm_lost }
    }

    /// The supervision tree: root and region supervisors with their children.
    pub async fn supervision(&self) -> Vec<SupervisorInfo> {
        let mut out = Vec::new();
        let ms = ACTOR_TIMEOUT.as_millis() as u64;
        if let Ok(children) = ractor::call_t!(self.root, SupervisorMsg::Children, ms) {
            out.push(SupervisorInfo { name: "root".into(), children });
        }
        for (region, slot) in self.region_supervisors.iter() {
            if let Some(sup) = slot.get() {
                if let Ok(children) = ractor::call_t!(sup, SupervisorMsg::Children, ms) {
                    out.push(SupervisorInfo { name: format!("region:{region}"), children });
                }
            }
        }
        out
    }
}
