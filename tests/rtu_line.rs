//! Modbus RTU devices on a shared RS-485 line, in the whole server (issue 3 §1, §6): one bus actor serialises
//! the line; devices on it are read on their cycle; a dead slave costs only its timeout and the others keep
//! their cycle; a device whose TCP primary (a 4G gateway) dies moves to its RS-485 backup.

mod support;

use std::time::Duration;

use sim::rtu::RtuFault;
use support::*;

const CONFIG: &str = r#"
[simulator]
enabled = true
speed = 60.0
seed = 5

[supervision]
base_backoff = "20ms"

[defaults]
retries = 0
failover_after = 2
probe_every = 3

[[line]]
id = "rs485-1"
path = "/dev/ttyUSB0"    # replaced by the simulator's pseudo-terminal
baud = 19200
format = "8N1"
timeout = "150ms"

[[region]]
id = "south"
name = "南村"

[[region.concentrator]]
id = "s-c1"
address = "rtu:rs485-1"
unit_id = 1
model = "ww-concentrator-v1"
cycle = "400ms"
meters = { prefix = "S1-", first = 1, count = 5 }

[[region.concentrator]]
id = "s-c2"
address = "rtu:rs485-1"
unit_id = 2
model = "ww-concentrator-v1"
cycle = "400ms"
meters = { prefix = "S2-", first = 1, count = 5 }

[[region.logger]]
id = "s-wq"
address = "rtu:rs485-1"
unit_id = 3
model = "ww-wq-logger-v1"
parameters = [{ name = "free_chlorine", cycle = "400ms" }, { name = "ph", cycle = "400ms" }]

[[region.concentrator]]
id = "s-c4"
address = "127.0.0.1:0"
backup = ["rtu:rs485-1"]
unit_id = 4
timeout = "150ms"
model = "ww-concentrator-v1"
cycle = "400ms"
meters = { prefix = "S4-", first = 1, count = 3 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_a_line_are_read_and_a_dead_slave_costs_only_its_timeout() {
    let server = start(CONFIG).await;
    let cookie = server.admin().await;
    for id in ["s-c1", "s-c2", "s-wq"] {
        let v = eventually(Duration::from_secs(15), "a full cycle over RTU", || async {
            let v = device(&server, &cookie, id).await;
            (v["comm"]["cycle_read"] == v["comm"]["cycle_expected"] && v["comm"]["link"] == "up").then_some(v)
        })
        .await;
        assert!(v["comm"]["path"].as_str().unwrap().starts_with("primary rtu rs485-1 unit"), "{v}");
    }
    let line = &server.app.rtu_sims.iter().find(|(id, _)| id == "rs485-1").unwrap().1;
    line.set_fault(2, RtuFault { silent: true, ..RtuFault::default() }).unwrap();
    let mut ws = server.ws(&cookie, "").await;
    let lost = ws.until(Duration::from_secs(15), |m| m["type"] == "event" && m["event"]["kind"] == "comm_lost").await;
    assert_eq!(lost["event"]["device"], "s-c2");
    // Meanwhile the other slaves on the same line keep their cycle: several more successes each.
    let since = |v: &serde_json::Value| v["comm"]["last_success"].as_i64().unwrap();
    let (c1, wq) = (device(&server, &cookie, "s-c1").await, device(&server, &cookie, "s-wq").await);
    let polls = line.requests(1).unwrap();
    eventually(Duration::from_secs(10), "s-c1 and s-wq polled on", || async {
        let (a, b) = (device(&server, &cookie, "s-c1").await, device(&server, &cookie, "s-wq").await);
        (since(&a) > since(&c1) && since(&b) > since(&wq) && line.requests(1)? >= polls + 2).then_some(())
    })
    .await;
    assert_eq!(device(&server, &cookie, "s-c1").await["comm"]["comm_lost"], false);
    line.set_fault(2, RtuFault::default()).unwrap();
    ws.until(Duration::from_secs(15), |m| {
        m["type"] == "event" && m["event"]["kind"] == "comm_restored" && m["event"]["device"] == "s-c2"
    })
    .await;
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_4g_gateway_moves_the_device_to_its_rs485_backup() {
    let server = start(CONFIG).await;
    let cookie = server.admin().await;
    eventually(Duration::from_secs(15), "s-c4 read over TCP", || async {
        let v = device(&server, &cookie, "s-c4").await;
        (v["comm"]["cycle_read"] == 3 && v["comm"]["path"].as_str()?.starts_with("primary tcp")).then_some(())
    })
    .await;
    server
        .sim()
        .set_fault("s-c4", sim::modbus::ModbusFault { silent: true, ..sim::modbus::ModbusFault::default() })
        .unwrap();
    let v = eventually(Duration::from_secs(15), "s-c4 on its RS-485 backup with data", || async {
        let v = device(&server, &cookie, "s-c4").await;
        (v["comm"]["path"] == "backup 1 rtu rs485-1 unit 4"
            && v["comm"]["link"] == "up"
            && v["comm"]["cycle_read"] == 3)
            .then_some(v)
    })
    .await;
    assert_eq!(v["comm"]["comm_lost"], false, "{v}");
    // The 4G gateway comes back: the device returns to it.
    server.sim().set_fault("s-c4", sim::modbus::ModbusFault::default()).unwrap();
    eventually(Duration::from_secs(15), "s-c4 back on TCP", || async {
        let v = device(&server, &cookie, "s-c4").await;
        v["comm"]["path"].as_str()?.starts_with("primary tcp").then_some(())
    })
    .await;
    server.app.shutdown().await;
}

/// A valve controller on the same RS-485 line (a coil valve, unit 5): its writes and read-backs go through the
/// line's bus actor between the other units' reads, and the command is confirmed (R-A7 over RTU).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valve_on_the_line_is_commanded_through_the_bus_actor() {
    let config = CONFIG.replace("seed = 5", "seed = 5\nvalve_travel = \"300ms\"")
        + r#"
[[region.valve]]
id = "s-v5"
name = "南村支管阀 (RS-485)"
address = "rtu:rs485-1"
unit_id = 5
model = "ww-valve-coil-v1"
poll = "1s"
timeout = "150ms"
confirm_timeout = "5s"
confirm_poll = "100ms"
"#;
    let server = start(&config).await;
    let cookie = server.admin().await;
    let v = eventually(Duration::from_secs(15), "the valve read over RTU", || async {
        let v = device(&server, &cookie, "s-v5").await;
        (v["valve"]["state"] == "open").then_some(v)
    })
    .await;
    assert_eq!(v["comm"]["path"], "primary rtu rs485-1 unit 5");
    let line = &server.app.rtu_sims.iter().find(|(id, _)| id == "rs485-1").unwrap().1;
    let before = line.requests(5).unwrap();
    let closed = command_valve(&server, &cookie, "s-v5", "close", "burst main").await.json();
    assert_eq!((closed["result"].as_str(), closed["state"].as_str()), (Some("confirmed"), Some("closed")), "{closed}");
    assert!(line.requests(5).unwrap() >= before + 2, "a write and at least one read-back on the line");
    // The concentrators on the line kept their cycle meanwhile.
    let c1 = device(&server, &cookie, "s-c1").await;
    assert_eq!(c1["comm"]["comm_lost"], false, "{c1}");
    server.app.shutdown().await;
}
