//! Store migrations that copy data (schema version 2 → 3, issue 7 §8): the readings tables move from a
//! `(&str, i64)` tuple key to the byte key of `reading_key.rs`.
//!
//! The copy runs in chunks, each its own transaction, so a store of years of readings never needs one huge
//! transaction in memory. Copying a row twice writes the same key and value again, so a copy cut off by a
//! crash or power loss simply starts again at the next open; the old tables are deleted, and the schema
//! version raised, only in the final transaction of `Store::init_schema`, after every row is copied.
//!
//! What this module does not do: decide whether a migration is due (the schema version does), or delete.

use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition, TableError};

use super::{reading_key, StoreError, READINGS, READINGS_V2, READING_EXTRAS, READING_EXTRAS_V2};

/// Rows copied per transaction.
const CHUNK: usize = 100_000;

/// Copies the version 2 readings and their extras into the version 3 tables; returns the rows copied.
pub(super) fn readings_to_v3(db: &Database) -> Result<u64, StoreError> {
    let copied = copy(db, READINGS_V2, READINGS, "readings")?;
    Ok(copied + copy(db, READING_EXTRAS_V2, READING_EXTRAS, "reading extras")?)
}

fn copy<V>(
    db: &Database,
    from: TableDefinition<(&str, i64), V>,
    to: TableDefinition<&[u8], V>,
    what: &str,
) -> Result<u64, StoreError>
where
    V: for<'a> redb::Value<SelfType<'a> = V> + 'static + Copy + std::fmt::Debug,
{
    let total = {
        let txn = db.begin_read()?;
        match txn.open_table(from) {
            Ok(t) => t.len()?,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    };
    if total == 0 {
        return Ok(0);
    }
    tracing::info!(
        message = "Migrating the store to schema version 3: copying rows to the byte-keyed table.",
        table = what,
        rows = total
    );
    let mut after: Option<(String, i64)> = None;
    let mut copied = 0u64;
    let mut key = Vec::new();
    loop {
        let rows: Vec<(String, i64, V)> = {
            let txn = db.begin_read()?;
            let t = txn.open_table(from)?;
            let range = match &after {
                None => t.range::<(&str, i64)>(..)?,
                Some((m, ts)) => t.range::<(&str, i64)>((Bound::Excluded((m.as_str(), *ts)), Bound::Unbounded))?,
            };
            let mut rows = Vec::with_capacity(CHUNK.min(total as usize));
            for entry in range.take(CHUNK) {
                let (k, v) = entry?;
                let (meter, ts) = k.value();
                rows.push((meter.to_owned(), ts, v.value()));
            }
            rows
        };
        let Some(last) = rows.last() else { break };
        after = Some((last.0.clone(), last.1));
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(to)?;
            for (meter, ts, v) in &rows {
                reading_key::encode_into(&mut key, meter, *ts);
                t.insert(key.as_slice(), *v)?;
            }
        }
        txn.commit()?;
        copied += rows.len() as u64;
        tracing::info!(message = "Migration progress.", table = what, copied, of = total);
    }
    Ok(copied)
}
