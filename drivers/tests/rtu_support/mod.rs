//! Helpers shared by the RTU integration tests: slave specs, a simulated line, and the timing bounds a test
//! derives from the line's baud rate.
//!
//! Not every test file uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use sim::modbus::{ConcentratorLayout, FieldSpec, SimKind, SimParameter};
use sim::rtu::{RtuFault, RtuSim, RtuSimSpec, RtuSlaveSpec};
use waterworks_drivers::registers::{DataType, Function, RegisterSpec, WordOrder};
use waterworks_drivers::rtu::{CharFormat, LineSettings, RtuLine};

/// How late one timed wait may end: tokio's timer wheel has 1 ms slots and rounds deadlines up to the next one,
/// and a parked runtime sleeps in whole milliseconds, so a wait can end up to two ticks after its deadline.
pub const TIMER_LATENESS: Duration = Duration::from_millis(2);

/// How late a task may run after the event that wakes it (bytes arriving) on a busy 2-core machine.
pub const WAKE_LATENESS: Duration = Duration::from_millis(2);

/// How much later than the wire allows one exchange may end: two timed waits (the client's silence before its
/// request, and the simulator's pacing of the reply's last byte or the client's deadline) and one wake-up.
pub fn exchange_slack() -> Duration {
    2 * TIMER_LATENESS + WAKE_LATENESS
}

/// Per meter slot: a u32 volume in litres (ABCD) and a status word, stride 4, function 3.
pub fn litres_layout(meters: u16) -> ConcentratorLayout {
    ConcentratorLayout {
        meters,
        function: Function::Holding,
        base: 0,
        stride: 4,
        volume: FieldSpec { offset: 0, data_type: DataType::U32, word_order: WordOrder::Abcd, scale: 0.001 },
        status: Some(FieldSpec { offset: 2, data_type: DataType::U16, word_order: WordOrder::Abcd, scale: 1.0 }),
        status_bits: vec![("valve_closed".to_owned(), 0), ("battery_low".to_owned(), 1)],
        no_data: None,
        no_data_bit: None,
        district: None,
    }
}

pub fn concentrator(unit: u8, meters: u16) -> RtuSlaveSpec {
    RtuSlaveSpec {
        id: format!("c{unit}"),
        unit_id: unit,
        kind: SimKind::Concentrator(litres_layout(meters)),
        fault: RtuFault::default(),
    }
}

/// The register spec of the pH value of [`logger`]: f32 CDAB input registers 4 and 5.
pub fn ph_spec() -> RegisterSpec {
    RegisterSpec {
        function: Function::Input,
        address: 4,
        data_type: DataType::F32,
        word_order: WordOrder::Cdab,
        scale: 1.0,
    }
}

/// A logger with free chlorine, turbidity and pH, all f32 CDAB input registers from address 0.
pub fn logger(unit: u8) -> RtuSlaveSpec {
    let f32_cdab =
        |name: &str, address: u16| SimParameter { name: name.to_owned(), spec: RegisterSpec { address, ..ph_spec() } };
    RtuSlaveSpec {
        id: format!("q{unit}"),
        unit_id: unit,
        kind: SimKind::Logger(vec![f32_cdab("free_chlorine", 0), f32_cdab("turbidity", 2), f32_cdab("ph", 4)]),
        fault: RtuFault::default(),
    }
}

/// A logger fault that forces pH to `ph`, on top of `fault`.
pub fn forced_ph(ph: f64, fault: RtuFault) -> RtuFault {
    RtuFault { values: BTreeMap::from([("ph".to_owned(), ph)]), ..fault }
}

/// Starts a simulated line with these slaves.
pub fn start_line(baud: u32, format: &str, slaves: Vec<RtuSlaveSpec>) -> RtuSim {
    let format: CharFormat = format.parse().unwrap_or_else(|e| panic!("{format}: {e}"));
    match RtuSim::start(RtuSimSpec { baud, format, slaves, speed: 1.0, seed: 2024 }) {
        Ok(sim) => sim,
        Err(e) => panic!("simulated line did not start: {e}"),
    }
}

/// A client line on the simulator's pty.
pub fn client(sim: &RtuSim, timeout: Duration) -> RtuLine {
    RtuLine::new(sim.line_settings(timeout))
}

/// Wire time of one successful exchange as the simulator paces it and the client waits for it: the client's
/// t3.5 before the request, the request, the slave's t3.5 (end-of-frame detection), the reply.
pub fn exchange_time(settings: &LineSettings, request: usize, reply: usize) -> Duration {
    settings.silence() + settings.wire_time(request) + settings.silence() + settings.wire_time(reply)
}

/// Reads the pH of logger `unit` and decodes it.
pub async fn read_ph(line: &mut RtuLine, unit: u8) -> Result<f64, String> {
    let spec = ph_spec();
    match line.read_registers(unit, spec.function, spec.address, 2).await {
        Ok(Ok(words)) => spec.decode(&words).map_err(|e| e.to_string()),
        Ok(Err(exception)) => Err(exception.to_string()),
        Err(error) => Err(error.to_string()),
    }
}
