//! The alarms' kept state (issue 9 §1–§2): standing alarms, the alarm journal and the alarm engine's analog
//! series, written by [`Op::Alarm`](super::Op::Alarm) and read through [`AlarmStore`](super::AlarmStore).
//!
//! Tables (new ones, created on first write, so no schema step; reads of a store that never had an alarm
//! find nothing):
//! - `alarms`: `alarm id -> JSON Alarm`, every alarm that is not normal (standing: active, unacknowledged,
//!   shelved, suppressed or out of service); a row goes when its alarm returns to normal;
//! - `alarm_journal`: `number -> JSON JournalRecord`, every transition in commit order;
//! - `alarm_series`: `device/parameter -> JSON AnalogState`, where each water-quality series stands (the
//!   engine's delays and deadband survive a restart).
//!
//! **An [`AlarmOp`] is an intent, not a row.** The transition runs here, on the row as the write transaction
//! sees it, through the pure lifecycle of `model::alarm`. So the engine (conditions) and operators
//! (acknowledge, shelve) never overwrite each other's changes, whatever order their submissions take in a
//! group commit. A transition the present state refuses changes nothing and is not an error (the batch it
//! rides with, the engine's results and cursor, must still commit); the API checks before it submits and
//! re-reads after, so the user learns the outcome.
//!
//! What it deliberately does not do: decide when a condition holds (the engine does) or who may act (the API).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AuditEntry, Store, StoreError};
use crate::model::{
    Alarm, AlarmClass, AlarmKey, AlarmState, AnalogState, DeviceId, JournalRecord, LifecycleError, Priority, RegionId,
    Timestamp,
};

pub(super) const ALARMS: TableDefinition<&str, &[u8]> = TableDefinition::new("alarms");
pub(super) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("alarm_journal");
const SERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("alarm_series");

/// At most this many journal records are examined per query, so a filter that matches little stays cheap.
const JOURNAL_SCAN_LIMIT: usize = 200_000;

/// One change to the alarms, applied in the writer's transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlarmOp {
    /// The engine: an alarm's condition holds (or not), with the value and limit that decided it. An alarm
    /// not yet known is created (normal) first.
    Condition {
        key: AlarmKey,
        region: RegionId,
        priority: Priority,
        active: bool,
        at: Timestamp,
        value: Option<f64>,
        limit: Option<f64>,
    },
    /// The engine: suppress by design every standing alarm of `class` on `device` (its meters while it is
    /// comm-lost), naming the cause.
    SuppressDevice { device: DeviceId, class: AlarmClass, at: Timestamp, cause: String },
    /// The engine: the cause is gone; those alarms return (re-alarming where the condition holds).
    UnsuppressDevice { device: DeviceId, class: AlarmClass, at: Timestamp },
    /// Every shelf due at `at` expires (re-alarming where the condition holds).
    ExpireShelves { at: Timestamp },
    /// An operator or administrator acts on one alarm. `audit` is the entry to write with the outcome decided
    /// here, in the commit: the action as done, or refused if the alarm changed since the API checked it.
    Action { key: AlarmKey, by: String, at: Timestamp, action: AlarmAction, audit: Option<AuditEntry> },
    /// Where a water-quality series stands (the engine's own bookkeeping).
    Series { series: String, state: AnalogState },
}

/// What a person does to an alarm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AlarmAction {
    Acknowledge { comment: Option<String> },
    Shelve { until: Timestamp, reason: Option<String> },
    Unshelve,
    RemoveFromService { reason: String },
    ReturnToService,
}

impl AlarmAction {
    /// Runs the action on `alarm` (the model's rules; an `Err` changes nothing).
    pub fn run(&self, alarm: &mut Alarm, by: &str, at: Timestamp) -> Result<JournalRecord, LifecycleError> {
        match self {
            AlarmAction::Acknowledge { comment } => alarm.acknowledge(by, at, comment.clone()),
            AlarmAction::Shelve { until, reason } => alarm.shelve(by, at, *until, reason.clone()),
            AlarmAction::Unshelve => alarm.unshelve(by, at),
            AlarmAction::RemoveFromService { reason } => alarm.remove_from_service(by, at, reason.clone()),
            AlarmAction::ReturnToService => alarm.return_to_service(by, at),
        }
    }

    /// The audit name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            AlarmAction::Acknowledge { .. } => "alarm.acknowledge",
            AlarmAction::Shelve { .. } => "alarm.shelve",
            AlarmAction::Unshelve => "alarm.unshelve",
            AlarmAction::RemoveFromService { .. } => "alarm.out_of_service",
            AlarmAction::ReturnToService => "alarm.in_service",
        }
    }
}

/// Which journal records to list; every field narrows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JournalFilter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub device: Option<DeviceId>,
    pub region: Option<RegionId>,
    pub class: Option<AlarmClass>,
    /// The state the transition led to.
    pub state: Option<AlarmState>,
    pub priority: Option<Priority>,
    /// Only records with a smaller number (paging backwards).
    pub before: Option<u64>,
    /// Only records with a greater number (what was written since a known record).
    pub after: Option<u64>,
}

impl JournalFilter {
    fn matches(&self, r: &JournalRecord) -> bool {
        !(self.from.is_some_and(|f| r.at < f)
            || self.to.is_some_and(|t| r.at > t)
            || self.device.as_ref().is_some_and(|d| *d != r.key.device)
            || self.region.as_ref().is_some_and(|g| *g != r.region)
            || self.class.is_some_and(|c| c != r.key.class)
            || self.state.is_some_and(|s| s != r.to)
            || self.priority.is_some_and(|p| p != r.priority))
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Io(format!("{what} cannot be read: {e}")))
}

/// The alarm tables inside one write transaction.
struct Writes<'t> {
    alarms: redb::Table<'t, &'static str, &'static [u8]>,
    journal: redb::Table<'t, u64, &'static [u8]>,
    next: u64,
}

impl Writes<'_> {
    fn load(&self, key: &AlarmKey) -> Result<Option<Alarm>, StoreError> {
        self.alarms.get(key.id().as_str())?.map(|v| decode("alarm", v.value())).transpose()
    }

    /// Writes the alarm's row (or removes it when normal) and the record.
    fn save(&mut self, alarm: &Alarm, record: JournalRecord) -> Result<(), StoreError> {
        let id = alarm.key.id();
        if alarm.is_standing() {
            self.alarms.insert(id.as_str(), encode(alarm)?.as_slice())?;
        } else {
            self.alarms.remove(id.as_str())?;
        }
        self.journal.insert(self.next, encode(&record)?.as_slice())?;
        self.next += 1;
        Ok(())
    }

    /// The standing alarms whose id starts with `prefix`.
    fn with_prefix(&self, prefix: &str) -> Result<Vec<Alarm>, StoreError> {
        let mut out = Vec::new();
        for entry in self.alarms.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(decode("alarm", v.value())?);
        }
        Ok(out)
    }

    fn all(&self) -> Result<Vec<Alarm>, StoreError> {
        self.alarms.iter()?.map(|e| e.map_err(StoreError::from).and_then(|(_, v)| decode("alarm", v.value()))).collect()
    }
}

/// Applies one alarm op inside the writer's transaction; returns the audit entry to write with it, if the op carries one (an action).
pub(super) fn apply(txn: &WriteTransaction, op: &AlarmOp) -> Result<Option<AuditEntry>, StoreError> {
    let journal = txn.open_table(JOURNAL)?;
    let next = journal.last()?.map_or(1, |(k, _)| k.value() + 1);
    let mut w = Writes { alarms: txn.open_table(ALARMS)?, journal, next };
    match op {
        AlarmOp::Condition { key, region, priority, active, at, value, limit } => {
            let mut alarm = match w.load(key)? {
                Some(a) => a,
                None if !active => return Ok(None),
                None => Alarm::new(key.clone(), region.clone(), *priority, *at),
            };
            if let Some(record) = alarm.condition(*active, *at, *value, *limit) {
                w.save(&alarm, record)?;
            }
        }
        AlarmOp::SuppressDevice { device, class, at, cause } => {
            for mut alarm in w.with_prefix(&format!("{}~{device}~", class.as_str()))? {
                if let Ok(record) = alarm.suppress(*at, cause) {
                    w.save(&alarm, record)?;
                }
            }
        }
        AlarmOp::UnsuppressDevice { device, class, at } => {
            for mut alarm in w.with_prefix(&format!("{}~{device}~", class.as_str()))? {
                if let Ok(record) = alarm.unsuppress(*at) {
                    w.save(&alarm, record)?;
                }
            }
        }
        AlarmOp::ExpireShelves { at } => {
            for mut alarm in w.all()? {
                if let Some(record) = alarm.expire_shelf(*at) {
                    w.save(&alarm, record)?;
                }
            }
        }
        AlarmOp::Action { key, by, at, action, audit } => {
            let outcome = match w.load(key)? {
                None => Err("the alarm is no longer standing".to_owned()),
                Some(mut alarm) => match action.run(&mut alarm, by, *at) {
                    Ok(record) => {
                        w.save(&alarm, record)?;
                        Ok(())
                    }
                    Err(error) => Err(error.to_string()),
                },
            };
            if let Err(why) = &outcome {
                tracing::info!(message = "Alarm action no longer allowed; nothing changed.", alarm = %key, by, %why);
            }
            // The audit says what happened in this commit, not what the API expected.
            return Ok(audit.clone().map(|mut entry| {
                if let Err(why) = outcome {
                    entry.ok = false;
                    entry.detail = format!("refused: {why} (the alarm changed meanwhile)");
                }
                entry
            }));
        }
        AlarmOp::Series { series, state } => {
            txn.open_table(SERIES)?.insert(series.as_str(), encode(state)?.as_slice())?;
        }
    }
    Ok(None)
}

/// Opens a table for reading; a table never written is empty.
macro_rules! read_table {
    ($txn:expr, $def:expr) => {
        match $txn.open_table($def) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        }
    };
}

impl Store {
    /// Every standing alarm, in id order.
    pub fn standing_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = read_table!(txn, ALARMS);
        t.iter()?.map(|e| e.map_err(StoreError::from).and_then(|(_, v)| decode("alarm", v.value()))).collect()
    }

    /// One alarm, if it is standing.
    pub fn alarm(&self, key: &AlarmKey) -> Result<Option<Alarm>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = read_table!(txn, ALARMS);
        t.get(key.id().as_str())?.map(|v| decode("alarm", v.value())).transpose()
    }

    /// Journal records matching `filter`, newest first, at most `limit`, with their numbers.
    pub fn alarm_journal(&self, filter: &JournalFilter, limit: usize) -> Result<Vec<(u64, JournalRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = read_table!(txn, JOURNAL);
        let mut out = Vec::new();
        let after = filter.after.map_or(0, |a| a.saturating_add(1));
        for entry in t.range(after..filter.before.unwrap_or(u64::MAX))?.rev().take(JOURNAL_SCAN_LIMIT) {
            let (k, v) = entry?;
            let record: JournalRecord = decode("alarm journal record", v.value())?;
            if filter.matches(&record) {
                out.push((k.value(), record));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Where every water-quality series the engine watches stands.
    pub fn alarm_series(&self) -> Result<Vec<(String, AnalogState)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = read_table!(txn, SERIES);
        t.iter()?
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value().to_owned(), decode("alarm series", v.value())?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Transition};
    use crate::store::tests::tempdir;
    use crate::store::Op;

    fn cond(key: &AlarmKey, active: bool, at: i64) -> Op {
        Op::Alarm(AlarmOp::Condition {
            key: key.clone(),
            region: RegionId::new("r1"),
            priority: Priority::High,
            active,
            at: Timestamp(at),
            value: Some(0.1),
            limit: Some(0.3),
        })
    }

    #[test]
    fn conditions_and_actions_apply_on_the_stored_row_and_survive_a_reopen() {
        let dir = tempdir();
        let key = AlarmKey::new(AlarmClass::QualityLow, &DeviceId::new("w1"), "chlorine");
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.standing_alarms().unwrap(), vec![], "a store without alarm tables reads empty");
            // A clear condition of an unknown alarm creates nothing; the same condition twice is one alarm.
            store.apply_one(&[cond(&key, false, 1)]).unwrap();
            store.apply_one(&[cond(&key, true, 2), cond(&key, true, 3)]).unwrap();
            let ack = AlarmAction::Acknowledge { comment: Some("crew sent".into()) };
            let act = |action: AlarmAction, at| {
                Op::Alarm(AlarmOp::Action {
                    key: key.clone(),
                    by: "duty1".into(),
                    at: Timestamp(at),
                    action,
                    audit: None,
                })
            };
            // The second acknowledge is refused by the lifecycle: nothing changes, and the batch commits.
            store.apply_one(&[act(ack.clone(), 4), act(ack, 5)]).unwrap();
            let series = AnalogState { level: Level::Low, pending: None, last: Some(Timestamp(3)) };
            store.apply_one(&[Op::Alarm(AlarmOp::Series { series: "w1/chlorine".into(), state: series })]).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let standing = store.standing_alarms().unwrap();
        assert_eq!(standing.len(), 1);
        assert_eq!((standing[0].state, standing[0].active), (AlarmState::Acknowledged, true));
        assert_eq!(store.alarm(&key).unwrap().unwrap().comment.as_deref(), Some("crew sent"));
        let journal = store.alarm_journal(&JournalFilter::default(), 10).unwrap();
        let whats: Vec<_> = journal.iter().map(|(n, r)| (*n, r.what, r.by.as_str())).collect();
        assert_eq!(whats, vec![(2, Transition::Acknowledged, "duty1"), (1, Transition::Activated, "system")]);
        assert_eq!(store.alarm_series().unwrap()[0].1.level, Level::Low);
        // Cleared after acknowledge: normal, the row goes, the journal keeps it.
        store.apply_one(&[cond(&key, false, 6)]).unwrap();
        assert_eq!(store.standing_alarms().unwrap(), vec![]);
        let f = JournalFilter { state: Some(AlarmState::Normal), ..JournalFilter::default() };
        assert_eq!(store.alarm_journal(&f, 10).unwrap().len(), 1);
        let f = JournalFilter { device: Some(DeviceId::new("w2")), ..JournalFilter::default() };
        assert_eq!(store.alarm_journal(&f, 10).unwrap().len(), 0);
        let f = JournalFilter { before: Some(3), from: Some(Timestamp(2)), ..JournalFilter::default() };
        assert_eq!(store.alarm_journal(&f, 10).unwrap().iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![2, 1]);
        let f = JournalFilter { after: Some(1), ..JournalFilter::default() };
        assert_eq!(store.alarm_journal(&f, 10).unwrap().iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[test]
    fn suppression_by_device_and_shelf_expiry_touch_only_their_alarms() {
        let store = Store::open(&tempdir()).unwrap();
        let c1 = DeviceId::new("c1");
        let m1 = AlarmKey::new(AlarmClass::MeterCommLost, &c1, "m1");
        let other = AlarmKey::new(AlarmClass::MeterCommLost, &DeviceId::new("c10"), "m9");
        store.apply_one(&[cond(&m1, true, 1), cond(&other, true, 1)]).unwrap();
        let suppress = AlarmOp::SuppressDevice {
            device: c1.clone(),
            class: AlarmClass::MeterCommLost,
            at: Timestamp(2),
            cause: "comm_lost~c1~".into(),
        };
        store.apply_one(&[Op::Alarm(suppress)]).unwrap();
        assert_eq!(store.alarm(&m1).unwrap().unwrap().state, AlarmState::SuppressedByDesign);
        assert_eq!(store.alarm(&other).unwrap().unwrap().state, AlarmState::Unacknowledged, "c10 is not c1");
        store
            .apply_one(&[Op::Alarm(AlarmOp::UnsuppressDevice {
                device: c1,
                class: AlarmClass::MeterCommLost,
                at: Timestamp(3),
            })])
            .unwrap();
        assert_eq!(store.alarm(&m1).unwrap().unwrap().state, AlarmState::Unacknowledged);
        let shelve = AlarmAction::Shelve { until: Timestamp(100), reason: None };
        store
            .apply_one(&[Op::Alarm(AlarmOp::Action {
                key: m1.clone(),
                by: "duty1".into(),
                at: Timestamp(4),
                action: shelve,
                audit: None,
            })])
            .unwrap();
        // An acknowledgement checked against the alarm before it was shelved: the commit finds it shelved,
        // changes nothing and audits the refusal, though the API sent a "done" entry.
        let audit = super::AuditEntry {
            ts: Timestamp(5),
            actor: "duty2".into(),
            action: "alarm.acknowledge".into(),
            target: m1.to_string(),
            detail: "unacknowledged -> acknowledged".into(),
            ok: true,
        };
        let late_ack = AlarmOp::Action {
            key: m1.clone(),
            by: "duty2".into(),
            at: Timestamp(5),
            action: AlarmAction::Acknowledge { comment: None },
            audit: Some(audit),
        };
        store.apply_one(&[Op::Alarm(late_ack)]).unwrap();
        assert_eq!(store.alarm(&m1).unwrap().unwrap().state, AlarmState::Shelved);
        let entry = store.audit_entries(1).unwrap().remove(0);
        assert_eq!((entry.actor.as_str(), entry.ok), ("duty2", false), "{entry:?}");
        assert!(entry.detail.starts_with("refused: "), "{entry:?}");
        store.apply_one(&[Op::Alarm(AlarmOp::ExpireShelves { at: Timestamp(99) })]).unwrap();
        assert_eq!(store.alarm(&m1).unwrap().unwrap().state, AlarmState::Shelved);
        store.apply_one(&[Op::Alarm(AlarmOp::ExpireShelves { at: Timestamp(100) })]).unwrap();
        assert_eq!(store.alarm(&m1).unwrap().unwrap().state, AlarmState::Unacknowledged, "re-alarmed");
    }
}
