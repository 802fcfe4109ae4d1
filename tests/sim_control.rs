//! The fault-injection API over every simulator of a running server (`waterworks run --sim-control`), over real
//! HTTP: one device of each kind is broken through it and the server reacts (a Modbus TCP device and an RTU
//! slave go comm-lost, a CJ/T 188 meter fails alone, an HJ 212 station's junk is rejected until it is comm-lost,
//! a paused MQTT group goes comm-lost), then the faults are cleared and every one recovers. Errors are JSON.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// [`VILLAGE`] plus one device of every other kind: a CJ/T 188 gateway, an HJ 212 station, an MQTT group (on the
/// Mosquitto the server starts for `port = 0`), a concentrator on an RS-485 line, and one whose TCP primary has a
/// backup on that line.
fn village_with_every_kind() -> String {
    VILLAGE.to_owned()
        + r#"
[[region.cjt188]]
id = "west-g1"
address = "127.0.0.1:0"
edition = "2004"
cycle = "300ms"
timeout = "250ms"
meters = [
  { id = "CJ-1", address = "00000000000001" },
  { id = "CJ-2", address = "00000000000002" },
  { id = "CJ-3", address = "00000000000003" },
]

[[region.station]]
id = "west-st1"
mn = "WEST0001"
password = "123456"
interval = "400ms"
factors = [{ factor = "w01001" }, { factor = "w01003" }]

[[region.mqtt]]
id = "west-nb"
interval = "1s"
meters = ["M01", "M02", "M03"]

[[region.concentrator]]
id = "s-c1"
address = "rtu:rs485-1"
unit_id = 1
model = "ww-concentrator-v1"
cycle = "400ms"
meters = { prefix = "S1-", first = 1, count = 3 }

[[region.concentrator]]
id = "s-c4"
address = "127.0.0.1:0"
backup = ["rtu:rs485-1"]
unit_id = 4
model = "ww-concentrator-v1"
cycle = "400ms"
meters = { prefix = "S4-", first = 1, count = 2 }

[[line]]
id = "rs485-1"
path = "/dev/ttyUSB0"
baud = 19200
format = "8N1"
timeout = "150ms"

[hj212]
listen = "127.0.0.1:0"

[mqtt]
host = "127.0.0.1"
port = 0
client_id = "waterworks-test"
max_backoff = "1s"

[[mqtt.topics]]
filter = "water/+/reading"
meter_topic_level = 1
volume = "/volume_l"
scale = 0.001
time = "/ts"
time_format = "epoch_ms"
"#
}

const WITHIN: Duration = Duration::from_secs(15);

async fn api(base: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = http(base, method, path, &[("content-type", "application/json")], body).await;
    let json = r.json();
    (r.status, json)
}

async fn comm_lost(server: &TestServer, cookie: &str, id: &str) -> bool {
    device(server, cookie, id).await["comm"]["comm_lost"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_device_is_broken_and_mended_through_the_api() {
    let server = start_with_sim_control(&village_with_every_kind()).await;
    let cookie = server.admin().await;
    let base = format!("http://{}", server.app.sim_control_addr.expect("fault-injection API"));

    // Every simulated device is listed, with where it is.
    let (status, list) = api(&base, "GET", "/devices", "").await;
    assert_eq!(status, 200, "{list}");
    let listed = |id: &str| -> Value {
        list.as_array().unwrap().iter().find(|d| d["id"] == id).cloned().unwrap_or_else(|| panic!("{id} in {list}"))
    };
    let tcp = listed("east-c1");
    assert_eq!((tcp["protocol"].as_str(), tcp["kind"].as_str()), (Some("modbus_tcp"), Some("concentrator")));
    assert_eq!(tcp["addr"], server.sim().addr("east-c1").unwrap().to_string());
    let line = &server.app.rtu_sims[0].1;
    let rtu = listed("s-c1");
    assert_eq!((rtu["protocol"].as_str(), rtu["unit_id"].as_u64()), (Some("modbus_rtu"), Some(1)));
    assert_eq!((rtu["line"].as_str(), rtu["path"].as_str()), (Some("rs485-1"), Some(line.path())));
    assert_eq!(listed("s-c4")["protocol"], "modbus_tcp", "a device is listed under its id on its primary path");
    assert_eq!(listed("s-c4@rs485-1")["protocol"], "modbus_rtu", "and under ID@LINE on a backup line");
    let meter = listed("CJ-2");
    assert_eq!((meter["protocol"].as_str(), meter["gateway"].as_str()), (Some("cjt188"), Some("west-g1")));
    assert_eq!(meter["address"], "00000000000002");
    assert_eq!(listed("west-st1")["mn"], "WEST0001");
    let group = listed("west-nb");
    assert_eq!(
        (group["protocol"].as_str(), &group["fault"]),
        (Some("mqtt"), &serde_json::json!({"paused": false, "malformed": 0}))
    );

    // Everything is up before the faults.
    for id in ["east-c1", "s-c1", "west-st1", "west-nb"] {
        eventually(WITHIN, &format!("{id} up"), || async {
            (device(&server, &cookie, id).await["comm"]["link"] == "up").then_some(())
        })
        .await;
    }
    eventually(WITHIN, "all CJ/T 188 meters read", || async {
        (device(&server, &cookie, "west-g1").await["comm"]["cycle_read"] == 3).then_some(())
    })
    .await;

    // One fault of each kind, through the API.
    let faults = [
        ("east-c1", r#"{"silent": true}"#),
        ("s-c1", r#"{"silent": true}"#),
        ("CJ-2", r#"{"garbage": true}"#),
        ("west-st1", r#"{"garbage": true}"#),
        ("west-nb", r#"{"paused": true}"#),
    ];
    for (id, fault) in faults {
        let (status, view) = api(&base, "PUT", &format!("/devices/{id}/fault"), fault).await;
        assert_eq!(status, 200, "{id}: {view}");
        let key = fault.split('"').nth(1).unwrap();
        assert_eq!(view["fault"][key], true, "{id}: {view}");
    }
    assert!(line.fault(1).unwrap().silent, "the fault reached the RTU simulator");
    let (_, station) = api(&base, "GET", "/devices/west-st1", "").await;
    for id in ["east-c1", "s-c1", "west-nb"] {
        eventually(WITHIN, &format!("{id} comm-lost"), || async {
            comm_lost(&server, &cookie, id).await.then_some(())
        })
        .await;
    }
    eventually(WITHIN, "CJ-2 failing alone", || async {
        let v = device(&server, &cookie, "west-g1").await;
        (v["comm"]["cycle_read"] == 2 && v["comm"]["last_error"].as_str()?.contains("CJ-2")).then_some(())
    })
    .await;
    eventually(WITHIN, "the station's junk rejected until it is comm-lost", || async {
        let (_, now) = api(&base, "GET", "/devices/west-st1", "").await;
        (now["faulty"].as_u64()? > station["faulty"].as_u64()? + 1 && comm_lost(&server, &cookie, "west-st1").await)
            .then_some(())
    })
    .await;
    assert!(!comm_lost(&server, &cookie, "east-c2").await, "a neighbour is unaffected");

    // Cleared, every one recovers.
    for (id, _) in faults {
        let (status, view) = api(&base, "DELETE", &format!("/devices/{id}/fault"), "").await;
        assert_eq!(status, 200, "{id}: {view}");
    }
    for id in ["east-c1", "s-c1", "west-st1", "west-nb"] {
        eventually(WITHIN, &format!("{id} back"), || async { (!comm_lost(&server, &cookie, id).await).then_some(()) })
            .await;
    }
    eventually(WITHIN, "CJ-2 read again", || async {
        (device(&server, &cookie, "west-g1").await["comm"]["cycle_read"] == 3).then_some(())
    })
    .await;

    // Errors: JSON, 404 for an unknown id, 400 for bad JSON, a key of another kind's fault, or a fault that
    // does not fit the device.
    let cases = [
        ("GET", "/devices/nope", "", 404, "unknown_device"),
        ("PUT", "/devices/nope/fault", r#"{"silent": true}"#, 404, "unknown_device"),
        ("DELETE", "/devices/nope/fault", "", 404, "unknown_device"),
        ("GET", "/elsewhere", "", 404, "not_found"),
        ("PUT", "/devices/west-nb/fault", "paused", 400, "bad_fault"),
        ("PUT", "/devices/CJ-2/fault", r#"{"bad_crc": true}"#, 400, "bad_fault"),
        ("PUT", "/devices/west-nb/fault", r#"{"silent": true}"#, 400, "bad_fault"),
        ("PUT", "/devices/east-c1/fault", r#"{"paused": true}"#, 400, "bad_fault"),
        ("PUT", "/devices/s-c1/fault", r#"{"exception": 0}"#, 400, "invalid_fault"),
        ("PUT", "/devices/west-st1/fault", r#"{"values": {"w99999": 1.0}}"#, 400, "invalid_fault"),
    ];
    for (method, path, body, expect_status, expect_code) in cases {
        let (status, error) = api(&base, method, path, body).await;
        assert_eq!((status, error["code"].as_str()), (expect_status, Some(expect_code)), "{method} {path} {body}");
        assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {error}");
    }
    assert!(server.app.stations[0].fault().values.is_empty(), "no bad request changed a fault");
    server.app.shutdown().await;
}
