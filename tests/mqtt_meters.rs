//! Meters that publish over MQTT, through a real Mosquitto broker into the whole server (issue 3 §2): every
//! reading is committed before it is acknowledged; a broker restart loses none and a redelivered one counts
//! once; a malformed payload is counted and changes nothing; a status that does not decode (a mapping mistake)
//! keeps the reading, volume included, flagged `status_unreadable` and counted (issue 7 §6).

extern crate drivers as waterworks_drivers;

#[path = "../drivers/tests/mqtt_support/mod.rs"]
mod mqtt_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mqtt_support::{expected_keys, sim_spec, start_sim, Broker};
use support::*;

fn village_with_mqtt(port: u16) -> String {
    format!(
        r#"{VILLAGE}
[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "waterworks-test"
max_backoff = "1s"

[[mqtt.topics]]
filter = "water/+/reading"
meter_topic_level = 1
volume = "/volume_l"
scale = 0.001
time = "/ts"
time_format = "epoch_ms"
[mqtt.topics.status]
path = "/status"
bits = {{ valve_closed = 0, battery_low = 1, magnetic_tamper = 2, reverse_flow = 3, meter_fault = 4 }}

[[region.mqtt]]
id = "west-nb"
name = "西村NB-IoT表"
interval = "2s"
meters = ["M01", "M02", "M03", "M04", "M05"]
"#
    )
}

/// Every (meter, time, volume) the server has stored for the group's meters.
async fn stored(server: &TestServer, cookie: &str) -> Vec<(String, i64, String)> {
    let r = server.get("/api/readings?device=west-nb&from=0&limit=10000", cookie).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["meter"].as_str().unwrap().to_owned(),
                x["ts"].as_i64().unwrap(),
                x["volume_m3"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_flow_and_a_broker_restart_loses_none_and_counts_each_once() {
    let mut broker = Broker::start().await;
    let server = start(&village_with_mqtt(broker.port())).await;
    let cookie = server.admin().await;
    let spec = sim_spec(broker.port(), "meters-sim", 5, 60, Duration::from_millis(25));
    let expected = expected_keys(&spec);
    let sim = start_sim(spec);
    // Three malformed payloads go out among the good ones.
    sim.inject_malformed(3);

    // Part of the stream has been committed: restart the broker in the middle of it.
    eventually(Duration::from_secs(20), "some readings committed", || async {
        (stored(&server, &cookie).await.len() >= 50).then_some(())
    })
    .await;
    broker.stop().await;
    broker.restart().await;

    let all = eventually(Duration::from_secs(30), "every published reading committed", || async {
        let s = stored(&server, &cookie).await;
        let keys: BTreeSet<(String, i64)> = s.iter().map(|(m, t, _)| (m.clone(), *t)).collect();
        (keys == expected).then_some(s)
    })
    .await;
    // Each (meter, time) once: a redelivered message overwrote its own key.
    assert_eq!(all.len(), expected.len(), "duplicates in the store");
    let view = device(&server, &cookie, "west-nb").await;
    assert_eq!(view["comm"]["path"], "mqtt");
    assert!(view["meters"].as_array().unwrap().iter().all(|m| m["volume_m3"].is_string()), "{view}");

    // The malformed payloads were counted and stored nothing (the store holds exactly the good readings).
    let m = server.get("/metrics", &cookie).await.body;
    let bad: u64 = m
        .lines()
        .find(|l| l.starts_with("waterworks_bad_requests_total "))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(bad >= 3, "{m}");
    sim.shutdown().await;
    server.app.shutdown().await;
}

/// The group's stored readings by (meter, time): (volume, status names).
async fn stored_with_status(server: &TestServer, cookie: &str) -> BTreeMap<(String, i64), (String, Vec<String>)> {
    let r = server.get("/api/readings?device=west-nb&from=0&limit=10000", cookie).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let status = x["status"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
            (
                (x["meter"].as_str().unwrap().to_owned(), x["ts"].as_i64().unwrap()),
                (x["volume_m3"].as_str().unwrap().to_owned(), status),
            )
        })
        .collect()
}

/// The value of a counter in the `/metrics` text.
fn counter(metrics: &str, name: &str) -> u64 {
    let line = metrics.lines().find(|l| l.split(' ').next() == Some(name));
    line.and_then(|l| l.split(' ').nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_does_not_decode_keeps_the_volume_flagged_and_counted() {
    let broker = Broker::start().await;
    // A mapping mistake: the valve's enumerated field is pointed at the meter id, whose values ("M01") it does
    // not list. The old `[mqtt.topics.status]` bits still decode.
    let config = village_with_mqtt(broker.port()).replace(
        "\n[[region.mqtt]]",
        "[[mqtt.topics.flags]]\npath = \"/meter\"\nvalues = { \"0\" = \"\", \"1\" = \"valve_closed\", \"2\" = \"valve_fault\" }\n\n[[region.mqtt]]",
    );
    assert!(config.contains("[[mqtt.topics.flags]]"), "{config}");
    let server = start(&config).await;
    let cookie = server.admin().await;
    let spec = sim_spec(broker.port(), "meters-sim-status", 5, 4, Duration::from_millis(25));
    let expected = expected_keys(&spec);
    let sim = start_sim(spec);

    let all = eventually(Duration::from_secs(20), "every published reading committed", || async {
        let s = stored_with_status(&server, &cookie).await;
        (s.keys().cloned().collect::<BTreeSet<_>>() == expected).then_some(s)
    })
    .await;
    // Each reading kept its volume (the simulator's meters start above 1000 m3) and says its status is
    // incomplete; the flags that did decode are there too, and never the server's other flag.
    for ((meter, ts), (volume, status)) in &all {
        let m3: f64 = volume.parse().unwrap_or_else(|e| panic!("{meter} {ts}: volume {volume:?}: {e}"));
        assert!(m3 >= 1000.0, "{meter} {ts}: {volume}");
        assert!(status.iter().any(|s| s == "status_unreadable"), "{meter} {ts}: {status:?}");
        assert!(!status.iter().any(|s| s == "time_from_arrival"), "{meter} {ts}: {status:?}");
    }
    // Counted once per stored reading, and not as a malformed message.
    let m = server.get("/metrics", &cookie).await.body;
    assert_eq!(counter(&m, "waterworks_status_unreadable_total"), expected.len() as u64, "{m}");
    assert_eq!(counter(&m, "waterworks_bad_requests_total"), 0, "{m}");
    // The device view shows the flag on the meters too.
    let view = device(&server, &cookie, "west-nb").await;
    let meters = view["meters"].as_array().unwrap();
    assert!(
        meters.iter().all(|m| m["status"].as_array().is_some_and(|s| s.iter().any(|n| n == "status_unreadable"))),
        "{view}"
    );
    sim.shutdown().await;
    server.app.shutdown().await;
}
