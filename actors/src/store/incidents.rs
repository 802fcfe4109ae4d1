//! Incidents (issue 10 §5, R-E2): a server or a whole region down, its progress reports and its report.
//! Written by [`Op::Incident`](super::Op::Incident), read through [`IncidentStore`].
//!
//! (Skeleton laid down by the lead so that parallel work does not collide; the incident change fills it.)

use redb::WriteTransaction;

use super::{Store, StoreError};

/// One change to the incident tables.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentOp {}

/// Applies one incident op inside the writer's transaction.
pub(super) fn apply(_txn: &WriteTransaction, op: &IncidentOp) -> Result<(), StoreError> {
    match *op {}
}

/// Reads of the incident tables.
pub trait IncidentStore: Send + Sync + 'static {}

impl IncidentStore for Store {}
