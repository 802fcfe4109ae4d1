//! The store as the rest of the server reaches it: narrow interfaces, one per domain (issue 7 §3, DESIGN §8).
//!
//! Nothing outside `store/` names the redb-backed [`Store`]: actors and API handles hold the interface of their
//! own domain (`Arc<dyn FieldStore>`, `Arc<dyn UserStore>`, …), and the writer commits through [`CommitStore`].
//! A second backend (PostgreSQL for standby and multi-node deployments) implements these traits and
//! [`Stores::new`] takes it; no actor changes. `tests/dependency_rules.rs` keeps the concrete type and redb out
//! of every other module.
//!
//! Writes are not methods: they are [`Op`] values, data any backend can apply, submitted through the store
//! writer (group commit). What a backend must guarantee for [`CommitStore::commit`] is written on it.
//!
//! The business domains to come (alarms, notifications, work orders, accounts and billing) add their own
//! trait here, implemented for [`Store`] in their own file, and a field in [`Stores`].

use std::sync::Arc;

use tokio::sync::watch;

use super::incidents::IncidentStore;
use super::maintenance::MaintenanceStore;
use super::outbox::NotifyStore;
use super::usage::UsageStore;
use super::users::SessionRecord;
use super::work_orders::WorkOrderStore;
use super::{
    AlarmChanges, AlarmStart, Applied, AuditEntry, AuditFilter, AuditPage, EventFilter, FeedEntry, JournalFilter, Op,
    PendingValveCommand, RunMarker, Store, StoreError, StoredReading, StoredSample,
};
use crate::event::EventRecord;
use crate::model::{
    Alarm, AlarmKey, AnalogState, CommStatus, DeviceId, JournalRecord, MeterComm, MeterId, MeterStatus, QualityFlags,
    Timestamp, UserRecord, ValveStatus, Volume,
};

/// Field data as the device actors, the restore path and the field API read it.
pub trait FieldStore: Send + Sync + 'static {
    /// The latest plausibly dated reading of a meter.
    fn latest_reading(&self, meter: &MeterId) -> Result<Option<(Timestamp, Volume, MeterStatus)>, StoreError>;
    /// The latest sample of a device's parameter.
    fn latest_sample(
        &self,
        device: &DeviceId,
        parameter: &str,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError>;
    /// The last sample of a device's parameter strictly before `ts`.
    fn sample_before(
        &self,
        device: &DeviceId,
        parameter: &str,
        ts: Timestamp,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError>;
    /// A meter's readings in `from..=to`, oldest first, at most `limit`.
    fn meter_readings(
        &self,
        meter: &MeterId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError>;
    /// A device parameter's samples in `from..=to`, oldest first, at most `limit`.
    fn samples(
        &self,
        device: &DeviceId,
        parameter: &str,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError>;
    /// How many readings are stored.
    fn reading_count(&self) -> Result<u64, StoreError>;
    /// A device's last committed comm status.
    fn device_status(&self, device: &DeviceId) -> Result<Option<CommStatus>, StoreError>;
    /// The meters of a device whose comm status is not clean.
    fn meter_comm(&self, device: &DeviceId) -> Result<Vec<(MeterId, MeterComm)>, StoreError>;
    /// A valve's last committed state, command and fault.
    fn valve_status(&self, device: &DeviceId) -> Result<Option<ValveStatus>, StoreError>;
    /// A valve command requested and not yet ended (one a crash cut off, at start).
    fn valve_pending(&self, device: &DeviceId) -> Result<Option<PendingValveCommand>, StoreError>;
}

/// The change feed and the event journal: consumers' cursors, the HMI's past events.
pub trait EventStore: Send + Sync + 'static {
    /// The sequence number of the last committed entry.
    fn feed_head(&self) -> u64;
    /// Wakes on every commit that moved the feed head.
    fn watch_feed(&self) -> watch::Receiver<u64>;
    /// Committed entries after `after`, in order, at most `limit` (fewer when they hold many facts).
    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError>;
    /// A consumer's committed cursor (0 when it never committed one).
    fn cursor(&self, consumer: &str) -> Result<u64, StoreError>;
    /// Past events matching `filter`, newest first, at most `limit`.
    fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<EventRecord>, StoreError>;
}

/// Accounts and the audit journal.
pub trait UserStore: Send + Sync + 'static {
    fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// The newest audit entries, newest first.
    fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// The session whose token hashes to `hash` (sessions are stored by the hash only, issue 8 §2).
    fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Every stored session, with its token hash.
    fn sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError>;
}

/// The audit journal's query and the server's run record (issue 8 §4).
pub trait AuditStore: Send + Sync + 'static {
    /// Entries kept by `filter`, newest first: at most `limit`, looking at no more than `scan` entries.
    fn audit_query(&self, filter: &AuditFilter, limit: usize, scan: usize) -> Result<AuditPage, StoreError>;
    /// The marker of a run that has not stopped cleanly.
    fn run_marker(&self) -> Result<Option<RunMarker>, StoreError>;
    /// The hash of the configuration the last run loaded.
    fn config_hash(&self) -> Result<Option<String>, StoreError>;
}

/// Opaque state blobs of on-demand actors (see `actor_state.rs`).
pub trait StateStore: Send + Sync + 'static {
    fn actor_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Alarms (issue 9): the standing alarms, the alarm journal, and where the engine's analog series stand.
/// Written only by `Op::Alarm` (see `alarms.rs`).
pub trait AlarmStore: Send + Sync + 'static {
    /// Every alarm that is not normal, in id order.
    fn standing_alarms(&self) -> Result<Vec<Alarm>, StoreError>;
    /// One alarm, if it is standing (`None`: normal).
    fn alarm(&self, key: &AlarmKey) -> Result<Option<Alarm>, StoreError>;
    /// Journal records matching `filter`, newest first, at most `limit`, each with its number.
    fn alarm_journal(&self, filter: &JournalFilter, limit: usize) -> Result<Vec<(u64, JournalRecord)>, StoreError>;
    /// Where each water-quality series the engine watches stands, by `device/parameter`.
    fn alarm_series(&self) -> Result<Vec<(String, AnalogState)>, StoreError>;
    /// The journal's annunciations and activations dated in `[from, to]`, newest first, for the KPIs (issue 9 §3).
    fn alarm_activity(&self, from: Timestamp, to: Timestamp) -> Result<super::AlarmActivity, StoreError>;
    /// The journal's newest number, changing after each commit with an alarm op (`alarm_feed.rs`).
    fn watch_alarm_journal(&self) -> watch::Receiver<u64>;
    /// The standing alarms and the journal's newest number, in one read.
    fn alarm_start(&self) -> Result<AlarmStart, StoreError>;
    /// Journal records after `after`, oldest first, with their alarms as they stand in the same read.
    fn alarm_changes_after(&self, after: u64, limit: usize) -> Result<AlarmChanges, StoreError>;
    /// The alarm settings an administrator saved, if any (`alarm_settings.rs`).
    fn alarm_settings(&self) -> Result<Option<crate::alarms::AlarmSettings>, StoreError>;
}

/// Where the store writer commits, and the health check.
pub trait CommitStore: Send + Sync + 'static {
    /// Applies the submissions of one group commit in one durable transaction, all or nothing. A backend must:
    /// give every event and every commit's data entry a feed sequence number in the same transaction, taken
    /// from what it holds (never reused, no holes from failed commits); move the feed head only after the
    /// commit is durable; and never let two concurrent calls take the same numbers.
    fn commit(&self, batch: &[&[Op]]) -> Result<Applied, StoreError>;
    /// The schema version of the stored data; an error when the backend cannot be read (health).
    fn schema_version(&self) -> Result<u64, StoreError>;
}

/// Every interface, implemented by one backend.
pub trait Backend:
    FieldStore
    + EventStore
    + UserStore
    + AuditStore
    + StateStore
    + AlarmStore
    + UsageStore
    + NotifyStore
    + WorkOrderStore
    + IncidentStore
    + MaintenanceStore
    + CommitStore
{
}

impl<T> Backend for T where
    T: FieldStore
        + EventStore
        + UserStore
        + AuditStore
        + StateStore
        + AlarmStore
        + UsageStore
        + NotifyStore
        + WorkOrderStore
        + IncidentStore
        + MaintenanceStore
        + CommitStore
{
}

/// The backend's interfaces, one per domain, as the tree hands them out. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub field: Arc<dyn FieldStore>,
    pub events: Arc<dyn EventStore>,
    pub users: Arc<dyn UserStore>,
    pub audit: Arc<dyn AuditStore>,
    pub states: Arc<dyn StateStore>,
    pub alarms: Arc<dyn AlarmStore>,
    /// The usage watch's progress and zone leakage (`usage.rs`).
    pub usage: Arc<dyn UsageStore>,
    /// The notification outbox (`outbox.rs`, issue 10 §1).
    pub notify: Arc<dyn NotifyStore>,
    /// Work orders (`work_orders.rs`, issue 10 §3).
    pub work_orders: Arc<dyn WorkOrderStore>,
    /// Incidents (`incidents.rs`, issue 10 §5).
    pub incidents: Arc<dyn IncidentStore>,
    /// Calibration and maintenance records (`maintenance.rs`, issue 10 §5).
    pub maintenance: Arc<dyn MaintenanceStore>,
    pub commit: Arc<dyn CommitStore>,
}

impl Stores {
    /// One backend behind every interface.
    pub fn new(backend: Arc<dyn Backend>) -> Stores {
        Stores {
            field: backend.clone(),
            events: backend.clone(),
            users: backend.clone(),
            audit: backend.clone(),
            states: backend.clone(),
            alarms: backend.clone(),
            usage: backend.clone(),
            notify: backend.clone(),
            work_orders: backend.clone(),
            incidents: backend.clone(),
            maintenance: backend.clone(),
            commit: backend,
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stores")
    }
}

impl From<Store> for Stores {
    /// The embedded default: the redb store behind every interface.
    fn from(store: Store) -> Stores {
        Stores::new(Arc::new(store))
    }
}

impl FieldStore for Store {
    fn latest_reading(&self, meter: &MeterId) -> Result<Option<(Timestamp, Volume, MeterStatus)>, StoreError> {
        Store::latest_reading(self, meter)
    }
    fn latest_sample(
        &self,
        device: &DeviceId,
        parameter: &str,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError> {
        Store::latest_sample(self, device, parameter)
    }
    fn sample_before(
        &self,
        device: &DeviceId,
        parameter: &str,
        ts: Timestamp,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError> {
        Store::sample_before(self, device, parameter, ts)
    }
    fn meter_readings(
        &self,
        meter: &MeterId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        Store::meter_readings(self, meter, from, to, limit)
    }
    fn samples(
        &self,
        device: &DeviceId,
        parameter: &str,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        Store::samples(self, device, parameter, from, to, limit)
    }
    fn reading_count(&self) -> Result<u64, StoreError> {
        Store::reading_count(self)
    }
    fn device_status(&self, device: &DeviceId) -> Result<Option<CommStatus>, StoreError> {
        Store::device_status(self, device)
    }
    fn meter_comm(&self, device: &DeviceId) -> Result<Vec<(MeterId, MeterComm)>, StoreError> {
        Store::meter_comm(self, device)
    }
    fn valve_status(&self, device: &DeviceId) -> Result<Option<ValveStatus>, StoreError> {
        Store::valve_status(self, device)
    }
    fn valve_pending(&self, device: &DeviceId) -> Result<Option<PendingValveCommand>, StoreError> {
        Store::valve_pending(self, device)
    }
}

impl EventStore for Store {
    fn feed_head(&self) -> u64 {
        Store::feed_head(self)
    }
    fn watch_feed(&self) -> watch::Receiver<u64> {
        Store::watch_feed(self)
    }
    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        Store::feed_after(self, after, limit)
    }
    fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        Store::cursor(self, consumer)
    }
    fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        Store::events(self, filter, limit)
    }
}

impl UserStore for Store {
    fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Store::user(self, username)
    }
    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Store::users(self)
    }
    fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Store::audit_entries(self, limit)
    }
    fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        Store::session(self, hash)
    }
    fn sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        Store::sessions(self)
    }
}

impl AuditStore for Store {
    fn audit_query(&self, filter: &AuditFilter, limit: usize, scan: usize) -> Result<AuditPage, StoreError> {
        Store::audit_query(self, filter, limit, scan)
    }
    fn run_marker(&self) -> Result<Option<RunMarker>, StoreError> {
        Store::run_marker(self)
    }
    fn config_hash(&self) -> Result<Option<String>, StoreError> {
        Store::config_hash(self)
    }
}

impl StateStore for Store {
    fn actor_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Store::actor_state(self, key)
    }
}

impl AlarmStore for Store {
    fn standing_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        Store::standing_alarms(self)
    }
    fn alarm(&self, key: &AlarmKey) -> Result<Option<Alarm>, StoreError> {
        Store::alarm(self, key)
    }
    fn alarm_journal(&self, filter: &JournalFilter, limit: usize) -> Result<Vec<(u64, JournalRecord)>, StoreError> {
        Store::alarm_journal(self, filter, limit)
    }
    fn alarm_series(&self) -> Result<Vec<(String, AnalogState)>, StoreError> {
        Store::alarm_series(self)
    }
    fn alarm_activity(&self, from: Timestamp, to: Timestamp) -> Result<super::AlarmActivity, StoreError> {
        Store::alarm_activity(self, from, to)
    }
    fn watch_alarm_journal(&self) -> watch::Receiver<u64> {
        Store::watch_alarm_journal(self)
    }
    fn alarm_start(&self) -> Result<AlarmStart, StoreError> {
        Store::alarm_start(self)
    }
    fn alarm_changes_after(&self, after: u64, limit: usize) -> Result<AlarmChanges, StoreError> {
        Store::alarm_changes_after(self, after, limit)
    }
    fn alarm_settings(&self) -> Result<Option<crate::alarms::AlarmSettings>, StoreError> {
        Store::alarm_settings(self)
    }
}

impl CommitStore for Store {
    fn commit(&self, batch: &[&[Op]]) -> Result<Applied, StoreError> {
        self.apply(batch.iter().map(|ops| ops.iter()))
    }
    fn schema_version(&self) -> Result<u64, StoreError> {
        Store::schema_version(self)
    }
}
