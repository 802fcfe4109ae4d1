//! The valves' kept status (issue 7 §5): table `valve_status: device -> JSON ValveStatus` (state, last
//! command, latched fault), written by `Op::ValveStatus` in the same submission as the command's audit
//! record or the poll's comm status, and read back on (re)start by `Store::valve_status`.
//!
//! Kept apart from `mod.rs` on purpose: `mod.rs` only routes the op here and opens the table at start-up.
//! What it deliberately does not do: decide anything about valves (that is `model::valve`) or keep history
//! (only the latest status of each valve; the audit journal has the history of commands).

use redb::{ReadableDatabase, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::model::{DeviceId, Timestamp, ValveAction, ValveStatus};

pub(super) const VALVE_STATUS: TableDefinition<&str, &[u8]> = TableDefinition::new("valve_status");
pub(super) const VALVE_PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("valve_pending");

/// A valve command that was requested (and audited as such) and has not ended yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingValveCommand {
    pub action: ValveAction,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: Timestamp,
}

/// Records or clears a valve's pending command inside the writer's transaction.
pub(super) fn put_pending(
    txn: &WriteTransaction,
    device: &DeviceId,
    pending: Option<&PendingValveCommand>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(VALVE_PENDING)?;
    match pending {
        Some(p) => {
            let json = serde_json::to_vec(p).map_err(|e| StoreError::Encode(e.to_string()))?;
            table.insert(device.as_str(), json.as_slice())?;
        }
        None => {
            table.remove(device.as_str())?;
        }
    }
    Ok(())
}

/// Writes one valve's status inside the writer's transaction.
pub(super) fn put(txn: &WriteTransaction, device: &DeviceId, status: &ValveStatus) -> Result<(), StoreError> {
    let json = serde_json::to_vec(status).map_err(|e| StoreError::Encode(e.to_string()))?;
    let mut table = txn.open_table(VALVE_STATUS)?;
    table.insert(device.as_str(), json.as_slice())?;
    Ok(())
}

impl Store {
    /// The last stored status of a valve, if any.
    pub fn valve_status(&self, device: &DeviceId) -> Result<Option<ValveStatus>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VALVE_STATUS)?;
        match table.get(device.as_str())? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Io(format!("valve status of {device}: {e}"))),
            None => Ok(None),
        }
    }

    /// The command of a valve that was requested and never ended, if any.
    pub fn valve_pending(&self, device: &DeviceId) -> Result<Option<PendingValveCommand>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VALVE_PENDING)?;
        match table.get(device.as_str())? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Io(format!("pending command of {device}: {e}"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CommandRecord, CommandResult, LatchedFault, Timestamp, ValveAction, ValveState};
    use crate::store::Op;

    #[test]
    fn a_valve_status_round_trips_and_survives_a_reopen() {
        let dir = crate::store::tests::tempdir();
        let id = DeviceId::new("west-v1");
        let status = ValveStatus {
            state: ValveState::Fault,
            last_command: Some(CommandRecord {
                action: ValveAction::Close,
                requested_by: "duty1".into(),
                reason: "arrears".into(),
                requested_at: Timestamp(1),
                finished_at: Timestamp(2),
                result: CommandResult::failed(
                    &crate::model::CommError::new(crate::model::ErrorCode::ValveNotConfirmed, "not confirmed")
                        .with("ms", 60_000),
                ),
                state: ValveState::Fault,
            }),
            fault: Some(LatchedFault {
                action: ValveAction::Close,
                since: Timestamp(2),
                reason: "not confirmed".into(),
            }),
        };
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.valve_status(&id).unwrap(), None);
            store.apply([&[Op::ValveStatus(id.clone(), status.clone())]]).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.valve_status(&id).unwrap(), Some(status));
        assert_eq!(store.valve_status(&DeviceId::new("other")).unwrap(), None);
    }
}
