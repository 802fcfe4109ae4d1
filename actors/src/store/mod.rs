//! The durable store (redb, DESIGN.md §1): meter readings, water-quality samples, device status, users, audit.
//!
//! Reads go straight to the database from any thread (MVCC readers). Writes go only through the single
//! [`writer`] actor, which commits in groups and acknowledges after the commit returns (durable on return,
//! redb `Durability::Immediate`). Nothing outside this module knows table layouts.
//!
//! Schema version 1 tables:
//! - `meta`: `&str -> u64` (`schema_version`);
//! - `readings`: `(meter, ts_ms) -> (litres, status)`; a reading of the same meter and time overwrites
//!   itself, so a repeated write is idempotent (re-keyed in version 3, below);
//! - `samples`: `(device/parameter, ts_ms) -> (value, flags, unit)`;
//! - `device_status`: `device -> JSON CommStatus`;
//! - `meter_comm`: `device -> JSON [(meter, MeterComm)]`, only the device's meters that were not read in the
//!   last cycle or are comm-lost (issue 7 §4); no row when every meter was read. A meter's last success is
//!   otherwise its latest reading's time. Created at open, so an older store gains it without a migration;
//! - `users`: `username -> JSON UserRecord`;
//! - `audit`: `sequence -> JSON AuditEntry` (each field bounded; repeats, the run record and the journal's
//!   reads are in `audit.rs`);
//! - `valve_status`: `device -> JSON ValveStatus` (in `valve_status.rs`; a new table, created on open, so no
//!   schema step);
//! - `sessions`: `hash of the session token -> JSON SessionRecord` (in `users.rs`, issue 8 §2; created on open);
//! - `alarms`, `alarm_journal`, `alarm_series` (issue 9): standing alarms, every alarm transition, the alarm
//!   engine's analog series (in `alarms.rs`; new tables, created on first write, so no schema step).
//!
//! Schema version 3 (issue 7 §8) re-keys `readings` and `reading_extras` as `meter_readings` and
//! `meter_reading_extras`, keyed by the byte string of `reading_key.rs` (compared with `memcmp`, where the
//! tuple key decoded and UTF-8-checked both sides on every comparison); `migrate.rs` copies older stores.
//!
//! Schema version 4 (issue 7 §8) puts the hour first: `meter_readings_h` and `meter_reading_extras_h` are keyed
//! by `(hour, meter, ts)` (`reading_key.rs`), so a cycle's readings rewrite the current hour's leaves only
//! instead of one leaf per meter; `meter_latest`: `meter -> (ts, litres, status)`, each meter's latest
//! plausibly dated reading, written in the same commit as the readings. Versions 2 and 3 are copied at open.
//!
//! Schema version 2 adds the durable change feed (DESIGN §12, [`feed`]):
//! - `feed`: `seq -> FeedData`: the readings and samples of one commit, under one sequence number, in the
//!   binary encoding of `feed_codec.rs` (entries written before it are JSON and still read);
//! - `events`: `seq -> JSON StoredEvent`: one event per sequence number (same number space as `feed`);
//! - `cursors`: `consumer name -> last handled seq`.

pub mod actor_state;
pub mod alarm_feed;
pub mod alarm_kpi;
mod alarm_settings;
pub mod alarms;
pub mod audit;
pub mod feed;
pub mod feed_codec;
pub mod incidents;
pub mod maintenance;
mod migrate;
pub mod outbox;
mod ports;
mod reading_key;
#[cfg(test)]
mod reading_tests;
pub mod usage;
pub mod users;
mod valve_status;
pub mod work_orders;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::model::{
    CommStatus, DeviceId, MeterComm, MeterId, MeterReading, MeterStatus, QualityFlags, QualitySample, Timestamp,
    UserRecord, ValveStatus, Volume,
};

pub use actor_state::{ActorStateOp, ActorStates};
pub use alarm_feed::{AlarmChanges, AlarmStart};
pub use alarm_kpi::{ActivityRecord, AlarmActivity};
pub use alarms::{AlarmAction, AlarmOp, JournalFilter};
pub use audit::{AuditFilter, AuditPage, AuditRecord, RunMarker, RunOp, TextMatch};
pub use feed::{EventFilter, FeedEntry, FeedFact};
pub use incidents::{IncidentOp, IncidentStore};
pub use maintenance::{MaintenanceOp, MaintenanceStore};
pub use outbox::{NotifyOp, NotifyStore, OutboxEntry, OutboxState};
pub use ports::{AlarmStore, AuditStore, Backend, CommitStore, EventStore, FieldStore, StateStore, Stores, UserStore};
pub use usage::{UsageOp, UsageStore, ZoneLeakage};
pub use valve_status::PendingValveCommand;
pub use work_orders::{WorkOrderOp, WorkOrderStore};
pub use writer::{Committed, StoreHandle, StoreWriter, StoreWriterArgs, StoreWriterMsg};

use crate::event::{Event, EventRecord};

/// The schema this program writes. A store with a newer version is refused; older versions are migrated.
pub const SCHEMA_VERSION: u64 = 4;

/// The database file inside the data directory.
pub const DB_FILE: &str = "waterworks.redb";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Meter readings: `reading_key(hour, meter, ts) -> (litres, status)` (schema version 4; `reading_key.rs`).
const READINGS: TableDefinition<&[u8], (i64, u16)> = TableDefinition::new("meter_readings_h");
/// What a CJ/T 188 meter reports beside its volume, keyed like `READINGS` (issue 7 §4): its own clock (ms since
/// the epoch, `i64::MIN` when absent) and the settlement-day volume (litres, -1 when absent).
const READING_EXTRAS: TableDefinition<&[u8], (i64, i64)> = TableDefinition::new("meter_reading_extras_h");
/// Each meter's latest plausibly dated reading: `meter -> (ts, litres, status)`, written with the readings
/// (schema version 4), so the latest reading is one lookup however the readings table is ordered.
const METER_LATEST: TableDefinition<&str, (i64, i64, u16)> = TableDefinition::new("meter_latest");
/// The readings tables of schema version 3, keyed by the bytes of `(meter, ts)`; copied and deleted like the
/// version 2 ones.
const READINGS_V3: TableDefinition<&[u8], (i64, u16)> = TableDefinition::new("meter_readings");
const READING_EXTRAS_V3: TableDefinition<&[u8], (i64, i64)> = TableDefinition::new("meter_reading_extras");
/// The readings tables of schema versions 1 and 2, keyed by a `(meter, ts)` tuple; copied into the tables above
/// and deleted when such a store is opened (`migrate.rs`).
const READINGS_V2: TableDefinition<(&str, i64), (i64, u16)> = TableDefinition::new("readings");
const READING_EXTRAS_V2: TableDefinition<(&str, i64), (i64, i64)> = TableDefinition::new("reading_extras");
const SAMPLES: TableDefinition<(&str, i64), (f64, u8, &str)> = TableDefinition::new("samples");
const DEVICE_STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("device_status");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const METER_COMM: TableDefinition<&str, &[u8]> = TableDefinition::new("meter_comm");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");

/// Why the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {reason}")]
    CreateDir { path: PathBuf, reason: String },
    #[error("store {path} is locked by another running process (is another waterworks using this --data-dir?)")]
    Locked { path: PathBuf },
    #[error("store {path} cannot be opened: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("store {path} has schema version {found}, newer than this program's {supported}; upgrade waterworks")]
    SchemaTooNew { path: PathBuf, found: u64, supported: u64 },
    #[error("storage error: {0}")]
    Io(String),
    #[error("store writer is not running")]
    Unavailable,
    #[error("cannot encode record: {0}")]
    Encode(String),
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

macro_rules! io_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Io(e.to_string()) }
        }
    )*};
}
io_from!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// One audited action (R-G4, R-F7): who did what to what, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub ts: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ok: bool,
}

/// One write operation; a batch of them commits atomically.
#[derive(Clone, Debug)]
pub enum Op {
    Reading(MeterReading),
    Sample(QualitySample),
    DeviceStatus(DeviceId, CommStatus),
    /// The meters of a device that are not clean (see [`MeterComm::is_clean`]); all others are. Replaces the
    /// device's previous list.
    MeterComm(DeviceId, Vec<(MeterId, MeterComm)>),
    User(UserRecord),
    Audit(AuditEntry),
    /// A fact for the change feed and the event journal; it gets its sequence number in the commit.
    Event(Timestamp, Event),
    /// A feed consumer's cursor: every entry up to and including this sequence number is handled. Submitted
    /// together with the consumer's own results, so they commit (or not) as one.
    Cursor(String, u64),
    /// The state blob of an on-demand actor (`actor_state.rs`).
    ActorState(ActorStateOp),
    /// A valve's state, last command and latched fault (`valve_status.rs`).
    ValveStatus(DeviceId, ValveStatus),
    /// A change to the stored sessions (`users.rs`).
    Session(users::SessionOp),
    /// Removes a user's account (its audit entries stay).
    DeleteUser(String),
    /// An audit entry counted on its first row when the same fact was written within a minute (`audit.rs`).
    AuditRepeatable(AuditEntry),
    /// The server's run record: started, stopped cleanly, configuration hash (`audit.rs`).
    Run(RunOp),
    /// A valve command requested and not yet ended, or none (`valve_status.rs`).
    ValvePending(DeviceId, Option<PendingValveCommand>),
    /// A change to the alarms: a condition, an operator's action, a shelf's expiry (`alarms.rs`).
    Alarm(alarms::AlarmOp),
    /// The alarm settings an administrator saved (`alarm_settings.rs`).
    AlarmSettings(Box<crate::alarms::AlarmSettings>),
    /// The usage watch: how far it evaluated, a zone's leakage for a period (`usage.rs`).
    Usage(usage::UsageOp),
    /// The notification outbox: enqueue, and what became of each attempt (`outbox.rs`, issue 10 §1).
    Notify(outbox::NotifyOp),
    /// Work orders: created, each step, SLA deadlines (`work_orders.rs`, issue 10 §3).
    WorkOrder(work_orders::WorkOrderOp),
    /// Incidents: opened, progress, closed with the report (`incidents.rs`, issue 10 §5).
    Incident(incidents::IncidentOp),
    /// Calibration due dates and records (`maintenance.rs`, issue 10 §5).
    Maintenance(maintenance::MaintenanceOp),
}

/// What a commit produced for the change feed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The events committed, with their sequence numbers, in order.
    pub events: Vec<EventRecord>,
    /// The highest sequence number committed so far (0: none yet).
    pub head: u64,
}

/// A stored meter reading, as read back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredReading {
    pub meter: MeterId,
    pub ts: Timestamp,
    pub volume_m3: String,
    pub status: Vec<&'static str>,
    /// What the meter's own clock showed (CJ/T 188), ms since the epoch; absent for other meters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter_clock: Option<Timestamp>,
    /// The settlement-day volume the meter reported (CJ/T 188), m³ with three decimals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement_volume_m3: Option<String>,
}

/// A stored water-quality sample, as read back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredSample {
    pub parameter: String,
    pub ts: Timestamp,
    pub value: f64,
    pub unit: String,
    pub flags: Vec<&'static str>,
}

/// The durable store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    feed: Arc<feed::FeedHead>,
    /// The alarm journal's newest number, moved after each commit that carried an alarm op (issue 9 §2).
    alarm_head: Arc<alarm_feed::JournalHead>,
    /// Held by `apply` from `begin_write` until the feed head has moved, so that a second writer (an old
    /// committer finishing while a restarted one begins) never takes a sequence number twice.
    commit: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The first and last hour the readings table holds, or `None` when it is empty.
fn hour_bounds(
    t: &impl ReadableTable<&'static [u8], (i64, u16)>,
    meter: &MeterId,
) -> Result<Option<(i32, i32)>, StoreError> {
    let (Some(first), Some(last)) = (t.first()?, t.last()?) else { return Ok(None) };
    let hour = |k: &[u8]| reading_key::hour_of_key(k).ok_or_else(|| bad_key(meter));
    Ok(Some((hour(first.0.value())?, hour(last.0.value())?)))
}

/// A meter's latest plausibly dated reading found by walking the readings table back hour by hour (only when
/// the one `meter_latest` held was replaced by an implausibly dated reading of the same time).
fn latest_in(
    t: &impl ReadableTable<&'static [u8], (i64, u16)>,
    meter: &MeterId,
    at_most: i64,
) -> Result<Option<(Timestamp, i64, u16)>, StoreError> {
    // Skip-scan back from the replaced reading's hour: each probe either finds the meter's rows in `hour` or
    // lands on the next older key, whose hour is where to look next (empty hours cost nothing).
    let mut hour = reading_key::hour_of(at_most);
    loop {
        let (lo, hi) = reading_key::hour_span(hour);
        let (lo, hi) =
            (reading_key::encode(meter, Timestamp(lo)), reading_key::encode(meter, Timestamp(hi.min(at_most))));
        let mut older = None;
        for entry in t.range(..=hi.as_slice())?.rev() {
            let (k, v) = entry?;
            if k.value() < lo.as_slice() {
                older = Some(reading_key::hour_of_key(k.value()).ok_or_else(|| bad_key(meter))?);
                break;
            }
            let (litres, status) = v.value();
            if !MeterStatus(status).time_implausible() {
                let ts = reading_key::time_of(k.value()).ok_or_else(|| bad_key(meter))?;
                return Ok(Some((ts, litres, status)));
            }
        }
        hour = match older {
            None => return Ok(None),
            Some(h) if h < hour => h,
            Some(_) if hour == i32::MIN => return Ok(None),
            Some(_) => hour - 1,
        };
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, checks its schema version and that every table opens.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::CreateDir { path: dir.to_path_buf(), reason: e.to_string() })?;
        let path = dir.join(DB_FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked { path }),
            Err(e) => return Err(StoreError::Open { path, reason: e.to_string() }),
        };
        let mut store = Store {
            db: Arc::new(db),
            path,
            feed: Arc::new(feed::FeedHead::new(0)),
            alarm_head: Arc::new(alarm_feed::JournalHead::default()),
            commit: Arc::new(std::sync::Mutex::new(())),
        };
        store.init_schema()?;
        let head = store.last_seq()?;
        store.feed = Arc::new(feed::FeedHead::new(head));
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init_schema(&self) -> Result<(), StoreError> {
        let open_err = |e: String| StoreError::Open { path: self.path.clone(), reason: e };
        let (found, migrating) = {
            let txn = self.db.begin_read().map_err(|e| open_err(e.to_string()))?;
            match txn.open_table(META) {
                Ok(meta) => {
                    let get = |k: &str| meta.get(k).map(|v| v.map(|v| v.value())).map_err(|e| open_err(e.to_string()));
                    (get("schema_version")?, get(migrate::MIGRATING)?.is_some())
                }
                Err(redb::TableError::TableDoesNotExist(_)) => (None, false),
                Err(e) => return Err(open_err(e.to_string())),
            }
        };
        if let Some(v) = found.filter(|&v| v > SCHEMA_VERSION) {
            return Err(StoreError::SchemaTooNew { path: self.path.clone(), found: v, supported: SCHEMA_VERSION });
        }
        // Version 1 → 2 added the feed, events and cursors tables (created below); nothing to convert.
        // Versions 2 and 3 → 4 re-key the readings tables: copied first, by day windows; the old ones go below.
        // The version says 4 from the start of the copy (with the flag), so an older binary refuses the store
        // rather than write rows the copy would miss; a copy cut off resumes at the next open.
        if found.is_some_and(|v| v < 4) || migrating {
            if !migrating {
                let txn = self.db.begin_write().map_err(|e| open_err(e.to_string()))?;
                {
                    let mut meta = txn.open_table(META).map_err(|e| open_err(e.to_string()))?;
                    meta.insert("schema_version", SCHEMA_VERSION).map_err(|e| open_err(e.to_string()))?;
                    meta.insert(migrate::MIGRATING, 1).map_err(|e| open_err(e.to_string()))?;
                }
                txn.commit().map_err(|e| open_err(e.to_string()))?;
            }
            let rows =
                migrate::readings_to_v4(&self.db).map_err(|e| open_err(format!("migration to schema 4: {e}")))?;
            tracing::info!(message = "Store migrated to schema version 4.", rows_copied = rows);
        }
        let txn = self.db.begin_write().map_err(|e| open_err(e.to_string()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| open_err(e.to_string()))?;
            if found != Some(SCHEMA_VERSION) {
                meta.insert("schema_version", SCHEMA_VERSION).map_err(|e| open_err(e.to_string()))?;
            }
            // The migration's flag and progress records go with the tables they counted.
            meta.remove(migrate::MIGRATING).map_err(|e| open_err(e.to_string()))?;
            let progress: Vec<String> = meta
                .range(migrate::PROGRESS_PREFIX..migrate::PROGRESS_END)
                .map_err(|e| open_err(e.to_string()))?
                .map(|e| e.map(|(k, _)| k.value().to_owned()))
                .collect::<Result<_, _>>()
                .map_err(|e| open_err(e.to_string()))?;
            for key in progress {
                meta.remove(key.as_str()).map_err(|e| open_err(e.to_string()))?;
            }
            txn.delete_table(READINGS_V2).map_err(|e| open_err(e.to_string()))?;
            txn.delete_table(READING_EXTRAS_V2).map_err(|e| open_err(e.to_string()))?;
            txn.delete_table(READINGS_V3).map_err(|e| open_err(e.to_string()))?;
            txn.delete_table(READING_EXTRAS_V3).map_err(|e| open_err(e.to_string()))?;
            // Opening every table checks that each one's stored types match ours.
            txn.open_table(READINGS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(READING_EXTRAS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(METER_LATEST).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(SAMPLES).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(DEVICE_STATUS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(METER_COMM).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(USERS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(AUDIT).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(FEED).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(EVENTS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(CURSORS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(valve_status::VALVE_STATUS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(users::SESSIONS).map_err(|e| open_err(e.to_string()))?;
            txn.open_table(valve_status::VALVE_PENDING).map_err(|e| open_err(e.to_string()))?;
            audit::create_tables(&txn).map_err(|e| open_err(e.to_string()))?;
        }
        txn.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(())
    }

    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("schema_version")?.map(|v| v.value()).unwrap_or(0))
    }

    /// Applies a batch in one durable transaction. Only the writer thread calls this. It takes the operations by
    /// reference, so the writer can pass the submissions it holds without copying them.
    ///
    /// Change feed: the readings and samples of the whole batch become one `feed` entry (binary,
    /// `feed_codec.rs`), numbered after the batch's events; each event is one `events` entry, numbered in
    /// commit order from the same counter. Numbers are taken only when the commit succeeds, so the feed has no
    /// holes from failed commits.
    pub(crate) fn apply<'a, S>(&self, subs: impl IntoIterator<Item = S>) -> Result<Applied, StoreError>
    where
        S: IntoIterator<Item = &'a Op>,
    {
        // A poisoned lock guards nothing broken: the sequence is re-read from the feed head below.
        let _commit = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write()?;
        let mut committed = Vec::new();
        let mut seq;
        let mut alarm_ops = false;
        {
            let mut readings = txn.open_table(READINGS)?;
            let mut extras = txn.open_table(READING_EXTRAS)?;
            let mut latest = txn.open_table(METER_LATEST)?;
            let mut samples = txn.open_table(SAMPLES)?;
            let mut status = txn.open_table(DEVICE_STATUS)?;
            let mut users = txn.open_table(USERS)?;
            let mut audit = txn.open_table(AUDIT)?;
            let mut feed = txn.open_table(FEED)?;
            let mut events = txn.open_table(EVENTS)?;
            // The next numbers follow what the store holds, not the in-memory head: a commit that reported an
            // error but became durable anyway must not have its numbers taken again.
            seq = feed.last()?.map_or(0, |(k, _)| k.value()).max(events.last()?.map_or(0, |(k, _)| k.value()));
            let mut cursors = txn.open_table(CURSORS)?;
            let mut next_audit = audit.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            let mut actor_states = actor_state::ActorStateWrites::new(&txn);
            // Readings are inserted after the loop in key order (issue 7 §8): a group commit of thousands of
            // readings spread over the meters then walks the B-tree once from left to right, touching each
            // leaf in turn while it is hot, instead of jumping about; a big batch becomes cheaper per reading
            // than a small one, so a backlog shrinks instead of feeding itself. The sort is stable, so of two
            // readings of one meter and time the later one is still written last and wins, as before.
            let mut sorted: Vec<&MeterReading> = Vec::new();
            // The readings and samples of the whole commit make one feed entry (issue 7 §8): one row and one
            // encoding per commit, however many submissions it groups.
            let mut data = feed_codec::FeedEncoder::default();
            for sub in subs {
                for op in sub {
                    match op {
                        Op::Reading(r) => {
                            sorted.push(r);
                            data.reading(r);
                        }
                        Op::Sample(s) => {
                            samples.insert((s.series().as_str(), s.ts.0), (s.value, s.flags.0, s.unit.as_str()))?;
                            data.sample(s);
                        }
                        Op::Event(ts, event) => {
                            seq += 1;
                            let json = serde_json::to_vec(&feed::StoredEventRef { ts: *ts, event })
                                .map_err(|e| StoreError::Encode(e.to_string()))?;
                            events.insert(seq, json.as_slice())?;
                            committed.push(EventRecord { seq, ts: *ts, event: event.clone() });
                        }
                        Op::Cursor(name, at) => {
                            cursors.insert(name.as_str(), *at)?;
                        }
                        Op::DeviceStatus(id, st) => {
                            let json = serde_json::to_vec(st).map_err(|e| StoreError::Encode(e.to_string()))?;
                            status.insert(id.as_str(), json.as_slice())?;
                        }
                        Op::MeterComm(id, meters) => {
                            let mut table = txn.open_table(METER_COMM)?;
                            if meters.is_empty() {
                                table.remove(id.as_str())?;
                            } else {
                                let json = serde_json::to_vec(meters).map_err(|e| StoreError::Encode(e.to_string()))?;
                                table.insert(id.as_str(), json.as_slice())?;
                            }
                        }
                        Op::User(u) => {
                            let json = serde_json::to_vec(u).map_err(|e| StoreError::Encode(e.to_string()))?;
                            users.insert(u.username.as_str(), json.as_slice())?;
                        }
                        Op::Audit(a) => {
                            audit::put(&mut audit, next_audit, a)?;
                            next_audit += 1;
                        }
                        Op::AuditRepeatable(a) => audit::put_repeatable(&txn, &mut audit, &mut next_audit, a)?,
                        Op::Run(op) => audit::put_run(&txn, op)?,
                        Op::ValvePending(id, p) => valve_status::put_pending(&txn, id, p.as_ref())?,
                        Op::ActorState(op) => actor_states.apply(op)?,
                        Op::ValveStatus(id, st) => valve_status::put(&txn, id, st)?,
                        Op::Session(op) => users::apply_session(&txn, op)?,
                        Op::DeleteUser(name) => _ = users.remove(name.as_str())?,
                        Op::AlarmSettings(settings) => alarm_settings::put(&txn, settings)?,
                        Op::Usage(op) => usage::apply(&txn, op)?,
                        Op::Notify(op) => outbox::apply(&txn, op)?,
                        Op::WorkOrder(op) => work_orders::apply(&txn, op)?,
                        Op::Incident(op) => incidents::apply(&txn, op)?,
                        Op::Maintenance(op) => maintenance::apply(&txn, op)?,
                        Op::Alarm(op) => {
                            alarm_ops = true;
                            // An operator's action brings its audit entry, written with the outcome decided in
                            // this commit (issue 9: no "done" audited for an action a race made void).
                            if let Some(entry) = alarms::apply(&txn, op)? {
                                audit::put(&mut audit, next_audit, &entry)?;
                                next_audit += 1;
                            }
                        }
                    }
                }
            }
            sorted.sort_by(|a, b| reading_key::cmp(a, b));
            let mut key = Vec::with_capacity(32);
            for r in sorted {
                reading_key::encode_into(&mut key, r.meter.as_str(), r.ts.0);
                readings.insert(key.as_slice(), (r.volume.litres(), r.status.0))?;
                if r.meter_clock.is_some() || r.settlement_volume.is_some() {
                    let clock = r.meter_clock.map_or(i64::MIN, |t| t.0);
                    let settlement = r.settlement_volume.map_or(-1, |v| v.litres());
                    extras.insert(key.as_slice(), (clock, settlement))?;
                }
                let meter = r.meter.as_str();
                let before = latest.get(meter)?.map(|v| v.value().0);
                if !r.status.time_implausible() {
                    // Readings dated implausibly (`time_future`, `time_stale`) are kept but never the latest.
                    if before.is_none_or(|ts| r.ts.0 >= ts) {
                        latest.insert(meter, (r.ts.0, r.volume.litres(), r.status.0))?;
                    }
                } else if before == Some(r.ts.0) {
                    // The latest reading was just replaced by an implausibly dated one: look for the one before.
                    match latest_in(&readings, &r.meter, r.ts.0)? {
                        Some((ts, litres, status)) => latest.insert(meter, (ts.0, litres, status))?,
                        None => latest.remove(meter)?,
                    };
                }
            }
            if !data.is_empty() {
                seq += 1;
                feed.insert(seq, data.encode().as_slice())?;
            }
        }
        let alarm_last = if alarm_ops { alarm_feed::journal_last(&txn)? } else { 0 };
        txn.commit()?;
        self.feed.advance(seq);
        self.alarm_head.advance(alarm_last);
        Ok(Applied { events: committed, head: seq })
    }

    /// Applies one submission (tests and tools; the writer batches submissions).
    #[cfg(test)]
    pub(crate) fn apply_one(&self, ops: &[Op]) -> Result<Applied, StoreError> {
        self.apply([ops.iter()])
    }

    /// The latest plausibly dated reading of a meter (kept in `meter_latest` with every commit).
    pub fn latest_reading(&self, meter: &MeterId) -> Result<Option<(Timestamp, Volume, MeterStatus)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(METER_LATEST)?;
        Ok(t.get(meter.as_str())?.map(|v| {
            let (ts, litres, status) = v.value();
            (Timestamp(ts), Volume::from_litres(litres), MeterStatus(status))
        }))
    }

    /// The latest sample of a logger parameter.
    pub fn latest_sample(
        &self,
        device: &DeviceId,
        parameter: &str,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError> {
        let series = crate::model::reading::series_key(device, parameter);
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SAMPLES)?;
        for entry in t.range((series.as_str(), i64::MIN)..=(series.as_str(), i64::MAX))?.rev() {
            let (k, v) = entry?;
            let (value, flags, _unit) = v.value();
            if !QualityFlags(flags).time_implausible() {
                return Ok(Some((Timestamp(k.value().1), value, QualityFlags(flags))));
            }
        }
        Ok(None)
    }

    /// The sample of a logger parameter just before `ts` (strictly earlier).
    pub fn sample_before(
        &self,
        device: &DeviceId,
        parameter: &str,
        ts: Timestamp,
    ) -> Result<Option<(Timestamp, f64, QualityFlags)>, StoreError> {
        let series = crate::model::reading::series_key(device, parameter);
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SAMPLES)?;
        let mut range = t.range((series.as_str(), i64::MIN)..(series.as_str(), ts.0))?;
        Ok(match range.next_back() {
            Some(entry) => {
                let (k, v) = entry?;
                let (value, flags, _unit) = v.value();
                Some((Timestamp(k.value().1), value, QualityFlags(flags)))
            }
            None => None,
        })
    }

    /// Readings of one meter with `from <= ts <= to`, oldest first, at most `limit`.
    pub fn meter_readings(
        &self,
        meter: &MeterId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredReading>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(READINGS)?;
        let extras = txn.open_table(READING_EXTRAS)?;
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        if limit == 0 {
            return Ok(out);
        }
        let Some((first, last)) = hour_bounds(&t, meter)? else { return Ok(out) };
        // Skip-scan forward: each probe reads the meter's rows in `hour`, then the first key after them tells
        // the next hour that holds anything (empty hours cost nothing).
        let (mut hour, end) = (reading_key::hour_of(from.0).max(first), reading_key::hour_of(to.0).min(last));
        let mut rows = Vec::new();
        'hours: while hour <= end {
            let (lo, hi) = reading_key::hour_span(hour);
            let (lo, hi) = (
                reading_key::encode(meter, Timestamp(lo.max(from.0))),
                reading_key::encode(meter, Timestamp(hi.min(to.0))),
            );
            let mut next = None;
            for entry in t.range(lo.as_slice()..)? {
                let (k, v) = entry?;
                if k.value() > hi.as_slice() {
                    next = Some(reading_key::hour_of_key(k.value()).ok_or_else(|| bad_key(meter))?);
                    break;
                }
                rows.push((k, v));
                if rows.len() == limit {
                    break 'hours;
                }
            }
            hour = match next {
                None => break,
                Some(h) if h > hour => h,
                Some(_) if hour == i32::MAX => break,
                Some(_) => hour + 1,
            };
        }
        for (k, v) in rows {
            let (litres, status) = v.value();
            let ts = reading_key::time_of(k.value()).ok_or_else(|| bad_key(meter))?;
            let (clock, settlement) = extras.get(k.value())?.map_or((i64::MIN, -1), |e| e.value());
            out.push(StoredReading {
                meter: meter.clone(),
                ts,
                volume_m3: Volume::from_litres(litres).to_string(),
                status: MeterStatus(status).names(),
                meter_clock: (clock != i64::MIN).then_some(Timestamp(clock)),
                settlement_volume_m3: (settlement >= 0).then(|| Volume::from_litres(settlement).to_string()),
            });
        }
        Ok(out)
    }

    /// Samples of one logger parameter with `from <= ts <= to`, oldest first, at most `limit`.
    pub fn samples(
        &self,
        device: &DeviceId,
        parameter: &str,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredSample>, StoreError> {
        let series = crate::model::reading::series_key(device, parameter);
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SAMPLES)?;
        let mut out = Vec::new();
        if from > to {
            return Ok(out);
        }
        for entry in t.range((series.as_str(), from.0)..=(series.as_str(), to.0))?.take(limit) {
            let (k, v) = entry?;
            let (value, flags, unit) = v.value();
            out.push(StoredSample {
                parameter: parameter.to_owned(),
                ts: Timestamp(k.value().1),
                value,
                unit: unit.to_owned(),
                flags: QualityFlags(flags).names(),
            });
        }
        Ok(out)
    }

    /// Total number of stored meter readings (for tests and the start-up log).
    pub fn reading_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(READINGS)?.len()?)
    }

    pub fn device_status(&self, device: &DeviceId) -> Result<Option<CommStatus>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DEVICE_STATUS)?;
        match t.get(device.as_str())? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Io(format!("device status of {device}: {e}"))),
            None => Ok(None),
        }
    }

    /// The saved per-meter status of a device's meters that were not clean (issue 7 §4).
    pub fn meter_comm(&self, device: &DeviceId) -> Result<Vec<(MeterId, MeterComm)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(METER_COMM)?;
        match t.get(device.as_str())? {
            Some(v) => {
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Io(format!("meter status of {device}: {e}")))
            }
            None => Ok(Vec::new()),
        }
    }

    pub fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(USERS)?;
        match t.get(username)? {
            Some(v) => {
                serde_json::from_slice(v.value()).map(Some).map_err(|e| StoreError::Io(format!("user {username}: {e}")))
            }
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(USERS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Io(format!("user record: {e}")))?);
        }
        Ok(out)
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        for entry in t.iter()?.rev().take(limit) {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Io(format!("audit entry: {e}")))?);
        }
        Ok(out)
    }
}

fn bad_key(meter: &MeterId) -> StoreError {
    StoreError::Io(format!("a stored reading key of meter {meter} is damaged"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn reading(meter: &str, ts: i64, litres: i64) -> Op {
        Op::Reading(MeterReading {
            meter: MeterId::new(meter),
            device: DeviceId::new("c1"),
            ts: Timestamp(ts),
            volume: Volume::from_litres(litres),
            meter_clock: None,
            settlement_volume: None,
            status: MeterStatus(MeterStatus::BATTERY_LOW),
        })
    }

    #[test]
    fn readings_round_trip_and_range_by_time() {
        let dir = tempdir();
        let store = Store::open(&dir).unwrap();
        store
            .apply_one(&[
                reading("m1", 10, 1_000),
                reading("m1", 20, 1_250),
                reading("m2", 15, 9),
                reading("m1", 30, 1_300),
            ])
            .unwrap();
        let got = store.meter_readings(&MeterId::new("m1"), Timestamp(10), Timestamp(20), 100).unwrap();
        assert_eq!(got.iter().map(|r| r.volume_m3.as_str()).collect::<Vec<_>>(), vec!["1.000", "1.250"]);
        assert_eq!(got[0].status, vec!["battery_low"]);
        let latest = store.latest_reading(&MeterId::new("m1")).unwrap().unwrap();
        assert_eq!((latest.0, latest.1.litres()), (Timestamp(30), 1_300));
        assert_eq!(store.latest_reading(&MeterId::new("m0")).unwrap(), None);
        // A repeated write of the same meter and time is idempotent.
        store.apply_one(&[reading("m1", 30, 1_300)]).unwrap();
        assert_eq!(store.reading_count().unwrap(), 4);
    }

    #[test]
    fn reopen_keeps_data_and_schema_version() {
        let dir = tempdir();
        {
            let store = Store::open(&dir).unwrap();
            store.apply_one(&[reading("m1", 1, 5)]).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.reading_count().unwrap(), 1);
    }

    #[test]
    fn a_second_open_of_the_same_store_is_refused_as_locked() {
        let dir = tempdir();
        let _first = Store::open(&dir).unwrap();
        let err = Store::open(&dir).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("locked by another running process"));
    }

    /// A version 3 key, written out here as version 3 wrote it (meter bytes escaped, terminator, time).
    fn v3_key(meter: &str, ts: i64) -> Vec<u8> {
        let mut k: Vec<u8> =
            meter.as_bytes().iter().flat_map(|&b| if b == 0 { vec![0, 0xFF] } else { vec![b] }).collect();
        k.extend_from_slice(&[0, 0]);
        k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
        k
    }

    #[test]
    fn a_version_3_store_is_migrated_to_hour_first_keys_with_each_meters_latest_reading() {
        let dir = tempdir();
        let future = MeterStatus::TIME_FUTURE;
        {
            let db = Database::create(dir.join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                txn.open_table(META).unwrap().insert("schema_version", 3).unwrap();
                let mut t = txn.open_table(READINGS_V3).unwrap();
                for m in 0..200i64 {
                    for (i, ts) in [-3_600_001, 0, 1_767_225_600_000, 1_767_229_200_000].into_iter().enumerate() {
                        t.insert(v3_key(&format!("m-{m}"), ts + m).as_slice(), (m * 10 + i as i64, 0)).unwrap();
                    }
                }
                // m-7's newest reading is dated in the future: kept, but not its latest.
                t.insert(v3_key("m-7", 1_800_000_000_000).as_slice(), (1, future)).unwrap();
                t.insert(v3_key("a\0b", 9).as_slice(), (99, 0)).unwrap();
                txn.open_table(READING_EXTRAS_V3)
                    .unwrap()
                    .insert(v3_key("m-5", 5).as_slice(), (1_700_000_000_000, 42))
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.reading_count().unwrap(), 802);
        let got = store.meter_readings(&MeterId::new("m-5"), Timestamp(i64::MIN), Timestamp(i64::MAX), 10).unwrap();
        let times: Vec<i64> = got.iter().map(|r| r.ts.0).collect();
        assert_eq!(times, vec![-3_599_996, 5, 1_767_225_600_005, 1_767_229_200_005]);
        assert_eq!(got[1].meter_clock, Some(Timestamp(1_700_000_000_000)));
        let latest = |m: &str| store.latest_reading(&MeterId::new(m)).unwrap().map(|(ts, v, _)| (ts.0, v.litres()));
        assert_eq!(latest("m-199"), Some((1_767_229_200_199, 1_993)));
        assert_eq!(latest("m-7"), Some((1_767_229_200_007, 73)));
        assert_eq!(latest("a\0b"), Some((9, 99)));
        assert_eq!(latest("m-200"), None);
        let txn = store.db.begin_read().unwrap();
        assert!(matches!(txn.open_table(READINGS_V3), Err(redb::TableError::TableDoesNotExist(_))));
        assert!(matches!(txn.open_table(READING_EXTRAS_V3), Err(redb::TableError::TableDoesNotExist(_))));
    }

    #[test]
    fn the_latest_reading_is_the_newest_plausible_one_whatever_order_readings_come_in() {
        let store = Store::open(&tempdir()).unwrap();
        let m = MeterId::new("m-1");
        let at = |ts: i64, litres: i64, status: u16| {
            Op::Reading(MeterReading {
                meter: m.clone(),
                device: DeviceId::new("c1"),
                ts: Timestamp(ts),
                volume: Volume::from_litres(litres),
                status: MeterStatus(status),
                meter_clock: None,
                settlement_volume: None,
            })
        };
        let latest = || store.latest_reading(&m).unwrap().map(|(ts, v, _)| (ts.0, v.litres()));
        let hour = reading_key::HOUR_MS;
        store.apply_one(&[at(5 * hour, 50, 0)]).unwrap();
        assert_eq!(latest(), Some((5 * hour, 50)));
        // An older reading (a backfill) does not replace it; a newer one in a later hour does.
        store.apply_one(&[at(2 * hour, 20, 0)]).unwrap();
        assert_eq!(latest(), Some((5 * hour, 50)));
        store.apply_one(&[at(9 * hour + 1, 91, 0), at(7 * hour, 70, 0)]).unwrap();
        assert_eq!(latest(), Some((9 * hour + 1, 91)));
        // A reading dated in the future is kept but is not the latest.
        store.apply_one(&[at(400 * hour, 1, MeterStatus::TIME_FUTURE)]).unwrap();
        assert_eq!(latest(), Some((9 * hour + 1, 91)));
        // The latest replaced by an implausibly dated reading of the same time: the one before it, hours back.
        store.apply_one(&[at(9 * hour + 1, 0, MeterStatus::TIME_STALE)]).unwrap();
        assert_eq!(latest(), Some((7 * hour, 70)));
        let all = store.meter_readings(&m, Timestamp(i64::MIN), Timestamp(i64::MAX), 100).unwrap();
        assert_eq!(all.iter().map(|r| r.ts.0 / hour).collect::<Vec<_>>(), vec![2, 5, 7, 9, 400]);
        // A range across hours, and the limit across hours.
        let some = store.meter_readings(&m, Timestamp(3 * hour), Timestamp(9 * hour), 100).unwrap();
        assert_eq!(some.iter().map(|r| r.ts.0 / hour).collect::<Vec<_>>(), vec![5, 7]);
        assert_eq!(store.meter_readings(&m, Timestamp(0), Timestamp(i64::MAX), 2).unwrap().len(), 2);
        // Only one meter left without plausible readings: none.
        let lone = MeterId::new("m-2");
        store
            .apply_one(&[Op::Reading(MeterReading {
                meter: lone.clone(),
                device: DeviceId::new("c1"),
                ts: Timestamp(hour),
                volume: Volume::from_litres(1),
                status: MeterStatus(0),
                meter_clock: None,
                settlement_volume: None,
            })])
            .unwrap();
        store
            .apply_one(&[Op::Reading(MeterReading {
                meter: lone.clone(),
                device: DeviceId::new("c1"),
                ts: Timestamp(hour),
                volume: Volume::from_litres(2),
                status: MeterStatus(MeterStatus::TIME_STALE),
                meter_clock: None,
                settlement_volume: None,
            })])
            .unwrap();
        assert_eq!(store.latest_reading(&lone).unwrap(), None);
    }

    #[test]
    fn a_version_2_store_is_migrated_to_byte_keys_with_every_reading_and_extra() {
        let dir = tempdir();
        {
            let db = Database::create(dir.join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                txn.open_table(META).unwrap().insert("schema_version", 2).unwrap();
                let mut t = txn.open_table(READINGS_V2).unwrap();
                for m in 0..300i64 {
                    for ts in [-1_000, 0, 1_767_225_600_000] {
                        t.insert((format!("m-{m}").as_str(), ts + m), (m * 10, (m % 7) as u16)).unwrap();
                    }
                }
                txn.open_table(READING_EXTRAS_V2).unwrap().insert(("m-5", 5), (1_700_000_000_000, 42)).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.reading_count().unwrap(), 900);
        let got = store.meter_readings(&MeterId::new("m-5"), Timestamp(i64::MIN), Timestamp(i64::MAX), 10).unwrap();
        let times: Vec<i64> = got.iter().map(|r| r.ts.0).collect();
        assert_eq!(times, vec![-995, 5, 1_767_225_600_005]);
        assert_eq!(got[1].meter_clock, Some(Timestamp(1_700_000_000_000)));
        assert_eq!(got[1].settlement_volume_m3.as_deref(), Some("0.042"));
        assert_eq!(got[0].volume_m3, "0.050");
        let latest = store.latest_reading(&MeterId::new("m-299")).unwrap().unwrap();
        assert_eq!((latest.0, latest.1.litres()), (Timestamp(1_767_225_600_299), 2_990));
        // The old tables are gone, and a second open changes nothing.
        let txn = store.db.begin_read().unwrap();
        assert!(matches!(txn.open_table(READINGS_V2), Err(redb::TableError::TableDoesNotExist(_))));
        drop(txn);
        drop(store);
        assert_eq!(Store::open(&dir).unwrap().reading_count().unwrap(), 900);
    }

    #[test]
    fn a_feed_read_stops_taking_entries_at_its_fact_budget_but_always_takes_one() {
        let dir = tempdir();
        let store = Store::open(&dir).unwrap();
        for c in 0..5 {
            store.apply_one(&[reading("m1", c * 10, 1), reading("m2", c * 10, 1), reading("m3", c * 10, 1)]).unwrap();
        }
        let seqs = |v: Vec<FeedEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.feed_after_within(0, 100, 4).unwrap()), vec![1, 2]);
        assert_eq!(seqs(store.feed_after_within(2, 100, 1).unwrap()), vec![3]);
        assert_eq!(seqs(store.feed_after_within(0, 100, 100).unwrap()), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(store.feed_after_within(0, 2, 100).unwrap()), vec![1, 2]);
    }

    #[test]
    fn sequence_numbers_follow_the_stored_feed_not_the_in_memory_head() {
        let dir = tempdir();
        let store = Store::open(&dir).unwrap();
        store.apply_one(&[reading("m1", 1, 1)]).unwrap();
        // As if a commit had reported an error after it became durable: the head did not move.
        store.feed.last.store(0, std::sync::atomic::Ordering::SeqCst);
        let applied = store.apply_one(&[reading("m1", 2, 2)]).unwrap();
        assert_eq!(applied.head, 2);
        assert_eq!(store.feed_after(0, 10).unwrap().len(), 2, "entry 1 was not overwritten");
    }

    #[test]
    fn an_unreadable_feed_entry_is_handed_on_in_its_place_and_the_entries_after_it_still_come() {
        let store = Store::open(&tempdir()).unwrap();
        store.apply_one(&[reading("m1", 1, 1)]).unwrap();
        store.apply_one(&[reading("m1", 2, 2)]).unwrap();
        let event = Event::CommRestored {
            device: DeviceId::new("c1"),
            region: crate::model::RegionId::new("r1"),
            ts: Timestamp(3),
            after_misses: 2,
        };
        store.apply_one(&[Op::Event(Timestamp(3), event)]).unwrap();
        store.apply_one(&[reading("m1", 4, 4)]).unwrap();
        store.damage_feed_entry(2, b"\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F");
        store.damage_event(3, b"{\"ts\":3,\"event\":{\"kind\":\"from_a_newer_version\"}}");
        let entries = store.feed_after(0, 10).unwrap();
        let kinds: Vec<(u64, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.seq,
                    match &e.fact {
                        FeedFact::Data { .. } => "data",
                        FeedFact::Event(_) => "event",
                        FeedFact::Unreadable { .. } => "unreadable",
                    },
                )
            })
            .collect();
        assert_eq!(kinds, vec![(1, "data"), (2, "unreadable"), (3, "unreadable"), (4, "data")]);
        let FeedFact::Unreadable { reason } = &entries[1].fact else { unreachable!() };
        assert!(reason.starts_with("data entry: "), "{reason}");
    }

    #[test]
    fn a_garbage_file_is_refused_with_its_path() {
        let dir = tempdir();
        std::fs::write(dir.join(DB_FILE), vec![0x5Au8; 4096]).unwrap();
        let err = Store::open(&dir).unwrap_err();
        assert!(err.to_string().contains(DB_FILE), "{err}");
    }

    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ww-store-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
