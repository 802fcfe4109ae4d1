//! The fault-injection HTTP API ([`SimControl`]) over simulated Modbus TCP devices, on a real socket on port 0,
//! spoken to with a tiny HTTP/1.1 client. The other protocols are broken through it in the server's own
//! `tests/sim_control.rs`.
//!
//! The client is hand-written on purpose: one request per connection (`Connection: close`), read to the end,
//! so the tests need no HTTP client crate. It only understands bodies with a `Content-Length`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use drivers::modbus::Exception;
use drivers::registers::Function;
use serde_json::{json, Value};
use support::{client, concentrator, litres_layout, small_logger, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterworks_sim::control::{ControlServer, ServeError, SimControl};
use waterworks_sim::modbus::{ModbusFault, ModbusSim};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the fault-injection API over the devices of `sim` on a loopback port.
async fn serve(sim: &ModbusSim) -> ControlServer {
    let mut control = SimControl::default();
    control.add_modbus_tcp(sim);
    match control.serve(support::any_port()).await {
        Ok(server) => server,
        Err(e) => panic!("control api did not start: {e}"),
    }
}

/// Sends one request and returns the status code and the JSON body (`Value::Null` when empty).
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("cannot connect to the control api: {e}"),
    };
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(stream.write_all(request.as_bytes()).await.is_ok());
    let mut raw = Vec::new();
    match tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut raw)).await {
        Ok(Ok(_)) => {}
        other => panic!("{method} {path}: no complete response: {other:?}"),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {text:?}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "chunked bodies are not handled");
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: body {body:?} is not json: {e}"))
    };
    (status, json)
}

#[tokio::test]
async fn list_show_set_and_clear_faults_over_http() {
    let sim = start(vec![concentrator("c1", litres_layout(4)), small_logger("q1")], 1.0).await;
    let server = serve(&sim).await;
    let api = server.addr;

    let (status, list) = http(api, "GET", "/devices", None).await;
    assert_eq!(status, 200);
    let c1_addr = sim.addr("c1").map(|a| a.to_string());
    assert_eq!(
        list[0],
        json!({
            "id": "c1", "protocol": "modbus_tcp", "addr": c1_addr, "kind": "concentrator", "unit_id": 1, "requests": 0, "malformed": 0,
            "fault": {"silent": false, "delay_ms": 0, "exception": null, "garbage": false, "disconnect": false, "values": {}, "stuck": false}
        })
    );
    assert_eq!(list[1]["kind"], "logger");

    // A fault set over HTTP shows in the reply, in the simulator, and on the wire.
    let (status, device) = http(api, "PUT", "/devices/c1/fault", Some(r#"{"exception": 4}"#)).await;
    assert_eq!(status, 200);
    assert_eq!(device["fault"]["exception"], 4);
    assert_eq!(sim.fault("c1"), Some(ModbusFault { exception: Some(4), ..ModbusFault::default() }));
    let mut c = client(&sim, "c1", TIMEOUT);
    assert!(matches!(c.read_registers(Function::Holding, 0, 4).await, Ok(Err(Exception(4)))));
    let (_, device) = http(api, "GET", "/devices/c1", None).await;
    assert_eq!(device["requests"], 1);

    let (status, device) = http(api, "DELETE", "/devices/c1/fault", None).await;
    assert_eq!((status, &device["fault"]["exception"]), (200, &Value::Null));
    assert!(matches!(c.read_registers(Function::Holding, 0, 4).await, Ok(Ok(_))));

    let forced = r#"{"values": {"free_chlorine": 0.02}}"#;
    let (status, device) = http(api, "PUT", "/devices/q1/fault", Some(forced)).await;
    assert_eq!((status, &device["fault"]["values"]["free_chlorine"]), (200, &json!(0.02)));
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let server = serve(&sim).await;
    let api = server.addr;
    let cases = [
        ("PUT", "/devices/q1/fault", Some(r#"{"exceptoin": 4}"#), 400, "bad_fault"),
        ("PUT", "/devices/q1/fault", Some("silent please"), 400, "bad_fault"),
        ("PUT", "/devices/q1/fault", Some(r#"{"delay_ms": -1}"#), 400, "bad_fault"),
        ("PUT", "/devices/q1/fault", Some(r#"{"exception": 0}"#), 400, "invalid_fault"),
        ("PUT", "/devices/q1/fault", Some(r#"{"values": {"lead": 1.0}}"#), 400, "invalid_fault"),
        ("PUT", "/devices/nope/fault", Some(r#"{"silent": true}"#), 404, "unknown_device"),
        ("PUT", "/devices/nope/fault", Some("not json either"), 404, "unknown_device"),
        ("DELETE", "/devices/nope/fault", None, 404, "unknown_device"),
        ("GET", "/devices/nope", None, 404, "unknown_device"),
        ("GET", "/elsewhere", None, 404, "not_found"),
    ];
    for (method, path, body, expect_status, expect_code) in cases {
        let (status, error) = http(api, method, path, body).await;
        assert_eq!((status, error["code"].as_str()), (expect_status, Some(expect_code)), "{method} {path} {body:?}");
        assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}: {error}");
    }
    assert_eq!(sim.fault("q1"), Some(ModbusFault::default()), "no bad request changed the fault");
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_refuses_non_loopback_addresses() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let everywhere = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut control = SimControl::default();
    control.add_modbus_tcp(&sim);
    assert!(matches!(control.serve(everywhere).await, Err(ServeError::NotLoopback(_))));
    sim.shutdown().await;
}
