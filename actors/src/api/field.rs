//! The field domain's API: the latest device views and regions (from the live hub), the history of
//! readings and samples (from the store), valve commands and fault resets (through the valve actors), and
//! the device actors themselves for operations tooling and tests. It does not serve events, users or system
//! health (see the sibling modules).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorCell, ActorRef};
use serde::Serialize;

use super::{blocking, hub_devices, ApiError, HandleParts, ACTOR_TIMEOUT};
use crate::clock::SharedClock;
use crate::field::{DeviceKindSpec, DeviceSpec, FieldMsg};
use crate::hub::HubMsg;
use crate::metrics::Metrics;
use crate::model::{
    CommandRecord, CommandResult, DeviceId, DeviceView, MeterId, RegionView, ResetRecord, Timestamp, ValveAction,
};
use crate::station::StationSpec;
use crate::store::{AuditEntry, FieldStore, Op, StoreError, StoreHandle, StoredReading, StoredSample};
use crate::supervisor::Slot;
use crate::valve::{ResetError, ValveMsg, ValveSpec};

mod series;
pub use series::{Buckets, Pen, PenSeries, Series, MAX_PENS, MAX_POINTS, MAX_SPAN_MS};

/// History of one device (or one meter) over a time range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct History {
    pub device: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub readings: Vec<StoredReading>,
    pub samples: Vec<StoredSample>,
    /// True if `limit` cut the result short.
    pub truncated: bool,
}

struct Inner {
    store: Arc<dyn FieldStore>,
    /// For the audit record of a command refused before it reached the valve.
    writer: StoreHandle,
    hub: Slot<HubMsg>,
    regions: Vec<RegionView>,
    clock: SharedClock,
    by_id: HashMap<DeviceId, Arc<DeviceSpec>>,
    stations: Vec<Arc<StationSpec>>,
    /// Meter id → the concentrator or gateway that reads it.
    meter_owner: HashMap<MeterId, DeviceId>,
    /// Concentrator or gateway → its meters.
    meters_of: HashMap<DeviceId, Vec<MeterId>>,
    device_slots: HashMap<DeviceId, Slot<FieldMsg>>,
    valves: Vec<Arc<ValveSpec>>,
    valve_slots: HashMap<DeviceId, Slot<ValveMsg>>,
    metrics: Arc<Metrics>,
    /// Valves with a command in progress, and that command: at most one per valve (issue 8 §3).
    pending_commands: std::sync::Mutex<HashMap<String, PendingCommand>>,
}

/// The command in progress on a valve.
struct PendingCommand {
    action: ValveAction,
    by: String,
}

/// Frees a valve's pending-command slot when the command's call ends (answered, failed or cancelled).
struct PendingGuard<'a> {
    api: &'a FieldApi,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.api.inner.pending_commands.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// Devices, regions, history and valves. Cheap to clone.
#[derive(Clone)]
pub struct FieldApi {
    inner: Arc<Inner>,
}

impl FieldApi {
    pub(super) fn new(parts: &HandleParts) -> FieldApi {
        let by_id = parts.devices.iter().map(|d| (d.id.clone(), d.clone())).collect();
        let mut meters_of: HashMap<DeviceId, Vec<MeterId>> = HashMap::new();
        for d in &parts.devices {
            if let DeviceKindSpec::Concentrator(c) = &d.kind {
                meters_of.insert(d.id.clone(), c.meters.iter().map(|m| m.id.clone()).collect());
            }
        }
        for g in &parts.gateways {
            meters_of.insert(g.id.clone(), g.meters.iter().map(|m| m.id.clone()).collect());
        }
        for g in &parts.groups {
            meters_of.insert(g.id.clone(), g.meters.clone());
        }
        let meter_owner = meters_of.iter().flat_map(|(d, ms)| ms.iter().map(move |m| (m.clone(), d.clone()))).collect();
        FieldApi {
            inner: Arc::new(Inner {
                store: parts.stores.field.clone(),
                writer: parts.writer.clone(),
                hub: parts.hub.clone(),
                regions: parts.regions.clone(),
                clock: parts.clock.clone(),
                by_id,
                stations: parts.stations.clone(),
                meter_owner,
                meters_of,
                device_slots: parts.device_slots.clone(),
                valves: parts.valves.clone(),
                valve_slots: parts.valve_slots.clone(),
                metrics: parts.metrics.clone(),
                pending_commands: Default::default(),
            }),
        }
    }

    /// The injected clock (for "now" as the default end of a history query).
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    pub fn regions(&self) -> &[RegionView] {
        &self.inner.regions
    }

    /// The latest view of every device, in configuration order.
    pub async fn devices(&self) -> Result<Vec<DeviceView>, ApiError> {
        hub_devices(&self.inner.hub).await
    }

    pub async fn device(&self, id: &str) -> Result<DeviceView, ApiError> {
        self.devices()
            .await?
            .into_iter()
            .find(|d| d.id.as_str() == id)
            .ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))
    }

    /// Readings of a concentrator (all its meters) or one meter, or samples of a logger, with
    /// `from <= ts <= to`, oldest first, at most `limit` in all.
    pub async fn history(&self, id: &str, from: Timestamp, to: Timestamp, limit: usize) -> Result<History, ApiError> {
        if from > to {
            return Err(ApiError::BadRequest("`from` is after `to`".into()));
        }
        let store = self.inner.store.clone();
        let (device, meters): (Option<Arc<DeviceSpec>>, Vec<MeterId>) = if let Some(meters) =
            self.inner.meters_of.get(id)
        {
            (None, meters.clone())
        } else if let Some(d) = self.inner.by_id.get(id) {
            (Some(d.clone()), Vec::new())
        } else if let Some(st) = self.inner.stations.iter().find(|s| s.id.as_str() == id) {
            // A station's real-time series and its minute, hour and day averages.
            let (st, id) = (st.clone(), id.to_owned());
            return blocking(move || -> Result<History, StoreError> {
                let mut samples = Vec::new();
                for p in &st.parameters {
                    for suffix in ["", ":avg_1m", ":avg_1h", ":avg_1d"] {
                        samples.extend(store.samples(&st.id, &format!("{}{suffix}", p.name), from, to, limit + 1)?);
                    }
                }
                samples.sort_by(|a, b| (a.ts, &a.parameter).cmp(&(b.ts, &b.parameter)));
                let truncated = samples.len() > limit;
                samples.truncate(limit);
                Ok(History { device: id, from, to, readings: Vec::new(), samples, truncated })
            })
            .await;
        } else if self.inner.meter_owner.contains_key(id) {
            (None, vec![MeterId::new(id)])
        } else {
            return Err(ApiError::NotFound(format!("no device or meter {id:?}")));
        };
        let id = id.to_owned();
        blocking(move || -> Result<History, StoreError> {
            let mut readings = Vec::new();
            let mut samples = Vec::new();
            for m in &meters {
                readings.extend(store.meter_readings(m, from, to, limit + 1)?);
            }
            if let Some(d) = &device {
                if let DeviceKindSpec::Logger(l) = &d.kind {
                    for p in &l.parameters {
                        samples.extend(store.samples(&d.id, &p.name, from, to, limit + 1)?);
                    }
                }
            }
            readings.sort_by(|a, b| (a.ts, &a.meter).cmp(&(b.ts, &b.meter)));
            samples.sort_by(|a, b| (a.ts, &a.parameter).cmp(&(b.ts, &b.parameter)));
            let truncated = readings.len() + samples.len() > limit;
            readings.truncate(limit);
            samples.truncate(limit.saturating_sub(readings.len()));
            Ok(History { device: id, from, to, readings, samples, truncated })
        })
        .await
    }

    /// The running actor of a device (for operations tooling and tests that kill it on purpose).
    pub fn device_actor(&self, id: &str) -> Option<ActorCell> {
        self.inner.device_slots.get(id).and_then(|s| s.get()).map(|a| a.get_cell())
    }

    /// The current view straight from a device actor.
    pub async fn device_actor_view(&self, id: &str) -> Result<DeviceView, ApiError> {
        let actor = self
            .inner
            .device_slots
            .get(id)
            .and_then(|s| s.get())
            .ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))?;
        ractor::call_t!(actor, FieldMsg::View, ACTOR_TIMEOUT.as_millis() as u64)
            .map_err(|_| ApiError::Unavailable(format!("device {id}")))
    }

    // ----- valves -----

    /// Commands a valve (R-A7): the one entry point for operators and billing. Waits until the valve
    /// confirmed, refused, or timed out (commands to one valve queue behind each other). `requested_by` is a
    /// username or a system actor such as `billing`; `reason` is required. Both are audited with the result.
    pub async fn command_valve(
        &self,
        id: &str,
        action: ValveAction,
        reason: &str,
        requested_by: &str,
    ) -> Result<CommandRecord, ApiError> {
        let reason = checked_reason(reason, "a valve command")?;
        let spec = self.valve_spec(id)?;
        let actor = self.valve_actor(id)?;
        // One pending command per valve: a second one is refused, not queued (20 queued commands once moved a
        // valve 13 times). The slot is freed when this call ends, however it ends.
        let _pending = match self.claim_valve(id, action, requested_by) {
            Ok(guard) => guard,
            Err(refused) => {
                // Every command has its outcome in the journal (issue 8 §4), this one too; counted as a repeat
                // when the same refusal comes again within a minute.
                let entry = AuditEntry {
                    ts: self.inner.clock.now(),
                    actor: requested_by.to_owned(),
                    action: format!("valve.{action}.refused"),
                    target: id.to_owned(),
                    detail: format!("{refused}; nothing written; reason: {reason}"),
                    ok: false,
                };
                if let Err(e) = self.inner.writer.submit(vec![Op::AuditRepeatable(entry)]).await {
                    tracing::error!(message = "Valve audit entry not stored.", valve = %id, error = %e);
                }
                return Err(refused);
            }
        };
        let requested_by = requested_by.to_owned();
        let queued_at = tokio::time::Instant::now();
        let record = ractor::call_t!(
            actor,
            |reply| ValveMsg::Command { action, reason, requested_by, queued_at, reply },
            valve_wait(spec).as_millis() as u64
        )
        .map_err(|_| ApiError::Unavailable(format!("valve {id}")))?;
        match record.result {
            CommandResult::Expired { waited_ms } => Err(ApiError::Conflict(format!(
                "valve {id}: the command expired after waiting {waited_ms} ms behind an earlier one; nothing was \
                 written"
            ))),
            _ => Ok(record),
        }
    }

    /// Whether a command to valve `id` is in progress now.
    pub fn valve_command_pending(&self, id: &str) -> bool {
        self.inner.pending_commands.lock().unwrap_or_else(|p| p.into_inner()).contains_key(id)
    }

    fn claim_valve(&self, id: &str, action: ValveAction, by: &str) -> Result<PendingGuard<'_>, ApiError> {
        let mut pending = self.inner.pending_commands.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pending.get(id) {
            let n =
                self.inner.metrics.limits.valve_commands_busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            tracing::info!(message = "Valve command refused: another is pending.", valve = %id, action = %action, by = %by, pending = %p.action, pending_by = %p.by, total = n);
            return Err(ApiError::Conflict(format!(
                "valve {id}: a command is already in progress ({} by {}); wait for its result",
                p.action, p.by
            )));
        }
        pending.insert(id.to_owned(), PendingCommand { action, by: by.to_owned() });
        Ok(PendingGuard { api: self, id: id.to_owned() })
    }

    /// Resets a valve's latched fault (issue 7 §5): for when the operator has checked the valve on site. The
    /// reset, who asked, why and the result are audited; a valve that is not in fault, or that reports a
    /// fault itself, is refused (`Conflict`) and the refusal audited.
    pub async fn reset_valve(&self, id: &str, reason: &str, requested_by: &str) -> Result<ResetRecord, ApiError> {
        let reason = checked_reason(reason, "a valve reset")?;
        let spec = self.valve_spec(id)?;
        let actor = self.valve_actor(id)?;
        let requested_by = requested_by.to_owned();
        let result = ractor::call_t!(
            actor,
            |reply| ValveMsg::Reset { reason, requested_by, reply },
            valve_wait(spec).as_millis() as u64
        )
        .map_err(|_| ApiError::Unavailable(format!("valve {id}")))?;
        result.map_err(|e| reset_error(id, e))
    }

    fn valve_spec(&self, id: &str) -> Result<&Arc<ValveSpec>, ApiError> {
        self.inner
            .valves
            .iter()
            .find(|v| v.id.as_str() == id)
            .ok_or_else(|| ApiError::NotFound(format!("no valve {id:?}")))
    }

    fn valve_actor(&self, id: &str) -> Result<ActorRef<ValveMsg>, ApiError> {
        self.inner.valve_slots.get(id).and_then(|s| s.get()).ok_or_else(|| ApiError::Unavailable(format!("valve {id}")))
    }
}

/// How long a valve call may take: long enough for a few queued commands, each bounded by its confirmation
/// timeout.
fn valve_wait(spec: &ValveSpec) -> Duration {
    spec.confirm_timeout.saturating_mul(4) + spec.request_wait().saturating_mul(8) + Duration::from_secs(5)
}

/// A refused reset is the operator's to fix (`Conflict`); a store failure is ours (`Unavailable`).
fn reset_error(id: &str, e: ResetError) -> ApiError {
    match e {
        ResetError::Refused(r) => ApiError::Conflict(format!("valve {id}: {r}")),
        ResetError::Store(_) => ApiError::Unavailable("the store".into()),
    }
}

/// The operator's reason for a valve command or reset: required, at most 500 characters, trimmed.
fn checked_reason(reason: &str, what: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest(format!("{what} needs a reason")));
    }
    if reason.chars().count() > 500 {
        return Err(ApiError::BadRequest("the reason is longer than 500 characters".into()));
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResetRefused;

    /// A refused reset is the operator's to fix (409 in the HMI), a store failure is ours (503); the text
    /// names the valve and keeps the refusal's words.
    #[test]
    fn reset_errors_map_to_conflict_or_unavailable() {
        let refused = reset_error("v1", ResetError::Refused(ResetRefused::NotInFault));
        assert_eq!(refused, ApiError::Conflict("valve v1: the valve is not in fault".into()));
        let store = reset_error("v1", ResetError::Store("disk full".into()));
        assert_eq!(store, ApiError::Unavailable("the store".into()));
        assert_eq!(store.to_string(), "the store is unavailable, try again");
    }

    #[test]
    fn a_reason_is_required_trimmed_and_bounded() {
        assert_eq!(checked_reason("  leak  ", "a valve reset"), Ok("leak".to_owned()));
        assert_eq!(
            checked_reason(" ", "a valve reset"),
            Err(ApiError::BadRequest("a valve reset needs a reason".into()))
        );
        assert!(checked_reason(&"x".repeat(501), "a valve command").is_err());
    }
}
