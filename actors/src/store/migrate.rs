//! Store migrations that copy data (issue 7 §8): the readings tables of schema version 2 (keyed by a
//! `(&str, i64)` tuple) and of version 3 (keyed by the bytes of `(meter, time)`) move to the hour-first byte key
//! of version 4 (`reading_key.rs`), and the table of each meter's latest reading is built from them.
//!
//! The old tables are ordered by meter, the new one by hour first. Copied in the old order, every row would
//! land in a different leaf of the new table and each chunk would rewrite thousands of leaves (about one 4 KiB
//! page per row). So the copy goes by time windows of one day: each window takes every meter's rows of that day
//! (a merge over the meters, which skips days without data), sorted in the new key order, so the new table
//! grows from left to right. Transactions hold at most `CHUNK` rows; the last one of a window also records the
//! window's end (`meta`: `migrate4:<table>`), so a copy cut off by a crash resumes at the first window not
//! recorded (a window copied twice only writes the same keys and values again). While the copy runs the schema
//! version already says 4, with `migrating_to_4` set, so an older binary refuses the store instead of writing
//! rows the copy would miss. The old tables, the progress records and the flag go in the final transaction of
//! `Store::init_schema`.
//!
//! What this module does not do: decide whether a migration is due (`Store::init_schema` does), or delete.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, TableError};

use super::{
    reading_key, StoreError, META, METER_LATEST, READINGS, READINGS_V2, READINGS_V3, READING_EXTRAS, READING_EXTRAS_V2,
    READING_EXTRAS_V3,
};
use crate::model::MeterStatus;

/// Rows written per transaction at most.
const CHUNK: usize = 100_000;
/// The width of a copy window.
const WINDOW_MS: i64 = 24 * reading_key::HOUR_MS;

/// The `meta` flag saying a copy to version 4 is under way (an older binary sees version 4 and refuses).
pub(super) const MIGRATING: &str = "migrating_to_4";
/// The prefix of the `meta` keys recording each table's copied windows.
pub(super) const PROGRESS_PREFIX: &str = "migrate4:";
/// Just past every key with that prefix (`:` + 1), the end of their range.
pub(super) const PROGRESS_END: &str = "migrate4;";

/// Copies the readings and their extras of a version 2 or 3 store (whichever tables exist; both, after an
/// interrupted copy from 2 to 3) into the version 4 tables, then records each meter's latest plausibly dated
/// reading; returns the rows written.
pub(super) fn readings_to_v4(db: &Database) -> Result<u64, StoreError> {
    readings_to_v4_in(db, CHUNK)
}

fn readings_to_v4_in(db: &Database, chunk: usize) -> Result<u64, StoreError> {
    let mut copied = copy(db, &Source::Tuple(READINGS_V2), READINGS, "readings (v2)", chunk)?;
    copied += copy(db, &Source::Bytes(READINGS_V3), READINGS, "readings (v3)", chunk)?;
    copied += copy(db, &Source::Tuple(READING_EXTRAS_V2), READING_EXTRAS, "reading extras (v2)", chunk)?;
    copied += copy(db, &Source::Bytes(READING_EXTRAS_V3), READING_EXTRAS, "reading extras (v3)", chunk)?;
    latest(db, chunk)?;
    Ok(copied)
}

/// An old readings table: keyed by a tuple (version 2) or by the version 3 bytes; both ordered by meter, then
/// time.
enum Source<V: redb::Value + 'static> {
    Tuple(TableDefinition<'static, (&'static str, i64), V>),
    Bytes(TableDefinition<'static, &'static [u8], V>),
}

impl<V> Source<V>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static + Copy + std::fmt::Debug,
{
    /// Whether the table exists in this store.
    fn exists(&self, txn: &ReadTransaction) -> Result<bool, StoreError> {
        let opened = match self {
            Source::Tuple(def) => txn.open_table(*def).map(drop),
            Source::Bytes(def) => txn.open_table(*def).map(drop),
        };
        match opened {
            Ok(()) => Ok(true),
            Err(TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The first meter after `after` (the first of all for `None`).
    fn next_meter(&self, txn: &ReadTransaction, after: Option<&str>) -> Result<Option<String>, StoreError> {
        match self {
            Source::Tuple(def) => {
                let t = txn.open_table(*def)?;
                let mut range = match after {
                    None => t.range::<(&str, i64)>(..)?,
                    Some(m) => t.range::<(&str, i64)>((Bound::Excluded((m, i64::MAX)), Bound::Unbounded))?,
                };
                Ok(range.next().transpose()?.map(|(k, _)| k.value().0.to_owned()))
            }
            Source::Bytes(def) => {
                let t = txn.open_table(*def)?;
                let last = after.map(|m| v3_key(m, i64::MAX));
                let mut range = match &last {
                    None => t.range::<&[u8]>(..)?,
                    Some(k) => t.range::<&[u8]>((Bound::Excluded(k.as_slice()), Bound::Unbounded))?,
                };
                match range.next().transpose()? {
                    None => Ok(None),
                    Some((k, _)) => Ok(Some(decode_v3(k.value()).ok_or_else(not_v3)?.0)),
                }
            }
        }
    }

    /// A meter's rows with `from <= ts <= to`, oldest first, and the time of its first row after `to`.
    fn rows(
        &self,
        txn: &ReadTransaction,
        meter: &str,
        from: i64,
        to: i64,
        out: &mut Vec<(i64, V)>,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Source::Tuple(def) => {
                let t = txn.open_table(*def)?;
                for entry in t.range((meter, from)..=(meter, i64::MAX))? {
                    let (k, v) = entry?;
                    let ts = k.value().1;
                    if ts > to {
                        return Ok(Some(ts));
                    }
                    out.push((ts, v.value()));
                }
            }
            Source::Bytes(def) => {
                let t = txn.open_table(*def)?;
                let (lo, hi) = (v3_key(meter, from), v3_key(meter, i64::MAX));
                for entry in t.range(lo.as_slice()..=hi.as_slice())? {
                    let (k, v) = entry?;
                    let ts = decode_v3(k.value()).ok_or_else(not_v3)?.1;
                    if ts > to {
                        return Ok(Some(ts));
                    }
                    out.push((ts, v.value()));
                }
            }
        }
        Ok(None)
    }

    /// A meter's newest row that `keep` accepts.
    fn newest(
        &self,
        txn: &ReadTransaction,
        meter: &str,
        keep: impl Fn(&V) -> bool,
    ) -> Result<Option<(i64, V)>, StoreError> {
        match self {
            Source::Tuple(def) => {
                let t = txn.open_table(*def)?;
                for entry in t.range((meter, i64::MIN)..=(meter, i64::MAX))?.rev() {
                    let (k, v) = entry?;
                    if keep(&v.value()) {
                        return Ok(Some((k.value().1, v.value())));
                    }
                }
            }
            Source::Bytes(def) => {
                let t = txn.open_table(*def)?;
                let (lo, hi) = (v3_key(meter, i64::MIN), v3_key(meter, i64::MAX));
                for entry in t.range(lo.as_slice()..=hi.as_slice())?.rev() {
                    let (k, v) = entry?;
                    if keep(&v.value()) {
                        return Ok(Some((decode_v3(k.value()).ok_or_else(not_v3)?.1, v.value())));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every meter of the table.
    fn meters(&self, txn: &ReadTransaction) -> Result<Vec<String>, StoreError> {
        let mut meters = Vec::new();
        while let Some(m) = self.next_meter(txn, meters.last().map(String::as_str))? {
            meters.push(m);
        }
        Ok(meters)
    }
}

fn not_v3() -> StoreError {
    StoreError::Encode("a readings key that is not a version 3 key".into())
}

/// The version 3 key of `meter` at `ts`: the meter's bytes with `0x00` escaped as `0x00 0xFF`, the terminator
/// `0x00 0x00`, then the time as 8 bytes big-endian with the sign bit flipped.
fn v3_key(meter: &str, ts: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(meter.len() + 10);
    for &b in meter.as_bytes() {
        k.push(b);
        if b == 0 {
            k.push(0xFF);
        }
    }
    k.extend_from_slice(&[0, 0]);
    k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The `(meter, time)` of a version 3 key (see [`v3_key`]).
fn decode_v3(key: &[u8]) -> Option<(String, i64)> {
    let (head, time) = key.split_at(key.len().checked_sub(8)?);
    let mut meter = Vec::with_capacity(head.len());
    let mut i = 0;
    loop {
        match (head.get(i)?, head.get(i + 1)) {
            (0, Some(0)) if i + 2 == head.len() => break,
            (0, Some(0xFF)) => {
                meter.push(0);
                i += 2;
            }
            (0, _) => return None,
            (&b, _) => {
                meter.push(b);
                i += 1;
            }
        }
    }
    let ts = (u64::from_be_bytes(time.try_into().ok()?) ^ (1 << 63)) as i64;
    Some((String::from_utf8(meter).ok()?, ts))
}

/// The start of the copy window holding `ts`.
fn window_of(ts: i64) -> i64 {
    ts.div_euclid(WINDOW_MS).saturating_mul(WINDOW_MS)
}

/// Copies one old table into `to`, window by window (see the module doc); returns the rows written.
fn copy<V>(
    db: &Database,
    from: &Source<V>,
    to: TableDefinition<&[u8], V>,
    what: &str,
    chunk: usize,
) -> Result<u64, StoreError>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static + Copy + std::fmt::Debug,
{
    let progress = format!("{PROGRESS_PREFIX}{what}");
    let read = db.begin_read()?;
    if !from.exists(&read)? {
        return Ok(0);
    }
    // Rows before `done` were copied by an earlier, interrupted open.
    let done = read.open_table(META)?.get(progress.as_str())?.map(|v| v.value() as i64);
    if done == Some(i64::MAX) {
        return Ok(0);
    }
    let start = done.unwrap_or(i64::MIN);
    // Each meter's next row to copy, earliest first: (time, meter).
    let mut due: BinaryHeap<Reverse<(i64, String)>> = BinaryHeap::new();
    let mut scratch = Vec::new();
    for meter in from.meters(&read)? {
        scratch.clear();
        let next = match from.rows(&read, &meter, start, start, &mut scratch)? {
            _ if !scratch.is_empty() => Some(start),
            next => next,
        };
        if let Some(ts) = next {
            due.push(Reverse((ts, meter)));
        }
    }
    tracing::info!(
        message = "Migrating the store to schema version 4: copying rows to the hour-first table by day.",
        table = what,
        meters = due.len(),
        resumed = done.is_some()
    );
    let mut written = 0u64;
    let mut batch: Vec<(Vec<u8>, V)> = Vec::new();
    let mut rows = Vec::new();
    while let Some(Reverse((first, _))) = due.peek() {
        let window = window_of(*first);
        let end = window.saturating_add(WINDOW_MS - 1);
        // Every meter with rows in this window, in meter order (so the batch is nearly sorted already).
        let mut meters = Vec::new();
        while due.peek().is_some_and(|Reverse((ts, _))| *ts <= end) {
            let Reverse((ts, meter)) = due.pop().expect("peeked");
            meters.push((meter, ts));
        }
        meters.sort();
        for (meter, ts) in meters {
            rows.clear();
            let next = from.rows(&read, &meter, ts, end, &mut rows)?;
            for (ts, v) in &rows {
                let mut key = Vec::new();
                reading_key::encode_into(&mut key, &meter, *ts);
                batch.push((key, *v));
            }
            if let Some(next) = next {
                due.push(Reverse((next, meter)));
            }
            if batch.len() >= chunk {
                written += write(db, to, &mut batch, None)?;
            }
        }
        let recorded = if due.is_empty() { i64::MAX } else { end.saturating_add(1) };
        written += write(db, to, &mut batch, Some((&progress, recorded)))?;
        tracing::info!(message = "Migration progress.", table = what, written, up_to = end);
    }
    Ok(written)
}

/// Writes `batch` (then empties it) in the new key order, with the window's progress record if given.
fn write<V>(
    db: &Database,
    to: TableDefinition<&[u8], V>,
    batch: &mut Vec<(Vec<u8>, V)>,
    progress: Option<(&str, i64)>,
) -> Result<u64, StoreError>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static + Copy + std::fmt::Debug,
{
    batch.sort_by(|a, b| a.0.cmp(&b.0));
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(to)?;
        for (key, v) in batch.iter() {
            t.insert(key.as_slice(), *v)?;
        }
        if let Some((key, until)) = progress {
            txn.open_table(META)?.insert(key, until as u64)?;
        }
    }
    txn.commit()?;
    let n = batch.len() as u64;
    batch.clear();
    Ok(n)
}

/// Records each meter's newest plausibly dated reading of the old tables in `meter_latest`.
fn latest(db: &Database, chunk: usize) -> Result<(), StoreError> {
    let read = db.begin_read()?;
    let mut found: std::collections::BTreeMap<String, (i64, i64, u16)> = Default::default();
    for source in [Source::Tuple(READINGS_V2), Source::Bytes(READINGS_V3)] {
        if !source.exists(&read)? {
            continue;
        }
        for meter in source.meters(&read)? {
            let newest = source.newest(&read, &meter, |v: &(i64, u16)| !MeterStatus(v.1).time_implausible())?;
            if let Some((ts, (litres, status))) = newest {
                let e = found.entry(meter).or_insert((ts, litres, status));
                if ts >= e.0 {
                    *e = (ts, litres, status);
                }
            }
        }
    }
    let rows: Vec<_> = found.into_iter().collect();
    for part in rows.chunks(chunk.max(1)) {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(METER_LATEST)?;
            for (meter, v) in part {
                t.insert(meter.as_str(), *v)?;
            }
        }
        txn.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::tempdir;
    use crate::store::{Store, DB_FILE};

    fn rows_in(db: &Database, def: TableDefinition<&[u8], (i64, u16)>) -> u64 {
        use redb::ReadableTableMetadata;
        db.begin_read().unwrap().open_table(def).unwrap().len().unwrap()
    }

    const DAY: i64 = WINDOW_MS;

    /// A copy cut off after its first two day windows resumes at the third: the table it writes gets only the
    /// rows from then on, while each meter's latest reading still comes from every row.
    #[test]
    fn an_interrupted_copy_resumes_at_the_first_window_not_recorded() {
        let dir = tempdir();
        let db = Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(META).unwrap().insert("schema_version", 3).unwrap();
            let mut t = txn.open_table(READINGS_V3).unwrap();
            for m in 0..30i64 {
                for day in 0..4i64 {
                    for q in 0..5i64 {
                        // Meter m-029's last reading is the newest of all, and dated in the future.
                        let status = if m == 29 && day == 3 && q == 4 { MeterStatus::TIME_FUTURE } else { 0 };
                        let ts = day * DAY + q * 900_000 + m;
                        t.insert(v3_key(&format!("m-{m:03}"), ts).as_slice(), (day * 10 + q, status)).unwrap();
                    }
                }
            }
            // As an earlier open would have left it after the windows of days 0 and 1.
            txn.open_table(META).unwrap().insert("migrate4:readings (v3)", (2 * DAY) as u64).unwrap();
        }
        txn.commit().unwrap();
        // Chunks of 40 rows: a window of 150 rows takes several transactions.
        assert_eq!(readings_to_v4_in(&db, 40).unwrap(), 2 * 30 * 5);
        assert_eq!(rows_in(&db, READINGS), 2 * 30 * 5, "the windows recorded as copied were copied again");
        let read = db.begin_read().unwrap();
        let latest = read.open_table(METER_LATEST).unwrap();
        assert_eq!(latest.get("m-000").unwrap().unwrap().value(), (3 * DAY + 4 * 900_000, 34, 0));
        assert_eq!(latest.get("m-029").unwrap().unwrap().value(), (3 * DAY + 3 * 900_000 + 29, 33, 0));
        assert_eq!(
            read.open_table(META).unwrap().get("migrate4:readings (v3)").unwrap().unwrap().value(),
            i64::MAX as u64
        );
        drop((latest, read));
        // Done: a second run writes nothing; the open that completes the migration drops the records.
        assert_eq!(readings_to_v4_in(&db, 40).unwrap(), 0);
        drop(db);
        let store = Store::open(&dir).unwrap();
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert!(meta.get("migrate4:readings (v3)").unwrap().is_none());
        assert!(meta.get(MIGRATING).unwrap().is_none());
    }

    /// While a copy is under way the store says version 4, so a version 3 binary refuses it.
    #[test]
    fn a_copy_under_way_resumes_at_the_next_open_and_older_binaries_see_version_4() {
        let dir = tempdir();
        let db = Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("schema_version", 4).unwrap();
            meta.insert(MIGRATING, 1).unwrap();
            let mut t = txn.open_table(READINGS_V3).unwrap();
            for m in 0..3 {
                t.insert(v3_key(&format!("m{m}"), 1_000 + m).as_slice(), (m, 0)).unwrap();
            }
        }
        txn.commit().unwrap();
        drop(db);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.reading_count().unwrap(), 3);
        assert_eq!(store.latest_reading(&crate::model::MeterId::new("m2")).unwrap().unwrap().0 .0, 1_002);
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(META).unwrap().get(MIGRATING).unwrap().is_none());
    }

    #[test]
    fn version_3_keys_decode_and_bad_ones_are_refused() {
        let mut key = b"m\0\xFFx\0\0".to_vec();
        key.extend_from_slice(&((5i64 as u64) ^ (1 << 63)).to_be_bytes());
        assert_eq!(decode_v3(&key), Some(("m\0x".to_owned(), 5)));
        assert_eq!(decode_v3(&key[..key.len() - 1]), None);
        assert_eq!(decode_v3(b"m\0\x01\0\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(decode_v3(b""), None);
    }
}
