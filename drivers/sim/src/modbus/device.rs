//! One simulated device's shared state (fault, counters, model) and the answer to one request PDU.
//!
//! Answering is pure given the model and a time: a request PDU goes in, a reply PDU comes out, and every
//! well-framed request gets a Modbus reply, if need be an exception (01 unknown function, 02 address outside
//! the map, 03 bad quantity or length). This module deliberately does not read sockets or apply faults; framing
//! and faults are `server.rs`'s business.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use drivers::registers::Function;

use super::exception::{exception_pdu, ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION};
use super::fault::ModbusFault;
use super::logger::Logger;
use super::meters::Concentrator;
use super::valve::Valve;

/// The most registers one read may ask for (Modbus application protocol, functions 3 and 4).
const MAX_READ: u16 = 125;
/// The most registers one function-16 write may carry.
const MAX_WRITE: u16 = 123;

/// What a device simulates.
#[derive(Debug)]
pub(crate) enum Model {
    Concentrator(Concentrator),
    Logger(Logger),
    Valve(Valve),
}

/// A device's registers: its model plus what clients have written.
#[derive(Debug)]
pub(crate) struct Registers {
    model: Model,
    /// Holding registers written with functions 6 and 16; they shadow the model for function 3 reads.
    holding: BTreeMap<u16, u16>,
    /// Coils written with function 5. Accepted and kept, but no supported function reads them back.
    coils: BTreeMap<u16, bool>,
}

/// The state of one simulated device, shared by its listener, its connections and the control API.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) unit_id: u8,
    pub(crate) kind: &'static str,
    fault: Mutex<ModbusFault>,
    /// Well-framed requests received, whatever the fault did with them.
    requests: AtomicU64,
    /// Byte streams that were not Modbus TCP requests; each closed its connection.
    malformed: AtomicU64,
    registers: Mutex<Registers>,
}

/// Locks `mutex` even if a thread panicked while holding it: every update here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Device {
    pub(crate) fn new(id: String, addr: SocketAddr, unit_id: u8, model: Model, fault: ModbusFault) -> Self {
        let kind = match model {
            Model::Concentrator(_) => "concentrator",
            Model::Logger(_) => "logger",
            Model::Valve(_) => "valve",
        };
        Device {
            id,
            addr,
            unit_id,
            kind,
            fault: Mutex::new(fault),
            requests: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            registers: Mutex::new(Registers { model, holding: BTreeMap::new(), coils: BTreeMap::new() }),
        }
    }

    pub(crate) fn fault(&self) -> ModbusFault {
        lock(&self.fault).clone()
    }

    /// Replaces the fault after checking it fits this device (forced values must name its parameters).
    pub(crate) fn set_fault(&self, fault: ModbusFault) -> Result<(), String> {
        {
            let registers = lock(&self.registers);
            let names: Vec<&str> = match &registers.model {
                Model::Logger(logger) => logger.names().collect(),
                Model::Concentrator(_) | Model::Valve(_) => Vec::new(),
            };
            let meters = match &registers.model {
                Model::Concentrator(c) => c.meters(),
                Model::Logger(_) | Model::Valve(_) => 0,
            };
            fault.check_for(&names, meters)?;
        }
        *lock(&self.fault) = fault;
        Ok(())
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// The current volume of a concentrator's meter at simulated time `t`.
    pub(crate) fn meter_volume(&self, slot: u16, t: f64) -> Option<f64> {
        match &mut lock(&self.registers).model {
            Model::Concentrator(c) => c.volume(slot, t),
            Model::Logger(_) | Model::Valve(_) => None,
        }
    }

    /// The value a logger last served for `name`.
    pub(crate) fn parameter_value(&self, name: &str) -> Option<f64> {
        match &lock(&self.registers).model {
            Model::Logger(logger) => logger.last_served(name),
            Model::Concentrator(_) | Model::Valve(_) => None,
        }
    }

    /// A valve's position now: `Some(true)` open, `Some(false)` closed, `None` moving or not a valve.
    pub(crate) fn valve_open(&self, t: f64) -> Option<bool> {
        match &mut lock(&self.registers).model {
            Model::Valve(v) => v.is_open(t),
            _ => None,
        }
    }

    /// Sets or clears a concentrator meter's status bit by name; false when there is no such meter or bit.
    pub(crate) fn set_meter_flag(&self, slot: u16, name: &str, on: bool) -> bool {
        match &mut lock(&self.registers).model {
            Model::Concentrator(c) => c.set_status_flag(slot, name, on),
            _ => false,
        }
    }

    /// Turns a valve by hand (no command); false when the device is not a valve.
    pub(crate) fn turn_valve_by_hand(&self, open: bool) -> bool {
        match &mut lock(&self.registers).model {
            Model::Valve(v) => {
                v.turn_by_hand(open);
                true
            }
            _ => false,
        }
    }

    /// Commands a valve has accepted.
    pub(crate) fn valve_commands(&self) -> Option<u64> {
        match &lock(&self.registers).model {
            Model::Valve(v) => Some(v.commands()),
            _ => None,
        }
    }

    /// Answers one request PDU (function code first) at simulated time `t`, with `forced` logger values.
    pub(crate) fn answer(&self, pdu: &[u8], t: f64, fault: &ModbusFault) -> Vec<u8> {
        lock(&self.registers).answer(pdu, t, fault)
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Checks that `count` registers from `address` stay inside the 16-bit address space.
fn in_address_space(address: u16, count: u16) -> bool {
    u32::from(address) + u32::from(count) <= 0x1_0000
}

impl Registers {
    /// Answers one request PDU; see the module doc for the exceptions.
    fn answer(&mut self, pdu: &[u8], t: f64, fault: &ModbusFault) -> Vec<u8> {
        let forced = &fault.values;
        let Some((&function, data)) = pdu.split_first() else {
            // The framing layer never passes an empty PDU; answer something harmless if it ever does.
            return exception_pdu(0, ILLEGAL_FUNCTION);
        };
        let result = match function {
            3 | 4 => self.read(function, data, t, forced, &fault.silent_meters),
            5 => self.write_coil(data, t, fault.stuck),
            6 => self.write_register(data, t, fault.stuck),
            16 => self.write_registers(data),
            _ => Err(ILLEGAL_FUNCTION),
        };
        match result {
            Ok(mut reply) => {
                reply.insert(0, function);
                reply
            }
            Err(code) => exception_pdu(function, code),
        }
    }

    /// Functions 3 and 4: every register asked for must be in the map (or written, for function 3).
    fn read(
        &mut self,
        function: u8,
        data: &[u8],
        t: f64,
        forced: &BTreeMap<String, f64>,
        silent_meters: &[u16],
    ) -> Result<Vec<u8>, u8> {
        if data.len() != 4 {
            return Err(ILLEGAL_DATA_VALUE);
        }
        let (address, count) = (be16(data, 0), be16(data, 2));
        if count == 0 || count > MAX_READ {
            return Err(ILLEGAL_DATA_VALUE);
        }
        if !in_address_space(address, count) {
            return Err(ILLEGAL_DATA_ADDRESS);
        }
        let function = if function == 3 { Function::Holding } else { Function::Input };
        let mut words = vec![None; usize::from(count)];
        match &mut self.model {
            Model::Concentrator(c) => c.fill(function, address, &mut words, t, silent_meters),
            Model::Logger(l) => l.fill(function, address, &mut words, t, forced),
            Model::Valve(v) => v.fill(function, address, &mut words, t),
        }
        if function == Function::Holding {
            for (&a, &value) in self.holding.range(address..=address.saturating_add(count - 1)) {
                words[usize::from(a - address)] = Some(value);
            }
        }
        let mut reply = Vec::with_capacity(1 + 2 * words.len());
        // `count` ≤ 125, so the byte count fits in a byte.
        reply.push((2 * count) as u8);
        for word in words {
            reply.extend_from_slice(&word.ok_or(ILLEGAL_DATA_ADDRESS)?.to_be_bytes());
        }
        Ok(reply)
    }

    /// Function 5: the value must be 0xFF00 (on) or 0x0000 (off); the reply echoes the request.
    fn write_coil(&mut self, data: &[u8], t: f64, stuck: bool) -> Result<Vec<u8>, u8> {
        if data.len() != 4 {
            return Err(ILLEGAL_DATA_VALUE);
        }
        let on = match be16(data, 2) {
            0xFF00 => true,
            0x0000 => false,
            _ => return Err(ILLEGAL_DATA_VALUE),
        };
        if let Model::Valve(v) = &mut self.model {
            if let Some(result) = v.write_coil(be16(data, 0), on, t, stuck) {
                return result.map(|()| data.to_vec());
            }
        }
        self.coils.insert(be16(data, 0), on);
        Ok(data.to_vec())
    }

    /// Function 6: the reply echoes the request. A valve's command register moves the valve instead.
    fn write_register(&mut self, data: &[u8], t: f64, stuck: bool) -> Result<Vec<u8>, u8> {
        if data.len() != 4 {
            return Err(ILLEGAL_DATA_VALUE);
        }
        if let Model::Valve(v) = &mut self.model {
            if let Some(result) = v.write(be16(data, 0), be16(data, 2), t, stuck) {
                return result.map(|()| data.to_vec());
            }
        }
        self.holding.insert(be16(data, 0), be16(data, 2));
        Ok(data.to_vec())
    }

    /// Function 16: address, quantity, byte count, then the values; the reply is address and quantity.
    fn write_registers(&mut self, data: &[u8]) -> Result<Vec<u8>, u8> {
        if data.len() < 5 {
            return Err(ILLEGAL_DATA_VALUE);
        }
        let (address, count, byte_count) = (be16(data, 0), be16(data, 2), data[4]);
        if count == 0 || count > MAX_WRITE || usize::from(byte_count) != 2 * usize::from(count) {
            return Err(ILLEGAL_DATA_VALUE);
        }
        if data.len() != 5 + usize::from(byte_count) {
            return Err(ILLEGAL_DATA_VALUE);
        }
        if !in_address_space(address, count) {
            return Err(ILLEGAL_DATA_ADDRESS);
        }
        for (i, pair) in data[5..].chunks_exact(2).enumerate() {
            // `i` < 123 and the range was checked, so the address cannot overflow.
            self.holding.insert(address + i as u16, u16::from_be_bytes([pair[0], pair[1]]));
        }
        Ok(data[..4].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::spec::SimParameter;
    use drivers::registers::{DataType, RegisterSpec, WordOrder};

    const T0: f64 = 1_772_323_200.0;

    fn logger_device() -> Device {
        let ph = SimParameter {
            name: "ph".to_owned(),
            spec: RegisterSpec {
                function: Function::Input,
                address: 10,
                data_type: DataType::I16,
                word_order: WordOrder::Abcd,
                scale: 0.01,
            },
        };
        let model = Model::Logger(Logger::new(vec![ph], 1));
        Device::new("q1".to_owned(), SocketAddr::from(([127, 0, 0, 1], 0)), 1, model, ModbusFault::default())
    }

    /// Sends `request` and compares the reply PDU with `expect`.
    fn check(device: &Device, request: &[u8], expect: &[u8]) {
        assert_eq!(device.answer(request, T0, &ModbusFault::default()), expect, "request {request:02X?}");
    }

    #[test]
    fn reads_answer_in_the_map_and_refuse_outside() {
        let d = logger_device();
        let reply = d.answer(&[4, 0, 10, 0, 1], T0, &ModbusFault::default());
        assert_eq!(&reply[..2], &[4, 2]);
        let ph = f64::from(i16::from_be_bytes([reply[2], reply[3]])) * 0.01;
        assert!((ph - 7.2).abs() < 0.2, "{ph}");
        check(&d, &[4, 0, 9, 0, 2], &[0x84, ILLEGAL_DATA_ADDRESS]);
        check(&d, &[3, 0, 10, 0, 1], &[0x83, ILLEGAL_DATA_ADDRESS]);
        check(&d, &[4, 0, 10, 0, 0], &[0x84, ILLEGAL_DATA_VALUE]);
        check(&d, &[4, 0, 10, 0, 126], &[0x84, ILLEGAL_DATA_VALUE]);
        check(&d, &[4, 0xFF, 0xFF, 0, 2], &[0x84, ILLEGAL_DATA_ADDRESS]);
        check(&d, &[4, 0, 10, 0], &[0x84, ILLEGAL_DATA_VALUE]);
        check(&d, &[0x2B, 0x0E, 1, 0], &[0xAB, ILLEGAL_FUNCTION]);
        check(&d, &[1, 0, 0, 0, 1], &[0x81, ILLEGAL_FUNCTION]);
    }

    #[test]
    fn writes_land_in_the_overlay() {
        let d = logger_device();
        check(&d, &[6, 0, 20, 0x12, 0x34], &[6, 0, 20, 0x12, 0x34]);
        check(&d, &[3, 0, 20, 0, 1], &[3, 2, 0x12, 0x34]);
        check(&d, &[16, 0, 21, 0, 2, 4, 0, 1, 0, 2], &[16, 0, 21, 0, 2]);
        check(&d, &[3, 0, 20, 0, 3], &[3, 6, 0x12, 0x34, 0, 1, 0, 2]);
        check(&d, &[3, 0, 20, 0, 4], &[0x83, ILLEGAL_DATA_ADDRESS]);
        check(&d, &[16, 0, 21, 0, 2, 3, 0, 1, 0], &[0x90, ILLEGAL_DATA_VALUE]);
        check(&d, &[16, 0, 21, 0, 2, 4, 0, 1, 0], &[0x90, ILLEGAL_DATA_VALUE]);
        check(&d, &[16, 0xFF, 0xFF, 0, 2, 4, 0, 1, 0, 2], &[0x90, ILLEGAL_DATA_ADDRESS]);
        check(&d, &[16, 0, 0], &[0x90, ILLEGAL_DATA_VALUE]);
        check(&d, &[5, 0, 7, 0xFF, 0x00], &[5, 0, 7, 0xFF, 0x00]);
        check(&d, &[5, 0, 7, 0x12, 0x34], &[0x85, ILLEGAL_DATA_VALUE]);
    }

    #[test]
    fn forced_values_must_name_a_parameter() {
        let d = logger_device();
        let ok = ModbusFault { values: BTreeMap::from([("ph".to_owned(), 9.9)]), ..ModbusFault::default() };
        assert_eq!(d.set_fault(ok.clone()), Ok(()));
        assert_eq!(d.fault(), ok);
        let bad = ModbusFault { values: BTreeMap::from([("lead".to_owned(), 1.0)]), ..ModbusFault::default() };
        assert_eq!(d.set_fault(bad), Err("no parameter \"lead\" to force".to_owned()));
        assert_eq!(d.fault(), ok, "a refused fault leaves the old one");
    }
}
