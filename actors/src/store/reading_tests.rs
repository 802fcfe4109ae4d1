//! Tests of the hour-first readings tables (schema 4) against outliers and a model: timestamps far in the
//! future or at 0 must not make a commit or a history query walk every hour between them; `meter_latest`
//! agrees with a brute-force model under mixed writes; a half-done copy completes. (From the review of fde7603.)
use std::time::{Duration, Instant};

use super::tests::{reading, tempdir};
use super::*;

const NOW: i64 = 1_767_225_600_000; // 2026-01-01
const HOUR: i64 = reading_key::HOUR_MS;

fn at(meter: &str, ts: i64, litres: i64, status: u16) -> Op {
    Op::Reading(MeterReading {
        meter: MeterId::new(meter),
        device: DeviceId::new("c1"),
        ts: Timestamp(ts),
        volume: Volume::from_litres(litres),
        status: MeterStatus(status),
        meter_clock: None,
        settlement_volume: None,
    })
}

/// Runs `f` on a thread; `None` if it has not finished within `secs`.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> Option<(T, Duration)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let v = f();
        let _ = tx.send((v, t.elapsed()));
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

#[test]
fn limit_zero_returns_no_readings() {
    let store = Store::open(&tempdir()).unwrap();
    store.apply_one(&[reading("m1", 1, 1), reading("m1", 2, 2), reading("m1", 3 * HOUR, 3)]).unwrap();
    let got = store.meter_readings(&MeterId::new("m1"), Timestamp(i64::MIN), Timestamp(i64::MAX), 0).unwrap();
    assert_eq!(got.len(), 0, "limit 0 returned {} readings", got.len());
}

/// One MQTT payload with `"ts": i64::MAX` (epoch_ms is taken as is, flagged time_future) makes the table's last
/// hour i32::MAX; then a same-time implausible overwrite of any meter's latest walks ~2^31 hours inside the
/// committer's write transaction: the writer never commits again.
#[test]
fn a_far_future_reading_elsewhere_does_not_stall_the_fallback_walk() {
    let store = Store::open(&tempdir()).unwrap();
    store.apply_one(&[at("broken", i64::MAX, 1, MeterStatus::TIME_FUTURE)]).unwrap();
    store.apply_one(&[at("m1", NOW - HOUR, 10, 0), at("m1", NOW, 11, 0)]).unwrap();
    let s = store.clone();
    let done = within(10, move || s.apply_one(&[at("m1", NOW, 0, MeterStatus::TIME_STALE)]).map(|_| ()));
    let (res, took) = done.expect("the commit did not finish within 10 s (latest_in walks from hour i32::MAX)");
    res.unwrap();
    eprintln!("commit took {took:?}");
    assert_eq!(store.latest_reading(&MeterId::new("m1")).unwrap().map(|r| r.0 .0), Some(NOW - HOUR));
}

/// A store spanning 1970 (a device with an unset clock, ts 0, flagged stale) to now: a meter with no earlier
/// plausible reading walks every hour since 1970 (~490k range scans) inside the write transaction.
#[test]
fn the_fallback_walk_costs_the_meters_hours_not_the_tables() {
    let store = Store::open(&tempdir()).unwrap();
    store.apply_one(&[at("unset-clock", 0, 1, MeterStatus::TIME_STALE)]).unwrap();
    store.apply_one(&[at("m1", NOW, 11, 0)]).unwrap();
    let s = store.clone();
    let t = Instant::now();
    s.apply_one(&[at("m1", NOW, 0, MeterStatus::TIME_STALE)]).unwrap();
    let took = t.elapsed();
    assert_eq!(store.latest_reading(&MeterId::new("m1")).unwrap(), None);
    // The defect walked ~490k hours (seconds to minutes); 2 s leaves room for a busy machine.
    assert!(took < Duration::from_secs(2), "one commit took {took:?}");
}

/// `GET /api/readings?device=<meter>&from=-9223372036854775808&to=9223372036854775807` (any viewer): with the
/// same two outliers, one meter's history is one range scan per hour between them.
#[test]
fn a_wide_history_query_costs_the_meters_readings_not_the_span() {
    let store = Store::open(&tempdir()).unwrap();
    store.apply_one(&[at("unset-clock", 0, 1, MeterStatus::TIME_STALE)]).unwrap();
    store.apply_one(&[at("m1", NOW, 11, 0)]).unwrap();
    let s = store.clone();
    let done =
        within(20, move || s.meter_readings(&MeterId::new("m1"), Timestamp(i64::MIN), Timestamp(i64::MAX), 1001));
    let (res, took) = done.expect("did not finish within 20 s");
    assert_eq!(res.unwrap().len(), 1);
    assert!(took < Duration::from_secs(2), "one meter's history took {took:?}");
}

#[test]
fn a_far_future_reading_leaves_a_wide_history_query_bounded() {
    let store = Store::open(&tempdir()).unwrap();
    store.apply_one(&[at("broken", i64::MAX, 1, MeterStatus::TIME_FUTURE)]).unwrap();
    store.apply_one(&[at("m1", NOW, 11, 0)]).unwrap();
    let s = store.clone();
    let done = within(10, move || s.meter_readings(&MeterId::new("m1"), Timestamp(NOW), Timestamp(i64::MAX), 1001));
    let (res, _) = done.expect("meter_readings(now..=i64::MAX) did not finish within 10 s");
    assert_eq!(res.unwrap().len(), 1);
}

/// meter_latest against a brute-force model over mixed sequences (same ts, backfill, several per commit).
#[test]
fn meter_latest_matches_a_model_under_mixed_writes() {
    let store = Store::open(&tempdir()).unwrap();
    let mut model: std::collections::BTreeMap<(String, i64), u16> = Default::default();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..400 {
        let mut ops = Vec::new();
        for _ in 0..(1 + rnd(5)) {
            let m = format!("m{}", rnd(3));
            let base = if rnd(2) == 0 { NOW } else { 0 };
            let ts = base + (rnd(6) as i64 - 3) * HOUR + rnd(3) as i64 - 1;
            let st = [0, MeterStatus::TIME_STALE, MeterStatus::TIME_FUTURE, 0][rnd(4) as usize];
            ops.push(at(&m, ts, rnd(1000) as i64, st));
            model.insert((m, ts), st);
        }
        store.apply_one(&ops).unwrap();
        for m in ["m0", "m1", "m2"] {
            let want = model
                .iter()
                .filter(|((mm, _), st)| mm == m && !MeterStatus(**st).time_implausible())
                .map(|((_, ts), _)| *ts)
                .max();
            let got = store.latest_reading(&MeterId::new(m)).unwrap().map(|r| r.0 .0);
            assert_eq!(got, want, "meter {m}");
        }
    }
}

fn v3_key(meter: &str, ts: i64) -> Vec<u8> {
    let mut k: Vec<u8> = meter.as_bytes().iter().flat_map(|&b| if b == 0 { vec![0, 0xFF] } else { vec![b] }).collect();
    k.extend_from_slice(&[0, 0]);
    k.extend_from_slice(&((ts as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// A v3 store whose v4 tables were partly written by an interrupted open (half the rows copied).
#[test]
fn an_interrupted_v3_to_v4_copy_completes_at_the_next_open() {
    let dir = tempdir();
    {
        let db = redb::Database::create(dir.join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(META).unwrap().insert("schema_version", 3).unwrap();
            let mut v3 = txn.open_table(READINGS_V3).unwrap();
            let mut v4 = txn.open_table(READINGS).unwrap();
            let mut key = Vec::new();
            for m in 0..20 {
                for i in 0..50i64 {
                    let (meter, ts) = (format!("m{m}"), NOW + i * 900_000);
                    let st = if i == 49 { MeterStatus::TIME_FUTURE } else { 0 };
                    v3.insert(v3_key(&meter, ts).as_slice(), (i, st)).unwrap();
                    if m < 10 {
                        reading_key::encode_into(&mut key, &meter, ts);
                        v4.insert(key.as_slice(), (i, st)).unwrap();
                    }
                }
            }
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.reading_count().unwrap(), 1000);
    for m in 0..20 {
        let l = store.latest_reading(&MeterId::new(format!("m{m}"))).unwrap().unwrap();
        assert_eq!(l.0 .0, NOW + 48 * 900_000);
    }
}
