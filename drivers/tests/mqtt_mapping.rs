//! Payload mappings without a broker: single readings, arrays of readings, meter ids from topic levels, every
//! reason a payload is refused, the RFC 3339 parser, and the configuration checks of mappings and settings.

use std::time::Duration;

use waterworks_drivers::mqtt::{
    map, rfc3339_to_ms, FieldPath, MapError, MappedReading, MeterSource, MqttSettings, PayloadMapping, StatusSpec,
    TimeFormat,
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
        time: path("/reading/t"),
        time_format: TimeFormat::EpochS,
        status: Some(StatusSpec::Bits {
            path: path("/reading/st"),
            bits: vec![(0, "valve_closed".into()), (1, "battery_low".into()), (4, "meter_fault".into())],
        }),
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
        time: path("^/time"),
        time_format: TimeFormat::Rfc3339,
        status: Some(StatusSpec::Names {
            path: path("/flags"),
            names: vec![("LOWBAT".into(), "battery_low".into()), ("TAMPER".into(), "magnetic_tamper".into())],
        }),
    }
}

fn reading(meter: &str, ts_ms: i64, volume_m3: f64, status: &[&str]) -> MappedReading {
    MappedReading {
        meter: meter.to_owned(),
        ts_ms,
        volume_m3,
        status: status.iter().map(|s| (*s).to_owned()).collect(),
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
        assert_eq!((&g.meter, g.ts_ms, &g.status), (&e.meter, e.ts_ms, &e.status));
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
    mapping.time = path("/t");
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
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":1,"st":"ok"}}"#, "/reading/st: expected a non-negative integer (status bits), got string"),
        (&single, r#"{"meter":"A","reading":{"vol":1,"t":1,"st":-1}}"#, "/reading/st: expected a non-negative integer (status bits), got negative integer"),
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
        (
            format!(r#"{{{time},"meters":[{{"id":"M1","v":1,"u":"L","flags":"LOWBAT"}}]}}"#),
            "/meters/0/flags: expected an array of status names, got string",
        ),
        (
            format!(r#"{{{time},"meters":[{{"id":"M1","v":1,"u":"L","flags":["LOWBAT",7]}}]}}"#),
            "/meters/0/flags/1: expected a string, got number",
        ),
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
            Err(e) => assert!(e.contains(reason), "{text}: {e}"),
        }
    }
}

#[test]
fn mappings_and_settings_say_what_is_wrong_with_them() {
    assert!(FieldPath::parse("meter").unwrap_err().contains("must start with '/'"));
    assert!(FieldPath::parse("/a~2").unwrap_err().contains("'~' must be followed by 0 or 1"));
    assert!(FieldPath::parse("^/time").is_ok_and(|p| p.from_root()));
    // `~1` is a '/' inside a key.
    let mut slashed = single_vendor();
    slashed.volume = path("/reading/vol~1l");
    check(&slashed, "t", r#"{"meter":"A","reading":{"vol/l":1,"t":1}}"#, &[reading("A", 1000, 0.001, &[])]);

    assert_eq!("epoch_ms".parse::<TimeFormat>(), Ok(TimeFormat::EpochMs));
    assert!("iso".parse::<TimeFormat>().unwrap_err().contains("known: epoch_s, epoch_ms, rfc3339"));

    let mut bad = single_vendor();
    bad.scale = 0.0;
    bad.readings = Some(path("^/meters"));
    bad.status = Some(StatusSpec::Bits { path: path("/st"), bits: vec![(64, "x".into()), (1, String::new())] });
    let keys: Vec<&str> = bad.problems().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec!["scale", "readings", "status.bits", "status.bits"]);
    assert!(single_vendor().check().is_ok());

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
            "topics[2].status.bits",
            "topics[2].status.bits",
        ]
    );
    assert!(settings.check().unwrap_err().to_string().starts_with("invalid configuration: client_id: "));
}
