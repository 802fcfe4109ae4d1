//! The HJ 212 listener against a simulated station and against raw sockets: delivery, replies only after the
//! caller commits, rejection of bad frames with the connection surviving, split and coalesced frames, the
//! bounded buffer, passwords, connection limits and shutdown.

mod hj212_support;

use std::collections::HashMap;
use std::time::Duration;

use hj212_support::{
    any_port, assert_nothing_to_read, frame, read_line, recv, start_listener, until, upload_frame, LIMIT,
};
use sim::hj212::{Hj212Sim, Hj212SimSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterworks_drivers::hj212::{decode, factor, Hj212Error, Hj212Listener, ListenerConfig, MAX_FRAME_LEN};

fn config() -> ListenerConfig {
    ListenerConfig::new(any_port())
}

async fn connect(listener: &Hj212Listener) -> TcpStream {
    TcpStream::connect(listener.local_addr()).await.expect("connects to the listener")
}

#[tokio::test]
async fn station_uploads_are_delivered_and_answered_only_after_commit() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut spec = Hj212SimSpec::new(listener.local_addr(), "ST-0001");
    spec.interval = Duration::from_millis(10);
    let station = Hj212Sim::start(spec).await.expect("station starts");
    let mut station_stats = station.subscribe();

    for (n, cn) in ["2011", "2051", "2061"].into_iter().enumerate() {
        let received = recv(&mut rx).await;
        let p = &received.packet;
        assert_eq!((p.cn.as_str(), p.st.as_str(), p.mn.as_str()), (cn, "21", "ST-0001"));
        assert_eq!(p.pw.as_deref(), Some("123456"));
        assert_eq!(p.flag, Some(5), "2017 version, reply requested");
        assert!(received.ack.wants_reply());
        assert!(received.raw_len > 100);
        assert!(p.cp.data_time.is_some());
        let ph = p.cp.reading(factor::PH).expect("pH sent");
        assert!(ph.is_normal());
        let nh3 = p.cp.reading(factor::AMMONIA_NITROGEN).expect("NH3-N sent");
        if cn == "2011" {
            assert!(ph.rtd.is_some_and(|v| (7.1..=7.3).contains(&v)), "{ph:?}");
            assert!(nh3.rtd.is_some_and(|v| (0.1..=0.14).contains(&v)), "{nh3:?}");
        } else {
            let (avg, min, max) = (ph.avg.expect("avg"), ph.min.expect("min"), ph.max.expect("max"));
            assert!(min <= avg && avg <= max, "{ph:?}");
            assert!((7.1..=7.3).contains(&avg), "{ph:?}");
        }
        assert_eq!(p.cp.readings().len(), 6, "the six default factors");

        // The station waits for its reply, and the reply waits for us.
        assert_eq!(station.acked(), n as u64);
        assert_eq!(listener.replied(), n as u64);
        received.ack.commit();
        until(&mut station_stats, "the station has its reply", |s| s.acked == n as u64 + 1).await;
    }
    let stats = listener.stats();
    assert_eq!((stats.accepted, stats.replied, stats.rejected), (3, 3, 0));
    let s = station.stats();
    assert_eq!((s.connects, s.bad_replies, s.unanswered), (1, 0, 0));
    station.shutdown().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn the_reply_is_written_after_commit_and_carries_the_uploads_qn() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut client = connect(&listener).await;
    client.write_all(&upload_frame("20240301120000123", "ST-0001", "123456", 5)).await.expect("sent");
    let received = recv(&mut rx).await;
    let mut client = assert_nothing_to_read(client);
    received.ack.commit();
    let reply = decode(&read_line(&mut client).await).expect("the reply decodes");
    assert_eq!(reply.qn.as_deref(), Some("20240301120000123"));
    assert_eq!((reply.st.as_str(), reply.cn.as_str(), reply.flag), ("91", "9014", Some(4)));
    assert_eq!((reply.mn.as_str(), reply.pw.as_deref()), ("ST-0001", Some("123456")));
    assert_eq!(reply.cp, Default::default());
    listener.shutdown().await;
}

#[tokio::test]
async fn a_refused_or_dropped_ack_gets_no_reply() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut client = connect(&listener).await;
    for (qn, verdict) in
        [("20240301120000001", "refuse"), ("20240301120000002", "drop"), ("20240301120000003", "commit")]
    {
        client.write_all(&upload_frame(qn, "ST-0001", "123456", 5)).await.expect("sent");
        let received = recv(&mut rx).await;
        assert_eq!(received.packet.qn.as_deref(), Some(qn));
        match verdict {
            "refuse" => received.ack.refuse(),
            "drop" => drop(received),
            _ => received.ack.commit(),
        }
    }
    // Replies go out in order on one connection, so the first reply on the wire is the only one.
    let reply = decode(&read_line(&mut client).await).expect("decodes");
    assert_eq!(reply.qn.as_deref(), Some("20240301120000003"));
    assert_eq!((listener.accepted(), listener.replied()), (3, 1));
    listener.shutdown().await;
}

#[tokio::test]
async fn an_upload_without_the_reply_bit_gets_no_reply_and_needs_no_ack() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut client = connect(&listener).await;
    client.write_all(&upload_frame("20240301120000001", "ST-0001", "123456", 4)).await.expect("sent");
    let first = recv(&mut rx).await;
    assert!(!first.ack.wants_reply());
    // The next frame is delivered although the first was never acknowledged.
    client.write_all(&upload_frame("20240301120000002", "ST-0001", "123456", 5)).await.expect("sent");
    let second = recv(&mut rx).await;
    second.ack.commit();
    let reply = decode(&read_line(&mut client).await).expect("decodes");
    assert_eq!(reply.qn.as_deref(), Some("20240301120000002"));
    drop(first);
    listener.shutdown().await;
}

#[tokio::test]
async fn garbage_and_a_bad_crc_are_rejected_with_a_reason_and_the_next_frame_on_the_connection_succeeds() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut stats = listener.subscribe();
    let mut client = connect(&listener).await;
    let me = client.local_addr().expect("local addr");

    let mut bad_crc = upload_frame("20240301120000001", "ST-0001", "123456", 4);
    let crc_at = bad_crc.len() - 6;
    let sent_crc =
        u16::from_str_radix(std::str::from_utf8(&bad_crc[crc_at..crc_at + 4]).expect("ascii"), 16).expect("hex");
    bad_crc[crc_at..crc_at + 4].copy_from_slice(format!("{:04X}", sent_crc ^ 1).as_bytes());
    let mut burst = b"this is not hj212 at all\r\n".to_vec();
    burst.extend_from_slice(&bad_crc);
    burst.extend_from_slice(&upload_frame("20240301120000002", "ST-0001", "123456", 4));
    client.write_all(&burst).await.expect("sent");

    let good = recv(&mut rx).await;
    assert_eq!(good.packet.qn.as_deref(), Some("20240301120000002"));
    let seen = until(&mut stats, "two rejections", |s| s.rejected == 2).await;
    let reasons: Vec<_> = seen.recent_rejections.iter().map(|r| (r.peer, r.error.clone())).collect();
    assert_eq!(
        reasons,
        vec![(me, Hj212Error::BadHeader), (me, Hj212Error::CrcMismatch { expected: sent_crc, actual: sent_crc ^ 1 }),]
    );

    // The same connection goes on working, even for a frame dribbled in small pieces.
    let next = upload_frame("20240301120000003", "ST-0001", "123456", 4);
    for piece in next.chunks(7) {
        client.write_all(piece).await.expect("sent");
        client.flush().await.expect("flushed");
        tokio::task::yield_now().await;
    }
    assert_eq!(recv(&mut rx).await.packet.qn.as_deref(), Some("20240301120000003"));
    let stats = listener.stats();
    assert_eq!((stats.connections, stats.open_connections, stats.accepted, stats.rejected), (1, 1, 2, 2));
    listener.shutdown().await;
}

#[tokio::test]
async fn several_frames_in_one_write_and_junk_before_a_header() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut client = connect(&listener).await;
    let mut burst = Vec::new();
    for i in 1..=5 {
        burst.extend_from_slice(&upload_frame(&format!("2024030112000000{i}"), "ST-0001", "123456", 4));
        burst.extend_from_slice(b"\r\n"); // stray empty lines are skipped silently
    }
    burst.extend_from_slice(b"xx");
    burst.extend_from_slice(&upload_frame("20240301120000006", "ST-0001", "123456", 4));
    client.write_all(&burst).await.expect("sent");
    for i in 1..=6 {
        let qn = format!("2024030112000000{i}");
        assert_eq!(recv(&mut rx).await.packet.qn.as_deref(), Some(qn.as_str()));
    }
    let mut stats = listener.subscribe();
    let seen = until(&mut stats, "the junk is counted", |s| s.rejected == 1).await;
    assert_eq!(seen.recent_rejections.back().map(|r| &r.error), Some(&Hj212Error::Garbage { len: 2 }));
    listener.shutdown().await;
}

#[tokio::test]
async fn an_endless_line_is_cut_off_and_the_connection_recovers() {
    let (listener, mut rx) = start_listener(config(), 8).await;
    let mut stats = listener.subscribe();
    let mut client = connect(&listener).await;
    let chunk = vec![b'A'; 8192];
    for _ in 0..(3 * MAX_FRAME_LEN / chunk.len() + 1) {
        client.write_all(&chunk).await.expect("sent");
    }
    let seen = until(&mut stats, "the oversized line is rejected", |s| s.rejected >= 1).await;
    assert_eq!(seen.recent_rejections.front().map(|r| &r.error), Some(&Hj212Error::Oversized { max: MAX_FRAME_LEN }));
    let mut tail = b"still no line end... then one\r\n".to_vec();
    tail.extend_from_slice(&upload_frame("20240301120000001", "ST-0001", "123456", 4));
    client.write_all(&tail).await.expect("sent");
    assert_eq!(recv(&mut rx).await.packet.qn.as_deref(), Some("20240301120000001"));
    assert_eq!(listener.rejected(), 1, "one endless line, one rejection");
    listener.shutdown().await;
}

#[tokio::test]
async fn passwords_are_checked_per_station() {
    let mut cfg = config();
    cfg.passwords = Some(HashMap::from([("ST-0001".to_owned(), "123456".to_owned())]));
    let (listener, mut rx) = start_listener(cfg, 8).await;
    let mut stats = listener.subscribe();
    let mut client = connect(&listener).await;
    let mut no_pw = frame("QN=20240301120000003;ST=21;CN=2011;MN=ST-0001;Flag=4;CP=&&&&");
    let mut burst = upload_frame("20240301120000001", "ST-0001", "654321", 4);
    burst.extend_from_slice(&upload_frame("20240301120000002", "ST-0002", "123456", 4));
    burst.append(&mut no_pw);
    burst.extend_from_slice(&upload_frame("20240301120000004", "ST-0001", "123456", 4));
    client.write_all(&burst).await.expect("sent");
    assert_eq!(recv(&mut rx).await.packet.qn.as_deref(), Some("20240301120000004"));
    let seen = until(&mut stats, "three rejections", |s| s.rejected == 3).await;
    let errors: Vec<_> = seen.recent_rejections.iter().map(|r| r.error.clone()).collect();
    assert_eq!(
        errors,
        vec![
            Hj212Error::WrongPassword { mn: "ST-0001".to_owned() },
            Hj212Error::UnknownStation { mn: "ST-0002".to_owned() },
            Hj212Error::WrongPassword { mn: "ST-0001".to_owned() },
        ]
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_shutdown_closes_the_rest() {
    let mut cfg = config();
    cfg.max_connections = 1;
    let (listener, mut rx) = start_listener(cfg, 8).await;
    let mut stats = listener.subscribe();
    let mut first = connect(&listener).await;
    first.write_all(&upload_frame("20240301120000001", "ST-0001", "123456", 4)).await.expect("sent");
    recv(&mut rx).await;
    let mut second = connect(&listener).await;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(LIMIT, second.read(&mut byte)).await.expect("closed within the limit");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    until(&mut stats, "the second connection is refused", |s| s.refused_connections == 1).await;

    listener.shutdown().await;
    let closed = tokio::time::timeout(LIMIT, first.read(&mut byte)).await.expect("closed within the limit");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn the_listener_stops_when_the_caller_drops_its_receiver() {
    let (listener, rx) = start_listener(config(), 8).await;
    let mut client = connect(&listener).await;
    let mut stats = listener.subscribe();
    until(&mut stats, "the connection is open", |s| s.open_connections == 1).await;
    drop(rx);
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(LIMIT, client.read(&mut byte)).await.expect("closed within the limit");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    listener.shutdown().await;
}

#[tokio::test]
async fn bad_configurations_are_refused_before_binding() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let mut cfg = config();
    cfg.max_connections = 0;
    assert!(matches!(Hj212Listener::start(cfg, tx.clone()).await, Err(Hj212Error::InvalidConfig(_))));
    let mut cfg = config();
    cfg.ack_timeout = Duration::ZERO;
    assert!(matches!(Hj212Listener::start(cfg, tx.clone()).await, Err(Hj212Error::InvalidConfig(_))));

    let (taken, _rx2) = start_listener(config(), 1).await;
    let busy = ListenerConfig::new(taken.local_addr());
    match Hj212Listener::start(busy, tx).await {
        Err(Hj212Error::Bind { addr, .. }) => assert_eq!(addr, taken.local_addr()),
        other => panic!("{other:?}"),
    }
}
