//! CJ/T 188 meters behind a transparent gateway and on a serial line (issue 3 §3): readings reach the store and
//! the live view; a garbled reply fails only that meter and the next read of it succeeds; the other meters keep
//! their cycle; valves on meters are commanded through the gateway's actor.

mod support;

use std::time::Duration;

use drivers::cjt188::Address;
use sim::cjt188::Cjt188Fault;
use support::*;

fn village_with_gateway() -> String {
    VILLAGE.to_owned()
        + r#"
[[region.cjt188]]
id = "east-g1"
name = "东村CJ/T 188网关"
address = "127.0.0.1:0"
edition = "2004"
cycle = "300ms"
timeout = "250ms"
meters = [
  { id = "CJ-1", address = "00000000000001" },
  { id = "CJ-2", address = "00000000000002" },
  { id = "CJ-3", address = "00000000000003" },
]
"#
}

fn gateway(server: &TestServer) -> &sim::cjt188::Cjt188Sim {
    &server.app.cjt188_sims.iter().find(|(id, _)| id == "east-g1").expect("simulated gateway").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_are_read_and_a_garbled_reply_fails_only_that_meter() {
    let server = start(&village_with_gateway()).await;
    let cookie = server.admin().await;
    let view = eventually(Duration::from_secs(10), "all three meters read", || async {
        let v = device(&server, &cookie, "east-g1").await;
        v["meters"].as_array()?.iter().all(|m| m["volume_m3"].is_string()).then_some(v)
    })
    .await;
    let addr = gateway(&server).addr().expect("a tcp gateway");
    assert_eq!(view["comm"]["path"], format!("primary cjt188 {addr}"));
    let truth = gateway(&server).volume(&"00000000000001".parse::<Address>().unwrap()).unwrap().cubic_metres();
    let shown: f64 = view["meters"][0]["volume_m3"].as_str().unwrap().parse().unwrap();
    assert!((truth - shown).abs() < 0.05, "shown {shown}, meter has {truth}");
    let stored = server.get("/api/readings?device=east-g1&from=0", &cookie).await.json();
    assert!(stored["readings"].as_array().unwrap().iter().any(|r| r["meter"] == "CJ-3"), "{stored}");

    // CJ-2 starts answering garbage: only it fails; CJ-1 and CJ-3 are still read every cycle.
    let cj2: Address = "00000000000002".parse().unwrap();
    gateway(&server).set_fault(&cj2, Cjt188Fault { garbage: true, ..Cjt188Fault::default() }).unwrap();
    let partial = eventually(Duration::from_secs(10), "a cycle with CJ-2 failing", || async {
        let v = device(&server, &cookie, "east-g1").await;
        (v["comm"]["cycle_read"] == 2 && v["comm"]["last_error"].as_str()?.contains("CJ-2")).then_some(v)
    })
    .await;
    assert_eq!(partial["comm"]["comm_lost"], false, "a partial cycle is not a miss: {partial}");
    let ts_before = |v: &serde_json::Value, i: usize| v["meters"][i]["ts"].as_i64().unwrap();
    let later = eventually(Duration::from_secs(10), "CJ-1 and CJ-3 read again", || async {
        let v = device(&server, &cookie, "east-g1").await;
        (ts_before(&v, 0) > ts_before(&partial, 0) && ts_before(&v, 2) > ts_before(&partial, 2)).then_some(v)
    })
    .await;
    assert_eq!(later["meters"][1]["ts"], partial["meters"][1]["ts"], "CJ-2 was not updated while garbled");

    // The next good reply from CJ-2 is read.
    gateway(&server).set_fault(&cj2, Cjt188Fault::default()).unwrap();
    eventually(Duration::from_secs(10), "CJ-2 read again", || async {
        let v = device(&server, &cookie, "east-g1").await;
        (v["meters"][1]["ts"].as_i64()? > later["meters"][1]["ts"].as_i64()? && v["comm"]["cycle_read"] == 3)
            .then_some(())
    })
    .await;
    let metrics = server.get("/metrics", &cookie).await.body;
    assert!(!metrics.contains("waterworks_poll_failures_total 0\n"), "the garbled replies were counted");
    server.app.shutdown().await;
}

fn village_with_valve_meter() -> String {
    village_with_gateway()
        + r#"
[[region.valve]]
id = "east-cj1-valve"
name = "CJ-1 表阀"
cjt188 = { gateway = "east-g1", address = "00000000000001" }
poll = "300ms"
timeout = "250ms"
confirm_timeout = "1s"
confirm_poll = "50ms"
"#
}

/// A valve on a CJ/T 188 meter (A017): commanded through its gateway's actor, confirmed by read-back of the
/// meter's status; a valve that never moves ends in fault (issue 3 §5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cjt188_valve_meter_is_commanded_through_its_gateway() {
    let server = start(&village_with_valve_meter()).await;
    let cookie = server.admin().await;
    let view = eventually(Duration::from_secs(10), "the valve read", || async {
        let v = device(&server, &cookie, "east-cj1-valve").await;
        (v["valve"]["state"] == "open").then_some(v)
    })
    .await;
    assert_eq!(view["comm"]["path"], "cjt188 via east-g1 meter 00000000000001");
    let cj1: Address = "00000000000001".parse().unwrap();
    let closed = command_valve(&server, &cookie, "east-cj1-valve", "close", "arrears shut-off").await.json();
    assert_eq!((closed["result"].as_str(), closed["state"].as_str()), (Some("confirmed"), Some("closed")), "{closed}");
    assert_eq!(gateway(&server).valve_open(&cj1), Some(false), "the simulated meter's valve really closed");
    // The meter reading shows the closed valve too.
    eventually(Duration::from_secs(10), "meter status shows the valve closed", || async {
        let v = device(&server, &cookie, "east-g1").await;
        v["meters"][0]["status"].as_array()?.iter().any(|s| s == "valve_closed").then_some(())
    })
    .await;

    gateway(&server).set_stuck(&cj1, true).unwrap();
    let failed = command_valve(&server, &cookie, "east-cj1-valve", "open", "arrears paid").await.json();
    assert_eq!((failed["result"].as_str(), failed["state"].as_str()), (Some("failed"), Some("fault")), "{failed}");
    let audit = server.get("/api/audit?limit=50", &cookie).await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "valve.open" && e["ok"] == false && e["target"] == "east-cj1-valve"),
        "{audit}"
    );
    server.app.shutdown().await;
}

fn village_with_serial_line() -> String {
    VILLAGE.to_owned()
        + r#"
[[line]]
id = "mbus-1"
path = "/dev/ttyUSB7"
baud = 2400
format = "8E1"
timeout = "300ms"

[[region.cjt188]]
id = "east-m1"
name = "东村表线 (RS-485, CJ/T 188)"
line = "mbus-1"
edition = "2004"
cycle = "1500ms"
timeout = "300ms"
meters = [
  { id = "CJS-1", address = "00000000000011" },
  { id = "CJS-2", address = "00000000000012" },
  { id = "CJS-3", address = "00000000000013" },
]

[[region.valve]]
id = "east-cjs1-valve"
name = "CJS-1 表阀"
cjt188 = { gateway = "east-m1", address = "00000000000011" }
poll = "1s"
timeout = "2s"
confirm_timeout = "5s"
confirm_poll = "300ms"
"#
}

/// The same over a serial line the gateway actor owns (a pty paced to 2400 8E1): the meters are read, a dead
/// meter costs only its own timeout while the others keep their cycle, and a valve on the line is commanded
/// between the meter reads, which the one actor serialises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_on_a_serial_line_are_read_and_a_dead_one_fails_alone() {
    let server = start(&village_with_serial_line()).await;
    let cookie = server.admin().await;
    let line = &server.app.cjt188_sims.iter().find(|(id, _)| id == "east-m1").expect("simulated line").1;
    let path = line.path().expect("a serial line");
    let view = eventually(Duration::from_secs(15), "all three meters read", || async {
        let v = device(&server, &cookie, "east-m1").await;
        v["meters"].as_array()?.iter().all(|m| m["volume_m3"].is_string()).then_some(v)
    })
    .await;
    assert_eq!(view["comm"]["path"], format!("primary cjt188 line mbus-1 ({path})"));
    let supervision = server.get("/api/system/supervision", &cookie).await.body;
    assert!(supervision.contains("\"east-m1\""), "the gateway actor is supervised: {supervision}");
    assert!(!supervision.contains("line:mbus-1"), "no Modbus bus actor competes for the line: {supervision}");

    // CJS-2 goes silent: it fails alone; CJS-1 and CJS-3 are read every cycle.
    let cjs2: Address = "00000000000012".parse().unwrap();
    line.set_fault(&cjs2, Cjt188Fault { silent: true, ..Cjt188Fault::default() }).unwrap();
    let partial = eventually(Duration::from_secs(15), "a cycle with CJS-2 failing", || async {
        let v = device(&server, &cookie, "east-m1").await;
        (v["comm"]["cycle_read"] == 2 && v["comm"]["last_error"].as_str()?.contains("CJS-2")).then_some(v)
    })
    .await;
    assert_eq!(partial["comm"]["comm_lost"], false, "{partial}");
    let ts = |v: &serde_json::Value, i: usize| v["meters"][i]["ts"].as_i64().unwrap_or(0);
    let later = eventually(Duration::from_secs(15), "CJS-1 and CJS-3 read again", || async {
        let v = device(&server, &cookie, "east-m1").await;
        (ts(&v, 0) > ts(&partial, 0) && ts(&v, 2) > ts(&partial, 2)).then_some(v)
    })
    .await;
    assert_eq!(later["meters"][1]["ts"], partial["meters"][1]["ts"], "CJS-2 was not updated while silent");

    // A valve command on the same line goes between the reads.
    let closed = command_valve(&server, &cookie, "east-cjs1-valve", "close", "leak on the service pipe").await.json();
    assert_eq!((closed["result"].as_str(), closed["state"].as_str()), (Some("confirmed"), Some("closed")), "{closed}");
    assert_eq!(line.valve_open(&"00000000000011".parse().unwrap()), Some(false));

    line.set_fault(&cjs2, Cjt188Fault::default()).unwrap();
    eventually(Duration::from_secs(15), "CJS-2 read again", || async {
        let v = device(&server, &cookie, "east-m1").await;
        (ts(&v, 1) > ts(&later, 1) && v["comm"]["cycle_read"] == 3).then_some(())
    })
    .await;
    server.app.shutdown().await;
}
