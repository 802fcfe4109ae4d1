//! Meters that publish over MQTT (issue 3 §2): one `MqttGroup` actor per configured group of meters (an
//! NB-IoT fleet or an MQTT concentrator, like a concentrator actor), and one `MqttGateway` that owns the
//! broker connection and routes each message to the group of its meters.
//!
//! A message is acknowledged to the broker (PUBACK) only after its readings are committed, so a crash between
//! receipt and commit makes the broker redeliver instead of losing it; a redelivered reading has the same
//! (meter, time) key in the store and counts once. A malformed payload is counted and logged with its topic by
//! the driver, acknowledged (so the broker does not redeliver poison forever), and changes nothing. A group
//! that receives nothing for `interval` misses a cycle; two in a row make it comm-lost (R-A4). A meter of the
//! group that publishes nothing for two intervals while others do is comm-lost on its own (issue 7 §4); the
//! group stays healthy.
//!
//! A reading whose volume decoded but whose status did not is stored all the same, flagged
//! `status_unreadable`, counted in `Metrics::status_unreadable` and logged (rate-limited): losing billing data
//! over a flag would be worse (issue 7 §6). A reading whose payload had no time, where the mapping allows it,
//! is stored at its arrival time (this actor's clock) and flagged `time_from_arrival`; such a reading has no
//! key of its own, so a redelivered copy is stored again at its own arrival time (with the same volume).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drivers::mqtt::{AckHandle, MappedReading, MqttIngest, MqttSettings};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::context::DeviceContext;
use crate::meter_book::{CycleEnd, MeterBook};
use crate::metrics::Metrics;
use crate::model::comm::CycleOutcome;
use crate::model::view::CommView;
use crate::model::{
    CommStatus, DeviceId, DeviceKind, DeviceView, MeterId, MeterReading, MeterStatus, MeterView, RegionId, Timestamp,
    Volume,
};
use crate::store::{FieldStore, Op};
use crate::supervisor::Slot;
use drivers::log_limit::LogLimit;

/// A group of meters publishing over MQTT, resolved from configuration.
#[derive(Clone, Debug)]
pub struct MqttGroupSpec {
    pub id: DeviceId,
    pub name: String,
    pub region: RegionId,
    pub meters: Vec<MeterId>,
    /// Some meter of the group publishes at least this often.
    pub interval: Duration,
}

pub enum MqttGroupMsg {
    Readings(Vec<MappedReading>, AckHandle),
    Watchdog(u64),
}

#[derive(Clone, Copy)]
pub struct MqttGroup;

pub struct MqttGroupArgs {
    pub spec: Arc<MqttGroupSpec>,
    pub ctx: DeviceContext,
    pub slot: Slot<MqttGroupMsg>,
}

pub struct MqttGroupState {
    args: MqttGroupArgs,
    comm: CommStatus,
    meters: Vec<MeterView>,
    index: HashMap<MeterId, usize>,
    /// Meters heard from in the current interval: the group's collection progress.
    reported: std::collections::HashSet<usize>,
    fresh: u32,
    interval_no: u64,
    /// Rate limit of the warnings about undecodable status fields.
    unreadable_log: LogLimit,
    /// Per-meter comm status and volume-check baselines (issue 7 §4).
    book: MeterBook,
    /// Judges the payload times (a meter's clock may be far off).
    times: crate::plausible::TimeGuard,
}

/// The view of a group as the store knows it.
pub fn initial_view(spec: &MqttGroupSpec, store: &dyn FieldStore) -> DeviceView {
    let mut meters = crate::restore::meters(store, &spec.meters);
    crate::restore::meter_comm(store, &spec.id, &mut meters);
    let comm = crate::restore::comm(store, &spec.id, "mqtt".into(), spec.meters.len() as u32);
    DeviceView {
        id: spec.id.clone(),
        kind: DeviceKind::MqttGroup,
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView { status: comm, cycle_ms: spec.interval.as_millis() as u64 },
        meters,
        values: Vec::new(),
        valve: None,
    }
}

/// The model's flags for the names a mapping gave. Names the model does not know (a vendor's names passed
/// through unmapped) are ignored; so are the server's own flags, which no payload may set.
fn status_from_names(names: &[String]) -> MeterStatus {
    MeterStatus(names.iter().filter_map(|n| MeterStatus::device_flag_for(n)).fold(0, |a, f| a | f))
}

/// The time and status a mapped reading is stored with: the arrival time `now` when the payload had none, and
/// the server's flags saying so and saying that the status could not be decoded.
fn time_and_status(r: &MappedReading, now: Timestamp) -> (Timestamp, MeterStatus) {
    let mut status = status_from_names(&r.status);
    let ts = match r.ts_ms {
        Some(ms) => Timestamp(ms),
        None => {
            status.0 |= MeterStatus::TIME_FROM_ARRIVAL;
            now
        }
    };
    if r.status_error.is_some() {
        status.0 |= MeterStatus::STATUS_UNREADABLE;
    }
    (ts, status)
}

impl MqttGroupState {
    fn now(&self) -> Timestamp {
        self.args.ctx.clock.now()
    }

    fn view(&self) -> DeviceView {
        let spec = &self.args.spec;
        DeviceView {
            id: spec.id.clone(),
            kind: DeviceKind::MqttGroup,
            name: spec.name.clone(),
            region: spec.region.clone(),
            comm: CommView { status: self.comm.clone(), cycle_ms: spec.interval.as_millis() as u64 },
            meters: self.meters.clone(),
            values: Vec::new(),
            valve: None,
        }
    }

    async fn readings(&mut self, readings: Vec<MappedReading>, ack: AckHandle) {
        let spec = self.args.spec.clone();
        let now = self.now();
        let mut accepted = Vec::new();
        // Readings kept although their status did not decode: (meter, why), counted and logged once committed.
        let mut unreadable = Vec::new();
        for r in readings {
            let Some(&i) = self.index.get(r.meter.as_str()) else {
                Metrics::inc(&self.args.ctx.metrics.bad_values);
                tracing::warn!(message = "MQTT reading for a meter not in this group dropped.", group = %spec.id, meter = %r.meter);
                continue;
            };
            match Volume::from_m3(r.volume_m3) {
                Ok(volume) => {
                    let (ts, status) = time_and_status(&r, now);
                    if let Some(e) = r.status_error {
                        unreadable.push((r.meter, e));
                    }
                    accepted.push((i, ts, volume, status));
                }
                Err(e) => {
                    Metrics::inc(&self.args.ctx.metrics.bad_values);
                    tracing::warn!(message = "MQTT reading rejected.", group = %spec.id, meter = %r.meter, error = %e);
                }
            }
        }
        // A payload time beyond the limits is stored flagged and never shown as current (issue 7 §4).
        for (i, ts, _, status) in accepted.iter_mut() {
            let verdict =
                self.times.judge(&self.args.ctx.metrics, spec.id.as_str(), spec.meters[*i].as_str(), *ts, now);
            *status = status.with_time(verdict);
        }
        let checked = self.book.check(&accepted, &self.args.ctx.metrics);
        let read: Vec<usize> = accepted.iter().map(|(i, ..)| *i).collect();
        let (meter_comm, meter_events) = self.book.tentative(now, &read, None);
        let mut ops: Vec<Op> = checked
            .iter()
            .map(|c| {
                Op::Reading(MeterReading {
                    meter: spec.meters[c.index].clone(),
                    device: spec.id.clone(),
                    ts: c.ts,
                    volume: c.volume,
                    status: c.status,
                    meter_clock: None,
                    settlement_volume: None,
                })
            })
            .collect();
        let mut status = self.comm.clone();
        status.record_attempt(now, true, None);
        let _ = status.record_values(now, accepted.len() as u32);
        ops.push(Op::DeviceStatus(spec.id.clone(), status));
        ops.extend(self.book.save_op(&meter_comm));
        match self.args.ctx.writer.submit(ops).await {
            Ok(_) => {
                // Committed: now the broker may forget the message.
                ack.ack();
                for (meter, error) in unreadable {
                    Metrics::inc(&self.args.ctx.metrics.status_unreadable);
                    if let Some(suppressed) = self.unreadable_log.check() {
                        tracing::warn!(
                            message = "MQTT reading stored without its status (flagged status_unreadable); check the topic's status mapping.",
                            group = %spec.id,
                            meter = %meter,
                            error = %error,
                            not_logged_before = suppressed,
                        );
                    }
                }
                self.comm.record_attempt(now, true, None);
                if let Some(event) = self.comm.record_values(now, accepted.len() as u32) {
                    self.args.ctx.events.comm(event, &spec.id, &spec.region, now, None);
                }
                for c in &checked {
                    self.reported.insert(c.index);
                    // A late (older) reading is stored but does not replace a newer one on screen.
                    if self.meters[c.index].ts.is_none_or(|shown| shown <= c.ts) {
                        self.meters[c.index].set(c.volume, c.ts, c.status);
                    }
                }
                let meter_events = self.book.committed(&checked, meter_comm, meter_events, &mut self.meters, now);
                self.fresh += 1;
                self.comm.cycle_read = self.reported.len() as u32;
                self.args.ctx.publish(self.view());
                meter_events.publish(&self.args.ctx.events);
            }
            Err(e) => {
                // Not acknowledged: the broker redelivers after the next reconnect.
                tracing::warn!(message = "MQTT readings not committed; not acknowledged.", group = %spec.id, error = %e);
                drop(ack);
            }
        }
    }

    async fn watchdog(&mut self, myself: &ActorRef<MqttGroupMsg>, no: u64) {
        if no != self.interval_no {
            return;
        }
        // Each meter that published nothing in the interval misses it (issue 7 §4); saved when that changes
        // what the store holds. Events go out after the save, and not at all while the whole group is silent.
        let now = self.now();
        let expected: Vec<usize> = (0..self.args.spec.meters.len()).collect();
        let reported: Vec<usize> = self.reported.iter().copied().collect();
        let end = CycleEnd { expected: &expected, read: &reported, delivered: self.fresh > 0 };
        let (meter_comm, meter_events) = self.book.tentative(now, &[], Some(end));
        let mut meters_changed = None;
        if let Some(op) = self.book.save_op(&meter_comm) {
            match self.args.ctx.writer.submit(vec![op]).await {
                Ok(_) => {
                    meters_changed = Some(self.book.committed(&[], meter_comm, meter_events, &mut self.meters, now));
                }
                Err(e) => {
                    tracing::warn!(message = "MQTT meter status not saved.", group = %self.args.spec.id, error = %e)
                }
            }
        }
        let interval_ms = i64::try_from(self.args.spec.interval.as_millis()).unwrap_or(i64::MAX);
        let error = (self.fresh == 0).then(|| {
            crate::model::CommError::new(crate::model::ErrorCode::NoData, "no message in the interval")
                .with("ms", interval_ms)
        });
        let outcome = CycleOutcome { read: self.fresh, expected: 1, error: error.as_ref().map(|e| e.text.clone()) };
        if self.fresh == 0 {
            self.comm.link = crate::model::LinkState::Down;
        }
        let before = self.comm.consecutive_misses;
        let event = self.comm.end_cycle_with(&outcome, error.as_ref());
        if meters_changed.is_some() || event.is_some() || self.comm.consecutive_misses != before {
            self.args.ctx.publish(self.view());
        }
        if let Some(meter_events) = meters_changed {
            meter_events.publish(&self.args.ctx.events);
        }
        if let Some(event) = event {
            let spec = &self.args.spec;
            self.args.ctx.events.comm_status(event, &spec.id, &spec.region, self.now(), &self.comm);
        }
        self.fresh = 0;
        self.reported.clear();
        self.comm.begin_cycle(self.args.spec.meters.len() as u32);
        self.interval_no += 1;
        let next = self.interval_no;
        myself.send_after(self.args.spec.interval, move || MqttGroupMsg::Watchdog(next));
    }
}

impl Actor for MqttGroup {
    type Msg = MqttGroupMsg;
    type State = MqttGroupState;
    type Arguments = MqttGroupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MqttGroupMsg>,
        args: MqttGroupArgs,
    ) -> Result<MqttGroupState, ActorProcessingErr> {
        let mut view = initial_view(&args.spec, args.ctx.store.as_ref());
        let book =
            MeterBook::restore(args.ctx.store.as_ref(), &args.spec.id, &args.spec.region, &mut view.meters, None);
        let index = args.spec.meters.iter().enumerate().map(|(i, m)| (m.clone(), i)).collect();
        args.slot.set(myself);
        let mut comm = view.comm.status;
        comm.begin_cycle(args.spec.meters.len() as u32);
        Ok(MqttGroupState {
            comm,
            meters: view.meters,
            index,
            reported: Default::default(),
            fresh: 0,
            interval_no: 0,
            unreadable_log: LogLimit::new(20, Duration::from_secs(60)),
            book,
            times: crate::plausible::TimeGuard::new(args.ctx.time.plausibility),
            args,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<MqttGroupMsg>,
        state: &mut MqttGroupState,
    ) -> Result<(), ActorProcessingErr> {
        state.args.ctx.publish(state.view());
        myself.send_after(state.args.spec.interval, || MqttGroupMsg::Watchdog(0));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MqttGroupMsg>,
        msg: MqttGroupMsg,
        state: &mut MqttGroupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MqttGroupMsg::Readings(readings, ack) => state.readings(readings, ack).await,
            MqttGroupMsg::Watchdog(no) => state.watchdog(&myself, no).await,
        }
        Ok(())
    }
}

/// Owns the broker connection and routes messages by meter to their group.
#[derive(Clone, Copy)]
pub struct MqttGateway;

pub struct MqttGatewayArgs {
    pub settings: MqttSettings,
    pub groups: Vec<(Arc<MqttGroupSpec>, Slot<MqttGroupMsg>)>,
    pub metrics: Arc<Metrics>,
}

pub struct MqttGatewayState {
    ingest: Option<MqttIngest>,
    router: tokio::task::JoinHandle<()>,
}

impl Actor for MqttGateway {
    type Msg = ();
    type State = MqttGatewayState;
    type Arguments = MqttGatewayArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        args: MqttGatewayArgs,
    ) -> Result<MqttGatewayState, ActorProcessingErr> {
        let (tx, mut rx) = mpsc::channel(256);
        let ingest = MqttIngest::start(args.settings, tx).map_err(|e| format!("cannot start MQTT ingestion: {e}"))?;
        let owner: HashMap<MeterId, Slot<MqttGroupMsg>> =
            args.groups.iter().flat_map(|(g, slot)| g.meters.iter().map(move |m| (m.clone(), slot.clone()))).collect();
        let metrics = args.metrics.clone();
        let router = tokio::spawn(async move {
            let mut unknown_log = LogLimit::new(20, std::time::Duration::from_secs(60));
            while let Some(incoming) = rx.recv().await {
                let readings = match incoming.readings {
                    Ok(r) => r,
                    Err(_) => {
                        // Counted and logged with its topic by the driver; acknowledged so it is not redelivered.
                        Metrics::inc(&metrics.bad_requests);
                        incoming.ack.ack();
                        continue;
                    }
                };
                let group = readings.iter().find_map(|r| owner.get(r.meter.as_str())).and_then(|s| s.get());
                match group {
                    Some(g) => {
                        if g.cast(MqttGroupMsg::Readings(readings, incoming.ack)).is_err() {
                            tracing::warn!(message = "MQTT group actor unavailable; message not acknowledged.", topic = %incoming.topic);
                        }
                    }
                    None => {
                        Metrics::inc(&metrics.bad_values);
                        if let Some(suppressed) = unknown_log.check() {
                            tracing::warn!(message = "MQTT message for unknown meters dropped.", topic = %incoming.topic, meters = readings.len(), not_logged_before = suppressed);
                        }
                        incoming.ack.ack();
                    }
                }
            }
        });
        Ok(MqttGatewayState { ingest: Some(ingest), router })
    }

    async fn post_stop(&self, _myself: ActorRef<()>, state: &mut MqttGatewayState) -> Result<(), ActorProcessingErr> {
        state.router.abort();
        if let Some(ingest) = state.ingest.take() {
            ingest.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::mqtt::MapError;

    fn mapped(ts_ms: Option<i64>, status: &[&str], status_error: Option<MapError>) -> MappedReading {
        MappedReading {
            meter: "N1".into(),
            ts_ms,
            volume_m3: 1.0,
            status: status.iter().map(|s| (*s).to_owned()).collect(),
            status_error,
        }
    }

    #[test]
    fn a_reading_without_a_time_takes_the_arrival_time_and_says_so() {
        let now = Timestamp(1_709_251_234_567);
        let (ts, status) = time_and_status(&mapped(None, &["battery_low"], None), now);
        assert_eq!((ts, status.names()), (now, vec!["battery_low", "time_from_arrival"]));
        let (ts, status) = time_and_status(&mapped(Some(5), &["battery_low"], None), now);
        assert_eq!((ts, status.names()), (Timestamp(5), vec!["battery_low"]));
    }

    #[test]
    fn an_undecodable_status_is_flagged_and_payloads_cannot_set_server_flags() {
        let e = MapError::Missing { path: "/st".into() };
        let (_, status) = time_and_status(&mapped(Some(5), &["valve_fault"], Some(e)), Timestamp(0));
        assert_eq!(status.names(), vec!["valve_fault", "status_unreadable"]);
        // Names passed through unmapped from a vendor cannot claim the server's flags, nor unknown ones.
        let (_, status) = time_and_status(
            &mapped(Some(5), &["status_unreadable", "time_from_arrival", "LOWBAT"], None),
            Timestamp(0),
        );
        assert_eq!(status, MeterStatus::default());
    }
}
