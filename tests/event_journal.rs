//! Events are durable and served (issue 7 §3, DESIGN §12): a comm loss and a water-quality limit crossing made
//! with the fault-injection API are committed before the live stream shows them, carry their change-feed number
//! and parameters, are searchable in `GET /api/events` by region, device, kind and time, and a client that
//! connects afresh sees the device that is comm-lost right now. (Durability across SIGKILL: `feed_crash.rs`.) A 0.1 mg/L chlorine dip leaves a crossing and a
//! clearing in the journal even after it has cleared.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

async fn sim_fault(server: &TestServer, device: &str, body: &str) {
    let base = format!("http://{}", server.app.sim_control_addr.expect("fault-injection API"));
    let method = if body.is_empty() { "DELETE" } else { "PUT" };
    let r =
        http(&base, method, &format!("/devices/{device}/fault"), &[("content-type", "application/json")], body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn events(server: &TestServer, cookie: &str, query: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/events?{query}"), cookie).await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_committed_numbered_and_searchable() {
    let server = start_with_sim_control(VILLAGE).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;

    // A concentrator falls silent: comm_lost on the live stream, with its feed number and parameters.
    sim_fault(&server, "east-c1", r#"{"silent": true}"#).await;
    let frame = ws.until(Duration::from_secs(20), |m| m["type"] == "event" && m["event"]["kind"] == "comm_lost").await;
    let live = frame["event"].clone();
    assert_eq!(live["device"], "east-c1", "{frame}");
    assert_eq!(live["region"], "east");
    let id = live["id"].as_u64().expect("an event carries its feed sequence number");
    assert!(live["params"]["misses"].as_str().is_some_and(|m| m.parse::<u32>().unwrap() >= 2), "{live}");

    // What the live stream showed is in the journal, under the same number (committed first).
    let lost = events(&server, &cookie, "kind=comm_lost&device=east-c1").await;
    assert!(lost.iter().any(|e| e["id"] == id && e["message"] == live["message"]), "{lost:?}");
    // Filters narrow: the other region, another kind, a window before it, the page before it.
    assert!(events(&server, &cookie, "region=west&kind=comm_lost").await.is_empty());
    assert!(events(&server, &cookie, "kind=limit_crossed&device=east-c1").await.is_empty());
    let ts = live["ts"].as_i64().unwrap();
    assert!(events(&server, &cookie, &format!("device=east-c1&to={}", ts - 1)).await.iter().all(|e| e["id"] != id));
    assert!(events(&server, &cookie, &format!("device=east-c1&from={ts}&to={ts}")).await.iter().any(|e| e["id"] == id));
    assert!(events(&server, &cookie, &format!("before={id}")).await.iter().all(|e| e["id"].as_u64() < Some(id)));

    // A chlorine dip to 0.1 mg/L (GB 5749 plant outlet: at least 0.3), then back: two durable facts.
    sim_fault(&server, "east-wq", r#"{"values": {"free_chlorine": 0.1}}"#).await;
    let crossed = eventually(Duration::from_secs(20), "a limit crossing in the journal", || async {
        events(&server, &cookie, "kind=limit_crossed&device=east-wq").await.into_iter().next()
    })
    .await;
    assert_eq!(crossed["params"]["parameter"], "free_chlorine", "{crossed}");
    assert_eq!(crossed["params"]["side"], "low");
    assert_eq!(crossed["params"]["limit"], "0.3");
    let value: f64 = crossed["params"]["value"].as_str().unwrap().parse().unwrap();
    assert!((value - 0.1).abs() < 1e-6, "{crossed}");
    sim_fault(&server, "east-wq", "").await;
    let cleared = eventually(Duration::from_secs(20), "the limit clearing in the journal", || async {
        events(&server, &cookie, "kind=limit_cleared&device=east-wq").await.into_iter().next()
    })
    .await;
    assert!(cleared["id"].as_u64() > crossed["id"].as_u64(), "{cleared} after {crossed}");
    // Each crossing is recorded once, however often the consumer ran.
    assert_eq!(events(&server, &cookie, "kind=limit_crossed&device=east-wq").await.len(), 1);

    // Bad queries are refused with a clear error.
    let r = server.get("/api/events?from=10&to=5", &cookie).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad_request")), "{}", r.body);
    let r = server.get("/api/events?limit=abc", &cookie).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = server.get(&format!("/api/events?device={}", "x".repeat(300)), &cookie).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // And strangers see nothing.
    let r = http(&server.base, "GET", "/api/events", &[], "").await;
    assert_eq!(r.status, 401);

    // A client that connects now sees the device that is comm-lost right now, in its first frame.
    let mut fresh = server.ws(&cookie, "").await;
    let snapshot = fresh.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    let c1 = snapshot["devices"].as_array().unwrap().iter().find(|d| d["id"] == "east-c1").cloned().unwrap();
    assert_eq!(c1["comm"]["comm_lost"], true, "{c1}");
    fresh.close().await;

    // The journal keeps each event once, newest first.
    let all = events(&server, &cookie, "limit=1000").await;
    let ids: Vec<u64> = all.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, each once: {ids:?}");
    ws.close().await;
    server.app.shutdown().await;
}
