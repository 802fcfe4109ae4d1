//! Work orders as the store keeps them (issue 10 §3): the orders, their steps, and their SLA deadlines.
//! Written by [`Op::WorkOrder`](super::Op::WorkOrder), read through [`WorkOrderStore`].
//!
//! (Skeleton laid down by the lead so that parallel work does not collide; the work-order change fills it.)

use redb::WriteTransaction;

use super::{Store, StoreError};

/// One change to the work-order tables.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkOrderOp {}

/// Applies one work-order op inside the writer's transaction.
pub(super) fn apply(_txn: &WriteTransaction, op: &WorkOrderOp) -> Result<(), StoreError> {
    match *op {}
}

/// Reads of the work-order tables.
pub trait WorkOrderStore: Send + Sync + 'static {}

impl WorkOrderStore for Store {}
