//! Device register models (`config/devices/*.toml`, R-A9): the built-in ones and those of `server.devices_dir`,
//! each checked on its own (types, word orders, that fields fit a slot) with problems naming its file and key.
//! Also what a model implies for the devices using it: `model_of` (the model a device names, of the kind it
//! needs) and the precision of a meter volume decoded from a float register (`volume_precision_limit`).
//!
//! It deliberately does not know which devices use a model; `field.rs` and `valves.rs` ask.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use actors::field::{FieldLayout, MeterLayout, NoDataMarker};
use actors::model::MeterStatus;
use actors::valve::RegisterValve;
use drivers::registers::{DataType, Function, RegisterSpec, WordOrder};

use super::problems::{Check, Problem};
use super::raw::{parse_toml, RawField, RawModel, RawValveCommand};

/// Device models shipped with the program: (file name, contents).
pub const BUILTIN_MODELS: &[(&str, &str)] = &[
    ("ww-concentrator-v1.toml", include_str!("../../config/devices/ww-concentrator-v1.toml")),
    ("hx-c200.toml", include_str!("../../config/devices/hx-c200.toml")),
    ("ww-wq-logger-v1.toml", include_str!("../../config/devices/ww-wq-logger-v1.toml")),
    ("ww-valve-v1.toml", include_str!("../../config/devices/ww-valve-v1.toml")),
    ("ww-valve-coil-v1.toml", include_str!("../../config/devices/ww-valve-coil-v1.toml")),
];

/// A validated device model.
#[derive(Clone, Debug)]
pub enum DeviceModel {
    Concentrator(MeterLayout),
    Logger(BTreeMap<String, (RegisterSpec, String)>),
    Valve(RegisterValve),
}

fn resolve_field(check: &mut Check, key: &str, raw: &RawField) -> Option<FieldLayout> {
    let data_type: Result<DataType, _> = raw.data_type.parse();
    let order: Result<WordOrder, _> = raw.order.as_deref().unwrap_or("ABCD").parse();
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        check.add(format!("{key}.scale"), "must be a finite number other than 0");
    }
    match (data_type, order) {
        (Ok(data_type), Ok(word_order)) => Some(FieldLayout { offset: raw.offset, data_type, word_order, scale }),
        (dt, wo) => {
            if let Err(e) = dt {
                check.add(format!("{key}.type"), e.to_string());
            }
            if let Err(e) = wo {
                check.add(format!("{key}.order"), e.to_string());
            }
            None
        }
    }
}

fn resolve_model(check: &mut Check, raw: RawModel) -> Option<(String, DeviceModel)> {
    let _ = raw.description;
    match raw.kind.as_str() {
        "concentrator" => {
            if raw.parameters.is_some() {
                check.add("parameters", "a concentrator model has [meters], not [parameters]");
            }
            let Some(m) = raw.meters else {
                check.add("meters", "a concentrator model needs a [meters] table");
                return None;
            };
            let function = Function::try_from(m.function).map_err(|e| check.add("meters.function", e.to_string())).ok();
            let volume = resolve_field(check, "meters.volume", &m.volume);
            let status = match &m.status {
                Some(s) => resolve_field(check, "meters.status", s).map(Some),
                None => Some(None),
            };
            let max_registers = m.max_registers.unwrap_or(120);
            if max_registers == 0 || max_registers > 125 {
                check.add("meters.max_registers", "must be 1..=125 (the Modbus limit for one read)");
            }
            if m.stride == 0 {
                check.add("meters.stride", "must be at least 1");
            }
            let mut status_bits = Vec::new();
            for (name, bit) in &m.status_bits {
                match MeterStatus::device_flag_for(name) {
                    Some(flag) if *bit < 16 => status_bits.push((*bit, flag)),
                    Some(_) => check.add(format!("meters.status_bits.{name}"), "bit must be 0..=15"),
                    None => check.add(
                        format!("meters.status_bits.{name}"),
                        format!("unknown status; expected one of {}", MeterStatus::device_names()),
                    ),
                }
            }
            if !m.status_bits.is_empty() && m.status.is_none() {
                check.add("meters.status_bits", "status bits need a meters.status field");
            }
            let (function, volume, status) = (function?, volume?, status?);
            let extent = status.map_or(volume.end(), |s| s.end().max(volume.end()));
            if extent > m.stride {
                check.add(
                    "meters.stride",
                    format!("the fields need {extent} registers but a slot has only {}", m.stride),
                );
            }
            if extent > max_registers {
                check.add("meters.max_registers", "smaller than one meter slot");
            }
            if let Some(s) = status {
                if s.data_type != DataType::U16 {
                    check.add("meters.status.type", "a status word must be u16");
                }
            }
            let no_data = NoDataMarker { volume: m.no_data, status_bit: m.no_data_bit };
            check_no_data(check, &no_data, &volume, status.is_some(), &status_bits);
            Some((
                raw.model,
                DeviceModel::Concentrator(MeterLayout {
                    function,
                    base: m.base,
                    stride: m.stride,
                    volume,
                    status,
                    status_bits,
                    max_registers,
                    no_data,
                }),
            ))
        }
        "logger" => {
            if raw.meters.is_some() {
                check.add("meters", "a logger model has [parameters], not [meters]");
            }
            let Some(params) = raw.parameters.filter(|p| !p.is_empty()) else {
                check.add("parameters", "a logger model needs at least one [parameters.NAME] table");
                return None;
            };
            let mut out = BTreeMap::new();
            for (name, r) in params {
                let key = format!("parameters.{name}");
                let function = Function::try_from(r.function)
                    .map_err(|e| check.add(format!("{key}.function"), e.to_string()))
                    .ok();
                let field = resolve_field(
                    check,
                    &key,
                    &RawField { offset: 0, data_type: r.data_type, order: r.order, scale: r.scale },
                );
                if let (Some(function), Some(f)) = (function, field) {
                    if u32::from(r.address) + u32::from(f.data_type.register_count()) > 65536 {
                        check.add(format!("{key}.address"), "the value runs past register 65535");
                    }
                    out.insert(
                        name,
                        (
                            RegisterSpec {
                                function,
                                address: r.address,
                                data_type: f.data_type,
                                word_order: f.word_order,
                                scale: f.scale,
                            },
                            r.unit,
                        ),
                    );
                }
            }
            Some((raw.model, DeviceModel::Logger(out)))
        }
        "valve" => {
            let Some(v) = raw.valve else {
                check.add("valve", "a valve model needs a [valve] table");
                return None;
            };
            let status_function = Function::try_from(v.status.function)
                .map_err(|e| check.add("valve.status.function", e.to_string()))
                .ok()?;
            let (command_coil, command_address, open_value, close_value) = match (&v.command, v.command.coil) {
                (RawValveCommand { address: Some(a), open: Some(o), close: Some(c), coil: None }, _) => {
                    if o == c {
                        check.add("valve.command", "open and close values must differ");
                    }
                    (false, *a, *o, *c)
                }
                (RawValveCommand { address: None, open: None, close: None, .. }, Some(coil)) => (true, coil, 1, 0),
                _ => {
                    check.add("valve.command", "give either address, open and close (a register) or coil");
                    (false, 0, 1, 2)
                }
            };
            let codes = [v.status.closed, v.status.open, v.status.moving, v.status.fault];
            if (0..codes.len()).any(|i| codes[i + 1..].contains(&codes[i])) {
                check.add("valve.status", "closed, open, moving and fault codes must all differ");
            }
            if !command_coil && status_function == Function::Holding && v.status.address == command_address {
                check.add("valve.status.address", "the status register cannot be the command register");
            }
            Some((
                raw.model,
                DeviceModel::Valve(RegisterValve {
                    command_coil,
                    command_address,
                    open_value,
                    close_value,
                    status_function,
                    status_address: v.status.address,
                    closed_code: v.status.closed,
                    open_code: v.status.open,
                    moving_code: v.status.moving,
                    fault_code: v.status.fault,
                }),
            ))
        }
        other => {
            check.add("kind", format!("unknown kind {other:?}; expected \"concentrator\", \"logger\" or \"valve\""));
            None
        }
    }
}

/// Checks a concentrator model's "no data" marker (issue 7 §4): the volume pattern must fit the volume
/// register, and the status bit needs a status word, fit in it, and mean nothing else.
fn check_no_data(
    check: &mut Check,
    marker: &NoDataMarker,
    volume: &FieldLayout,
    has_status: bool,
    status_bits: &[(u8, u16)],
) {
    if let Some(bits) = marker.volume {
        let width = 16 * u32::from(volume.data_type.register_count());
        if width < 64 && bits >> width != 0 {
            check.add(
                "meters.no_data",
                format!("{bits:#X} does not fit the {} volume register ({width} bits)", volume.data_type),
            );
        }
    }
    if let Some(bit) = marker.status_bit {
        if !has_status {
            check.add("meters.no_data_bit", "a \"no data\" bit needs a meters.status field");
        } else if bit > 15 {
            check.add("meters.no_data_bit", "bit must be 0..=15");
        } else if status_bits.iter().any(|(b, _)| *b == bit) {
            check.add("meters.no_data_bit", format!("bit {bit} is already a meters.status_bits flag"));
        }
    }
}

/// Loads the built-in models, then every `*.toml` in `dir` (if given and present).
pub(super) fn load_models(dir: Option<&Path>, problems: &mut Vec<Problem>) -> HashMap<String, DeviceModel> {
    let mut files: Vec<(String, String)> =
        BUILTIN_MODELS.iter().map(|(n, t)| (format!("(built in) devices/{n}"), (*t).to_owned())).collect();
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                paths.sort();
                for p in paths {
                    match std::fs::read_to_string(&p) {
                        Ok(text) => files.push((p.display().to_string(), text)),
                        Err(e) => {
                            problems.push(Problem::error(p.display().to_string(), "", format!("cannot read: {e}")))
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                problems.push(Problem::error(dir.display().to_string(), "", format!("cannot read directory: {e}")))
            }
        }
    }
    let mut models = HashMap::new();
    for (file, text) in files {
        match parse_toml::<RawModel>(&file, &text) {
            Ok(raw) => {
                let mut check = Check::new(&file);
                if let Some((name, model)) = resolve_model(&mut check, raw) {
                    if !check.has_errors() {
                        models.insert(name, model);
                    }
                }
                problems.extend(check.into_problems());
            }
            Err(p) => problems.push(p),
        }
    }
    models
}

/// The device model `name` as the kind `want` (extracted by `pick`), or a problem naming the key.
pub(super) fn model_of<T>(
    check: &mut Check,
    key: &str,
    models: &HashMap<String, DeviceModel>,
    name: &str,
    want: &str,
    pick: impl Fn(&DeviceModel) -> Option<T>,
) -> Option<T> {
    match models.get(name) {
        Some(m) => {
            let picked = pick(m);
            if picked.is_none() {
                check.add(format!("{key}.model"), format!("model {name:?} is not {want}"));
            }
            picked
        }
        None => {
            check.add(format!("{key}.model"), format!("unknown model {name:?}; known: {}", known(models)));
            None
        }
    }
}

pub(super) fn known(models: &HashMap<String, DeviceModel>) -> String {
    let mut names: Vec<&str> = models.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

/// The meter volume (m³) from which a volume decoded from `field` can no longer carry its third decimal, or
/// `None` when the type has no such limit (integers: every step is one raw unit).
///
/// An f32 has a 24-bit significand: between 2^e and 2^(e+1) raw units it steps by 2^(e-23) units, that is
/// 2^(e-23) × scale m³. The third decimal survives (the nearest float rounds back to it) while a step is at
/// most 0.001 m³. So for volumes in m³ (scale 1) the limit is 2^14 = 16,384 m³ (from there a step is
/// 2^-9 ≈ 0.00195 m³); for litres (scale 0.001) it is 2^24 litres = 16,777.216 m³.
pub(super) fn volume_precision_limit(field: &FieldLayout) -> Option<f64> {
    if field.data_type != DataType::F32 {
        return None;
    }
    let scale = field.scale.abs();
    // A step equal to 0.001 m³ (litres) is still exact; the tolerance keeps 0.001 × 1 from counting as more.
    (-149..=128).map(|e| 2f64.powi(e)).find(|p| p / 2f64.powi(23) * scale > 0.001 * (1.0 + 1e-9)).map(|p| p * scale)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, MINIMAL};
    use super::*;

    #[test]
    fn a_broken_device_model_is_reported_with_its_file_and_key() {
        let dir = std::env::temp_dir().join(format!("ww-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.toml"),
            "model = \"bad\"\nkind = \"concentrator\"\n[meters]\nfunction = 6\nbase = 0\nstride = 1\nvolume = { offset = 0, type = \"float\", order = \"XYZW\" }\n",
        )
        .unwrap();
        let text = format!("[server]\ndevices_dir = \"{}\"\n{MINIMAL}", dir.display());
        check(
            &text,
            &[
                "bad.toml: meters.function: unknown read function \"6\"",
                "bad.toml: meters.volume.type: unknown data type \"float\"",
                "bad.toml: meters.volume.order: unknown word order \"XYZW\"",
            ],
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_model_cannot_map_its_status_bits_onto_the_servers_own_flags() {
        // Like an MQTT mapping (`mqtt.rs`): `status_unreadable` and `time_from_arrival` are set only by the server.
        let dir = std::env::temp_dir().join(format!("ww-models-srv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("srv.toml"),
            "model = \"srv\"\nkind = \"concentrator\"\n[meters]\nfunction = 3\nbase = 0\nstride = 3\nvolume = { offset = 0, type = \"u32\" }\nstatus = { offset = 2, type = \"u16\" }\n[meters.status_bits]\ntime_from_arrival = 3\n",
        )
        .unwrap();
        check(
            &format!("[server]\ndevices_dir = \"{}\"\n{MINIMAL}", dir.display()),
            &["srv.toml: meters.status_bits.time_from_arrival: unknown status; expected one of valve_closed"],
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    fn model_problems(name: &str, meters: &str) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("ww-models-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!(
                "model = \"{name}\"\nkind = \"concentrator\"\n[meters]\nfunction = 3\nbase = 0\nstride = 3\n{meters}"
            ),
        )
        .unwrap();
        let got = super::super::testing::problems(&format!("[server]\ndevices_dir = \"{}\"\n{MINIMAL}", dir.display()));
        let _ = std::fs::remove_dir_all(dir);
        got
    }

    #[test]
    fn a_no_data_marker_must_fit_its_register_and_its_bit_must_be_free() {
        let ok = "volume = { offset = 0, type = \"u32\" }\nstatus = { offset = 2, type = \"u16\" }\nno_data = 0xFFFFFFFF\nno_data_bit = 15\n[meters.status_bits]\nbattery_low = 1\n";
        assert_eq!(model_problems("nd-ok", ok), Vec::<String>::new());
        let wide = "volume = { offset = 0, type = \"u16\" }\nno_data = 0x10000\n";
        let got = model_problems("nd-wide", wide);
        assert!(
            got.iter().any(|p| p.contains("meters.no_data: 0x10000 does not fit the u16 volume register (16 bits)")),
            "{got:?}"
        );
        let no_status = "volume = { offset = 0, type = \"u32\" }\nno_data_bit = 3\n";
        let got = model_problems("nd-nostatus", no_status);
        assert!(
            got.iter().any(|p| p.contains("meters.no_data_bit: a \"no data\" bit needs a meters.status field")),
            "{got:?}"
        );
        let taken = ok.replace("no_data_bit = 15", "no_data_bit = 1");
        let got = model_problems("nd-taken", &taken);
        assert!(
            got.iter().any(|p| p.contains("meters.no_data_bit: bit 1 is already a meters.status_bits flag")),
            "{got:?}"
        );
        let high = ok.replace("no_data_bit = 15", "no_data_bit = 16");
        assert!(model_problems("nd-high", &high).iter().any(|p| p.contains("meters.no_data_bit: bit must be 0..=15")));
    }

    fn volume(data_type: DataType, scale: f64) -> FieldLayout {
        FieldLayout { offset: 0, data_type, word_order: WordOrder::Abcd, scale }
    }

    #[test]
    fn an_f32_volume_keeps_three_decimals_up_to_2_to_the_14_m3_or_2_to_the_24_litres() {
        assert_eq!(volume_precision_limit(&volume(DataType::F32, 1.0)), Some(16_384.0));
        assert_eq!(volume_precision_limit(&volume(DataType::F32, 0.001)), Some(16_777.216));
        // The arithmetic behind it: just below the limit the third decimal survives, from it on it does not.
        let round_trips = |m3: f64| ((m3 as f32) as f64 * 1000.0).round() == (m3 * 1000.0).round();
        assert!(round_trips(16_383.999) && round_trips(12_345.679));
        assert!(!round_trips(16_384.001));
        assert_eq!(volume_precision_limit(&volume(DataType::U32, 0.001)), None);
    }
}
