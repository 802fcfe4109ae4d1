//! Plausibility of reading times in the actors (issue 7 §4): the pure rule is `model::TimePlausibility`; this
//! adds what an actor does with its verdict: count it for `/metrics` and log it, at most a few lines per device
//! and window so that a meter with a broken clock does not flood the log.
//!
//! It deliberately does not decide what is shown: callers flag the reading and keep it off the current view.

use std::sync::Arc;
use std::time::Duration;

use drivers::log_limit::LogLimit;

use crate::metrics::Metrics;
use crate::model::{TimePlausibility, TimeVerdict, Timestamp};

/// One device's judge of reading times.
#[derive(Debug)]
pub struct TimeGuard {
    rule: TimePlausibility,
    log: LogLimit,
}

impl TimeGuard {
    pub fn new(rule: TimePlausibility) -> TimeGuard {
        TimeGuard { rule, log: LogLimit::new(5, Duration::from_secs(600)) }
    }

    /// Judges a reading of `what` (a meter or parameter of `device`) dated `ts` at `now`; counts and logs an
    /// implausible one.
    pub fn judge(
        &mut self,
        metrics: &Arc<Metrics>,
        device: &str,
        what: &str,
        ts: Timestamp,
        now: Timestamp,
    ) -> TimeVerdict {
        let verdict = self.rule.judge(ts, now);
        let counter = match verdict {
            TimeVerdict::Plausible => return verdict,
            TimeVerdict::Future => &metrics.readings_time_future,
            TimeVerdict::Stale => &metrics.readings_time_stale,
        };
        Metrics::inc(counter);
        if let Some(held_back) = self.log.check() {
            tracing::warn!(
                message = "Reading time implausible; stored flagged, not shown as current.",
                device,
                of = what,
                verdict = ?verdict,
                reading_ts = ts.0,
                server_ts = now.0,
                held_back
            );
        }
        verdict
    }
}
