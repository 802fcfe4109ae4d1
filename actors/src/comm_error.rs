//! Driver errors as [`CommError`]s: a stable code and parameters the HMI renders in its language, beside the
//! English text (issue 7 §7). One function per driver error type, each a `match` over every variant, so a new
//! variant does not compile until it has a code. Nothing here parses a message.
//!
//! It deliberately does not decide what a failure means for comm status (link up or down, a missed cycle):
//! the device actors do.

use std::time::Duration;

use drivers::cjt188::{AbnormalReply, Cjt188Error, FrameError};
use drivers::modbus::{ConnectError, Exception, ModbusError};

use crate::model::{CommError, ErrorCode};

/// Whole milliseconds as a parameter.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A connection (TCP or serial port) that could not be opened, by any driver.
fn connect(reason: &ConnectError, text: String) -> CommError {
    match reason {
        ConnectError::Timeout(d) => CommError::new(ErrorCode::ConnectTimeout, text).with("ms", ms(*d)),
        ConnectError::Refused => CommError::new(ErrorCode::ConnectionRefused, text),
        ConnectError::Failed(detail) => CommError::new(ErrorCode::ConnectFailed, text).with("detail", detail.as_str()),
    }
}

/// A Modbus (TCP or RTU) request without a valid reply.
pub fn modbus(e: &ModbusError) -> CommError {
    let text = e.to_string();
    match e {
        ModbusError::Timeout(d) => CommError::new(ErrorCode::Timeout, text).with("ms", ms(*d)),
        ModbusError::Connect { reason, .. } => connect(reason, text),
        ModbusError::ConnectionClosed => CommError::new(ErrorCode::ConnectionClosed, text),
        ModbusError::Transport(d) => CommError::new(ErrorCode::Transport, text).with("detail", d.as_str()),
        ModbusError::Protocol(d) => CommError::new(ErrorCode::GarbageReply, text).with("detail", d.as_str()),
        ModbusError::BadReply(d) => CommError::new(ErrorCode::BadReply, text).with("detail", d.as_str()),
    }
}

/// A Modbus device's exception reply.
pub fn modbus_exception(e: Exception) -> CommError {
    CommError::new(ErrorCode::Exception, e.to_string()).with("code", i64::from(e.0))
}

/// A CJ/T 188 request without a valid reply (the caller names the meter with [`CommError::of_meter`]).
pub fn cjt188(e: &Cjt188Error) -> CommError {
    let text = e.to_string();
    match e {
        Cjt188Error::Timeout(d) => CommError::new(ErrorCode::Timeout, text).with("ms", ms(*d)),
        Cjt188Error::Connect { reason, .. } => connect(reason, text),
        Cjt188Error::Transport(d) => CommError::new(ErrorCode::Transport, text).with("detail", d.as_str()),
        Cjt188Error::Closed => CommError::new(ErrorCode::ConnectionClosed, text),
        Cjt188Error::Frame(FrameError::Checksum { .. }) => CommError::new(ErrorCode::CrcError, text),
        Cjt188Error::Frame(f) => CommError::new(ErrorCode::GarbageReply, text).with("detail", f.to_string()),
        Cjt188Error::BadReply(d) => CommError::new(ErrorCode::BadReply, text).with("detail", d.as_str()),
        Cjt188Error::Model(d) => CommError::new(ErrorCode::Internal, text).with("detail", d.to_string()),
        Cjt188Error::Poisoned => CommError::new(ErrorCode::Internal, text),
    }
}

/// A CJ/T 188 meter's abnormal reply (a valid reply meaning "no").
pub fn cjt188_abnormal(meter: &str, abnormal: &AbnormalReply) -> CommError {
    let control = abnormal.control.0;
    CommError::new(ErrorCode::AbnormalReply, format!("meter {meter} answered abnormally (control {control:02X})"))
        .with("meter", meter)
        .with("control", format!("{control:02X}"))
}

/// A CJ/T 188 valve meter's failure as its gateway's actor reports it to the valve actor.
pub fn cjt188_valve(meter: &str, e: &crate::cjt188::MeterValveError) -> CommError {
    match e {
        crate::cjt188::MeterValveError::Abnormal(control) => CommError::new(
            ErrorCode::AbnormalReply,
            format!("meter {meter} answered abnormally (control {control:02X})"),
        )
        .with("meter", meter)
        .with("control", format!("{control:02X}")),
        crate::cjt188::MeterValveError::Link(link) => cjt188(link).of_meter(meter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorParam;

    /// An error, the code it must map to, and the parameters it must carry.
    type Case<E> = (E, ErrorCode, Vec<(&'static str, ErrorParam)>);

    fn code_and_params(e: &CommError) -> (ErrorCode, Vec<(&str, ErrorParam)>) {
        (e.code, e.params.iter().map(|(k, v)| (k.as_str(), v.clone())).collect())
    }

    #[test]
    fn every_modbus_error_has_its_code_and_keeps_its_text() {
        let n = |v: i64| ErrorParam::Number(v);
        let t = |v: &str| ErrorParam::Text(v.into());
        let cases: Vec<Case<ModbusError>> = vec![
            (ModbusError::Timeout(Duration::from_secs(3)), ErrorCode::Timeout, vec![("ms", n(3000))]),
            (
                ModbusError::Connect {
                    addr: "h:502".into(),
                    reason: ConnectError::Timeout(Duration::from_millis(250)),
                },
                ErrorCode::ConnectTimeout,
                vec![("ms", n(250))],
            ),
            (
                ModbusError::Connect { addr: "h:502".into(), reason: ConnectError::Refused },
                ErrorCode::ConnectionRefused,
                vec![],
            ),
            (
                ModbusError::Connect { addr: "/dev/x".into(), reason: ConnectError::Failed("no such file".into()) },
                ErrorCode::ConnectFailed,
                vec![("detail", t("no such file"))],
            ),
            (ModbusError::ConnectionClosed, ErrorCode::ConnectionClosed, vec![]),
            (ModbusError::Transport("x".into()), ErrorCode::Transport, vec![("detail", t("x"))]),
            (ModbusError::Protocol("y".into()), ErrorCode::GarbageReply, vec![("detail", t("y"))]),
            (ModbusError::BadReply("z".into()), ErrorCode::BadReply, vec![("detail", t("z"))]),
        ];
        for (e, code, params) in cases {
            let c = modbus(&e);
            assert_eq!(code_and_params(&c), (code, params), "{e:?}");
            assert_eq!(c.text, e.to_string(), "the English text is the driver's");
        }
        let c = modbus_exception(Exception(2));
        assert_eq!(code_and_params(&c), (ErrorCode::Exception, vec![("code", n(2))]));
        assert_eq!(c.text, "exception 0x02 (illegal data address)");
        assert_eq!(modbus(&ModbusError::ConnectionClosed).text, "connection closed by device");
    }

    #[test]
    fn every_cjt188_error_has_its_code_and_keeps_its_text() {
        let n = |v: i64| ErrorParam::Number(v);
        let t = |v: &str| ErrorParam::Text(v.into());
        let cases: Vec<Case<Cjt188Error>> = vec![
            (Cjt188Error::Timeout(Duration::from_millis(1312)), ErrorCode::Timeout, vec![("ms", n(1312))]),
            (
                Cjt188Error::Connect { addr: "gw:9000".into(), reason: ConnectError::Refused },
                ErrorCode::ConnectionRefused,
                vec![],
            ),
            (Cjt188Error::Transport("x".into()), ErrorCode::Transport, vec![("detail", t("x"))]),
            (Cjt188Error::Closed, ErrorCode::ConnectionClosed, vec![]),
            (Cjt188Error::Frame(FrameError::Checksum { computed: 1, received: 2 }), ErrorCode::CrcError, vec![]),
            (
                Cjt188Error::Frame(FrameError::EndByte(0x17)),
                ErrorCode::GarbageReply,
                vec![("detail", t("frame ends with 0x17, not 0x16"))],
            ),
            (Cjt188Error::BadReply("short".into()), ErrorCode::BadReply, vec![("detail", t("short"))]),
            (
                Cjt188Error::Model(drivers::cjt188::ModelError::EmptyMask),
                ErrorCode::Internal,
                vec![("detail", t("the valve mask is empty"))],
            ),
            (Cjt188Error::Poisoned, ErrorCode::Internal, vec![]),
        ];
        for (e, code, params) in cases {
            let c = cjt188(&e);
            assert_eq!(code_and_params(&c), (code, params), "{e:?}");
            assert_eq!(c.text, e.to_string());
        }
        let of_meter = cjt188(&Cjt188Error::Closed).of_meter("XC-CJ-01");
        assert_eq!(of_meter.text, "meter XC-CJ-01: connection closed by device");
        assert_eq!(of_meter.params.get("meter"), Some(&t("XC-CJ-01")));
        let abnormal = AbnormalReply { control: drivers::cjt188::Control(0xC1), data: Vec::new() };
        let c = cjt188_abnormal("XC-CJ-02", &abnormal);
        assert_eq!(
            code_and_params(&c),
            (ErrorCode::AbnormalReply, vec![("control", t("C1")), ("meter", t("XC-CJ-02"))])
        );
        assert_eq!(c.text, "meter XC-CJ-02 answered abnormally (control C1)");
    }
}
