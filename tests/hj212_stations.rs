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

/// Connects from the loopback address `127.0.0.{host}` (every 127/8 address is local on Linux), so that a
/// test can play many peers.
async fn connect_from(host: u8, to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
    socket.connect(to).await.expect("connect")
}

/// Whether the server closed `stream` within `within` (end of stream or a reset).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    matches!(tokio::time::timeout(within, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

/// A series of `/metrics`.
async fn metric(server: &TestServer, cookie: &str, series: &str) -> u64 {
    let body = server.get("/metrics", cookie).await.body;
    body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_is_served_while_300_idle_connections_are_held() {
    // The default limits: 256 connections, 8 unverified per address, 30 s to send a valid frame.
    let server = start(&village_with_station()).await;
    let addr = server.app.hj212_addr.expect("listening");
    let station = &server.app.stations[0];
    eventually(Duration::from_secs(10), "the station answered", || async {
        (station.stats().acked >= 1).then_some(())
    })
    .await;

    // 300 idle connections from 38 addresses, 8 each (the per-address cap): more than the listener holds.
    let mut idle = Vec::new();
    for i in 0..300u16 {
        idle.push(connect_from(2 + u8::try_from(i / 8).unwrap(), addr).await);
    }
    // The station already connected keeps being answered.
    let acked = station.stats().acked;
    eventually(Duration::from_secs(10), "the connected station answered", || async {
        (station.stats().acked >= acked + 3).then_some(())
    })
    .await;
    // A station connecting now, in the middle of the flood, is served too.
    let mut spec = sim::hj212::Hj212SimSpec::new(station_addr(addr), "WEST0001");
    spec.uploads = vec![cn::REALTIME_DATA.to_owned()];
    spec.interval = Duration::from_millis(200);
    let newcomer = sim::hj212::Hj212Sim::start(spec).await.unwrap();
    eventually(Duration::from_secs(10), "a new station answered", || async {
        (newcomer.stats().acked >= 2).then_some(())
    })
    .await;
    assert_eq!(newcomer.stats().connects, 1, "its first connection was kept");
    // The room came from idle connections, counted.
    let cookie = server.admin().await;
    let evicted = r#"waterworks_hj212_connections_closed_total{reason="evicted"}"#;
    assert!(metric(&server, &cookie, evicted).await > 300 - 256);
    drop(idle);
    newcomer.shutdown().await;
    server.app.shutdown().await;
}

fn station_addr(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_connections_time_out_and_are_capped_per_address() {
    let config = village_with_station().replace(
        "[hj212]\nlisten = \"127.0.0.1:0\"\n",
        "[hj212]\nlisten = \"127.0.0.1:0\"\nmax_unverified_per_peer = 3\nverify_timeout = \"1s\"\n",
    );
    assert!(config.contains("verify_timeout"));
    let server = start(&config).await;
    let addr = server.app.hj212_addr.expect("listening");
    let station = &server.app.stations[0];

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(60, addr).await);
    }
    // The listener accepts in order, so the three are counted before a fourth from the same address, which is
    // closed at once...
    let mut fourth = connect_from(60, addr).await;
    let opened = std::time::Instant::now();
    assert!(closed_within(&mut fourth, Duration::from_millis(500)).await, "a 4th unverified connection was kept");
    assert!(opened.elapsed() < Duration::from_millis(500));
    // ...while another address is not affected by it.
    let mut other = connect_from(61, addr).await;
    assert!(!closed_within(&mut other, Duration::from_millis(300)).await, "another address was refused");
    // The unverified ones are dropped after the 1 s verify timeout; the station (verified) stays connected.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(3)).await, "an unverified connection outlived its timeout");
    }
    let connects = station.stats().connects;
    let acked = station.stats().acked;
    eventually(Duration::from_secs(10), "the station still answered", || async {
        (station.stats().acked >= acked + 3).then_some(())
    })
    .await;
    assert_eq!(station.stats().connects, connects, "the verified station kept its connection");
    let cookie = server.admin().await;
    let per_peer = r#"waterworks_hj212_connections_closed_total{reason="refused_per_peer"}"#;
    let timeouts = r#"waterworks_hj212_connections_closed_total{reason="verify_timeout"}"#;
    assert_eq!(metric(&server, &cookie, per_peer).await, 1);
    eventually(Duration::from_secs(5), "the timeouts counted", || async {
        (metric(&server, &cookie, timeouts).await >= 4).then_some(())
    })
    .await;
    server.app.shutdown().await;
}
