//! The CJ/T 188 master against the simulated transparent gateway (TCP) and serial line (pty): readings that rise with time, valves
//! that move (or are stuck), and every fault the gateway can show, each seen as the failure the client is
//! built to handle, followed by a request that succeeds.
//!
//! Real sockets on port 0, paused tokio time: simulated volumes follow tokio's clock, so a test advances
//! time and knows the exact volume; timeouts cost nothing. The one counter bumped by another task after a
//! connection closes is awaited with a bounded poll.

use std::net::SocketAddr;
use std::time::Duration;

use drivers::cjt188::{
    Address, Cjt188Error, Cjt188Link, Cjt188Master, Cjt188Model, Cjt188Target, Control, DiOrder, FrameError, StBits,
    ValveState, Volume, VolumeUnit,
};
use drivers::rtu::{CharFormat, LineSettings};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use waterworks_sim::cjt188::{Cjt188Fault, Cjt188Sim, Cjt188SimSpec, SimLink, SimMeterSpec};

const TIMEOUT: Duration = Duration::from_secs(2);

fn address(s: &str) -> Address {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn a() -> Address {
    address("78330011223344")
}

fn b() -> Address {
    address("78330011223345")
}

/// Two healthy meters: `a` at 100 ml/s reporting in litres, `b` at 2 l/s reporting in m³.
fn two_meters() -> Vec<SimMeterSpec> {
    let mut b_spec = SimMeterSpec::new(b());
    b_spec.initial = Volume::from_millilitres(500_000_000);
    b_spec.flow_ml_per_s = 2_000;
    b_spec.unit = VolumeUnit::CubicMetre;
    vec![SimMeterSpec::new(a()), b_spec]
}

async fn gateway(meters: Vec<SimMeterSpec>, preamble: usize) -> Cjt188Sim {
    let spec = Cjt188SimSpec {
        link: SimLink::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        preamble,
        st_bits: StBits::KINGDA,
        meters,
    };
    Cjt188Sim::start(spec).await.unwrap_or_else(|e| panic!("gateway did not start: {e}"))
}

fn client(sim: &Cjt188Sim, model: Cjt188Model) -> Cjt188Master {
    let model = Cjt188Model { st_bits: StBits::KINGDA, ..model };
    Cjt188Master::new(Cjt188Target { link: Cjt188Link::Tcp(tcp_addr(sim).to_string()), timeout: TIMEOUT, model })
}

fn tcp_addr(sim: &Cjt188Sim) -> SocketAddr {
    sim.addr().unwrap_or_else(|| panic!("a tcp gateway has an address"))
}

fn set_fault(sim: &Cjt188Sim, meter: Address, fault: Cjt188Fault) {
    sim.set_fault(&meter, fault).unwrap_or_else(|e| panic!("{e}"));
}

/// Reads a meter and returns its current volume in ml, failing the test on anything but a normal reply.
async fn volume(c: &mut Cjt188Master, meter: Address) -> u64 {
    match c.read_meter(&meter).await {
        Ok(Ok(data)) => data.current.volume.millilitres(),
        other => panic!("reading {meter}: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn reads_metering_data_and_the_volume_rises_with_time() {
    let sim = gateway(two_meters(), 2).await;
    let mut c = client(&sim, Cjt188Model::edition_2004());
    let data = match c.read_meter(&a()).await {
        Ok(Ok(data)) => data,
        other => panic!("{other:?}"),
    };
    assert_eq!(data.current.volume, Volume::from_millilitres(123_456_000));
    assert_eq!(data.current.unit, VolumeUnit::Litre);
    assert_eq!(data.settlement.map(|r| r.volume), Some(Volume::from_millilitres(123_456_000)));
    assert!(data.time.is_some(), "the meter clock is a valid date: {:02X?}", data.raw_time);
    assert_eq!(data.status.valve, ValveState::Open);
    assert!(!data.status.battery_low && !data.status.magnetic_tamper && !data.status.meter_fault);

    tokio::time::advance(Duration::from_secs(60)).await;
    // 60 s at 100 ml/s, reported to the 10 ml resolution of litres with two decimals.
    assert_eq!(volume(&mut c, a()).await, 123_462_000);
    assert_eq!(sim.volume(&a()), Some(Volume::from_millilitres(123_462_000)));
    // Meter b reports in m³ with two decimals: 500 m³ + 60 s × 2 l/s = 500.12 m³.
    assert_eq!(volume(&mut c, b()).await, 500_120_000);
    tokio::time::advance(Duration::from_millis(2_500)).await;
    // 500.125 m³ is truncated to 500.12 by the unit; the truth is finer.
    assert_eq!(volume(&mut c, b()).await, 500_120_000);
    assert_eq!(sim.volume(&b()), Some(Volume::from_millilitres(500_125_000)));

    assert_eq!((sim.requests(&a()), sim.requests(&b())), (Some(2), Some(2)));
    assert_eq!(c.connects(), 1, "healthy exchanges keep the connection");
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn valve_closes_and_opens_and_reads_back() {
    let sim = gateway(two_meters(), 2).await;
    for model in [Cjt188Model::edition_2004(), Cjt188Model::edition_2018()] {
        let mut c = client(&sim, model);
        assert_eq!(c.set_valve(&a(), false).await, Ok(Ok(ValveState::Closed)));
        assert_eq!(sim.valve_open(&a()), Some(false));
        let closed_at = volume(&mut c, a()).await;
        tokio::time::advance(Duration::from_secs(30)).await;
        let data = c.read_meter(&a()).await;
        assert!(matches!(&data, Ok(Ok(d)) if d.status.valve == ValveState::Closed), "{data:?}");
        assert!(matches!(&data, Ok(Ok(d)) if d.current.volume.millilitres() == closed_at), "no flow while closed");

        assert_eq!(c.set_valve(&a(), true).await, Ok(Ok(ValveState::Open)));
        tokio::time::advance(Duration::from_secs(30)).await;
        let data = c.read_meter(&a()).await;
        assert!(matches!(&data, Ok(Ok(d)) if d.status.valve == ValveState::Open), "{data:?}");
        assert_eq!(volume(&mut c, a()).await, closed_at + 3_000, "30 s at 100 ml/s once open again");
    }
    assert_eq!(sim.valve_open(&b()), Some(true), "the other meter's valve was not touched");
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stuck_valve_never_confirms() {
    let mut meters = two_meters();
    meters[0].stuck = true;
    let sim = gateway(meters, 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    assert_eq!(c.set_valve(&a(), false).await, Ok(Ok(ValveState::Open)), "acknowledged, unchanged");
    let data = c.read_meter(&a()).await;
    assert!(matches!(&data, Ok(Ok(d)) if d.status.valve == ValveState::Open), "{data:?}");
    assert_eq!(sim.valve_open(&a()), Some(true));

    // Freed at run time, it moves.
    assert!(sim.set_stuck(&a(), false).is_ok());
    assert_eq!(c.set_valve(&a(), false).await, Ok(Ok(ValveState::Closed)));
    assert!(sim.set_stuck(&address("00000000000000"), true).is_err(), "no such meter");
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_garbled_reply_is_rejected_and_the_next_request_succeeds() {
    let sim = gateway(two_meters(), 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))));

    set_fault(&sim, a(), Cjt188Fault { garbage: true, ..Cjt188Fault::default() });
    let began = tokio::time::Instant::now();
    assert_eq!(c.read_meter(&a()).await, Err(Cjt188Error::Frame(FrameError::Length(0xFF))));
    assert!(began.elapsed() < TIMEOUT, "garbage is rejected at once, not waited on");
    assert!(!c.is_connected(), "a connection that carried garbage is dropped");
    // The next request, to another meter on the same gateway, succeeds on a new connection.
    assert!(matches!(c.read_meter(&b()).await, Ok(Ok(_))));
    assert_eq!(c.connects(), 2);

    set_fault(&sim, a(), Cjt188Fault { bad_checksum: true, ..Cjt188Fault::default() });
    let got = c.set_valve(&a(), false).await;
    assert!(matches!(got, Err(Cjt188Error::Frame(FrameError::Checksum { .. }))), "{got:?}");
    assert!(!c.is_connected());

    set_fault(&sim, a(), Cjt188Fault::default());
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))), "the same meter, once healthy");
    assert_eq!(c.connects(), 3);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_meter_times_out_while_another_meter_answers() {
    let sim = gateway(two_meters(), 2).await;
    set_fault(&sim, a(), Cjt188Fault { silent: true, ..Cjt188Fault::default() });
    let mut silent = client(&sim, Cjt188Model::default());
    let mut other = client(&sim, Cjt188Model::default());
    let (meter_a, meter_b) = (a(), b());
    let (timed_out, answered) = tokio::join!(silent.read_meter(&meter_a), other.read_meter(&meter_b));
    assert_eq!(timed_out, Err(Cjt188Error::Timeout(TIMEOUT)));
    assert!(matches!(answered, Ok(Ok(_))), "{answered:?}");
    assert_eq!(sim.requests(&a()), Some(1), "the request was read, just not answered");
    // The client that timed out reconnects and reads the healthy meter.
    assert!(matches!(silent.read_meter(&b()).await, Ok(Ok(_))));
    assert_eq!(silent.connects(), 2);

    // A delay beyond the timeout times out; within it, the reply comes late but comes.
    set_fault(&sim, a(), Cjt188Fault { delay_ms: 5_000, ..Cjt188Fault::default() });
    assert_eq!(silent.read_meter(&a()).await, Err(Cjt188Error::Timeout(TIMEOUT)));
    set_fault(&sim, a(), Cjt188Fault { delay_ms: 500, ..Cjt188Fault::default() });
    let began = tokio::time::Instant::now();
    assert!(matches!(silent.read_meter(&a()).await, Ok(Ok(_))));
    assert!(began.elapsed() >= Duration::from_millis(500));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn junk_preambles_and_frames_for_other_meters_are_skipped() {
    let mut meters = two_meters();
    // This meter answers 2004-style requests with DIs low byte first; replies are accepted in either order.
    meters[1].reply_di_order = Some(DiOrder::LittleEndian);
    let sim = gateway(meters, 4).await;
    let mut c = client(&sim, Cjt188Model::edition_2004());
    set_fault(&sim, a(), Cjt188Fault { noise: true, foreign_frame: true, ..Cjt188Fault::default() });
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))));
    assert_eq!(c.set_valve(&a(), false).await, Ok(Ok(ValveState::Closed)));
    assert!(matches!(c.read_meter(&b()).await, Ok(Ok(_))));
    assert_eq!(c.set_valve(&b(), false).await, Ok(Ok(ValveState::Closed)));
    assert_eq!(c.skipped_frames(), 2, "one foreign frame before each of meter a's replies");
    assert_eq!(c.connects(), 1, "skipping is not failing");
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn abnormal_replies_keep_the_connection_and_disconnects_are_survived() {
    let sim = gateway(two_meters(), 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    set_fault(&sim, a(), Cjt188Fault { abnormal: true, ..Cjt188Fault::default() });
    let got = c.set_valve(&a(), false).await;
    assert!(matches!(&got, Ok(Err(abnormal)) if abnormal.control == Control(0xC4)), "{got:?}");
    assert_eq!(sim.valve_open(&a()), Some(true), "an abnormal reply did nothing");
    assert!(matches!(c.read_meter(&a()).await, Ok(Err(_))));
    assert_eq!(c.connects(), 1, "an abnormal reply is a valid reply");

    set_fault(&sim, a(), Cjt188Fault { disconnect: true, ..Cjt188Fault::default() });
    let got = c.read_meter(&a()).await;
    assert_eq!(got, Err(Cjt188Error::Closed), "the gateway closing the connection is said so");
    assert_eq!(Cjt188Error::Closed.to_string(), "connection closed by device");
    assert!(!c.is_connected());
    set_fault(&sim, a(), Cjt188Fault::default());
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))));
    assert_eq!(c.connects(), 2);
    assert_eq!(sim.fault(&a()), Some(Cjt188Fault::default()));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn meters_report_their_status_flags_and_unknown_meters_stay_silent() {
    let mut meters = two_meters();
    meters[1].battery_low = true;
    meters[1].magnetic_tamper = true;
    let sim = gateway(meters, 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    let data = c.read_meter(&b()).await;
    assert!(matches!(&data, Ok(Ok(d)) if d.status.battery_low && d.status.magnetic_tamper && !d.status.meter_fault));
    // KingDa layout: battery ST1 D2, magnetic ST2 D3.
    assert!(matches!(&data, Ok(Ok(d)) if d.status.raw == 0x0804), "{data:?}");

    let nobody = address("11111111111111");
    assert_eq!(c.read_meter(&nobody).await, Err(Cjt188Error::Timeout(TIMEOUT)));
    assert_eq!(sim.requests(&nobody), None);
    assert!(sim.set_fault(&nobody, Cjt188Fault::default()).is_err());
    // The wildcard is not answered by a gateway with two meters (they would collide on a real bus).
    assert_eq!(c.read_meter(&Address::WILDCARD).await, Err(Cjt188Error::Timeout(TIMEOUT)));
    sim.shutdown().await;

    let sim = gateway(vec![SimMeterSpec::new(a())], 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    assert!(matches!(c.read_meter(&Address::WILDCARD).await, Ok(Ok(_))), "a single meter answers the wildcard");
    assert_eq!(sim.addresses(), vec![a()]);
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn malformed_bytes_close_only_their_own_connection() {
    let sim = gateway(two_meters(), 2).await;
    let mut c = client(&sim, Cjt188Model::default());
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))));

    let mut raw = TcpStream::connect(tcp_addr(&sim)).await.unwrap_or_else(|e| panic!("{e}"));
    // 68 then a length byte of 0xFF: no frame can follow.
    let _ = raw.write_all(&[0xFE, 0x68, 0x10, 1, 2, 3, 4, 5, 6, 7, 0x01, 0xFF]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sim.malformed() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the gateway never counted the malformed stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(c.read_meter(&a()).await, Ok(Ok(_))), "other connections carry on");
    assert_eq!(c.connects(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_gateway_that_is_not_there_is_a_connect_error() {
    // Bind, note the port, close: nothing listens there now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(listener);
    let target =
        Cjt188Target { link: Cjt188Link::Tcp(addr.to_string()), timeout: TIMEOUT, model: Cjt188Model::default() };
    let mut c = Cjt188Master::new(target);
    let got = c.read_meter(&a()).await;
    assert!(matches!(&got, Err(Cjt188Error::Connect { addr: at, .. }) if *at == addr.to_string()), "{got:?}");
    assert_eq!(c.connects(), 0);
}

// Over a serial line: the simulated meters on a pty, every exchange paced to 2400 8E1 (the usual CJ/T 188 line).
// Real time, not paused: the pty is real I/O, and a paused clock would jump ahead while it waits. Only lower
// bounds on time are asserted, and upper bounds with a wide margin, so a slow machine cannot fail them.

const SERIAL_TIMEOUT: Duration = Duration::from_millis(300);

async fn serial_line(meters: Vec<SimMeterSpec>) -> (Cjt188Sim, Cjt188Master) {
    let format: CharFormat = "8E1".parse().unwrap_or_else(|e| panic!("{e}"));
    let spec =
        Cjt188SimSpec { link: SimLink::Serial { baud: 2400, format }, preamble: 2, st_bits: StBits::KINGDA, meters };
    let sim = Cjt188Sim::start(spec).await.unwrap_or_else(|e| panic!("line did not start: {e}"));
    let path = sim.path().unwrap_or_else(|| panic!("a serial line has a path"));
    let settings = LineSettings::new(path, 2400, "8E1", SERIAL_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let model = Cjt188Model { st_bits: StBits::KINGDA, preamble: 2, ..Cjt188Model::edition_2004() };
    let master = Cjt188Master::new(Cjt188Target { link: Cjt188Link::Serial(settings), timeout: SERIAL_TIMEOUT, model });
    (sim, master)
}

#[tokio::test]
async fn over_a_serial_line_meters_are_read_at_the_pace_of_the_wire() {
    let (sim, mut c) = serial_line(two_meters()).await;
    let started = std::time::Instant::now();
    let before = sim.volume(&a()).map(Volume::millilitres).unwrap_or_default();
    let got_a = volume(&mut c, a()).await;
    let got_b = volume(&mut c, b()).await;
    // Request (2 FE + 16 bytes) and 901F reply (2 FE + 35 bytes) of 11 bits at 2400 baud: 256 ms per exchange.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2 * 250), "two exchanges took only {elapsed:?}");
    // The meter reports 10 ml steps (litres to two decimals) and the volume rose during the exchange.
    assert!(got_a + 10 >= before && got_a <= sim.volume(&a()).map(Volume::millilitres).unwrap_or_default());
    assert!(got_b >= 500_000_000, "{got_b}");
    let closed = c.set_valve(&a(), false).await;
    assert!(matches!(closed, Ok(Ok(_))), "{closed:?}");
    assert_eq!(sim.valve_open(&a()), Some(false));
    assert_eq!(c.connects(), 1, "one port, opened once");
    sim.shutdown().await;
}

#[tokio::test]
async fn on_a_serial_line_a_garbled_or_dead_meter_fails_alone_and_the_port_is_kept() {
    let (sim, mut c) = serial_line(two_meters()).await;
    volume(&mut c, a()).await;

    set_fault(&sim, a(), Cjt188Fault { garbage: true, ..Cjt188Fault::default() });
    let got = c.read_meter(&a()).await;
    assert!(matches!(got, Err(Cjt188Error::Frame(_))), "{got:?}");
    volume(&mut c, b()).await;

    set_fault(&sim, a(), Cjt188Fault { silent: true, ..Cjt188Fault::default() });
    let started = std::time::Instant::now();
    let got = c.read_meter(&a()).await;
    assert!(matches!(got, Err(Cjt188Error::Timeout(_))), "{got:?}");
    // The timeout plus the wire time of the longest exchange (64 + 4 bytes at 2400 8E1 = 312 ms), not more.
    let cost = started.elapsed();
    assert!(cost >= SERIAL_TIMEOUT && cost < SERIAL_TIMEOUT + Duration::from_millis(312 + 500), "{cost:?}");
    volume(&mut c, b()).await;

    set_fault(&sim, a(), Cjt188Fault::default());
    volume(&mut c, a()).await;
    assert_eq!(c.connects(), 1, "a garbled or dead meter does not reopen the port");
    assert!(sim.malformed() == 0, "the master sent only well-formed frames");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_serial_line_silent_for_three_requests_in_a_row_is_reopened() {
    let (sim, mut c) = serial_line(two_meters()).await;
    volume(&mut c, a()).await;
    set_fault(&sim, a(), Cjt188Fault { silent: true, ..Cjt188Fault::default() });
    set_fault(&sim, b(), Cjt188Fault { silent: true, ..Cjt188Fault::default() });
    for meter in [a(), b()] {
        assert!(matches!(c.read_meter(&meter).await, Err(Cjt188Error::Timeout(_))));
        assert!(c.is_connected(), "kept after a timeout");
    }
    assert!(matches!(c.read_meter(&a()).await, Err(Cjt188Error::Timeout(_))));
    assert!(!c.is_connected(), "closed after three timeouts in a row (a wedged adapter looks like this)");
    set_fault(&sim, a(), Cjt188Fault::default());
    volume(&mut c, a()).await;
    assert_eq!(c.connects(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_serial_port_that_does_not_exist_is_a_connect_error() {
    let settings = LineSettings::new("/dev/waterworks-no-such-port", 2400, "8E1", SERIAL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let target =
        Cjt188Target { link: Cjt188Link::Serial(settings), timeout: SERIAL_TIMEOUT, model: Cjt188Model::default() };
    let mut c = Cjt188Master::new(target);
    let got = c.read_meter(&a()).await;
    assert!(
        matches!(&got, Err(Cjt188Error::Connect { addr, .. }) if addr == "/dev/waterworks-no-such-port"),
        "{got:?}"
    );
    assert_eq!(c.connects(), 0);
}
