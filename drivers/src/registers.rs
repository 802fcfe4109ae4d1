//! Modbus register values: data types, word orders, and decoding of register words into numbers.
//!
//! This module speaks registers only. It does not know what a register *means* (chlorine, meter volume):
//! that lives in the device register maps under `config/devices/` (R-A9), which name a [`RegisterSpec`].
//!
//! Word orders follow libmodbus' names. Take the value's big-endian bytes `A B C D` (for 64-bit values
//! `A B C D E F G H`); the registers on the wire are then:
//! - `ABCD`: big-endian words in big-endian order (`[AB, CD]`);
//! - `CDAB`: the words reversed, bytes in a word big-endian (`[CD, AB]`);
//! - `BADC`: the bytes swapped inside each word, words in order (`[BA, DC]`);
//! - `DCBA`: fully little-endian (`[DC, BA]`).
//!
//! 16-bit types occupy one register: `ABCD`/`CDAB` read it as is, `BADC`/`DCBA` swap its two bytes.

use std::fmt;
use std::str::FromStr;

/// The numeric type stored in one or more consecutive registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
    F64,
}

/// The order of bytes and words of a multi-byte value on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WordOrder {
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

/// The Modbus read function used for a register: 3 (holding) or 4 (input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Holding,
    Input,
}

/// Where a value lives and how to turn its registers into a number in engineering units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegisterSpec {
    pub function: Function,
    /// Zero-based protocol address (what goes in the request PDU), not a 4xxxx label.
    pub address: u16,
    pub data_type: DataType,
    pub word_order: WordOrder,
    /// Engineering value = raw value × scale.
    pub scale: f64,
}

/// Why words could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{data_type} needs {needed} registers, got {got}")]
    WrongLength { data_type: DataType, needed: usize, got: usize },
    #[error("decoded value is not a finite number")]
    NotFinite,
}

/// Why a name could not be parsed into a [`DataType`], [`WordOrder`] or [`Function`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of {expected}")]
pub struct ParseNameError {
    pub what: &'static str,
    pub given: String,
    pub expected: &'static str,
}

impl DataType {
    pub const NAMES: &'static str = "u16, i16, u32, i32, f32, f64";

    /// How many 16-bit registers one value occupies.
    pub fn register_count(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::F64 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "u16" => DataType::U16,
            "i16" => DataType::I16,
            "u32" => DataType::U32,
            "i32" => DataType::I32,
            "f32" => DataType::F32,
            "f64" => DataType::F64,
            _ => return Err(ParseNameError { what: "data type", given: s.to_owned(), expected: Self::NAMES }),
        })
    }
}

impl WordOrder {
    pub const NAMES: &'static str = "ABCD, CDAB, BADC, DCBA";

    fn name(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }

    fn reverses_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WordOrder {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "ABCD" => WordOrder::Abcd,
            "CDAB" => WordOrder::Cdab,
            "BADC" => WordOrder::Badc,
            "DCBA" => WordOrder::Dcba,
            _ => return Err(ParseNameError { what: "word order", given: s.to_owned(), expected: Self::NAMES }),
        })
    }
}

impl Function {
    /// The Modbus function code.
    pub fn code(self) -> u8 {
        match self {
            Function::Holding => 3,
            Function::Input => 4,
        }
    }
}

impl TryFrom<i64> for Function {
    type Error = ParseNameError;
    fn try_from(code: i64) -> Result<Self, Self::Error> {
        match code {
            3 => Ok(Function::Holding),
            4 => Ok(Function::Input),
            _ => Err(ParseNameError {
                what: "read function",
                given: code.to_string(),
                expected: "3 (holding registers), 4 (input registers)",
            }),
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl RegisterSpec {
    /// Decodes this spec's value from `words` (exactly its registers) and applies the scale.
    pub fn decode(&self, words: &[u16]) -> Result<f64, DecodeError> {
        let raw = decode(words, self.data_type, self.word_order)?;
        let value = raw * self.scale;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(DecodeError::NotFinite)
        }
    }

    /// Encodes an engineering value into registers (the inverse of [`RegisterSpec::decode`]); used by the
    /// simulator. Integer types round to the nearest raw count and saturate at the type's range.
    pub fn encode(&self, value: f64) -> Vec<u16> {
        let raw = if self.scale == 0.0 { 0.0 } else { value / self.scale };
        encode(raw, self.data_type, self.word_order)
    }
}

/// Puts the wire registers back into big-endian byte order.
fn to_be_bytes(words: &[u16], order: WordOrder) -> Vec<u8> {
    let mut ordered: Vec<u16> = words.to_vec();
    if order.reverses_words() {
        ordered.reverse();
    }
    ordered
        .into_iter()
        .flat_map(|w| {
            let w = if order.swaps_bytes() { w.swap_bytes() } else { w };
            w.to_be_bytes()
        })
        .collect()
}

/// Puts big-endian bytes into wire registers in `order`.
fn from_be_bytes(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| {
            let w = u16::from_be_bytes([pair[0], pair[1]]);
            if order.swaps_bytes() {
                w.swap_bytes()
            } else {
                w
            }
        })
        .collect();
    if order.reverses_words() {
        words.reverse();
    }
    words
}

/// Decodes the raw (unscaled) value of `data_type` from exactly its registers.
pub fn decode(words: &[u16], data_type: DataType, order: WordOrder) -> Result<f64, DecodeError> {
    let needed = usize::from(data_type.register_count());
    if words.len() != needed {
        return Err(DecodeError::WrongLength { data_type, needed, got: words.len() });
    }
    let b = to_be_bytes(words, order);
    let value = match data_type {
        DataType::U16 => f64::from(u16::from_be_bytes([b[0], b[1]])),
        DataType::I16 => f64::from(i16::from_be_bytes([b[0], b[1]])),
        DataType::U32 => f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        DataType::I32 => f64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        DataType::F32 => f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        DataType::F64 => f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DecodeError::NotFinite)
    }
}

/// The bits a value of `data_type` occupies, as an unsigned integer in big-endian order (the word order
/// undone), from exactly its registers: for a "no data" marker, which is a bit pattern (0xFFFFFFFF), not a
/// number, and must be recognised whatever the type (an f32 or a signed register holds it too).
pub fn raw_bits(words: &[u16], data_type: DataType, order: WordOrder) -> Result<u64, DecodeError> {
    let needed = usize::from(data_type.register_count());
    if words.len() != needed {
        return Err(DecodeError::WrongLength { data_type, needed, got: words.len() });
    }
    Ok(to_be_bytes(words, order).into_iter().fold(0u64, |acc, b| acc << 8 | u64::from(b)))
}

/// Encodes the low bits of `bits` as `data_type` registers in `order` (the inverse of [`raw_bits`]).
pub fn encode_bits(bits: u64, data_type: DataType, order: WordOrder) -> Vec<u16> {
    let bytes = usize::from(data_type.register_count()) * 2;
    from_be_bytes(&bits.to_be_bytes()[8 - bytes..], order)
}

/// Encodes a raw value as `data_type` registers in `order`. Integers round and saturate.
pub fn encode(raw: f64, data_type: DataType, order: WordOrder) -> Vec<u16> {
    // `as` from f64 to an integer saturates and maps NaN to 0, which is what a simulator wants.
    let bytes: Vec<u8> = match data_type {
        DataType::U16 => (raw.round() as u16).to_be_bytes().to_vec(),
        DataType::I16 => (raw.round() as i16).to_be_bytes().to_vec(),
        DataType::U32 => (raw.round() as u32).to_be_bytes().to_vec(),
        DataType::I32 => (raw.round() as i32).to_be_bytes().to_vec(),
        DataType::F32 => (raw as f32).to_be_bytes().to_vec(),
        DataType::F64 => raw.to_be_bytes().to_vec(),
    };
    from_be_bytes(&bytes, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One hand-computed vector: the registers as they appear on the wire and the raw value they hold.
    fn check(words: &[u16], data_type: DataType, order: WordOrder, expect: f64) {
        let got = decode(words, data_type, order).unwrap();
        assert_eq!(got, expect, "{data_type} {order} {words:04X?}");
        assert_eq!(encode(expect, data_type, order), words, "encode {data_type} {order} {expect}");
    }

    #[test]
    fn raw_bits_undo_the_word_order_for_every_type() {
        assert_eq!(raw_bits(&[0xFFFF, 0xFFFF], DataType::U32, WordOrder::Cdab), Ok(0xFFFF_FFFF));
        assert_eq!(raw_bits(&[0x3333, 0x3EB3], DataType::F32, WordOrder::Cdab), Ok(0x3EB3_3333));
        assert_eq!(raw_bits(&[0x3333, 0xB33E], DataType::F32, WordOrder::Dcba), Ok(0x3EB3_3333));
        assert_eq!(raw_bits(&[0x8000], DataType::I16, WordOrder::Abcd), Ok(0x8000));
        assert!(raw_bits(&[0x8000], DataType::U32, WordOrder::Abcd).is_err());
        for (dt, bits) in
            [(DataType::U16, 0xFFFEu64), (DataType::I32, 0x8000_0001), (DataType::F64, 0x7FF8_0000_0000_0001)]
        {
            for order in [WordOrder::Abcd, WordOrder::Cdab, WordOrder::Badc, WordOrder::Dcba] {
                assert_eq!(raw_bits(&encode_bits(bits, dt, order), dt, order), Ok(bits), "{dt} {order}");
            }
        }
    }

    #[test]
    fn f32_0_35_in_every_word_order() {
        // 0.35 as f32 is 0x3EB33333 (DOMAIN.md §3).
        let v = f64::from(0.35f32);
        check(&[0x3EB3, 0x3333], DataType::F32, WordOrder::Abcd, v);
        check(&[0x3333, 0x3EB3], DataType::F32, WordOrder::Cdab, v);
        check(&[0xB33E, 0x3333], DataType::F32, WordOrder::Badc, v);
        check(&[0x3333, 0xB33E], DataType::F32, WordOrder::Dcba, v);
    }

    #[test]
    fn f32_123456_in_every_word_order() {
        // 123456.0 = 0x47F12000 (DOMAIN.md §3 worked values).
        check(&[0x47F1, 0x2000], DataType::F32, WordOrder::Abcd, 123456.0);
        check(&[0x2000, 0x47F1], DataType::F32, WordOrder::Cdab, 123456.0);
        check(&[0xF147, 0x0020], DataType::F32, WordOrder::Badc, 123456.0);
        check(&[0x0020, 0xF147], DataType::F32, WordOrder::Dcba, 123456.0);
    }

    #[test]
    fn u16_and_i16() {
        check(&[0x1234], DataType::U16, WordOrder::Abcd, 4660.0);
        check(&[0x1234], DataType::U16, WordOrder::Cdab, 4660.0);
        check(&[0x3412], DataType::U16, WordOrder::Badc, 4660.0);
        check(&[0x3412], DataType::U16, WordOrder::Dcba, 4660.0);
        check(&[0xFFFE], DataType::I16, WordOrder::Abcd, -2.0);
        check(&[0xFEFF], DataType::I16, WordOrder::Badc, -2.0);
        check(&[0x8000], DataType::I16, WordOrder::Abcd, -32768.0);
    }

    #[test]
    fn u32_and_i32() {
        // 0x12345678 = 305419896
        check(&[0x1234, 0x5678], DataType::U32, WordOrder::Abcd, 305_419_896.0);
        check(&[0x5678, 0x1234], DataType::U32, WordOrder::Cdab, 305_419_896.0);
        check(&[0x3412, 0x7856], DataType::U32, WordOrder::Badc, 305_419_896.0);
        check(&[0x7856, 0x3412], DataType::U32, WordOrder::Dcba, 305_419_896.0);
        // -100000 = 0xFFFE7960
        check(&[0xFFFE, 0x7960], DataType::I32, WordOrder::Abcd, -100_000.0);
        check(&[0x7960, 0xFFFE], DataType::I32, WordOrder::Cdab, -100_000.0);
        check(&[0xFEFF, 0x6079], DataType::I32, WordOrder::Badc, -100_000.0);
        check(&[0x6079, 0xFEFF], DataType::I32, WordOrder::Dcba, -100_000.0);
    }

    #[test]
    fn f64_in_every_word_order() {
        // 1.5 = 0x3FF8_0000_0000_0000; -2.25 = 0xC002_0000_0000_0000; 0.1 = 0x3FB9_9999_9999_999A
        check(&[0x3FF8, 0, 0, 0], DataType::F64, WordOrder::Abcd, 1.5);
        check(&[0, 0, 0, 0x3FF8], DataType::F64, WordOrder::Cdab, 1.5);
        check(&[0xF83F, 0, 0, 0], DataType::F64, WordOrder::Badc, 1.5);
        check(&[0, 0, 0, 0xF83F], DataType::F64, WordOrder::Dcba, 1.5);
        check(&[0xC002, 0, 0, 0], DataType::F64, WordOrder::Abcd, -2.25);
        check(&[0x3FB9, 0x9999, 0x9999, 0x999A], DataType::F64, WordOrder::Abcd, 0.1);
        check(&[0x999A, 0x9999, 0x9999, 0x3FB9], DataType::F64, WordOrder::Cdab, 0.1);
        check(&[0xB93F, 0x9999, 0x9999, 0x9A99], DataType::F64, WordOrder::Badc, 0.1);
        check(&[0x9A99, 0x9999, 0x9999, 0xB93F], DataType::F64, WordOrder::Dcba, 0.1);
    }

    #[test]
    fn wrong_length_and_nan_are_errors_not_panics() {
        assert_eq!(
            decode(&[1], DataType::F32, WordOrder::Abcd),
            Err(DecodeError::WrongLength { data_type: DataType::F32, needed: 2, got: 1 })
        );
        assert_eq!(
            decode(&[], DataType::U16, WordOrder::Abcd).unwrap_err().to_string(),
            "u16 needs 1 registers, got 0"
        );
        // 0x7FC00000 is a quiet NaN; 0x7F800000 is +inf.
        assert_eq!(decode(&[0x7FC0, 0], DataType::F32, WordOrder::Abcd), Err(DecodeError::NotFinite));
        assert_eq!(decode(&[0x7F80, 0], DataType::F32, WordOrder::Abcd), Err(DecodeError::NotFinite));
    }

    #[test]
    fn scale_applies_after_decoding() {
        let spec = RegisterSpec {
            function: Function::Holding,
            address: 0,
            data_type: DataType::U32,
            word_order: WordOrder::Abcd,
            scale: 0.001,
        };
        // 123456 litres -> 123.456 m3
        assert!((spec.decode(&[0x0001, 0xE240]).unwrap() - 123.456).abs() < 1e-9);
        assert_eq!(spec.encode(123.456), vec![0x0001, 0xE240]);
    }

    #[test]
    fn names_parse_and_reject_with_the_expected_list() {
        assert_eq!("cdab".parse::<WordOrder>(), Ok(WordOrder::Cdab));
        assert_eq!("F32".parse::<DataType>(), Ok(DataType::F32));
        let err = "float".parse::<DataType>().unwrap_err().to_string();
        assert_eq!(err, "unknown data type \"float\"; expected one of u16, i16, u32, i32, f32, f64");
        assert!(Function::try_from(6).is_err());
        assert_eq!(Function::try_from(4), Ok(Function::Input));
    }
}
