//! The wall clock, injected (DESIGN.md §9). Production uses [`SystemClock`]; tests may use [`ManualClock`].
//! Durations between polls are tokio timers (which tests can pause); timestamps come from here. [`TokioClock`]
//! follows tokio's clock, so that a test with paused time sees wall-clock time move with its timers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::Timestamp;

/// A source of wall-clock timestamps.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Shared clock handle passed to every actor.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock { now: AtomicI64::new(start.0) }
    }
    pub fn advance_millis(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

/// A wall clock that starts at a given time and moves with tokio's clock: with paused time
/// (`#[tokio::test(start_paused = true)]`), sleeping 15 minutes moves it 15 minutes, so polls aligned to
/// wall-clock boundaries can be tested in milliseconds (DESIGN.md §9).
#[derive(Debug)]
pub struct TokioClock {
    start: Timestamp,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `start` now; must be created inside a tokio runtime.
    pub fn new(start: Timestamp) -> TokioClock {
        TokioClock { start, origin: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start.plus_millis(elapsed)
    }
}
