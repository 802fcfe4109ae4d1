//! Login defences that keep password checking from becoming a weapon (issue 8 §1, R-G4).
//!
//! Every argon2 verification (a login or HTTP Basic credentials not in the cache) must hold one permit of a
//! semaphore sized to the machine (`[server] max_concurrent_logins`, default the number of cores). When none is
//! free the request is refused at once with 503 and `Retry-After`: requests are never queued without bound,
//! so neither memory (argon2 takes about 19 MiB per check) nor CPU grows with the number of attackers.
//! The counters here are exported on `/metrics`.
//!
//! HTTP Basic credentials that verified are remembered for `BASIC_CACHE_TTL`, so a script sending them with
//! every request does not run argon2 every time. The cache is keyed by a BLAKE2b MAC of user and password
//! under a per-process random key: the password itself is never kept. The account is still re-read on every
//! request, so a disabled account is refused at once; `forget_user` drops a user's entries (for a password
//! change).
//!
//! This module does not decide who may try (that is the throttle in `session.rs`) and does not hash new
//! passwords (account creation is admin-only and rare).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};

use actors::api::ApiError;
use actors::metrics::Metrics;
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
    /// Basic requests let in from the cache, without a password check.
    pub basic_cache_hits: AtomicU64,
    pub basic_cache: BasicCache,
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
            basic_cache_hits: AtomicU64::new(0),
            basic_cache: BasicCache::new(BASIC_CACHE_TTL),
        }
    }

    /// A permit to run one password check, or `None` at once when all are taken.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.hashing.clone().try_acquire_owned().ok()
    }

    /// Runs `work` (argon2: a password check, counted in `hashes` when `check`, or a new hash) under a permit,
    /// in a task of its own that holds it, so a client that hangs up does not free the permit while argon2
    /// still runs. `None` at once when every permit is taken (counted in `busy`); the caller answers 503.
    pub async fn run_hashing<T: Send + 'static>(
        &self,
        check: bool,
        work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    ) -> Option<Result<T, ApiError>> {
        let Some(permit) = self.try_permit() else {
            Metrics::inc(&self.busy);
            return None;
        };
        if check {
            Metrics::inc(&self.hashes);
        }
        let outcome = tokio::spawn(async move {
            let _permit = permit;
            work.await
        });
        Some(outcome.await.unwrap_or(Err(ApiError::Internal)))
    }
}

/// How long verified Basic credentials are let in without a new check.
pub const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries at most in the Basic cache (a full cache stops caching; it never grows).
const BASIC_CACHE_MAX: usize = 1024;

type Tag = [u8; 32];

struct Cached {
    username: String,
    expires: Instant,
}

/// Verified Basic credentials, keyed by a keyed hash; never the password.
pub struct BasicCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<Tag, Cached>>,
}

impl BasicCache {
    fn new(ttl: Duration) -> BasicCache {
        let mut key = [0u8; 32];
        if let Some(bytes) = hex_bytes(&actors::auth::random_token(32)) {
            key.copy_from_slice(&bytes);
        }
        BasicCache { key, ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn tag(&self, username: &str, password: &str) -> Option<Tag> {
        let mut mac = <blake2::Blake2bMac<U32> as KeyInit>::new_from_slice(&self.key).ok()?;
        // Lengths first, so that no two (user, password) pairs feed the same bytes.
        mac.update(&(username.len() as u64).to_le_bytes());
        mac.update(username.as_bytes());
        mac.update(password.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// Whether these credentials verified within the TTL.
    pub fn hit(&self, username: &str, password: &str) -> bool {
        let Some(tag) = self.tag(username, password) else { return false };
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&tag).is_some_and(|c| c.username == username && c.expires > Instant::now())
    }

    /// Remembers credentials that just verified.
    pub fn insert(&self, username: &str, password: &str) {
        let Some(tag) = self.tag(username, password) else { return };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if entries.len() >= BASIC_CACHE_MAX {
            entries.retain(|_, c| c.expires > now);
        }
        if entries.len() < BASIC_CACHE_MAX {
            entries.insert(tag, Cached { username: username.to_owned(), expires: now + self.ttl });
        }
    }

    /// Drops every entry of a user (the account changed).
    pub fn forget_user(&self, username: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, c| c.username != username);
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
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

    #[test]
    fn basic_cache_hits_only_the_same_credentials_until_they_expire() {
        let c = BasicCache::new(Duration::from_secs(60));
        c.insert("ops", "right password");
        assert!(c.hit("ops", "right password"));
        assert!(!c.hit("ops", "wrong password") && !c.hit("ops2", "right password"));
        // Moving bytes between name and password gives another key.
        c.insert("ab", "c");
        assert!(!c.hit("a", "bc"));
        c.forget_user("ops");
        assert!(!c.hit("ops", "right password"));
        let expired = BasicCache::new(Duration::ZERO);
        expired.insert("ops", "right password");
        assert!(!expired.hit("ops", "right password"));
        // Another process (another key) never shares tags.
        assert_ne!(c.tag("ops", "p"), BasicCache::new(Duration::ZERO).tag("ops", "p"));
    }
}
