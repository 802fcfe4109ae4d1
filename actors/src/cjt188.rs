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
use crate::metrics::Metrics;
use crate::model::comm::CycleOutcome;
use crate::model::view::CommView;
use crate::model::{
    CommEvent, CommStatus, DeviceId, DeviceKind, DeviceView, MeterId, MeterReading, MeterStatus, MeterView, RegionId,
    Timestamp, Volume,
};
use crate::store::{Op, Store};
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
    fn path(&self) -> String {
        match (&self.link, &self.line) {
            (Cjt188Link::Tcp(addr), _) => format!("primary cjt188 {addr}"),
            (Cjt188Link::Serial(s), Some(line)) => format!("primary cjt188 line {line} ({})", s.path),
            (Cjt188Link::Serial(s), None) => format!("primary cjt188 serial {}", s.path),
        }
    }
}

pub enum Cjt188Msg {
    Cycle,
    View(RpcReplyPort<DeviceView>),
    /// The valve position of one meter, from its metering data's status (for a valve actor).
    ReadValve {
        address: Address,
        reply: RpcReplyPort<Result<drivers::cjt188::ValveState, String>>,
    },
    /// Opens or closes one meter's valve (A017); answers with the state the meter reports.
    SetValve {
        address: Address,
        open: bool,
        reply: RpcReplyPort<Result<drivers::cjt188::ValveState, String>>,
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
pub fn initial_view(spec: &Cjt188Spec, store: &Store) -> DeviceView {
    let meters = crate::restore::meters(store, spec.meters.iter().map(|m| &m.id));
    let comm = crate::restore::comm(store, &spec.id, spec.path(), spec.meters.len() as u32);
    DeviceView {
        id: spec.id.clone(),
        kind: DeviceKind::Concentrator,
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
            kind: DeviceKind::Concentrator,
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
        self.args.ctx.events.comm(event, &spec.id, &spec.region, self.now(), self.comm.last_error.clone());
    }

    async fn cycle(&mut self) {
        let spec = self.args.spec.clone();
        self.comm.begin_cycle(spec.meters.len() as u32);
        let mut read: Vec<Answer> = Vec::new();
        let mut last_error = None;
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
                            last_error = Some(format!("meter {}: {e}", m.id));
                        }
                    }
                }
                Ok(Err(abnormal)) => {
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = format!("meter {} answered abnormally (control {:02X})", m.id, abnormal.control.0);
                    tracing::warn!(message = "CJ/T 188 meter refused.", device = %spec.id, meter = %m.id, error = %e);
                    self.comm.record_attempt(now, true, Some(e.clone()));
                    last_error = Some(e);
                }
                Err(e) => {
                    // The driver has recovered its link; the next meter goes on.
                    Metrics::inc(&self.args.ctx.metrics.poll_failures);
                    let e = format!("meter {}: {e}", m.id);
                    tracing::warn!(message = "CJ/T 188 read failed.", device = %spec.id, meter = %m.id, error = %e);
                    self.comm.record_attempt(now, false, Some(e.clone()));
                    last_error = Some(e);
                }
            }
        }
        let now = self.now();
        if !read.is_empty() {
            let mut ops: Vec<Op> = read
                .iter()
                .map(|a| {
                    Op::Reading(MeterReading {
                        meter: spec.meters[a.index].id.clone(),
                        device: spec.id.clone(),
                        ts: a.ts,
                        volume: a.volume,
                        status: a.status,
                        meter_clock: a.meter_clock,
                        settlement_volume: a.settlement,
                    })
                })
                .collect();
            let mut status = self.comm.clone();
            let _ = status.record_values(now, read.len() as u32);
            ops.push(Op::DeviceStatus(spec.id.clone(), status));
            match self.args.ctx.writer.submit(ops).await {
                Ok(_) => {
                    for a in &read {
                        self.meters[a.index].set(a.volume, a.ts, a.status);
                    }
                    if let Some(event) = self.comm.record_values(now, read.len() as u32) {
                        self.publish();
                        self.publish_comm(event);
                    }
                }
                Err(e) => {
                    tracing::warn!(message = "CJ/T 188 readings not committed.", device = %spec.id, error = %e);
                    last_error = Some("store unavailable".into());
                    read.clear();
                }
            }
        }
        if last_error.is_some() {
            self.comm.last_error.clone_from(&last_error);
        }
        let outcome = CycleOutcome { read: read.len() as u32, expected: spec.meters.len() as u32, error: last_error };
        let event = self.comm.end_cycle(&outcome);
        self.publish();
        if let Some(event) = event {
            self.publish_comm(event);
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
        let view = initial_view(&args.spec, &args.ctx.store);
        let target = Cjt188Target { link: args.spec.link.clone(), timeout: args.spec.timeout, model: args.spec.model };
        args.slot.set(myself);
        Ok(Cjt188State { client: Cjt188Master::new(target), comm: view.comm.status, meters: view.meters, args })
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
                    Ok(Err(abnormal)) => Err(format!("abnormal reply (control {:02X})", abnormal.control.0)),
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(result);
            }
            Cjt188Msg::SetValve { address, open, reply } => {
                Metrics::inc(&state.args.ctx.metrics.polls);
                let result = match state.client.set_valve(&address, open).await {
                    Ok(Ok(valve)) => Ok(valve),
                    Ok(Err(abnormal)) => Err(format!("abnormal reply (control {:02X})", abnormal.control.0)),
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
