//! The alarm settings an administrator saved at runtime (issue 9 §5), kept so a restart keeps them.
//!
//! Table `alarm_settings` (created on first write; a store that never had one reads `None`): one row,
//! `"current" -> JSON AlarmSettings`, written whole by [`Op::AlarmSettings`](super::Op::AlarmSettings) in the
//! same submission as its audit entry. While no row exists the configuration's `[alarms]` is in force; once
//! an administrator saved settings, the stored ones are (the start logs which).
//!
//! What it does not do: check the settings (the API does, as the configuration does) or apply them (the
//! engine reads `alarms::SharedSettings`).

use redb::{ReadableDatabase, TableDefinition, TableError, WriteTransaction};

use super::{Store, StoreError};
use crate::alarms::AlarmSettings;

const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("alarm_settings");
const CURRENT: &str = "current";

/// Replaces the stored settings, inside the writer's transaction.
pub(super) fn put(txn: &WriteTransaction, settings: &AlarmSettings) -> Result<(), StoreError> {
    let json = serde_json::to_vec(settings).map_err(|e| StoreError::Encode(e.to_string()))?;
    txn.open_table(SETTINGS)?.insert(CURRENT, json.as_slice())?;
    Ok(())
}

impl Store {
    /// The settings an administrator saved, if any.
    pub fn alarm_settings(&self) -> Result<Option<AlarmSettings>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(SETTINGS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(v) = table.get(CURRENT)? else { return Ok(None) };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Io(format!("the stored alarm settings cannot be read: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::settings::ClassSettings;
    use crate::model::{AlarmClass, Priority};
    use crate::store::tests::tempdir;
    use crate::store::Op;

    #[test]
    fn saved_settings_survive_a_reopen_and_a_store_without_them_reads_none() {
        let dir = tempdir();
        let mut s = AlarmSettings::default();
        s.class
            .insert(AlarmClass::MeterBatteryLow, ClassSettings { enabled: Some(false), priority: Some(Priority::Low) });
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.alarm_settings().unwrap(), None);
            store.apply_one(&[Op::AlarmSettings(Box::default())]).unwrap();
            store.apply_one(&[Op::AlarmSettings(Box::new(s.clone()))]).unwrap();
        }
        assert_eq!(Store::open(&dir).unwrap().alarm_settings().unwrap(), Some(s), "the last one saved");
    }
}
