//! Keeping the log readable under a flood of bad input: a garbled station that resends every second, or a
//! misconfigured vendor publishing thousands of malformed payloads, must be logged (the operator needs the
//! first examples) without drowning everything else. Counting is not limited; only the log lines are.
//!
//! [`LogLimit`] lets through the first `burst` events of a window and counts the rest; the first event after the
//! window has passed learns how many were held back, so that the log says so.

use std::time::Duration;

use tokio::time::Instant;

/// Decides which of a stream of similar events is logged: at most `burst` per `window`.
#[derive(Debug)]
pub struct LogLimit {
    burst: u32,
    window: Duration,
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `burst` log lines per `window` (at least one).
    pub const fn new(burst: u32, window: Duration) -> Self {
        LogLimit { burst, window, window_start: None, logged: 0, suppressed: 0 }
    }

    /// Whether to log this event: `Some(n)` to log it, `n` being how many events were held back since the last
    /// one logged; `None` to hold it back.
    pub fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        let expired = self.window_start.is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < self.burst.max(1) {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_per_window_then_the_count_of_what_was_held_back() {
        let mut limit = LogLimit::new(3, Duration::from_secs(60));
        let first: Vec<Option<u64>> = (0..10).map(|_| limit.check()).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None, None, None, None, None, None]);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(limit.check(), None, "still the same window");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limit.check(), Some(8), "the next window reports the 8 held back");
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), Some(0));
        assert_eq!(limit.check(), None);
        let mut zero = LogLimit::new(0, Duration::from_secs(1));
        assert_eq!(zero.check(), Some(0), "a burst of 0 still logs one per window");
    }
}
