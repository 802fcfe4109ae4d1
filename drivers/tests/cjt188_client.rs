//! The CJ/T 188 client over an in-memory stream with a scripted meter on the other end: what it skips while
//! waiting, the two failure layers, and the poisoning contract.
//!
//! A duplex pipe stands in for any `AsyncRead + AsyncWrite` transport (a serial port later), so each test
//! controls every byte and its split. Time is paused: timeouts cost nothing and never race.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use waterworks_drivers::cjt188::payload::{metering_reply_data, valve_reply_data, DI_METERING, DI_VALVE};
use waterworks_drivers::cjt188::{
    decode, encode, AbnormalReply, Address, Cjt188Client, Cjt188Error, Cjt188Model, Control, DiOrder, Frame,
    FrameError, MeterType, Reading, ValveState, Volume, VolumeUnit,
};

const TIMEOUT: Duration = Duration::from_secs(2);

fn address(s: &str) -> Address {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn meter_a() -> Address {
    address("00000000000001")
}

/// A client and the meter's end of the pipe.
fn pipe(model: Cjt188Model) -> (Cjt188Client<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(4096);
    (Cjt188Client::new(ours, model, TIMEOUT), theirs)
}

/// Reads one request frame on the meter's end.
async fn read_request(meter: &mut DuplexStream) -> Frame {
    let mut buf = Vec::new();
    loop {
        match decode(&buf) {
            Ok(Some((frame, _))) => return frame,
            Ok(None) => {}
            Err(e) => panic!("the client sent a corrupt frame: {e}"),
        }
        let mut chunk = [0u8; 64];
        let n = meter.read(&mut chunk).await.unwrap_or(0);
        assert!(n > 0, "the client closed before sending a whole request");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A normal 901F reply from `from` to `request`, with SER `serial`.
fn metering_reply(from: Address, serial: u8, litres: u64) -> Frame {
    let current = Reading { volume: Volume::from_millilitres(litres * 1000), unit: VolumeUnit::Litre };
    let time = [0x00, 0x00, 0x12, 0x01, 0x03, 0x26, 0x20];
    Frame {
        meter_type: MeterType::COLD_WATER,
        address: from,
        control: Control(0x81),
        data: metering_reply_data(DiOrder::LittleEndian.bytes(DI_METERING), serial, current, current, time, 0x0000),
    }
}

fn bytes(frame: &Frame, preamble: usize) -> Vec<u8> {
    encode(frame, preamble).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(start_paused = true)]
async fn skips_noise_echoes_other_meters_and_stale_replies() {
    let (mut client, mut meter) = pipe(Cjt188Model::edition_2004());
    let script = tokio::spawn(async move {
        let request = read_request(&mut meter).await;
        let serial = request.data[2];
        let mut out = vec![0x00, 0x13, 0xFF, 0x16];
        // The request echoed back, as some RS-485 adapters do.
        out.extend(bytes(&request, 2));
        // Another meter's reply, a late reply with an earlier SER, and a reply to another function.
        out.extend(bytes(&metering_reply(address("00000000000002"), serial, 1), 2));
        out.extend(bytes(&metering_reply(meter_a(), serial.wrapping_sub(1), 2), 2));
        out.extend(bytes(&Frame { control: Control(0x84), ..metering_reply(meter_a(), serial, 3) }, 2));
        out.extend(bytes(&metering_reply(meter_a(), serial, 4), 4));
        // One byte at a time: the decoder must cope with any split.
        for b in out {
            let _ = meter.write_all(&[b]).await;
            tokio::task::yield_now().await;
        }
        meter
    });
    let got = client.read_meter(&meter_a()).await;
    let data = match got {
        Ok(Ok(data)) => data,
        other => panic!("{other:?}"),
    };
    assert_eq!(data.current.volume.millilitres(), 4_000, "the answer (4 l), not a skipped frame");
    assert_eq!(client.skipped_frames(), 4);
    assert!(!client.is_poisoned());
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn requests_carry_the_model_and_a_rising_ser() {
    let model = Cjt188Model { preamble: 4, ..Cjt188Model::edition_2018() };
    let (mut client, mut meter) = pipe(model);
    let script = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let request = read_request(&mut meter).await;
            seen.push(request.clone());
            let reply = metering_reply(request.address, request.data[2], 1);
            let _ = meter.write_all(&bytes(&reply, 0)).await;
        }
        let valve = read_request(&mut meter).await;
        seen.push(valve.clone());
        let reply = Frame {
            meter_type: MeterType::COLD_WATER,
            address: valve.address,
            control: Control(0x84),
            data: valve_reply_data(DiOrder::BigEndian.bytes(DI_VALVE), valve.data[2], 0x0001),
        };
        let _ = meter.write_all(&bytes(&reply, 2)).await;
        seen
    });
    client.set_next_serial(0xFF);
    assert!(matches!(client.read_meter(&meter_a()).await, Ok(Ok(_))));
    assert!(matches!(client.read_meter(&meter_a()).await, Ok(Ok(_))));
    assert_eq!(client.set_valve(&meter_a(), false).await, Ok(Ok(ValveState::Closed)));
    let seen = script.await.unwrap_or_default();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].data, vec![0x1F, 0x90, 0xFF], "2018 order, SER as set");
    assert_eq!(seen[1].data, vec![0x1F, 0x90, 0x00], "SER wraps");
    assert_eq!(seen[2].data, vec![0x17, 0xA0, 0x01, 0x99], "close, in the model's DI order");
    assert!(seen.iter().all(|f| f.meter_type == MeterType::COLD_WATER && f.address == meter_a()));
    assert_eq!(client.next_serial(), 2);
}

#[tokio::test(start_paused = true)]
async fn abnormal_reply_is_a_valid_reply_and_keeps_the_client() {
    let (mut client, mut meter) = pipe(Cjt188Model::default());
    let script = tokio::spawn(async move {
        let request = read_request(&mut meter).await;
        let abnormal = Frame { control: Control(0xC4), data: vec![request.data[2], 0x03, 0x00], ..request.clone() };
        let _ = meter.write_all(&bytes(&abnormal, 2)).await;
        let request = read_request(&mut meter).await;
        let _ = meter.write_all(&bytes(&metering_reply(request.address, request.data[2], 9), 2)).await;
        meter
    });
    let got = client.set_valve(&meter_a(), true).await;
    assert_eq!(got, Ok(Err(AbnormalReply { control: Control(0xC4), data: vec![0, 0x03, 0x00] })));
    if let Ok(Err(abnormal)) = &got {
        assert_eq!(abnormal.to_string(), "abnormal reply C4 with data [00 03 00]");
    }
    assert!(!client.is_poisoned());
    assert!(matches!(client.read_meter(&meter_a()).await, Ok(Ok(_))));
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_reply_poisons_the_client() {
    let (mut client, mut meter) = pipe(Cjt188Model::default());
    let script = tokio::spawn(async move {
        let request = read_request(&mut meter).await;
        let mut reply = bytes(&metering_reply(request.address, request.data[2], 1), 2);
        let cs = reply.len() - 2;
        reply[cs] ^= 0xFF;
        let _ = meter.write_all(&reply).await;
        meter
    });
    let got = client.read_meter(&meter_a()).await;
    assert!(matches!(got, Err(Cjt188Error::Frame(FrameError::Checksum { .. }))), "{got:?}");
    assert!(client.is_poisoned());
    assert_eq!(client.read_meter(&meter_a()).await, Err(Cjt188Error::Poisoned), "the contract: replace it");
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn a_well_framed_reply_with_bad_data_is_a_bad_reply() {
    let (mut client, mut meter) = pipe(Cjt188Model::default());
    let script = tokio::spawn(async move {
        let request = read_request(&mut meter).await;
        let mut reply = metering_reply(request.address, request.data[2], 1);
        reply.data.truncate(20);
        let _ = meter.write_all(&bytes(&reply, 2)).await;
        meter
    });
    let got = client.read_meter(&meter_a()).await;
    assert!(matches!(&got, Err(Cjt188Error::BadReply(reason)) if reason.contains("20 bytes")), "{got:?}");
    assert!(client.is_poisoned());
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn silence_times_out_and_a_closed_stream_is_reported() {
    let (mut client, meter) = pipe(Cjt188Model::default());
    let began = tokio::time::Instant::now();
    assert_eq!(client.read_meter(&meter_a()).await, Err(Cjt188Error::Timeout(TIMEOUT)));
    assert_eq!(began.elapsed(), TIMEOUT, "the whole exchange is bounded by one timeout");
    assert!(client.is_poisoned());
    drop(meter);

    let (mut client, meter) = pipe(Cjt188Model::default());
    drop(meter);
    let got = client.read_meter(&meter_a()).await;
    assert_eq!(got, Err(Cjt188Error::Closed), "a stream closed under the request (broken pipe) is closed");
}

#[tokio::test(start_paused = true)]
async fn frames_that_never_answer_end_in_a_timeout_not_a_wrong_answer() {
    let (mut client, mut meter) = pipe(Cjt188Model::default());
    let script = tokio::spawn(async move {
        let request = read_request(&mut meter).await;
        // Only another meter answers.
        let _ = meter.write_all(&bytes(&metering_reply(address("00000000000009"), request.data[2], 1), 2)).await;
        meter
    });
    assert_eq!(client.read_meter(&meter_a()).await, Err(Cjt188Error::Timeout(TIMEOUT)));
    assert_eq!(client.skipped_frames(), 1);
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn ser_matching_can_be_turned_off_and_the_wildcard_takes_any_meter() {
    let model = Cjt188Model { match_ser: false, ..Cjt188Model::default() };
    let (mut client, mut meter) = pipe(model);
    let script = tokio::spawn(async move {
        for _ in 0..2 {
            let _ = read_request(&mut meter).await;
            // A meter that always answers SER 00, from its own address.
            let _ = meter.write_all(&bytes(&metering_reply(address("12345678901234"), 0, 5), 2)).await;
        }
        meter
    });
    client.set_next_serial(7);
    assert!(matches!(client.read_meter(&Address::WILDCARD).await, Ok(Ok(d)) if d.serial == 0));
    assert!(matches!(client.read_meter(&Address::WILDCARD).await, Ok(Ok(_))));
    drop(script);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_model_is_refused_before_sending() {
    let model = Cjt188Model { preamble: 99, ..Cjt188Model::default() };
    let (mut client, _meter) = pipe(model);
    let got = client.read_meter(&meter_a()).await;
    assert!(matches!(&got, Err(Cjt188Error::Model(reason)) if reason.to_string().contains("preamble")), "{got:?}");
}
