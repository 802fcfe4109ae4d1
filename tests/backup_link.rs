//! Backup communication paths (R-A8, issue 3 §6): after N consecutive failures on the primary the device
//! moves to its backup without operator action, keeps its data flowing, says which path is in use, probes the
//! primary and returns to it once it answers; every switch is an event.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const FAILOVER_AFTER: u64 = 2;

fn config(primary: &str, backup: &str) -> String {
    format!(
        r#"
[supervision]
base_backoff = "20ms"

[[region]]
id = "hill"
name = "山村"

[[region.concentrator]]
id = "hill-c1"
address = "{primary}"
backup = ["{backup}"]
failover_after = {FAILOVER_AFTER}
probe_every = 2
model = "ww-concentrator-v1"
cycle = "300ms"
timeout = "200ms"
retries = 0
meters = {{ prefix = "H-", first = 1, count = 6 }}
"#
    )
}

fn is_switch(m: &Value, reason_word: &str) -> bool {
    m["type"] == "event"
        && m["event"]["kind"] == "path_switched"
        && m["event"]["message"].as_str().is_some_and(|s| s.contains(reason_word))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failure_moves_to_the_backup_within_n_cycles_and_back_when_it_answers() {
    // The device itself, simulated, reachable through two paths.
    let shape = waterworks::config::parse("shape.toml", &config("127.0.0.1:1", "127.0.0.1:2"), None).unwrap();
    let spec = waterworks::simulation::spec_from_config(&shape, 60.0, 7, Some("127.0.0.1:0".parse().unwrap())).unwrap();
    let sim = sim::modbus::ModbusSim::start(spec).await.unwrap();
    let device = sim.addr("hill-c1").unwrap();
    let (primary, backup) = (Proxy::start(device).await, Proxy::start(device).await);

    let server = start(&config(&primary.addr.to_string(), &backup.addr.to_string())).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    let first =
        ws.until(Duration::from_secs(10), |m| m["type"] == "delta" && m["device"]["comm"]["cycle_read"] == 6).await;
    assert!(
        first["device"]["comm"]["path"].as_str().unwrap().starts_with(&format!("primary tcp {}", primary.addr)),
        "{first}"
    );

    // The primary link dies.
    primary.set_down(true);
    let polls_before = sim.requests("hill-c1").unwrap();
    // Cycles that failed completely end as misses; the cycle that switches succeeds on the backup. So the
    // switch came within N cycles if at most N - 1 misses were counted before it.
    let mut misses = 0;
    let switch = ws
        .until(Duration::from_secs(10), |m| {
            if m["type"] == "delta" {
                misses = misses.max(m["device"]["comm"]["consecutive_misses"].as_u64().unwrap_or(0));
            }
            is_switch(m, "failed")
        })
        .await;
    assert!(misses < FAILOVER_AFTER, "switched after {} failed cycles, N = {FAILOVER_AFTER}", misses + 1);
    assert_eq!(switch["event"]["device"], "hill-c1");
    assert!(
        switch["event"]["message"].as_str().unwrap().contains(&format!("now on backup 1 tcp {}", backup.addr)),
        "{switch}"
    );
    // Data keeps flowing through the backup, shown as the path in use, and the device is never comm-lost.
    let on_backup = ws
        .until(Duration::from_secs(10), |m| {
            m["type"] == "delta"
                && m["device"]["comm"]["path"].as_str().is_some_and(|p| p.starts_with("backup 1"))
                && m["device"]["comm"]["link"] == "up"
        })
        .await;
    assert_eq!(on_backup["device"]["comm"]["comm_lost"], false, "{on_backup}");
    assert!(sim.requests("hill-c1").unwrap() > polls_before, "the backup reaches the device");
    let view = device_view(&server, &cookie).await;
    assert_eq!(
        (view["comm"]["comm_lost"].as_bool(), view["comm"]["cycle_read"].as_u64()),
        (Some(false), Some(6)),
        "{view}"
    );

    // The primary comes back: a probe finds it and the device returns.
    primary.set_down(false);
    let back = ws.until(Duration::from_secs(10), |m| is_switch(m, "primary answers again")).await;
    assert!(back["event"]["message"].as_str().unwrap().contains(&format!("to primary tcp {}", primary.addr)), "{back}");
    let view = eventually(Duration::from_secs(10), "a poll on the primary", || async {
        let v = device_view(&server, &cookie).await;
        (v["comm"]["path"].as_str()?.starts_with("primary") && v["comm"]["link"] == "up").then_some(v)
    })
    .await;
    assert_eq!(view["comm"]["comm_lost"], false);
    server.app.shutdown().await;
    sim.shutdown().await;
}

async fn device_view(server: &TestServer, cookie: &str) -> Value {
    device(server, cookie, "hill-c1").await
}
