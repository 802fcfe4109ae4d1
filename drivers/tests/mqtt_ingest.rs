//! The ingest client against a real Mosquitto broker: simulated meters publish, the ingest maps, the test's
//! committer stores and acknowledges; malformed payloads are counted, acknowledged and leave the rest alone.

mod mqtt_support;

use std::time::Duration;

use mqtt_support::{expected_keys, next, sim_spec, start_ingest, start_sim, until, Broker, Committer};
use sim::mqtt::{MqttSimSpec, SimLayout};
use waterworks_drivers::mqtt::MapError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_meters_are_received_committed_and_acknowledged() {
    let broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-e2e", 4, 5, Duration::from_millis(20));
    let (ingest, rx) = start_ingest(broker.port(), "ingest-e2e", &spec.layout).await;
    let mut committer = Committer::spawn(rx);
    let sim = start_sim(spec.clone());

    let expected = expected_keys(&spec);
    let store = committer.until_committed(&expected).await;
    assert_eq!(store.readings.keys().cloned().collect::<std::collections::BTreeSet<_>>(), expected);
    assert_eq!(store.refused, 0);

    // Volumes are cumulative: never falling from one round to the next, for each meter.
    for meter in &spec.meters {
        let volumes: Vec<f64> = store.readings.iter().filter(|((m, _), _)| m == meter).map(|(_, (v, _))| *v).collect();
        assert_eq!(volumes.len(), 5);
        assert!(volumes.windows(2).all(|w| w[0] <= w[1]), "{meter}: {volumes:?}");
        assert!(volumes[0] >= 1000.0, "{meter} starts at {}", volumes[0]);
    }
    // The fourth meter reports a low battery (the simulator's pattern), the others do not.
    assert!(store
        .readings
        .iter()
        .all(|((m, _), (_, status))| status.contains(&"battery_low".to_owned()) == (m == "M04")));

    // Every message was acknowledged, once the committer had stored it.
    let mut stats = ingest.subscribe_stats();
    let done = until(&mut stats, "every message is acknowledged", |s| s.acked >= 20).await;
    assert_eq!((done.received, done.malformed, done.acked), (20, 0, 20));
    assert!(*ingest.connected().borrow());
    let mut sim_stats = sim.subscribe();
    until(&mut sim_stats, "the broker confirmed every publish", |s| s.confirmed >= 20).await;
    assert_eq!(sim.published(), 20);

    sim.shutdown().await;
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concentrator_publishes_all_its_meters_in_one_message() {
    let broker = Broker::start().await;
    let layout = SimLayout::Concentrator { id: "C-7".into(), topic: "conc/C-7/up".into() };
    let mut spec = MqttSimSpec::new("127.0.0.1", broker.port(), "sim-conc", mqtt_support::meter_ids(12), layout);
    spec.rounds = Some(3);
    spec.interval = Duration::from_millis(20);
    let (ingest, rx) = start_ingest(broker.port(), "ingest-conc", &spec.layout).await;
    let mut committer = Committer::spawn(rx);
    let _sim = start_sim(spec.clone());

    let store = committer.until_committed(&expected_keys(&spec)).await;
    assert_eq!(store.readings.len(), 36);
    // Vendor status names are translated to the server's names.
    assert!(store.readings.iter().any(|(_, (_, status))| status == &vec!["battery_low".to_owned()]));
    let mut stats = ingest.subscribe_stats();
    let done = until(&mut stats, "the three messages are acknowledged", |s| s.acked >= 3).await;
    assert_eq!((done.received, done.acked), (3, 3));
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_counted_acknowledged_and_the_next_message_is_processed() {
    let broker = Broker::start().await;
    let mut spec = sim_spec(broker.port(), "sim-bad", 2, 2, Duration::from_millis(20));
    spec.start_paused = true;
    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-bad", &spec.layout).await;
    let sim = start_sim(spec.clone());
    // Three malformed messages (truncated JSON, a JSON array, a bare string), each before a good one.
    sim.inject_malformed(3);
    sim.resume();

    let mut reasons = Vec::new();
    let mut committed = std::collections::BTreeSet::new();
    for _ in 0..7 {
        let incoming = next(&mut rx).await;
        match incoming.readings {
            Ok(readings) => {
                committed.extend(readings.into_iter().map(|r| (r.meter, r.ts_ms.expect("a time"))));
                incoming.ack.ack();
            }
            Err(e) => {
                assert!(incoming.ack.is_pending());
                reasons.push(e);
                // Dropped without a word: a refused message is acknowledged anyway.
            }
        }
    }
    assert_eq!(committed, expected_keys(&spec));
    assert!(matches!(reasons[0], MapError::NotJson(_)), "{reasons:?}");
    assert_eq!(reasons[1].to_string(), "/volume_l: missing");
    assert_eq!(reasons[2].to_string(), "/volume_l: missing");

    let mut stats = ingest.subscribe_stats();
    let done = until(&mut stats, "all seven messages are acknowledged", |s| s.acked >= 7).await;
    assert_eq!((done.received, done.malformed, done.acked), (7, 3, 7));
    assert_eq!(ingest.malformed(), 3);
    assert_eq!(sim.stats().malformed, 3);
    ingest.shutdown().await;

    // The poison is gone from the broker: a new client on the same session gets only new messages.
    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-bad", &spec.layout).await;
    let mut marker = sim_spec(broker.port(), "sim-marker", 1, 1, Duration::from_millis(20));
    marker.start_ts_ms = 1;
    let _marker = start_sim(marker);
    let incoming = next(&mut rx).await;
    let readings = incoming.readings.expect("the marker maps");
    assert_eq!((readings[0].meter.as_str(), readings[0].ts_ms), ("M01", Some(1)));
    // Had the broker kept a refused message, it would have come before the marker.
    assert_eq!(ingest.received(), 1);
    ingest.shutdown().await;
}

#[tokio::test]
async fn start_refuses_bad_settings_before_connecting() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let settings = mqtt_support::ingest_settings(1883, "", "water/+/reading", mqtt_support::per_meter().mapping());
    let err = waterworks_drivers::mqtt::MqttIngest::start(settings, tx).expect_err("an empty client id is refused");
    assert!(err.to_string().contains("client_id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_pauses_and_resumes() {
    let broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-pause", 2, 20, Duration::from_millis(10));
    let (ingest, rx) = start_ingest(broker.port(), "ingest-pause", &spec.layout).await;
    let mut committer = Committer::spawn(rx);
    let sim = start_sim(spec.clone());
    let mut sim_stats = sim.subscribe();
    until(&mut sim_stats, "a few messages are out", |s| s.published >= 4).await;
    sim.pause();
    // The message being published when the pause came may still go out; then nothing for ten intervals. (Only
    // the absence of an event is checked here, so this one wait has to be a fixed time.)
    let at_pause = sim.published();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let paused = sim.stats();
    assert!(paused.paused);
    assert!(paused.published <= at_pause + 1, "published {} while paused", paused.published - at_pause);
    assert!(paused.rounds < 20);

    sim.resume();
    committer.until_committed(&expected_keys(&spec)).await;
    assert_eq!(sim.published(), 40);
    ingest.shutdown().await;
}
