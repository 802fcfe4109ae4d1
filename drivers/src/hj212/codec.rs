//! The HJ 212 frame codec: bytes to [`Packet`] and back. Pure and panic-free on any input.
//!
//! A frame is
//!
//! ```text
//! ## 0101 QN=…;ST=32;CN=1062;PW=100000;MN=…;Flag=5;CP=&&RtdInterval=30&& 1C80 \r\n
//! |  |    |                                                               |    |
//! |  |    data segment (ASCII text, at most 1024 bytes by the standard)   |    end of frame
//! |  length of the data segment in bytes, four decimal digits             CRC16 of the data segment, four hex digits
//! header
//! ```
//!
//! Inside the data segment, `;` separates fields and `=` splits a key from its value. The `CP` field comes last
//! and is wrapped in `&&`: `CP=&&DataTime=20240101120000;w01001-Rtd=7.21,w01001-Flag=N&&`. Inside `CP`, `;`
//! separates groups, `,` separates the items of a group (by convention the fields of one factor), and a factor
//! item's key is `<factor code>-<field>` (`w01001-Rtd`).
//!
//! Decoding checks, in this order: the size bounds, the `##` header, the CR LF end, the length digits and the
//! length, the CRC, UTF-8, then the fields. Leniencies, each because real devices do it: the CRC may be sent in
//! lower-case hex; header fields may come in any order; `CP` may end with one stray `;`; `QN` is only required
//! when it is needed (a reply is requested, or the packet is itself a reply), as 2005-era uploads carry none;
//! `CP` keys other than `DataTime` and factor fields (`RtdInterval`, `QnRtn`, …) are kept as [`CpParam`]s.
//!
//! Encoding is canonical: header fields in the standard's order, `DataTime` first in `CP`, then the params, then
//! the factor values, consecutive fields of one factor joined by `,`. [`encode`] refuses a packet that would
//! not decode back to itself, so `decode(&encode(p)?) == p` holds for every packet `encode` accepts.
//!
//! This module deliberately does no I/O, reads no clock and does not reassemble packetised (`PNUM`/`PNO`)
//! uploads: each packet stands alone.

use super::{cn, flag, st, Hj212Error};

/// The largest data segment the four length digits can describe, and the largest this codec accepts. The
/// standard itself limits the data segment to [`STANDARD_MAX_DATA_LEN`] bytes; some devices exceed it.
pub const MAX_DATA_LEN: usize = 9999;
/// The data segment limit HJ 212-2017 gives in its packet layout table (数据段, 0–1024 characters).
pub const STANDARD_MAX_DATA_LEN: usize = 1024;
/// Bytes around the data segment: `##`, four length digits, four CRC digits, CR LF.
pub const FRAME_OVERHEAD: usize = 12;
/// The longest frame [`decode`] accepts.
pub const MAX_FRAME_LEN: usize = MAX_DATA_LEN + FRAME_OVERHEAD;

/// How much of a peer's text an error message quotes.
const QUOTE_LIMIT: usize = 40;

/// One HJ 212 packet (the data segment of one frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Request number `YYYYMMDDhhmmsszzz`: ties a reply to its request. Digits only.
    pub qn: Option<String>,
    /// System code (`21` surface water quality, `91` system interaction, …). Digits only.
    pub st: String,
    /// Command number (`2011`, `2051`, `2061`, `9014`, …). Digits only.
    pub cn: String,
    /// Access password (plain text on the wire).
    pub pw: Option<String>,
    /// Station (monitoring point) identifier; never empty.
    pub mn: String,
    /// Reply, packetising and version bits, see [`super::flag`].
    pub flag: Option<u8>,
    /// Number of packets of a packetised upload (`PNUM`).
    pub pnum: Option<u32>,
    /// This packet's number, from 1 (`PNO`).
    pub pno: Option<u32>,
    pub cp: Cp,
}

/// The command parameters (`CP=&&…&&`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cp {
    /// `DataTime=YYYYMMDDhhmmss`: the time the values refer to (station local time).
    pub data_time: Option<String>,
    /// Keys that are neither `DataTime` nor a factor field, in order (`RtdInterval=30`, `QnRtn=1`, …).
    pub params: Vec<CpParam>,
    /// Factor fields in order (`w01001-Rtd=7.21`).
    pub values: Vec<FactorValue>,
}

/// A `CP` item that is not a factor field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpParam {
    pub key: String,
    pub value: String,
}

/// One factor field: `code-field=value`, e.g. `w21003-Avg=0.12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorValue {
    /// Factor code, e.g. `w01001` (pH).
    pub code: String,
    /// `Rtd`, `Avg`, `Min`, `Max`, `Cou`, `Flag`, `EFlag`, `SampleTime`, …
    pub field: String,
    /// The value as sent; numbers stay text so nothing is lost before the caller decides.
    pub value: String,
}

impl FactorValue {
    pub fn new(code: &str, field: &str, value: &str) -> Self {
        FactorValue { code: code.to_owned(), field: field.to_owned(), value: value.to_owned() }
    }
}

/// A factor's data flag (`<code>-Flag`, 数据标记), as listed by HJ 212 implementations (srdgame/lua-HJ212
/// `hj212/types.lua` names all eight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFlag {
    /// `N`: normal.
    Normal,
    /// `F`: instrument stopped.
    Stopped,
    /// `M`: maintenance.
    Maintenance,
    /// `S`: value set by hand.
    Manual,
    /// `D`: instrument fault.
    Fault,
    /// `C`: calibration.
    Calibration,
    /// `T`: over the measuring range.
    OverRange,
    /// `B`: communication fault between instrument and data logger.
    CommFault,
    /// Anything else, as sent.
    Other(String),
}

impl DataFlag {
    pub fn parse(text: &str) -> DataFlag {
        match text {
            "N" => DataFlag::Normal,
            "F" => DataFlag::Stopped,
            "M" => DataFlag::Maintenance,
            "S" => DataFlag::Manual,
            "D" => DataFlag::Fault,
            "C" => DataFlag::Calibration,
            "T" => DataFlag::OverRange,
            "B" => DataFlag::CommFault,
            other => DataFlag::Other(other.to_owned()),
        }
    }

    /// The flag as sent on the wire.
    pub fn code(&self) -> &str {
        match self {
            DataFlag::Normal => "N",
            DataFlag::Stopped => "F",
            DataFlag::Maintenance => "M",
            DataFlag::Manual => "S",
            DataFlag::Fault => "D",
            DataFlag::Calibration => "C",
            DataFlag::OverRange => "T",
            DataFlag::CommFault => "B",
            DataFlag::Other(text) => text,
        }
    }

    /// Only `N` is normal: a value under any other flag must not be trusted for alarms or billing.
    pub fn is_normal(&self) -> bool {
        *self == DataFlag::Normal
    }
}

/// The numeric fields and the data flag of one factor, read from a [`Cp`].
#[derive(Debug, Clone, PartialEq)]
pub struct FactorReading {
    pub code: String,
    pub rtd: Option<f64>,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub cou: Option<f64>,
    pub flag: Option<DataFlag>,
}

impl FactorReading {
    /// Whether the values can be trusted: the flag is `N`, or there is no flag at all (2005-era minute and
    /// hour data carry none). Any other flag (`F`, `M`, `S`, `D`, `C`, `T`, `B`, unknown) is not normal.
    pub fn is_normal(&self) -> bool {
        self.flag.as_ref().is_none_or(DataFlag::is_normal)
    }
}

impl Cp {
    /// The raw value of `code-field`, e.g. `get("w01001", "Rtd")`.
    pub fn get(&self, code: &str, field: &str) -> Option<&str> {
        self.values.iter().find(|v| v.code == code && v.field == field).map(|v| v.value.as_str())
    }

    /// `code-field` as a finite number; `None` if absent or not a number.
    pub fn number(&self, code: &str, field: &str) -> Option<f64> {
        self.get(code, field).and_then(parse_number)
    }

    /// The data flag of `code` (`code-Flag`), if sent.
    pub fn data_flag(&self, code: &str) -> Option<DataFlag> {
        self.get(code, "Flag").map(DataFlag::parse)
    }

    /// The value of a param such as `RtdInterval` or `QnRtn`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    /// The factor codes present, in order of first appearance.
    pub fn factor_codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = Vec::new();
        for v in &self.values {
            if !codes.contains(&v.code.as_str()) {
                codes.push(&v.code);
            }
        }
        codes
    }

    /// The numbers and flag of `code`, if any field of it is present.
    pub fn reading(&self, code: &str) -> Option<FactorReading> {
        if !self.values.iter().any(|v| v.code == code) {
            return None;
        }
        Some(FactorReading {
            code: code.to_owned(),
            rtd: self.number(code, "Rtd"),
            avg: self.number(code, "Avg"),
            min: self.number(code, "Min"),
            max: self.number(code, "Max"),
            cou: self.number(code, "Cou"),
            flag: self.data_flag(code),
        })
    }

    /// One reading per factor, in order of first appearance.
    pub fn readings(&self) -> Vec<FactorReading> {
        self.factor_codes().into_iter().filter_map(|code| self.reading(code)).collect()
    }
}

impl Packet {
    /// A packet with the required fields and nothing else.
    pub fn new(st: &str, cn: &str, mn: &str) -> Self {
        Packet {
            qn: None,
            st: st.to_owned(),
            cn: cn.to_owned(),
            pw: None,
            mn: mn.to_owned(),
            flag: None,
            pnum: None,
            pno: None,
            cp: Cp::default(),
        }
    }

    /// Whether the `A` bit of `Flag` asks for a reply.
    pub fn wants_reply(&self) -> bool {
        self.flag.is_some_and(|f| f & flag::REPLY != 0)
    }

    /// Whether the `D` bit of `Flag` says the packet is one of several.
    pub fn is_packetised(&self) -> bool {
        self.flag.is_some_and(|f| f & flag::PACKETISED != 0)
    }

    /// The standard version from `Flag` (0 = 2005, 1 = 2017); `None` without a `Flag`.
    pub fn version(&self) -> Option<u8> {
        self.flag.map(flag::version)
    }
}

/// The data reply (数据应答, `CN=9014`) the centre sends when a data upload asks for one (`Flag` bit A).
///
/// It is the HJ 212-2017 form: the upload's `QN` (the station matches the reply by it), `ST=91`, `CN=9014`, the
/// upload's `PW` and `MN`, `Flag=4` (version 2017, no reply wanted) and an empty `CP=&&&&`, as
/// caoyiliang/HJ212_Server builds it (`Request/DataReq.cs`). Some implementations put `QnRtn=1` (or even
/// `ExeRtn=1`) into the `CP` of a 9014; but `QnRtn` belongs to the request response (`9011`) and `ExeRtn` to the
/// execution result (`9012`), and the 2005 edition's form put `QN` and `CN` inside `CP`, so none of these are
/// sent here. `CN=9013` (notification response) answers notifications, not uploads.
///
/// `None` when `upload` has no `QN` to answer to.
pub fn data_response(upload: &Packet) -> Option<Packet> {
    Some(Packet {
        qn: Some(upload.qn.clone()?),
        st: st::SYSTEM.to_owned(),
        cn: cn::DATA_RESPONSE.to_owned(),
        pw: upload.pw.clone(),
        mn: upload.mn.clone(),
        flag: Some(flag::V2017),
        pnum: None,
        pno: None,
        cp: Cp::default(),
    })
}

/// CRC16 as HJ 212-2017 Appendix A defines it, over the data segment's bytes.
///
/// Note that it is not CRC-16/MODBUS: each byte is XORed into the register after the register has been
/// shifted right by eight (`crc = (crc >> 8) ^ byte`), then eight rounds of "shift right, XOR 0xA001 if the
/// bit shifted out was 1". The register starts at 0xFFFF and is sent as four hex digits. The appendix's C
/// routine is quoted in the whycan.com thread on HJ 212-2017 and the same steps appear in public
/// implementations (1249993110/IceCoffee.HJ212 `Utils.cs`, tang0-0/HJ212-Pack `src/hj212.c`); the test
/// `crc16_matches_the_standards_published_example` checks it against the standard's example frame (`1C80`).
/// Bytes are taken unsigned, as the appendix's `unsigned char`; ports that XOR signed bytes (a Java `byte`, a C
/// `signed char`) differ from it for bytes above 0x7F, which an ASCII data segment never has.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc = (crc >> 8) ^ u16::from(byte);
        for _ in 0..8 {
            let carry = crc & 1 == 1;
            crc >>= 1;
            if carry {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// Decodes one whole frame, from `##` to CR LF inclusive.
///
/// Returns the first problem found; see the module documentation for the order of the checks. Never panics.
pub fn decode(frame: &[u8]) -> Result<Packet, Hj212Error> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(Hj212Error::TooLong { len: frame.len(), max: MAX_FRAME_LEN });
    }
    if frame.len() < FRAME_OVERHEAD {
        return Err(Hj212Error::TooShort { len: frame.len() });
    }
    let rest = frame.strip_prefix(b"##").ok_or(Hj212Error::BadHeader)?;
    let rest = rest.strip_suffix(b"\r\n").ok_or(Hj212Error::MissingTrailer)?;
    let (length_text, rest) = rest.split_at_checked(4).ok_or(Hj212Error::TooShort { len: frame.len() })?;
    let declared = parse_digits(length_text).ok_or_else(|| Hj212Error::BadLength(quote_bytes(length_text)))?;
    let data_len = rest.len().checked_sub(4).ok_or(Hj212Error::TooShort { len: frame.len() })?;
    let (data, crc_text) = rest.split_at_checked(data_len).ok_or(Hj212Error::TooShort { len: frame.len() })?;
    if declared != data.len() {
        return Err(Hj212Error::LengthMismatch { declared, actual: data.len() });
    }
    let actual = parse_hex4(crc_text).ok_or_else(|| Hj212Error::BadCrcText(quote_bytes(crc_text)))?;
    let expected = crc16(data);
    if expected != actual {
        return Err(Hj212Error::CrcMismatch { expected, actual });
    }
    let text = std::str::from_utf8(data).map_err(|_| Hj212Error::NotUtf8)?;
    parse_segment(text)
}

/// Encodes `packet` as one frame (`##`, length, data segment, upper-case CRC, CR LF).
///
/// Fails if the packet would not decode back to itself: a value holding a separator (`;`, `,`, `=`, `&`) or a
/// control character, a non-digit `ST`, `CN` or `QN`, an empty `MN`, a factor code with a `-`, a `DataTime`
/// that is not `YYYYMMDDhhmmss`, a data segment over [`MAX_DATA_LEN`] bytes, and so on.
pub fn encode(packet: &Packet) -> Result<Vec<u8>, Hj212Error> {
    let segment = data_segment(packet);
    if segment.len() > MAX_DATA_LEN {
        return Err(Hj212Error::Unencodable(format!(
            "the data segment has {} bytes, more than the {MAX_DATA_LEN} the length field can give",
            segment.len()
        )));
    }
    match parse_segment(&segment) {
        Ok(read_back) if read_back == *packet => Ok(frame_segment(segment.as_bytes())),
        Ok(_) => Err(Hj212Error::Unencodable(
            "it would decode differently (a '-' in a factor code or field, or DataTime among the params?)".to_owned(),
        )),
        Err(e) => Err(Hj212Error::Unencodable(e.to_string())),
    }
}

/// Wraps a data segment into a frame (`##`, length, segment, CRC, CR LF) without checking the segment. Used
/// by [`encode`] after its checks, and by the simulated station to build deliberately broken frames.
pub fn frame_segment(data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(data.len() + FRAME_OVERHEAD);
    frame.extend_from_slice(b"##");
    frame.extend_from_slice(format!("{:04}", data.len()).as_bytes());
    frame.extend_from_slice(data);
    frame.extend_from_slice(format!("{:04X}", crc16(data)).as_bytes());
    frame.extend_from_slice(b"\r\n");
    frame
}

/// The canonical data segment of `packet` (unchecked).
fn data_segment(packet: &Packet) -> String {
    let mut out = String::new();
    let mut field = |key: &str, value: &str| {
        out.push_str(key);
        out.push('=');
        out.push_str(value);
        out.push(';');
    };
    if let Some(qn) = &packet.qn {
        field("QN", qn);
    }
    field("ST", &packet.st);
    field("CN", &packet.cn);
    if let Some(pw) = &packet.pw {
        field("PW", pw);
    }
    field("MN", &packet.mn);
    if let Some(f) = packet.flag {
        field("Flag", &f.to_string());
    }
    if let Some(pnum) = packet.pnum {
        field("PNUM", &pnum.to_string());
    }
    if let Some(pno) = packet.pno {
        field("PNO", &pno.to_string());
    }
    out.push_str("CP=&&");
    let mut groups: Vec<String> = Vec::new();
    if let Some(t) = &packet.cp.data_time {
        groups.push(format!("DataTime={t}"));
    }
    for p in &packet.cp.params {
        groups.push(format!("{}={}", p.key, p.value));
    }
    let mut last_code: Option<&str> = None;
    for v in &packet.cp.values {
        let item = format!("{}-{}={}", v.code, v.field, v.value);
        match groups.last_mut() {
            Some(group) if last_code == Some(v.code.as_str()) => {
                group.push(',');
                group.push_str(&item);
            }
            _ => groups.push(item),
        }
        last_code = Some(&v.code);
    }
    out.push_str(&groups.join(";"));
    out.push_str("&&");
    out
}

/// Parses a data segment (the text between the length and the CRC).
fn parse_segment(text: &str) -> Result<Packet, Hj212Error> {
    let cp_at = text.find("CP=&&").ok_or(Hj212Error::MissingField("CP"))?;
    let (head, cp_part) = text.split_at_checked(cp_at).ok_or(Hj212Error::MissingField("CP"))?;
    let cp_body = cp_part.get("CP=&&".len()..).unwrap_or_default();
    let cp_inner = cp_body
        .strip_suffix("&&")
        .ok_or_else(|| Hj212Error::BadCp("the data segment does not end with the closing && of CP".to_owned()))?;

    let mut fields = HeaderFields::default();
    if !head.is_empty() {
        let head = head.strip_suffix(';').ok_or_else(|| Hj212Error::BadCp("CP must follow a ';'".to_owned()))?;
        for item in head.split(';') {
            fields.take(item)?;
        }
    }
    let cp = parse_cp(cp_inner)?;
    fields.finish(cp)
}

/// The header fields seen so far, each at most once.
#[derive(Default)]
struct HeaderFields<'a> {
    qn: Option<&'a str>,
    st: Option<&'a str>,
    cn: Option<&'a str>,
    pw: Option<&'a str>,
    mn: Option<&'a str>,
    flag: Option<u8>,
    pnum: Option<u32>,
    pno: Option<u32>,
}

impl<'a> HeaderFields<'a> {
    fn take(&mut self, item: &'a str) -> Result<(), Hj212Error> {
        if item.is_empty() {
            return Err(bad("header", "empty field (two ';' in a row)"));
        }
        let (key, value) = item.split_once('=').ok_or_else(|| bad("header", &format!("{} has no '='", quote(item))))?;
        check_value(key, value)?;
        fn once<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), Hj212Error> {
            if slot.is_some() {
                return Err(Hj212Error::DuplicateField(quote(key)));
            }
            *slot = Some(value);
            Ok(())
        }
        match key {
            "QN" => once(&mut self.qn, key, digits(key, value, 20)?),
            "ST" => once(&mut self.st, key, digits(key, value, 5)?),
            "CN" => once(&mut self.cn, key, digits(key, value, 7)?),
            "PW" => once(&mut self.pw, key, value),
            "MN" => {
                if value.is_empty() {
                    return Err(bad("MN", "empty"));
                }
                once(&mut self.mn, key, value)
            }
            "Flag" => {
                let f = digits(key, value, 3)?.parse::<u8>().map_err(|_| bad("Flag", "not a number from 0 to 255"))?;
                once(&mut self.flag, key, f)
            }
            "PNUM" | "PNO" => {
                let n = digits(key, value, 9)?.parse::<u32>().map_err(|_| bad(key, "not a packet number"))?;
                if n == 0 {
                    return Err(bad(key, "packets are counted from 1"));
                }
                let slot = if key == "PNUM" { &mut self.pnum } else { &mut self.pno };
                once(slot, key, n)
            }
            other => Err(Hj212Error::UnknownField(quote(other))),
        }
    }

    fn finish(self, cp: Cp) -> Result<Packet, Hj212Error> {
        let st = self.st.ok_or(Hj212Error::MissingField("ST"))?;
        let cn = self.cn.ok_or(Hj212Error::MissingField("CN"))?;
        let mn = self.mn.ok_or(Hj212Error::MissingField("MN"))?;
        let wants_reply = self.flag.is_some_and(|f| f & flag::REPLY != 0);
        let is_reply =
            matches!(cn, cn::REQUEST_RESPONSE | cn::EXECUTION_RESULT | cn::NOTIFICATION_RESPONSE | cn::DATA_RESPONSE);
        if self.qn.is_none() && (wants_reply || is_reply) {
            return Err(Hj212Error::MissingField("QN"));
        }
        let packetised = self.flag.is_some_and(|f| f & flag::PACKETISED != 0);
        match (self.pnum, self.pno) {
            (None, None) if packetised => return Err(bad("Flag", "says packetised but PNUM and PNO are missing")),
            (Some(_), None) => return Err(Hj212Error::MissingField("PNO")),
            (None, Some(_)) => return Err(Hj212Error::MissingField("PNUM")),
            (Some(pnum), Some(pno)) if pno > pnum => {
                return Err(bad("PNO", &format!("packet {pno} of {pnum}")));
            }
            _ => {}
        }
        Ok(Packet {
            qn: self.qn.map(str::to_owned),
            st: st.to_owned(),
            cn: cn.to_owned(),
            pw: self.pw.map(str::to_owned),
            mn: mn.to_owned(),
            flag: self.flag,
            pnum: self.pnum,
            pno: self.pno,
            cp,
        })
    }
}

/// Parses the text between `CP=&&` and the closing `&&`.
fn parse_cp(inner: &str) -> Result<Cp, Hj212Error> {
    let mut cp = Cp::default();
    // One stray ';' before the closing && is common in the field; nothing else may be empty.
    let inner = inner.strip_suffix(';').unwrap_or(inner);
    if inner.is_empty() {
        return Ok(cp);
    }
    for group in inner.split(';') {
        if group.is_empty() {
            return Err(Hj212Error::BadCp("empty group (two ';' in a row)".to_owned()));
        }
        for item in group.split(',') {
            if item.is_empty() {
                return Err(Hj212Error::BadCp(format!("empty item in group {}", quote(group))));
            }
            let (key, value) =
                item.split_once('=').ok_or_else(|| Hj212Error::BadCp(format!("{} has no '='", quote(item))))?;
            check_value(key, value)?;
            if key == "DataTime" {
                if cp.data_time.is_some() {
                    return Err(Hj212Error::DuplicateField("DataTime".to_owned()));
                }
                check_timestamp(value)?;
                cp.data_time = Some(value.to_owned());
            } else if let Some((code, field)) = key.split_once('-') {
                if !is_name(code) || !is_name(field) {
                    return Err(Hj212Error::BadCp(format!("{} is not a <factor>-<field> key", quote(key))));
                }
                if cp.values.iter().any(|v| v.code == code && v.field == field) {
                    return Err(Hj212Error::DuplicateField(quote(key)));
                }
                cp.values.push(FactorValue::new(code, field, value));
            } else {
                if !is_name(key) {
                    return Err(Hj212Error::BadCp(format!("{} is not a valid key", quote(key))));
                }
                if cp.params.iter().any(|p| p.key == key) {
                    return Err(Hj212Error::DuplicateField(quote(key)));
                }
                cp.params.push(CpParam { key: key.to_owned(), value: value.to_owned() });
            }
        }
    }
    Ok(cp)
}

/// A key part: letters, digits and `_`, not empty.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A value must not contain a separator or a control character, or the frame could not be read back.
fn check_value(key: &str, value: &str) -> Result<(), Hj212Error> {
    match value.chars().find(|c| matches!(c, ';' | ',' | '=' | '&') || c.is_control()) {
        Some(c) => Err(bad(&quote(key), &format!("value contains {c:?}"))),
        None => Ok(()),
    }
}

/// `value` as 1..=`max` ASCII digits.
fn digits<'a>(key: &str, value: &'a str, max: usize) -> Result<&'a str, Hj212Error> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(key, &format!("{} is not 1 to {max} digits", quote(value))));
    }
    Ok(value)
}

/// `YYYYMMDDhhmmss` with plausible month, day, hour, minute and second.
fn check_timestamp(value: &str) -> Result<(), Hj212Error> {
    let invalid = || bad("DataTime", &format!("{} is not YYYYMMDDhhmmss", quote(value)));
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let part = |from: usize, to: usize| value.get(from..to).and_then(|s| s.parse::<u32>().ok());
    let ok = matches!(part(4, 6), Some(1..=12))
        && matches!(part(6, 8), Some(1..=31))
        && matches!(part(8, 10), Some(0..=23))
        && matches!(part(10, 12), Some(0..=59))
        && matches!(part(12, 14), Some(0..=59));
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Four (or any number of) ASCII decimal digits as a number; `None` for anything else.
fn parse_digits(text: &[u8]) -> Option<usize> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0usize, |acc, d| acc.checked_mul(10)?.checked_add(usize::from(d - b'0')))
}

/// Four hex digits, either case.
fn parse_hex4(text: &[u8]) -> Option<u16> {
    if text.len() != 4 {
        return None;
    }
    text.iter().try_fold(0u16, |acc, &c| Some((acc << 4) | u16::try_from(char::from(c).to_digit(16)?).ok()?))
}

fn bad(field: &str, reason: &str) -> Hj212Error {
    Hj212Error::BadField { field: field.to_owned(), reason: reason.to_owned() }
}

/// A peer's text, escaped and cut short, for an error message.
fn quote(text: &str) -> String {
    let cut: String = text.chars().take(QUOTE_LIMIT).collect();
    let ellipsis = if cut.len() < text.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", cut)
}

fn quote_bytes(bytes: &[u8]) -> String {
    let cut = bytes.get(..QUOTE_LIMIT.min(bytes.len())).unwrap_or_default();
    cut.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_digit_parsers() {
        assert_eq!(parse_hex4(b"1c80"), Some(0x1C80));
        assert_eq!(parse_hex4(b"FFFF"), Some(0xFFFF));
        assert_eq!(parse_hex4(b"12G4"), None);
        assert_eq!(parse_hex4(b"123"), None);
        assert_eq!(parse_digits(b"0101"), Some(101));
        assert_eq!(parse_digits(b"01a1"), None);
        assert_eq!(parse_digits(b""), None);
    }

    #[test]
    fn timestamps() {
        assert!(check_timestamp("20240229235959").is_ok());
        assert!(check_timestamp("20241301000000").is_err());
        assert!(check_timestamp("20240100000000").is_err());
        assert!(check_timestamp("2024010100000").is_err());
        assert!(check_timestamp("2024010100000a").is_err());
    }

    #[test]
    fn quotes_are_short_and_escaped() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert!(quote(&"x".repeat(100)).ends_with('…'));
        assert_eq!(quote_bytes(b"\xff1"), "\\xff1");
    }
}
