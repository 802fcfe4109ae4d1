//! Resolved device specifications, built by `src/config/` from the config file and the device register
//! maps. Everything here is already validated: ids unique, registers within a Modbus request, cycles > 0.

use std::time::Duration;

use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};

pub use crate::modbus_link::ModbusPath;
use crate::model::{DeviceId, MeterId, RegionId};

/// One field device.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub id: DeviceId,
    pub name: String,
    pub region: RegionId,
    /// The primary communication path.
    pub target: ModbusPath,
    /// Backup paths, tried in order when the path in use fails (R-A8).
    pub backups: Vec<ModbusPath>,
    /// Failed attempts in a row on the path in use before moving to the next path.
    pub failover_after: u32,
    /// While on a backup, probe the primary every this many cycles.
    pub probe_every: u32,
    /// Further attempts within one cycle for values that were not read.
    pub retries: u32,
    pub retry_delay: Duration,
    pub kind: DeviceKindSpec,
}

#[derive(Clone, Debug)]
pub enum DeviceKindSpec {
    Concentrator(ConcentratorSpec),
    Logger(LoggerSpec),
}

/// A concentrator of remote-read meters (R-A1).
#[derive(Clone, Debug)]
pub struct ConcentratorSpec {
    pub cycle: Duration,
    pub meters: Vec<MeterSpec>,
    pub layout: MeterLayout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterSpec {
    pub id: MeterId,
    /// Position in the concentrator's meter table.
    pub slot: u16,
}

/// A value inside a meter slot's register block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldLayout {
    pub offset: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
}

impl FieldLayout {
    /// Registers from the start of the slot to the end of this field.
    pub fn end(&self) -> u16 {
        self.offset + self.data_type.register_count()
    }
}

/// How a concentrator model lays out its meter table (from `config/devices/*.toml`, R-A9).
#[derive(Clone, Debug, PartialEq)]
pub struct MeterLayout {
    pub function: Function,
    pub base: u16,
    pub stride: u16,
    /// Cumulative volume; engineering value in m³.
    pub volume: FieldLayout,
    pub status: Option<FieldLayout>,
    /// Device status bit number → model flag (`MeterStatus::*`).
    pub status_bits: Vec<(u8, u16)>,
    /// Most registers one request may read (Modbus allows 125).
    pub max_registers: u16,
    /// The "no data" marker of the model, if it has one (issue 7 §4): a slot whose meter the concentrator
    /// did not read this cycle says so instead of holding a volume, and the server counts it as that meter's
    /// missed cycle rather than a reading.
    pub no_data: NoDataMarker,
}

/// How a concentrator model marks a meter slot it has no reading for (`[meters] no_data`, `no_data_bit`).
/// Both empty (the default) means the model cannot say so: every slot it serves is taken as a reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoDataMarker {
    /// The volume register's bits (word order undone, before the scale) when the slot has no reading, e.g.
    /// 0xFFFFFFFF for a u32 register.
    pub volume: Option<u64>,
    /// A bit of the status word (0 = least significant) set while the meter was not read.
    pub status_bit: Option<u8>,
}

impl MeterLayout {
    /// The first volume the volume register cannot show (its modulus, issue 7 §4): 2^16 or 2^32 raw counts
    /// times the scale for unsigned integers, 2^15 or 2^31 for signed ones; none for floats, which do not wrap.
    pub fn register_modulus(&self) -> Option<crate::model::Volume> {
        let counts: f64 = match self.volume.data_type {
            DataType::U16 => 65_536.0,
            DataType::I16 => 32_768.0,
            DataType::U32 => 4_294_967_296.0,
            DataType::I32 => 2_147_483_648.0,
            DataType::F32 | DataType::F64 => return None,
        };
        crate::model::Volume::from_m3(counts * self.volume.scale.abs()).ok()
    }
}

/// A water-quality data logger (R-A2).
#[derive(Clone, Debug)]
pub struct LoggerSpec {
    pub parameters: Vec<ParameterSpec>,
}

/// One measured parameter of a logger, with its site limits (R-B3, configurable per site).
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterSpec {
    pub name: String,
    pub register: RegisterSpec,
    pub unit: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub cycle: Duration,
}

impl DeviceSpec {
    /// How many values one full cycle reads (meters or parameters).
    pub fn value_count(&self) -> usize {
        match &self.kind {
            DeviceKindSpec::Concentrator(c) => c.meters.len(),
            DeviceKindSpec::Logger(l) => l.parameters.len(),
        }
    }

    /// The cycle of each value, in value order.
    pub fn cycles(&self) -> Vec<Duration> {
        match &self.kind {
            DeviceKindSpec::Concentrator(c) => vec![c.cycle; c.meters.len()],
            DeviceKindSpec::Logger(l) => l.parameters.iter().map(|p| p.cycle).collect(),
        }
    }

    /// The shortest cycle: the device's cycle as shown.
    pub fn shortest_cycle(&self) -> Duration {
        self.cycles().into_iter().min().unwrap_or(Duration::from_secs(900))
    }

    /// Every path, primary first.
    pub fn paths(&self) -> impl Iterator<Item = &ModbusPath> {
        std::iter::once(&self.target).chain(self.backups.iter())
    }

    /// How path `i` is shown: `primary tcp 10.0.0.5:502 unit 1`, `backup 1 rtu rs485-1 unit 7`.
    pub fn path_name(&self, i: usize) -> String {
        let path = self.paths().nth(i).unwrap_or(&self.target);
        let role = if i == 0 { "primary".to_owned() } else { format!("backup {i}") };
        format!("{role} {path}")
    }

    pub fn path(&self) -> String {
        self.path_name(0)
    }
}
