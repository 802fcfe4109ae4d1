//! Faulty replies on a simulated line: garbage and bad CRCs are rejected and the slave's next request succeeds;
//! a late reply is never taken for the answer to a later request, whether that request goes to the same slave
//! or to another one.

mod rtu_support;

use std::time::Duration;

use rtu_support::{client, forced_ph, logger, read_ph, start_line};
use sim::rtu::RtuFault;
use waterworks_drivers::modbus::ModbusError;
use waterworks_drivers::registers::Function;

async fn rejected_then_recovered(fault: RtuFault, what: &str) {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let sim = start_line(19_200, "8E1", vec![logger(2)]);
    let mut line = client(&sim, TIMEOUT);
    sim.set_fault(2, fault).expect("fault");

    let outcome = line.read_registers(2, Function::Input, 4, 2).await;
    assert!(matches!(&outcome, Err(ModbusError::BadReply(_))), "{what}: {outcome:?}");
    assert_eq!(sim.replies(2), Some(1), "{what}: the slave did answer");
    let c = line.counters();
    assert_eq!((c.bad_replies, c.replies, c.timeouts), (1, 0, 0), "{what}");
    assert!(c.discarded_bytes > 0, "{what}: the bytes were dropped");

    sim.set_fault(2, RtuFault::default()).expect("fault cleared");
    let ph = read_ph(&mut line, 2).await.unwrap_or_else(|e| panic!("{what}: next request failed: {e}"));
    assert_eq!(Some(ph), sim.parameter_value(2, "ph"), "{what}");
    assert_eq!(line.counters().replies, 1, "{what}");
}

#[tokio::test]
async fn garbage_is_rejected_and_the_next_request_succeeds() {
    rejected_then_recovered(RtuFault { garbage: true, ..RtuFault::default() }, "garbage").await;
}

#[tokio::test]
async fn a_bad_crc_is_rejected_and_the_next_request_succeeds() {
    rejected_then_recovered(RtuFault { bad_crc: true, ..RtuFault::default() }, "bad crc").await;
}

#[tokio::test]
async fn a_late_reply_is_not_taken_for_the_same_slaves_next_answer() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let sim = start_line(19_200, "8E1", vec![logger(3)]);
    let mut line = client(&sim, TIMEOUT);
    // Half a timeout late: the reply (pH 7) arrives after the request has been given up, and a naive client
    // asking again at once would read it as the answer to its second request (pH 9).
    let late_ms = u64::try_from((TIMEOUT * 3 / 2).as_millis()).expect("small");
    sim.set_fault(3, forced_ph(7.0, RtuFault { delay_ms: late_ms, ..RtuFault::default() })).expect("fault");
    let outcome = line.read_registers(3, Function::Input, 4, 2).await;
    assert!(matches!(outcome, Err(ModbusError::Timeout(_))), "{outcome:?}");

    sim.set_fault(3, forced_ph(9.0, RtuFault::default())).expect("fault");
    assert_eq!(read_ph(&mut line, 3).await, Ok(9.0));
    assert_eq!(sim.replies(3), Some(2), "the late reply was sent");
    let c = line.counters();
    assert_eq!((c.late_waits, c.stale_frames, c.timeouts, c.replies), (1, 1, 1, 1));
}

#[tokio::test]
async fn a_late_reply_during_another_slaves_exchange_is_skipped() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let sim = start_line(19_200, "8E1", vec![logger(3), logger(4)]);
    let mut line = client(&sim, TIMEOUT);
    // Unit 3 answers 50 ms after its request is given up; unit 4 takes 100 ms, so unit 3's late reply arrives
    // in the middle of unit 4's exchange, before unit 4's own reply.
    sim.set_fault(3, forced_ph(7.0, RtuFault { delay_ms: 250, ..RtuFault::default() })).expect("fault");
    sim.set_fault(4, forced_ph(8.0, RtuFault { delay_ms: 100, ..RtuFault::default() })).expect("fault");

    let outcome = line.read_registers(3, Function::Input, 4, 2).await;
    assert!(matches!(outcome, Err(ModbusError::Timeout(_))), "{outcome:?}");
    assert_eq!(read_ph(&mut line, 4).await, Ok(8.0));
    assert_eq!(sim.replies(3), Some(1), "unit 3's late reply was on the line before unit 4's");
    assert_eq!(line.counters().stale_frames, 1);

    // Unit 3's late reply was heard, so asking it again does not wait for it.
    sim.set_fault(3, forced_ph(9.0, RtuFault::default())).expect("fault");
    assert_eq!(read_ph(&mut line, 3).await, Ok(9.0));
    let c = line.counters();
    assert_eq!((c.late_waits, c.stale_frames, c.timeouts, c.replies), (0, 1, 1, 2));
}
