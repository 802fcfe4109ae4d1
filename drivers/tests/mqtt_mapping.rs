//! Payload mappings without a broker: single readings, arrays of readings, meter ids from topic levels, every
//! reason a payload is refused, the RFC 3339 parser, and the configuration checks of mappings and settings.
//! An NB-IoT vendor of our own invention exercises what issue 7 §6 added: boolean and enumerated status fields,
//! flags from several places, a missing time with and without the arrival-time fallback, and a status that does
//! not decode keeping the reading (volume included) with the problem attached.

use std::time::Duration;

use waterworks_drivers::mqtt::{
    map, rfc3339_to_ms, FieldPath, MapError, MappedReading, MeterSource, MqttSettings, PayloadMapping, StatusSpec,
    TimeFallback, TimeFormat,
};

fn path(p: &str) -> FieldPath {
    FieldPath::parse(p).expect("test path is valid")
}

/// A vendor whose meters publish `{"meter":"M1","reading":{"vol":1234,"t":1709251200,"st":3}}`, volume in litres.
fn single_vendor() -> PayloadMapping {
    PayloadMapping {
        readings: None,
        meter: MeterSource::Field(path("/meter")),
        volume: path("/reading/vol"),
        scale: 0.001,
        unit: None,
        time: Some(path("/reading/t")),
        time_format: TimeFormat::EpochS,
        time_fallback: TimeFallback::Refuse,
        status: Some(StatusSpec::Bits {
            path: path("/reading/st"),
            bits: vec![(0, "valve_closed".into()), (1, "battery_low".into()), (4, "meter_fault".into())],
        }),
        flags: Vec::new(),
    }
}

/// A concentrator that publishes `{"time":"…","meters":[{"id":…,"v":…,"u":"L","flags":[…]}]}`.
fn concentrator_vendor() -> PayloadMapping {
    PayloadMapping {
        readings: Some(path("/meters")),
        meter: MeterSource::Field(path("/id")),
        volume: path("/v"),
        scale: 1.0,
        unit: Some(path("/u")),
        time: Some(path("^/time")),
        time_format: TimeFormat::Rfc3339,
        time_fallback: TimeFallback::Refuse,
        status: Some(StatusSpec::Names {
            path: path("/flags"),
            names: vec![("LOWBAT".into(), "battery_low".into()), ("TAMPER".into(), "magnetic_tamper".into())],
        }),
        flags: Vec::new(),
    }
}

/// An NB-IoT meter that publishes
/// `{"imei":"868…","data":{"vol_l":…,"ts":"…","alarm":5,"battery_low":true,"valve":1},"events":["LEAK"]}`:
/// an alarm bit word, a battery flag of its own, the valve state as a number (0 open, 1 closed, 2 fault) and
/// an array of event names. Its status lives in four places.
fn nb_vendor() -> PayloadMapping {
    PayloadMapping {
        readings: None,
        meter: MeterSource::Field(path("/imei")),
        volume: path("/data/vol_l"),
        scale: 0.001,
        unit: None,
        time: Some(path("/data/ts")),
        time_format: TimeFormat::Rfc3339,
        time_fallback: TimeFallback::Refuse,
        status: Some(StatusSpec::Bits {
            path: path("/data/alarm"),
            bits: vec![(0, "magnetic_tamper".into()), (1, "battery_low".into()), (2, "meter_fault".into())],
        }),
        flags: vec![
            StatusSpec::Bool { path: path("/data/battery_low"), name: "battery_low".into() },
            StatusSpec::Values {
                path: path("/data/valve"),
                values: vec![
                    ("0".into(), String::new()),
                    ("1".into(), "valve_closed".into()),
                    ("2".into(), "valve_fault".into()),
                ],
            },
            StatusSpec::Names { path: path("/events"), names: vec![("LEAK".into(), "reverse_flow".into())] },
        ],
    }
}

/// One NB-IoT payload with the given `data` members besides the volume (litres 123456) and `events`.
fn nb_payload(data: &str, events: &str) -> String {
    let comma = if data.is_empty() { "" } else { "," };
    format!(r#"{{"imei":"868000000000042","data":{{"vol_l":123456{comma}{data}}},"events":{events}}}"#)
}

/// 2024-03-01T08:00:00+08:00.
const NB_TS: i64 = 1_709_251_200_000;
const NB_TIME: &str = r#""ts":"2024-03-01T08:00:00+08:00""#;

/// Maps one NB-IoT payload that must map, and returns (time, status, status error text).
fn nb(mapping: &PayloadMapping, data: &str, events: &str) -> (Option<i64>, Vec<String>, Option<String>) {
    let payload = nb_payload(data, events);
    let mut got = match map(mapping, "nb/up", payload.as_bytes()) {
        Ok(got) => got,
        Err(e) => panic!("{payload} did not map: {e}"),
    };
    assert_eq!(got.len(), 1);
    let r = got.remove(0);
    assert_eq!(r.meter, "868000000000042");
    // The volume is always there, whatever happened to the status.
    assert!((r.volume_m3 - 123.456).abs() < 1e-9, "{payload}: {}", r.volume_m3);
    (r.ts_ms, r.status, r.status_error.map(|e| e.to_string()))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn reading(meter: &str, ts_ms: i64, volume_m3: f64, status: &[&str]) -> MappedReading {
    MappedReading {
        meter: meter.to_owned(),
        ts_ms: Some(ts_ms),
        volume_m3,
        status: status.iter().map(|s| (*s).to_owned()).collect(),
        status_error: None,
    }
}

/// Maps `payload` and compares with `expected` (volumes to the micro-m³).
fn check(mapping: &PayloadMapping, topic: &str, payload: &str, expected: &[MappedReading]) {
    let got = match map(mapping, topic, payload.as_bytes()) {
        Ok(got) => got,
        Err(e) => panic!("{payload} did not map: {e}"),
    };
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!((&g.meter, g.ts_ms, &g.status, &g.status_error), (&e.meter, e.ts_ms, &e.status, &e.status_error));
        assert!((g.volume_m3 - e.volume_m3).abs() < 1e-6, "{} != {}", g.volume_m3, e.volume_m3);
    }
}

/// Maps `payload`, expects a refusal, and returns its message.
fn refused(mapping: &PayloadMapping, topic: &str, payload: &str) -> (MapError, String) {
    match map(mapping, topic, payload.as_bytes()) {
        Ok(r) => panic!("{payload} mapped to {r:?}"),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

#[test]
fn a_single_reading_maps_with_scale_and_status_bits() {
    check(
        &single_vendor(),
        "any/topic",
        r#"{"meter":"M-0042","reading":{"vol":123456,"t":1709251200,"st":19}}"#,
        &[reading("M-0042", 1_709_251_200_000, 123.456, &["valve_closed", "battery_low", "meter_fault"])],
    );
    // Integer meter ids become their decimal text; unlisted status bits are ignored; a null status means none.
    check(
        &single_vendor(),
        "t",
        r#"{"meter":31000042,"reading":{"vol":0,"t":0,"st":4}}"#,
        &[reading("31000042", 0, 0.0, &[])],
    );
    check(
        &single_vendor(),
        "t",
        r#"{"meter":"A","reading":{"vol":5,"t":1,"st":null}}"#,
        &[reading("A", 1000, 0.005, &[])],
    );
    check(&single_vendor(), "t", r#"{"meter":"A","reading":{"vol":5,"t":1}}"#, &[reading("A", 1000, 0.005, &[])]);
}

#[test]
fn an_array_of_readings_maps_with_a_shared_time_units_and_status_names() {
    let payload = r#"{"concentrator":"C1","time":"2024-03-01T08:00:00+08:00","meters":[
        {"id":"M1","v":1234.5,"u":"L","flags":["LOWBAT","SOMETHING_ELSE"]},
        {"id":"M2","v":17.25,"u":"m3","flags":[]},
        {"id":"M3","v":3,"u":"吨","flags":["TAMPER","LOWBAT"]}]}"#;
    let ts = 1_709_251_200_000;
    check(
        &concentrator_vendor(),
        "c/C1/up",
        payload,
        &[
            reading("M1", ts, 1.2345, &["battery_low"]),
            reading("M2", ts, 17.25, &[]),
            reading("M3", ts, 3.0, &["magnetic_tamper", "battery_low"]),
        ],
    );
    // An empty array is a message with no readings, not an error.
    check(&concentrator_vendor(), "c", r#"{"time":"2024-03-01T00:00:00Z","meters":[]}"#, &[]);
    // The payload root itself may be the array; then every path is relative to an element.
    let mut root_array = single_vendor();
    root_array.readings = Some(path(""));
    check(
        &root_array,
        "t",
        r#"[{"meter":"A","reading":{"vol":1000,"t":10}},{"meter":"B","reading":{"vol":2000,"t":10}}]"#,
        &[reading("A", 10_000, 1.0, &[]), reading("B", 10_000, 2.0, &[])],
    );
}

#[test]
fn meter_ids_come_from_a_topic_level() {
    let mut mapping = single_vendor();
    mapping.meter = MeterSource::TopicLevel(1);
    check(&mapping, "water/M-7/reading", r#"{"reading":{"vol":1,"t":2}}"#, &[reading("M-7", 2000, 0.001, &[])]);
    // A meter uploading a day of readings at once: every element gets the topic's id.
    mapping.readings = Some(path("/history"));
    mapping.time = Some(path("/t"));
    mapping.volume = path("/vol");
    mapping.time_format = TimeFormat::EpochMs;
    check(
        &mapping,
        "water/M-8/reading",
        r#"{"history":[{"vol":1,"t":5},{"vol":2,"t":6}]}"#,
        &[reading("M-8", 5, 0.001, &[]), reading("M-8", 6, 0.002, &[])],
    );

    let (e, text) = refused(&mapping, "water", r#"{"history":[{"vol":1,"t":5}]}"#);
    assert!(matches!(e, MapError::Topic { level: 1, .. }), "{e:?}");
    assert_eq!(text, r#"topic "water", level 1: the topic has only 1 levels"#);
    let (_, text) = refused(&mapping, "water//reading", r#"{"history":[{"vol":1,"t":5}]}"#);
    assert_eq!(text, r#"topic "water//reading", level 1: the meter id is empty"#);
}

#[test]
fn every_refusal_names_its_path_and_reason() {
    let single = single_vendor();
    let cases: &[(&PayloadMapping, &str, &str)] = &[
        // Not JSON at all, or not UTF-8.
        (&single, "{\"meter\":", "payload is not JSON: EOF while parsing a value at line 1 column 9"),
        (&single, "\u{1}", "payload is not JSON: expected value at line 1 column 1"),
        // Missing fields, at any depth.
        (&single, r#"{"reading":{"vol":1,"t":1}}"#, "/meter: missing"),
        (&single, r#"{"meter":"A","reading":{"t":1}}"#, "/reading/vol: missing"),
        (&single, r#"{"meter":"A","reading":{"vol":1}}"#, "/reading/t: missing"),
        (&single, r#"{"meter":"A"}"#, "/reading/vol: missing"),
        // Wrong types.
        (&single, r#"{"meter":"A","reading":{"vol":"12","t":1}}"#, "/reading/vol: expected a number, got string"),
        (&single, r#"{"meter":"A","reading":{"vol":null,"t":1}}"#, "/reading/vol: expected a number, got null"),
        (&single, r#"{"meter":1.5,"reading":{"vol":1,"t":1}}"#, "/meter: expected a string or a non-negative integer, got fractional number"),
        (&single, r#"{"meter":-3,"reading":{"vol":1,"t":1}}"#, "/meter: expected a string or a non-negative integer, got negative integer"),
        (&single, r#"{"meter":true,"reading":{"vol":1,"t":1}}"#, "/meter: expected a string or a non-negative integer, got boolean"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":1.5}}"#, "/reading/t: expected an integer (epoch time), got fractional number"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":"1709251200"}}"#, "/reading/t: expected an integer (epoch time), got string"),
        (&single, r#"[1,2]"#, "/meter: missing"),
        // Bad values.
        (&single, r#"{"meter":"A","reading":{"vol":-1,"t":1}}"#, "/reading/vol: a cumulative volume cannot be negative (-1)"),
        (&single, r#"{"meter":"A","reading":{"vol":1e308,"t":1}}"#, "/reading/vol: 1e305 m3 is beyond any meter's register (1e12 m3)"),
        (&single, r#"{"meter":" ","reading":{"vol":1,"t":1}}"#, "/meter: the meter id is empty"),
        (&single, r#"{"meter":"A\u0007","reading":{"vol":1,"t":1}}"#, "/meter: the meter id \"A\\u{7}\" contains control characters"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":-5}}"#, "/reading/t: time -5000 ms since 1970 is outside 1970..=9999 (seconds and milliseconds mixed up?)"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":1709251200000}}"#, "/reading/t: time 1709251200000000 ms since 1970 is outside 1970..=9999 (seconds and milliseconds mixed up?)"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":9223372036854775807}}"#, "/reading/t: epoch time 9223372036854775807 is out of range"),
    ];
    for (mapping, payload, expected) in cases {
        let (_, text) = refused(mapping, "t", payload);
        assert_eq!(&text, expected, "payload {payload}");
    }

    let conc = concentrator_vendor();
    let time = r#""time":"2024-03-01T00:00:00Z""#;
    let conc_cases: Vec<(String, &str)> = vec![
        (r#"{"time":"2024-03-01T00:00:00Z"}"#.to_owned(), "/meters: missing"),
        (format!(r#"{{{time},"meters":{{"id":"M1"}}}}"#), "/meters: expected an array of readings, got object"),
        // An element's error names the element, and refuses the whole message.
        (
            format!(r#"{{{time},"meters":[{{"id":"M1","v":1,"u":"m3"}},{{"id":"M2","v":"x","u":"m3"}}]}}"#),
            "/meters/1/v: expected a number, got string",
        ),
        (
            format!(r#"{{{time},"meters":[{{"id":"M1","v":1,"u":"gal"}}]}}"#),
            r#"/meters/0/u: unknown volume unit "gal" (known: m3, m³, M3, t, 吨, L, l, dm3, 升, kL)"#,
        ),
        (format!(r#"{{{time},"meters":[{{"id":"M1","v":1,"u":3}}]}}"#), "/meters/0/u: expected a string, got number"),
        (format!(r#"{{{time},"meters":[{{"id":"M1","v":1}}]}}"#), "/meters/0/u: missing"),
        // The shared time is shown at its root path.
        (r#"{"meters":[{"id":"M1","v":1,"u":"L"}]}"#.to_owned(), "/time: missing"),
        (
            r#"{"time":"2024-03-01 00:00:00","meters":[{"id":"M1","v":1,"u":"L"}]}"#.to_owned(),
            r#"/time: "2024-03-01 00:00:00": a space in place of 'T' is not accepted"#,
        ),
        (
            r#"{"time":1709251200,"meters":[{"id":"M1","v":1,"u":"L"}]}"#.to_owned(),
            "/time: expected an RFC 3339 string, got number",
        ),
    ];
    for (payload, expected) in &conc_cases {
        let (_, text) = refused(&conc, "t", payload);
        assert_eq!(&text, expected, "payload {payload}");
    }

    // The root array case shows the element's path; the whole payload is "(payload)".
    let mut root_array = single_vendor();
    root_array.readings = Some(path(""));
    assert_eq!(refused(&root_array, "t", r#"{"a":1}"#).1, "(payload): expected an array of readings, got object");
    assert_eq!(refused(&root_array, "t", r#"[{"meter":"A"}]"#).1, "/0/reading/vol: missing");

    // The ingest's own refusal: a message on a topic no configured filter matches.
    assert_eq!(
        MapError::NoMapping { topic: "old/topic".into() }.to_string(),
        r#"no configured topic filter matches "old/topic""#
    );
}

#[test]
fn rfc3339_is_parsed_strictly() {
    let ok = [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-03-01T00:00:00Z", 1_709_251_200_000),
        ("2024-03-01T08:00:00+08:00", 1_709_251_200_000),
        ("2024-02-29T23:30:00-00:30", 1_709_251_200_000),
        ("2024-03-01t00:00:00z", 1_709_251_200_000),
        ("2024-03-01T00:00:00.5Z", 1_709_251_200_500),
        ("2024-03-01T00:00:00.123Z", 1_709_251_200_123),
        ("2024-03-01T00:00:00.123999999Z", 1_709_251_200_123),
        ("2000-02-29T12:00:00Z", 951_825_600_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ];
    for (text, ms) in ok {
        assert_eq!(rfc3339_to_ms(text), Ok(ms), "{text}");
    }
    let bad = [
        ("2024-03-01", "too short"),
        ("2024-03-01T00:00:00", "the UTC offset is missing"),
        ("2024-03-01 00:00:00Z", "a space in place of 'T'"),
        ("2024-3-01T00:00:00Z", "expected 2 digits of month at position 5"),
        ("202403-01T00:00:00Z", "expected '-' at position 4"),
        ("2024-03-01T00:00:00.Z", "must be followed by fraction digits"),
        ("2024-03-01T00:00:00+0800", "expected 'Z' or an offset"),
        ("2024-03-01T00:00:00+24:00", "offset 24:00 is out of range"),
        ("2023-02-29T00:00:00Z", "2023-02 has no day 29"),
        ("2024-04-31T00:00:00Z", "2024-04 has no day 31"),
        ("2024-13-01T00:00:00Z", "month 13 is out of range"),
        ("2024-03-01T24:00:00Z", "time 24:00 is out of range"),
        ("2024-03-01T00:60:00Z", "time 00:60 is out of range"),
        ("2016-12-31T23:59:60Z", "leap seconds are not supported"),
        ("1969-12-31T23:59:59Z", "is before 1970"),
        ("1970-01-01T00:00:00+01:00", "is before 1970"),
        ("2024-03-01T00:00:00Zjunk", "expected 'Z' or an offset"),
        ("２024-03-01T00:00:00Z", "expected 4 digits of year"),
        ("2024-03-01T0a:00:00Z", "expected 2 digits of hour"),
    ];
    for (text, reason) in bad {
        match rfc3339_to_ms(text) {
            Ok(ms) => panic!("{text} parsed as {ms}"),
            Err(e) => assert!(e.to_string().contains(reason), "{text}: {e}"),
        }
    }
}

#[test]
fn mappings_and_settings_say_what_is_wrong_with_them() {
    assert!(FieldPath::parse("meter").unwrap_err().to_string().contains("must start with '/'"));
    assert!(FieldPath::parse("/a~2").unwrap_err().to_string().contains("'~' must be followed by 0 or 1"));
    assert!(FieldPath::parse("^/time").is_ok_and(|p| p.from_root()));
    // `~1` is a '/' inside a key.
    let mut slashed = single_vendor();
    slashed.volume = path("/reading/vol~1l");
    check(&slashed, "t", r#"{"meter":"A","reading":{"vol/l":1,"t":1}}"#, &[reading("A", 1000, 0.001, &[])]);

    assert_eq!("epoch_ms".parse::<TimeFormat>(), Ok(TimeFormat::EpochMs));
    assert!("iso".parse::<TimeFormat>().unwrap_err().to_string().contains("known: epoch_s, epoch_ms, rfc3339"));

    let mut bad = single_vendor();
    bad.scale = 0.0;
    bad.readings = Some(path("^/meters"));
    bad.status = Some(StatusSpec::Bits { path: path("/st"), bits: vec![(64, "x".into()), (1, String::new())] });
    bad.time = None;
    bad.flags = vec![
        StatusSpec::Bool { path: path("/b"), name: String::new() },
        StatusSpec::Values { path: path("/v"), values: Vec::new() },
        StatusSpec::Values { path: path("/v"), values: vec![(String::new(), "valve_closed".into())] },
        StatusSpec::Bits { path: path("/s"), bits: Vec::new() },
        StatusSpec::Names { path: path("/n"), names: vec![("X".into(), String::new())] },
    ];
    let keys: Vec<String> = bad.problems().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        vec![
            "scale",
            "readings",
            "time",
            "status.bits",
            "status.bits",
            "flags[0].bool",
            "flags[1].values",
            "flags[2].values",
            "flags[3].bits",
            "flags[4].names"
        ]
    );
    assert!(single_vendor().check().is_ok());
    assert!(nb_vendor().check().is_ok());
    // Without a time path the arrival fallback is what makes a mapping whole.
    let mut no_time = nb_vendor();
    no_time.time = None;
    assert_eq!(
        no_time.check().map_err(|e| e.to_string()),
        Err("time: give the time's path, or time_fallback = \"arrival\"".to_owned())
    );
    no_time.time_fallback = TimeFallback::Arrival;
    assert!(no_time.check().is_ok());
    assert_eq!("arrival".parse::<TimeFallback>(), Ok(TimeFallback::Arrival));
    assert!("now".parse::<TimeFallback>().unwrap_err().to_string().contains("known: refuse, arrival"));
    // The names a mapping can give, for the configuration to check against the model's.
    let nb = nb_vendor();
    let given: Vec<(String, Vec<&str>)> = nb.status_sources().map(|(k, s)| (k, s.flag_names())).collect();
    assert_eq!(
        given,
        vec![
            ("status".to_owned(), vec!["magnetic_tamper", "battery_low", "meter_fault"]),
            ("flags[0]".to_owned(), vec!["battery_low"]),
            ("flags[1]".to_owned(), vec!["valve_closed", "valve_fault"]),
            ("flags[2]".to_owned(), vec!["reverse_flow"]),
        ]
    );

    let mut settings = MqttSettings::new("localhost", 1883, "waterworks-1");
    assert_eq!(settings.problems(), vec![("topics".to_owned(), "at least one topic filter is needed".to_owned())]);
    let mut by_level = single_vendor();
    by_level.meter = MeterSource::TopicLevel(2);
    settings.topics =
        vec![("water/+/reading".into(), single_vendor()), ("water/#".into(), by_level), ("a/#/b".into(), bad)];
    settings.keep_alive = Duration::from_millis(500);
    settings.password = Some("secret".into());
    settings.max_backoff = Duration::from_millis(100);
    settings.client_id = String::new();
    let keys: Vec<String> = settings.problems().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        vec![
            "client_id",
            "password",
            "keep_alive",
            "max_backoff",
            "topics[1].meter_topic_level",
            "topics[2].filter",
            "topics[2].scale",
            "topics[2].readings",
            "topics[2].time",
            "topics[2].status.bits",
            "topics[2].status.bits",
            "topics[2].flags[0].bool",
            "topics[2].flags[1].values",
            "topics[2].flags[2].values",
            "topics[2].flags[3].bits",
            "topics[2].flags[4].names",
        ]
    );
    assert!(settings.check().unwrap_err().to_string().starts_with("invalid configuration: client_id: "));
}

#[test]
fn a_boolean_field_is_a_status_flag() {
    let mapping = nb_vendor();
    let t = NB_TIME;
    assert_eq!(nb(&mapping, &format!(r#"{t},"battery_low":true"#), "[]"), (Some(NB_TS), names(&["battery_low"]), None));
    assert_eq!(nb(&mapping, &format!(r#"{t},"battery_low":false"#), "[]"), (Some(NB_TS), names(&[]), None));
    // Vendors that write flags as 0/1 are read the same way; null or absent is no flag.
    assert_eq!(nb(&mapping, &format!(r#"{t},"battery_low":1"#), "[]").1, names(&["battery_low"]));
    assert_eq!(nb(&mapping, &format!(r#"{t},"battery_low":0"#), "[]").1, names(&[]));
    assert_eq!(nb(&mapping, &format!(r#"{t},"battery_low":null"#), "[]").1, names(&[]));
}

#[test]
fn an_enumerated_value_maps_to_status_names_and_an_unknown_one_is_a_problem() {
    let mapping = nb_vendor();
    let t = NB_TIME;
    assert_eq!(nb(&mapping, &format!(r#"{t},"valve":0"#), "[]"), (Some(NB_TS), names(&[]), None));
    assert_eq!(nb(&mapping, &format!(r#"{t},"valve":1"#), "[]").1, names(&["valve_closed"]));
    assert_eq!(nb(&mapping, &format!(r#"{t},"valve":2"#), "[]").1, names(&["valve_fault"]));
    // A vendor that writes the number as a string means the same value.
    assert_eq!(nb(&mapping, &format!(r#"{t},"valve":"2""#), "[]").1, names(&["valve_fault"]));
    // A value the mapping does not list is not silently "open": the reading keeps its volume, with the problem.
    assert_eq!(
        nb(&mapping, &format!(r#"{t},"valve":7"#), "[]"),
        (Some(NB_TS), names(&[]), Some("/data/valve: unknown status value 7 (known: 0, 1, 2)".to_owned()))
    );
    assert_eq!(
        nb(&mapping, &format!(r#"{t},"valve":1.5"#), "[]").2.as_deref(),
        Some("/data/valve: expected an integer or a string (an enumerated status), got fractional number")
    );
}

#[test]
fn flags_from_several_places_are_or_ed_once_each() {
    let mapping = nb_vendor();
    let data = format!(r#"{NB_TIME},"alarm":7,"battery_low":true,"valve":1"#);
    // Bits 0..=2 of the alarm word, the battery flag (already set by bit 1: listed once), the valve, the event.
    assert_eq!(
        nb(&mapping, &data, r#"["LEAK","OTHER"]"#),
        (Some(NB_TS), names(&["magnetic_tamper", "battery_low", "meter_fault", "valve_closed", "reverse_flow"]), None)
    );
    // Each source alone.
    assert_eq!(nb(&mapping, &format!(r#"{NB_TIME},"alarm":4"#), "[]").1, names(&["meter_fault"]));
    assert_eq!(nb(&mapping, NB_TIME, r#"["LEAK"]"#).1, names(&["reverse_flow"]));
    assert_eq!(nb(&mapping, NB_TIME, "null").1, names(&[]));
}

#[test]
fn a_missing_time_is_refused_unless_the_arrival_time_may_stand_in() {
    let strict = nb_vendor();
    let (_, text) = refused(&strict, "nb/up", &nb_payload(r#""battery_low":true"#, "[]"));
    assert_eq!(text, "/data/ts: missing");
    let (_, text) = refused(&strict, "nb/up", &nb_payload(r#""ts":null"#, "[]"));
    assert_eq!(text, "/data/ts: expected an RFC 3339 string, got null");

    let mut lenient = nb_vendor();
    lenient.time_fallback = TimeFallback::Arrival;
    // No time (absent or null): no time of its own, for the receiver to stamp; the flags are as usual.
    assert_eq!(nb(&lenient, r#""battery_low":true"#, "[]"), (None, names(&["battery_low"]), None));
    assert_eq!(nb(&lenient, r#""ts":null"#, "[]"), (None, names(&[]), None));
    // A time that is there keeps being used, and a wrong one is still refused: it is a mapping mistake, not
    // an absent time.
    assert_eq!(nb(&lenient, NB_TIME, "[]").0, Some(NB_TS));
    let (_, text) = refused(&lenient, "nb/up", &nb_payload(r#""ts":1709251200"#, "[]"));
    assert_eq!(text, "/data/ts: expected an RFC 3339 string, got number");
    // A vendor that never sends a time needs no time path at all.
    lenient.time = None;
    assert_eq!(nb(&lenient, NB_TIME, "[]").0, None);
    // Every element of a concentrator's array without a time is left to the receiver too.
    let mut conc = concentrator_vendor();
    conc.time_fallback = TimeFallback::Arrival;
    let got = map(&conc, "c", br#"{"meters":[{"id":"M1","v":1,"u":"m3"},{"id":"M2","v":2,"u":"m3"}]}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), vec![None, None]);
}

#[test]
fn a_status_that_does_not_decode_keeps_the_volume_and_says_why() {
    let mapping = nb_vendor();
    // The battery flag as a word: that source fails; the others still give their flags; the volume stays.
    assert_eq!(
        nb(&mapping, &format!(r#"{NB_TIME},"alarm":1,"battery_low":"yes","valve":2"#), r#"["LEAK"]"#),
        (
            Some(NB_TS),
            names(&["magnetic_tamper", "valve_fault", "reverse_flow"]),
            Some("/data/battery_low: expected a boolean (or 0/1), got string".to_owned())
        )
    );
    // The first failing source is the one reported.
    assert_eq!(
        nb(&mapping, &format!(r#"{NB_TIME},"alarm":-1,"battery_low":2"#), r#""LEAK""#).2.as_deref(),
        Some("/data/alarm: expected a non-negative integer (status bits), got negative integer")
    );
    // The old single status field behaves the same: a word where bits were expected keeps the reading.
    let got = map(&single_vendor(), "t", br#"{"meter":"A","reading":{"vol":1,"t":1,"st":"ok"}}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((got[0].ts_ms, got[0].volume_m3, got[0].status.len()), (Some(1000), 0.001, 0));
    assert_eq!(
        got[0].status_error.as_ref().map(ToString::to_string).as_deref(),
        Some("/reading/st: expected a non-negative integer (status bits), got string")
    );
    // In a concentrator's array the problem names the element, and the other elements are untouched.
    let got = map(
        &concentrator_vendor(),
        "c",
        br#"{"time":"2024-03-01T00:00:00Z","meters":[{"id":"M1","v":1,"u":"m3","flags":["LOWBAT",7]},{"id":"M2","v":2,"u":"m3","flags":["LOWBAT"]}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got[0].status_error.as_ref().map(ToString::to_string).as_deref(),
        Some("/meters/0/flags/1: expected a string, got number")
    );
    assert_eq!((got[1].status.clone(), got[1].status_error.is_none()), (names(&["battery_low"]), true));
    // But a volume that does not decode still refuses the reading: there is nothing to bill.
    let (_, text) = refused(
        &mapping,
        "nb/up",
        r#"{"imei":"1","data":{"vol_l":"x","ts":"2024-03-01T00:00:00Z","battery_low":"yes"}}"#,
    );
    assert_eq!(text, "/data/vol_l: expected a number, got string");
}
