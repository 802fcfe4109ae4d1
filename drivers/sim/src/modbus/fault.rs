//! Faults a simulated device can be told to show, and the `--fault` command-line syntax for them.
//!
//! A fault is data: the connection task reads the device's current fault at every request and acts on it
//! (see `server.rs`). This module only describes and parses faults; it does not apply them and does not
//! know which devices exist (checking a fault against a device happens in `ModbusSim::set_fault`).

use std::collections::BTreeMap;

use super::ModbusSimError;

/// What a device does wrong. `ModbusFault::default()` is a healthy device.
///
/// When several are set, they apply in this order: `disconnect`, `silent`, `delay_ms`, then the reply is
/// `garbage`, else the `exception`, else a normal answer (with `values` forced).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModbusFault {
    /// Read requests, never answer (the connection stays open).
    pub silent: bool,
    /// Answer this many milliseconds late.
    pub delay_ms: u64,
    /// Answer every request with this Modbus exception code.
    pub exception: Option<u8>,
    /// Answer with bytes that are not a valid Modbus TCP reply.
    pub garbage: bool,
    /// Close the connection as soon as a request arrives.
    pub disconnect: bool,
    /// Force a logger parameter to a value (e.g. out of range), by parameter name.
    pub values: BTreeMap<String, f64>,
    /// A valve accepts commands but never moves.
    pub stuck: bool,
    /// Meter slots of a concentrator whose meters stopped answering it (issue 7 §4): the concentrator still
    /// answers, and serves each such slot as its model says "no data" (`no_data`, `no_data_bit`); a model
    /// without a marker keeps serving the meter's last volume, as such concentrators do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silent_meters: Vec<u16>,
}

impl ModbusFault {
    /// Checks that this fault makes sense for a device with these logger `parameters` (none for a
    /// concentrator) and `meters` slots (0 for a logger or valve): a real exception code, finite forced values
    /// for parameters the device has, silent meters in slots it has.
    pub(crate) fn check_for(&self, parameters: &[&str], meters: u16) -> Result<(), String> {
        if self.exception == Some(0) {
            return Err("exception code 0 is not a modbus exception".to_owned());
        }
        if let Some(slot) = self.silent_meters.iter().find(|s| **s >= meters) {
            return Err(if meters == 0 {
                "silent_meters needs a concentrator".to_owned()
            } else {
                format!("no meter slot {slot} to silence (slots 0..{meters})")
            });
        }
        for (name, value) in &self.values {
            if !parameters.contains(&name.as_str()) {
                return Err(format!("no parameter {name:?} to force"));
            }
            if !value.is_finite() {
                return Err(format!("value {value} for {name:?} is not a finite number"));
            }
        }
        Ok(())
    }
}

/// Parses one `--fault` flag of `waterworks simulate`: `ID=FAULT[,FAULT…]` where a fault is `silent`,
/// `delay:MS`, `exception:CODE`, `garbage`, `disconnect`, `stuck` (a valve that never moves) or
/// `value:PARAMETER=NUMBER`.
///
/// Examples: `"w1=silent"`, `"w1=delay:200,garbage"`, `"q1=value:free_chlorine=0.1"`, `"w2=exception:0x0B"`.
pub fn parse_fault_flag(flag: &str) -> Result<(String, ModbusFault), ModbusSimError> {
    let bad = |reason: String| ModbusSimError::FaultFlag { flag: flag.to_owned(), reason };
    let Some((id, faults)) = flag.split_once('=') else {
        return Err(bad("expected ID=FAULT, e.g. w1=silent".to_owned()));
    };
    let id = id.trim();
    if id.is_empty() {
        return Err(bad("the device id before '=' is empty".to_owned()));
    }
    if faults.trim().is_empty() {
        return Err(bad(format!("no fault given after {id:?}=")));
    }
    let mut fault = ModbusFault::default();
    let mut delay_given = false;
    for part in faults.split(',') {
        parse_part(part.trim(), &mut fault, &mut delay_given)
            .map_err(|reason| bad(format!("{:?}: {reason}", part.trim())))?;
    }
    Ok((id.to_owned(), fault))
}

/// Applies one comma-separated part of a fault flag to `fault`. `delay_given` remembers an earlier `delay`, since
/// `delay:0` leaves no trace in the fault itself.
fn parse_part(part: &str, fault: &mut ModbusFault, delay_given: &mut bool) -> Result<(), String> {
    let (name, arg) = match part.split_once(':') {
        Some((name, arg)) => (name.trim(), Some(arg.trim())),
        None => (part, None),
    };
    match (name.to_ascii_lowercase().as_str(), arg) {
        ("", _) => Err("empty fault".to_owned()),
        ("silent", None) => {
            fault.silent = true;
            Ok(())
        }
        ("garbage", None) => {
            fault.garbage = true;
            Ok(())
        }
        ("disconnect", None) => {
            fault.disconnect = true;
            Ok(())
        }
        ("stuck", None) => {
            fault.stuck = true;
            Ok(())
        }
        ("silent" | "garbage" | "disconnect" | "stuck", Some(_)) => Err(format!("{name} takes no argument")),
        ("delay", Some(ms)) => {
            if *delay_given {
                return Err("delay is given twice".to_owned());
            }
            *delay_given = true;
            fault.delay_ms = ms.parse().map_err(|_| "delay needs whole milliseconds, e.g. delay:500".to_owned())?;
            Ok(())
        }
        ("exception", Some(code)) => {
            if fault.exception.is_some() {
                return Err("exception is given twice".to_owned());
            }
            let parsed = match code.strip_prefix("0x").or_else(|| code.strip_prefix("0X")) {
                Some(hex) => u8::from_str_radix(hex, 16),
                None => code.parse(),
            };
            match parsed {
                Ok(0) | Err(_) => Err("exception needs a code from 1 to 255, e.g. exception:4".to_owned()),
                Ok(c) => {
                    fault.exception = Some(c);
                    Ok(())
                }
            }
        }
        ("value", Some(assignment)) => {
            let Some((parameter, number)) = assignment.split_once('=') else {
                return Err("value needs PARAMETER=NUMBER, e.g. value:free_chlorine=0.1".to_owned());
            };
            let parameter = parameter.trim();
            if parameter.is_empty() {
                return Err("value needs a parameter name before '='".to_owned());
            }
            let number: f64 = match number.trim().parse() {
                Ok(n) if f64::is_finite(n) => n,
                _ => return Err(format!("{:?} is not a finite number", number.trim())),
            };
            if fault.values.insert(parameter.to_owned(), number).is_some() {
                return Err(format!("value for {parameter:?} is given twice"));
            }
            Ok(())
        }
        ("delay" | "exception" | "value", None) => Err(format!("{name} needs an argument after ':'")),
        _ => Err("unknown fault; expected silent, delay:MS, exception:CODE, garbage, disconnect, stuck or \
                  value:PARAMETER=NUMBER"
            .to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(flag: &str) -> (String, ModbusFault) {
        parse_fault_flag(flag).unwrap_or_else(|e| panic!("{flag}: {e}"))
    }

    fn err(flag: &str) -> String {
        match parse_fault_flag(flag) {
            Ok(parsed) => panic!("{flag} parsed as {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepted_syntaxes() {
        assert_eq!(ok("w1=silent"), ("w1".to_owned(), ModbusFault { silent: true, ..ModbusFault::default() }));
        assert_eq!(ok("w1=delay:500").1, ModbusFault { delay_ms: 500, ..ModbusFault::default() });
        assert_eq!(ok("w1=exception:4").1, ModbusFault { exception: Some(4), ..ModbusFault::default() });
        assert_eq!(ok("w1=exception:0x0B").1, ModbusFault { exception: Some(11), ..ModbusFault::default() });
        assert_eq!(ok("w1=garbage").1, ModbusFault { garbage: true, ..ModbusFault::default() });
        assert_eq!(ok("w1=disconnect").1, ModbusFault { disconnect: true, ..ModbusFault::default() });
        assert_eq!(ok("v1=stuck").1, ModbusFault { stuck: true, ..ModbusFault::default() });
        let (id, fault) = ok("q-1=value:free_chlorine=0.1");
        assert_eq!(id, "q-1");
        assert_eq!(fault.values.get("free_chlorine"), Some(&0.1));
        assert_eq!(
            ok("w1=delay:200,garbage").1,
            ModbusFault { delay_ms: 200, garbage: true, ..ModbusFault::default() }
        );
        let both = ok(" q1 = value:ph=9.5, value:turbidity=-1 , SILENT").1;
        assert_eq!(both.values.len(), 2);
        assert_eq!(both.values.get("turbidity"), Some(&-1.0));
        assert!(both.silent);
    }

    #[test]
    fn rejected_syntaxes_name_the_bad_part() {
        assert_eq!(err("silent"), "bad fault flag \"silent\": expected ID=FAULT, e.g. w1=silent");
        assert_eq!(err("=silent"), "bad fault flag \"=silent\": the device id before '=' is empty");
        assert_eq!(err("w1="), "bad fault flag \"w1=\": no fault given after \"w1\"=");
        assert_eq!(
            err("w1=delay:200,delay:soon"),
            "bad fault flag \"w1=delay:200,delay:soon\": \"delay:soon\": delay is given twice"
        );
        assert!(err("w1=delay:0,delay:5").contains("delay is given twice"));
        assert!(err("w1=delay:soon").contains("\"delay:soon\": delay needs whole milliseconds"));
        assert!(err("w1=delay:-5").contains("\"delay:-5\""));
        assert!(err("w1=exception:0").contains("\"exception:0\": exception needs a code from 1 to 255"));
        assert!(err("w1=exception:256").contains("\"exception:256\""));
        assert!(err("w1=garbage,explode").contains("\"explode\": unknown fault"));
        assert!(err("w1=silent,,garbage").contains("\"\": empty fault"));
        assert!(err("w1=silent:yes").contains("\"silent:yes\": silent takes no argument"));
        assert!(err("w1=delay").contains("\"delay\": delay needs an argument"));
        assert!(err("q1=value:ph").contains("\"value:ph\": value needs PARAMETER=NUMBER"));
        assert!(err("q1=value:=1").contains("value needs a parameter name"));
        assert!(err("q1=value:ph=high").contains("\"value:ph=high\": \"high\" is not a finite number"));
        assert!(err("q1=value:ph=NaN").contains("is not a finite number"));
        assert!(err("q1=value:ph=1,value:ph=2").contains("value for \"ph\" is given twice"));
    }

    #[test]
    fn fault_json_rejects_unknown_keys_and_fills_defaults() {
        let fault: ModbusFault = serde_json::from_str(r#"{"delay_ms": 300}"#).expect("valid fault json");
        assert_eq!(fault, ModbusFault { delay_ms: 300, ..ModbusFault::default() });
        assert!(serde_json::from_str::<ModbusFault>(r#"{"delay": 300}"#).is_err());
    }

    #[test]
    fn check_for_a_device() {
        assert_eq!(ModbusFault::default().check_for(&[], 0), Ok(()));
        let zero = ModbusFault { exception: Some(0), ..ModbusFault::default() };
        assert_eq!(zero.check_for(&[], 0), Err("exception code 0 is not a modbus exception".to_owned()));
        let silent = ModbusFault { silent_meters: vec![2], ..ModbusFault::default() };
        assert_eq!(silent.check_for(&[], 3), Ok(()));
        assert_eq!(silent.check_for(&[], 2), Err("no meter slot 2 to silence (slots 0..2)".to_owned()));
        assert_eq!(silent.check_for(&["ph"], 0), Err("silent_meters needs a concentrator".to_owned()));
        let forced = ModbusFault { values: BTreeMap::from([("ph".to_owned(), 9.9)]), ..ModbusFault::default() };
        assert_eq!(forced.check_for(&["ph"], 0), Ok(()));
        assert_eq!(forced.check_for(&["lead"], 0), Err("no parameter \"ph\" to force".to_owned()));
        let nan = ModbusFault { values: BTreeMap::from([("ph".to_owned(), f64::NAN)]), ..ModbusFault::default() };
        assert_eq!(nan.check_for(&["ph"], 0), Err("value NaN for \"ph\" is not a finite number".to_owned()));
    }
}
