//! The actor runtime that ractor does not provide: supervisors that restart children (DESIGN.md §2).
//!
//! - [`restart`]: the restart policy and [`restart::RestartTracker`], the one implementation of backoff, reset
//!   after stable running and the restart window, shared by both supervisors. Pure: time is passed in.
//! - [`supervisor`]: the static supervisor, a fixed list of permanent children started in order.
//! - [`dynamic`]: the dynamic supervisor, children started on demand by key, passivated when idle.
//!
//! This module knows nothing of devices, accounts or the store's tables; children are built by closures.

pub mod dynamic;
pub mod restart;
pub mod supervisor;

#[cfg(test)]
mod dynamic_tests;
