//! Maintenance records (issue 10 §5, R-D2): calibration due dates per meter and sensor, and their history.
//! Written by [`Op::Maintenance`](super::Op::Maintenance), read through [`MaintenanceStore`].
//!
//! (Skeleton laid down by the lead so that parallel work does not collide; the calibration change fills it.)

use redb::WriteTransaction;

use super::{Store, StoreError};

/// One change to the maintenance tables.
#[derive(Clone, Debug, PartialEq)]
pub enum MaintenanceOp {}

/// Applies one maintenance op inside the writer's transaction.
pub(super) fn apply(_txn: &WriteTransaction, op: &MaintenanceOp) -> Result<(), StoreError> {
    match *op {}
}

/// Reads of the maintenance tables.
pub trait MaintenanceStore: Send + Sync + 'static {}

impl MaintenanceStore for Store {}
