//! Capped exponential backoff between connection attempts. rumqttc reconnects on the next `poll()` with no delay
//! at all (LIBRARY-NOTES.md §3: 17 140 attempts a second against a closed port), so every MQTT task here sleeps
//! `Backoff::next_delay()` after a failure (so do the simulated meters of `waterworks-sim`).
//!
//! No jitter: the server is one client of its broker, so there is no herd of clients to spread out.

use std::time::{Duration, Instant};

/// The delay before the next connection attempt: doubles from `initial` up to `max`, and starts again from
/// `initial` after a connection that stayed up for `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    /// When the current connection came up; a connection that stayed up for `max` resets the delay.
    up_since: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.min(max);
        Backoff { initial, max, next: initial, up_since: None }
    }

    /// A connection came up. The delay is not reset yet: a broker that accepts and then drops us at once (a
    /// duplicate client id, a packet it refuses) must not be retried at the initial pace for ever.
    pub fn connected(&mut self) {
        self.up_since = Some(Instant::now());
    }

    /// A connection attempt failed or a connection broke: the delay to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        if self.up_since.take().is_some_and(|since| since.elapsed() >= self.max) {
            self.next = self.initial;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_only_after_a_stable_connection() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(delays, vec![ms(100), ms(200), ms(400), ms(500), ms(500)]);
        // Up for a moment only: no reset.
        b.connected();
        assert_eq!(b.next_delay(), ms(500));
        // Up for longer than the cap: start again from the initial delay.
        b.up_since = Some(Instant::now() - ms(600));
        assert_eq!(b.next_delay(), ms(100));
    }
}
