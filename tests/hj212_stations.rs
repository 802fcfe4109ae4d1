//! HJ 212-2017 stations pushing to the server (issue 3 §4): samples land in the store and the live view; the
//! reply goes back only after the commit; a bad frame is rejected and the next one on the same connection
//! succeeds; a station that stops sending is comm-lost after two intervals and recovers by itself.

mod support;

use std::time::Duration;

use drivers::hj212::{self, cn, Packet};
use sim::hj212::Hj212Fault;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn village_with_station() -> String {
    VILLAGE.to_owned()
        + r#"
[hj212]
listen = "127.0.0.1:0"

[[region.station]]
id = "west-st1"
name = "西村水源地自动站"
mn = "WEST0001"
password = "123456"
interval = "400ms"
factors = [{ factor = "w01001" }, { factor = "w01003" }, { factor = "w21003", high = 0.5 }]
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_samples_are_stored_and_shown_and_the_station_is_answered() {
    let server = start(&village_with_station()).await;
    let cookie = server.admin().await;
    let view = eventually(Duration::from_secs(10), "station samples", || async {
        let v = device(&server, &cookie, "west-st1").await;
        v["values"].as_array()?.iter().all(|p| p["value"].is_number()).then_some(v)
    })
    .await;
    let ph = view["values"].as_array().unwrap().iter().find(|p| p["param"] == "ph").unwrap();
    assert!((6.8..7.6).contains(&ph["value"].as_f64().unwrap()), "{ph}");
    assert_eq!((ph["low"].as_f64(), ph["high"].as_f64(), ph["unit"].as_str()), (Some(6.5), Some(8.5), Some("pH")));
    assert_eq!(view["comm"]["path"], "hj212 MN WEST0001");
    // Stored, and the station got its replies (only sent after the commit).
    let stored = server.get("/api/readings?device=west-st1&from=0", &cookie).await.json();
    assert!(stored["samples"].as_array().unwrap().iter().any(|s| s["parameter"] == "turbidity"), "{stored}");
    let station = &server.app.stations[0];
    eventually(Duration::from_secs(10), "acknowledged uploads", || async {
        (station.stats().acked >= 2).then_some(())
    })
    .await;
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_is_rejected_and_the_next_on_the_same_connection_succeeds() {
    let server = start(&village_with_station()).await;
    let addr = server.app.hj212_addr.expect("listening");
    let mut stream = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let mut packet = Packet::new("21", cn::REALTIME_DATA, "WEST0001");
    packet.qn = Some("20261121120000001".into());
    packet.pw = Some("123456".into());
    packet.flag = Some(5); // 2017 + reply requested
    packet.cp.data_time = Some("20261121120000".into());
    packet.cp.values.push(hj212::FactorValue { code: "w01001".into(), field: "Rtd".into(), value: "9.40".into() });
    packet.cp.values.push(hj212::FactorValue { code: "w01001".into(), field: "Flag".into(), value: "N".into() });
    let good = hj212::encode(&packet).unwrap();
    // The same frame with a wrong CRC, then junk, then the good frame, all on one connection.
    let mut bad = good.clone();
    let crc_at = bad.len() - 6;
    bad[crc_at] = if bad[crc_at] == b'0' { b'1' } else { b'0' };
    stream.get_mut().write_all(&bad).await.unwrap();
    stream.get_mut().write_all(b"##garbage that is not a frame\r\n").await.unwrap();
    stream.get_mut().write_all(&good).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut reply)).await.expect("a reply").unwrap();
    let reply = hj212::decode(reply.as_bytes()).expect("a valid reply frame");
    assert_eq!(
        (reply.cn.as_str(), reply.qn.as_deref()),
        ("9014", Some("20261121120000001")),
        "only the good frame is answered"
    );
    // The value is stored with the station's time (UTC+8 → UTC) and flagged out of limits (pH 9.4 > 8.5).
    let cookie = server.admin().await;
    let stored = server.get("/api/readings?device=west-st1&from=0&limit=10000", &cookie).await.json();
    let sample = stored["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["value"] == 9.4)
        .cloned()
        .expect("the good frame's sample");
    assert_eq!(sample["ts"].as_i64(), Some(1_795_233_600_000), "2026-11-21 12:00:00 +08:00 = 04:00:00 UTC");
    assert_eq!(sample["flags"], serde_json::json!(["high"]));
    // Both rejected frames are counted as bad input.
    eventually(Duration::from_secs(10), "the rejected frames counted", || async {
        let metrics = server.get("/metrics", &cookie).await.body;
        let line = metrics.lines().find(|l| l.starts_with("waterworks_bad_requests_total "))?.to_owned();
        (line.rsplit(' ').next()?.parse::<u64>().ok()? >= 2).then_some(())
    })
    .await;
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_station_is_comm_lost_after_two_intervals_and_recovers() {
    let server = start(&village_with_station()).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    ws.until(Duration::from_secs(10), |m| {
        m["type"] == "delta" && m["device"]["id"] == "west-st1" && m["device"]["comm"]["link"] == "up"
    })
    .await;
    let station = &server.app.stations[0];
    station.set_fault(Hj212Fault { silent: true, ..Hj212Fault::default() }).unwrap();
    let lost = ws.until(Duration::from_secs(10), |m| m["type"] == "event" && m["event"]["kind"] == "comm_lost").await;
    assert_eq!((lost["event"]["device"].as_str(), lost["event"]["region"].as_str()), (Some("west-st1"), Some("west")));
    station.set_fault(Hj212Fault::default()).unwrap();
    let back =
        ws.until(Duration::from_secs(10), |m| m["type"] == "event" && m["event"]["kind"] == "comm_restored").await;
    assert_eq!(back["event"]["device"], "west-st1");
    // Garbage from the station is rejected and the station recovers.
    station.set_fault(Hj212Fault { garbage: true, ..Hj212Fault::default() }).unwrap();
    let faulty = station.stats().faulty;
    eventually(Duration::from_secs(10), "junk sent", || async { (station.stats().faulty > faulty + 1).then_some(()) })
        .await;
    station.set_fault(Hj212Fault::default()).unwrap();
    let acked = station.stats().acked;
    eventually(Duration::from_secs(10), "uploads answered again", || async {
        (station.stats().acked > acked + 1).then_some(())
    })
    .await;
    server.app.shutdown().await;
}
