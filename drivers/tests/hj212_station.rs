//! The simulated HJ 212 station: faults set at runtime (junk, bad CRC, silence, forced values) as the listener
//! sees them, reconnection after the centre drops it, determinism, and the checks on its spec.

mod hj212_support;

use std::collections::BTreeMap;
use std::time::Duration;

use hj212_support::{any_port, start_listener, until, LIMIT};
use sim::hj212::{Hj212Fault, Hj212Sim, Hj212SimSpec};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use waterworks_drivers::hj212::{decode, factor, Hj212Error, Hj212Listener, ListenerConfig, Packet};

fn fast_spec(listener: &Hj212Listener, mn: &str) -> Hj212SimSpec {
    let mut spec = Hj212SimSpec::new(listener.local_addr(), mn);
    spec.interval = Duration::from_millis(10);
    spec
}

/// Commits every delivered packet and passes it on, so that a station keeps going while a test watches.
fn commit_all(mut rx: mpsc::Receiver<waterworks_drivers::hj212::Received>) -> mpsc::Receiver<Packet> {
    let (tx, out) = mpsc::channel(10_000);
    tokio::spawn(async move {
        while let Some(received) = rx.recv().await {
            received.ack.commit();
            if tx.send(received.packet).await.is_err() {
                return;
            }
        }
    });
    out
}

#[tokio::test]
async fn junk_and_bad_crc_faults_are_rejected_and_clearing_them_resumes_on_the_same_connection() {
    let (listener, rx) = start_listener(ListenerConfig::new(any_port()), 64).await;
    let _packets = commit_all(rx);
    let mut listener_stats = listener.subscribe();
    let station = Hj212Sim::start(fast_spec(&listener, "ST-0001")).await.expect("starts");
    let mut stats = station.subscribe();
    until(&mut stats, "a first reply", |s| s.acked >= 1).await;

    for (fault, what) in [
        (Hj212Fault { garbage: true, ..Hj212Fault::default() }, "junk"),
        (Hj212Fault { bad_crc: true, ..Hj212Fault::default() }, "bad crc"),
    ] {
        let rejected_before = listener.rejected();
        let faulty_before = station.stats().faulty;
        station.set_fault(fault).expect("valid fault");
        let seen = until(&mut listener_stats, what, |s| s.rejected >= rejected_before + 2).await;
        let last = seen.recent_rejections.back().map(|r| r.error.clone());
        match what {
            "junk" => assert_eq!(last, Some(Hj212Error::BadHeader)),
            _ => assert!(matches!(last, Some(Hj212Error::CrcMismatch { .. })), "{last:?}"),
        }
        until(&mut stats, "faulty frames are counted", |s| s.faulty >= faulty_before + 2).await;

        station.set_fault(Hj212Fault::default()).expect("valid fault");
        let acked = station.acked();
        until(&mut stats, "replies resume", |s| s.acked >= acked + 2).await;
    }
    assert_eq!(station.stats().connects, 1, "the station never had to reconnect");
    assert_eq!(listener.stats().connections, 1, "the listener kept the one connection");
    station.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn forced_values_arrive_as_sent() {
    let (listener, rx) = start_listener(ListenerConfig::new(any_port()), 64).await;
    let mut packets = commit_all(rx);
    let station = Hj212Sim::start(fast_spec(&listener, "ST-0001")).await.expect("starts");
    station
        .set_fault(Hj212Fault { values: BTreeMap::from([(factor::PH.to_owned(), 9.5)]), ..Hj212Fault::default() })
        .expect("valid fault");
    let forced = tokio::time::timeout(LIMIT, async {
        loop {
            let p = packets.recv().await.expect("listener alive");
            if let Some(r) = p.cp.reading(factor::PH) {
                if r.rtd == Some(9.5) || (r.avg == Some(9.5) && r.min == Some(9.5) && r.max == Some(9.5)) {
                    return p;
                }
            }
        }
    })
    .await
    .expect("a packet with the forced pH");
    assert!(forced.cp.reading(factor::TURBIDITY).is_some_and(|r| r.rtd.or(r.avg).is_some_and(|v| v < 1.0)));
    station.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn a_silent_station_sends_nothing_until_the_fault_is_cleared() {
    let (listener, rx) = start_listener(ListenerConfig::new(any_port()), 64).await;
    let _packets = commit_all(rx);
    let station = Hj212Sim::start(fast_spec(&listener, "ST-0001")).await.expect("starts");
    let mut stats = station.subscribe();
    until(&mut stats, "a first reply", |s| s.acked >= 1).await;
    station.set_fault(Hj212Fault { silent: true, ..Hj212Fault::default() }).expect("valid fault");
    // An upload already under way may still finish; after that, nothing. Proving "nothing" needs some time to
    // pass: 30 intervals.
    let sent = station.sent() + 1;
    let more = tokio::time::timeout(Duration::from_millis(300), stats.wait_for(|s| s.sent > sent))
        .await
        .map(|seen| seen.map(|s| s.clone()));
    assert!(more.is_err(), "a silent station kept sending: {:?}", station.stats());
    station.set_fault(Hj212Fault::default()).expect("valid fault");
    until(&mut stats, "uploads resume", |s| s.sent > sent + 1).await;
    station.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn the_station_reconnects_after_the_centre_drops_it() {
    let centre = TcpListener::bind(any_port()).await.expect("binds");
    let mut spec = Hj212SimSpec::new(centre.local_addr().expect("addr"), "ST-0001");
    spec.interval = Duration::from_millis(10);
    spec.reconnect_delay = Duration::from_millis(10);
    let station = Hj212Sim::start(spec).await.expect("starts");
    let mut stats = station.subscribe();

    for round in 1..=2u64 {
        let (mut conn, _) = tokio::time::timeout(LIMIT, centre.accept()).await.expect("connects").expect("accept");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            let n = tokio::time::timeout(LIMIT, conn.read(&mut byte)).await.expect("sends").expect("reads");
            assert_eq!(n, 1, "the station closed first");
            line.push(byte[0]);
        }
        let p = decode(&line).expect("the station's frame decodes");
        // The uploads take turns across connections: 2011 first, then 2051.
        let expected = if round == 1 { "2011" } else { "2051" };
        assert_eq!((p.cn.as_str(), p.mn.as_str()), (expected, "ST-0001"));
        assert!(p.wants_reply());
        drop(conn);
        until(&mut stats, "the lost reply is counted", |s| s.unanswered == round).await;
    }
    until(&mut stats, "a third connection", |s| s.connects >= 3).await;
    assert_eq!(station.acked(), 0);
    station.shutdown().await;
}

#[tokio::test]
async fn without_the_reply_bit_the_station_does_not_wait_and_the_listener_does_not_answer() {
    let (listener, rx) = start_listener(ListenerConfig::new(any_port()), 64).await;
    let mut packets = commit_all(rx);
    let mut spec = fast_spec(&listener, "ST-0001");
    spec.request_replies = false;
    let station = Hj212Sim::start(spec).await.expect("starts");
    let mut stats = station.subscribe();
    until(&mut stats, "three uploads", |s| s.sent >= 3).await;
    let p = tokio::time::timeout(LIMIT, packets.recv()).await.expect("delivered").expect("listener alive");
    assert_eq!(p.flag, Some(4));
    assert_eq!((station.acked(), listener.replied()), (0, 0));
    station.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn two_stations_with_the_same_seed_send_the_same_values() {
    let mut values = Vec::new();
    for _ in 0..2 {
        let (listener, mut rx) = start_listener(ListenerConfig::new(any_port()), 8).await;
        let mut spec = fast_spec(&listener, "ST-0001");
        spec.seed = 42;
        let station = Hj212Sim::start(spec).await.expect("starts");
        let received = hj212_support::recv(&mut rx).await;
        values.push(received.packet.cp.values.clone());
        station.shutdown().await;
        listener.shutdown().await;
    }
    assert_eq!(values[0], values[1]);
}

#[tokio::test]
async fn bad_specs_and_faults_are_refused() {
    let server = any_port();
    let refused = |change: &dyn Fn(&mut Hj212SimSpec)| {
        let mut spec = Hj212SimSpec::new(server, "ST-0001");
        change(&mut spec);
        spec
    };
    for spec in [
        refused(&|s| s.factors.clear()),
        refused(&|s| s.uploads = vec!["2031".to_owned()]),
        refused(&|s| s.uploads.clear()),
        refused(&|s| s.interval = Duration::ZERO),
        refused(&|s| s.mn = "A;B".to_owned()),
        refused(&|s| s.mn = String::new()),
        refused(&|s| s.st = "x".to_owned()),
        refused(&|s| s.factors[0].code = "w01-001".to_owned()),
        refused(&|s| s.factors[0].nominal = f64::NAN),
        refused(&|s| s.factors[1].code = s.factors[0].code.clone()),
    ] {
        match Hj212Sim::start(spec.clone()).await {
            Err(Hj212Error::InvalidConfig(_)) => {}
            other => panic!("{spec:?} gave {other:?}"),
        }
    }
    let station = Hj212Sim::start(Hj212SimSpec::new(server, "ST-0001")).await.expect("starts");
    let unknown = Hj212Fault { values: BTreeMap::from([("w99999".to_owned(), 1.0)]), ..Hj212Fault::default() };
    assert!(matches!(station.set_fault(unknown), Err(Hj212Error::InvalidConfig(_))));
    let nan = Hj212Fault { values: BTreeMap::from([(factor::PH.to_owned(), f64::NAN)]), ..Hj212Fault::default() };
    assert!(matches!(station.set_fault(nan), Err(Hj212Error::InvalidConfig(_))));
    assert_eq!(station.fault(), Hj212Fault::default());
    station.shutdown().await;
}
