//! Thirty-two slaves on one simulated 9600-baud line, one of them dead: every cycle reads all 31 live slaves,
//! the dead one costs its own timeout and nothing more, and a cycle lasts what the wire and that one timeout
//! allow.

mod rtu_support;

use std::time::Duration;

use rtu_support::{client, concentrator, exchange_slack, exchange_time, start_line};
use sim::rtu::RtuFault;
use tokio::time::Instant;
use waterworks_drivers::modbus::ModbusError;
use waterworks_drivers::registers::{decode, DataType, Function, WordOrder};

const SLAVES: u8 = 32;
const DEAD: u8 = 17;
const CYCLES: u64 = 3;
const TIMEOUT: Duration = Duration::from_millis(100);
/// Request: unit, function, address, count, crc. Reply to a 2-register read: unit, function, count, 4 bytes, crc.
const REQUEST: usize = 8;
const REPLY: usize = 9;

#[tokio::test]
async fn a_dead_slave_costs_only_its_timeout_and_every_live_slave_is_read_every_cycle() {
    let slaves = (1..=SLAVES).map(|unit| concentrator(unit, 2)).collect();
    let sim = start_line(9600, "8N1", slaves);
    sim.set_fault(DEAD, RtuFault { silent: true, ..RtuFault::default() }).expect("fault");
    let settings = sim.line_settings(TIMEOUT);
    let mut line = client(&sim, TIMEOUT);

    // Bounds from the baud rate. A live exchange is t3.5 + request + t3.5 + reply on the wire. The dead slave's
    // slot is its request plus the timeout (its t3.5 before is counted, and the next request needs none after
    // it, since nothing was received). Each exchange may end later than that by `exchange_slack`.
    let live = exchange_time(&settings, REQUEST, REPLY);
    let dead = settings.wire_time(REQUEST) + TIMEOUT;
    let least = live * u32::from(SLAVES - 1) + dead;
    let slack = exchange_slack();
    let most = least + slack * u32::from(SLAVES);

    // Opening the port is not part of a cycle.
    line.read_registers(1, Function::Holding, 0, 2).await.expect("reply").expect("no exception");
    let before: Vec<u64> = (1..=SLAVES).map(|u| sim.requests(u).expect("slave")).collect();

    for cycle in 1..=CYCLES {
        let started = Instant::now();
        let (mut read, mut timed_out) = (0, 0);
        let mut dead_cost = Duration::ZERO;
        for unit in 1..=SLAVES {
            let t0 = Instant::now();
            match line.read_registers(unit, Function::Holding, 0, 2).await {
                Ok(Ok(words)) => {
                    let litres = decode(&words, DataType::U32, WordOrder::Abcd).expect("u32");
                    assert!(litres > 0.0, "unit {unit}: {litres}");
                    read += 1;
                }
                Err(ModbusError::Timeout(_)) if unit == DEAD => {
                    timed_out += 1;
                    dead_cost = t0.elapsed();
                }
                other => panic!("cycle {cycle}, unit {unit}: {other:?}"),
            }
        }
        let took = started.elapsed();
        assert_eq!((read, timed_out), (SLAVES - 1, 1), "cycle {cycle}");
        assert!(
            dead_cost >= dead && dead_cost <= dead + settings.silence() + slack,
            "cycle {cycle}: the dead slave cost {dead_cost:?}, its slot is {dead:?}"
        );
        assert!(
            took >= least && took <= most,
            "cycle {cycle} took {took:?}; the wire and one timeout allow {least:?} to {most:?}"
        );
        eprintln!("cycle {cycle}: {took:?} (bounds {least:?} to {most:?}), dead slave {dead_cost:?}");
    }

    for unit in 1..=SLAVES {
        let asked = sim.requests(unit).expect("slave") - before[usize::from(unit) - 1];
        assert_eq!(asked, CYCLES, "unit {unit} was asked once per cycle");
    }
    let c = line.counters();
    assert_eq!(c.timeouts, CYCLES);
    assert_eq!((c.late_waits, c.reopens, c.stale_frames, c.discarded_bytes), (0, 0, 0, 0));
    assert_eq!(sim.replies(DEAD), Some(0));
}
