//! Water-quality stations that push HJ 212-2017 (issue 3 §4): one `StationActor` per station (the design
//! card's one actor per data logger) and one `Hj212Gateway` that owns the TCP listener and routes each
//! accepted packet to its station by MN.
//!
//! A station actor maps factor codes to the site's parameters, stores the samples, and only then lets the
//! listener answer the station (the 9014 data response): a station whose data was not committed gets no
//! answer and sends again. Real-time data (CN 2011, `-Rtd`) is the parameter's series; minute and hour
//! averages (2051, 2061) go to their own series (`param:avg_1m`, `param:avg_1h`). A factor whose data flag
//! is not `N` is stored flagged (`device_flag`), not trusted (R-A6). A station that sends nothing for
//! `interval` misses a cycle; two in a row make it comm-lost, as for polled devices (R-A4).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drivers::calendar::{days_from_civil, days_in_month};
use drivers::hj212::{cn, Hj212Listener, ListenerConfig, Received};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;

use crate::context::DeviceContext;
use crate::metrics::Metrics;
use crate::model::comm::CycleOutcome;
use crate::model::view::CommView;
use crate::model::{
    CommEvent, CommStatus, DeviceId, DeviceKind, DeviceView, ParameterView, QualityFlags, QualitySample, RegionId,
    Timestamp,
};
use crate::store::{FieldStore, Op};
use crate::supervisor::Slot;
use drivers::log_limit::LogLimit;

/// One measured factor of a station.
#[derive(Clone, Debug, PartialEq)]
pub struct StationParameter {
    /// HJ 212 factor code, e.g. `w01001`.
    pub factor: String,
    /// The parameter name used everywhere else, e.g. `ph`.
    pub name: String,
    pub unit: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// One HJ 212 station, resolved from configuration.
#[derive(Clone, Debug)]
pub struct StationSpec {
    pub id: DeviceId,
    pub name: String,
    pub region: RegionId,
    /// The station's MN (device unique code), which routes its packets here.
    pub mn: String,
    pub password: Option<String>,
    /// The station uploads at least this often; a whole interval without data is a missed cycle.
    pub interval: Duration,
    pub parameters: Vec<StationParameter>,
    /// Offset of the station's `DataTime` from UTC, in minutes (China: +480).
    pub utc_offset_minutes: i32,
}

impl StationSpec {
    fn path(&self) -> String {
        format!("hj212 MN {}", self.mn)
    }
}

pub enum StationMsg {
    Packet(Box<Received>),
    /// Checks that data arrived during interval number `u64`.
    Watchdog(u64),
}

#[derive(Clone, Copy)]
pub struct StationActor;

pub struct StationArgs {
    pub spec: Arc<StationSpec>,
    pub ctx: DeviceContext,
    pub slot: Slot<StationMsg>,
}

pub struct StationState {
    args: StationArgs,
    comm: CommStatus,
    values: Vec<ParameterView>,
    /// Data arrived in the current watchdog interval.
    fresh: u32,
    interval_no: u64,
    /// Judges the stations' DataTime (a station clock may be far off).
    times: crate::plausible::TimeGuard,
}

/// The view of a station as the store knows it.
pub fn initial_view(spec: &StationSpec, store: &dyn FieldStore) -> DeviceView {
    let values = spec
        .parameters
        .iter()
        .map(|p| crate::restore::parameter(store, &spec.id, &p.name, &p.unit, p.low, p.high))
        .collect();
    let comm = crate::restore::comm(store, &spec.id, spec.path(), spec.parameters.len() as u32);
    DeviceView {
        id: spec.id.clone(),
        kind: DeviceKind::Hj212Station,
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView { status: comm, cycle_ms: spec.interval.as_millis() as u64 },
        meters: Vec::new(),
        values,
        valve: None,
    }
}

/// `YYYYMMDDhhmmss` in the station's local time → UTC milliseconds. `None` if it is not a valid date.
pub fn parse_data_time(text: &str, utc_offset_minutes: i32) -> Option<Timestamp> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - i64::from(utc_offset_minutes) * 60;
    Some(Timestamp(secs * 1000))
}

impl StationState {
    fn now(&self) -> Timestamp {
        self.args.ctx.clock.now()
    }

    fn view(&self) -> DeviceView {
        let mut v = initial_view_shell(&self.args.spec);
        v.comm.status = self.comm.clone();
        v.values = self.values.clone();
        v
    }

    fn publish(&self) {
        self.args.ctx.publish(self.view());
    }

    fn publish_comm(&self, event: CommEvent) {
        let spec = &self.args.spec;
        self.args.ctx.events.comm_status(event, &spec.id, &spec.region, self.now(), &self.comm);
    }

    async fn packet(&mut self, received: Received) {
        let spec = self.args.spec.clone();
        let Received { packet, ack, peer, .. } = received;
        let suffix = match packet.cn.as_str() {
            cn::REALTIME_DATA => "",
            cn::MINUTE_DATA => ":avg_1m",
            cn::HOUR_DATA => ":avg_1h",
            cn::DAY_DATA => ":avg_1d",
            other => {
                tracing::info!(message = "HJ 212 packet without samples ignored.", station = %spec.id, cn = other);
                ack.commit();
                return;
            }
        };
        let ts = packet
            .cp
            .data_time
            .as_deref()
            .and_then(|t| parse_data_time(t, spec.utc_offset_minutes))
            .unwrap_or_else(|| self.now());
        // A DataTime beyond the limits is stored flagged and never shown as current (issue 7 §4).
        let verdict = self.times.judge(&self.args.ctx.metrics, spec.id.as_str(), "DataTime", ts, self.now());
        let mut ops = Vec::new();
        let mut updates = Vec::new();
        for reading in packet.cp.readings() {
            let Some((i, p)) = spec.parameters.iter().enumerate().find(|(_, p)| p.factor == reading.code) else {
                continue;
            };
            let value = if suffix.is_empty() { reading.rtd.or(reading.avg) } else { reading.avg.or(reading.rtd) };
            let Some(value) = value.filter(|v| v.is_finite()) else { continue };
            let mut flags = QualityFlags::against_limits(value, p.low, p.high);
            if !reading.is_normal() {
                flags.0 |= QualityFlags::DEVICE_FLAGGED;
            }
            let flags = flags.with_time(verdict);
            ops.push(Op::Sample(QualitySample {
                device: spec.id.clone(),
                parameter: format!("{}{suffix}", p.name),
                ts,
                value,
                unit: p.unit.clone(),
                flags,
            }));
            if suffix.is_empty() || self.values[i].ts.is_none() {
                updates.push((i, value, flags));
            }
        }
        let now = self.now();
        let mut status = self.comm.clone();
        status.record_attempt(now, true, None);
        let _ = status.record_values(now, ops.len() as u32);
        ops.push(Op::DeviceStatus(spec.id.clone(), status));
        let n = ops.len() as u32 - 1;
        match self.args.ctx.writer.submit(ops).await {
            Ok(_) => {
                // Committed: now the listener may answer the station.
                ack.commit();
                self.comm.record_attempt(now, true, None);
                if let Some(event) = self.comm.record_values(now, n.max(1)) {
                    self.publish_comm(event);
                }
                self.comm.cycle_read = n;
                self.comm.cycle_expected = spec.parameters.len() as u32;
                for (i, value, flags) in updates {
                    self.values[i].set(value, ts, flags);
                    if flags.0 & QualityFlags::DEVICE_FLAGGED != 0 {
                        self.values[i].flags.push("device_flag");
                    }
                }
                self.fresh += 1;
                self.publish();
            }
            Err(e) => {
                tracing::warn!(message = "Station data not committed; no reply, the station will resend.", station = %spec.id, peer = %peer, error = %e);
                ack.refuse();
            }
        }
    }

    fn watchdog(&mut self, myself: &ActorRef<StationMsg>, no: u64) {
        if no != self.interval_no {
            return;
        }
        let interval_ms = i64::try_from(self.args.spec.interval.as_millis()).unwrap_or(i64::MAX);
        let error = (self.fresh == 0).then(|| {
            crate::model::CommError::new(crate::model::ErrorCode::NoData, "no upload in the interval")
                .with("ms", interval_ms)
        });
        let outcome = CycleOutcome { read: self.fresh, expected: 1, error: error.as_ref().map(|e| e.text.clone()) };
        if self.fresh == 0 {
            self.comm.link = crate::model::LinkState::Down;
            self.comm.cycle_read = 0;
        }
        let misses = self.comm.consecutive_misses;
        if let Some(event) = self.comm.end_cycle_with(&outcome, error.as_ref()) {
            self.publish();
            self.publish_comm(event);
        } else if self.comm.consecutive_misses != misses {
            self.publish();
        }
        self.fresh = 0;
        self.interval_no += 1;
        let next = self.interval_no;
        myself.send_after(self.args.spec.interval, move || StationMsg::Watchdog(next));
    }
}

fn initial_view_shell(spec: &StationSpec) -> DeviceView {
    DeviceView {
        id: spec.id.clone(),
        kind: DeviceKind::Hj212Station,
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView {
            status: CommStatus::new(spec.path(), spec.parameters.len() as u32),
            cycle_ms: spec.interval.as_millis() as u64,
        },
        meters: Vec::new(),
        values: Vec::new(),
        valve: None,
    }
}

impl Actor for StationActor {
    type Msg = StationMsg;
    type State = StationState;
    type Arguments = StationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StationMsg>,
        args: StationArgs,
    ) -> Result<StationState, ActorProcessingErr> {
        let view = initial_view(&args.spec, args.ctx.store.as_ref());
        args.slot.set(myself);
        let times = crate::plausible::TimeGuard::new(args.ctx.time.plausibility);
        Ok(StationState { comm: view.comm.status, values: view.values, fresh: 0, interval_no: 0, times, args })
    }

    async fn post_start(
        &self,
        myself: ActorRef<StationMsg>,
        state: &mut StationState,
    ) -> Result<(), ActorProcessingErr> {
        state.publish();
        myself.send_after(state.args.spec.interval, || StationMsg::Watchdog(0));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<StationMsg>,
        msg: StationMsg,
        state: &mut StationState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StationMsg::Packet(received) => state.packet(*received).await,
            StationMsg::Watchdog(no) => state.watchdog(&myself, no),
        }
        Ok(())
    }
}

/// Owns the HJ 212 listener and routes accepted packets to station actors by MN.
pub struct Hj212Gateway;

/// The listener's limits against strangers (issue 8 §3), from `[hj212]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hj212Limits {
    /// Connections at once (at the cap the oldest unverified one makes room).
    pub max_connections: usize,
    /// Connections one address may hold before it sent a valid frame.
    pub max_unverified_per_peer: usize,
    /// A connection without a valid frame this long after it opened is closed.
    pub verify_timeout: std::time::Duration,
    /// A station's connection silent this long is closed.
    pub idle_timeout: std::time::Duration,
}

impl Default for Hj212Limits {
    fn default() -> Self {
        let d = ListenerConfig::new(SocketAddr::from(([0, 0, 0, 0], 0)));
        Hj212Limits {
            max_connections: d.max_connections,
            max_unverified_per_peer: d.max_unverified_per_peer,
            verify_timeout: d.verify_timeout,
            idle_timeout: d.idle_timeout.unwrap_or(std::time::Duration::from_secs(600)),
        }
    }
}

pub struct GatewayArgs {
    pub listen: SocketAddr,
    pub limits: Hj212Limits,
    pub stations: Vec<(Arc<StationSpec>, Slot<StationMsg>)>,
    /// Receives the bound address (port 0 in tests) once listening.
    pub bound: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    pub metrics: Arc<Metrics>,
}

pub struct GatewayState {
    listener: Option<Hj212Listener>,
    router: tokio::task::JoinHandle<()>,
    /// Adds the listener's rejected frames to the server's bad-input counter.
    rejections: tokio::task::JoinHandle<()>,
}

impl Actor for Hj212Gateway {
    type Msg = ();
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(&self, _myself: ActorRef<()>, args: GatewayArgs) -> Result<GatewayState, ActorProcessingErr> {
        let passwords: HashMap<String, String> =
            args.stations.iter().map(|(s, _)| (s.mn.clone(), s.password.clone().unwrap_or_default())).collect();
        let any_password = args.stations.iter().any(|(s, _)| s.password.is_some());
        let mut config = ListenerConfig::new(args.listen);
        config.max_connections = args.limits.max_connections;
        config.max_unverified_per_peer = args.limits.max_unverified_per_peer;
        config.verify_timeout = args.limits.verify_timeout;
        config.idle_timeout = Some(args.limits.idle_timeout);
        // With passwords configured the listener also refuses unknown MNs; without, unknown MNs are dropped here.
        config.passwords = any_password.then_some(passwords);
        let (tx, mut rx) = mpsc::channel::<Received>(256);
        let listener = Hj212Listener::start(config, tx)
            .await
            .map_err(|e| format!("cannot listen for HJ 212 on {}: {e}", args.listen))?;
        *args.bound.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener.local_addr());
        tracing::info!(message = "HJ 212 listener up.", addr = %listener.local_addr(), stations = args.stations.len());
        let routes: HashMap<String, Slot<StationMsg>> =
            args.stations.iter().map(|(s, slot)| (s.mn.clone(), slot.clone())).collect();
        let metrics = args.metrics.clone();
        let router = tokio::spawn(async move {
            let mut unknown_log = LogLimit::new(20, std::time::Duration::from_secs(60));
            while let Some(received) = rx.recv().await {
                match routes.get(&received.packet.mn).and_then(|s| s.get()) {
                    Some(station) => {
                        if let Err(e) = station.cast(StationMsg::Packet(Box::new(received))) {
                            tracing::warn!(message = "Station actor unavailable; packet not answered.", error = %e);
                        }
                    }
                    None => {
                        Metrics::inc(&metrics.bad_requests);
                        if let Some(suppressed) = unknown_log.check() {
                            tracing::warn!(message = "HJ 212 packet from an unknown station dropped.", mn = %received.packet.mn, peer = %received.peer, not_logged_before = suppressed);
                        }
                        received.ack.refuse();
                    }
                }
            }
        });
        // Frames the listener rejects (bad CRC, length, password, junk) are bad input: counted with the rest;
        // connections closed by a limit go to their own counters (the listener logged them).
        let mut stats = listener.subscribe();
        let metrics = args.metrics.clone();
        let rejections = tokio::spawn(async move {
            let mut counted = stats.borrow().clone();
            while stats.changed().await.is_ok() {
                let now = stats.borrow().clone();
                let l = &metrics.limits;
                Metrics::add(&metrics.bad_requests, now.rejected.saturating_sub(counted.rejected));
                Metrics::add(
                    &l.hj212_refused_full,
                    now.refused_connections.saturating_sub(counted.refused_connections),
                );
                Metrics::add(&l.hj212_refused_per_peer, now.refused_per_peer.saturating_sub(counted.refused_per_peer));
                Metrics::add(&l.hj212_evicted, now.evicted.saturating_sub(counted.evicted));
                Metrics::add(&l.hj212_verify_timeouts, now.verify_timeouts.saturating_sub(counted.verify_timeouts));
                counted = now;
            }
        });
        Ok(GatewayState { listener: Some(listener), router, rejections })
    }

    async fn post_stop(&self, _myself: ActorRef<()>, state: &mut GatewayState) -> Result<(), ActorProcessingErr> {
        state.router.abort();
        state.rejections.abort();
        if let Some(listener) = state.listener.take() {
            listener.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_time_is_local_time_converted_to_utc() {
        // 2019-06-30 14:12:00 in China (UTC+8) is 06:12:00 UTC = 1561875120 s.
        assert_eq!(parse_data_time("20190630141200", 480), Some(Timestamp(1_561_875_120_000)));
        assert_eq!(parse_data_time("19700101000000", 0), Some(Timestamp(0)));
        assert_eq!(parse_data_time("20240229235959", 0), Some(Timestamp(1_709_251_199_000)));
        for bad in
            ["20230229000000", "2019063014120", "20191330141200", "2019063014120x", "20190631000000", "20190630246000"]
        {
            assert_eq!(parse_data_time(bad, 480), None, "{bad}");
        }
    }
}
