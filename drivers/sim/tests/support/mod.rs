//! Helpers shared by the simulator's integration tests: device specs, a guarded client per device, and an
//! "eventually" wait for facts that cannot be awaited directly (a counter another task bumps).
//!
//! Not every test file uses every helper, hence the `dead_code` allowance. Nothing here starts a simulator
//! by itself; each test builds exactly the devices it needs.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use drivers::modbus::{ModbusTcpClient, TcpTarget};
use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};
use waterworks_sim::modbus::{
    ConcentratorLayout, FieldSpec, ModbusFault, ModbusSim, ModbusSimSpec, SimDeviceSpec, SimKind, SimParameter,
};

/// Any free port on loopback.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A common concentrator model: per slot a u32 volume in litres (ABCD) and a status word, stride 4, function 3.
pub fn litres_layout(meters: u16) -> ConcentratorLayout {
    ConcentratorLayout {
        meters,
        function: Function::Holding,
        base: 0,
        stride: 4,
        volume: FieldSpec { offset: 0, data_type: DataType::U32, word_order: WordOrder::Abcd, scale: 0.001 },
        status: Some(FieldSpec { offset: 2, data_type: DataType::U16, word_order: WordOrder::Abcd, scale: 1.0 }),
        status_bits: vec![
            ("valve_closed".to_owned(), 0),
            ("battery_low".to_owned(), 1),
            ("magnetic_tamper".to_owned(), 2),
            ("reverse_flow".to_owned(), 3),
            ("meter_fault".to_owned(), 4),
        ],
        no_data: None,
        no_data_bit: None,
        district: None,
    }
}

pub fn concentrator(id: &str, layout: ConcentratorLayout) -> SimDeviceSpec {
    SimDeviceSpec {
        id: id.to_owned(),
        listen: any_port(),
        unit_id: 1,
        kind: SimKind::Concentrator(layout),
        fault: ModbusFault::default(),
    }
}

pub fn parameter(
    name: &str,
    function: Function,
    address: u16,
    data_type: DataType,
    order: WordOrder,
    scale: f64,
) -> SimParameter {
    SimParameter {
        name: name.to_owned(),
        spec: RegisterSpec { function, address, data_type, word_order: order, scale },
    }
}

/// A logger with free chlorine, turbidity and pH, all as f32 CDAB input registers from address 0.
pub fn small_logger(id: &str) -> SimDeviceSpec {
    let f32_cdab =
        |name: &str, address: u16| parameter(name, Function::Input, address, DataType::F32, WordOrder::Cdab, 1.0);
    SimDeviceSpec {
        id: id.to_owned(),
        listen: any_port(),
        unit_id: 1,
        kind: SimKind::Logger(vec![f32_cdab("free_chlorine", 0), f32_cdab("turbidity", 2), f32_cdab("ph", 4)]),
        fault: ModbusFault::default(),
    }
}

pub async fn start(devices: Vec<SimDeviceSpec>, speed: f64) -> ModbusSim {
    match ModbusSim::start(ModbusSimSpec { devices, speed, seed: 2024 }).await {
        Ok(sim) => sim,
        Err(e) => panic!("simulator did not start: {e}"),
    }
}

/// A guarded client for device `id` with unit id 1 and the given timeout.
pub fn client(sim: &ModbusSim, id: &str, timeout: Duration) -> ModbusTcpClient {
    let addr = sim.addr(id).unwrap_or_else(|| panic!("no device {id}"));
    ModbusTcpClient::new(TcpTarget { addr: addr.to_string(), unit_id: 1, timeout })
}

/// Waits until `check` holds, polling every 10 ms, and fails after 5 s naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
