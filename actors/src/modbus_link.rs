//! How a Modbus device or valve is reached, and the connection along that path: a Modbus TCP connection of its
//! own, or a unit on a shared RS-485 line whose bus actor serialises every request on the line (issue 3 §1, §6).
//! Field devices and register valves use the same two types, so a path means the same for both.

use std::fmt;
use std::time::Duration;

use drivers::modbus::{ModbusResult, ModbusTcpClient, TcpTarget};
use drivers::registers::Function;

use crate::rtu_bus::{RtuBusMsg, RtuRequest};
use crate::supervisor::Slot;

/// How long a request to a unit on a shared line may wait, in units of its own timeout: the requests queued
/// ahead of it on the line, each bounded by its own timeout.
const LINE_QUEUE_TIMEOUTS: u32 = 40;

/// One communication path of a Modbus device, resolved from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModbusPath {
    /// Modbus TCP to `host:port` (the device, or a serial-to-TCP gateway).
    Tcp(TcpTarget),
    /// Modbus RTU: unit `unit_id` on the `[[line]]` with this id.
    Rtu { line: String, unit_id: u8, timeout: Duration },
}

impl ModbusPath {
    pub fn unit_id(&self) -> u8 {
        match self {
            ModbusPath::Tcp(t) => t.unit_id,
            ModbusPath::Rtu { unit_id, .. } => *unit_id,
        }
    }

    /// Each request's timeout on this path.
    pub fn timeout(&self) -> Duration {
        match self {
            ModbusPath::Tcp(t) => t.timeout,
            ModbusPath::Rtu { timeout, .. } => *timeout,
        }
    }

    /// The serial line, if this is an RTU path.
    pub fn line(&self) -> Option<&str> {
        match self {
            ModbusPath::Tcp(_) => None,
            ModbusPath::Rtu { line, .. } => Some(line),
        }
    }

    /// The TCP target, if this is a TCP path.
    pub fn tcp(&self) -> Option<&TcpTarget> {
        match self {
            ModbusPath::Tcp(t) => Some(t),
            ModbusPath::Rtu { .. } => None,
        }
    }

    /// The longest a request on this path may take, queueing on a shared line included.
    pub fn max_wait(&self) -> Duration {
        match self {
            ModbusPath::Tcp(t) => t.timeout,
            ModbusPath::Rtu { timeout, .. } => timeout.saturating_mul(LINE_QUEUE_TIMEOUTS),
        }
    }
}

/// `tcp 10.0.0.5:502 unit 1`, `rtu rs485-1 unit 7`: how the HMI shows a path.
impl fmt::Display for ModbusPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModbusPath::Tcp(t) => write!(f, "tcp {} unit {}", t.addr, t.unit_id),
            ModbusPath::Rtu { line, unit_id, .. } => write!(f, "rtu {line} unit {unit_id}"),
        }
    }
}

/// The connection along one path, owned by one device or valve actor.
pub enum ModbusLink {
    Tcp(ModbusTcpClient),
    Rtu { bus: Slot<RtuBusMsg>, unit: u8, wait: Duration },
}

impl ModbusLink {
    /// A link along `path`. An RTU path whose line has no bus actor gets an empty slot, so every request fails
    /// as a transport error (configuration checks lines, so this is only a line being restarted).
    pub fn new(path: &ModbusPath, buses: &std::collections::HashMap<String, Slot<RtuBusMsg>>) -> Self {
        match path {
            ModbusPath::Tcp(t) => ModbusLink::Tcp(ModbusTcpClient::new(t.clone())),
            ModbusPath::Rtu { line, unit_id, .. } => ModbusLink::Rtu {
                bus: buses.get(line).cloned().unwrap_or_default(),
                unit: *unit_id,
                wait: path.max_wait(),
            },
        }
    }

    pub async fn read_registers(&mut self, function: Function, address: u16, count: u16) -> ModbusResult<Vec<u16>> {
        self.request(RtuRequest::Read { function, address, count }).await
    }

    pub async fn write_register(&mut self, address: u16, value: u16) -> ModbusResult<()> {
        let done = self.request(RtuRequest::WriteRegister { address, value }).await;
        done.map(|r| r.map(drop))
    }

    pub async fn write_coil(&mut self, address: u16, on: bool) -> ModbusResult<()> {
        let done = self.request(RtuRequest::WriteCoil { address, on }).await;
        done.map(|r| r.map(drop))
    }

    /// Drops a TCP connection (the next request reconnects); a shared line is not this link's to close.
    pub fn disconnect(&mut self) {
        if let ModbusLink::Tcp(client) = self {
            client.disconnect();
        }
    }

    async fn request(&mut self, request: RtuRequest) -> ModbusResult<Vec<u16>> {
        match self {
            ModbusLink::Tcp(client) => match request {
                RtuRequest::Read { function, address, count } => client.read_registers(function, address, count).await,
                RtuRequest::WriteRegister { address, value } => {
                    client.write_register(address, value).await.map(|r| r.map(|()| Vec::new()))
                }
                RtuRequest::WriteCoil { address, on } => {
                    client.write_coil(address, on).await.map(|r| r.map(|()| Vec::new()))
                }
            },
            ModbusLink::Rtu { bus, unit, wait } => crate::rtu_bus::exchange(bus, *unit, request, *wait).await,
        }
    }
}
