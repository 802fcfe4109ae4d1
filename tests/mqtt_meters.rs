//! Meters that publish over MQTT, through a real Mosquitto broker into the whole server (issue 3 §2): every
//! reading is committed before it is acknowledged; a broker restart loses none and a redelivered one counts
//! once; a malformed payload is counted and changes nothing.

extern crate drivers as waterworks_drivers;

#[path = "../drivers/tests/mqtt_support/mod.rs"]
mod mqtt_support;
mod support;

use std::collections::BTreeSet;
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
