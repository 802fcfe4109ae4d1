//! Time in the whole server (issue 7 §4), with a wall clock set to a chosen local time that then runs with
//! tokio's clock (`TokioClock`), and 5 s cycles so that the test takes seconds: polls land
//! on wall-clock boundaries of the utility's zone after an immediate first poll, with a deterministic per-device
//! spread; readings are stamped when measured (per meter on a CJ/T 188 gateway) and keep the meter's clock and
//! settlement-day volume; a reading dated in the future is stored flagged, counted and not shown as current.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::clock::{SharedClock, TokioClock};
use actors::model::Timestamp;
use drivers::calendar::{LocalTime, Zone};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use waterworks::app::{self, App, RunOptions};

/// 2026-12-03 in Shanghai at `hour:minute:second`, as an instant.
fn shanghai(hour: i64, minute: i64, second: i64) -> i64 {
    let zone = Zone::named("Asia/Shanghai").expect("bundled");
    zone.to_instant(LocalTime { year: 2026, month: 12, day: 3, hour, minute, second, millis: 0 }).expect("valid")
}

fn config(extra_defaults: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
timezone = "Asia/Shanghai"

[simulator]
enabled = true
seed = 7

[defaults]
timeout = "2s"
retries = 0
{extra_defaults}

[hj212]
listen = "127.0.0.1:0"

[[region]]
id = "east"
name = "东村"

[[region.concentrator]]
id = "east-c1"
address = "127.0.0.1:0"
model = "ww-concentrator-v1"
cycle = "5s"
meters = {{ prefix = "E1-", first = 1, count = 2 }}

[[region.logger]]
id = "east-wq"
address = "127.0.0.1:0"
model = "ww-wq-logger-v1"
parameters = [{{ name = "free_chlorine", cycle = "5s" }}, {{ name = "ph", cycle = "1h" }}]

[[region.cjt188]]
id = "east-g1"
address = "127.0.0.1:0"
cycle = "5s"
timeout = "2s"
meters = [{{ id = "CJ-1", address = "00000000000001" }}, {{ id = "CJ-2", address = "00000000000002" }}]

[[region.station]]
id = "east-st1"
mn = "EAST0001"
password = "123456"
interval = "1h"
factors = [{{ factor = "w01001" }}]
"#
    )
}

async fn start_server(config_text: &str, clock_start: i64) -> App {
    let config = waterworks::config::parse("test.toml", config_text, None).expect("valid test config");
    let clock: SharedClock = Arc::new(TokioClock::new(Timestamp(clock_start)));
    let opts = RunOptions {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(support::temp_dir("time")),
        admin_password: Some(support::ADMIN_PASSWORD.into()),
        clock: Some(clock),
        ..RunOptions::default()
    };
    let app = app::start(config, opts).await.expect("server starts");
    app
}

/// The stored history of a device as JSON.
async fn history(app: &App, id: &str) -> Value {
    let h = app.handle.field().history(id, Timestamp(0), Timestamp(i64::MAX), 10_000).await.expect("history");
    serde_json::to_value(h).expect("serialisable")
}

/// The times of the stored readings of `meter` (or samples of `param`), oldest first.
fn times(history: &Value, list: &str, key: &str, name: &str) -> Vec<i64> {
    history[list]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r[key] == name)
        .filter_map(|r| r["ts"].as_i64())
        .collect()
}

/// The clock starts at 10:07:14.200 Shanghai time: start-up takes about 3 s here, so the immediate first poll
/// falls mid-cycle, and a schedule that drifts (next = last + cycle) would keep every later poll there.
fn clock_start() -> i64 {
    shanghai(10, 7, 14) + 200
}

const CYCLE: i64 = 5_000;

/// Asserts that every poll after the first lands within 600 ms after a 5 s boundary of local time (shifted by
/// `offset`), and that the polls are one cycle apart.
fn assert_aligned(what: &str, got: &[i64], offset: i64) {
    assert!(got.len() >= 3, "{what}: {} polls, expected at least 3", got.len());
    for t in &got[1..] {
        let past = (t - offset).rem_euclid(CYCLE);
        assert!(past < 600, "{what}: a poll {past} ms after its boundary: {got:?}");
    }
    for w in got[1..].windows(2) {
        assert!((CYCLE - 600..CYCLE + 600).contains(&(w[1] - w[0])), "{what}: polls one cycle apart: {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_land_on_local_boundaries_and_readings_keep_their_own_times() {
    let system_start = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    let app = start_server(&config(""), clock_start()).await;
    tokio::time::sleep(Duration::from_millis(3 * CYCLE as u64 + 1_000)).await;

    let modbus = history(&app, "east-c1").await;
    assert_aligned("concentrator", &times(&modbus, "readings", "meter", "E1-0001"), 0);
    let logger = history(&app, "east-wq").await;
    assert_aligned("free chlorine", &times(&logger, "samples", "parameter", "free_chlorine"), 0);
    let ph = times(&logger, "samples", "parameter", "ph");
    assert_eq!(ph.len(), 1, "pH (1h) is next due at 11:00: {ph:?}");
    let gateway = history(&app, "east-g1").await;
    assert_aligned("CJ/T 188 gateway", &times(&gateway, "readings", "meter", "CJ-1"), 0);

    // A CJ/T 188 reading keeps its meter's own clock (the simulated meter runs on system time) and its
    // settlement-day volume.
    let reading = gateway["readings"].as_array().unwrap().iter().find(|r| r["meter"] == "CJ-1").unwrap().clone();
    let clock = reading["meter_clock"].as_i64().expect("the meter clock is kept");
    assert!((clock - system_start).abs() < 30_000, "meter clock {clock} vs system time {system_start}");
    assert!(reading["settlement_volume_m3"].is_string(), "{reading}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cjt188_meter_is_stamped_when_it_answered() {
    let app = start_server(&config(""), clock_start()).await;
    let gateway = &app.cjt188_sims.iter().find(|(id, _)| id == "east-g1").expect("simulated").1;
    let cj2: drivers::cjt188::Address = "00000000000002".parse().unwrap();
    gateway.set_fault(&cj2, sim::cjt188::Cjt188Fault { delay_ms: 800, ..Default::default() }).unwrap();
    tokio::time::sleep(Duration::from_millis(2 * CYCLE as u64 + 1_000)).await;
    let h = history(&app, "east-g1").await;
    let (cj1, cj2) = (times(&h, "readings", "meter", "CJ-1"), times(&h, "readings", "meter", "CJ-2"));
    let last = cj1.len().min(cj2.len()) - 1;
    assert!(cj2[last] - cj1[last] >= 700, "CJ-2 answered 800 ms after CJ-1, and is stamped so: {cj1:?} {cj2:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_moves_each_device_by_its_own_stable_offset() {
    let app = start_server(&config(r#"spread = "5s""#), clock_start()).await;
    tokio::time::sleep(Duration::from_millis(3 * CYCLE as u64 + 1_000)).await;
    let spread = Duration::from_secs(5);
    let (c1, g1) =
        (actors::schedule::spread_offset("east-c1", spread), actors::schedule::spread_offset("east-g1", spread));
    assert!((c1 - g1).abs() > 1_200, "two devices, offsets apart: {c1} {g1}");
    let modbus = history(&app, "east-c1").await;
    assert_aligned("concentrator", &times(&modbus, "readings", "meter", "E1-0001"), c1);
    let gateway = history(&app, "east-g1").await;
    assert_aligned("gateway", &times(&gateway, "readings", "meter", "CJ-1"), g1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_dated_sample_is_stored_flagged_counted_and_not_shown() {
    let start = shanghai(10, 7, 13);
    // No simulator here: its station would push with the system's time.
    let station_only = r#"
[server]
listen = "127.0.0.1:0"

[hj212]
listen = "127.0.0.1:0"

[[region]]
id = "east"

[[region.station]]
id = "east-st1"
mn = "EAST0001"
password = "123456"
interval = "1h"
factors = [{ factor = "w01001" }]
"#;
    let app = start_server(station_only, start).await;
    let addr = app.hj212_addr.expect("listening");
    let mut stream = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let mut reply = String::new();
    for (qn, data_time, value) in [("1", "20261203100000", "7.10"), ("2", "20261203110000", "9.90")] {
        let mut packet = drivers::hj212::Packet::new("21", drivers::hj212::cn::REALTIME_DATA, "EAST0001");
        packet.qn = Some(format!("2026120310000000{qn}"));
        packet.pw = Some("123456".into());
        packet.flag = Some(5);
        packet.cp.data_time = Some(data_time.into());
        let value = drivers::hj212::FactorValue { code: "w01001".into(), field: "Rtd".into(), value: value.into() };
        packet.cp.values.push(value);
        stream.get_mut().write_all(&drivers::hj212::encode(&packet).unwrap()).await.unwrap();
        reply.clear();
        stream.read_line(&mut reply).await.expect("a reply after the commit");
        assert!(reply.contains("CN=9014"), "{reply}");
    }
    // 10:00 is plausible; 11:00 is 53 minutes ahead of the server's clock (tolerance 5 minutes).
    let h = history(&app, "east-st1").await;
    let flags: Vec<Value> = h["samples"].as_array().unwrap().iter().map(|s| s["flags"].clone()).collect();
    assert_eq!(flags, vec![serde_json::json!([]), serde_json::json!(["high", "time_future"])], "{h}");
    let view = app.handle.field().device("east-st1").await.expect("view");
    assert_eq!(view.values[0].value, Some(7.10), "the future-dated sample is not the current value");
    assert_eq!(app.handle.metrics().readings_time_future.load(std::sync::atomic::Ordering::Relaxed), 1);
    app.shutdown().await;
}
