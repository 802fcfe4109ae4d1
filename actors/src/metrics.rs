//! Process-wide counters for `/metrics` (polls, failures, readings stored, commit latency, WebSocket clients).
//! Plain atomics: cheap on hot paths, rendered as Prometheus text by the `hmi` crate.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (Prometheus `le` semantics), then total count and sum in µs.
    pub fn snapshot(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let mut acc = 0;
        let cumulative = LATENCY_BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&b, c)| {
                acc += c.load(Ordering::Relaxed);
                (b, acc)
            })
            .collect();
        (cumulative, self.count.load(Ordering::Relaxed), self.sum_us.load(Ordering::Relaxed))
    }
}

/// Every counter the server exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    pub polls: AtomicU64,
    pub poll_failures: AtomicU64,
    pub bad_values: AtomicU64,
    pub readings_stored: AtomicU64,
    pub samples_stored: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// From submit to acknowledgement (after the batch's commit).
    pub commit_latency: Histogram,
    /// One transaction of the store committer, from its start until it is durable (issue 7 §8: tells a slow
    /// commit from a long queue).
    pub commit_duration: Histogram,
    pub ws_clients: AtomicI64,
    pub ws_resyncs: AtomicU64,
    pub actor_restarts: AtomicU64,
    pub login_failures: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Events committed to the journal and the change feed.
    pub events_committed: AtomicU64,
    /// Event commits that failed and were retried (the writer was down or failing).
    pub event_commit_retries: AtomicU64,
    /// Events that could not even be queued for their commit (the store did not keep up): lost, and loud.
    pub events_dropped: AtomicU64,
    /// Feed entries handled by consumers, and handler failures (retried).
    pub feed_handled: AtomicU64,
    pub feed_handler_failures: AtomicU64,
    /// Feed entries that could not be decoded, skipped by a consumer (each consumer counts each once).
    pub feed_unreadable: AtomicU64,
    /// Readings stored with their volume although their status could not be decoded (flag `status_unreadable`).
    pub status_unreadable: AtomicU64,
    /// Meter readings stored flagged by the volume check (issue 7 §4): a fall, a register wrap, a likely swap
    /// (a fall to a new meter's value, or a rise the meter cannot have measured).
    pub volume_falls: AtomicU64,
    pub volume_rollovers: AtomicU64,
    pub volume_suspected_swaps: AtomicU64,
    /// Readings and samples dated beyond `defaults.future_tolerance` (stored flagged `time_future`).
    pub readings_time_future: AtomicU64,
    /// Readings and samples older than `defaults.max_age` (stored flagged `time_stale`).
    pub readings_time_stale: AtomicU64,
    /// Resource limits reached (issue 8 §3): connections refused, evicted or timed out, and the like.
    pub limits: LimitMetrics,
}

/// Counters of the resource limits (issue 8 §3), one per limit and reason, so an operator sees which limit
/// bites. Rendered under `waterworks_http_*`, `waterworks_hj212_*`, `waterworks_ws_*` and friends.
#[derive(Debug, Default)]
pub struct LimitMetrics {
    /// HTTP connections open now (a gauge), counting upgraded WebSocket connections.
    pub http_connections: AtomicI64,
    /// Connections answered 503 because every slot held a request in progress.
    pub http_refused_full: AtomicU64,
    /// Idle connections (no request in progress) closed to make room for a new one at the cap.
    pub http_evicted: AtomicU64,
    /// Connections closed because a limit of time passed: no request head begun within `idle_timeout`
    /// (`idle`), a head not complete within `header_timeout` (`header`), a request body or a response that
    /// stopped moving for `idle_timeout` (`body`, `write`).
    pub http_timeout_idle: AtomicU64,
    pub http_timeout_header: AtomicU64,
    pub http_timeout_body: AtomicU64,
    pub http_timeout_write: AtomicU64,
    /// `accept` failures (most often the process's file limit reached).
    pub http_accept_errors: AtomicU64,
    /// Connections to the native TLS port that failed before HTTP: plain HTTP sent to it (answered 400), or a
    /// handshake that failed or stalled (issue 8 §5).
    pub tls_plain_http: AtomicU64,
    pub tls_handshake_failed: AtomicU64,
    /// HJ 212 connections closed at once: every connection was a verified station (`[hj212] max_connections`).
    pub hj212_refused_full: AtomicU64,
    /// HJ 212 connections closed at once: their address held `max_unverified_per_peer` unverified ones.
    pub hj212_refused_per_peer: AtomicU64,
    /// Unverified HJ 212 connections closed to make room at the cap.
    pub hj212_evicted: AtomicU64,
    /// HJ 212 connections closed because no valid frame came within `verify_timeout`.
    pub hj212_verify_timeouts: AtomicU64,
    /// Live-stream clients dropped for not answering a ping before the next one (`live.ping`).
    pub ws_dropped_no_pong: AtomicU64,
    /// Live-stream clients dropped because a send took longer than `live.write_timeout`.
    pub ws_dropped_write_timeout: AtomicU64,
    /// Valve commands refused because another command to the same valve was pending (HTTP 409).
    pub valve_commands_busy: AtomicU64,
    /// Valve commands that waited longer than the valve's `command_expiry` and were not executed.
    pub valve_commands_expired: AtomicU64,
    /// Input refused (or, at the store's edge, cut) for being longer than its limit: user names, passwords,
    /// audit fields.
    pub input_too_long: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
