//! The alarm journal as a stream (issue 9 §2, "every transition committed before it is shown"): what the live
//! hub reads to put alarm transitions on the live stream, in journal order, after their commit.
//!
//! `Store::apply` moves the journal head (a `watch`) after every commit that carried an `Op::Alarm`, whoever
//! submitted it (the engine's feed consumer, an operator through `AlarmsApi`, `ShelfWatch`). A reader waits on
//! [`Store::watch_alarm_journal`], then reads the records after the last one it handled with
//! [`Store::alarm_changes_after`], oldest first, with the standing rows of their alarms **from the same read
//! transaction**, so the state it shows is never older than the records it shows. The head is only a wake-up:
//! a reader that wakes reads everything after its own mark, so no record is lost and none is read twice.
//!
//! What it deliberately does not do: decide transitions (`alarms.rs` and the model do) or number anything (the
//! journal's own keys are the numbers).

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, TableError, WriteTransaction};
use tokio::sync::watch;

use super::alarms::{ALARMS, JOURNAL};
use super::{Store, StoreError};
use crate::model::{Alarm, JournalRecord};

/// The most journal records one read hands out; a reader far behind reads again.
pub const MAX_CHANGES: usize = 500;

/// Journal records after a mark, and the alarms they concern as they stand in the same read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlarmChanges {
    /// Oldest first, with their journal numbers.
    pub records: Vec<(u64, JournalRecord)>,
    /// By alarm id: the standing row of every alarm a record names; absent when the alarm is normal (gone).
    pub alarms: HashMap<String, Alarm>,
}

/// The standing alarms and the journal's newest number, read together (where a live view starts).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlarmStart {
    pub standing: Vec<Alarm>,
    /// The newest journal number (0: none yet).
    pub through: u64,
}

/// The journal's newest number as last committed, and a way to wait for the next.
#[derive(Debug)]
pub(crate) struct JournalHead(watch::Sender<u64>);

impl Default for JournalHead {
    fn default() -> Self {
        JournalHead(watch::channel(0).0)
    }
}

impl JournalHead {
    /// Moves the head forward (never back); receivers wake.
    pub(crate) fn advance(&self, to: u64) {
        self.0.send_if_modified(|last| {
            let moved = to > *last;
            if moved {
                *last = to;
            }
            moved
        });
    }
}

fn decode<T: for<'de> serde::Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Io(format!("{what} cannot be read: {e}")))
}

/// The journal's newest number inside a write transaction (0 when empty), for the head after the commit.
pub(super) fn journal_last(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let journal = txn.open_table(JOURNAL)?;
    let last = journal.last()?.map_or(0, |(k, _)| k.value());
    Ok(last)
}

impl Store {
    /// A receiver that sees the journal's newest number change after each commit with an alarm op.
    pub fn watch_alarm_journal(&self) -> watch::Receiver<u64> {
        self.alarm_head.0.subscribe()
    }

    /// The standing alarms and the journal's newest number, in one read.
    pub fn alarm_start(&self) -> Result<AlarmStart, StoreError> {
        let txn = self.db.begin_read()?;
        let through = match txn.open_table(JOURNAL) {
            Ok(t) => t.last()?.map_or(0, |(k, _)| k.value()),
            Err(TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        let standing = match txn.open_table(ALARMS) {
            Ok(t) => t
                .iter()?
                .map(|e| e.map_err(StoreError::from).and_then(|(_, v)| decode("alarm", v.value())))
                .collect::<Result<_, _>>()?,
            Err(TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(AlarmStart { standing, through })
    }

    /// The journal records after number `after`, oldest first, at most `limit` (capped at [`MAX_CHANGES`]),
    /// with the alarms they name as they stand in the same read.
    pub fn alarm_changes_after(&self, after: u64, limit: usize) -> Result<AlarmChanges, StoreError> {
        let txn = self.db.begin_read()?;
        let journal = match txn.open_table(JOURNAL) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(AlarmChanges::default()),
            Err(e) => return Err(e.into()),
        };
        let mut changes = AlarmChanges::default();
        for entry in journal.range(after.saturating_add(1)..)?.take(limit.clamp(1, MAX_CHANGES)) {
            let (k, v) = entry?;
            changes.records.push((k.value(), decode("alarm journal record", v.value())?));
        }
        let alarms = match txn.open_table(ALARMS) {
            Ok(t) => Some(t),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(alarms) = alarms {
            for (_, record) in &changes.records {
                let id = record.key.id();
                if changes.alarms.contains_key(&id) {
                    continue;
                }
                if let Some(row) = alarms.get(id.as_str())? {
                    changes.alarms.insert(id, decode("alarm", row.value())?);
                }
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmClass, AlarmKey, AlarmState, DeviceId, Priority, RegionId, Timestamp};
    use crate::store::tests::tempdir;
    use crate::store::{AlarmOp, Op};

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
    fn the_head_moves_after_alarm_commits_only_and_changes_come_oldest_first_with_their_rows() {
        let store = Store::open(&tempdir()).unwrap();
        let mut head = store.watch_alarm_journal();
        assert_eq!(store.alarm_start().unwrap(), AlarmStart::default(), "no tables yet");
        assert_eq!(store.alarm_changes_after(0, 10).unwrap(), AlarmChanges::default());
        let a = AlarmKey::new(AlarmClass::QualityLow, &DeviceId::new("w1"), "chlorine");
        let b = AlarmKey::new(AlarmClass::CommLost, &DeviceId::new("c1"), "");
        store.apply_one(&[cond(&a, true, 1), cond(&b, true, 2)]).unwrap();
        assert!(head.has_changed().unwrap());
        assert_eq!(*head.borrow_and_update(), 2);
        // A commit without an alarm op leaves the head alone.
        store.apply_one(&[Op::Cursor("x".into(), 1)]).unwrap();
        assert!(!head.has_changed().unwrap());
        store.apply_one(&[cond(&a, false, 3)]).unwrap();
        assert_eq!(*head.borrow_and_update(), 3);

        let all = store.alarm_changes_after(0, 10).unwrap();
        assert_eq!(all.records.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 2, 3]);
        // `a` cleared while unacknowledged is still standing; `b` too.
        assert_eq!(all.alarms[&a.id()].state, AlarmState::ReturnedUnacknowledged);
        assert_eq!(all.alarms[&b.id()].state, AlarmState::Unacknowledged);
        let later = store.alarm_changes_after(2, 10).unwrap();
        assert_eq!(later.records.len(), 1);
        assert_eq!(later.alarms.keys().collect::<Vec<_>>(), vec![&a.id()], "only the alarms the records name");
        assert_eq!(store.alarm_changes_after(0, 2).unwrap().records.len(), 2, "bounded");
        let start = store.alarm_start().unwrap();
        assert_eq!((start.standing.len(), start.through), (2, 3));
    }
}
