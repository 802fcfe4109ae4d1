//! The handle through which the `hmi` crate (and tests) see and command the system. It hides actors,
//! slots and the store behind plain async methods with one error type.
//!
//! **Invariant:** every change made through this handle on behalf of a user is audited (R-G4).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorCell, ActorRef};
use serde::Serialize;

use crate::auth;
use crate::clock::SharedClock;
use crate::event::{EventBus, EventView};
use crate::field::{DeviceKindSpec, DeviceSpec, FieldMsg};
use crate::hub::{HubMsg, LiveFrame, Resume, Subscription};
use crate::metrics::Metrics;
use crate::model::user::valid_username;
use crate::model::{CommandRecord, ResetRecord, ValveAction};
use crate::model::{DeviceId, DeviceView, MeterId, RegionId, RegionView, Role, Timestamp, UserRecord};
use crate::store::{AuditEntry, EventFilter, Op, Store, StoreError, StoreHandle, StoredReading, StoredSample};
use crate::supervisor::{ChildInfo, Slot, SupervisorMsg};
use crate::valve::{ResetError, ValveMsg, ValveSpec};

/// How long an API call waits for an actor before reporting it unavailable.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an API call failed. The HMI maps each variant to a status code; messages never carry internals.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} is unavailable, try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable => ApiError::Unavailable("the store".into()),
            other => {
                tracing::error!(message = "Store error behind an API call.", error = %other);
                ApiError::Internal
            }
        }
    }
}

/// A user as the API shows it (never the hash).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub role: Role,
}

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

pub(crate) struct HandleParts {
    pub store: Store,
    pub writer: StoreHandle,
    pub hub: Slot<HubMsg>,
    pub devices: Vec<Arc<DeviceSpec>>,
    pub device_slots: HashMap<DeviceId, Slot<FieldMsg>>,
    pub valves: Vec<Arc<ValveSpec>>,
    pub stations: Vec<Arc<crate::station::StationSpec>>,
    pub gateways: Vec<Arc<crate::cjt188::Cjt188Spec>>,
    pub groups: Vec<Arc<crate::mqtt::MqttGroupSpec>>,
    pub valve_slots: HashMap<DeviceId, Slot<ValveMsg>>,
    pub regions: Vec<RegionView>,
    pub region_supervisors: Vec<(RegionId, Slot<SupervisorMsg>)>,
    pub root: ActorRef<SupervisorMsg>,
    pub events: EventBus,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
}

struct Inner {
    parts: HandleParts,
    by_id: HashMap<DeviceId, Arc<DeviceSpec>>,
    /// Meter id → the concentrator or gateway that reads it.
    meter_owner: HashMap<MeterId, DeviceId>,
    /// Concentrator or gateway → its meters.
    meters_of: HashMap<DeviceId, Vec<MeterId>>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl Handle {
    pub(crate) fn new(parts: HandleParts) -> Handle {
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
        Handle { inner: Arc::new(Inner { parts, by_id, meter_owner, meters_of }) }
    }

    fn hub(&self) -> Result<ActorRef<HubMsg>, ApiError> {
        self.inner.parts.hub.get().ok_or_else(|| ApiError::Unavailable("the live hub".into()))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.parts.metrics
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.parts.clock
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.parts.events
    }

    pub fn regions(&self) -> &[RegionView] {
        &self.inner.parts.regions
    }

    /// The latest view of every device, in configuration order.
    pub async fn devices(&self) -> Result<Vec<DeviceView>, ApiError> {
        ractor::call_t!(self.hub()?, HubMsg::Devices, ACTOR_TIMEOUT.as_millis() as u64)
            .map_err(|_| ApiError::Unavailable("the live hub".into()))
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
        let store = self.inner.parts.store.clone();
        let (device, meters): (Option<Arc<DeviceSpec>>, Vec<MeterId>) = if let Some(meters) =
            self.inner.meters_of.get(id)
        {
            (None, meters.clone())
        } else if let Some(d) = self.inner.by_id.get(id) {
            (Some(d.clone()), Vec::new())
        } else if let Some(st) = self.inner.parts.stations.iter().find(|s| s.id.as_str() == id) {
            // A station's real-time series and its minute, hour and day averages.
            let (st, store, id) = (st.clone(), self.inner.parts.store.clone(), id.to_owned());
            let fetch = move || -> Result<History, StoreError> {
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
            };
            return tokio::task::spawn_blocking(fetch).await.map_err(|_| ApiError::Internal)?.map_err(ApiError::from);
        } else if self.inner.meter_owner.contains_key(id) {
            (None, vec![MeterId::new(id)])
        } else {
            return Err(ApiError::NotFound(format!("no device or meter {id:?}")));
        };
        let id = id.to_owned();
        let fetch = move || -> Result<History, StoreError> {
            let mut readings = Vec::new();
            let mut samples = Vec::new();
            for m in &meters {
                readings.extend(store.meter_readings(m, from, to, limit + 1)?);
            }
            if let Some(DeviceKindSpec::Logger(l)) = device.as_ref().map(|d| &d.kind) {
                let dev = &device.as_ref().expect("logger device").id;
                for p in &l.parameters {
                    samples.extend(store.samples(dev, &p.name, from, to, limit + 1)?);
                }
            }
            readings.sort_by(|a, b| (a.ts, &a.meter).cmp(&(b.ts, &b.meter)));
            samples.sort_by(|a, b| (a.ts, &a.parameter).cmp(&(b.ts, &b.parameter)));
            let truncated = readings.len() + samples.len() > limit;
            readings.truncate(limit);
            samples.truncate(limit.saturating_sub(readings.len()));
            Ok(History { device: id, from, to, readings, samples, truncated })
        };
        tokio::task::spawn_blocking(fetch).await.map_err(|_| ApiError::Internal)?.map_err(ApiError::from)
    }

    /// The event journal (every committed event), newest first, narrowed by `filter`, at most `limit`.
    pub async fn event_journal(&self, filter: EventFilter, limit: usize) -> Result<Vec<EventView>, ApiError> {
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            if from > to {
                return Err(ApiError::BadRequest("`from` is after `to`".into()));
            }
        }
        let store = self.inner.parts.store.clone();
        let records = tokio::task::spawn_blocking(move || store.events(&filter, limit))
            .await
            .map_err(|_| ApiError::Internal)??;
        Ok(records.iter().filter_map(|r| r.view()).collect())
    }

    /// Subscribes to the live stream, resuming after `resume` if the hub still holds what followed.
    pub async fn subscribe(&self, resume: Option<Resume>) -> Result<Subscription, ApiError> {
        ractor::call_t!(self.hub()?, HubMsg::Subscribe, ACTOR_TIMEOUT.as_millis() as u64, resume)
            .map_err(|_| ApiError::Unavailable("the live hub".into()))
    }

    pub async fn snapshot(&self) -> Result<LiveFrame, ApiError> {
        ractor::call_t!(self.hub()?, HubMsg::Snapshot, ACTOR_TIMEOUT.as_millis() as u64)
            .map_err(|_| ApiError::Unavailable("the live hub".into()))
    }

    pub async fn health(&self) -> Health {
        let store = self.inner.parts.store.schema_version().is_ok();
        let writer_alive = |s: Option<ractor::ActorStatus>| matches!(s, Some(ractor::ActorStatus::Running));
        let devices = self.devices().await;
        let hub = devices.is_ok();
        let devices = devices.unwrap_or_default();
        let comm_lost = devices.iter().filter(|d| d.comm.status.comm_lost).count();
        let writer = self.inner.parts.writer_status().map(|s| writer_alive(Some(s))).unwrap_or(false);
        Health { ok: store && writer && hub, store, writer, hub, devices: devices.len(), comm_lost }
    }

    /// The supervision tree: root and region supervisors with their children.
    pub async fn supervision(&self) -> Vec<SupervisorInfo> {
        let mut out = Vec::new();
        let ms = ACTOR_TIMEOUT.as_millis() as u64;
        if let Ok(children) = ractor::call_t!(self.inner.parts.root, SupervisorMsg::Children, ms) {
            out.push(SupervisorInfo { name: "root".into(), children });
        }
        for (region, slot) in &self.inner.parts.region_supervisors {
            if let Some(sup) = slot.get() {
                if let Ok(children) = ractor::call_t!(sup, SupervisorMsg::Children, ms) {
                    out.push(SupervisorInfo { name: format!("region:{region}"), children });
                }
            }
        }
        out
    }

    /// The running actor of a device (for operations tooling and tests that kill it on purpose).
    pub fn device_actor(&self, id: &str) -> Option<ActorCell> {
        self.inner.parts.device_slots.get(id).and_then(|s| s.get()).map(|a| a.get_cell())
    }

    /// The current view straight from a device actor.
    pub async fn device_actor_view(&self, id: &str) -> Result<DeviceView, ApiError> {
        let actor = self
            .inner
            .parts
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
        // Long enough for a few queued commands, each bounded by its confirmation timeout.
        let wait =
            spec.confirm_timeout.saturating_mul(4) + spec.request_wait().saturating_mul(8) + Duration::from_secs(5);
        let requested_by = requested_by.to_owned();
        ractor::call_t!(
            actor,
            |reply| ValveMsg::Command { action, reason, requested_by, reply },
            wait.as_millis() as u64
        )
        .map_err(|_| ApiError::Unavailable(format!("valve {id}")))
    }

    /// Resets a valve's latched fault (issue 7 §5): for when the operator has checked the valve on site. The
    /// reset, who asked, why and the result are audited; a valve that is not in fault, or that reports a
    /// fault itself, is refused (`Conflict`) and the refusal audited.
    pub async fn reset_valve(&self, id: &str, reason: &str, requested_by: &str) -> Result<ResetRecord, ApiError> {
        let reason = checked_reason(reason, "a valve reset")?;
        let spec = self.valve_spec(id)?;
        let actor = self.valve_actor(id)?;
        let wait =
            spec.confirm_timeout.saturating_mul(4) + spec.request_wait().saturating_mul(8) + Duration::from_secs(5);
        let requested_by = requested_by.to_owned();
        let result =
            ractor::call_t!(actor, |reply| ValveMsg::Reset { reason, requested_by, reply }, wait.as_millis() as u64)
                .map_err(|_| ApiError::Unavailable(format!("valve {id}")))?;
        result.map_err(|e| match e {
            ResetError::Refused(r) => ApiError::Conflict(format!("valve {id}: {r}")),
            ResetError::Store(_) => ApiError::Unavailable("the store".into()),
        })
    }

    fn valve_spec(&self, id: &str) -> Result<&Arc<ValveSpec>, ApiError> {
        self.inner
            .parts
            .valves
            .iter()
            .find(|v| v.id.as_str() == id)
            .ok_or_else(|| ApiError::NotFound(format!("no valve {id:?}")))
    }

    fn valve_actor(&self, id: &str) -> Result<ActorRef<ValveMsg>, ApiError> {
        self.inner
            .parts
            .valve_slots
            .get(id)
            .and_then(|s| s.get())
            .ok_or_else(|| ApiError::Unavailable(format!("valve {id}")))
    }

    // ----- users and audit -----

    /// Checks a username and password. Unknown users cost the same hashing work as known ones.
    pub async fn login(&self, username: &str, password: &str) -> Result<UserInfo, ApiError> {
        let record = self.inner.parts.store.user(username)?;
        let password = password.to_owned();
        // A fixed dummy hash keeps the timing of unknown and known users alike.
        let hash = match record.as_ref() {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .map_err(|_| ApiError::Internal)?;
        match record {
            Some(r) if ok && !r.disabled => Ok(UserInfo { username: r.username, role: r.role }),
            _ => Err(ApiError::InvalidCredentials),
        }
    }

    /// The current record of a user, if the account exists and is enabled.
    pub fn user(&self, username: &str) -> Result<Option<UserInfo>, ApiError> {
        Ok(self
            .inner
            .parts
            .store
            .user(username)?
            .filter(|r| !r.disabled)
            .map(|r| UserInfo { username: r.username, role: r.role }))
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, ApiError> {
        Ok(self
            .inner
            .parts
            .store
            .users()?
            .into_iter()
            .map(|r| UserInfo { username: r.username, role: r.role })
            .collect())
    }

    /// Creates an account. Only an admin grants roles (R-F12); the change is audited.
    pub async fn create_user(
        &self,
        by: &UserInfo,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<UserInfo, ApiError> {
        if by.role != Role::Admin {
            return Err(ApiError::Forbidden("only an admin creates accounts".into()));
        }
        if !valid_username(username) {
            return Err(ApiError::BadRequest("username must be 1-64 letters, digits, '.', '_' or '-'".into()));
        }
        if let Some(problem) = auth::password_problem(password) {
            return Err(ApiError::BadRequest(problem));
        }
        if self.inner.parts.store.user(username)?.is_some() {
            return Err(ApiError::Conflict(format!("user {username:?} already exists")));
        }
        let record = self.new_user_record(username, password, role, &by.username).await?;
        let audit = self.audit_entry(&by.username, "user.create", username, &format!("role {role}"), true);
        self.inner.parts.writer.submit(vec![Op::User(record), Op::Audit(audit)]).await?;
        Ok(UserInfo { username: username.to_owned(), role })
    }

    async fn new_user_record(
        &self,
        username: &str,
        password: &str,
        role: Role,
        by: &str,
    ) -> Result<UserRecord, ApiError> {
        let pw = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| {
                tracing::error!(message = "Password hashing failed.", error = %e);
                ApiError::Internal
            })?;
        Ok(UserRecord {
            username: username.to_owned(),
            role,
            password_hash: hash,
            created: self.clock().now(),
            created_by: by.to_owned(),
            disabled: false,
        })
    }

    /// Makes sure an admin account exists (DESIGN.md: the first admin). With no users in the store, creates
    /// `admin` with the given password, or a generated one which is returned so that it is shown once.
    pub async fn ensure_first_admin(&self, password: Option<String>) -> Result<Option<String>, ApiError> {
        if !self.inner.parts.store.users()?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => {
                if let Some(problem) = auth::password_problem(&p) {
                    return Err(ApiError::BadRequest(format!("WATERWORKS_ADMIN_PASSWORD: {problem}")));
                }
                (p, false)
            }
            None => (auth::random_password(), true),
        };
        let record = self.new_user_record("admin", &password, Role::Admin, "system").await?;
        let audit = self.audit_entry("system", "user.create", "admin", "first admin", true);
        self.inner.parts.writer.submit(vec![Op::User(record), Op::Audit(audit)]).await?;
        Ok(generated.then_some(password))
    }

    fn audit_entry(&self, actor: &str, action: &str, target: &str, detail: &str, ok: bool) -> AuditEntry {
        AuditEntry {
            ts: self.clock().now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
            ok,
        }
    }

    /// Records an audited action durably (acknowledged after commit).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str, ok: bool) -> Result<(), ApiError> {
        let entry = self.audit_entry(actor, action, target, detail, ok);
        self.inner.parts.writer.submit(vec![Op::Audit(entry)]).await?;
        Ok(())
    }

    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, ApiError> {
        Ok(self.inner.parts.store.audit_entries(limit)?)
    }
}

impl HandleParts {
    fn writer_status(&self) -> Option<ractor::ActorStatus> {
        // The writer is healthy if its slot holds a running actor.
        self.writer.actor().map(|a| a.get_status())
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

/// An argon2id hash of a random string nobody knows, verified against for unknown usernames so that they
/// cost the same work as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::random_password()).unwrap_or_default())
}
