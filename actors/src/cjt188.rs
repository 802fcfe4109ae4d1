//! CJ/T 188 meters behind a transparent gateway or on a serial line (issue 3 §3): one actor per gateway or
//! line, like a concentrator (the design card). The actor is the only user of its link, so every request on a
//! half-duplex line is serialised by its mailbox (valve commands included: valve actors go through it).
//!
//! Each cycle it reads every meter's metering data (DI 901F), commits the readings with the gateway's status,
//! and only then shows them. Each reading is stamped when its meter answered (a 2400-baud loop takes long), and
//! keeps the meter's own clock (converted with the utility's zone) and its settlement-day volume. The first
//! cycle runs at start; the next ones on the cycle's wall-clock boundaries (`crate::schedule`). A garbled or foreign reply fails that meter only; the driver recovers (a new TCP
//! connection, or the same serial port) and the next meter goes on. A meter that does not answer costs its own
//! timeout. Two cycles with no meter answering make the gateway comm-lost, as for Modbus concentrators (R-A4).

use std::sync::Arc;
use std::time::Duration;

use drivers::cjt188::{Address, Cjt188Link, Cjt188Master, Cjt188Model, Cjt188Target, MeteringData};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::context::DeviceContext;
use crate::meter_book::{CycleEnd, MeterBook};
use crate::metrics::Metrics;
use crate::model::comm::CycleOutcome;
use crate::model::view::CommView;
use crate::model::{
    CommError, CommEvent, CommStatus, DeviceId, DeviceKind, DeviceView, ErrorCode, MeterId, MeterReading, MeterStatus,
    MeterView, RegionId, Timestamp, Volume,
};
use crate::store::{FieldStore, Op};
use crate::supervisor::Slot;

/// One CJ/T 188 meter on a gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Cjt188Meter {
    pub id: MeterId,
    pub address: Address,
}

/// A CJ/T 188 gateway and its meters, resolved from configuration.
#[derive(Clone, Debug)]
pub struct Cjt188Spec {
    pub id: DeviceId,
    pub name: String,
    pub region: RegionId,
    /// A transparent gateway over TCP, or a serial line this actor owns alone.
    pub link: Cjt188Link,
    /// The `[[line]]` id when `link` is serial, to name the path.
    pub line: Option<String>,
    pub timeout: Duration,
    pub model: Cjt188Model,
    pub cycle: Duration,
    pub meters: Vec<Cjt188Meter>,
}

impl Cjt188Spec {
    /// A gateway over TCP, or a serial line of our own: each is labelled as what it is (issue 7 §7).
    pub fn kind(&self) -> DeviceKind {
        match self.link {
            Cjt188Link::Tcp(_) => DeviceKind::Cjt188Gateway,
            Cjt188Link::Serial(_) => DeviceKind::Cjt188Line,
        }
    }

    fn path(&self) -> String {
        match (&self.link, &self.line) {
            (Cjt188Link::Tcp(addr), _) => format!("primary cjt188 {addr}"),
            (Cjt188Link::Serial(s), Some(line)) => format!("primary cjt188 line {line} ({})", s.path),
            (Cjt188Link::Serial(s), None) => format!("primary cjt188 serial {}", s.path),
        }
    }
}

/// Why a CJ/T 188 valve meter could not be read or commanded through its gateway's actor.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MeterValveError {
    /// The meter answered with an abnormal reply (it would or could not do it).
    #[error("abnormal reply (control {0:02X})")]
    Abnormal(u8),
    /// No valid reply.
    #[error("{0}")]
    Link(#[from] drivers::cjt188::Cjt188Error),
}

pub enum Cjt188Msg {
    Cycle,
    View(RpcReplyPort<DeviceView>),
    /// The valve position of one meter, from its metering data's status (for a valve actor).
    ReadValve {
        address: Address,
        reply: RpcReplyPort<Result<drivers::cjt188::ValveState, MeterValveError>>,
    },
    /// Opens or closes one meter's valve (A017); answers with the state the meter reports.
    SetValve {
        address: Address,
        open: bool,
        reply: RpcReplyPort<Result<drivers::cjt188::ValveState, MeterValveError>>,
    },
}

#[derive(Clone, Copy)]
pub struct Cjt188Device;

pub struct Cjt188Args {
    pub spec: Arc<Cjt188Spec>,
    pub ctx: DeviceContext,
    pub slot: Slot<Cjt188Msg>,
}

pub struct Cjt188State {
    args: Cjt188Args,
    client: Cjt188Master,
    comm: CommStatus,
    meters: Vec<MeterView>,
    /// Per-meter comm status and volume-check baselines (issue 7 §4).
    book: MeterBook,
}

/// One meter's answer within a cycle.
struct Answer {
    index: usize,
    volume: Volume,
    status: MeterStatus,
    /// When the meter answered.
    ts: Timestamp,
    meter_clock: Option<Timestamp>,
    settlement: Option<Volume>,
}

/// The meter clock as an instant: the meter shows local time of the utility's zone.
fn meter_clock(data: &MeteringData, zone: &drivers::calendar::Zone) -> Option<Timestamp> {
    let t = data.time?;
    let local = drivers::calendar::LocalTime {
        year: i64::from(t.year),
        month: i64::from(t.month),
        day: i64::from(t.day),
        hour: i64::from(t.hour),
        minute: i64::from(t.minute),
        second: i64::from(t.second),
        millis: 0,
    };
    zone.to_instant(local).map(Timestamp)
}

/// Model status flags from a CJ/T 188 status word.
fn status_of(data: &MeteringData) -> MeterStatus {
    let s = &data.status;
    let mut bits = 0;
    if matches!(s.valve, drivers::cjt188::ValveState::Closed) {
        bits |= MeterStatus::VALVE_CLOSED;
    }
    if s.battery_low {
        bits |= MeterStatus::BATTERY_LOW;
    }
    if s.magnetic_tamper {
        bits |= MeterStatus::MAGNETIC_TAMPER;
    }
    if s.meter_fault || matches!(s.valve, drivers::cjt188::ValveState::Abnormal) {
        bits |= MeterStatus::METER_FAULT;
    }
    MeterStatus(bits)
}

/// The view of a gateway as the store knows it.
pub fn initial_view(spec: &Cjt188Spec, store: &dyn FieldStore) -> DeviceView {
    let mut meters = crate::restore::meters(store, spec.meters.iter().map(|m| &m.id));
    crate::restore::meter_comm(store, &spec.id, &mut meters);
    let comm = crate::restore::comm(store, &spec.id, spec.path(), spec.meters.len() as u32);
    DeviceView {
        id: spec.id.clone(),
        kind: spec.kind(),
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView { status: comm, cycle_ms: spec.cycle.as_millis() as u64 },
        meters,
        values: Vec::new(),
        valve: None,
    }
}

impl Cjt188State {
    fn now(&self) -> Timestamp {
        self.args.ctx.clock.now()
    }

    fn view(&self) -> DeviceView {
        let spec = &self.args.spec;
        DeviceView {
            id: spec.id.clone(),
            kind: spec.kind(),
            name: spec.name.clone(),
            region: spec.region.clone(),
            comm: CommView { status: self.comm.clone(), cycle_ms: spec.cycle.as_millis() as u64 },
            meters: self.meters.clone(),
            values: Vec::new(),
            valve: None,
        }
    }

    fn publish(&self) {
        self.args.ctx.publish(self.view());
    }

    fn publish_comm(&self, event: CommEvent) {
        let spec = &self.args.spec;
        self.args.ctx.events.comm_status(event, &spec.id, &spec.region, self.now(), &self.comm);
    }

    async fn cycle(&mut self) {
        let spec = self.args.spec.clone();
        self.comm.begin_cycle(spec.meters.len() as u32);
        let mut read: Vec<Answer> = Vec::new();
        let mut last_error: Option<CommError> = None;
        for (i, m) in spec.meters.iter().enumerate() {
            Metrics::inc(&self.args.ctx.metrics.polls);
            let result = self.client.read_meter(&m.address).await;
            let now = self.now();
            match result {
                Ok(Ok(data)) => {
                    self.comm.record_attempt(now, true, None);
                    // The driver gives millilitres; volumes are kept to the litre (3 decimals of m³).
                    match Volume::from_m3(data.current.volume.cubic_metres()) {
                        Ok(volume) => read.push(Answer {
                            index: i,
                            volume,
                            status: status_of(&data),
                            ts: now,
                            meter_clock: meter_clock(&data, &self.args.ctx.time.zone),
                            settlement: data.settlement.and_then(|s| Volume::from_m3(s.volume.cubic_metres()).ok()),
                        }),
                        Err(e) => {
                            Metrics::inc(&self.args.ctx.metrics.bad_values);
                            last_error = Some(
                                CommError::new(ErrorCode::BadValue, e.to_string())
                                    .with("detail", e.to_string())
                                    .of_meter(m.id.as_str()),
                            );
                        }
                    }
                }
                Ok(Err(abnormal)) => {
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = crate::comm_error::cjt188_abnormal(m.id.as_str(), &abnormal);
                    tracing::warn!(message = "CJ/T 188 meter refused.", device = %spec.id, meter = %m.id, error = %e.text);
                    self.comm.record_failure(now, true, &e);
                    last_error = Some(e);
                }
                Err(e) => {
                    // The driver has recovered its link; the next meter goes on.
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = crate::comm_error::cjt188(&e).of_meter(m.id.as_str());
                    tracing::warn!(message = "CJ/T 188 read failed.", device = %spec.id, meter = %m.id, error = %e.text);
                    self.comm.record_failure(now, false, &e);
                    last_error = Some(e);
                }
            }
        }
        let now = self.now();
        // Every meter was asked this cycle: the meters' cycle ends with this submission (issue 7 §4).
        let expected: Vec<usize> = (0..spec.meters.len()).collect();
        let read_now: Vec<usize> = read.iter().map(|a| a.index).collect();
        let (meter_comm, meter_events) = self.book.tentative(
            now,
            &read_now,
            Some(CycleEnd { expected: &expected, read: &[], delivered: !read.is_empty() }),
        );
        let save_meters = self.book.save_op(&meter_comm);
        let mut pending_meter_events = None;
        if !read.is_empty() {
            let readings: Vec<_> = read.iter().map(|a| (a.index, a.ts, a.volume, a.status)).collect();
            let checked = self.book.check(&readings, &self.args.ctx.metrics);
            let mut ops: Vec<Op> = checked
                .iter()
                .map(|c| {
                    Op::Reading(MeterReading {
                        meter: spec.meters[c.index].id.clone(),
                        device: spec.id.clone(),
                        ts: c.ts,
                        volume: c.volume,
                        status: c.status,
                        meter_clock: read.iter().find(|a| a.index == c.index).and_then(|a| a.meter_clock),
                        settlement_volume: read.iter().find(|a| a.index == c.index).and_then(|a| a.settlement),
                    })
                })
                .collect();
            let mut status = self.comm.clone();
            let _ = status.record_values(now, read.len() as u32);
            ops.push(Op::DeviceStatus(spec.id.clone(), status));
            ops.extend(save_meters);
            match self.args.ctx.writer.submit(ops).await {
                Ok(_) => {
                    for c in &checked {
                        self.meters[c.index].set(c.volume, c.ts, c.status);
                    }
                    let meter_events = self.book.committed(&checked, meter_comm, meter_events, &mut self.meters, now);
                    if let Some(event) = self.comm.record_values(now, read.len() as u32) {
                        self.publish();
                        self.publish_comm(event);
                    }
                    pending_meter_events = Some(meter_events);
                }
                Err(e) => {
                    tracing::warn!(message = "CJ/T 188 readings not committed.", device = %spec.id, error = %e);
                    last_error = Some(CommError::new(ErrorCode::StoreUnavailable, "store unavailable"));
                    read.clear();
                }
            }
        } else if let Some(op) = save_meters {
            // No meter answered: the device's miss. The meters only show one more unread cycle; no per-meter
            // event (the device's covers them).
            match self.args.ctx.writer.submit(vec![op]).await {
                Ok(_) => {
                    pending_meter_events =
                        Some(self.book.committed(&[], meter_comm, meter_events, &mut self.meters, now))
                }
                Err(e) => tracing::warn!(message = "CJ/T 188 meter status not saved.", device = %spec.id, error = %e),
            }
        }
        if let Some(e) = &last_error {
            self.comm.note_error(e);
        }
        let error = last_error.as_ref().map(|e| e.text.clone());
        let outcome = CycleOutcome { read: read.len() as u32, expected: spec.meters.len() as u32, error };
        let event = self.comm.end_cycle_with(&outcome, last_error.as_ref());
        self.publish();
        if let Some(event) = event {
            self.publish_comm(event);
        }
        if let Some(meter_events) = pending_meter_events {
            meter_events.publish(&self.args.ctx.events);
        }
    }
}

impl Actor for Cjt188Device {
    type Msg = Cjt188Msg;
    type State = Cjt188State;
    type Arguments = Cjt188Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Cjt188Msg>,
        args: Cjt188Args,
    ) -> Result<Cjt188State, ActorProcessingErr> {
        let mut view = initial_view(&args.spec, args.ctx.store.as_ref());
        let target = Cjt188Target { link: args.spec.link.clone(), timeout: args.spec.timeout, model: args.spec.model };
        // The meter's own register modulus is not known here; the check infers a wrap from the value's digits.
        let book =
            MeterBook::restore(args.ctx.store.as_ref(), &args.spec.id, &args.spec.region, &mut view.meters, None);
        args.slot.set(myself);
        Ok(Cjt188State { client: Cjt188Master::new(target), comm: view.comm.status, meters: view.meters, book, args })
    }

    async fn post_start(&self, myself: ActorRef<Cjt188Msg>, state: &mut Cjt188State) -> Result<(), ActorProcessingErr> {
        state.publish();
        myself.cast(Cjt188Msg::Cycle)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Cjt188Msg>,
        msg: Cjt188Msg,
        state: &mut Cjt188State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Cjt188Msg::Cycle => {
                let (started, wall) = (tokio::time::Instant::now(), state.now());
                state.cycle().await;
                let spec = &state.args.spec;
                let next = state.args.ctx.time.delay_until_next(spec.id.as_str(), spec.cycle, wall);
                myself.send_after(next.saturating_sub(started.elapsed()), || Cjt188Msg::Cycle);
            }
            Cjt188Msg::View(reply) => {
                let _ = reply.send(state.view());
            }
            Cjt188Msg::ReadValve { address, reply } => {
                let result = match state.client.read_meter(&address).await {
                    Ok(Ok(data)) => Ok(data.status.valve),
                    Ok(Err(abnormal)) => Err(MeterValveError::Abnormal(abnormal.control.0)),
                    Err(e) => Err(MeterValveError::Link(e)),
                };
                let _ = reply.send(result);
            }
            Cjt188Msg::SetValve { address, open, reply } => {
                Metrics::inc(&state.args.ctx.metrics.polls);
                let result = match state.client.set_valve(&address, open).await {
                    Ok(Ok(valve)) => Ok(valve),
                    Ok(Err(abnormal)) => Err(MeterValveError::Abnormal(abnormal.control.0)),
                    Err(e) => Err(MeterValveError::Link(e)),
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a valve actor shows as its last error when its meter refuses or cannot be reached.
    #[test]
    fn meter_valve_errors_read_as_before() {
        assert_eq!(MeterValveError::Abnormal(0xC4).to_string(), "abnormal reply (control C4)");
        let link = MeterValveError::from(drivers::cjt188::Cjt188Error::Closed);
        assert_eq!(link.to_string(), "connection closed by device");
    }
}
