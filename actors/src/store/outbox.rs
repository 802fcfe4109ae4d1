//! The notification outbox (issue 10 §1): every notification is committed here before anything is sent.
//! Written by [`Op::Notify`](super::Op::Notify), read through [`NotifyStore`].
//!
//! Tables (created on first write; a store that never had one reads as empty):
//! - `outbox`: `key -> JSON OutboxEntry`, the key being [`Notification::key`] (origin, person, channel), so a
//!   notification enqueued twice (a feed batch handled again after a crash) is one row: the second is ignored;
//! - `outbox_due`: `(next attempt ms, key) -> ()`, the pending entries in the order they are due.
//!
//! What it deliberately does not do: send, decide retries or who is told (the dispatcher and the notifier do).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::model::notify::Notification;
use crate::model::Timestamp;

const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("outbox_due");

/// Where a notification stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OutboxState {
    /// Not sent yet; the next attempt is due at `next_at`.
    Pending { next_at: Timestamp },
    /// Handed to a channel that accepted it (`via`: the channel's configured name).
    Sent { at: Timestamp, via: String },
    /// Given up on (attempts exhausted, or refused for good): the dead letter admins see.
    Dead { at: Timestamp, reason: String },
}

/// One row of the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub notification: Notification,
    pub state: OutboxState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
}

/// One change to the outbox.
#[derive(Clone, Debug, PartialEq)]
pub enum NotifyOp {
    /// Adds each notification whose key is not in the outbox yet, pending and due at once (at its `created`).
    Enqueue(Vec<Notification>),
}

/// Applies one outbox op inside the writer's transaction.
pub(super) fn apply(txn: &WriteTransaction, op: &NotifyOp) -> Result<(), StoreError> {
    match op {
        NotifyOp::Enqueue(list) => {
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut due = txn.open_table(DUE)?;
            for n in list {
                let key = n.key();
                if outbox.get(key.as_str())?.is_some() {
                    continue;
                }
                let entry = OutboxEntry {
                    notification: n.clone(),
                    state: OutboxState::Pending { next_at: n.created },
                    attempts: 0,
                    last_error: None,
                };
                let json = serde_json::to_vec(&entry).map_err(|e| StoreError::Encode(e.to_string()))?;
                outbox.insert(key.as_str(), json.as_slice())?;
                due.insert((n.created.0, key.as_str()), ())?;
            }
        }
    }
    Ok(())
}

/// Reads of the outbox.
pub trait NotifyStore: Send + Sync + 'static {
    /// One entry by its key.
    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError>;
    /// Pending entries due at or before `until`, oldest due first, at most `limit`.
    fn outbox_due(&self, until: Timestamp, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
}

fn decode(key: &str, bytes: &[u8]) -> Result<OutboxEntry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Io(format!("outbox entry {key} cannot be read: {e}")))
}

impl NotifyStore for Store {
    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(OUTBOX) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(v) = table.get(key)? else { return Ok(None) };
        decode(key, v.value()).map(Some)
    }

    fn outbox_due(&self, until: Timestamp, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let (outbox, due) = match (txn.open_table(OUTBOX), txn.open_table(DUE)) {
            (Ok(o), Ok(d)) => (o, d),
            (Err(TableError::TableDoesNotExist(_)), _) | (_, Err(TableError::TableDoesNotExist(_))) => {
                return Ok(Vec::new())
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in due.range((i64::MIN, "")..)?.take(limit) {
            let (k, _) = row?;
            let (at, key) = k.value();
            if at > until.0 {
                break;
            }
            if let Some(v) = outbox.get(key)? {
                out.push(decode(key, v.value())?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::notify::{Channel, Origin};
    use crate::store::tests::tempdir;
    use crate::store::Op;

    fn note(activation: u64, created: i64, text: &str) -> Notification {
        Notification {
            origin: Origin::Alarm { alarm: "quality_low~L1~free_chlorine".into(), activation },
            channel: Channel::Sms,
            person: "wang".into(),
            to: "+8613800138000".into(),
            subject: "余氯低".into(),
            text: text.into(),
            html: None,
            template: None,
            priority: None,
            created: Timestamp(created),
        }
    }

    #[test]
    fn a_notification_enqueued_twice_is_one_row_and_keeps_its_first_text() {
        let dir = tempdir();
        let store = Store::open(&dir).unwrap();
        assert!(store.outbox_due(Timestamp(i64::MAX), 10).unwrap().is_empty(), "no table yet reads empty");
        store.apply_one(&[Op::Notify(NotifyOp::Enqueue(vec![note(1, 100, "first")]))]).unwrap();
        store.apply_one(&[Op::Notify(NotifyOp::Enqueue(vec![note(1, 200, "again"), note(2, 50, "other")]))]).unwrap();
        let due = store.outbox_due(Timestamp(i64::MAX), 10).unwrap();
        let texts: Vec<&str> = due.iter().map(|e| e.notification.text.as_str()).collect();
        assert_eq!(texts, ["other", "first"], "two rows, oldest due first, the repeat ignored");
        assert_eq!(store.outbox_due(Timestamp(99), 10).unwrap().len(), 1, "only what is due by then");
        let e = store.outbox_entry(&note(1, 0, "").key()).unwrap().unwrap();
        assert_eq!((e.attempts, e.state), (0, OutboxState::Pending { next_at: Timestamp(100) }));
    }
}
