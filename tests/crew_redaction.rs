//! Crews see no field-network addresses (issue 8 §5): a crew member's device views, event journal and live
//! stream carry no IP address, port, line id or MN, while an admin's show them. The device here fails on both
//! of its paths (closed local ports), so its error text, its path and a path switch all name addresses.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[supervision]
base_backoff = "20ms"

[[region]]
id = "hill"
name = "山村"

[[region.concentrator]]
id = "hill-c1"
name = "山村集中器"
address = "127.0.0.1:1"
backup = ["127.0.0.1:2"]
failover_after = 1
model = "ww-concentrator-v1"
cycle = "300ms"
timeout = "200ms"
retries = 0
meters = { prefix = "H-", first = 1, count = 3 }
"#;

/// The field network's addresses in this configuration.
fn leaks(text: &str) -> bool {
    text.contains("127.0.0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crew_member_sees_devices_and_events_without_addresses() {
    let server = start(CONFIG).await;
    let admin = server.admin().await;
    let body = json!({ "username": "crew1", "password": "a long enough password", "role": "crew" }).to_string();
    let r =
        http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", &admin)], &body)
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let crew = server.login("crew1", "a long enough password").await;

    // Wait until the device has failed over and lost communication: errors, paths and events name addresses.
    let journal = eventually(Duration::from_secs(15), "a path switch and comm lost in the journal", || async {
        let events = server.get("/api/events?device=hill-c1", &admin).await.json();
        let kinds: Vec<&str> = events.as_array()?.iter().filter_map(|e| e["kind"].as_str()).collect();
        (kinds.contains(&"path_switched") && kinds.contains(&"comm_lost")).then(|| events.clone())
    })
    .await;
    assert!(leaks(&journal.to_string()), "the admin sees the addresses: {journal}");
    let admin_device = server.get("/api/devices/hill-c1", &admin).await.body;
    assert!(leaks(&admin_device), "{admin_device}");

    // The crew member: the same device and events, without addresses.
    let r = server.get("/api/devices", &crew).await;
    assert_eq!(r.status, 200);
    assert!(!leaks(&r.body), "{}", r.body);
    let device = server.get("/api/devices/hill-c1", &crew).await.json();
    assert!(!leaks(&device.to_string()), "{device}");
    let path = device["comm"]["path"].as_str().unwrap();
    assert!(path == "primary" || path == "backup 1", "{device}");
    assert_eq!(device["comm"]["comm_lost"], true, "the status itself is still shown: {device}");
    assert_eq!(device["meters"].as_array().unwrap().len(), 3);
    let events = server.get("/api/events?device=hill-c1", &crew).await.json();
    assert!(!leaks(&events.to_string()), "{events}");
    let switch = events.as_array().unwrap().iter().find(|e| e["kind"] == "path_switched").unwrap();
    let mut ends = [switch["params"]["from"].as_str(), switch["params"]["to"].as_str()];
    ends.sort();
    assert_eq!(ends, [Some("backup 1"), Some("primary")], "{switch}");

    // The live stream: the snapshot and what follows.
    let mut ws = server.ws(&crew, "").await;
    let snapshot = ws.until(Duration::from_secs(10), |m| m["type"] == "snapshot").await;
    assert!(!leaks(&snapshot.to_string()), "{snapshot}");
    assert_eq!(snapshot["devices"][0]["id"], "hill-c1");
    let next: Value = ws.until(Duration::from_secs(10), |m| m["type"] == "delta" || m["type"] == "event").await;
    assert!(!leaks(&next.to_string()), "{next}");
    ws.close().await;
    // An admin's stream is not redacted.
    let mut ws = server.ws(&admin, "").await;
    let snapshot = ws.until(Duration::from_secs(10), |m| m["type"] == "snapshot").await;
    assert!(leaks(&snapshot.to_string()), "{snapshot}");
    ws.close().await;
    server.app.shutdown().await;
}
