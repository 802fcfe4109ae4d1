//! The usage watch through a real store (redb on a temp dir) and a real store writer, with 8 weeks of hourly
//! readings generated per meter: abnormal usage (one meter 40 % above its mean, one 20 %), night flow, zone
//! leakage with a master meter, catch-up after downtime, and the actor on a manual clock.

use std::time::Duration;

use ractor::Actor;

use super::*;
use crate::clock::ManualClock;
use crate::metrics::Metrics;
use crate::model::{AlarmState, MeterReading};
use crate::store::tests::tempdir;
use crate::store::{Store, StoreWriter, StoreWriterArgs};
use crate::supervisor::Slot;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Monday 2026-03-02 00:00 in Asia/Shanghai (UTC+8, no DST): the day the tests evaluate is `D`.
fn d() -> Timestamp {
    local(&Zone::default(), 2026, 3, 2, 0).unwrap()
}

/// The end of day `D`.
fn e() -> Timestamp {
    d().plus_millis(DAY)
}

fn c1() -> DeviceId {
    DeviceId::new("c1")
}

/// Litres a meter uses in local hour `h` of day `day` (0 = `D`, negative before).
fn profile(meter: &str, day: i64, h: i64) -> i64 {
    let daytime = (7..17).contains(&h);
    let normal = if daytime { 100 } else { 0 };
    match (meter, day) {
        ("A", 0) if daytime => 140,              // 1 400 L: 40 % above its mean
        ("B", 0) if daytime => 120,              // 1 200 L: 20 % above
        ("N", 0) if daytime => 84,               // 840 L by day …
        ("N", 0) if !(7..23).contains(&h) => 20, // … and 20 L in every night hour: 1 000 L
        ("C", _) if day < -14 => -1,             // no readings: two weeks of history only
        ("C", 0) if daytime => 300,
        ("MASTER", _) => ["A", "B", "N"].iter().map(|m| profile(m, day, h)).sum::<i64>() + 50,
        ("MASTER2", _) => profile("C", day, h).max(0),
        _ => normal,
    }
}

const METERS: [&str; 6] = ["A", "B", "N", "C", "MASTER", "MASTER2"];

/// Hourly readings of every meter from `D − 57 days` to `D + 3 days`.
fn readings() -> Vec<Op> {
    let mut ops = Vec::new();
    for meter in METERS {
        let mut volume = 5_000_000i64;
        for hour in -57 * 24..3 * 24i64 {
            let (day, h) = (hour.div_euclid(24), hour.rem_euclid(24));
            let used = profile(meter, day, h);
            if used < 0 {
                continue;
            }
            ops.push(Op::Reading(MeterReading {
                meter: MeterId::new(meter),
                device: c1(),
                ts: d().plus_millis(hour * HOUR),
                volume: Volume::from_litres(volume),
                status: MeterStatus(0),
                meter_clock: None,
                settlement_volume: None,
            }));
            volume += used;
        }
    }
    ops
}

fn zone(id: &str, master: &str, members: &[&str]) -> Arc<ZoneSpec> {
    Arc::new(ZoneSpec {
        id: id.into(),
        name: id.into(),
        region: RegionId::new("r1"),
        masters: vec![MeterId::new(master)],
        members: members.iter().map(|m| MeterId::new(*m)).collect(),
        threshold: 0.12,
        period: Period::Day,
    })
}

struct Rig {
    store: Store,
    args: UsageWatchArgs,
    clock: Arc<ManualClock>,
}

async fn rig(now: Timestamp) -> Rig {
    let store = Store::open(&tempdir()).unwrap();
    for chunk in readings().chunks(5000) {
        store.apply_one(chunk).unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let slot = Slot::default();
    let writer_args =
        StoreWriterArgs { store: Arc::new(store.clone()), metrics: metrics.clone(), max_batch_ops: 1000, events: None };
    let (writer, _) = Actor::spawn(None, StoreWriter, writer_args).await.unwrap();
    slot.set(writer);
    let stores: crate::store::Stores = store.clone().into();
    let clock = Arc::new(ManualClock::new(now));
    let place = MeterPlace { device: c1(), region: RegionId::new("r1") };
    let meters = METERS.iter().map(|m| (MeterId::new(*m), place.clone())).collect();
    let settings = UsageSettings {
        zones: vec![zone("z1", "MASTER", &["A", "B", "N"]), zone("z2", "MASTER2", &["C"])],
        ..UsageSettings::default()
    };
    let args = UsageWatchArgs {
        field: stores.field,
        usage: stores.usage,
        alarms: stores.alarms,
        writer: StoreHandle::new(slot, metrics),
        clock: clock.clone(),
        zone: Zone::default(),
        settings,
        meters: Arc::new(meters),
        every: Duration::from_secs(3600),
    };
    Rig { store, args, clock }
}

fn key(class: AlarmClass, meter: &str) -> AlarmKey {
    AlarmKey::new(class, &c1(), meter)
}

fn zone_key(zone: &str) -> AlarmKey {
    AlarmKey::new(AlarmClass::ZoneLeakage, &DeviceId::new(zone), "")
}

impl Rig {
    fn active(&self, k: &AlarmKey) -> bool {
        self.store.alarm(k).unwrap().is_some_and(|a| a.active)
    }
}

#[tokio::test]
async fn a_day_40_percent_above_the_same_weekdays_raises_abnormal_usage_and_20_percent_does_not() {
    let rig = rig(e().plus_millis(20 * 60_000)).await;
    rig.args.look().await.unwrap();
    let a = rig.store.alarm(&key(AlarmClass::AbnormalUsage, "A")).unwrap().expect("A is abnormal");
    assert!(a.active && a.state == AlarmState::Unacknowledged);
    assert_eq!(a.key.device, c1());
    let record = rig.store.alarm_journal(&crate::store::JournalFilter::default(), 100).unwrap();
    let raised = record.iter().find(|(_, r)| r.key == a.key).expect("journalled").1.clone();
    assert_eq!((raised.value, raised.limit), (Some(1.4), Some(1.3)), "1.4 m³ against 1.3 × its 1 m³ mean");
    assert!(!rig.active(&key(AlarmClass::AbnormalUsage, "B")), "20 % above is within 30 %");
    assert!(!rig.active(&key(AlarmClass::AbnormalUsage, "C")), "two weeks of history are not enough");
    assert!(!rig.active(&key(AlarmClass::AbnormalUsage, "N")), "the same total, used at night");
    assert!(!rig.active(&key(AlarmClass::AbnormalUsage, "MASTER")), "masters are not customers");
    assert_eq!(rig.store.usage_through().unwrap(), Some(e()));
}

#[tokio::test]
async fn flow_in_every_night_hour_raises_night_flow_and_a_normal_night_clears_it() {
    let rig = rig(e().plus_millis(20 * 60_000)).await;
    rig.args.look().await.unwrap();
    assert!(rig.active(&key(AlarmClass::NightFlow, "N")));
    for m in ["A", "B", "C"] {
        assert!(!rig.active(&key(AlarmClass::NightFlow, m)), "{m} is quiet at night");
    }
    rig.clock.set(e().plus_millis(DAY + 20 * 60_000));
    rig.args.look().await.unwrap();
    assert!(!rig.active(&key(AlarmClass::NightFlow, "N")), "the next night was quiet");
    assert!(!rig.active(&key(AlarmClass::AbnormalUsage, "A")), "the next day was normal");
    let a = rig.store.alarm(&key(AlarmClass::AbnormalUsage, "A")).unwrap().expect("returned, unacknowledged");
    assert_eq!(a.state, AlarmState::ReturnedUnacknowledged);
}

#[tokio::test]
async fn zone_leakage_from_master_meters_is_stored_and_alarmed_above_its_threshold() {
    let rig = rig(e().plus_millis(20 * 60_000)).await;
    rig.args.look().await.unwrap();
    let z1 = rig.store.zone_leakage("z1", 10).unwrap();
    assert_eq!(z1.len(), 1, "the first start evaluates the last day only");
    let l = &z1[0];
    assert_eq!((l.start, l.end, l.complete), (d(), e(), true));
    // Members: 1 400 + 1 200 + 1 000 L; the master 50 L an hour more: 4 800 L.
    assert_eq!((l.master_litres, l.members_litres), (4_800, 3_600));
    assert_eq!(l.rate, Some(0.25));
    assert!(rig.active(&zone_key("z1")));
    let z2 = rig.store.zone_leakage("z2", 10).unwrap();
    assert_eq!(z2[0].rate, Some(0.0));
    assert!(!rig.active(&zone_key("z2")), "a master that equals its members has no leakage");
}

#[tokio::test]
async fn days_missed_while_down_are_caught_up_in_order() {
    let rig = rig(e().plus_millis(20 * 60_000)).await;
    // The watch last evaluated the day ending three days before `e()`.
    rig.args.writer.submit(vec![Op::Usage(UsageOp::Through(e().plus_millis(-3 * DAY)))]).await.unwrap();
    rig.args.look().await.unwrap();
    let starts: Vec<Timestamp> = rig.store.zone_leakage("z1", 10).unwrap().iter().map(|l| l.start).collect();
    assert_eq!(starts, vec![d(), d().plus_millis(-DAY), d().plus_millis(-2 * DAY)], "three days, latest first");
    assert_eq!(rig.store.usage_through().unwrap(), Some(e()));
    assert!(rig.active(&key(AlarmClass::AbnormalUsage, "A")));
    // Looking again changes nothing: each day is evaluated once, each condition is one alarm.
    let journal = rig.store.alarm_journal(&crate::store::JournalFilter::default(), 1000).unwrap().len();
    rig.args.look().await.unwrap();
    assert_eq!(rig.store.alarm_journal(&crate::store::JournalFilter::default(), 1000).unwrap().len(), journal);
    assert_eq!(rig.store.zone_leakage("z1", 10).unwrap().len(), 3);
}

#[tokio::test]
async fn a_day_is_evaluated_only_after_it_settled() {
    let rig = rig(e().plus_millis(10 * 60_000)).await;
    let wait = rig.args.look().await.unwrap();
    assert_eq!(rig.store.usage_through().unwrap(), Some(d()), "ten minutes after midnight: the day before");
    assert_eq!(wait, Duration::from_secs(5 * 60), "the next look when day D has settled");
}

#[tokio::test]
async fn the_actor_evaluates_each_day_on_its_timer() {
    // A manual clock (days pass when the test says so) and a short look interval in real time: the store
    // writer's own timers run, and each step is awaited on the store, never slept on.
    let mut rig = rig(e().plus_millis(-DAY + 20 * 60_000)).await;
    rig.args.every = Duration::from_millis(100);
    let store = rig.store.clone();
    let clock = rig.clock.clone();
    let (actor, _) = Actor::spawn(None, UsageWatch, rig.args).await.unwrap();
    let until = |want: Timestamp| {
        let store = store.clone();
        async move {
            let started = std::time::Instant::now();
            while store.usage_through().unwrap() != Some(want) {
                assert!(started.elapsed() < Duration::from_secs(60), "evaluated through {want:?}");
                tokio::task::yield_now().await;
            }
        }
    };
    until(d()).await;
    assert!(store.zone_leakage("z1", 10).unwrap().iter().all(|l| l.start != d()), "day D is not over yet");
    clock.set(e().plus_millis(20 * 60_000));
    until(e()).await;
    assert!(store.alarm(&key(AlarmClass::AbnormalUsage, "A")).unwrap().is_some_and(|a| a.active));
    actor.stop(None);
}

#[tokio::test]
async fn a_monthly_zone_is_evaluated_when_its_month_ends() {
    let mut rig = rig(d().plus_millis(-DAY + 20 * 60_000)).await;
    let monthly = ZoneSpec { period: Period::Month, ..(*zone("zm", "MASTER", &["A", "B", "N"])).clone() };
    rig.args.settings.zones = vec![Arc::new(monthly)];
    // The day ending 2026-03-01 00:00 is February's last: the month is evaluated.
    rig.args.look().await.unwrap();
    let rows = rig.store.zone_leakage("zm", 10).unwrap();
    assert_eq!(rows.len(), 1);
    let feb = local(&Zone::default(), 2026, 2, 1, 0).unwrap();
    assert_eq!((rows[0].start, rows[0].end, rows[0].complete), (feb, d().plus_millis(-DAY), true));
    // 28 days of 3 000 L by the members and 50 L an hour more by the master.
    assert_eq!((rows[0].master_litres, rows[0].members_litres), (28 * 4_200, 28 * 3_000));
    assert!(rig.active(&zone_key("zm")), "28.6 % is above 12 %");
    // The next day is not a month's end: no new row.
    rig.clock.set(d().plus_millis(20 * 60_000).plus_millis(DAY));
    rig.args.look().await.unwrap();
    assert_eq!(rig.store.zone_leakage("zm", 10).unwrap().len(), 1);
}
