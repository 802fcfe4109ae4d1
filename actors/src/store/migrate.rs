//! Store migrations that copy data (issue 7 §8): the readings tables of schema version 2 (keyed by a
//! `(&str, i64)` tuple) and of version 3 (keyed by the bytes of `(meter, time)`) move to the hour-first byte key
//! of version 4 (`reading_key.rs`), and the table of each meter's latest reading is built on the way.
//!
//! The copy runs in chunks, each its own transaction, so a store of years of readings never needs one huge
//! transaction in memory. Each chunk's transaction also records how many rows of its source table are copied
//! (`meta`: `migrate4:<table>`); nothing writes the old tables meanwhile, so a copy cut off by a crash or power
//! loss resumes after those rows at the next open (and a row copied twice would only be written again, the
//! same key and value). The old tables are deleted, and the schema version raised, only in the final
//! transaction of `Store::init_schema`, after every row is copied; the progress records go with them.
//!
//! What this module does not do: decide whether a migration is due (the schema version does), or delete.

use std::collections::HashMap;
use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableError};

use super::{
    reading_key, StoreError, META, METER_LATEST, READINGS, READINGS_V2, READINGS_V3, READING_EXTRAS, READING_EXTRAS_V2,
    READING_EXTRAS_V3,
};
use crate::model::MeterStatus;

/// Rows copied per transaction.
const CHUNK: usize = 100_000;

/// Each meter's latest plausibly dated reading: `(ts, litres, status)`.
type Latest = HashMap<String, (i64, i64, u16)>;

/// Copies the readings and their extras of a version 2 or 3 store (whichever tables exist) into the version 4
/// tables, and records each meter's latest reading; returns the rows copied.
pub(super) fn readings_to_v4(db: &Database) -> Result<u64, StoreError> {
    readings_to_v4_in(db, CHUNK)
}

fn readings_to_v4_in(db: &Database, chunk: usize) -> Result<u64, StoreError> {
    let mut latest = Latest::new();
    let mut note = |meter: &str, ts: i64, v: &(i64, u16)| {
        if MeterStatus(v.1).time_implausible() {
            return;
        }
        let e = latest.entry(meter.to_owned()).or_insert((ts, v.0, v.1));
        if ts >= e.0 {
            *e = (ts, v.0, v.1);
        }
    };
    // The latest readings are gathered over the whole copy, so a resumed copy rebuilds them from every row.
    let mut copied = copy(db, Source::Tuple(READINGS_V2), READINGS, "readings (v2)", chunk, &mut note)?;
    copied += copy(db, Source::Bytes(READINGS_V3), READINGS, "readings (v3)", chunk, &mut note)?;
    let extras = |_: &str, _: i64, _: &(i64, i64)| ();
    copied +=
        copy(db, Source::Tuple(READING_EXTRAS_V2), READING_EXTRAS, "reading extras (v2)", chunk, &mut { extras })?;
    copied +=
        copy(db, Source::Bytes(READING_EXTRAS_V3), READING_EXTRAS, "reading extras (v3)", chunk, &mut { extras })?;
    if !latest.is_empty() {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(METER_LATEST)?;
            for (meter, v) in &latest {
                t.insert(meter.as_str(), *v)?;
            }
        }
        txn.commit()?;
    }
    Ok(copied)
}

/// An old readings table: keyed by a tuple (version 2) or by the version 3 bytes.
enum Source<V: redb::Value + 'static> {
    Tuple(TableDefinition<'static, (&'static str, i64), V>),
    Bytes(TableDefinition<'static, &'static [u8], V>),
}

/// The `(meter, time)` of a version 3 key: the meter's bytes with `0x00` escaped as `0x00 0xFF`, the
/// terminator `0x00 0x00`, then the time as 8 bytes big-endian with the sign bit flipped.
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

fn copy<V>(
    db: &Database,
    from: Source<V>,
    to: TableDefinition<&[u8], V>,
    what: &str,
    chunk: usize,
    note: &mut dyn FnMut(&str, i64, &V),
) -> Result<u64, StoreError>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static + Copy + std::fmt::Debug,
{
    let total = {
        let txn = db.begin_read()?;
        let len = match &from {
            Source::Tuple(def) => txn.open_table(*def).map(|t| t.len()),
            Source::Bytes(def) => txn.open_table(*def).map(|t| t.len()),
        };
        match len {
            Ok(n) => n?,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    };
    if total == 0 {
        return Ok(0);
    }
    tracing::info!(
        message = "Migrating the store to schema version 4: copying rows to the hour-first table.",
        table = what,
        rows = total
    );
    // Rows of this table copied by an earlier, interrupted open: only read again (for the latest readings).
    let progress = format!("migrate4:{what}");
    let done_before = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        meta.get(progress.as_str())?.map_or(0, |v| v.value())
    };
    // Where the previous chunk ended: the last source key read.
    let mut after_tuple: Option<(String, i64)> = None;
    let mut after_bytes: Option<Vec<u8>> = None;
    let mut copied = 0u64;
    let mut key = Vec::new();
    loop {
        let mut rows: Vec<(String, i64, V)> = Vec::with_capacity(chunk.min(total as usize));
        {
            let txn = db.begin_read()?;
            match &from {
                Source::Tuple(def) => {
                    let t = txn.open_table(*def)?;
                    let range = match &after_tuple {
                        None => t.range::<(&str, i64)>(..)?,
                        Some((m, ts)) => {
                            t.range::<(&str, i64)>((Bound::Excluded((m.as_str(), *ts)), Bound::Unbounded))?
                        }
                    };
                    for entry in range.take(chunk) {
                        let (k, v) = entry?;
                        let (meter, ts) = k.value();
                        rows.push((meter.to_owned(), ts, v.value()));
                    }
                    after_tuple = rows.last().map(|(m, ts, _)| (m.clone(), *ts));
                }
                Source::Bytes(def) => {
                    let t = txn.open_table(*def)?;
                    let range = match &after_bytes {
                        None => t.range::<&[u8]>(..)?,
                        Some(k) => t.range::<&[u8]>((Bound::Excluded(k.as_slice()), Bound::Unbounded))?,
                    };
                    for entry in range.take(chunk) {
                        let (k, v) = entry?;
                        let raw = k.value();
                        after_bytes = Some(raw.to_vec());
                        let (meter, ts) = decode_v3(raw)
                            .ok_or_else(|| StoreError::Encode(format!("{what}: a key that is not a version 3 key")))?;
                        rows.push((meter, ts, v.value()));
                    }
                }
            }
        }
        if rows.is_empty() {
            break;
        }
        let first_new = done_before.saturating_sub(copied).min(rows.len() as u64) as usize;
        for (meter, ts, v) in &rows {
            note(meter, *ts, v);
        }
        copied += rows.len() as u64;
        if first_new == rows.len() {
            continue;
        }
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(to)?;
            for (meter, ts, v) in &rows[first_new..] {
                reading_key::encode_into(&mut key, meter, *ts);
                t.insert(key.as_slice(), *v)?;
            }
            txn.open_table(META)?.insert(progress.as_str(), copied)?;
        }
        txn.commit()?;
        tracing::info!(message = "Migration progress.", table = what, copied, of = total);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::tempdir;
    use crate::store::{Store, DB_FILE};

    /// A version 3 key as version 3 wrote it.
    fn v3_key(meter: &str, ts: i64) -> Vec<u8> {
        let mut k = meter.as_bytes().to_vec();
        k.extend_from_slice(&[0, 0]);
        k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
        k
    }

    fn rows_in(db: &Database, def: TableDefinition<&[u8], (i64, u16)>) -> u64 {
        db.begin_read().unwrap().open_table(def).unwrap().len().unwrap()
    }

    /// A copy cut off after 200 of 250 rows resumes after them: the table it writes gets only the last 50 rows,
    /// while each meter's latest reading still comes from every row.
    #[test]
    fn an_interrupted_copy_resumes_after_the_rows_it_recorded() {
        let dir = tempdir();
        let db = Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(META).unwrap().insert("schema_version", 3).unwrap();
            let mut t = txn.open_table(READINGS_V3).unwrap();
            for i in 0..250i64 {
                // m-000 … m-249, one reading each; m-000's is the newest of all.
                t.insert(v3_key(&format!("m-{i:03}"), 1_000_000 - i).as_slice(), (i, 0)).unwrap();
            }
            // As an earlier open would have left it after two chunks of 100.
            txn.open_table(META).unwrap().insert("migrate4:readings (v3)", 200).unwrap();
        }
        txn.commit().unwrap();
        assert_eq!(readings_to_v4_in(&db, 100).unwrap(), 250);
        assert_eq!(rows_in(&db, READINGS), 50, "rows recorded as copied were copied again");
        let latest = db.begin_read().unwrap().open_table(METER_LATEST).unwrap().len().unwrap();
        assert_eq!(latest, 250, "the latest readings come from every row, copied now or before");
        // The open that completes the migration drops the progress record with the old tables.
        drop(db);
        let store = Store::open(&dir).unwrap();
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert!(meta.get("migrate4:readings (v3)").unwrap().is_none());
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
