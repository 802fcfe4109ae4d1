//! The field device actor: polls one concentrator or data logger on its cycle (R-A1, R-A2), retries what it
//! missed within the cycle, commits what it read, keeps the communication status (R-A3, R-A4), and reports
//! its view to the live hub.
//!
//! Timing: a tick is scheduled for the earliest due value with `send_after`, re-armed after each tick (never
//! `send_interval`, whose ticks pile up in the unbounded mailbox behind a slow poll). The first tick after a
//! (re)start polls everything at once; after that each value is due on its cycle's next wall-clock boundary
//! in the utility's zone plus the device's spread offset (`crate::schedule`), so cycles do not drift. A tick polls what is
//! due; values that failed are retried `retries` times, `retry_delay` apart; then the tick ends, and a tick
//! with no data at all is a missed cycle. A tick that ran past the next due time starts the next one at once,
//! so a late cycle is polled, not skipped.
//!
//! Failures are data, not `Err`: a timeout is a comm state and maybe an event. The actor returns `Err` only
//! for what it cannot handle, and then its supervisor restarts it, rebuilding its state from the store.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::plan::{decode_reply, plan, Decoded, ReadRequest};
use super::spec::{DeviceKindSpec, DeviceSpec};
use crate::context::DeviceContext;
use crate::event::Event;
use crate::meter_book::{CycleEnd, MeterBook};
use crate::metrics::Metrics;
use crate::modbus_link::ModbusLink;
use crate::model::comm::CycleOutcome;
use crate::model::view::CommView;
use crate::model::{
    CommError, CommEvent, CommStatus, DeviceKind, DeviceView, ErrorCode, LinkSelector, MeterReading, PathSwitch,
    QualitySample, Timestamp,
};
use crate::store::{FieldStore, Op};
use crate::supervisor::Slot;

pub enum FieldMsg {
    /// Start a tick: poll whatever is due.
    Tick,
    /// Retry the failed reads of tick number `u64`.
    Retry(u64),
    /// The device's current view.
    View(RpcReplyPort<DeviceView>),
}

#[derive(Clone, Copy)]
pub struct FieldDevice;

pub struct FieldDeviceArgs {
    pub spec: Arc<DeviceSpec>,
    pub ctx: DeviceContext,
    /// Refilled with this actor's reference on every (re)start.
    pub slot: Slot<FieldMsg>,
}

/// The tick in progress.
struct Tick {
    no: u64,
    started: Instant,
    requests: Vec<ReadRequest>,
    /// Indices into `requests` not yet read and committed.
    pending: Vec<usize>,
    attempts: u32,
    read: u32,
    expected: u32,
    last_error: Option<CommError>,
}

pub struct FieldDeviceState {
    args: FieldDeviceArgs,
    /// One link per path, primary first; only the path in use (and a probe) is used.
    clients: Vec<ModbusLink>,
    link: LinkSelector,
    comm: CommStatus,
    view: DeviceView,
    /// When each value is next due.
    due: Vec<Instant>,
    cycles: Vec<Duration>,
    tick: Option<Tick>,
    ticks: u64,
    /// Per-meter comm status and volume-check baselines of a concentrator's meters (issue 7 §4); empty for a
    /// logger.
    book: MeterBook,
    /// The meters whose readings were committed in the current tick.
    meters_read: Vec<usize>,
}

/// The view of a device as the store knows it: latest readings or samples, and the last saved comm status.
/// Used by the device actor on (re)start and by the hub on (re)start, so both agree.
pub fn initial_view(spec: &DeviceSpec, store: &dyn FieldStore) -> DeviceView {
    let comm = crate::restore::comm(store, &spec.id, spec.path_name(0), spec.value_count() as u32);
    let (kind, meters, values) = match &spec.kind {
        DeviceKindSpec::Concentrator(c) => {
            let mut meters = crate::restore::meters(store, c.meters.iter().map(|m| &m.id));
            crate::restore::meter_comm(store, &spec.id, &mut meters);
            (DeviceKind::Concentrator, meters, Vec::new())
        }
        DeviceKindSpec::Logger(l) => (
            DeviceKind::Logger,
            Vec::new(),
            l.parameters
                .iter()
                .map(|p| crate::restore::parameter(store, &spec.id, &p.name, &p.unit, p.low, p.high))
                .collect(),
        ),
    };
    DeviceView {
        id: spec.id.clone(),
        kind,
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView { status: comm, cycle_ms: spec.shortest_cycle().as_millis() as u64 },
        meters,
        values,
        valve: None,
    }
}

impl FieldDeviceState {
    fn now(&self) -> Timestamp {
        self.args.ctx.clock.now()
    }

    fn publish_view(&mut self) {
        self.view.comm.status = self.comm.clone();
        self.args.ctx.publish(self.view.clone());
    }

    fn publish_comm_event(&self, event: CommEvent, now: Timestamp) {
        let spec = &self.args.spec;
        self.args.ctx.events.comm_status(event, &spec.id, &spec.region, now, &self.comm);
    }

    /// Starts a tick over the values that are due now.
    fn begin_tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.due.len()).filter(|&i| self.due[i] <= now).collect();
        if due.is_empty() {
            return None;
        }
        let (id, wall) = (self.args.spec.id.as_str(), self.now());
        for &i in &due {
            self.due[i] = now + self.args.ctx.time.delay_until_next(id, self.cycles[i], wall);
        }
        self.ticks += 1;
        let requests = plan(&self.args.spec, &due);
        let expected = due.len() as u32;
        self.comm.begin_cycle(expected);
        self.tick = Some(Tick {
            no: self.ticks,
            started: now,
            pending: (0..requests.len()).collect(),
            requests,
            attempts: 0,
            read: 0,
            expected,
            last_error: None,
        });
        Some(self.ticks)
    }

    /// One pass over the pending requests of the current tick, on the path in use. Returns whether that
    /// path gave any valid reply (data or a device exception).
    async fn attempt(&mut self) -> bool {
        let Some(mut tick) = self.tick.take() else { return false };
        let mut answered = false;
        let path = self.link.active();
        tick.attempts += 1;
        let spec = self.args.spec.clone();
        // Each value with the time the read that carried it returned: when it was measured.
        let mut decoded: Vec<(Decoded, Timestamp)> = Vec::new();
        let mut done: Vec<usize> = Vec::new();
        let mut restored = None;
        for &r in &tick.pending {
            let req = &tick.requests[r];
            Metrics::inc(&self.args.ctx.metrics.polls);
            let result = self.clients[path].read_registers(req.function, req.address, req.count).await;
            let now = self.now();
            match result {
                Ok(Ok(words)) => {
                    answered = true;
                    self.comm.record_attempt(now, true, None);
                    done.push(r);
                    for item in decode_reply(&spec, req, &words) {
                        match item {
                            Ok(Decoded::NoData { index }) => {
                                // The concentrator says it has no reading for this meter: the meter's miss,
                                // counted by the meter book at the tick's end, not a bad value of the device.
                                tracing::debug!(message = "Meter slot marked no data.", device = %spec.id, meter = index);
                            }
                            Ok(d) => decoded.push((d, now)),
                            Err((_, reason)) => {
                                Metrics::inc(&self.args.ctx.metrics.bad_values);
                                tracing::warn!(message = "Value rejected.", device = %spec.id, error = %reason);
                                tick.last_error = Some(
                                    CommError::new(ErrorCode::BadValue, format!("bad value: {reason}"))
                                        .with("detail", reason.to_string()),
                                );
                            }
                        }
                    }
                }
                Ok(Err(exception)) => {
                    // The device answered: the link is up, but this read was refused.
                    answered = true;
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = crate::comm_error::modbus_exception(exception);
                    tracing::warn!(message = "Poll refused by device.", device = %spec.id, address = req.address, error = %e.text);
                    self.comm.record_failure(now, true, &e);
                    tick.last_error = Some(e);
                }
                Err(err) => {
                    // No valid reply: the link is down. The rest would cost a timeout each; try them next time.
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = crate::comm_error::modbus(&err);
                    tracing::warn!(message = "Poll failed.", device = %spec.id, address = req.address, error = %e.text);
                    self.comm.record_failure(now, false, &e);
                    tick.last_error = Some(e);
                    break;
                }
            }
        }
        if !done.is_empty() {
            if self.commit(&decoded).await {
                tick.pending.retain(|r| !done.contains(r));
                let n = decoded.len() as u32;
                tick.read += n;
                restored = self.comm.record_values(self.now(), n);
            } else {
                let e = CommError::new(ErrorCode::StoreUnavailable, "store unavailable; will retry");
                self.comm.note_error(&e);
                tick.last_error = Some(e);
            }
        }
        self.tick = Some(tick);
        self.publish_view();
        if let Some(event) = restored {
            self.publish_comm_event(event, self.now());
        }
        answered
    }

    /// Applies a path switch: the old path's connection is dropped, status and view show the new one, and
    /// the switch is published.
    fn switch_path(&mut self, switch: PathSwitch) {
        let spec = self.args.spec.clone();
        self.clients[switch.from].disconnect();
        let (from, to) = (spec.path_name(switch.from), spec.path_name(switch.to));
        self.comm.path.clone_from(&to);
        tracing::warn!(message = "Communication path switched.", device = %spec.id, from = %from, to = %to, reason = ?switch.reason);
        self.publish_view();
        self.args.ctx.events.publish(Event::PathSwitched {
            device: spec.id.clone(),
            region: spec.region.clone(),
            ts: self.now(),
            from,
            to,
            reason: switch.reason,
        });
    }

    /// While on a backup: one request on the primary; if it answers, go back to it.
    async fn probe_primary(&mut self) {
        let Some(req) = self.tick.as_ref().and_then(|t| t.requests.first().cloned()) else { return };
        Metrics::inc(&self.args.ctx.metrics.polls);
        let answered = self.clients[0].read_registers(req.function, req.address, req.count).await.is_ok();
        if answered {
            if let Some(switch) = self.link.primary_answered() {
                self.switch_path(switch);
            }
        } else {
            tracing::debug!(message = "Primary path still down.", device = %self.args.spec.id);
        }
    }

    /// Commits decoded values with the device status, and applies them to the view only once committed.
    async fn commit(&mut self, decoded: &[(Decoded, Timestamp)]) -> bool {
        let spec = self.args.spec.clone();
        let now = self.now();
        let mut ops = Vec::with_capacity(decoded.len() + 2);
        // Meter readings go through the volume check (issue 7 §4) and are stored with its flags.
        let readings: Vec<_> = decoded
            .iter()
            .filter_map(|(d, ts)| match d {
                Decoded::Meter { index, volume, status } => Some((*index, *ts, *volume, *status)),
                Decoded::Parameter { .. } | Decoded::NoData { .. } => None,
            })
            .collect();
        let checked = self.book.check(&readings, &self.args.ctx.metrics);
        let read: Vec<usize> = checked.iter().map(|c| c.index).collect();
        let (meter_comm, meter_events) = self.book.tentative(now, &read, None);
        if let DeviceKindSpec::Concentrator(c) = &spec.kind {
            for r in &checked {
                ops.push(Op::Reading(MeterReading {
                    meter: c.meters[r.index].id.clone(),
                    device: spec.id.clone(),
                    ts: r.ts,
                    volume: r.volume,
                    status: r.status,
                    meter_clock: None,
                    settlement_volume: None,
                }))
            }
        }
        for (d, ts) in decoded {
            if let (Decoded::Parameter { index, value, flags }, DeviceKindSpec::Logger(l)) = (d, &spec.kind) {
                let p = &l.parameters[*index];
                ops.push(Op::Sample(QualitySample {
                    device: spec.id.clone(),
                    parameter: p.name.clone(),
                    ts: *ts,
                    value: *value,
                    unit: p.unit.clone(),
                    flags: *flags,
                }))
            }
        }
        let mut status = self.comm.clone();
        let _ = status.record_values(now, decoded.len() as u32);
        ops.push(Op::DeviceStatus(spec.id.clone(), status));
        ops.extend(self.book.save_op(&meter_comm));
        match self.args.ctx.writer.submit(ops).await {
            Ok(_) => {
                for (d, ts) in decoded {
                    if let Decoded::Parameter { index, value, flags } = d {
                        self.view.values[*index].set(*value, *ts, *flags);
                    }
                }
                for r in &checked {
                    self.view.meters[r.index].set(r.volume, r.ts, r.status);
                }
                self.meters_read.extend(&read);
                let meter_events = self.book.committed(&checked, meter_comm, meter_events, &mut self.view.meters, now);
                if !meter_events.is_empty() {
                    self.publish_view();
                    meter_events.publish(&self.args.ctx.events);
                }
                true
            }
            Err(e) => {
                tracing::warn!(message = "Readings not committed; keeping them pending.", device = %spec.id, error = %e);
                false
            }
        }
    }

    /// Ends the tick: counts a miss if it brought no data, saves the status, schedules the next tick.
    async fn end_tick(&mut self, myself: &ActorRef<FieldMsg>) {
        if let Some(tick) = self.tick.take() {
            let error = tick.last_error.as_ref().map(|e| e.text.clone());
            let outcome = CycleOutcome { read: tick.read, expected: tick.expected, error };
            let before = self.comm.consecutive_misses;
            let event = self.comm.end_cycle_with(&outcome, tick.last_error.as_ref());
            // The view first, then the event: whoever reacts to the event finds the view already current.
            self.publish_view();
            if let Some(event) = event {
                self.publish_comm_event(event, self.now());
            }
            // The meters asked for in this tick that gave no data miss it (issue 7 §4), saved with the status.
            let expected: Vec<usize> = tick.requests.iter().flat_map(|r| r.values.iter().copied()).collect();
            let expected = if self.view.meters.is_empty() { Vec::new() } else { expected };
            let read = std::mem::take(&mut self.meters_read);
            let now = self.now();
            let end = CycleEnd { expected: &expected, read: &read, delivered: tick.read > 0 };
            let (meter_comm, meter_events) = self.book.tentative(now, &[], Some(end));
            let mut ops = Vec::new();
            if self.comm.consecutive_misses != before {
                ops.push(Op::DeviceStatus(self.args.spec.id.clone(), self.comm.clone()));
            }
            ops.extend(self.book.save_op(&meter_comm));
            if !ops.is_empty() {
                match self.args.ctx.writer.submit(ops).await {
                    Ok(_) => {
                        let meter_events =
                            self.book.committed(&[], meter_comm, meter_events, &mut self.view.meters, now);
                        self.publish_view();
                        meter_events.publish(&self.args.ctx.events);
                    }
                    Err(e) => {
                        tracing::warn!(message = "Device status not saved.", device = %self.args.spec.id, error = %e)
                    }
                }
            }
            tracing::debug!(
                message = "Tick ended.",
                device = %self.args.spec.id,
                read = tick.read,
                expected = tick.expected,
                attempts = tick.attempts,
                took_ms = tick.started.elapsed().as_millis() as u64
            );
        }
        self.schedule_next(myself);
    }

    fn schedule_next(&self, myself: &ActorRef<FieldMsg>) {
        let next = self.due.iter().min().copied().unwrap_or_else(|| Instant::now() + Duration::from_secs(900));
        let delay = next.saturating_duration_since(Instant::now());
        myself.send_after(delay, || FieldMsg::Tick);
    }

    /// Runs attempts of the current tick until it is done or a retry is scheduled. A failed attempt counts
    /// against the path in use; when that makes the device switch paths, the new path is tried at once.
    async fn drive(&mut self, myself: &ActorRef<FieldMsg>) {
        if self.attempt().await {
            self.link.succeeded();
        } else if let Some(switch) = self.link.failed() {
            self.switch_path(switch);
            if self.attempt().await {
                self.link.succeeded();
            }
        }
        let Some(tick) = &self.tick else { return };
        if !tick.pending.is_empty() && tick.attempts <= self.args.spec.retries {
            let no = tick.no;
            myself.send_after(self.args.spec.retry_delay, move || FieldMsg::Retry(no));
        } else {
            self.end_tick(myself).await;
        }
    }
}

impl Actor for FieldDevice {
    type Msg = FieldMsg;
    type State = FieldDeviceState;
    type Arguments = FieldDeviceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<FieldMsg>,
        args: FieldDeviceArgs,
    ) -> Result<FieldDeviceState, ActorProcessingErr> {
        let mut view = initial_view(&args.spec, args.ctx.store.as_ref());
        let comm = view.comm.status.clone();
        let modulus = match &args.spec.kind {
            DeviceKindSpec::Concentrator(c) => c.layout.register_modulus(),
            DeviceKindSpec::Logger(_) => None,
        };
        let book =
            MeterBook::restore(args.ctx.store.as_ref(), &args.spec.id, &args.spec.region, &mut view.meters, modulus);
        let cycles = args.spec.cycles();
        let now = Instant::now();
        args.slot.set(myself);
        Ok(FieldDeviceState {
            clients: args.spec.paths().map(|path| ModbusLink::new(path, &args.ctx.buses)).collect(),
            link: LinkSelector::new(args.spec.paths().count(), args.spec.failover_after, args.spec.probe_every),
            comm,
            view,
            due: vec![now; cycles.len()],
            cycles,
            tick: None,
            ticks: 0,
            book,
            meters_read: Vec::new(),
            args,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<FieldMsg>,
        state: &mut FieldDeviceState,
    ) -> Result<(), ActorProcessingErr> {
        state.publish_view();
        myself.cast(FieldMsg::Tick)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<FieldMsg>,
        msg: FieldMsg,
        state: &mut FieldDeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FieldMsg::Tick => {
                if state.tick.is_some() {
                    // A tick is still retrying; it schedules the next one when it ends.
                    return Ok(());
                }
                if state.begin_tick().is_some() {
                    if state.link.should_probe() {
                        state.probe_primary().await;
                    }
                    state.drive(&myself).await;
                } else {
                    state.schedule_next(&myself);
                }
            }
            FieldMsg::Retry(no) => {
                if state.tick.as_ref().is_some_and(|t| t.no == no) {
                    state.drive(&myself).await;
                }
            }
            FieldMsg::View(reply) => {
                let _ = reply.send(state.view.clone());
            }
        }
        Ok(())
    }
}
