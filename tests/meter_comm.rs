//! Per-meter comm status through the whole server (issue 7 §4, R-A4): a CJ/T 188 meter that stops answering
//! behind a live gateway, and an MQTT meter that publishes nothing while its group does, go comm-lost on their
//! own (event, view, store) while the device stays healthy, and so does a Modbus concentrator's meter when the
//! concentrator's model has a "no data" marker (a model without one behaves as before); when the whole device goes silent, only the device
//! is reported, and its meters show that they are not being read. And the volume check: a reading that falls
//! or jumps is stored flagged for review, counted, and becomes the next reading's baseline.

extern crate drivers as waterworks_drivers;

#[path = "../drivers/tests/mqtt_support/mod.rs"]
mod mqtt_support;
mod support;

use std::time::Duration;

use actors::model::DeviceId;
use actors::store::Store;
use drivers::cjt188::Address;
use serde_json::Value;
use sim::cjt188::Cjt188Fault;
use sim::modbus::ModbusFault;
use sim::mqtt::MqttSimSpec;
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
timeout = "150ms"
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

fn address(n: u8) -> Address {
    format!("{n:014}").parse().expect("a meter address")
}

/// The live events of `device` among `messages`, as `(kind, message)`.
fn events_of(messages: &[Value], device: &str) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m["type"] == "event" && m["event"]["device"] == device)
        .map(|m| {
            (
                m["event"]["kind"].as_str().unwrap_or("").to_owned(),
                m["event"]["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Reads live messages until one satisfies `pred`, returning every message read.
async fn collect_until(ws: &mut WsClient, within: Duration, mut pred: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    tokio::time::timeout(within, async {
        loop {
            let m = ws.next().await;
            let done = pred(&m);
            seen.push(m);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the awaited live message did not arrive; saw {seen:?}"));
    seen
}

fn is_event(m: &Value, kind: &str, device: &str) -> bool {
    m["type"] == "event" && m["event"]["kind"] == kind && m["event"]["device"] == device
}

/// A delta of `device` whose view satisfies `pred`.
fn is_delta(m: &Value, device: &str, pred: impl Fn(&Value) -> bool) -> bool {
    m["type"] == "delta" && m["device"]["id"] == device && pred(&m["device"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_cjt188_meter_goes_comm_lost_alone_and_is_saved() {
    let server = start(&village_with_gateway()).await;
    let cookie = server.admin().await;
    eventually(Duration::from_secs(10), "all three meters read", || async {
        let v = device(&server, &cookie, "east-g1").await;
        v["meters"].as_array()?.iter().all(|m| m["volume_m3"].is_string() && m["missed_cycles"] == 0).then_some(())
    })
    .await;
    let mut ws = server.ws(&cookie, "").await;

    gateway(&server).set_fault(&address(2), Cjt188Fault { silent: true, ..Cjt188Fault::default() }).unwrap();
    let seen = collect_until(&mut ws, Duration::from_secs(10), |m| is_event(m, "meter_comm_lost", "east-g1")).await;
    let lost = seen.last().unwrap();
    assert!(lost["event"]["message"].as_str().unwrap().contains("CJ-2"), "{lost}");
    // The gateway is declared after the village's last region, "west".
    assert_eq!(lost["event"]["region"], "west");
    let view = device(&server, &cookie, "east-g1").await;
    assert_eq!(view["comm"]["comm_lost"], false, "the gateway itself is healthy: {view}");
    let meters = view["meters"].as_array().unwrap();
    assert_eq!(meters.iter().map(|m| m["comm_lost"] == true).collect::<Vec<_>>(), vec![false, true, false], "{view}");
    assert!(meters[1]["missed_cycles"].as_u64().unwrap() >= 2, "{view}");
    assert!(meters[1]["last_success"].as_i64().is_some(), "{view}");
    assert_eq!(meters[0]["missed_cycles"], 0, "{view}");

    // A third miss raises nothing new; CJ-2 answering again restores it, once.
    let seen = collect_until(&mut ws, Duration::from_secs(10), |m| {
        is_delta(m, "east-g1", |d| d["meters"][1]["missed_cycles"].as_u64().unwrap_or(0) >= 3)
    })
    .await;
    assert_eq!(events_of(&seen, "east-g1"), Vec::new());
    gateway(&server).set_fault(&address(2), Cjt188Fault::default()).unwrap();
    let seen = collect_until(&mut ws, Duration::from_secs(10), |m| is_event(m, "meter_comm_restored", "east-g1")).await;
    assert_eq!(events_of(&seen, "east-g1").len(), 1, "{seen:?}");
    let view = device(&server, &cookie, "east-g1").await;
    assert_eq!(
        (view["meters"][1]["comm_lost"].as_bool(), view["meters"][1]["missed_cycles"].as_u64()),
        (Some(false), Some(0))
    );

    // Lost again, then the server stops: the store holds CJ-2's status for the next start.
    gateway(&server).set_fault(&address(2), Cjt188Fault { silent: true, ..Cjt188Fault::default() }).unwrap();
    collect_until(&mut ws, Duration::from_secs(10), |m| is_event(m, "meter_comm_lost", "east-g1")).await;
    ws.close().await;
    let dir = server.dir.clone();
    server.app.shutdown().await;
    // Tasks of the stopped server (the event pump) may let go of the database a moment after shutdown returns.
    let store =
        eventually(Duration::from_secs(10), "the store released after shutdown", || async { Store::open(&dir).ok() })
            .await;
    let saved = store.meter_comm(&DeviceId::new("east-g1")).unwrap();
    assert_eq!(saved.len(), 1, "only the meter that is not clean is saved: {saved:?}");
    assert_eq!(saved[0].0.as_str(), "CJ-2");
    assert!(saved[0].1.comm_lost && saved[0].1.consecutive_misses >= 2, "{saved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_is_one_device_event_and_no_meter_events() {
    let server = start(&village_with_gateway()).await;
    let cookie = server.admin().await;
    eventually(Duration::from_secs(10), "all three meters read", || async {
        let v = device(&server, &cookie, "east-g1").await;
        v["meters"].as_array()?.iter().all(|m| m["volume_m3"].is_string()).then_some(())
    })
    .await;
    let mut ws = server.ws(&cookie, "").await;
    for n in 1..=3 {
        gateway(&server).set_fault(&address(n), Cjt188Fault { silent: true, ..Cjt188Fault::default() }).unwrap();
    }
    let mut seen = collect_until(&mut ws, Duration::from_secs(15), |m| is_event(m, "comm_lost", "east-g1")).await;
    // Two more silent cycles: still no event per meter.
    seen.extend(
        collect_until(&mut ws, Duration::from_secs(15), |m| {
            is_delta(m, "east-g1", |d| {
                d["meters"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().all(|x| x["missed_cycles"].as_u64().unwrap_or(0) >= 4))
            })
        })
        .await,
    );
    let kinds: Vec<String> = events_of(&seen, "east-g1").into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["comm_lost".to_owned()], "one device event, none per meter");
    let view = device(&server, &cookie, "east-g1").await;
    assert_eq!(view["comm"]["comm_lost"], true);
    for m in view["meters"].as_array().unwrap() {
        assert_eq!(m["comm_lost"], false, "not reported lost on its own: {m}");
        assert!(m["missed_cycles"].as_u64().unwrap() >= 4, "shown as not being read: {m}");
    }

    // The gateway answers again: the device is restored, and no meter has anything to restore.
    for n in 1..=3 {
        gateway(&server).set_fault(&address(n), Cjt188Fault::default()).unwrap();
    }
    // Events are committed before they are delivered, so the restore event may come after the view; it comes
    // after every earlier event, so once it is here nothing raised before it is still on its way.
    let (mut read_again, mut restored) = (false, false);
    let later = collect_until(&mut ws, Duration::from_secs(15), |m| {
        read_again |= is_delta(m, "east-g1", |d| {
            d["meters"].as_array().is_some_and(|ms| ms.iter().all(|x| x["missed_cycles"] == 0))
        });
        restored |= is_event(m, "comm_restored", "east-g1");
        read_again && restored
    })
    .await;
    seen.extend(later);
    let kinds: Vec<String> = events_of(&seen, "east-g1").into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["comm_lost".to_owned(), "comm_restored".to_owned()], "no meter events");
    server.app.shutdown().await;
}

fn village_with_mqtt(port: u16) -> String {
    format!(
        r#"{VILLAGE}
[mqtt]
host = "127.0.0.1"
port = {port}
client_id = "waterworks-meter-comm"
max_backoff = "1s"

[[mqtt.topics]]
filter = "water/+/reading"
meter_topic_level = 1
volume = "/volume_l"
scale = 0.001
time = "/ts"
time_format = "epoch_ms"

[[region.mqtt]]
id = "west-nb"
name = "西村NB-IoT表"
interval = "400ms"
meters = ["M01", "M02", "M03", "M04", "M05"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_mqtt_meter_goes_comm_lost_while_its_group_stays_healthy() {
    let broker = mqtt_support::Broker::start().await;
    let server = start(&village_with_mqtt(broker.port())).await;
    let cookie = server.admin().await;
    let mut ws = server.ws(&cookie, "").await;
    // M05 is configured but never publishes.
    let mut spec = MqttSimSpec::new(
        "127.0.0.1",
        broker.port(),
        "meter-comm-sim",
        mqtt_support::meter_ids(4),
        mqtt_support::per_meter(),
    );
    spec.interval = Duration::from_millis(100);
    spec.initial_backoff = Duration::from_millis(50);
    spec.max_backoff = Duration::from_secs(1);
    let sim = mqtt_support::start_sim(spec);

    let seen = collect_until(&mut ws, Duration::from_secs(20), |m| is_event(m, "meter_comm_lost", "west-nb")).await;
    // Only meter events count here: the group may have gone comm-lost and back before the simulator connected.
    let events: Vec<_> = events_of(&seen, "west-nb").into_iter().filter(|(k, _)| k.starts_with("meter_")).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].1.contains("M05"), "{events:?}");
    let view = device(&server, &cookie, "west-nb").await;
    assert_eq!(view["comm"]["comm_lost"], false, "the group is healthy: {view}");
    let lost: Vec<bool> = view["meters"].as_array().unwrap().iter().map(|m| m["comm_lost"] == true).collect();
    assert_eq!(lost, vec![false, false, false, false, true], "{view}");
    assert_eq!(view["meters"][4]["last_success"], Value::Null, "M05 never published: {view}");

    // The whole group goes silent: one group event, none per meter.
    sim.pause();
    let mut seen = collect_until(&mut ws, Duration::from_secs(20), |m| is_event(m, "comm_lost", "west-nb")).await;
    seen.extend(
        collect_until(&mut ws, Duration::from_secs(20), |m| {
            is_delta(m, "west-nb", |d| d["meters"][0]["missed_cycles"].as_u64().unwrap_or(0) >= 4)
        })
        .await,
    );
    let kinds: Vec<String> = events_of(&seen, "west-nb").into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec!["comm_lost".to_owned()], "one group event, none per meter");
    let view = device(&server, &cookie, "west-nb").await;
    let lost: Vec<bool> = view["meters"].as_array().unwrap().iter().map(|m| m["comm_lost"] == true).collect();
    assert_eq!(lost, vec![false, false, false, false, true], "M01–M04 are not reported on their own: {view}");
    sim.shutdown().await;
    server.app.shutdown().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// A meter group's readings, then a second simulator with other meters under the same ids (its volumes start
/// elsewhere): their first readings fall or jump, and are stored flagged and counted; the next ones are normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_that_fall_or_jump_are_stored_flagged_for_review() {
    let broker = mqtt_support::Broker::start().await;
    let server = start(&village_with_mqtt(broker.port())).await;
    let cookie = server.admin().await;
    let stored = || async {
        let r = server.get("/api/readings?device=west-nb&from=0&limit=1000", &cookie).await;
        r.json()["readings"].as_array().cloned().unwrap_or_default()
    };
    let sim_spec = |client: &str, seed: u64, start_ts_ms: i64| {
        let mut spec =
            MqttSimSpec::new("127.0.0.1", broker.port(), client, mqtt_support::meter_ids(5), mqtt_support::per_meter());
        spec.interval = Duration::from_millis(50);
        spec.rounds = Some(3);
        spec.seed = seed;
        spec.start_ts_ms = start_ts_ms;
        spec
    };
    let first = sim_spec("volume-sim-1", 1, 1_709_251_200_000);
    let later = first.ts_of_round(10);
    let sim = mqtt_support::start_sim(first);
    eventually(Duration::from_secs(20), "the first simulator's readings", || async {
        (stored().await.len() == 15).then_some(())
    })
    .await;
    sim.shutdown().await;
    let all = stored().await;
    assert!(all.iter().all(|r| r["status"].as_array().unwrap().iter().all(|s| s != "needs_review")), "{all:?}");

    let sim = mqtt_support::start_sim(sim_spec("volume-sim-2", 2, later));
    let all = eventually(Duration::from_secs(20), "the second simulator's readings", || async {
        let all = stored().await;
        (all.len() == 30).then_some(all)
    })
    .await;
    sim.shutdown().await;
    let status_at = |ts: i64| -> Vec<Vec<String>> {
        let mut rows: Vec<&Value> = all.iter().filter(|r| r["ts"] == ts).collect();
        rows.sort_by_key(|r| r["meter"].as_str().unwrap_or("").to_owned());
        rows.iter()
            .map(|r| r["status"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .collect()
    };
    let spec2 = sim_spec("x", 2, later);
    let flagged = status_at(spec2.ts_of_round(0));
    assert_eq!(flagged.len(), 5);
    for s in &flagged {
        assert!(s.contains(&"needs_review".to_owned()), "{flagged:?}");
        assert!(s.contains(&"volume_fell".to_owned()) || s.contains(&"suspected_swap".to_owned()), "{flagged:?}");
    }
    // The flagged readings are the baseline of the next ones: a few litres later is normal again.
    for s in status_at(spec2.ts_of_round(1)) {
        assert!(!s.contains(&"needs_review".to_owned()), "{s:?}");
    }
    let m = server.get("/metrics", &cookie).await.body;
    let counted = metric(&m, "waterworks_volume_falls_total")
        + metric(&m, "waterworks_volume_suspected_swaps_total")
        + metric(&m, "waterworks_volume_rollovers_total");
    assert_eq!(counted, 5, "{m}");
    let view = device(&server, &cookie, "west-nb").await;
    assert!(
        view["meters"].as_array().unwrap().iter().all(|m| m["status"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s != "needs_review")),
        "the latest readings are normal: {view}"
    );
    server.app.shutdown().await;
}

/// The village with two Modbus concentrators whose models (from `server.devices_dir`) mark a slot they have
/// no reading for: `east-nd` by the volume pattern 0xFFFFFFFF, `east-nb` by status bit 15 only.
fn village_with_no_data_models() -> (String, std::path::PathBuf) {
    let dir = temp_dir("no-data-models");
    let model = |name: &str, marker: &str| {
        format!(
            "model = \"{name}\"\nkind = \"concentrator\"\n[meters]\nfunction = 3\nbase = 0\nstride = 4\n\
             volume = {{ offset = 0, type = \"u32\", order = \"ABCD\", scale = 0.001 }}\n\
             status = {{ offset = 2, type = \"u16\" }}\n{marker}\n[meters.status_bits]\nbattery_low = 1\n"
        )
    };
    std::fs::write(dir.join("nd.toml"), model("acme-nd", "no_data = 0xFFFFFFFF")).unwrap();
    std::fs::write(dir.join("nb.toml"), model("acme-nb", "no_data_bit = 15")).unwrap();
    let text = VILLAGE.replacen("[server]\n", &format!("[server]\ndevices_dir = \"{}\"\n", dir.display()), 1)
        + r#"
[[region.concentrator]]
id = "east-nd"
address = "127.0.0.1:0"
model = "acme-nd"
cycle = "300ms"
meters = { prefix = "ND-", first = 1, count = 4 }

[[region.concentrator]]
id = "east-nb"
address = "127.0.0.1:0"
model = "acme-nb"
cycle = "300ms"
meters = { prefix = "NB-", first = 1, count = 4 }
"#;
    (text, dir)
}

/// Issue 7 §4: a meter that stops answering behind a live Modbus concentrator goes comm-lost on its own when
/// the model can say "no data", through the real Modbus TCP simulator, and comes back; a concentrator whose
/// model cannot say it (`hx-c200`) keeps taking the slot as a reading, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_meter_behind_a_live_modbus_concentrator_goes_comm_lost_when_its_model_says_no_data() {
    let (text, _dir) = village_with_no_data_models();
    let server = start(&text).await;
    let cookie = server.admin().await;
    for id in ["east-nd", "east-nb", "east-c2"] {
        eventually(Duration::from_secs(10), "every meter read", || async {
            let v = device(&server, &cookie, id).await;
            v["meters"].as_array()?.iter().all(|m| m["volume_m3"].is_string() && m["missed_cycles"] == 0).then_some(())
        })
        .await;
    }
    let mut ws = server.ws(&cookie, "").await;
    let silence = |slots: Vec<u16>| ModbusFault { silent_meters: slots, ..ModbusFault::default() };
    server.sim().set_fault("east-nd", silence(vec![2])).unwrap();
    server.sim().set_fault("east-nb", silence(vec![0])).unwrap();
    server.sim().set_fault("east-c2", silence(vec![1])).unwrap();

    let (mut nd, mut nb) = (false, false);
    let seen = collect_until(&mut ws, Duration::from_secs(15), |m| {
        nd |= is_event(m, "meter_comm_lost", "east-nd");
        nb |= is_event(m, "meter_comm_lost", "east-nb");
        nd && nb
    })
    .await;
    let events = |device: &str| events_of(&seen, device);
    assert_eq!(events("east-nd").len(), 1, "{seen:?}");
    assert!(events("east-nd")[0].1.contains("ND-0003"), "{seen:?}");
    assert!(events("east-nb")[0].1.contains("NB-0001"), "{seen:?}");
    for (id, lost) in [("east-nd", [false, false, true, false]), ("east-nb", [true, false, false, false])] {
        let view = device(&server, &cookie, id).await;
        assert_eq!(view["comm"]["comm_lost"], false, "the concentrator itself is healthy: {view}");
        let meters = view["meters"].as_array().unwrap();
        assert_eq!(meters.iter().map(|m| m["comm_lost"] == true).collect::<Vec<_>>(), lost, "{view}");
        // The concentrator's progress shows the meter it could not deliver.
        assert_eq!((view["comm"]["cycle_read"].as_u64(), view["comm"]["cycle_expected"].as_u64()), (Some(3), Some(4)));
    }
    let metrics = server.get("/metrics", &cookie).await.body;
    assert_eq!(metric(&metrics, "waterworks_bad_values_total"), 0, "no data is not a bad value: {metrics}");

    // The model without a marker: no meter event, the slot still counts as read (its frozen volume).
    assert_eq!(events("east-c2"), Vec::new());
    let view = device(&server, &cookie, "east-c2").await;
    assert!(view["meters"].as_array().unwrap().iter().all(|m| m["comm_lost"] == false && m["missed_cycles"] == 0));
    assert_eq!(view["comm"]["comm_lost"], false, "{view}");

    // The meters answer again: each is restored, once.
    for id in ["east-nd", "east-nb"] {
        server.sim().set_fault(id, ModbusFault::default()).unwrap();
    }
    let (mut nd, mut nb) = (false, false);
    let seen = collect_until(&mut ws, Duration::from_secs(15), |m| {
        nd |= is_event(m, "meter_comm_restored", "east-nd");
        nb |= is_event(m, "meter_comm_restored", "east-nb");
        nd && nb
    })
    .await;
    assert_eq!(events_of(&seen, "east-nd").len(), 1, "{seen:?}");
    for id in ["east-nd", "east-nb"] {
        let view = device(&server, &cookie, id).await;
        assert!(view["meters"].as_array().unwrap().iter().all(|m| m["comm_lost"] == false), "{view}");
    }
    server.app.shutdown().await;
}
