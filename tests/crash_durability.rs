//! Nothing acknowledged is lost on a crash (R-G2, issue 2 §10): the real binary is killed with SIGKILL right
//! after readings were acknowledged (shown on the live stream, which only shows committed data), and every
//! one of them is in the store when the server starts again on the same data directory. The same holds for a
//! valve's last command and latched fault (issue 7 §5): stored with the command's audit record, before the
//! command's answer.

mod support;

use std::collections::BTreeSet;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_acknowledgement_loses_no_reading() {
    let dir = temp_dir("crash");
    let config = dir.join("waterworks.toml");
    std::fs::write(&config, VILLAGE).unwrap();
    let (config, data) = (config.display().to_string(), dir.join("data").display().to_string());

    let mut acknowledged: BTreeSet<(String, i64, String)> = BTreeSet::new();
    for round in 0..2 {
        let mut server = ServerProcess::run(&config, &data);
        let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
        let mut ws = WsClient::connect(&format!("{}/ws", server.base.replace("http://", "ws://")), &cookie).await;
        let target = acknowledged.len() + 150;
        while acknowledged.len() < target {
            let m = ws.next().await;
            if m["type"] != "delta" {
                continue;
            }
            for meter in m["device"]["meters"].as_array().unwrap() {
                if let (Some(ts), Some(v)) = (meter["ts"].as_i64(), meter["volume_m3"].as_str()) {
                    acknowledged.insert((meter["id"].as_str().unwrap().to_owned(), ts, v.to_owned()));
                }
            }
        }
        // Kill -9 at once, with polls and commits in flight.
        server.child.kill().expect("SIGKILL");
        let status = server.child.wait().unwrap();
        assert!(!status.success(), "round {round}: killed, not exited: {status:?}");
    }

    // Restart on the same data directory and look for every acknowledged reading.
    let server = ServerProcess::run(&config, &data);
    let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
    let mut missing = Vec::new();
    let meters: BTreeSet<&str> = acknowledged.iter().map(|(m, _, _)| m.as_str()).collect();
    let mut stored: BTreeSet<(String, i64, String)> = BTreeSet::new();
    for meter in meters {
        let r = http(
            &server.base,
            "GET",
            &format!("/api/readings?device={meter}&from=0&limit=10000"),
            &[("cookie", cookie.as_str())],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        for x in r.json()["readings"].as_array().unwrap() {
            stored.insert((meter.to_owned(), x["ts"].as_i64().unwrap(), x["volume_m3"].as_str().unwrap().to_owned()));
        }
    }
    for reading in &acknowledged {
        if !stored.contains(reading) {
            missing.push(reading.clone());
        }
    }
    assert!(acknowledged.len() >= 300, "the test saw {} acknowledged readings", acknowledged.len());
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings lost after SIGKILL: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );

    // The restarted server rebuilt its live state from the store.
    let view = http(&server.base, "GET", "/api/devices/east-c1", &[("cookie", cookie.as_str())], "").await.json();
    assert!(view["meters"][0]["volume_m3"].is_string(), "{view}");
}

/// A valve slower than its confirmation time, so that a close command ends in a latched fault; polled once at
/// start and then not for a minute, so that only the command's own submission can have stored its outcome.
fn village_with_slow_valve() -> String {
    VILLAGE.replace("seed = 42", "seed = 42\nvalve_travel = \"60s\"")
        + r#"
[[region.valve]]
id = "west-v1"
address = "127.0.0.1:0"
model = "ww-valve-v1"
poll = "60s"
timeout = "250ms"
confirm_timeout = "1s"
confirm_poll = "40ms"
"#
}

async fn valve_view(base: &str, cookie: &str) -> serde_json::Value {
    let r = http(base, "GET", "/api/devices/west-v1", &[("cookie", cookie)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_a_valve_command_keeps_its_record_and_fault() {
    let dir = temp_dir("crash-valve");
    let config = dir.join("waterworks.toml");
    std::fs::write(&config, village_with_slow_valve()).unwrap();
    let (config, data) = (config.display().to_string(), dir.join("data").display().to_string());

    let mut server = ServerProcess::run(&config, &data);
    let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
    eventually(std::time::Duration::from_secs(15), "valve polled open", || async {
        (valve_view(&server.base, &cookie).await["valve"]["state"] == "open").then_some(())
    })
    .await;
    let body = serde_json::json!({ "action": "close", "reason": "arrears shut-off" }).to_string();
    let headers = [("content-type", "application/json"), ("cookie", cookie.as_str())];
    let r = http(&server.base, "POST", "/api/valves/west-v1/command", &headers, &body).await;
    let record = r.json();
    assert_eq!((record["result"].as_str(), record["state"].as_str()), (Some("failed"), Some("fault")), "{record}");
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();

    let server = ServerProcess::run(&config, &data);
    let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
    let view = valve_view(&server.base, &cookie).await;
    assert_eq!(view["valve"]["state"], "fault", "{view}");
    assert_eq!(view["valve"]["fault"]["action"], "close", "{view}");
    assert_eq!(view["valve"]["last_command"]["reason"], "arrears shut-off", "{view}");
    assert_eq!(view["valve"]["last_command"]["result"], "failed", "{view}");
}
