//! The alarm journal as the KPIs read it (issue 9 §3, ISA-18.2): every record of a time window that either
//! annunciated an alarm (a transition into `unacknowledged`: shown to the operator) or activated one (its
//! condition began to hold, shown or not), newest first, in a bounded scan.
//!
//! The journal is keyed by commit order, and records are dated by what they record (a sample's time, an
//! operator's click), so dates rise with the keys except for data that arrives late. The scan walks back
//! from the newest record and stops at the first record dated more than [`LATE_TOLERANCE_MS`] before the
//! window: a record committed earlier than that one but dated inside the window would have to be more than
//! an hour late, which the field protocols do not deliver as current data. At most [`KPI_SCAN_LIMIT`] records
//! are read; beyond that the answer says `truncated` (a flood so large that the KPI is already red).
//!
//! Only the fields the KPIs need are decoded (`Slim`), so a window of a day of a busy utility costs a few
//! milliseconds. Nothing here interprets the records; `alarms::kpi` does (pure).

use redb::{ReadableDatabase, ReadableTable, TableError};
use serde::Deserialize;

use super::alarms::JOURNAL;
use super::{Store, StoreError};
use crate::model::{AlarmKey, AlarmState, RegionId, Timestamp, Transition};

/// The most journal records one KPI scan reads.
pub const KPI_SCAN_LIMIT: usize = 500_000;
/// How much earlier than the window a record may be dated before the scan stops (one hour).
pub const LATE_TOLERANCE_MS: i64 = 3_600_000;

/// One record the KPIs count.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRecord {
    pub at: Timestamp,
    pub region: RegionId,
    pub key: AlarmKey,
    /// The operator was shown it: a transition into `unacknowledged` (an activation, a re-alarm after a
    /// shelf, a suppression or out-of-service).
    pub annunciated: bool,
    /// Its condition began to hold (also behind a shelf: chattering is about the condition).
    pub activated: bool,
}

/// The records of a window, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlarmActivity {
    pub records: Vec<ActivityRecord>,
    /// The scan stopped at [`KPI_SCAN_LIMIT`] before reaching the window's start.
    pub truncated: bool,
}

/// The part of a `JournalRecord` the KPIs read; serde skips the rest.
#[derive(Deserialize)]
struct Slim {
    key: AlarmKey,
    region: RegionId,
    at: Timestamp,
    what: Transition,
    from: AlarmState,
    to: AlarmState,
}

impl Store {
    /// The annunciations and activations dated in `[from, to]`, newest first (see the module's note on the
    /// bounded scan).
    pub fn alarm_activity(&self, from: Timestamp, to: Timestamp) -> Result<AlarmActivity, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(JOURNAL) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(AlarmActivity::default()),
            Err(e) => return Err(e.into()),
        };
        let stop_before = from.0.saturating_sub(LATE_TOLERANCE_MS);
        let mut out = AlarmActivity::default();
        let mut scanned = 0usize;
        for entry in table.iter()?.rev() {
            let (_, v) = entry?;
            scanned += 1;
            if scanned > KPI_SCAN_LIMIT {
                out.truncated = true;
                break;
            }
            let r: Slim = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Io(format!("alarm journal record cannot be read: {e}")))?;
            if r.at.0 < stop_before {
                break;
            }
            if r.at < from || r.at > to {
                continue;
            }
            let annunciated = r.to == AlarmState::Unacknowledged && r.from != AlarmState::Unacknowledged;
            let activated = r.what == Transition::Activated;
            if annunciated || activated {
                out.records.push(ActivityRecord { at: r.at, region: r.region, key: r.key, annunciated, activated });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmClass, DeviceId, Priority};
    use crate::store::tests::tempdir;
    use crate::store::{AlarmAction, AlarmOp, Op};

    fn cond(key: &AlarmKey, active: bool, at: i64) -> Op {
        Op::Alarm(AlarmOp::Condition {
            key: key.clone(),
            region: RegionId::new("r1"),
            priority: Priority::High,
            active,
            at: Timestamp(at),
            value: None,
            limit: None,
        })
    }

    #[test]
    fn activity_counts_annunciations_and_activations_inside_the_window_only() {
        let store = Store::open(&tempdir()).unwrap();
        assert_eq!(store.alarm_activity(Timestamp(0), Timestamp(10)).unwrap(), AlarmActivity::default());
        let key = AlarmKey::new(AlarmClass::QualityLow, &DeviceId::new("w1"), "chlorine");
        let hour = LATE_TOLERANCE_MS;
        // Long before the window (beyond the tolerance), then inside it: activated, cleared, re-activated,
        // shelved, activated behind the shelf (not annunciated), shelf expired (annunciated, not activated).
        store.apply_one(&[cond(&key, true, 1_000), cond(&key, false, 2_000)]).unwrap();
        let base = 10 * hour;
        store.apply_one(&[cond(&key, true, base + 1), cond(&key, false, base + 2)]).unwrap();
        let shelve = AlarmAction::Shelve { until: Timestamp(base + 100), reason: None };
        store
            .apply_one(&[Op::Alarm(AlarmOp::Action {
                key: key.clone(),
                by: "duty1".into(),
                at: Timestamp(base + 3),
                action: shelve,
                audit: None,
            })])
            .unwrap();
        store.apply_one(&[cond(&key, true, base + 4)]).unwrap();
        store.apply_one(&[Op::Alarm(AlarmOp::ExpireShelves { at: Timestamp(base + 100) })]).unwrap();
        let got = store.alarm_activity(Timestamp(base), Timestamp(base + 1_000)).unwrap();
        let seen: Vec<_> = got.records.iter().map(|r| (r.at.0 - base, r.annunciated, r.activated)).collect();
        assert_eq!(seen, vec![(100, true, false), (4, false, true), (1, true, true)]);
        assert!(!got.truncated);
        // The window's end is kept too.
        let got = store.alarm_activity(Timestamp(base), Timestamp(base + 50)).unwrap();
        assert_eq!(got.records.len(), 2);
    }
}
