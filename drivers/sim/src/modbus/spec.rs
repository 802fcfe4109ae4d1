//! What the simulator is asked to play: devices, their register layouts, and the checks that a spec makes
//! sense before any socket opens.
//!
//! These are plain data types built by the caller (the `waterworks simulate` command builds them from the
//! device register maps). This module deliberately does not parse TOML or know the config file format, and it
//! does not decide what a register means beyond what the layout says.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};

use super::fault::ModbusFault;

/// The whole simulation: a set of devices, a time acceleration and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusSimSpec {
    pub devices: Vec<SimDeviceSpec>,
    /// Simulated time runs this many times faster than wall time (consumption profile, drift).
    pub speed: f64,
    /// The one seed every simulated quantity derives from; the same seed gives the same meters.
    pub seed: u64,
}

/// One simulated field device behind its own Modbus TCP listener.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDeviceSpec {
    pub id: String,
    /// Where to listen; port 0 picks a free port (see [`super::ModbusSim::addr`]).
    pub listen: SocketAddr,
    pub unit_id: u8,
    pub kind: SimKind,
    /// The fault the device starts with; usually `ModbusFault::default()` (none).
    pub fault: ModbusFault,
}

/// What a simulated device plays.
#[derive(Debug, Clone, PartialEq)]
pub enum SimKind {
    /// A meter-reading concentrator: a block of registers per meter slot.
    Concentrator(ConcentratorLayout),
    /// A water-quality logger: one register value per named parameter.
    Logger(Vec<SimParameter>),
    /// A remote valve driven through a command register, read back through a status register.
    Valve(ValveLayout),
}

/// The register interface of a remote valve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValveLayout {
    /// Commands arrive as a coil (function 5: on = open, off = close) instead of a register write.
    pub command_coil: bool,
    /// Holding register written with function 6 (or the coil, see `command_coil`) to command the valve.
    pub command_address: u16,
    pub open_value: u16,
    pub close_value: u16,
    /// Where the valve reports its position.
    pub status_function: Function,
    pub status_address: u16,
    pub closed_code: u16,
    pub open_code: u16,
    pub moving_code: u16,
    pub fault_code: u16,
    /// Simulated seconds from a command to the new end position.
    pub travel_s: f64,
    pub initially_open: bool,
}

/// The register layout of a concentrator: slot `i` occupies `stride` registers starting at `base + i * stride`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcentratorLayout {
    /// Number of meters behind this concentrator, slots `0..meters`.
    pub meters: u16,
    /// The read function the meter blocks answer to (3 or 4).
    pub function: Function,
    /// Address of slot 0's block.
    pub base: u16,
    /// Registers per meter slot.
    pub stride: u16,
    /// Cumulative volume in m³ (engineering value = raw × scale).
    pub volume: FieldSpec,
    /// The status word, if the model has one.
    pub status: Option<FieldSpec>,
    /// Bit meanings of the status word, e.g. `("battery_low", 1)`. The simulator sets `battery_low`,
    /// `valve_closed` and `magnetic_tamper` when they are named here; other bits stay clear.
    pub status_bits: Vec<(String, u8)>,
    /// The volume register's bits that say "no data" for a slot (word order undone), if the model has them.
    pub no_data: Option<u64>,
    /// The status-word bit that says "not read", if the model has one.
    pub no_data_bit: Option<u8>,
    /// A slot that plays a zone's master (district) meter: it measures what every other slot used, plus a leak
    /// (issue 9 §1, so the demo shows leakage).
    pub district: Option<DistrictMeter>,
}

/// A master (district) meter slot: its use is the sum of the other slots' use divided by `1 − leak`, so the
/// zone's leakage rate `(master − members) / master` is `leak`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistrictMeter {
    pub slot: u16,
    /// 0 ≤ leak < 1.
    pub leak: f64,
}

/// One value inside a meter slot's block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    /// Offset from the start of the slot's block.
    pub offset: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    /// Engineering value = raw value × scale.
    pub scale: f64,
}

/// One named logger parameter and where its value lives.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParameter {
    pub name: String,
    pub spec: RegisterSpec,
}

impl FieldSpec {
    /// The register spec of this field when its first register is at `address`.
    pub(crate) fn register_spec(&self, function: Function, address: u16) -> RegisterSpec {
        RegisterSpec { function, address, data_type: self.data_type, word_order: self.word_order, scale: self.scale }
    }
}

/// How many bits a status word of `data_type` can carry, or `None` when the type is not an integer.
fn status_width(data_type: DataType) -> Option<u8> {
    match data_type {
        DataType::U16 | DataType::I16 => Some(16),
        DataType::U32 | DataType::I32 => Some(32),
        DataType::F32 | DataType::F64 => None,
    }
}

fn check_scale(what: &str, scale: f64) -> Result<(), String> {
    if scale.is_finite() && scale != 0.0 {
        Ok(())
    } else {
        Err(format!("{what} scale must be a finite non-zero number, got {scale}"))
    }
}

/// Checks the spec-wide settings: a usable speed, and device ids that are present and unique.
pub(crate) fn check_spec(spec: &ModbusSimSpec) -> Result<(), String> {
    if !(spec.speed.is_finite() && spec.speed > 0.0) {
        return Err(format!("speed must be a finite number above 0, got {}", spec.speed));
    }
    let mut seen = BTreeSet::new();
    for device in &spec.devices {
        if device.id.trim().is_empty() {
            return Err("a device has an empty id".to_owned());
        }
        if !seen.insert(device.id.as_str()) {
            return Err(format!("device id {:?} is used twice", device.id));
        }
    }
    Ok(())
}

/// Checks one device's layout; the reason names the offending field.
pub(crate) fn check_kind(kind: &SimKind) -> Result<(), String> {
    match kind {
        SimKind::Concentrator(layout) => check_concentrator(layout),
        SimKind::Logger(parameters) => check_logger(parameters),
        SimKind::Valve(layout) => check_valve(layout),
    }
}

fn check_valve(layout: &ValveLayout) -> Result<(), String> {
    if !layout.command_coil && layout.open_value == layout.close_value {
        return Err("open and close command values must differ".to_owned());
    }
    let codes = [layout.closed_code, layout.open_code, layout.moving_code, layout.fault_code];
    if (0..codes.len()).any(|i| codes[i + 1..].contains(&codes[i])) {
        return Err("valve status codes must all differ".to_owned());
    }
    if !(layout.travel_s.is_finite() && layout.travel_s >= 0.0) {
        return Err(format!("travel time must be a finite number of seconds, got {}", layout.travel_s));
    }
    if layout.status_function == Function::Holding && layout.status_address == layout.command_address {
        return Err("the status register cannot be the command register".to_owned());
    }
    Ok(())
}

fn check_concentrator(layout: &ConcentratorLayout) -> Result<(), String> {
    if layout.meters == 0 {
        return Err("a concentrator needs at least one meter".to_owned());
    }
    if layout.stride == 0 {
        return Err("stride must be at least 1".to_owned());
    }
    let end = u32::from(layout.base) + u32::from(layout.meters) * u32::from(layout.stride);
    if end > 0x1_0000 {
        return Err(format!(
            "{} meters of {} registers from address {} run past register 65535",
            layout.meters, layout.stride, layout.base
        ));
    }
    let mut fields = vec![("volume", layout.volume)];
    if let Some(status) = layout.status {
        fields.push(("status", status));
    }
    for (what, field) in &fields {
        check_scale(what, field.scale)?;
        let field_end = u32::from(field.offset) + u32::from(field.data_type.register_count());
        if field_end > u32::from(layout.stride) {
            return Err(format!(
                "{what} field at offset {} ({}) does not fit in a slot of {} registers",
                field.offset, field.data_type, layout.stride
            ));
        }
    }
    if let Some(status) = layout.status {
        let v = &layout.volume;
        let v_end = v.offset + v.data_type.register_count();
        let s_end = status.offset + status.data_type.register_count();
        if v.offset < s_end && status.offset < v_end {
            return Err("volume and status fields overlap".to_owned());
        }
    }
    if let Some(d) = layout.district {
        if d.slot >= layout.meters || !(0.0..1.0).contains(&d.leak) {
            return Err(format!(
                "the district slot {} needs a slot below {} and a leak in 0..1",
                d.slot, layout.meters
            ));
        }
    }
    if let Some(bit) = layout.no_data_bit {
        match layout.status.and_then(|s| status_width(s.data_type)) {
            Some(width) if bit < width => {}
            Some(width) => return Err(format!("the no-data bit {bit} does not fit a {width}-bit status word")),
            None => return Err("a no-data bit needs an integer status field".to_owned()),
        }
    }
    if !layout.status_bits.is_empty() {
        let Some(status) = layout.status else {
            return Err("status bits are named but the layout has no status field".to_owned());
        };
        let Some(width) = status_width(status.data_type) else {
            return Err(format!("a status word must be an integer type, not {}", status.data_type));
        };
        let mut names = BTreeSet::new();
        for (name, bit) in &layout.status_bits {
            if *bit >= width {
                return Err(format!("status bit {name:?} = {bit} does not fit a {width}-bit status word"));
            }
            if !names.insert(name.as_str()) {
                return Err(format!("status bit {name:?} is named twice"));
            }
        }
    }
    Ok(())
}

fn check_logger(parameters: &[SimParameter]) -> Result<(), String> {
    if parameters.is_empty() {
        return Err("a logger needs at least one parameter".to_owned());
    }
    let mut names = BTreeSet::new();
    for p in parameters {
        if p.name.trim().is_empty() {
            return Err("a parameter has an empty name".to_owned());
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("parameter {:?} is named twice", p.name));
        }
        check_scale(&format!("parameter {:?}", p.name), p.spec.scale)?;
        if u32::from(p.spec.address) + u32::from(p.spec.data_type.register_count()) > 0x1_0000 {
            return Err(format!("parameter {:?} runs past register 65535", p.name));
        }
    }
    for (i, a) in parameters.iter().enumerate() {
        for b in &parameters[i + 1..] {
            if a.spec.function != b.spec.function {
                continue;
            }
            let a_end = u32::from(a.spec.address) + u32::from(a.spec.data_type.register_count());
            let b_end = u32::from(b.spec.address) + u32::from(b.spec.data_type.register_count());
            if u32::from(a.spec.address) < b_end && u32::from(b.spec.address) < a_end {
                return Err(format!("parameters {:?} and {:?} share registers", a.name, b.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(offset: u16, data_type: DataType) -> FieldSpec {
        FieldSpec { offset, data_type, word_order: WordOrder::Abcd, scale: 1.0 }
    }

    fn layout() -> ConcentratorLayout {
        ConcentratorLayout {
            meters: 10,
            function: Function::Holding,
            base: 0,
            stride: 4,
            volume: field(0, DataType::U32),
            status: Some(field(2, DataType::U16)),
            status_bits: vec![("battery_low".to_owned(), 1)],
            no_data: None,
            no_data_bit: None,
            district: None,
        }
    }

    fn check(layout: ConcentratorLayout, expect: Result<(), &str>) {
        let got = check_kind(&SimKind::Concentrator(layout));
        assert_eq!(got.as_ref().map_err(String::as_str).copied(), expect);
    }

    #[test]
    fn concentrator_layouts() {
        check(layout(), Ok(()));
        check(ConcentratorLayout { meters: 0, ..layout() }, Err("a concentrator needs at least one meter"));
        check(
            ConcentratorLayout { stride: 2, ..layout() },
            Err("status field at offset 2 (u16) does not fit in a slot of 2 registers"),
        );
        check(
            ConcentratorLayout { status: Some(field(1, DataType::U16)), ..layout() },
            Err("volume and status fields overlap"),
        );
        check(
            ConcentratorLayout { base: 65530, ..layout() },
            Err("10 meters of 4 registers from address 65530 run past register 65535"),
        );
        check(
            ConcentratorLayout { status_bits: vec![("x".to_owned(), 16)], ..layout() },
            Err("status bit \"x\" = 16 does not fit a 16-bit status word"),
        );
        check(
            ConcentratorLayout { status: None, ..layout() },
            Err("status bits are named but the layout has no status field"),
        );
        check(
            ConcentratorLayout { volume: FieldSpec { scale: 0.0, ..field(0, DataType::U32) }, ..layout() },
            Err("volume scale must be a finite non-zero number, got 0"),
        );
    }

    #[test]
    fn logger_parameters_must_not_share_registers() {
        let p = |name: &str, address: u16| SimParameter {
            name: name.to_owned(),
            spec: RegisterSpec {
                function: Function::Input,
                address,
                data_type: DataType::F32,
                word_order: WordOrder::Cdab,
                scale: 1.0,
            },
        };
        assert_eq!(check_kind(&SimKind::Logger(vec![p("ph", 0), p("turbidity", 2)])), Ok(()));
        assert_eq!(
            check_kind(&SimKind::Logger(vec![p("ph", 0), p("turbidity", 1)])),
            Err("parameters \"ph\" and \"turbidity\" share registers".to_owned())
        );
        assert_eq!(
            check_kind(&SimKind::Logger(vec![p("ph", 0), p("ph", 4)])),
            Err("parameter \"ph\" is named twice".to_owned())
        );
    }
}
