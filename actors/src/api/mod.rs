//! The API through which the `hmi` crate (and tests) see and command the system, one narrow handle per
//! business domain. Each hides actors, slots and the store behind plain async methods with one error type,
//! [`ApiError`], and holds only what its domain needs:
//!
//! - [`FieldApi`] (`field.rs`): device views, regions, history of readings and samples, valve commands and
//!   resets, and the device actors themselves (for operations tooling and tests);
//! - [`EventsApi`] (`events.rs`): the event journal, the live stream (subscribe, snapshot), the event bus;
//! - [`UsersApi`] (`users.rs`): login, users, creating users, the first admin, the audit log;
//! - [`SystemApi`] (`system.rs`): health, the supervision tree, metrics;
//! - [`AuditApi`] (`audit.rs`): the audit journal's query, entries the HTTP layer records (denials, throttled
//!   logins, Basic access), the server's start (crash and configuration change found) and clean stop.
//! - [`AlarmsApi`] (`alarms.rs`): standing alarms, the alarm journal, acknowledge, shelve, out of service.
//! - [`UsageApi`] (`usage.rs`): usage per meter or region by hour/day/month with last year beside it, and
//!   each zone's leakage per period (issue 9 §1, R-B1, R-B5).
//!
//! [`Handle`] is the composite: the tree builds it once from [`HandleParts`], it constructs every domain's
//! handle, and hands each out by accessor (`handle.field()`, `handle.users()`, …), so that an HTTP route is
//! given only the domain it serves. Every handle is cheap to clone. This module does not speak HTTP or
//! choose status codes (that is `hmi`), and a domain handle never reaches into another domain's actors.
//!
//! **Invariant:** every change made through these handles on behalf of a user is audited (R-G4).

mod alarm_settings;
mod alarms;
mod audit;
mod events;
mod field;
mod system;
mod usage;
mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use crate::clock::SharedClock;
use crate::event::EventBus;
use crate::field::{DeviceSpec, FieldMsg};
use crate::hub::HubMsg;
use crate::metrics::Metrics;
use crate::model::{DeviceId, DeviceView, RegionId, RegionView};
use crate::store::{StoreError, StoreHandle, Stores};
use crate::supervisor::{Slot, SupervisorMsg};
use crate::valve::{ValveMsg, ValveSpec};

pub use alarm_settings::AlarmSettingsApi;
pub use alarms::{AlarmsApi, JournalEntry, MAX_KPI_WINDOW};
pub use audit::{AuditApi, StartFindings, StartInfo, MAX_PAGE as MAX_AUDIT_PAGE};
pub use events::EventsApi;
pub use field::{Buckets, Pen, PenSeries, Series, MAX_PENS, MAX_POINTS, MAX_SPAN_MS};
pub use field::{FieldApi, History};
pub use system::{Health, SupervisorInfo, SystemApi};
pub use usage::{Target as UsageTarget, UsageApi, UsageParts, UsageReport, ZoneReport};
pub use users::{reset_admin_offline, OpenedSession, SessionInfo, TotpEnrolment, UserAccount, UserInfo, UsersApi};

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
    /// A refusal with a stable code (and parameters) that pages render in their language (issue 8 §2).
    #[error("{0}")]
    Refused(Refusal),
}

/// Which kind of refusal (the HMI maps it to a status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    BadRequest,
    /// Credentials incomplete or wrong in a way the client must act on (a second factor).
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
}

/// A refusal with a code: `code` is stable (`last_admin`, `password_too_short`, …), `message` is English,
/// `params` fill the page's translated text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub code: &'static str,
    pub message: String,
    pub params: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A coded refusal without parameters.
    pub fn refused(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Refused(Refusal { kind, code, message: message.into(), params: Vec::new() })
    }
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

/// What the tree hands over to build the API: the store's interfaces, the slots of the actors the API calls, and the
/// resolved specs it looks things up in.
pub(crate) struct HandleParts {
    pub stores: Stores,
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
    /// The alarm settings in force, shared with the alarm engine.
    pub alarm_settings: crate::alarms::SharedSettings,
    /// The time zone, zones and meter places usage is computed with.
    pub usage: UsageParts,
    /// Operator positions for the alarm KPIs (issue 9 §3).
    pub alarm_positions: crate::alarms::kpi::AlarmPositions,
}

/// The composite: every domain's handle, built once. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    field: FieldApi,
    events: EventsApi,
    users: UsersApi,
    system: SystemApi,
    audit: AuditApi,
    alarms: AlarmsApi,
    alarm_settings: AlarmSettingsApi,
    usage: UsageApi,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    writer: StoreHandle,
}

impl Handle {
    pub(crate) fn new(parts: HandleParts) -> Handle {
        let field = FieldApi::new(&parts);
        let events = EventsApi::new(&parts);
        let users = UsersApi::new(&parts);
        let system = SystemApi::new(&parts);
        let audit = AuditApi::new(&parts);
        let alarms = AlarmsApi::new(&parts);
        let alarm_settings = AlarmSettingsApi::new(&parts);
        let usage = UsageApi::new(&parts);
        let writer = parts.writer.clone();
        Handle {
            field,
            events,
            users,
            system,
            audit,
            alarms,
            alarm_settings,
            usage,
            clock: parts.clock,
            metrics: parts.metrics,
            writer,
        }
    }

    /// The alarm settings: read, and replaced by administrators.
    pub fn alarm_settings(&self) -> &AlarmSettingsApi {
        &self.alarm_settings
    }

    /// Usage per meter and region, zone leakage.
    pub fn usage(&self) -> &UsageApi {
        &self.usage
    }

    /// The store writer, for benchmarks that inject committed data where a device would (`benches/alarm_latency.rs`
    /// submits water-quality samples and the ingest load through it). Not for HTTP handlers: domains write
    /// through their own handles.
    #[doc(hidden)]
    pub fn store_writer(&self) -> &StoreHandle {
        &self.writer
    }

    /// Devices, regions, history, valves.
    pub fn field(&self) -> &FieldApi {
        &self.field
    }

    /// The event journal and the live stream.
    pub fn events(&self) -> &EventsApi {
        &self.events
    }

    /// Login, users, the audit log.
    pub fn users(&self) -> &UsersApi {
        &self.users
    }

    /// Health, supervision, metrics.
    pub fn system(&self) -> &SystemApi {
        &self.system
    }

    /// Standing alarms, the alarm journal, acknowledge and shelve.
    pub fn alarms(&self) -> &AlarmsApi {
        &self.alarms
    }

    /// The audit journal's query and the entries the HTTP layer records.
    pub fn audit(&self) -> &AuditApi {
        &self.audit
    }

    /// The counters every domain shares (the HTTP layer counts bad requests here too).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same counters, to hold beside the handle.
    pub fn metrics_arc(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The injected clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// The running live hub, or `Unavailable` while it restarts.
fn hub(slot: &Slot<HubMsg>) -> Result<ActorRef<HubMsg>, ApiError> {
    slot.get().ok_or_else(|| ApiError::Unavailable("the live hub".into()))
}

/// The latest view of every device, in configuration order, as the hub holds them.
async fn hub_devices(slot: &Slot<HubMsg>) -> Result<Vec<DeviceView>, ApiError> {
    ractor::call_t!(hub(slot)?, HubMsg::Devices, ACTOR_TIMEOUT.as_millis() as u64)
        .map_err(|_| ApiError::Unavailable("the live hub".into()))
}

/// Runs a store read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ApiError::Internal)?.map_err(ApiError::from)
}
