//! The ingest client across broker failures, against a real Mosquitto with persistence: a restart loses no
//! acknowledged reading, a message delivered but not acknowledged comes again and is committed once, a broker
//! that lost the session gets the subscriptions again, and reconnect attempts back off up to a cap.

mod mqtt_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mqtt_support::{
    expected_keys, free_port, ingest_settings, next, per_meter, sim_spec, start_ingest, start_sim, until, Broker,
    Committer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_reading_is_lost_across_a_broker_restart() {
    let mut broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-restart", 5, 60, Duration::from_millis(10));
    let (ingest, rx) = start_ingest(broker.port(), "ingest-restart", &spec.layout).await;
    let mut committer = Committer::spawn(rx);
    let sim = start_sim(spec.clone());
    let mut connected = ingest.connected();

    // Stop the broker in the middle of the stream: some readings committed, more in flight and unpublished.
    until(&mut committer.store, "a first part is committed", |s| s.readings.len() >= 60).await;
    broker.stop().await;
    until(&mut connected, "the ingest notices the broker is gone", |c| !*c).await;
    let during_outage = committer.store.borrow().readings.len();
    assert!(during_outage < 300, "the simulator finished before the broker stopped");
    broker.restart().await;
    until(&mut connected, "the ingest is back", |c| *c).await;

    let expected = expected_keys(&spec);
    let store = committer.until_committed(&expected).await;
    assert_eq!(store.readings.keys().cloned().collect::<BTreeSet<_>>(), expected, "a reading is missing");
    // Duplicates may come (QoS 1 is at least once); each key is stored once whatever the count.
    assert_eq!(store.readings.len(), 300);
    let stats = ingest.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.sessions_lost, 0, "the broker kept the session: {stats:?}");
    assert_eq!(stats.subscriptions, 1, "a kept session needs no new subscription: {stats:?}");
    assert!(stats.received >= 300, "{stats:?}");
    // The simulator lived through the outage too, and the broker confirmed every publish in the end.
    let mut sim_stats = sim.subscribe();
    let sim_done = until(&mut sim_stats, "every publish is confirmed", |s| s.confirmed >= 300).await;
    assert!(sim_done.connection_errors >= 1, "{sim_done:?}");
    sim.shutdown().await;
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_acknowledged_before_the_broker_dies_is_redelivered_and_committed_once() {
    let mut broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-redeliver", 1, 1, Duration::from_millis(10));
    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-redeliver", &spec.layout).await;
    let sim = start_sim(spec.clone());
    let mut sim_stats = sim.subscribe();
    until(&mut sim_stats, "the broker has the reading", |s| s.confirmed >= 1).await;

    // The store commits the reading, but the broker dies before the acknowledgement goes out.
    let mut committed = BTreeSet::new();
    let first = next(&mut rx).await;
    let reading = first.readings.as_ref().expect("the reading maps")[0].clone();
    assert!(committed.insert((reading.meter.clone(), reading.ts_ms.expect("a time"))));
    assert!(!first.duplicate);
    assert_eq!(ingest.acked(), 0);
    let mut connected = ingest.connected();
    broker.stop().await;
    until(&mut connected, "the ingest notices the broker is gone", |c| !*c).await;
    broker.restart().await;

    // The broker delivers it again on the resumed session; the store already has it.
    let second = next(&mut rx).await;
    let again = second.readings.as_ref().expect("the reading maps")[0].clone();
    assert_eq!(again, reading);
    assert!(second.duplicate, "Mosquitto marks a redelivery with DUP");
    assert!(!committed.insert((again.meter.clone(), again.ts_ms.expect("a time"))), "committed once");
    second.ack.ack();
    // The late acknowledgement of the first copy belongs to the dead connection and is not sent.
    first.ack.ack();

    let mut stats = ingest.subscribe_stats();
    let done = until(&mut stats, "the redelivered copy is acknowledged", |s| s.acked >= 1 && s.stale_acks >= 1).await;
    assert_eq!((done.received, done.redelivered, done.acked, done.stale_acks), (2, 1, 1, 1), "{done:?}");
    assert_eq!(done.sessions_lost, 0);
    assert_eq!(committed.len(), 1);
    ingest.shutdown().await;

    // The acknowledgement took: a new client on the same session gets a new reading first, not the old one.
    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-redeliver", &spec.layout).await;
    let mut marker = sim_spec(broker.port(), "sim-marker", 1, 1, Duration::from_millis(10));
    marker.start_ts_ms = 1;
    let _marker = start_sim(marker);
    let incoming = next(&mut rx).await;
    assert_eq!(incoming.readings.expect("the marker maps")[0].ts_ms, Some(1));
    assert_eq!(ingest.received(), 1);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_without_acknowledging_gets_the_message_again() {
    let broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-crash", 2, 1, Duration::from_millis(10));
    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-crash", &spec.layout).await;
    let _sim = start_sim(spec.clone());
    let first = next(&mut rx).await;
    let second = next(&mut rx).await;
    // The first is committed and acknowledged; the server stops before it can commit the second.
    first.ack.ack();
    let mut stats = ingest.subscribe_stats();
    until(&mut stats, "the first is acknowledged", |s| s.acked >= 1).await;
    drop(second);
    ingest.shutdown().await;

    let (ingest, mut rx) = start_ingest(broker.port(), "ingest-crash", &spec.layout).await;
    let again = next(&mut rx).await;
    assert_eq!(again.readings.expect("maps")[0].meter, "M02");
    assert_eq!(ingest.received(), 1);
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_made_again_when_the_broker_lost_the_session() {
    let mut broker = Broker::start().await;
    let spec = sim_spec(broker.port(), "sim-lost", 1, 1, Duration::from_millis(10));
    let (ingest, rx) = start_ingest(broker.port(), "ingest-lost", &spec.layout).await;
    let mut committer = Committer::spawn(rx);
    let mut connected = ingest.connected();
    broker.stop().await;
    until(&mut connected, "the ingest notices the broker is gone", |c| !*c).await;
    broker.forget_sessions();
    broker.restart().await;

    let mut stats = ingest.subscribe_stats();
    let after = until(&mut stats, "subscribed again", |s| s.subscriptions >= 2).await;
    assert_eq!((after.reconnects, after.sessions_lost), (1, 1), "{after:?}");
    let _sim = start_sim(spec.clone());
    committer.until_committed(&expected_keys(&spec)).await;
    ingest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_backoff_is_capped_and_the_client_recovers_when_the_broker_comes_back() {
    // Nothing listens on this port yet: every attempt is refused at once.
    let port = free_port();
    let mut settings = ingest_settings(port, "ingest-backoff", &per_meter().filter(), per_meter().mapping());
    settings.initial_backoff = Duration::from_millis(50);
    settings.max_backoff = Duration::from_millis(400);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let started = Instant::now();
    let ingest = waterworks_drivers::mqtt::MqttIngest::start(settings, tx).expect("valid settings");
    let mut stats = ingest.subscribe_stats();

    // Seven failures take at least the six delays slept between them: 50 + 100 + 200 + 400 + 400 + 400 ms. A
    // client without backoff would fail thousands of times in that time.
    let seventh = until(&mut stats, "seven failed attempts", |s| s.connection_errors >= 7).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1550), "seven attempts in {elapsed:?}");
    assert_eq!(seventh.last_backoff, Some(Duration::from_millis(400)), "{seventh:?}");
    assert!(seventh.last_error.as_deref().is_some_and(|e| e.contains("refused")), "{seventh:?}");
    assert!(!*ingest.connected().borrow());

    // Capped: three more attempts come about 400 ms apart, not 800, 1600, 3200 ms.
    let at_seventh = Instant::now();
    let tenth = until(&mut stats, "ten failed attempts", |s| s.connection_errors >= 10).await;
    assert!(at_seventh.elapsed() < Duration::from_millis(2500), "three attempts took {:?}", at_seventh.elapsed());
    assert_eq!(tenth.last_backoff, Some(Duration::from_millis(400)));

    // The broker appears: the client connects within one capped delay (plus slack) and receives readings.
    let broker = Broker::start_on(port).await.expect("a broker on the reserved port");
    let broker_up = Instant::now();
    let mut connected = ingest.connected();
    until(&mut connected, "connected to the new broker", |c| *c).await;
    assert!(broker_up.elapsed() < Duration::from_millis(400 + 1500), "reconnected after {:?}", broker_up.elapsed());
    until(&mut stats, "subscribed", |s| s.subscriptions >= 1).await;
    let mut committer = Committer::spawn(rx);
    let spec = sim_spec(broker.port(), "sim-backoff", 2, 2, Duration::from_millis(10));
    let _sim = start_sim(spec.clone());
    committer.until_committed(&expected_keys(&spec)).await;
    assert_eq!(ingest.stats().connects, 1);
    ingest.shutdown().await;
}
