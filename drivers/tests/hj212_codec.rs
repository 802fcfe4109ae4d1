//! The HJ 212 codec: the published CRC example, round trips, every way a frame is rejected, the factor helpers,
//! the data reply, the stream framer, and a deterministic mutation loop that must never panic the decoder.

mod hj212_support;

use hj212_support::{frame, frame_bytes, upload};
use waterworks_drivers::hj212::{
    cn, crc16, data_response, decode, encode, flag, Cp, CpParam, DataFlag, FactorValue, Hj212Error, LineFramer, Packet,
    MAX_FRAME_LEN,
};

/// The example frame printed in HJ 212-2017 itself (a command setting the real-time data interval), as quoted
/// from the standard in the whycan.com forum thread on HJ 212-2017 (viewtopic.php?id=3594, where a C run of the
/// standard's Appendix A CRC routine over this data segment prints `strlen=101, crc16=1c80`, "matching the
/// standard's example") and in codetd.com/en/article/8105109. The standard gives `1C80` as its CRC.
const STANDARD_SEGMENT: &str =
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
const STANDARD_FRAME: &str =
    "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n";

#[test]
fn crc16_matches_the_standards_published_example() {
    assert_eq!(STANDARD_SEGMENT.len(), 101);
    assert_eq!(crc16(STANDARD_SEGMENT.as_bytes()), 0x1C80);
    assert_eq!(crc16(b""), 0xFFFF, "nothing shifted in leaves the initial register");
}

#[test]
fn the_standards_example_frame_decodes_and_re_encodes_byte_for_byte() {
    let p = decode(STANDARD_FRAME.as_bytes()).expect("the standard's example decodes");
    assert_eq!(p.qn.as_deref(), Some("20160801085857223"));
    assert_eq!((p.st.as_str(), p.cn.as_str(), p.pw.as_deref()), ("32", "1062", Some("100000")));
    assert_eq!(p.mn, "010000A8900016F000169DC0");
    assert_eq!(p.flag, Some(5));
    assert!(p.wants_reply());
    assert!(!p.is_packetised());
    assert_eq!(p.version(), Some(1));
    assert_eq!(p.cp.param("RtdInterval"), Some("30"));
    assert_eq!(p.cp.data_time, None);
    assert!(p.cp.values.is_empty());
    assert_eq!(encode(&p).expect("encodes"), STANDARD_FRAME.as_bytes());
}

#[test]
fn a_lower_case_crc_is_accepted() {
    let lower = STANDARD_FRAME.replace("1C80", "1c80");
    assert_eq!(decode(lower.as_bytes()), decode(STANDARD_FRAME.as_bytes()));
}

#[test]
fn realtime_upload_round_trip_and_readings() {
    let mut p = upload("20240301120000123", "ST-0001", "123456", flag::V2017 | flag::REPLY);
    p.cp.values.push(FactorValue::new("w21003", "Rtd", "0.12"));
    p.cp.values.push(FactorValue::new("w21003", "Flag", "D"));
    let bytes = encode(&p).expect("encodes");
    let text = String::from_utf8(bytes.clone()).expect("ascii");
    assert!(text.starts_with("##"), "{text}");
    assert!(text.ends_with("\r\n"), "{text}");
    assert!(
        text.contains(
            ";Flag=5;CP=&&DataTime=20240301120000;w01001-Rtd=7.21,w01001-Flag=N;w01003-Rtd=0.31,w01003-Flag=N;\
             w21003-Rtd=0.12,w21003-Flag=D&&"
        ),
        "{text}"
    );
    let back = decode(&bytes).expect("decodes");
    assert_eq!(back, p);

    let ph = back.cp.reading("w01001").expect("pH present");
    assert_eq!(ph.rtd, Some(7.21));
    assert_eq!(ph.flag, Some(DataFlag::Normal));
    assert!(ph.is_normal());
    let nh3 = back.cp.reading("w21003").expect("NH3-N present");
    assert_eq!(nh3.flag, Some(DataFlag::Fault));
    assert!(!nh3.is_normal(), "a D (fault) flag is not normal");
    assert_eq!(back.cp.reading("w20120"), None);
    assert_eq!(back.cp.factor_codes(), vec!["w01001", "w01003", "w21003"]);
    assert_eq!(back.cp.readings().len(), 3);
    assert_eq!(back.cp.number("w01003", "Rtd"), Some(0.31));
    assert_eq!(back.cp.number("w01003", "Avg"), None);
}

#[test]
fn minute_and_hour_data_round_trip() {
    for cn in [cn::MINUTE_DATA, cn::HOUR_DATA] {
        let mut p = Packet::new("21", cn, "ST-0002");
        p.qn = Some("20240301120100000".to_owned());
        p.pw = Some("123456".to_owned());
        p.flag = Some(flag::V2017);
        p.cp.data_time = Some("20240301120000".to_owned());
        for (field, value) in [("Avg", "0.118"), ("Min", "0.101"), ("Max", "0.135"), ("Cou", "12.5"), ("Flag", "N")] {
            p.cp.values.push(FactorValue::new("w21003", field, value));
        }
        let back = decode(&encode(&p).expect("encodes")).expect("decodes");
        assert_eq!(back, p);
        let r = back.cp.reading("w21003").expect("present");
        assert_eq!((r.avg, r.min, r.max, r.cou, r.rtd), (Some(0.118), Some(0.101), Some(0.135), Some(12.5), None));
    }
}

#[test]
fn packetised_and_minimal_packets_round_trip() {
    let mut split = upload("20240301120000123", "ST-0003", "123456", flag::V2017 | flag::PACKETISED | flag::REPLY);
    split.pnum = Some(3);
    split.pno = Some(2);
    assert!(split.is_packetised());
    assert_eq!(decode(&encode(&split).expect("encodes")).expect("decodes"), split);

    // 2005-style: no QN, no PW, no Flag, empty CP.
    let minimal = Packet::new("32", "2011", "88888880000001");
    let bytes = encode(&minimal).expect("encodes");
    assert_eq!(bytes, frame("ST=32;CN=2011;MN=88888880000001;CP=&&&&"));
    assert_eq!(decode(&bytes).expect("decodes"), minimal);
    assert_eq!(minimal.version(), None);
    assert!(!minimal.wants_reply());
}

#[test]
fn the_data_reply_is_the_2017_form_with_the_uploads_qn() {
    let up = upload("20240301120000123", "ST-0001", "123456", 5);
    let reply = data_response(&up).expect("the upload has a QN");
    let bytes = encode(&reply).expect("encodes");
    assert_eq!(bytes, frame("QN=20240301120000123;ST=91;CN=9014;PW=123456;MN=ST-0001;Flag=4;CP=&&&&"));
    assert_eq!(decode(&bytes).expect("decodes"), reply);
    assert!(!reply.wants_reply(), "a reply asks for no reply");

    let mut no_qn = up.clone();
    no_qn.qn = None;
    no_qn.flag = Some(4);
    assert_eq!(data_response(&no_qn), None);
}

#[test]
fn data_flags() {
    for (code, flag) in [
        ("N", DataFlag::Normal),
        ("F", DataFlag::Stopped),
        ("M", DataFlag::Maintenance),
        ("S", DataFlag::Manual),
        ("D", DataFlag::Fault),
        ("C", DataFlag::Calibration),
        ("T", DataFlag::OverRange),
        ("B", DataFlag::CommFault),
        ("X", DataFlag::Other("X".to_owned())),
    ] {
        assert_eq!(DataFlag::parse(code), flag);
        assert_eq!(flag.code(), code);
        assert_eq!(flag.is_normal(), code == "N", "{code}");
    }
}

#[test]
fn numbers_that_are_not_numbers_read_as_none() {
    let cp = Cp {
        data_time: None,
        params: vec![CpParam { key: "QnRtn".to_owned(), value: "1".to_owned() }],
        values: vec![
            FactorValue::new("w01001", "Rtd", "abc"),
            FactorValue::new("w01003", "Rtd", "NaN"),
            FactorValue::new("w01009", "Rtd", " 8.5"),
        ],
    };
    assert_eq!(cp.number("w01001", "Rtd"), None);
    assert_eq!(cp.number("w01003", "Rtd"), None);
    assert_eq!(cp.number("w01009", "Rtd"), Some(8.5));
    assert_eq!(cp.param("QnRtn"), Some("1"));
    let r = cp.reading("w01001").expect("present");
    assert!(r.is_normal(), "no flag at all counts as normal (2005-era data has none)");
}

/// The head of a valid data segment, for the rejection cases below.
const HEAD: &str = "QN=20240301120000123;ST=21;CN=2011;PW=123456;MN=ST-0001;Flag=5;";

/// Decoding `input` must fail with `expected`.
fn check(input: &[u8], expected: Hj212Error) {
    assert_eq!(decode(input), Err(expected), "input {:?}", String::from_utf8_lossy(input));
}

/// Decoding the framed `segment` must fail with an error whose message contains `needle`.
fn check_segment(segment: &str, needle: &str) {
    match decode(&frame(segment)) {
        Ok(p) => panic!("{segment:?} decoded as {p:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{segment:?}: {e:?} does not mention {needle:?}"),
    }
}

#[test]
fn every_framing_rejection() {
    check(b"##0000\r\n", Hj212Error::TooShort { len: 8 });
    check(&vec![b'#'; MAX_FRAME_LEN + 1], Hj212Error::TooLong { len: MAX_FRAME_LEN + 1, max: MAX_FRAME_LEN });
    check(STANDARD_FRAME.replacen("##", "#*", 1).as_bytes(), Hj212Error::BadHeader);
    check(STANDARD_FRAME.trim_end_matches('\n').as_bytes(), Hj212Error::MissingTrailer);
    check(STANDARD_FRAME.replacen("\r\n", "\n\r", 1).as_bytes(), Hj212Error::MissingTrailer);
    check(STANDARD_FRAME.replacen("0101", "01a1", 1).as_bytes(), Hj212Error::BadLength("01a1".to_owned()));
    check(STANDARD_FRAME.replacen("0101", "-101", 1).as_bytes(), Hj212Error::BadLength("-101".to_owned()));
    check(
        STANDARD_FRAME.replacen("0101", "0102", 1).as_bytes(),
        Hj212Error::LengthMismatch { declared: 102, actual: 101 },
    );
    check(STANDARD_FRAME.replace("1C80", "1C8G").as_bytes(), Hj212Error::BadCrcText("1C8G".to_owned()));
    check(
        STANDARD_FRAME.replace("1C80", "1C81").as_bytes(),
        Hj212Error::CrcMismatch { expected: 0x1C80, actual: 0x1C81 },
    );
    // One character of the data changed, CRC kept: the CRC catches it.
    let altered = STANDARD_FRAME.replace("ST=32", "ST=33");
    match decode(altered.as_bytes()) {
        Err(Hj212Error::CrcMismatch { expected, actual: 0x1C80 }) => assert_ne!(expected, 0x1C80),
        other => panic!("{other:?}"),
    }
    let mut not_utf8 = HEAD.as_bytes().to_vec();
    not_utf8.extend_from_slice(b"CP=&&w01001-Rtd=\xff&&");
    check(&frame_bytes(&not_utf8), Hj212Error::NotUtf8);
}

#[test]
fn every_field_rejection() {
    let cp = "CP=&&&&";
    check(&frame(&format!("QN=1;CN=2011;MN=A;{cp}")), Hj212Error::MissingField("ST"));
    check(&frame(&format!("QN=1;ST=21;MN=A;{cp}")), Hj212Error::MissingField("CN"));
    check(&frame(&format!("QN=1;ST=21;CN=2011;{cp}")), Hj212Error::MissingField("MN"));
    check(&frame("QN=1;ST=21;CN=2011;MN=A;"), Hj212Error::MissingField("CP"));
    check(&frame(&format!("ST=21;CN=2011;MN=A;Flag=5;{cp}")), Hj212Error::MissingField("QN"));
    check(&frame(&format!("ST=91;CN=9014;MN=A;Flag=4;{cp}")), Hj212Error::MissingField("QN"));
    check(&frame(&format!("ST=21;ST=21;CN=2011;MN=A;{cp}")), Hj212Error::DuplicateField("\"ST\"".to_owned()));
    check(&frame(&format!("ST=21;CN=2011;MN=A;XX=1;{cp}")), Hj212Error::UnknownField("\"XX\"".to_owned()));
    check(&frame(&format!("st=21;CN=2011;MN=A;{cp}")), Hj212Error::UnknownField("\"st\"".to_owned()));
    check(&frame(&format!("ST=21;CN=2011;MN=A;Flag=7;QN=1;PNUM=2;{cp}")), Hj212Error::MissingField("PNO"));
    check(&frame(&format!("ST=21;CN=2011;MN=A;PNO=1;{cp}")), Hj212Error::MissingField("PNUM"));

    check_segment(&format!("ST=2a;CN=2011;MN=A;{cp}"), "bad field ST");
    check_segment(&format!("ST=21;CN=;MN=A;{cp}"), "bad field CN");
    check_segment(&format!("ST=21;CN=20110000;MN=A;{cp}"), "bad field CN");
    check_segment(&format!("QN=2024-03-01;ST=21;CN=2011;MN=A;{cp}"), "bad field QN");
    check_segment(&format!("ST=21;CN=2011;MN=;{cp}"), "bad field MN");
    check_segment(&format!("ST=21;CN=2011;MN=A;Flag=300;{cp}"), "bad field Flag");
    check_segment(&format!("ST=21;CN=2011;MN=A;Flag=x;{cp}"), "bad field Flag");
    check_segment(&format!("ST=21;CN=2011;MN=A;Flag=6;{cp}"), "says packetised");
    check_segment(&format!("ST=21;CN=2011;MN=A;PNUM=0;PNO=0;{cp}"), "counted from 1");
    check_segment(&format!("ST=21;CN=2011;MN=A;PNUM=2;PNO=3;{cp}"), "packet 3 of 2");
    check_segment(&format!("ST=21;CN=2011;MN=A;;{cp}"), "empty field");
    check_segment(&format!("ST=21;CN=2011;MN;{cp}"), "has no '='");
    check_segment(&format!("ST=21;CN=2011;MN=A\tB;{cp}"), "value contains '\\t'");
    check_segment(&format!("ST=21;CN=2011;MN=A{cp}"), "CP must follow a ';'");
}

#[test]
fn every_cp_rejection() {
    let seg = |cp: &str| format!("{HEAD}CP=&&{cp}");
    check_segment(&seg("DataTime=20240301120000"), "does not end with the closing &&");
    check_segment(&format!("{HEAD}CP=&&&"), "does not end with the closing &&");
    check_segment(&seg("DataTime=20240301120000;;w01001-Rtd=7&&"), "empty group");
    check_segment(&seg("w01001-Rtd=7,,w01001-Flag=N&&"), "empty item");
    check_segment(&seg("w01001-Rtd&&"), "has no '='");
    check_segment(&seg("w01001-Rtd=7.1,2&&"), "has no '='");
    check_segment(&seg("-Rtd=7&&"), "not a <factor>-<field> key");
    check_segment(&seg("w01001-=7&&"), "not a <factor>-<field> key");
    check_segment(&seg("w01001-Rtd-x=7&&"), "not a <factor>-<field> key");
    check_segment(&seg("=7&&"), "not a valid key");
    check_segment(&seg("w01001-Rtd=7;w01001-Rtd=8&&"), "given twice");
    check_segment(&seg("DataTime=20240301120000;DataTime=20240301120000&&"), "given twice");
    check_segment(&seg("QnRtn=1;QnRtn=2&&"), "given twice");
    check_segment(&seg("DataTime=20241301120000&&"), "not YYYYMMDDhhmmss");
    check_segment(&seg("DataTime=2024030112&&"), "not YYYYMMDDhhmmss");
    check_segment(&seg("w01001-Rtd=7&1&&"), "value contains '&'");
    // One stray ';' before the closing && is tolerated.
    let tolerated = decode(&frame(&seg("w01001-Rtd=7.2;&&"))).expect("a trailing ';' is accepted");
    assert_eq!(tolerated.cp.number("w01001", "Rtd"), Some(7.2));
}

#[test]
fn encode_refuses_packets_that_would_not_read_back() {
    let base = upload("20240301120000123", "ST-0001", "123456", 5);
    let refused = |change: &dyn Fn(&mut Packet)| {
        let mut p = base.clone();
        change(&mut p);
        match encode(&p) {
            Err(Hj212Error::Unencodable(_)) => {}
            other => panic!("{p:?} gave {other:?}"),
        }
    };
    refused(&|p| p.mn = "A;B".to_owned());
    refused(&|p| p.mn = String::new());
    refused(&|p| p.st = "2x".to_owned());
    refused(&|p| p.qn = Some("abc".to_owned()));
    refused(&|p| p.qn = None);
    refused(&|p| p.pw = Some("p=w".to_owned()));
    refused(&|p| p.cp.values[0].value = "7,1".to_owned());
    refused(&|p| p.cp.values[0].code = "w01-001".to_owned());
    refused(&|p| p.cp.values[0].field = String::new());
    refused(&|p| p.cp.data_time = Some("yesterday".to_owned()));
    refused(&|p| p.cp.params.push(CpParam { key: "DataTime".to_owned(), value: "20240301120000".to_owned() }));
    refused(&|p| p.cp.params.push(CpParam { key: "w01001-Avg".to_owned(), value: "1".to_owned() }));
    refused(&|p| p.cp.values.push(FactorValue::new("w01001", "Rtd", "7.3")));
    refused(&|p| {
        p.cp.values = (0..1000).map(|i| FactorValue::new(&format!("x{i:05}"), "Rtd", "1.000")).collect();
    });
}

#[test]
fn framer_gives_the_same_frames_however_the_stream_is_cut() {
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|i| encode(&upload(&format!("202403011200{i:05}"), "ST-0001", "123456", 4)).expect("encodes"))
        .collect();
    let stream: Vec<u8> = frames.concat();
    let mut rng = Lcg(99);
    for _ in 0..200 {
        let mut framer = LineFramer::new(MAX_FRAME_LEN);
        let mut got = Vec::new();
        let mut rest: &[u8] = &stream;
        while !rest.is_empty() {
            let take = (1 + rng.below(300) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            got.extend(framer.feed(chunk).into_iter().map(|r| r.expect("clean stream")));
            rest = tail;
        }
        assert_eq!(got, frames);
        assert_eq!(framer.buffered(), 0);
    }
}

#[test]
fn framer_memory_stays_bounded_on_a_stream_without_line_ends() {
    let mut framer = LineFramer::new(MAX_FRAME_LEN);
    let chunk = vec![b'A'; 4096];
    let mut errors = Vec::new();
    for _ in 0..256 {
        for item in framer.feed(&chunk) {
            errors.push(item.expect_err("no line is complete"));
        }
        assert!(framer.buffered() <= MAX_FRAME_LEN, "{} bytes held", framer.buffered());
    }
    assert_eq!(errors, vec![Hj212Error::Oversized { max: MAX_FRAME_LEN }], "one report for one endless line");
    let good = encode(&upload("20240301120000123", "ST-0001", "123456", 4)).expect("encodes");
    let mut tail = b"\r\n".to_vec();
    tail.extend_from_slice(&good);
    let out = framer.feed(&tail);
    assert_eq!(out, vec![Ok(good)], "framing resumes after the next line end");
}

/// A deterministic generator for the mutation loop (Knuth's MMIX LCG, high bits used).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Applies one random edit to `bytes`, favouring the characters the grammar cares about.
fn mutate(bytes: &mut Vec<u8>, rng: &mut Lcg) {
    const INTERESTING: &[u8] = b";,=&-#\r\n0123456789ABCDEFNQPSTCMWw.\xff\x00 ";
    let pick = |rng: &mut Lcg| {
        if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len() as u64) as usize]
        } else {
            rng.below(256) as u8
        }
    };
    let len = bytes.len() as u64;
    let at = rng.below(len + 1) as usize;
    match rng.below(7) {
        0 if at < bytes.len() => bytes[at] = pick(rng),
        1 => bytes.insert(at, pick(rng)),
        2 if at < bytes.len() => {
            bytes.remove(at);
        }
        3 => bytes.truncate(at),
        4 => {
            let end = (at + rng.below(16) as usize).min(bytes.len());
            let copy = bytes[at..end].to_vec();
            bytes.splice(at..at, copy);
        }
        5 if bytes.len() >= 2 => {
            let other = rng.below(len) as usize;
            let last = bytes.len() - 1;
            bytes.swap(at.min(last), other);
        }
        _ => bytes.extend_from_slice(b";w01001-Rtd=1"),
    }
}

#[test]
fn thousands_of_mutated_frames_never_panic_and_whatever_decodes_round_trips() {
    let mut minute = Packet::new("21", "2051", "ST-0009");
    minute.qn = Some("20240301120100000".to_owned());
    minute.flag = Some(5);
    minute.pnum = Some(2);
    minute.pno = Some(1);
    minute.cp.data_time = Some("20240301120000".to_owned());
    minute.cp.params.push(CpParam { key: "RtdInterval".to_owned(), value: "30".to_owned() });
    for field in ["Avg", "Min", "Max", "Flag"] {
        minute.cp.values.push(FactorValue::new("w21003", field, "0.12"));
    }
    let seeds: Vec<Vec<u8>> = vec![
        STANDARD_FRAME.as_bytes().to_vec(),
        encode(&upload("20240301120000123", "ST-0001", "123456", 5)).expect("encodes"),
        encode(&minute).expect("encodes"),
        encode(&data_response(&minute).expect("has QN")).expect("encodes"),
    ];
    let mut rng = Lcg(2017);
    let (mut decoded, mut failed) = (0u32, 0u32);
    for round in 0..20_000u32 {
        let seed = &seeds[round as usize % seeds.len()];
        // Half the rounds mutate the data segment and re-frame it, so that the mutation gets past the CRC and
        // exercises the field parser; the other half mutate the whole frame.
        let candidate = if round % 2 == 0 {
            let mut segment = seed[6..seed.len() - 6].to_vec();
            for _ in 0..=rng.below(3) {
                mutate(&mut segment, &mut rng);
            }
            frame_bytes(&segment)
        } else {
            let mut whole = seed.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut whole, &mut rng);
            }
            whole
        };
        match decode(&candidate) {
            Ok(packet) => {
                decoded += 1;
                let again = encode(&packet).unwrap_or_else(|e| {
                    panic!("{:?} decoded but does not encode: {e}", String::from_utf8_lossy(&candidate))
                });
                assert_eq!(decode(&again).as_ref(), Ok(&packet), "{:?}", String::from_utf8_lossy(&candidate));
            }
            Err(e) => {
                failed += 1;
                assert!(!e.to_string().contains('\n'), "error messages stay on one line: {e}");
            }
        }
        let mut framer = LineFramer::new(64);
        let _ = framer.feed(&candidate);
        assert!(framer.buffered() <= 64);
    }
    // Both outcomes must be common, or the loop is not testing what it claims.
    assert!(decoded > 1000, "only {decoded} mutated frames decoded");
    assert!(failed > 10_000, "only {failed} mutated frames failed");
}
