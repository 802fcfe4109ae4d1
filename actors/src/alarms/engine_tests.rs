//! The alarm engine through a real store (redb on a temp dir), a real store writer and a real
//! `FeedConsumer`: samples and events are committed to the feed, the consumer hands them to the engine, and
//! the tests read the standing alarms and the journal back from the store.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

use super::*;
use crate::clock::{SharedClock, TokioClock};
use crate::feed::{FeedConsumer, FeedConsumerArgs, FeedMsg};
use crate::metrics::Metrics;
use crate::model::{Alarm, AlarmState, MeterId, MeterReading, MeterStatus, Priority, Transition};
use crate::store::tests::tempdir;
use crate::store::{AlarmAction, JournalFilter, Store, StoreHandle, StoreWriter, StoreWriterArgs, StoreWriterMsg};
use crate::supervisor::Slot;

const MIN: i64 = 60_000;

fn w1() -> DeviceId {
    DeviceId::new("w1")
}

fn c1() -> DeviceId {
    DeviceId::new("c1")
}

fn r1() -> RegionId {
    RegionId::new("r1")
}

/// Chlorine at logger w1: low 0.3, high 2.0, deadband 0.05, a one-minute on-delay, no off-delay.
fn chlorine() -> HashMap<(DeviceId, String), QualitySeries> {
    let limits = AnalogLimits { high: Some(2.0), low: Some(0.3), ..AnalogLimits::default() };
    let analog = AnalogConfig { deadband: 0.05, on_delay_ms: MIN, off_delay_ms: 0 };
    HashMap::from([((w1(), "chlorine".to_owned()), QualitySeries { region: r1(), limits, analog })])
}

fn sample(ts: i64, value: f64, flags: u8) -> Op {
    Op::Sample(QualitySample {
        device: w1(),
        parameter: "chlorine".into(),
        ts: Timestamp(ts),
        value,
        unit: "mg/L".into(),
        flags: QualityFlags(flags),
    })
}

fn event(e: Event) -> Op {
    let ts = e.ts().unwrap_or(Timestamp(0));
    Op::Event(ts, e)
}

fn comm_lost(ts: i64) -> Op {
    event(Event::CommLost {
        device: c1(),
        region: r1(),
        ts: Timestamp(ts),
        misses: 2,
        error: None,
        error_code: None,
        error_params: None,
    })
}

fn comm_restored(ts: i64) -> Op {
    event(Event::CommRestored { device: c1(), region: r1(), ts: Timestamp(ts), after_misses: 3 })
}

fn meter_lost(meter: &str, ts: i64) -> Op {
    event(Event::MeterCommLost { device: c1(), meter: MeterId::new(meter), region: r1(), ts: Timestamp(ts), misses: 2 })
}

fn reading(meter: &str, ts: i64, status: u16) -> Op {
    Op::Reading(MeterReading {
        meter: MeterId::new(meter),
        device: c1(),
        ts: Timestamp(ts),
        volume: crate::model::Volume::from_litres(1_000),
        status: MeterStatus(status),
        meter_clock: None,
        settlement_volume: None,
    })
}

fn key(class: AlarmClass, device: &DeviceId, detail: &str) -> AlarmKey {
    AlarmKey::new(class, device, detail)
}

/// A store with its writer and an alarm engine consuming its feed.
struct Rig {
    store: Store,
    writer: ActorRef<StoreWriterMsg>,
    handle: StoreHandle,
    consumer: ActorRef<FeedMsg>,
    metrics: Arc<Metrics>,
}

impl Rig {
    async fn start(store: Store) -> Rig {
        Rig::start_with(store, SharedSettings::default()).await
    }

    /// With alarm settings an administrator may change while it runs; w1 is a network-end logger.
    async fn start_with(store: Store, settings: SharedSettings) -> Rig {
        let metrics = Arc::new(Metrics::default());
        let slot = Slot::default();
        let args = StoreWriterArgs {
            store: Arc::new(store.clone()),
            metrics: metrics.clone(),
            max_batch_ops: 1000,
            events: None,
        };
        let (writer, _) = Actor::spawn(None, StoreWriter, args).await.unwrap();
        slot.set(writer.clone());
        let handle = StoreHandle::new(slot, metrics.clone());
        let args = FeedConsumerArgs {
            handler: AlarmEngine::new(chlorine())
                .with_regions(HashMap::from([(c1(), r1())]))
                .with_settings(settings, HashMap::from([(w1(), crate::model::SiteType::NetworkEnd)])),
            stores: store.clone().into(),
            writer: handle.clone(),
            metrics: metrics.clone(),
            batch: 4,
        };
        let (consumer, _) = Actor::spawn(None, FeedConsumer::<AlarmEngine>::default(), args).await.unwrap();
        Rig { store, writer, handle, consumer, metrics }
    }

    /// Commits `ops` (as a device would), one commit per op, and waits until the engine has handled them.
    async fn feed(&self, ops: Vec<Op>) {
        for op in ops {
            self.store.apply_one(&[op]).unwrap();
        }
        self.settle().await;
    }

    /// Waits until the engine's committed cursor reaches the feed head. It yields rather than sleeps, so
    /// paused time does not move while the writer's threads commit.
    async fn settle(&self) {
        let head = self.store.feed_head();
        let started = std::time::Instant::now();
        while self.store.cursor(AlarmEngine::NAME).unwrap() < head {
            assert!(started.elapsed() < Duration::from_secs(60), "the engine catches up");
            tokio::task::yield_now().await;
        }
    }

    fn alarm(&self, k: &AlarmKey) -> Option<Alarm> {
        self.store.alarm(k).unwrap()
    }

    fn state(&self, k: &AlarmKey) -> AlarmState {
        self.alarm(k).map_or(AlarmState::Normal, |a| a.state)
    }

    /// The journal of one alarm, oldest first: (what, from, to).
    fn journal(&self, k: &AlarmKey) -> Vec<(Transition, AlarmState, AlarmState)> {
        let filter = JournalFilter { device: Some(k.device.clone()), class: Some(k.class), ..JournalFilter::default() };
        let mut v: Vec<_> = self
            .store
            .alarm_journal(&filter, 1000)
            .unwrap()
            .into_iter()
            .filter(|(_, r)| r.key == *k)
            .map(|(_, r)| (r.what, r.from, r.to))
            .collect();
        v.reverse();
        v
    }

    /// An operator's action, committed at once (not through the writer's threads, so paused time does not
    /// run on while the test waits for them).
    fn act(&self, k: &AlarmKey, at: i64, action: AlarmAction) {
        let op =
            Op::Alarm(AlarmOp::Action { key: k.clone(), by: "duty1".into(), at: Timestamp(at), action, audit: None });
        self.store.apply_one(&[op]).unwrap();
    }

    async fn stop(self) -> Store {
        self.consumer.stop_and_wait(None, None).await.unwrap();
        self.writer.stop_and_wait(None, None).await.unwrap();
        self.store
    }
}

use AlarmState::*;
use Transition as T;

#[tokio::test]
async fn the_on_delay_hides_a_spike_and_the_deadband_keeps_a_chattering_value_one_alarm() {
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let low = key(AlarmClass::QualityLow, &w1(), "chlorine");
    // A 40 s dip: shorter than the on-delay, nothing.
    rig.feed(vec![sample(0, 0.5, 0), sample(10_000, 0.2, 0), sample(50_000, 0.2, 0), sample(55_000, 0.5, 0)]).await;
    assert_eq!(rig.state(&low), Normal);
    // Held for a minute: raised once, with its value and limit.
    rig.feed(vec![sample(2 * MIN, 0.2, 0), sample(3 * MIN, 0.2, 0)]).await;
    let a = rig.alarm(&low).expect("standing");
    assert_eq!((a.state, a.priority, a.value, a.limit), (Unacknowledged, Priority::High, Some(0.2), Some(0.3)));
    assert_eq!(a.raised_at, Some(Timestamp(3 * MIN)));
    // Chattering around the limit, within the deadband, the same condition again and again: one alarm.
    let chatter = [0.32, 0.29, 0.34, 0.28, 0.33, 0.2, 0.31];
    rig.feed(chatter.iter().enumerate().map(|(i, v)| sample(4 * MIN + i as i64 * 1000, *v, 0)).collect()).await;
    assert_eq!(rig.journal(&low), vec![(T::Activated, Normal, Unacknowledged)]);
    assert_eq!(rig.store.standing_alarms().unwrap().len(), 1, "no duplicate, no other class");
    // Back past the deadband: returned to normal unacknowledged; the operator acknowledges: normal.
    rig.feed(vec![sample(10 * MIN, 0.5, 0)]).await;
    assert_eq!(rig.state(&low), ReturnedUnacknowledged);
    rig.act(&low, 11 * MIN, AlarmAction::Acknowledge { comment: Some("dosing pump restarted".into()) });
    assert_eq!(rig.alarm(&low), None, "normal alarms are not standing");
    assert_eq!(rig.journal(&low).last(), Some(&(T::Acknowledged, ReturnedUnacknowledged, Normal)));
    assert_eq!(Metrics::get(&rig.metrics.feed_handler_failures), 0);
}

#[tokio::test]
async fn an_untrusted_sample_raises_sensor_untrusted_instead_of_a_quality_alarm() {
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let low = key(AlarmClass::QualityLow, &w1(), "chlorine");
    let untrusted = key(AlarmClass::SensorUntrusted, &w1(), "chlorine");
    let flagged = QualityFlags::DEVICE_FLAGGED | QualityFlags::BELOW_LOW;
    rig.feed(vec![sample(0, 0.0, flagged), sample(2 * MIN, 0.0, flagged), sample(3 * MIN, 0.0, flagged)]).await;
    assert_eq!(rig.state(&untrusted), Unacknowledged);
    assert_eq!(rig.state(&low), Normal, "an untrusted value raises no quality alarm");
    assert_eq!(rig.journal(&untrusted).len(), 1, "one alarm while it stays untrusted");
    // Trusted again: the untrusted alarm returns; a time-implausible sample is passed over.
    rig.feed(vec![sample(4 * MIN, 1.0, 0), sample(5 * MIN, 0.0, flagged | QualityFlags::TIME_FUTURE)]).await;
    assert_eq!(rig.state(&untrusted), ReturnedUnacknowledged);
}

#[tokio::test]
async fn meters_behind_a_comm_lost_concentrator_are_suppressed_by_design_and_return_after() {
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let dev = key(AlarmClass::CommLost, &c1(), "");
    let (m1, m2) = (key(AlarmClass::MeterCommLost, &c1(), "m1"), key(AlarmClass::MeterCommLost, &c1(), "m2"));
    rig.feed(vec![meter_lost("m1", 1_000)]).await;
    assert_eq!(rig.state(&m1), Unacknowledged);
    // The concentrator goes comm-lost (twice reported: one alarm): its meter's alarm is suppressed.
    rig.feed(vec![comm_lost(2_000), comm_lost(3_000)]).await;
    assert_eq!(rig.state(&dev), Unacknowledged);
    assert_eq!(rig.journal(&dev).len(), 1, "no duplicate");
    assert_eq!(rig.state(&m1), SuppressedByDesign);
    // A meter reported lost while its concentrator is: suppressed from the start.
    rig.feed(vec![meter_lost("m2", 4_000)]).await;
    assert_eq!(rig.state(&m2), SuppressedByDesign);
    let standing = rig.store.standing_alarms().unwrap();
    let visible: Vec<_> = standing.iter().filter(|a| !a.state.hidden()).map(|a| a.key.id()).collect();
    assert_eq!(visible, vec!["comm_lost~c1~"], "one alarm, not one per meter");
    // Restored: the meters come back, re-alarming since they are still lost; the device alarm returns.
    rig.feed(vec![comm_restored(5_000)]).await;
    assert_eq!((rig.state(&m1), rig.state(&m2)), (Unacknowledged, Unacknowledged));
    assert_eq!(rig.state(&dev), ReturnedUnacknowledged);
    assert_eq!(
        rig.journal(&m1).iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![T::Activated, T::Suppressed, T::Unsuppressed]
    );
}

#[tokio::test]
async fn a_standing_alarm_its_journal_and_a_running_on_delay_survive_a_restart() {
    let dir = tempdir();
    let low = key(AlarmClass::QualityLow, &w1(), "chlorine");
    let rig = Rig::start(Store::open(&dir).unwrap()).await;
    rig.feed(vec![sample(0, 0.2, 0), sample(MIN, 0.2, 0)]).await;
    rig.act(&low, MIN + 1, AlarmAction::Acknowledge { comment: None });
    // A high excursion starts its on-delay before the restart.
    rig.feed(vec![sample(2 * MIN, 2.5, 0)]).await;
    let store = rig.stop().await;
    drop(store);
    let store = reopen(&dir).await;
    assert_eq!(store.alarm(&low).unwrap().map(|a| a.state), Some(Acknowledged));
    let rig = Rig::start(store).await;
    // The on-delay kept running across the restart (the series' state was stored with the cursor).
    let high = key(AlarmClass::QualityHigh, &w1(), "chlorine");
    rig.feed(vec![sample(3 * MIN, 2.5, 0)]).await;
    assert_eq!(rig.state(&high), Unacknowledged);
    assert_eq!(
        rig.state(&low),
        Normal,
        "the low alarm, acknowledged, cleared: the restarted engine knew it was active"
    );
    assert_eq!(
        rig.journal(&low),
        vec![
            (T::Activated, Normal, Unacknowledged),
            (T::Acknowledged, Unacknowledged, Acknowledged),
            (T::Cleared, Acknowledged, Normal)
        ]
    );
}

/// Opens the store again once the stopped writer's committer has let go of it.
async fn reopen(dir: &std::path::Path) -> Store {
    let open = async {
        loop {
            match Store::open(dir) {
                Err(crate::store::StoreError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
                other => return other.unwrap(),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), open).await.expect("the old writer lets go")
}

#[tokio::test(start_paused = true)]
async fn a_shelf_expires_on_time_and_re_alarms_while_the_condition_holds() {
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let clock: SharedClock = Arc::new(TokioClock::new(Timestamp(100 * MIN)));
    let args = ShelfWatchArgs {
        alarms: Arc::new(rig.store.clone()),
        writer: rig.handle.clone(),
        clock: clock.clone(),
        every: Duration::from_secs(5),
    };
    let (_watch, _) = Actor::spawn(None, ShelfWatch, args).await.unwrap();
    let low = key(AlarmClass::QualityLow, &w1(), "chlorine");
    let dev = key(AlarmClass::CommLost, &c1(), "");
    rig.feed(vec![sample(99 * MIN, 0.2, 0), sample(100 * MIN, 0.2, 0), comm_lost(100 * MIN)]).await;
    let now = clock.now().0;
    let until = Timestamp(now + 10 * MIN);
    rig.act(&low, now, AlarmAction::Shelve { until, reason: Some("analyser maintenance".into()) });
    rig.act(&dev, now, AlarmAction::Shelve { until, reason: None });
    // The device's condition clears while shelved; the chlorine's still holds.
    rig.feed(vec![comm_restored(now + MIN)]).await;
    assert_eq!((rig.state(&low), rig.state(&dev)), (Shelved, Shelved));
    tokio::time::sleep(Duration::from_secs(9 * 60)).await;
    assert_eq!(rig.state(&low), Shelved, "still shelved before its end");
    let expired = async {
        while rig.state(&low) == Shelved {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), expired).await.expect("the shelf expires");
    let filter = JournalFilter { class: Some(AlarmClass::QualityLow), ..JournalFilter::default() };
    let at = rig.store.alarm_journal(&filter, 1).unwrap()[0].1.at;
    assert!(at >= until && at.0 < until.0 + 5_000, "expired at its end, not before, within a tick: {at:?}");
    assert_eq!(rig.state(&low), Unacknowledged, "re-alarmed: the condition still holds");
    assert_eq!(rig.state(&dev), Normal, "cleared while shelved: back to normal");
    assert_eq!(rig.journal(&low).last(), Some(&(T::ShelveExpired, Shelved, Unacknowledged)));
}

#[tokio::test]
async fn meter_status_bits_raise_and_clear_their_alarms_per_meter() {
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let k = |class, meter: &str| key(class, &c1(), meter);
    let tamper = MeterStatus::MAGNETIC_TAMPER;
    // Every status bit and volume-check flag raises its own class for its meter, with the class's priority.
    let all: u16 = METER_BITS.iter().map(|(bit, _)| bit).fold(0, |a, b| a | b);
    rig.feed(vec![reading("m1", 1_000, 0), reading("m2", 1_000, all | MeterStatus::NEEDS_REVIEW)]).await;
    for (_, class) in METER_BITS {
        let a = rig.alarm(&k(class, "m2")).unwrap_or_else(|| panic!("{class:?} raised"));
        assert_eq!((a.state, a.priority, a.region.as_str()), (Unacknowledged, class.default_priority(), "r1"));
        assert_eq!(rig.state(&k(class, "m1")), Normal, "{class:?}: only the meter that has it");
    }
    assert_eq!(rig.store.standing_alarms().unwrap().len(), METER_BITS.len(), "valve_closed and review raise none");
    // The same bits again: no second alarm. A reading whose status is unreadable keeps the device bits;
    // the volume flags, which the server sets, clear at the next reading without them.
    rig.feed(vec![reading("m2", 2_000, all), reading("m2", 3_000, MeterStatus::STATUS_UNREADABLE)]).await;
    assert_eq!(rig.journal(&k(AlarmClass::MeterTamper, "m2")).len(), 1);
    assert_eq!(rig.state(&k(AlarmClass::MeterTamper, "m2")), Unacknowledged, "unreadable status changes no device bit");
    assert_eq!(rig.state(&k(AlarmClass::VolumeFell, "m2")), ReturnedUnacknowledged);
    assert_eq!(rig.state(&k(AlarmClass::VolumeSuspectedSwap, "m2")), ReturnedUnacknowledged);
    // A reading dated implausibly changes nothing; the next plausible one without the bit clears it.
    rig.feed(vec![reading("m2", 4_000, MeterStatus::TIME_FUTURE)]).await;
    assert_eq!(
        rig.state(&k(AlarmClass::MeterTamper, "m2")),
        Unacknowledged,
        "a time-implausible reading is passed over"
    );
    rig.feed(vec![reading("m2", 5_000, MeterStatus::BATTERY_LOW), reading("m1", 5_000, tamper)]).await;
    assert_eq!(rig.state(&k(AlarmClass::MeterTamper, "m2")), ReturnedUnacknowledged);
    assert_eq!(rig.state(&k(AlarmClass::MeterBatteryLow, "m2")), Unacknowledged, "still low");
    assert_eq!(rig.state(&k(AlarmClass::MeterTamper, "m1")), Unacknowledged);
    let j = rig.journal(&k(AlarmClass::MeterTamper, "m2"));
    assert_eq!(j, vec![(T::Activated, Normal, Unacknowledged), (T::Cleared, Unacknowledged, ReturnedUnacknowledged)]);
}

#[tokio::test]
async fn meter_status_alarms_behind_a_comm_lost_concentrator_are_suppressed_and_survive_a_restart() {
    let dir = tempdir();
    let rig = Rig::start(Store::open(&dir).unwrap()).await;
    let tamper = key(AlarmClass::MeterTamper, &c1(), "m1");
    let battery = key(AlarmClass::MeterBatteryLow, &c1(), "m2");
    rig.feed(vec![reading("m1", 1_000, MeterStatus::MAGNETIC_TAMPER), comm_lost(2_000)]).await;
    assert_eq!(rig.state(&tamper), SuppressedByDesign, "hidden behind its concentrator's comm-lost");
    // A reading that still comes (a late one) while the concentrator is lost: raised suppressed.
    rig.feed(vec![reading("m2", 2_500, MeterStatus::BATTERY_LOW)]).await;
    assert_eq!(rig.state(&battery), SuppressedByDesign);
    let store = rig.stop().await;
    drop(store);
    // The restarted engine knows which bits are alarmed: the same bits raise nothing new, their absence clears.
    let rig = Rig::start(reopen(&dir).await).await;
    rig.feed(vec![comm_restored(3_000)]).await;
    assert_eq!((rig.state(&tamper), rig.state(&battery)), (Unacknowledged, Unacknowledged));
    rig.feed(vec![reading("m1", 4_000, MeterStatus::MAGNETIC_TAMPER), reading("m2", 4_000, 0)]).await;
    assert_eq!(rig.state(&battery), ReturnedUnacknowledged);
    assert_eq!(
        rig.journal(&tamper).iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![T::Activated, T::Suppressed, T::Unsuppressed],
        "no second activation after the restart"
    );
}

#[tokio::test]
async fn valve_faults_and_uncommanded_moves_raise_and_clear_the_valve_alarms() {
    use crate::model::{FaultClearing, ValveState};
    let rig = Rig::start(Store::open(&tempdir()).unwrap()).await;
    let v = DeviceId::new("v1");
    let failed = key(AlarmClass::ValveCommandFailed, &v, "");
    let moved = key(AlarmClass::ValveUncommanded, &v, "");
    let fault = |ts| {
        event(Event::ValveFault {
            device: v.clone(),
            region: r1(),
            ts: Timestamp(ts),
            reason: "not confirmed".into(),
            error_code: None,
            error_params: None,
        })
    };
    let cleared = |ts, how| event(Event::ValveFaultCleared { device: v.clone(), region: r1(), ts: Timestamp(ts), how });
    let mv = |ts, to, uncommanded| {
        let from = if to == ValveState::Open { ValveState::Closed } else { ValveState::Open };
        event(Event::ValveMoved { device: v.clone(), region: r1(), ts: Timestamp(ts), from, to, uncommanded })
    };
    rig.feed(vec![fault(1_000)]).await;
    assert_eq!(rig.alarm(&failed).map(|a| (a.state, a.priority)), Some((Unacknowledged, Priority::High)));
    rig.feed(vec![cleared(2_000, FaultClearing::ReadBack { state: ValveState::Closed })]).await;
    assert_eq!(rig.state(&failed), ReturnedUnacknowledged);
    // Moved by hand; moved back to where it was commanded: raised and cleared.
    rig.feed(vec![mv(3_000, ValveState::Open, true), mv(3_500, ValveState::Closed, true)]).await;
    assert_eq!(rig.state(&moved), Unacknowledged);
    assert_eq!(rig.journal(&moved).len(), 1, "one alarm while it stays off its commanded position");
    rig.feed(vec![mv(4_000, ValveState::Open, false)]).await;
    assert_eq!(rig.state(&moved), ReturnedUnacknowledged);
    // Moved again, then the operator resets the valve: cleared.
    let reset = FaultClearing::Reset { by: "duty1".into(), reason: "checked on site".into() };
    rig.feed(vec![mv(5_000, ValveState::Closed, true), cleared(6_000, reset)]).await;
    assert_eq!(
        rig.journal(&moved).iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![T::Activated, T::Cleared, T::Activated, T::Cleared]
    );
}

#[tokio::test]
async fn settings_set_priorities_enable_classes_and_change_delays_and_levels_without_a_restart() {
    let settings = SharedSettings::default();
    let rig = Rig::start_with(Store::open(&tempdir()).unwrap(), settings.clone()).await;
    let low = key(AlarmClass::QualityLow, &w1(), "chlorine");
    let low_low = key(AlarmClass::QualityLowLow, &w1(), "chlorine");
    let battery = key(AlarmClass::MeterBatteryLow, &c1(), "m1");
    let json = r#"{
        "class": {
            "meter_battery_low": { "enabled": false },
            "meter_tamper": { "priority": "urgent" },
            "valve_uncommanded": { "enabled": false }
        },
        "site": { "network_end": { "on_delay_s": 0, "low_low_factor": 0.5 } },
        "device": { "w1": { "class": { "quality_low": { "priority": "medium" } } } }
    }"#;
    settings.set(serde_json::from_str(json).unwrap());
    // The site's settings replace the series' one-minute on-delay: raised at once, with the device's priority;
    // 0.1 is below the low-low level derived from the low limit (0.5 × 0.3).
    rig.feed(vec![sample(0, 0.1, 0)]).await;
    assert_eq!(rig.alarm(&low).map(|a| (a.state, a.priority)), Some((Unacknowledged, Priority::Medium)));
    assert_eq!(rig.alarm(&low_low).map(|a| a.priority), Some(Priority::Urgent), "the class's default");
    // A disabled class raises nothing; a class's priority applies to meters too.
    rig.feed(vec![reading("m1", 1_000, MeterStatus::BATTERY_LOW | MeterStatus::MAGNETIC_TAMPER)]).await;
    assert_eq!(rig.state(&battery), Normal, "disabled");
    let v = DeviceId::new("v1");
    let (from, to) = (crate::model::ValveState::Open, crate::model::ValveState::Closed);
    let moved =
        Event::ValveMoved { device: v.clone(), region: r1(), ts: Timestamp(1_500), from, to, uncommanded: true };
    rig.feed(vec![event(moved)]).await;
    assert_eq!(rig.state(&key(AlarmClass::ValveUncommanded, &v, "")), Normal, "disabled: an event raises nothing");
    let tamper = rig.alarm(&key(AlarmClass::MeterTamper, &c1(), "m1")).unwrap();
    assert_eq!(tamper.priority, Priority::Urgent);
    // The administrator enables it again: the next reading with the bit raises it, no restart.
    settings.set(AlarmSettings::default());
    rig.feed(vec![reading("m1", 2_000, MeterStatus::BATTERY_LOW)]).await;
    assert_eq!(rig.alarm(&battery).map(|a| (a.state, a.priority)), Some((Unacknowledged, Priority::Low)));
}
