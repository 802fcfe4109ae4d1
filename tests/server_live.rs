//! The whole server in-process on port 0 against its simulator on port 0 (issue 2 §10): readings reach a
//! WebSocket client; a silent device is comm-lost after two cycles and recovers when revived (R-A4);
//! garbage and exception replies crash nothing and the other devices keep their cycle; a killed actor is
//! restarted; the live stream resumes with `?since=`; a client that stops reading is dropped (issue 8 §3).

mod support;

use std::time::Duration;

use serde_json::Value;
use sim::modbus::ModbusFault;
use support::*;

fn device_in<'a>(msg: &'a Value, id: &str) -> Option<&'a Value> {
    match msg["type"].as_str() {
        Some("delta") => (msg["device"]["id"] == id).then(|| &msg["device"]),
        _ => None,
    }
}

/// How many polls a device has received so far (the simulator counts requests).
fn requests(server: &TestServer, id: &str) -> u64 {
    server.sim().requests(id).expect("simulated device")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_reach_a_websocket_client_after_commit() {
    let server = start(VILLAGE).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["regions"].as_array().unwrap().len(), 2);
    let ids: Vec<&str> = snapshot["devices"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["east-c1", "east-c2", "east-wq", "west-c1"], "{snapshot}");
    let mut last_seq = snapshot["seq"].as_u64().unwrap();

    // A delta of the first concentrator with every meter read.
    let delta = ws
        .until(Duration::from_secs(10), |m| {
            device_in(m, "east-c1")
                .is_some_and(|d| d["meters"].as_array().unwrap().iter().all(|x| x["volume_m3"].is_string()))
        })
        .await;
    assert!(delta["seq"].as_u64().unwrap() > last_seq);
    last_seq = delta["seq"].as_u64().unwrap();
    let meter = &delta["device"]["meters"][0];
    let volume: f64 = meter["volume_m3"].as_str().unwrap().parse().unwrap();
    // Three decimals exactly, and close to the simulator's truth.
    assert_eq!(meter["volume_m3"].as_str().unwrap().split('.').nth(1).unwrap().len(), 3);
    let truth = server.sim().meter_volume("east-c1", 0).unwrap();
    assert!((truth - volume).abs() < 5.0, "read {volume}, simulator has {truth}");

    // What the stream showed is in the store (acknowledged means committed).
    let r = server.get("/api/readings?device=E1-0001&limit=10000", &cookie).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = r.json()["readings"].as_array().unwrap().clone();
    assert!(
        stored.iter().any(|x| x["volume_m3"] == meter["volume_m3"] && x["ts"] == meter["ts"]),
        "{meter} not in {stored:?}"
    );

    // Water-quality values arrive with their limits; sequence numbers keep rising.
    let wq = ws
        .until(Duration::from_secs(10), |m| {
            device_in(m, "east-wq").is_some_and(|d| d["values"][0]["value"].is_number())
        })
        .await;
    assert!(wq["seq"].as_u64().unwrap() > last_seq);
    let chlorine = &wq["device"]["values"][0];
    assert_eq!(
        (chlorine["param"].as_str(), chlorine["low"].as_f64(), chlorine["high"].as_f64()),
        (Some("free_chlorine"), Some(0.3), Some(2.0))
    );
    let v = chlorine["value"].as_f64().unwrap();
    assert!((0.3..0.8).contains(&v), "chlorine {v}");
    ws.close().await;
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_comm_lost_after_two_cycles_and_recovers() {
    let server = start(VILLAGE).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    ws.until(Duration::from_secs(10), |m| device_in(m, "east-c2").is_some_and(|d| d["comm"]["link"] == "up")).await;

    server.sim().set_fault("east-c2", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    // One missed cycle is not yet an alarm.
    let one = ws
        .until(Duration::from_secs(10), |m| {
            device_in(m, "east-c2").is_some_and(|d| d["comm"]["consecutive_misses"] == 1)
        })
        .await;
    assert_eq!(one["device"]["comm"]["comm_lost"], false);
    assert_eq!(one["device"]["comm"]["link"], "down");
    // The second is: an event naming the region, and the device flagged.
    let event = ws.until(Duration::from_secs(10), |m| m["type"] == "event" && m["event"]["kind"] == "comm_lost").await;
    assert_eq!((event["event"]["device"].as_str(), event["event"]["region"].as_str()), (Some("east-c2"), Some("east")));
    let view = device(&server, &cookie, "east-c2").await;
    assert_eq!(view["comm"]["comm_lost"], true);
    // The region shows it too (R-A3).
    let all = server.get("/api/devices", &cookie).await.json();
    let east = all["regions"].as_array().unwrap().iter().find(|r| r["id"] == "east").unwrap().clone();
    assert_eq!((east["devices"].as_u64(), east["comm_lost"].as_u64()), (Some(3), Some(1)), "{east}");
    assert!(view["comm"]["consecutive_misses"].as_u64().unwrap() >= 2);
    assert!(view["comm"]["last_error"].as_str().unwrap().contains("no reply"), "{view}");
    // The other devices kept their cycle meanwhile.
    assert_eq!(device(&server, &cookie, "east-c1").await["comm"]["comm_lost"], false);

    // Revived, it recovers by itself.
    server.sim().set_fault("east-c2", ModbusFault::default()).unwrap();
    let restored =
        ws.until(Duration::from_secs(10), |m| m["type"] == "event" && m["event"]["kind"] == "comm_restored").await;
    assert_eq!(restored["event"]["device"], "east-c2");
    let view = device(&server, &cookie, "east-c2").await;
    assert_eq!(
        (view["comm"]["comm_lost"].as_bool(), view["comm"]["consecutive_misses"].as_u64()),
        (Some(false), Some(0))
    );
    assert_eq!(view["comm"]["cycle_read"], view["comm"]["cycle_expected"]);
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_exceptions_crash_nothing_and_others_keep_their_cycle() {
    let server = start(VILLAGE).await;
    let cookie = server.admin().await;
    let handle = server.app.handle.clone();
    eventually(Duration::from_secs(10), "first readings", || async {
        let v = handle.field().device("west-c1").await.ok()?;
        (v.comm.status.cycle_read == 5).then_some(())
    })
    .await;
    let c1_actor = handle.field().device_actor("east-c1").unwrap().get_id();
    let wq_actor = handle.field().device_actor("east-wq").unwrap().get_id();

    server.sim().set_fault("east-c1", ModbusFault { garbage: true, ..ModbusFault::default() }).unwrap();
    server.sim().set_fault("east-wq", ModbusFault { exception: Some(4), ..ModbusFault::default() }).unwrap();
    // Both are polled and refused for two full cycles.
    let (c1_start, wq_start, west_start) =
        (requests(&server, "east-c1"), requests(&server, "east-wq"), requests(&server, "west-c1"));
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(10), "two bad cycles each", || async {
        let c1 = handle.field().device("east-c1").await.ok()?;
        let wq = handle.field().device("east-wq").await.ok()?;
        (c1.comm.status.comm_lost && wq.comm.status.comm_lost).then_some(())
    })
    .await;
    // A device exception is a valid reply: the link is up, the data missing.
    let wq = device(&server, &cookie, "east-wq").await;
    assert_eq!(wq["comm"]["link"], "up");
    assert!(wq["comm"]["last_error"].as_str().unwrap().contains("exception 0x04"), "{wq}");
    let c1 = device(&server, &cookie, "east-c1").await;
    assert_eq!(c1["comm"]["link"], "down");
    // The same actors are still running: bad replies are data, not crashes.
    assert_eq!(handle.field().device_actor("east-c1").unwrap().get_id(), c1_actor);
    assert_eq!(handle.field().device_actor("east-wq").unwrap().get_id(), wq_actor);
    assert!(requests(&server, "east-c1") > c1_start && requests(&server, "east-wq") > wq_start);

    // Meanwhile the healthy device kept polling every cycle (300 ms): one poll per cycle elapsed, give or
    // take the cycle in progress at either end.
    let west_polls = requests(&server, "west-c1") - west_start;
    let cycles = (started.elapsed().as_millis() / 300) as u64;
    assert!(
        west_polls + 1 >= cycles && west_polls >= 2,
        "west-c1 polled {west_polls} times in {cycles} cycles while the others failed"
    );
    let west = handle.field().device("west-c1").await.unwrap();
    assert!(!west.comm.status.comm_lost && west.comm.status.consecutive_misses == 0);

    // Bad replies are counted.
    let metrics = server.get("/metrics", &cookie).await.body;
    let failures: u64 = metrics
        .lines()
        .find(|l| l.starts_with("waterworks_poll_failures_total "))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 4, "{metrics}");

    for id in ["east-c1", "east-wq"] {
        server.sim().set_fault(id, ModbusFault::default()).unwrap();
    }
    eventually(Duration::from_secs(10), "recovery after the faults clear", || async {
        let c1 = handle.field().device("east-c1").await.ok()?;
        let wq = handle.field().device("east-wq").await.ok()?;
        (!c1.comm.status.comm_lost && !wq.comm.status.comm_lost).then_some(())
    })
    .await;
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_device_actor_is_restarted_and_keeps_polling() {
    let server = start(VILLAGE).await;
    let cookie = server.admin().await;
    let handle = server.app.handle.clone();
    eventually(Duration::from_secs(10), "first poll", || async { (requests(&server, "east-c1") > 0).then_some(()) })
        .await;
    let before = handle.field().device_actor("east-c1").unwrap();
    before.kill();
    let after = eventually(Duration::from_secs(10), "a new actor for east-c1", || async {
        let now = handle.field().device_actor("east-c1")?;
        (now.get_id() != before.get_id() && matches!(now.get_status(), ractor::ActorStatus::Running)).then_some(now)
    })
    .await;
    let polls = requests(&server, "east-c1");
    eventually(Duration::from_secs(10), "the restarted actor polls", || async {
        (requests(&server, "east-c1") > polls + 2).then_some(())
    })
    .await;
    assert_eq!(handle.field().device_actor("east-c1").unwrap().get_id(), after.get_id());

    // The supervision tree reports the restart.
    let tree = server.get("/api/system/supervision", &cookie).await.json();
    let east = tree.as_array().unwrap().iter().find(|s| s["name"] == "region:east").unwrap();
    let child = east["children"].as_array().unwrap().iter().find(|c| c["name"] == "east-c1").unwrap();
    assert_eq!((child["running"].as_bool(), child["restarts"].as_u64()), (Some(true), Some(1)));
    let metrics = server.get("/metrics", &cookie).await.body;
    assert!(metrics.contains("waterworks_actor_restarts_total 1"), "{metrics}");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_since_resumes_without_a_snapshot() {
    let server = start(VILLAGE).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    let snapshot = ws.next().await;
    let epoch = snapshot["epoch"].as_str().unwrap().to_owned();
    let seen = ws.until(Duration::from_secs(10), |m| m["type"] == "delta").await;
    let seq = seen["seq"].as_u64().unwrap();
    ws.close().await;
    // Some deltas happen while disconnected.
    eventually(Duration::from_secs(10), "more deltas", || async {
        let s = server.app.handle.events().snapshot().await.ok()?;
        (s.seq > seq + 3).then_some(())
    })
    .await;
    let mut ws = server.ws(&cookie, &format!("?since={seq}&epoch={epoch}")).await;
    let first = ws.next().await;
    assert_eq!(first["type"], "delta", "resumed stream starts with the missed frames: {first}");
    assert_eq!(first["seq"].as_u64(), Some(seq + 1));
    for expect in seq + 2..seq + 5 {
        let m = ws.next().await;
        assert_eq!(m["seq"].as_u64(), Some(expect), "no gap and no repeat");
    }
    ws.close().await;
    // An unknown epoch gets a snapshot.
    let mut ws = server.ws(&cookie, "?since=5&epoch=nonsense").await;
    assert_eq!(ws.next().await["type"], "snapshot");
    ws.close().await;
    server.app.shutdown().await;
}

/// The supervision tree is what `actors::tree`'s diagram says (issue 7 §1): under the root the store writer,
/// the hub, the feed consumers (limit watcher, alarm engine) and shelf expiry, the serial lines, the regions, then the HJ 212 and MQTT gateways, in that
/// order; in each region the field devices, CJ/T 188 gateways and lines, MQTT groups, stations and valves,
/// in that order. The demo has every kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervision_tree_is_laid_out_as_its_diagram_says() {
    use actors::model::DeviceKind;
    let server = start(include_str!("../config/demo.toml")).await;
    let api = &server.app.handle;
    let tree = api.system().supervision().await;
    let root = tree.iter().find(|s| s.name == "root").expect("the root reports its children");
    let rank = |name: &str| match name {
        "store-writer" => 0,
        "live-hub" => 1,
        "limit-watcher" | "alarm-engine" | "alarm-shelves" | "usage-watch" => 2,
        n if n.starts_with("line:") => 3,
        n if n.starts_with("region:") => 4,
        "hj212-gateway" => 5,
        "mqtt-gateway" => 6,
        other => panic!("a root child the diagram does not show: {other}"),
    };
    let ranks: Vec<u8> = root.children.iter().map(|c| rank(&c.name)).collect();
    assert!(ranks.is_sorted(), "root children out of the diagram's order: {:?}", root.children);
    for r in 0..=6 {
        assert!(ranks.contains(&r), "the demo starts every kind of root child: {:?}", root.children);
    }

    let kinds: std::collections::HashMap<String, DeviceKind> =
        api.field().devices().await.expect("views").into_iter().map(|d| (d.id.to_string(), d.kind)).collect();
    let rank = |id: &str| match kinds.get(id) {
        Some(DeviceKind::Concentrator | DeviceKind::Logger) => 0,
        Some(DeviceKind::Cjt188Gateway | DeviceKind::Cjt188Line) => 1,
        Some(DeviceKind::MqttGroup) => 2,
        Some(DeviceKind::Hj212Station) => 3,
        Some(DeviceKind::Valve) => 4,
        None => panic!("a region child that is no device: {id}"),
    };
    let regions: Vec<_> = tree.iter().filter(|s| s.name.starts_with("region:")).collect();
    assert_eq!(regions.len(), root.children.iter().filter(|c| c.name.starts_with("region:")).count());
    let mut seen = std::collections::HashSet::new();
    for region in regions {
        let ranks: Vec<u8> = region.children.iter().map(|c| rank(&c.name)).collect();
        assert!(ranks.is_sorted(), "{} children out of the diagram's order: {:?}", region.name, region.children);
        seen.extend(ranks);
    }
    assert_eq!(seen.len(), 5, "the demo's regions hold every kind of device actor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_a_reading_one_is_not() {
    let server = start(&format!("{VILLAGE}\n[live]\nping = \"300ms\"\n")).await;
    let cookie = server.admin().await;
    let metrics = server.app.handle.metrics();
    let clients = || metrics.ws_clients.load(std::sync::atomic::Ordering::Relaxed);
    // A client that never reads again after the handshake (so it cannot answer a ping).
    let mut deaf = server.ws(&cookie, "").await;
    // A client that reads all the time (and so answers pings).
    let mut reader = server.ws(&cookie, "").await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        loop {
            let m = reader.next().await;
            if seen_tx.send(m).is_err() {
                return;
            }
        }
    });
    eventually(Duration::from_secs(5), "two live clients", || async { (clients() == 2).then_some(()) }).await;
    let no_pong = &metrics.limits.ws_dropped_no_pong;
    eventually(Duration::from_secs(5), "the deaf client dropped", || async {
        (no_pong.load(std::sync::atomic::Ordering::Relaxed) == 1).then_some(())
    })
    .await;
    assert_eq!(clients(), 1, "only the deaf client was dropped");
    assert!(deaf.closed_by_server_within(Duration::from_secs(5)).await, "the server closed the deaf client");
    // The reading client, past several ping intervals, still gets frames.
    while seen_rx.try_recv().is_ok() {}
    let after = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await;
    assert!(matches!(after, Ok(Some(_))), "the reading client still receives frames");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(no_pong.load(std::sync::atomic::Ordering::Relaxed), 1, "the reading client was not dropped");
    assert_eq!(clients(), 1);
    let body = server.get("/metrics", &cookie).await.body;
    assert!(body.contains("waterworks_ws_dropped_total{reason=\"no_pong\"} 1"), "{body}");
    reading.abort();
    server.app.shutdown().await;
}
