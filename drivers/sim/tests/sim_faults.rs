//! ModbusFault injection seen through the guarded client, and robustness against malformed requests.
//!
//! Each fault must produce the failure the client is built to handle (timeout, exception, bad bytes, dropped
//! connection), a cleared fault must let the next call succeed, and one faulted device must never hold up
//! another. Raw bytes that are not Modbus TCP must close only their own connection.

mod support;

use std::time::{Duration, Instant};

use drivers::modbus::{Exception, ModbusError};
use drivers::registers::Function;
use support::{client, concentrator, eventually, litres_layout, small_logger, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterworks_sim::modbus::ModbusFault;

const SHORT: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(3);

fn fault(set: impl FnOnce(&mut ModbusFault)) -> ModbusFault {
    let mut f = ModbusFault::default();
    set(&mut f);
    f
}

#[tokio::test]
async fn silent_device_times_out_then_recovers() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    assert!(sim.set_fault("q1", fault(|f| f.silent = true)).is_ok());
    let mut c = client(&sim, "q1", SHORT);
    let got = c.read_registers(Function::Input, 0, 2).await;
    assert!(matches!(got, Err(ModbusError::Timeout(_))), "{got:?}");
    assert_eq!(sim.requests("q1"), Some(1), "the request was read, just not answered");
    assert!(sim.set_fault("q1", ModbusFault::default()).is_ok());
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Ok(_))));
    sim.shutdown().await;
}

#[tokio::test]
async fn delay_beyond_the_timeout_times_out_and_within_it_succeeds() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    assert!(sim.set_fault("q1", fault(|f| f.delay_ms = 1000)).is_ok());
    let mut c = client(&sim, "q1", SHORT);
    let got = c.read_registers(Function::Input, 0, 2).await;
    assert!(matches!(got, Err(ModbusError::Timeout(_))), "{got:?}");

    assert!(sim.set_fault("q1", fault(|f| f.delay_ms = 50)).is_ok());
    let mut patient = client(&sim, "q1", LONG);
    let began = Instant::now();
    let got = patient.read_registers(Function::Input, 0, 2).await;
    assert!(matches!(got, Ok(Ok(_))), "{got:?}");
    assert!(began.elapsed() >= Duration::from_millis(50), "the reply came early");
    sim.shutdown().await;
}

#[tokio::test]
async fn exception_fault_answers_every_request_with_the_code() {
    let sim = start(vec![concentrator("c1", litres_layout(5))], 1.0).await;
    assert!(sim.set_fault("c1", fault(|f| f.exception = Some(4))).is_ok());
    let mut c = client(&sim, "c1", LONG);
    assert!(matches!(c.read_registers(Function::Holding, 0, 4).await, Ok(Err(Exception(4)))));
    assert!(matches!(c.write_register(0, 1).await, Ok(Err(Exception(4)))));
    assert_eq!(c.connects(), 1, "an exception is a valid reply; the connection is kept");
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_is_rejected_and_clearing_it_lets_the_client_reconnect() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    assert!(sim.set_fault("q1", fault(|f| f.garbage = true)).is_ok());
    let mut c = client(&sim, "q1", LONG);
    let got = c.read_registers(Function::Input, 0, 2).await;
    match got {
        Err(ModbusError::Timeout(_)) => panic!("garbage must be rejected at once, not waited on"),
        Err(_) => {}
        Ok(reply) => panic!("garbage was taken for a reply: {reply:?}"),
    }
    assert!(!c.is_connected(), "a connection that carried garbage is dropped");
    assert!(sim.set_fault("q1", ModbusFault::default()).is_ok());
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Ok(_))));
    assert_eq!(c.connects(), 2);
    sim.shutdown().await;
}

/// The device closing the connection reads as such (issue 7 §7), not as whatever errno the thread saw last
/// ("Operation now in progress (os error 115)"), which is what tokio-modbus reports for the stream's end.
#[tokio::test]
async fn disconnect_fault_reads_connection_closed_by_device() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    assert!(sim.set_fault("q1", fault(|f| f.disconnect = true)).is_ok());
    let mut c = client(&sim, "q1", LONG);
    for _ in 0..3 {
        let got = c.read_registers(Function::Input, 0, 2).await;
        assert!(matches!(got, Err(ModbusError::ConnectionClosed)), "{got:?}");
        assert_eq!(got.unwrap_err().to_string(), "connection closed by device");
        assert!(!c.is_connected(), "a closed connection is dropped");
    }
    assert_eq!(sim.requests("q1"), Some(3));
    assert!(sim.set_fault("q1", ModbusFault::default()).is_ok());
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Ok(_))));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_fault_set_while_connected_applies_to_the_next_request() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let mut c = client(&sim, "q1", LONG);
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Ok(_))));
    assert!(sim.set_fault("q1", fault(|f| f.exception = Some(6))).is_ok());
    assert!(matches!(c.read_registers(Function::Input, 0, 2).await, Ok(Err(Exception(6)))));
    assert_eq!(c.connects(), 1, "same connection");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_faulted_device_never_delays_another() {
    let sim = start(vec![small_logger("stuck"), small_logger("mute"), small_logger("fine")], 1.0).await;
    assert!(sim.set_fault("stuck", fault(|f| f.delay_ms = 60_000)).is_ok());
    assert!(sim.set_fault("mute", fault(|f| f.silent = true)).is_ok());
    let mut waiting = Vec::new();
    for id in ["stuck", "mute"] {
        let mut c = client(&sim, id, Duration::from_secs(60));
        waiting.push(tokio::spawn(async move { c.read_registers(Function::Input, 0, 2).await.is_ok() }));
    }
    eventually("both faulted devices hold a request", || async {
        sim.requests("stuck") == Some(1) && sim.requests("mute") == Some(1)
    })
    .await;

    let mut c = client(&sim, "fine", SHORT);
    for _ in 0..5 {
        assert!(matches!(c.read_registers(Function::Input, 0, 6).await, Ok(Ok(_))));
    }
    assert!(waiting.iter().all(|task| !task.is_finished()), "the faulted devices are still holding their clients");
    assert_eq!(sim.fault("fine"), Some(ModbusFault::default()));
    for task in waiting {
        task.abort();
    }
    sim.shutdown().await;
}

/// Whether the server closed `stream` (end of file or a reset) within a few seconds.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(LONG, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("cannot connect to {addr}: {e}"),
    }
}

#[tokio::test]
async fn malformed_requests_close_their_connection_but_not_the_listener() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let addr = sim.addr("q1").unwrap_or_else(|| panic!("no q1"));

    // A short header, then the client stops sending.
    let mut s = connect(addr).await;
    assert!(s.write_all(&[0x00, 0x01, 0x00]).await.is_ok());
    assert!(s.shutdown().await.is_ok());
    assert!(closed_by_server(&mut s).await, "short header");

    // Absurd lengths, a wrong protocol id, and plain junk.
    let frames: [&[u8]; 4] = [
        &[0x00, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x01, 0x03],
        &[0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x01],
        &[0x00, 0x01, 0x12, 0x34, 0x00, 0x06, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01],
        &[0xFF; 100],
    ];
    for bytes in frames {
        let mut s = connect(addr).await;
        assert!(s.write_all(bytes).await.is_ok());
        assert!(closed_by_server(&mut s).await, "{bytes:02X?}");
    }
    assert_eq!(sim.malformed("q1"), Some(5));

    // An unknown function is well framed: it gets exception 01 and the connection stays usable.
    let mut s = connect(addr).await;
    assert!(s.write_all(&[0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x01, 0x41]).await.is_ok());
    let mut reply = [0u8; 9];
    assert!(s.read_exact(&mut reply).await.is_ok());
    assert_eq!(reply, [0x00, 0x07, 0x00, 0x00, 0x00, 0x03, 0x01, 0xC1, 0x01]);
    let read_two = [0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x01, 0x04, 0x00, 0x00, 0x00, 0x02];
    assert!(s.write_all(&read_two).await.is_ok());
    let mut reply = [0u8; 13];
    assert!(s.read_exact(&mut reply).await.is_ok());
    assert_eq!(&reply[..9], &[0x00, 0x08, 0x00, 0x00, 0x00, 0x07, 0x01, 0x04, 0x04]);

    // And a proper client is still served.
    let mut c = client(&sim, "q1", LONG);
    assert!(matches!(c.read_registers(Function::Input, 0, 6).await, Ok(Ok(_))));
    assert_eq!(sim.malformed("q1"), Some(5));
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_sent_together_or_split_are_each_answered_in_order() {
    let sim = start(vec![small_logger("q1")], 1.0).await;
    let addr = sim.addr("q1").unwrap_or_else(|| panic!("no q1"));
    let request = |transaction: u8| [0x00, transaction, 0x00, 0x00, 0x00, 0x06, 0x01, 0x04, 0x00, 0x00, 0x00, 0x02];
    let mut s = connect(addr).await;

    // Two requests in one write, then a third in two writes with its header split.
    let together: Vec<u8> = [request(1), request(2)].concat();
    assert!(s.write_all(&together).await.is_ok());
    let third = request(3);
    assert!(s.write_all(&third[..4]).await.is_ok());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(s.write_all(&third[4..]).await.is_ok());

    for transaction in 1..=3u8 {
        let mut reply = [0u8; 13];
        assert!(s.read_exact(&mut reply).await.is_ok(), "reply {transaction}");
        assert_eq!(&reply[..9], &[0x00, transaction, 0x00, 0x00, 0x00, 0x07, 0x01, 0x04, 0x04]);
    }
    assert_eq!(sim.requests("q1"), Some(3));
    sim.shutdown().await;
}
