//! Opaque per-key state of actors started on demand (issue 7 §2): table `actor_state: &str -> &[u8]`.
//!
//! An on-demand actor (an account, a work order) loads its blob in `pre_start` through [`ActorStates::load`]
//! and saves it through the store writer ([`ActorStates::save`], an [`Op::ActorState`] like any other write),
//! so a passivated or crashed actor comes back with the state of its last acknowledged change. Keys are
//! namespaced by the caller (`account/…`, `work_order/…`); the bytes are the caller's own encoding.
//!
//! Deliberately narrow: no scan, no range, no schema. This is the interface a PostgreSQL backend (DESIGN.md §8)
//! would implement for actor state; nothing outside this file knows the table.

use redb::{ReadableDatabase, TableDefinition, TableError, WriteTransaction};

use std::sync::Arc;

use super::{Committed, Op, StateStore, Store, StoreError, StoreHandle};

const ACTOR_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("actor_state");

/// One change to the actor-state table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActorStateOp {
    Put { key: String, blob: Vec<u8> },
    Delete { key: String },
}

/// Loads and saves actor state blobs: reads from the store, writes through the writer. Cheap to clone.
#[derive(Clone)]
pub struct ActorStates {
    store: Arc<dyn StateStore>,
    writer: StoreHandle,
}

impl ActorStates {
    pub fn new(store: Arc<dyn StateStore>, writer: StoreHandle) -> ActorStates {
        ActorStates { store, writer }
    }

    /// The committed blob of `key`, if any.
    pub fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.actor_state(key)
    }

    /// Replaces the blob of `key`; answers after the commit.
    pub async fn save(&self, key: &str, blob: Vec<u8>) -> Result<Committed, StoreError> {
        self.writer.submit(vec![Op::ActorState(ActorStateOp::Put { key: key.to_owned(), blob })]).await
    }

    /// Removes the blob of `key`; answers after the commit.
    pub async fn delete(&self, key: &str) -> Result<Committed, StoreError> {
        self.writer.submit(vec![Op::ActorState(ActorStateOp::Delete { key: key.to_owned() })]).await
    }
}

impl Store {
    /// The committed state blob of `key`. A store that never held actor state has no table yet: `None`.
    pub fn actor_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(ACTOR_STATE) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }
}

/// The actor-state table inside one write transaction, opened only if the batch touches it.
pub(super) struct ActorStateWrites<'t> {
    txn: &'t WriteTransaction,
    table: Option<redb::Table<'t, &'static str, &'static [u8]>>,
}

impl<'t> ActorStateWrites<'t> {
    pub(super) fn new(txn: &'t WriteTransaction) -> Self {
        ActorStateWrites { txn, table: None }
    }

    pub(super) fn apply(&mut self, op: &ActorStateOp) -> Result<(), StoreError> {
        let table = match &mut self.table {
            Some(t) => t,
            None => self.table.insert(self.txn.open_table(ACTOR_STATE)?),
        };
        match op {
            ActorStateOp::Put { key, blob } => {
                table.insert(key.as_str(), blob.as_slice())?;
            }
            ActorStateOp::Delete { key } => {
                table.remove(key.as_str())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::tempdir;

    #[test]
    fn blobs_are_put_replaced_and_deleted_and_a_fresh_store_has_none() {
        let store = Store::open(&tempdir()).unwrap();
        assert_eq!(store.actor_state("account/1").unwrap(), None);
        let put = |k: &str, b: &[u8]| Op::ActorState(ActorStateOp::Put { key: k.into(), blob: b.to_vec() });
        store.apply_one(&[put("account/1", b"one"), put("account/2", b"two")]).unwrap();
        store.apply_one(&[put("account/1", b"uno")]).unwrap();
        assert_eq!(store.actor_state("account/1").unwrap().as_deref(), Some(&b"uno"[..]));
        store.apply_one(&[Op::ActorState(ActorStateOp::Delete { key: "account/2".into() })]).unwrap();
        assert_eq!(store.actor_state("account/2").unwrap(), None);
    }
}
