//! Login defences that keep password checking from becoming a weapon (issue 8 §1, R-G4).
//!
//! Every argon2 verification (a login or HTTP Basic credentials not in the cache) must hold one permit of a
//! semaphore sized to the machine (`[server] max_concurrent_logins`, default the number of cores). When none is
//! free the request is refused at once with 503 and `Retry-After`: requests are never queued without bound,
//! so neither memory (argon2 takes about 19 MiB per check) nor CPU grows with the number of attackers.
//! The counters here are exported on `/metrics`.
//!
//! This module does not decide who may try (that is the throttle in `session.rs`) and does not hash new
//! passwords (account creation is admin-only and rare).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrency limit and counters of password checks.
pub struct LoginGuard {
    hashing: Arc<Semaphore>,
    /// The configured number of permits.
    pub max_concurrent: usize,
    /// Password verifications performed (each one an argon2 run).
    pub hashes: AtomicU64,
    /// Logins and Basic requests refused with 503 because every permit was taken.
    pub busy: AtomicU64,
    /// Logins and Basic requests refused with 429 by the throttle.
    pub throttled: AtomicU64,
}

impl LoginGuard {
    /// A guard allowing `max_concurrent` checks at once (at least one).
    pub fn new(max_concurrent: usize) -> LoginGuard {
        let max_concurrent = max_concurrent.max(1);
        LoginGuard {
            hashing: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            hashes: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// A permit to run one password check, or `None` at once when all are taken.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.hashing.clone().try_acquire_owned().ok()
    }
}

/// The default limit: one check per core.
pub fn default_max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_returned() {
        let g = LoginGuard::new(2);
        let a = g.try_permit().unwrap();
        let _b = g.try_permit().unwrap();
        assert!(g.try_permit().is_none());
        drop(a);
        assert!(g.try_permit().is_some());
        assert_eq!(LoginGuard::new(0).max_concurrent, 1);
    }
}
