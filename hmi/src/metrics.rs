//! Prometheus text exposition of [`actors::metrics::Metrics`] and of the HTTP layer's login counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actors::metrics::{LimitMetrics, Metrics};

pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 20] = [
        ("waterworks_polls_total", "Modbus read requests sent to field devices.", &m.polls),
        (
            "waterworks_poll_failures_total",
            "Read requests without a valid reply or refused by the device.",
            &m.poll_failures,
        ),
        (
            "waterworks_bad_values_total",
            "Values rejected while decoding (NaN, negative volume, short reply).",
            &m.bad_values,
        ),
        ("waterworks_readings_stored_total", "Meter readings committed to the store.", &m.readings_stored),
        ("waterworks_samples_stored_total", "Water-quality samples committed to the store.", &m.samples_stored),
        ("waterworks_commits_total", "Store transactions committed.", &m.commits),
        ("waterworks_commit_failures_total", "Store transactions that failed.", &m.commit_failures),
        ("waterworks_feed_handled_total", "Change-feed entries handled by consumers.", &m.feed_handled),
        (
            "waterworks_feed_handler_failures_total",
            "Change-feed batches a consumer failed to handle or commit (handled again after a backoff).",
            &m.feed_handler_failures,
        ),
        (
            "waterworks_feed_unreadable_total",
            "Change-feed entries that could not be decoded and were skipped (logged with their sequence number).",
            &m.feed_unreadable,
        ),
        ("waterworks_ws_resyncs_total", "WebSocket clients that fell behind and were resynchronised.", &m.ws_resyncs),
        ("waterworks_actor_restarts_total", "Actor restarts by supervisors.", &m.actor_restarts),
        ("waterworks_login_failures_total", "Failed logins.", &m.login_failures),
        (
            "waterworks_bad_requests_total",
            "Input refused as malformed or unauthenticated: HTTP requests, HJ 212 frames, MQTT payloads.",
            &m.bad_requests,
        ),
        (
            "waterworks_status_unreadable_total",
            "Meter readings stored with their volume although their status could not be decoded.",
            &m.status_unreadable,
        ),
        (
            "waterworks_volume_falls_total",
            "Meter readings stored flagged because the cumulative volume fell (excluded from usage until reviewed).",
            &m.volume_falls,
        ),
        (
            "waterworks_volume_rollovers_total",
            "Meter readings stored flagged as a register wrap (excluded from usage until reviewed).",
            &m.volume_rollovers,
        ),
        (
            "waterworks_volume_suspected_swaps_total",
            "Meter readings stored flagged as a likely meter swap or implausible jump (excluded from usage until reviewed).",
            &m.volume_suspected_swaps,
        ),
        (
            "waterworks_readings_time_future_total",
            "Readings and samples dated beyond defaults.future_tolerance: stored flagged, not shown as current.",
            &m.readings_time_future,
        ),
        (
            "waterworks_readings_time_stale_total",
            "Readings and samples older than defaults.max_age: stored flagged, not shown as current.",
            &m.readings_time_stale,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP waterworks_ws_clients Connected WebSocket clients.\n# TYPE waterworks_ws_clients gauge\nwaterworks_ws_clients {}",
        m.ws_clients.load(Ordering::Relaxed)
    );
    let histograms = [
        (
            "waterworks_commit_latency_seconds",
            "Time from submitting a write to its acknowledgement after commit.",
            &m.commit_latency,
        ),
        (
            "waterworks_commit_duration_seconds",
            "Time the store committer spent on one transaction, from its start until it was durable.",
            &m.commit_duration,
        ),
    ];
    for (name, help, h) in histograms {
        let (buckets, count, sum_us) = h.snapshot();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (le_us, c) in buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {c}", le_us as f64 / 1e6);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {}\n{name}_count {count}",
            sum_us as f64 / 1e6
        );
    }
    render_limits(&mut out, &m.limits);
    out
}

/// The resource limits (issue 8 §3): one series per limit, labelled by reason where a limit has several.
fn render_limits(out: &mut String, l: &LimitMetrics) {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP waterworks_http_connections HTTP connections open, live streams included.\n\
         # TYPE waterworks_http_connections gauge\nwaterworks_http_connections {}",
        l.http_connections.load(Ordering::Relaxed)
    );
    let name = "waterworks_http_connections_closed_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP connections closed or refused by a limit (server.header_timeout, idle_timeout, \
         max_connections; accept failures such as the file limit).\n# TYPE {name} counter"
    );
    for (reason, c) in [
        ("idle_timeout", &l.http_timeout_idle),
        ("header_timeout", &l.http_timeout_header),
        ("body_timeout", &l.http_timeout_body),
        ("write_timeout", &l.http_timeout_write),
        ("evicted", &l.http_evicted),
        ("refused_full", &l.http_refused_full),
        ("accept_error", &l.http_accept_errors),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", get(c));
    }
    let name = "waterworks_tls_failures_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections to the native TLS port that failed before HTTP: plain HTTP sent to it \
         (answered 400), or a handshake that failed or stalled past server.header_timeout.\n# TYPE {name} counter"
    );
    for (reason, c) in [("plain_http", &l.tls_plain_http), ("handshake", &l.tls_handshake_failed)] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", get(c));
    }
    let name = "waterworks_hj212_connections_closed_total";
    let _ = writeln!(
        out,
        "# HELP {name} HJ 212 connections closed or refused by a limit ([hj212] max_connections, \
         max_unverified_per_peer, verify_timeout).\n# TYPE {name} counter"
    );
    for (reason, c) in [
        ("refused_full", &l.hj212_refused_full),
        ("refused_per_peer", &l.hj212_refused_per_peer),
        ("evicted", &l.hj212_evicted),
        ("verify_timeout", &l.hj212_verify_timeouts),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", get(c));
    }
    let name = "waterworks_ws_dropped_total";
    let _ = writeln!(
        out,
        "# HELP {name} Live-stream clients dropped because they stopped reading (no pong since the last ping, \
         live.ping; a send longer than live.write_timeout).\n# TYPE {name} counter"
    );
    for (reason, c) in [("no_pong", &l.ws_dropped_no_pong), ("write_timeout", &l.ws_dropped_write_timeout)] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", get(c));
    }
    let name = "waterworks_valve_commands_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Valve commands refused: another command to the valve was pending (busy), or the command \
         waited longer than the valve's command_expiry (expired).\n# TYPE {name} counter"
    );
    for (reason, c) in [("busy", &l.valve_commands_busy), ("expired", &l.valve_commands_expired)] {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", get(c));
    }
    let name = "waterworks_input_too_long_total";
    let _ = writeln!(
        out,
        "# HELP {name} Input refused for being longer than its limit (user names 64 characters, passwords 1024 \
         bytes) or cut to it at the audit's edge.\n# TYPE {name} counter\n{name} {}",
        get(&l.input_too_long)
    );
}

/// The login defences' counters and limit (issue 8 §1).
/// What the edge refused (issue 8 §5).
pub fn render_edge(out: &mut String, e: &crate::edge::EdgeCounters) {
    let counters = [
        (
            "waterworks_http_origin_refused_total",
            "State-changing requests refused with 403 because their Origin was not this server's.",
            &e.origin_refused,
        ),
        (
            "waterworks_http_body_too_large_total",
            "Requests refused with 413 for a body over 64 KiB.",
            &e.body_too_large,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Ordering::Relaxed));
    }
}

pub fn render_login(out: &mut String, g: &crate::guard::LoginGuard) {
    let counters = [
        ("waterworks_password_checks_total", "Password verifications performed (argon2 runs).", &g.hashes),
        (
            "waterworks_logins_busy_total",
            "Logins and Basic requests refused with 503 because max_concurrent_logins checks were running.",
            &g.busy,
        ),
        (
            "waterworks_logins_throttled_total",
            "Logins and Basic requests refused with 429 by the throttle.",
            &g.throttled,
        ),
        (
            "waterworks_basic_cache_hits_total",
            "HTTP Basic requests let in by credentials verified within the last minute, without a password check.",
            &g.basic_cache_hits,
        ),
    ];
    for (name, help, c) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP waterworks_max_concurrent_logins Password checks allowed at once.\n# TYPE waterworks_max_concurrent_logins gauge\nwaterworks_max_concurrent_logins {}",
        g.max_concurrent
    );
}
