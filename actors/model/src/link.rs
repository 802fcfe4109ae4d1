//! Which communication path a device uses (R-A8): the primary first, the next backup after `failover_after`
//! consecutive failed cycles on the path in use, and back to the primary as soon as a periodic probe of it
//! answers. Pure: the actor reports outcomes and asks what to do; every switch is returned as data so the
//! actor can publish it as an event.

use serde::{Deserialize, Serialize};

/// Why the path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchReason {
    /// The path in use failed `failover_after` cycles in a row.
    Failover,
    /// A probe found the primary answering again.
    PrimaryRecovered,
}

/// A change of path, to be published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathSwitch {
    pub from: usize,
    pub to: usize,
    pub reason: SwitchReason,
}

/// The path selection of one device.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSelector {
    paths: usize,
    active: usize,
    failures: u32,
    failover_after: u32,
    probe_every: u32,
    cycles_since_probe: u32,
}

impl LinkSelector {
    /// `paths` ≥ 1; a switch after `failover_after` (≥ 1) failed cycles; while on a backup, the primary is
    /// probed every `probe_every` (≥ 1) cycles.
    pub fn new(paths: usize, failover_after: u32, probe_every: u32) -> LinkSelector {
        LinkSelector {
            paths: paths.max(1),
            active: 0,
            failures: 0,
            failover_after: failover_after.max(1),
            probe_every: probe_every.max(1),
            cycles_since_probe: 0,
        }
    }

    pub fn active(&self) -> usize {
        self.active
    }

    pub fn on_primary(&self) -> bool {
        self.active == 0
    }

    /// The path in use got a valid reply this cycle.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The path in use failed a whole cycle (no valid reply). Returns the switch to make, if any.
    pub fn failed(&mut self) -> Option<PathSwitch> {
        self.failures = self.failures.saturating_add(1);
        if self.paths < 2 || self.failures < self.failover_after {
            return None;
        }
        let from = self.active;
        self.active = (self.active + 1) % self.paths;
        self.failures = 0;
        self.cycles_since_probe = 0;
        Some(PathSwitch { from, to: self.active, reason: SwitchReason::Failover })
    }

    /// At the start of a cycle: whether to probe the primary now (only while on a backup).
    pub fn should_probe(&mut self) -> bool {
        if self.on_primary() {
            return false;
        }
        self.cycles_since_probe += 1;
        if self.cycles_since_probe >= self.probe_every {
            self.cycles_since_probe = 0;
            true
        } else {
            false
        }
    }

    /// The probe of the primary answered: go back to it.
    pub fn primary_answered(&mut self) -> Option<PathSwitch> {
        if self.on_primary() {
            return None;
        }
        let from = self.active;
        self.active = 0;
        self.failures = 0;
        Some(PathSwitch { from, to: 0, reason: SwitchReason::PrimaryRecovered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_over_after_n_cycles_and_returns_when_the_primary_answers() {
        let mut l = LinkSelector::new(2, 3, 2);
        assert_eq!(l.failed(), None);
        assert_eq!(l.failed(), None);
        assert_eq!(l.failed(), Some(PathSwitch { from: 0, to: 1, reason: SwitchReason::Failover }));
        assert_eq!(l.active(), 1);
        // Probe every second cycle while on the backup.
        assert!(!l.should_probe());
        assert!(l.should_probe());
        assert!(!l.should_probe());
        assert_eq!(l.primary_answered(), Some(PathSwitch { from: 1, to: 0, reason: SwitchReason::PrimaryRecovered }));
        assert!(l.on_primary());
        assert!(!l.should_probe());
    }

    #[test]
    fn a_success_resets_the_count_and_a_single_path_never_switches() {
        let mut l = LinkSelector::new(2, 2, 1);
        assert_eq!(l.failed(), None);
        l.succeeded();
        assert_eq!(l.failed(), None);
        assert!(l.failed().is_some());
        let mut one = LinkSelector::new(1, 1, 1);
        for _ in 0..5 {
            assert_eq!(one.failed(), None);
        }
    }

    #[test]
    fn a_failing_backup_moves_on_round_robin() {
        let mut l = LinkSelector::new(3, 1, 10);
        assert_eq!(l.failed().map(|s| s.to), Some(1));
        assert_eq!(l.failed().map(|s| s.to), Some(2));
        assert_eq!(l.failed().map(|s| s.to), Some(0));
    }
}
