//! The restart policy and its bookkeeping, shared by the static and the dynamic supervisor (DESIGN.md §2).
//!
//! [`RestartTracker`] is pure: it never reads a clock, every call is given `now` (a tokio [`Instant`], so
//! supervisors pass `Instant::now()` and tests under paused time see backoff and windows in virtual time). It
//! decides; it does not schedule anything, send messages or log: the supervisors do that with its verdict.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Restart policy of a supervisor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartPolicy {
    /// Delay before the first restart; doubles with each further one.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A child that ran this long is considered healthy again: its backoff starts over.
    pub stable_after: Duration,
    /// More than this many restarts of one child within `window` escalate to the parent.
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.base_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What to do about a child that stopped without being asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after `delay`.
    Restart { delay: Duration },
    /// It restarted more than `max_restarts` times within the window: the supervisor fails itself.
    Escalate { restarts_in_window: usize },
}

/// The restart history of one child: backoff attempt, start time, restarts within the window.
#[derive(Clone, Debug, Default)]
pub struct RestartTracker {
    attempt: u32,
    started_at: Option<Instant>,
    recent: VecDeque<Instant>,
    restarts: u64,
}

impl RestartTracker {
    /// The child is running since `now`.
    pub fn started(&mut self, now: Instant) {
        self.started_at = Some(now);
    }

    /// The child stopped (crash, or a stop nobody asked for) at `now`: restart after a backoff, or escalate.
    pub fn stopped(&mut self, policy: &RestartPolicy, now: Instant) -> Verdict {
        if self.started_at.is_some_and(|t| now.duration_since(t) >= policy.stable_after) {
            self.attempt = 0;
        }
        self.started_at = None;
        self.recent.retain(|t| now.duration_since(*t) < policy.window);
        self.recent.push_back(now);
        if self.recent.len() > policy.max_restarts {
            return Verdict::Escalate { restarts_in_window: self.recent.len() };
        }
        let delay = policy.backoff(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.restarts += 1;
        Verdict::Restart { delay }
    }

    /// Restarts granted so far (escalations are not counted).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            stable_after: Duration::from_secs(10),
            max_restarts: 3,
            window: Duration::from_secs(60),
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn delay(v: Verdict) -> Duration {
        match v {
            Verdict::Restart { delay } => delay,
            Verdict::Escalate { .. } => panic!("escalated: {v:?}"),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = policy();
        assert_eq!(p.backoff(0), Duration::from_millis(10));
        assert_eq!(p.backoff(3), Duration::from_millis(80));
        assert_eq!(p.backoff(30), Duration::from_millis(80));
    }

    #[test]
    fn delays_grow_then_reset_after_stable_running() {
        let (p, t0) = (policy(), Instant::now());
        let mut t = RestartTracker::default();
        t.started(t0);
        assert_eq!(delay(t.stopped(&p, ms(t0, 100))), Duration::from_millis(10));
        t.started(ms(t0, 110));
        assert_eq!(delay(t.stopped(&p, ms(t0, 200))), Duration::from_millis(20));
        // Ran 10 s: healthy again, the backoff starts over.
        t.started(ms(t0, 220));
        assert_eq!(delay(t.stopped(&p, ms(t0, 10_220))), Duration::from_millis(10));
        assert_eq!(t.restarts(), 3);
    }

    #[test]
    fn more_than_max_restarts_within_the_window_escalate_and_old_ones_age_out() {
        let (p, t0) = (policy(), Instant::now());
        let mut t = RestartTracker::default();
        for i in 0..3 {
            assert!(matches!(t.stopped(&p, ms(t0, i)), Verdict::Restart { .. }));
        }
        assert_eq!(t.stopped(&p, ms(t0, 3)), Verdict::Escalate { restarts_in_window: 4 });
        // A minute later the earlier restarts have left the window.
        let mut t = RestartTracker::default();
        for i in 0..3 {
            t.stopped(&p, ms(t0, i));
        }
        assert!(matches!(t.stopped(&p, ms(t0, 60_000)), Verdict::Restart { .. }));
    }
}
