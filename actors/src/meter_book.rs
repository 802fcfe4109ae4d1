//! Per-meter bookkeeping that every actor reading meters shares (issue 7 §4): each meter's comm status beside
//! its device's (the rule is `model::MeterComm`), and the volume check of each new reading against the meter's
//! previous one (the rule is `model::volume_check`), with what those need from the store on (re)start.
//!
//! The actor stays in charge of its cycle and its commits: it asks the book for the flags of a reading
//! ([`MeterBook::check`]), for the store operation that saves the meters' status with the readings
//! ([`MeterBook::save_op`] over a tentative copy), and tells the book what was committed
//! ([`MeterBook::committed`]) so that events go out only after the commit. It does not decide cycles, does
//! no I/O itself, and does not know the device's protocol.

use crate::event::EventBus;
use crate::metrics::Metrics;
use crate::model::volume_check::{check, VolumeLimits, VolumeVerdict};
use crate::model::{CommEvent, DeviceId, MeterComm, MeterId, MeterStatus, MeterView, RegionId, Timestamp, Volume};
use crate::store::{FieldStore, Op};

/// The per-meter state of one device's meters, in the device's meter order.
pub struct MeterBook {
    device: DeviceId,
    region: RegionId,
    ids: Vec<MeterId>,
    /// Each meter's comm status.
    comm: Vec<MeterComm>,
    /// What the store holds of `comm` (the meters that are not clean).
    saved: Vec<(MeterId, MeterComm)>,
    /// Each meter's previous reading: the baseline of its next volume check.
    previous: Vec<Option<(Timestamp, Volume)>>,
    /// The first volume the meters' register cannot show, if the device model tells.
    register_modulus: Option<Volume>,
    limits: VolumeLimits,
}

/// How a cycle of the device's meters ended.
#[derive(Clone, Copy, Debug)]
pub struct CycleEnd<'a> {
    /// The meters asked for (or, for a group that publishes, expected to publish) in the cycle.
    pub expected: &'a [usize],
    /// The meters whose data was committed earlier in the cycle.
    pub read: &'a [usize],
    /// Whether the device delivered any data in the cycle (if not, it is the device's miss).
    pub delivered: bool,
}

/// A meter reading after the volume check.
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    pub index: usize,
    pub ts: Timestamp,
    pub volume: Volume,
    /// The device's status with the check's flags added.
    pub status: MeterStatus,
    pub verdict: VolumeVerdict,
}

impl MeterBook {
    /// Rebuilds the book from the store; `views` are the meters' views as restored (latest readings), in
    /// meter order, and get their comm status shown.
    pub fn restore(
        store: &dyn FieldStore,
        device: &DeviceId,
        region: &RegionId,
        views: &mut [MeterView],
        register_modulus: Option<Volume>,
    ) -> MeterBook {
        let comm = crate::restore::meter_comm(store, device, views);
        let ids: Vec<MeterId> = views.iter().map(|v| v.id.clone()).collect();
        let previous = ids
            .iter()
            .map(|id| match store.latest_reading(id) {
                Ok(latest) => latest.map(|(ts, volume, _)| (ts, volume)),
                Err(e) => {
                    tracing::warn!(message = "Cannot load the previous reading; the next one is not checked.", meter = %id, error = %e);
                    None
                }
            })
            .collect();
        MeterBook {
            device: device.clone(),
            region: region.clone(),
            saved: crate::restore::unclean_meters(&ids, &comm),
            ids,
            comm,
            previous,
            register_modulus,
            limits: VolumeLimits::default(),
        }
    }

    pub fn comm(&self) -> &[MeterComm] {
        &self.comm
    }

    /// Checks new readings `(meter index, time, volume, device status)`, each against the meter's previous
    /// reading (an earlier one of the same batch included). A flagged reading is counted and logged here; it is
    /// still stored, with the flags.
    pub fn check(&self, readings: &[(usize, Timestamp, Volume, MeterStatus)], metrics: &Metrics) -> Vec<Checked> {
        let mut previous = self.previous.clone();
        readings
            .iter()
            .map(|&(index, ts, volume, status)| {
                let before = previous.get(index).copied().flatten();
                let verdict = check(before, ts, volume, self.register_modulus, &self.limits);
                if verdict.is_new_baseline() {
                    if let Some(p) = previous.get_mut(index) {
                        *p = Some((ts, volume));
                    }
                }
                if verdict.is_flagged() {
                    let counter = match verdict {
                        VolumeVerdict::Rollover => &metrics.volume_rollovers,
                        VolumeVerdict::Swap | VolumeVerdict::Jump => &metrics.volume_suspected_swaps,
                        _ => &metrics.volume_falls,
                    };
                    Metrics::inc(counter);
                    let meter = self.ids.get(index).map(|m| m.as_str()).unwrap_or("?");
                    let was = before.map(|(_, v)| v.to_string()).unwrap_or_default();
                    tracing::warn!(message = "Meter volume flagged for review.", device = %self.device, meter, check = verdict.name(), previous_m3 = %was, volume_m3 = %volume);
                }
                Checked { index, ts, volume, status: MeterStatus(status.0 | verdict.flags().0), verdict }
            })
            .collect()
    }

    /// The comm status the meters will have once `read` (meter indices) are committed and, if `end` is given,
    /// the cycle has ended; with the events that will raise.
    pub fn tentative(
        &self,
        now: Timestamp,
        read: &[usize],
        end: Option<CycleEnd<'_>>,
    ) -> (Vec<MeterComm>, Vec<(usize, CommEvent)>) {
        let mut comm = self.comm.clone();
        let mut events = Vec::new();
        let mut was_read = vec![false; comm.len()];
        for &i in read {
            if let Some(m) = comm.get_mut(i) {
                was_read[i] = true;
                if let Some(e) = m.record_read(now) {
                    events.push((i, e));
                }
            }
        }
        if let Some(end) = end {
            for &i in end.read {
                if let Some(r) = was_read.get_mut(i) {
                    *r = true;
                }
            }
            events.extend(crate::model::meters_end_cycle(
                &mut comm,
                end.expected.iter().copied(),
                &was_read,
                end.delivered,
            ));
        }
        (comm, events)
    }

    /// The store operation that saves `comm` (a tentative status), if it differs from what the store holds.
    pub fn save_op(&self, comm: &[MeterComm]) -> Option<Op> {
        let unclean = crate::restore::unclean_meters(&self.ids, comm);
        (unclean != self.saved).then(|| Op::MeterComm(self.device.clone(), unclean))
    }

    /// The readings and the tentative status were committed: they become the book's state. `views` are the
    /// meters' views, in meter order, and show the new status. The events are returned, to be published after
    /// the device's view (whoever reacts to an event finds the view already current).
    pub fn committed(
        &mut self,
        checked: &[Checked],
        comm: Vec<MeterComm>,
        events: Vec<(usize, CommEvent)>,
        views: &mut [MeterView],
        now: Timestamp,
    ) -> MeterEvents {
        for c in checked {
            if c.verdict.is_new_baseline() {
                if let Some(p) = self.previous.get_mut(c.index) {
                    *p = Some((c.ts, c.volume));
                }
            }
        }
        self.saved = crate::restore::unclean_meters(&self.ids, &comm);
        self.comm = comm;
        for (view, comm) in views.iter_mut().zip(&self.comm) {
            view.set_comm(comm);
        }
        MeterEvents {
            device: self.device.clone(),
            region: self.region.clone(),
            ts: now,
            events: events.into_iter().filter_map(|(i, e)| Some((self.ids.get(i)?.clone(), e))).collect(),
        }
    }
}

/// Per-meter comm events of a commit, to be published after the device's view.
#[must_use = "publish the events after the view"]
pub struct MeterEvents {
    device: DeviceId,
    region: RegionId,
    ts: Timestamp,
    events: Vec<(MeterId, CommEvent)>,
}

impl MeterEvents {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn publish(self, bus: &EventBus) {
        for (meter, event) in self.events {
            bus.meter_comm(event, &self.device, &meter, &self.region, self.ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MeterReading;
    use crate::store::Store;

    fn store() -> Store {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ww-meter-book-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir).expect("a store")
    }

    fn reading(meter: &str, ts: i64, litres: i64) -> Op {
        Op::Reading(MeterReading {
            meter: MeterId::new(meter),
            device: DeviceId::new("g1"),
            ts: Timestamp(ts),
            volume: Volume::from_litres(litres),
            status: MeterStatus::default(),
            meter_clock: None,
            settlement_volume: None,
        })
    }

    fn views(ids: &[&str]) -> Vec<MeterView> {
        ids.iter().map(|id| MeterView::empty(MeterId::new(*id))).collect()
    }

    #[test]
    fn a_restart_restores_each_meters_status_and_volume_baseline() {
        let store = store();
        let (device, region) = (DeviceId::new("g1"), RegionId::new("east"));
        let lost = MeterComm {
            last_success: Some(Timestamp(1_000)),
            consecutive_misses: 3,
            unread_cycles: 3,
            comm_lost: true,
        };
        store
            .apply_one(&[
                reading("a", 1_000, 5_000),
                reading("a", 2_000, 5_100),
                reading("b", 1_000, 99_999_999),
                Op::MeterComm(device.clone(), vec![(MeterId::new("b"), lost.clone())]),
            ])
            .unwrap();
        let mut shown = crate::restore::meters(&store, [&MeterId::new("a"), &MeterId::new("b")]);
        let book = MeterBook::restore(&store, &device, &region, &mut shown, None);
        assert_eq!(book.comm()[0], MeterComm { last_success: Some(Timestamp(2_000)), ..MeterComm::default() });
        assert_eq!(book.comm()[1], lost);
        assert!(shown[1].comm_lost && shown[1].missed_cycles == 3 && !shown[0].comm_lost);
        // Nothing changed yet: nothing to save.
        assert!(book.save_op(book.comm()).is_none());

        // The baselines are the stored readings: a fall of a, and b's 5-digit register wrapping, are flagged.
        let metrics = Metrics::default();
        let checked = book.check(
            &[
                (0, Timestamp(3_000), Volume::from_litres(5_000), MeterStatus::default()),
                (1, Timestamp(3_000), Volume::from_litres(120), MeterStatus(MeterStatus::BATTERY_LOW)),
                (1, Timestamp(4_000), Volume::from_litres(130), MeterStatus::default()),
            ],
            &metrics,
        );
        assert_eq!(checked[0].status.names(), vec!["volume_fell", "needs_review"]);
        assert_eq!(checked[1].status.names(), vec!["battery_low", "rollover", "needs_review"]);
        // The wrapped reading is the baseline of the next one in the same batch.
        assert_eq!(checked[2].verdict, VolumeVerdict::Normal);
        assert_eq!(Metrics::get(&metrics.volume_falls), 1);
        assert_eq!(Metrics::get(&metrics.volume_rollovers), 1);
    }

    #[test]
    fn data_from_a_lost_meter_saves_it_clean_and_restores_it_after_the_commit() {
        let store = store();
        let (device, region) = (DeviceId::new("g1"), RegionId::new("east"));
        let lost = MeterComm { last_success: None, consecutive_misses: 2, unread_cycles: 2, comm_lost: true };
        store.apply_one(&[Op::MeterComm(device.clone(), vec![(MeterId::new("b"), lost)])]).unwrap();
        let mut shown = views(&["a", "b"]);
        let mut book = MeterBook::restore(&store, &device, &region, &mut shown, None);
        let (comm, events) = book.tentative(Timestamp(10), &[1], None);
        assert_eq!(events, vec![(1, CommEvent::Restored { after_misses: 2 })]);
        let op = book.save_op(&comm).expect("b is clean now: the row goes");
        assert!(matches!(&op, Op::MeterComm(_, list) if list.is_empty()));
        store.apply_one(&[op]).unwrap();
        assert_eq!(store.meter_comm(&device).unwrap(), Vec::new());
        let events = book.committed(&[], comm, events, &mut shown, Timestamp(10));
        assert!(!events.is_empty() && !shown[1].comm_lost && shown[1].last_success == Some(Timestamp(10)));
        assert!(book.save_op(book.comm()).is_none());
    }
}
