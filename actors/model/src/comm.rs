//! Communication status of one device (R-A3, R-A4): last success, consecutive missed cycles, this cycle's
//! progress, link state, and the comm-lost decision.
//!
//! A cycle is *missed* when it ends (after its retries) with no data at all from the device. A partial cycle
//! (some meters read) is not a miss; its progress shows what is missing. Two missed cycles in a row mark the
//! device comm-lost; the first cycle with data clears it.

use serde::{Deserialize, Serialize};

use super::reading::Timestamp;

/// Consecutive missed cycles that make a device comm-lost (R-A4).
pub const MISSES_FOR_COMM_LOST: u32 = 2;

/// The state of the link to the device as last observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not tried yet since start-up.
    Unknown,
    /// The last request got a valid reply (data or a device exception).
    Up,
    /// The last request got no valid reply.
    Down,
}

/// How one cycle ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleOutcome {
    /// Values (meters or parameters) read in this cycle.
    pub read: u32,
    /// Values expected in this cycle.
    pub expected: u32,
    /// The last error of the cycle, if any request failed.
    pub error: Option<String>,
}

/// A change of the comm-lost decision, to be published as an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommEvent {
    Lost { misses: u32 },
    Restored { after_misses: u32 },
}

/// The communication status of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommStatus {
    pub link: LinkState,
    pub comm_lost: bool,
    pub last_success: Option<Timestamp>,
    pub last_attempt: Option<Timestamp>,
    pub consecutive_misses: u32,
    pub cycle_read: u32,
    pub cycle_expected: u32,
    pub last_error: Option<String>,
    /// The communication path in use, e.g. `tcp 10.0.3.7:502` (R-A8 shows it; failover comes later).
    pub path: String,
}

impl CommStatus {
    pub fn new(path: String, expected: u32) -> CommStatus {
        CommStatus {
            link: LinkState::Unknown,
            comm_lost: false,
            last_success: None,
            last_attempt: None,
            consecutive_misses: 0,
            cycle_read: 0,
            cycle_expected: expected,
            last_error: None,
            path,
        }
    }

    /// A new cycle begins: progress restarts at zero of `expected`.
    pub fn begin_cycle(&mut self, expected: u32) {
        self.cycle_read = 0;
        self.cycle_expected = expected;
    }

    /// One request finished; `ok` if it got a valid reply. Values read are counted by [`Self::record_values`].
    pub fn record_attempt(&mut self, now: Timestamp, ok: bool, error: Option<String>) {
        self.last_attempt = Some(now);
        self.link = if ok { LinkState::Up } else { LinkState::Down };
        if let Some(e) = error {
            self.last_error = Some(e);
        }
    }

    /// `n` values of this cycle were read and committed. Data flowing again clears comm-lost at once.
    pub fn record_values(&mut self, now: Timestamp, n: u32) -> Option<CommEvent> {
        if n == 0 {
            return None;
        }
        self.cycle_read = self.cycle_read.saturating_add(n);
        self.last_success = Some(now);
        self.last_error = None;
        let after = self.consecutive_misses;
        self.consecutive_misses = 0;
        if self.comm_lost {
            self.comm_lost = false;
            return Some(CommEvent::Restored { after_misses: after });
        }
        None
    }

    /// The cycle is over (its retries spent). A cycle without any data is a miss.
    pub fn end_cycle(&mut self, outcome: &CycleOutcome) -> Option<CommEvent> {
        if outcome.read > 0 {
            return None;
        }
        self.consecutive_misses = self.consecutive_misses.saturating_add(1);
        if outcome.error.is_some() {
            self.last_error.clone_from(&outcome.error);
        }
        if !self.comm_lost && self.consecutive_misses >= MISSES_FOR_COMM_LOST {
            self.comm_lost = true;
            return Some(CommEvent::Lost { misses: self.consecutive_misses });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miss() -> CycleOutcome {
        CycleOutcome { read: 0, expected: 10, error: Some("no reply within 1s".into()) }
    }

    #[test]
    fn two_missed_cycles_make_comm_lost_and_data_restores() {
        let mut s = CommStatus::new("tcp x".into(), 10);
        s.begin_cycle(10);
        assert_eq!(s.end_cycle(&miss()), None);
        assert_eq!(s.consecutive_misses, 1);
        assert!(!s.comm_lost);
        s.begin_cycle(10);
        assert_eq!(s.end_cycle(&miss()), Some(CommEvent::Lost { misses: 2 }));
        assert!(s.comm_lost);
        // A third miss raises nothing new.
        assert_eq!(s.end_cycle(&miss()), None);
        assert_eq!(s.consecutive_misses, 3);
        s.begin_cycle(10);
        assert_eq!(s.record_values(Timestamp(5), 4), Some(CommEvent::Restored { after_misses: 3 }));
        assert!(!s.comm_lost);
        assert_eq!(s.consecutive_misses, 0);
        assert_eq!(s.last_success, Some(Timestamp(5)));
        assert_eq!(s.cycle_read, 4);
    }

    #[test]
    fn a_partial_cycle_is_not_a_miss() {
        let mut s = CommStatus::new("tcp x".into(), 10);
        s.begin_cycle(10);
        s.record_values(Timestamp(1), 3);
        assert_eq!(s.end_cycle(&CycleOutcome { read: 3, expected: 10, error: Some("timeout".into()) }), None);
        assert_eq!(s.consecutive_misses, 0);
    }

    #[test]
    fn one_miss_between_successes_never_alarms() {
        let mut s = CommStatus::new("tcp x".into(), 1);
        for _ in 0..5 {
            s.begin_cycle(1);
            assert_eq!(s.end_cycle(&miss()), None);
            s.begin_cycle(1);
            assert_eq!(s.record_values(Timestamp(1), 1), None);
            assert_eq!(s.end_cycle(&CycleOutcome { read: 1, expected: 1, error: None }), None);
        }
        assert!(!s.comm_lost);
    }
}
