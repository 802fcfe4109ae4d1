//! What the usage watch keeps (issue 9 §1, R-B5): how far it evaluated, and each zone's leakage per period.
//! Written by [`Op::Usage`](super::Op::Usage), read through [`UsageStore`].
//!
//! Tables (created on first write, so no schema step; a store that never had one reads as empty):
//! - `usage_watch`: `name -> ms`, the end of the last day the watch evaluated (`"through"`);
//! - `zone_leakage`: `(zone id, period start ms) -> JSON ZoneLeakage`, one row per zone and period (a period
//!   evaluated again, after a restart in the middle of a catch-up, overwrites its row).
//!
//! What it deliberately does not do: compute anything (the watch does), or keep per-meter usage (computed
//! from the readings when asked).

use redb::{ReadableDatabase, TableDefinition, TableError, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::alarms::usage::Period;
use crate::model::Timestamp;

const WATCH: TableDefinition<&str, i64> = TableDefinition::new("usage_watch");
const LEAKAGE: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("zone_leakage");

const THROUGH: &str = "through";

/// A zone's leakage over one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneLeakage {
    pub zone: String,
    pub period: Period,
    pub start: Timestamp,
    pub end: Timestamp,
    /// What the master meters measured, litres (of the complete ones).
    pub master_litres: i64,
    /// What the member meters measured, litres (of the complete ones).
    pub members_litres: i64,
    /// `(master − members) / master`; `None` when the masters measured nothing.
    pub rate: Option<f64>,
    /// Whether every master and member had readings over the whole period (only then is the rate judged).
    pub complete: bool,
    /// Meters whose data did not cover the period.
    pub incomplete_meters: usize,
    /// The threshold in force, 0–1.
    pub threshold: f64,
}

/// One change to the usage watch's tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UsageOp {
    /// Every day ending at or before this instant is evaluated.
    Through(Timestamp),
    /// A zone's leakage for a period.
    Leakage(ZoneLeakage),
}

/// Reads of the usage watch's tables.
pub trait UsageStore: Send + Sync + 'static {
    /// The end of the last day evaluated, if any.
    fn usage_through(&self) -> Result<Option<Timestamp>, StoreError>;
    /// A zone's leakage per period, latest first, at most `limit`.
    fn zone_leakage(&self, zone: &str, limit: usize) -> Result<Vec<ZoneLeakage>, StoreError>;
}

/// Applies one usage op inside the writer's transaction.
pub(super) fn apply(txn: &WriteTransaction, op: &UsageOp) -> Result<(), StoreError> {
    match op {
        UsageOp::Through(at) => {
            txn.open_table(WATCH)?.insert(THROUGH, at.0)?;
        }
        UsageOp::Leakage(l) => {
            let json = serde_json::to_vec(l).map_err(|e| StoreError::Encode(e.to_string()))?;
            txn.open_table(LEAKAGE)?.insert((l.zone.as_str(), l.start.0), json.as_slice())?;
        }
    }
    Ok(())
}

impl UsageStore for Store {
    fn usage_through(&self) -> Result<Option<Timestamp>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(WATCH) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(THROUGH)?.map(|v| Timestamp(v.value())))
    }

    fn zone_leakage(&self, zone: &str, limit: usize) -> Result<Vec<ZoneLeakage>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(LEAKAGE) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.range((zone, i64::MIN)..=(zone, i64::MAX))?.rev().take(limit) {
            let (_, v) = entry?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Io(format!("zone leakage of {zone} cannot be read: {e}")))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;

    fn row(zone: &str, start: i64, rate: f64) -> ZoneLeakage {
        ZoneLeakage {
            zone: zone.into(),
            period: Period::Day,
            start: Timestamp(start),
            end: Timestamp(start + 1),
            master_litres: 1000,
            members_litres: 800,
            rate: Some(rate),
            complete: true,
            incomplete_meters: 0,
            threshold: 0.12,
        }
    }

    #[test]
    fn leakage_rows_read_latest_first_per_zone_and_survive_a_reopen() {
        let dir = crate::store::tests::tempdir();
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.usage_through().unwrap(), None);
            assert!(store.zone_leakage("a", 10).unwrap().is_empty());
            let ops = [
                Op::Usage(UsageOp::Leakage(row("a", 1, 0.1))),
                Op::Usage(UsageOp::Leakage(row("a", 3, 0.3))),
                Op::Usage(UsageOp::Leakage(row("ab", 2, 0.2))),
                Op::Usage(UsageOp::Leakage(row("a", 2, 0.2))),
                Op::Usage(UsageOp::Through(Timestamp(42))),
            ];
            store.apply([&ops[..]]).unwrap();
            store.apply([&[Op::Usage(UsageOp::Leakage(row("a", 3, 0.35)))][..]]).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.usage_through().unwrap(), Some(Timestamp(42)));
        let rates: Vec<f64> = store.zone_leakage("a", 10).unwrap().iter().filter_map(|l| l.rate).collect();
        assert_eq!(rates, vec![0.35, 0.2, 0.1], "latest first, a period evaluated again overwritten");
        assert_eq!(store.zone_leakage("a", 1).unwrap().len(), 1);
        assert_eq!(store.zone_leakage("ab", 10).unwrap().len(), 1);
    }
}
