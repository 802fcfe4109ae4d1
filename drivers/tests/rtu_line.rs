//! The RTU line against a simulated line over a real pty: reads decode to the simulator's truth, writes are
//! echoed and read back, exceptions are replies, unsendable requests never reach the wire, an absent unit costs
//! its timeout, and the port is reopened when closed.

mod rtu_support;

use std::time::Duration;

use rtu_support::{client, concentrator, exchange_slack, logger, read_ph, start_line};
use sim::rtu::RtuFault;
use tokio::time::Instant;
use waterworks_drivers::modbus::{Exception, ModbusError};
use waterworks_drivers::registers::{decode, DataType, Function, WordOrder};
use waterworks_drivers::rtu::{LineSettings, RtuLine};

const TIMEOUT: Duration = Duration::from_millis(150);

#[tokio::test]
async fn registers_read_and_decode_over_a_pty() {
    let sim = start_line(19_200, "8E1", vec![concentrator(5, 4), logger(9)]);
    let mut line = client(&sim, TIMEOUT);

    // Slot 1: volume (u32 litres) at 4-5, status at 6.
    let words = line.read_registers(5, Function::Holding, 4, 3).await.expect("reply").expect("no exception");
    assert_eq!(words.len(), 3);
    let volume = decode(&words[..2], DataType::U32, WordOrder::Abcd).expect("u32") * 0.001;
    let truth = sim.meter_volume(5, 1).expect("slot 1");
    assert!((truth - volume).abs() < 0.01 && truth >= volume, "read {volume} m³, simulator has {truth} m³");

    let ph = read_ph(&mut line, 9).await.expect("ph");
    assert_eq!(Some(ph), sim.parameter_value(9, "ph"), "the value read is the value served");
    assert!((6.0..9.0).contains(&ph), "{ph}");

    let c = line.counters();
    assert_eq!((c.requests, c.replies, c.opens, c.reopens, c.timeouts), (2, 2, 1, 0, 0));
    assert_eq!(sim.requests(5), Some(1));
    assert_eq!(sim.requests(9), Some(1));
}

#[tokio::test]
async fn writes_are_echoed_and_read_back() {
    let sim = start_line(38_400, "8N1", vec![concentrator(3, 2)]);
    let mut line = client(&sim, TIMEOUT);
    line.write_register(3, 200, 0xBEEF).await.expect("reply").expect("no exception");
    let words = line.read_registers(3, Function::Holding, 200, 1).await.expect("reply").expect("no exception");
    assert_eq!(words, [0xBEEF]);
    line.write_coil(3, 7, true).await.expect("reply").expect("no exception");
    line.write_coil(3, 7, false).await.expect("reply").expect("no exception");
    assert_eq!(line.counters().replies, 4);
}

#[tokio::test]
async fn exceptions_are_replies_not_failures() {
    let sim = start_line(19_200, "8E1", vec![concentrator(4, 2)]);
    let mut line = client(&sim, TIMEOUT);
    // Two meters of stride 4: address 8 is past the map.
    let reply = line.read_registers(4, Function::Holding, 8, 2).await.expect("a reply");
    assert_eq!(reply, Err(Exception(2)));
    sim.set_fault(4, RtuFault { exception: Some(6), ..RtuFault::default() }).expect("fault");
    assert_eq!(line.read_registers(4, Function::Holding, 0, 2).await.expect("a reply"), Err(Exception(6)));
    assert_eq!(line.write_register(4, 10, 1).await.expect("a reply"), Err(Exception(6)));
    let c = line.counters();
    assert_eq!((c.replies, c.exceptions, c.timeouts, c.bad_replies), (3, 3, 0, 0));
}

#[tokio::test]
async fn unsendable_requests_never_reach_the_line() {
    let sim = start_line(19_200, "8E1", vec![concentrator(1, 1)]);
    let mut line = client(&sim, TIMEOUT);
    for unit in [0, 248, 255] {
        let outcome = line.read_registers(unit, Function::Holding, 0, 1).await;
        assert!(matches!(outcome, Err(ModbusError::Protocol(_))), "unit {unit}: {outcome:?}");
    }
    for count in [0, 126] {
        let outcome = line.read_registers(1, Function::Holding, 0, count).await;
        assert!(matches!(outcome, Err(ModbusError::Protocol(_))), "count {count}: {outcome:?}");
    }
    assert!(!line.is_open());
    assert_eq!(line.counters().requests, 0);
    assert_eq!(sim.frames(), 0);
}

#[tokio::test]
async fn an_absent_unit_costs_its_timeout_and_nothing_else() {
    let sim = start_line(19_200, "8E1", vec![concentrator(1, 1)]);
    let settings = sim.line_settings(TIMEOUT);
    let mut line = RtuLine::new(settings.clone());
    line.read_registers(1, Function::Holding, 0, 2).await.expect("reply").expect("no exception");

    let started = Instant::now();
    let outcome = line.read_registers(42, Function::Holding, 0, 2).await;
    let cost = started.elapsed();
    assert!(matches!(outcome, Err(ModbusError::Timeout(t)) if t == TIMEOUT), "{outcome:?}");
    // The silence before the request, the request on the wire, then the timeout.
    let least = settings.wire_time(8) + TIMEOUT;
    let most = settings.silence() + least + exchange_slack();
    assert!(cost >= least && cost <= most, "an absent unit cost {cost:?}, expected {least:?} to {most:?}");

    // Another unit does not wait for unit 42's late reply.
    line.read_registers(1, Function::Holding, 0, 2).await.expect("reply").expect("no exception");
    let c = line.counters();
    assert_eq!((c.timeouts, c.late_waits, c.reopens), (1, 0, 0));
    assert_eq!(sim.frames(), 3, "the absent unit's request was on the line");
}

#[tokio::test]
async fn a_closed_port_is_reopened_and_a_missing_one_is_a_connect_error() {
    let sim = start_line(19_200, "8E1", vec![concentrator(1, 1)]);
    let mut line = client(&sim, TIMEOUT);
    line.read_registers(1, Function::Holding, 0, 2).await.expect("reply").expect("no exception");
    line.close();
    line.read_registers(1, Function::Holding, 0, 2).await.expect("reply after reopen").expect("no exception");
    assert_eq!((line.counters().opens, line.counters().reopens), (2, 1));

    let settings = LineSettings::new("/nonexistent/ttyRTU", 9600, "8E1", TIMEOUT).expect("valid settings");
    let mut missing = RtuLine::new(settings);
    let outcome = missing.read_registers(1, Function::Holding, 0, 1).await;
    assert!(matches!(&outcome, Err(ModbusError::Connect { addr, .. }) if addr == "/nonexistent/ttyRTU"), "{outcome:?}");
    assert_eq!(missing.counters().requests, 0);
}
