//! Serial line settings (`LineSettings`), the character format ("8E1"), and the timing that follows from them:
//! character time, wire time of a frame, and the Modbus inter-frame silence t3.5.
//!
//! Pure data and arithmetic; this module opens nothing.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Above this baud rate the Modbus serial-line specification fixes t3.5 at 1.75 ms instead of 3.5 characters.
const FIXED_SILENCE_ABOVE_BAUD: u32 = 19_200;
/// t3.5 above 19 200 baud (Modbus over Serial Line v1.02, §2.5.1.1).
const FIXED_SILENCE: Duration = Duration::from_micros(1_750);

/// Why line settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("bad character format {given:?}: expected data bits, parity and stop bits such as 8N1, 8E1 or 8O2")]
    Format { given: String },
    #[error("baud rate must be above 0")]
    Baud,
    #[error("modbus rtu needs 8 data bits (7 data bits is modbus ascii)")]
    SevenDataBits,
    #[error("the request timeout must be above 0")]
    Timeout,
    #[error("the serial port path is empty")]
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBits {
    Seven,
    Eight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBits {
    One,
    Two,
}

/// A character format such as `8E1`: data bits, parity (N, E, O) and stop bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharFormat {
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
}

impl CharFormat {
    /// Bits on the wire per character: one start bit, the data bits, the parity bit if any, the stop bits.
    pub fn bits(self) -> u32 {
        let data = match self.data_bits {
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        };
        let parity = if self.parity == Parity::None { 0 } else { 1 };
        let stop = match self.stop_bits {
            StopBits::One => 1,
            StopBits::Two => 2,
        };
        1 + data + parity + stop
    }

    /// Time `bytes` characters sent back to back take on the wire at `baud`.
    pub fn wire_time(self, baud: u32, bytes: usize) -> Duration {
        wire_time(baud, self, bytes)
    }

    /// The inter-frame silence t3.5 at `baud`: 3.5 characters, or 1.75 ms above 19 200 baud.
    pub fn silence(self, baud: u32) -> Duration {
        silence(baud, self)
    }
}

impl FromStr for CharFormat {
    type Err = SettingsError;

    /// Parses `8N1`, `8E1`, `8O1`, `8N2`, `7E1`… (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SettingsError::Format { given: s.to_owned() };
        let bytes = s.trim().as_bytes();
        let [data, parity, stop] = bytes else {
            return Err(bad());
        };
        let data_bits = match data {
            b'7' => DataBits::Seven,
            b'8' => DataBits::Eight,
            _ => return Err(bad()),
        };
        let parity = match parity.to_ascii_uppercase() {
            b'N' => Parity::None,
            b'E' => Parity::Even,
            b'O' => Parity::Odd,
            _ => return Err(bad()),
        };
        let stop_bits = match stop {
            b'1' => StopBits::One,
            b'2' => StopBits::Two,
            _ => return Err(bad()),
        };
        Ok(CharFormat { data_bits, parity, stop_bits })
    }
}

impl fmt::Display for CharFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = if self.data_bits == DataBits::Seven { '7' } else { '8' };
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let stop = if self.stop_bits == StopBits::One { '1' } else { '2' };
        write!(f, "{data}{parity}{stop}")
    }
}

/// One serial line: the port, its character format, and the reply timeout of every request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSettings {
    /// The serial device, e.g. `/dev/ttyUSB0` or `/dev/serial/by-path/…` (a pty path in tests).
    pub path: String,
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    /// How long after its request has been written a reply must be complete.
    pub timeout: Duration,
}

impl LineSettings {
    /// Settings from a character format string such as `"8E1"` (the Modbus default) or `"8N1"`.
    pub fn new(
        path: impl Into<String>,
        baud: u32,
        format: &str,
        timeout: Duration,
    ) -> Result<LineSettings, SettingsError> {
        let CharFormat { data_bits, parity, stop_bits } = format.parse()?;
        let settings = LineSettings { path: path.into(), baud, data_bits, parity, stop_bits, timeout };
        settings.check()?;
        Ok(settings)
    }

    pub fn format(&self) -> CharFormat {
        CharFormat { data_bits: self.data_bits, parity: self.parity, stop_bits: self.stop_bits }
    }

    /// Checks that Modbus RTU can run with these settings.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.path.trim().is_empty() {
            return Err(SettingsError::Path);
        }
        if self.baud == 0 {
            return Err(SettingsError::Baud);
        }
        if self.data_bits != DataBits::Eight {
            return Err(SettingsError::SevenDataBits);
        }
        if self.timeout.is_zero() {
            return Err(SettingsError::Timeout);
        }
        Ok(())
    }

    /// Time one character takes on the wire, from its start bit to the end of its last stop bit.
    pub fn char_time(&self) -> Duration {
        char_time(self.baud, self.format())
    }

    /// Time `bytes` characters sent back to back take on the wire.
    pub fn wire_time(&self, bytes: usize) -> Duration {
        wire_time(self.baud, self.format(), bytes)
    }

    /// The Modbus inter-frame silence t3.5: 3.5 character times, fixed at 1.75 ms above 19 200 baud.
    pub fn silence(&self) -> Duration {
        silence(self.baud, self.format())
    }
}

/// Time one character of `format` takes at `baud` (0 baud is treated as 1 to stay finite).
pub(crate) fn char_time(baud: u32, format: CharFormat) -> Duration {
    wire_time(baud, format, 1)
}

/// Time `bytes` characters of `format` take at `baud`, rounded up to the nanosecond.
pub(crate) fn wire_time(baud: u32, format: CharFormat, bytes: usize) -> Duration {
    bits_time(u128::from(format.bits()) * bytes as u128, 1, baud)
}

/// Time `bits / divisor` bits take at `baud`, rounded up to the nanosecond.
fn bits_time(bits: u128, divisor: u128, baud: u32) -> Duration {
    let nanos = (bits * 1_000_000_000).div_ceil(divisor * u128::from(baud.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// t3.5 for `baud` and `format`.
pub(crate) fn silence(baud: u32, format: CharFormat) -> Duration {
    if baud > FIXED_SILENCE_ABOVE_BAUD {
        FIXED_SILENCE
    } else {
        // 3.5 characters = 7 characters / 2.
        bits_time(u128::from(format.bits()) * 7, 2, baud)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_print() {
        for s in ["8N1", "8E1", "8O1", "8N2", "7E1", "8e1"] {
            let f: CharFormat = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(f.to_string(), s.to_ascii_uppercase());
        }
        for s in ["", "8N", "9N1", "8X1", "8N3", "8N1 x", "8N11"] {
            assert_eq!(s.parse::<CharFormat>(), Err(SettingsError::Format { given: s.to_owned() }), "{s}");
        }
        assert_eq!("8N1".parse::<CharFormat>().map(CharFormat::bits), Ok(10));
        assert_eq!("8E1".parse::<CharFormat>().map(CharFormat::bits), Ok(11));
        assert_eq!("8N2".parse::<CharFormat>().map(CharFormat::bits), Ok(11));
    }

    #[test]
    fn timing_follows_the_baud_rate() {
        let s = LineSettings::new("/dev/ttyS0", 9600, "8N1", Duration::from_millis(100)).expect("valid");
        // 10 bits at 9600 baud.
        assert_eq!(s.char_time(), Duration::from_nanos(1_041_667));
        assert_eq!(s.wire_time(8), Duration::from_nanos(8_333_334));
        assert_eq!(s.silence(), Duration::from_nanos(3_645_834));
        let e = LineSettings { baud: 19_200, ..LineSettings::new("p", 1, "8E1", Duration::from_secs(1)).expect("ok") };
        // 3.5 × 11 bits / 19200 = 2.005 ms, still counted in characters at 19200.
        assert_eq!(e.silence(), Duration::from_nanos(2_005_209));
        let fast = LineSettings { baud: 115_200, ..e };
        assert_eq!(fast.silence(), FIXED_SILENCE);
    }

    #[test]
    fn unusable_settings_are_refused() {
        let t = Duration::from_secs(1);
        assert_eq!(LineSettings::new("p", 9600, "7E1", t), Err(SettingsError::SevenDataBits));
        assert_eq!(LineSettings::new("p", 0, "8E1", t), Err(SettingsError::Baud));
        assert_eq!(LineSettings::new("p", 9600, "8E1", Duration::ZERO), Err(SettingsError::Timeout));
        assert_eq!(LineSettings::new(" ", 9600, "8E1", t), Err(SettingsError::Path));
    }
}
