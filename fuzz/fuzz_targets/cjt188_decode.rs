//! Fuzzes the CJ/T 188 decoder and the payload parsers: no input may panic, a decoded frame must encode
//! back to exactly the bytes it came from, and every shorter prefix of those bytes must ask for more.

#![no_main]

use drivers::cjt188::payload::{parse_metering_reply, parse_metering_request, parse_valve_reply, parse_valve_request};
use drivers::cjt188::{decode, encode, junk_len, MeterTime, StBits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let junk = junk_len(data);
    assert!(junk <= data.len());
    if let Ok(Some((frame, used))) = decode(data) {
        assert!(used <= data.len());
        assert_eq!(encode(&frame, 0).as_deref(), Ok(&data[junk..used]));
        // The decoder is incremental: with any byte of the frame missing it waits for more.
        assert_eq!(decode(&data[..used - 1]), Ok(None));
        let cut = junk + usize::from(data.first().copied().unwrap_or(0)) % (used - junk);
        assert_eq!(decode(&data[..cut]), Ok(None));
        for st in [StBits::STANDARD, StBits::KINGDA] {
            if let Ok(reading) = parse_metering_reply(&frame.data, &st) {
                let _ = reading.time.map(|t| t.to_string());
                let _ = reading.current.volume.to_string();
            }
            let _ = parse_valve_reply(&frame.data, &st);
        }
        let _ = parse_valve_request(&frame.data);
        let _ = parse_metering_request(&frame.data);
        let _ = (frame.address.to_string(), frame.meter_type.to_string());
    }
    // The payload parsers take raw bytes too.
    let _ = parse_metering_reply(data, &StBits::KINGDA);
    let _ = parse_valve_reply(data, &StBits::STANDARD);
    if let Some(clock) = data.get(..7).and_then(|b| <[u8; 7]>::try_from(b).ok()) {
        let _ = MeterTime::decode(clock);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<drivers::cjt188::Address>();
    }
});
