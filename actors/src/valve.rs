//! One actor per remote valve (R-A7, the design card). It polls the valve's position on its cycle, and
//! executes commands one at a time (the mailbox serialises them): write, then read back every
//! `confirm_poll` until the valve reports the commanded position (confirmed) or `confirm_timeout` passes
//! (fault). A command for the position the valve already has writes nothing (idempotent). Every command is
//! audited twice: when it is requested (who, when, why) and when it ends (result), each durably.
//!
//! One entry point serves everyone: `ValveMsg::Command` through `api::FieldApi::command_valve`, used by an
//! operator on the HMI and, later, by billing for arrears shut-off and restore.
//!
//! A command that ends in fault latches it (`model::valve::ValveStatus` decides): it clears when a read-back
//! shows the commanded position, or when an operator resets it (`ValveMsg::Reset` through
//! `api::FieldApi::reset_valve`, audited). Going into and out of fault, and comm-lost and restored, are events.
//! The status (state, last command, latched fault) and the comm status are stored with each poll and in the
//! same submission as a command's or reset's audit record, and restored when the actor (re)starts.
//!
//! A command is also kept as pending in the store (`valve_pending`) from its "requested" record to its result,
//! in the same submissions: a pending command found when the actor starts was cut off by a crash; it is shown
//! as the valve's last command with the result `command_interrupted` and audited `valve.<action>.interrupted`
//! (issue 8 §4).
//!
//! A poll that finds the valve at the other end position than before, with no command running, is an
//! event `ValveMoved`: uncommanded unless it is where its last successful command put it; a successful
//! command is one too (`uncommanded: false`). The alarm engine turns them into the valve-uncommanded alarm.
//!
//! What it deliberately does not do: decide the fault rules (the model does), or retry a failed command.

use std::sync::Arc;
use std::time::Duration;

use crate::modbus_link::{ModbusLink, ModbusPath};
use drivers::registers::Function;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::cjt188::{Cjt188Msg, MeterValveError};
use crate::context::DeviceContext;
use crate::event::Event;
use crate::metrics::Metrics;
use crate::model::comm::CycleOutcome;
use crate::model::valve::{self, Progress, Start};
use crate::model::view::CommView;
use crate::model::{
    CommError, CommEvent, CommStatus, CommandRecord, CommandResult, DeviceId, DeviceKind, DeviceView, ErrorCode,
    FaultChange, RegionId, Reported, ResetRecord, ResetRefused, Timestamp, ValveAction, ValveState, ValveStatus,
};
use crate::store::{AuditEntry, FieldStore, Op, PendingValveCommand, StoreError};
use crate::supervisor::Slot;

/// How a valve model is driven over Modbus: a command register and a status register.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterValve {
    /// The command is a coil (function 5: on = open, off = close) at `command_address` instead of a holding
    /// register written with `open_value` / `close_value` (function 6).
    pub command_coil: bool,
    pub command_address: u16,
    pub open_value: u16,
    pub close_value: u16,
    pub status_function: Function,
    pub status_address: u16,
    pub closed_code: u16,
    pub open_code: u16,
    pub moving_code: u16,
    pub fault_code: u16,
}

impl RegisterValve {
    fn decode(&self, code: u16) -> Reported {
        if code == self.open_code {
            Reported::Open
        } else if code == self.closed_code {
            Reported::Closed
        } else if code == self.moving_code {
            Reported::Moving
        } else if code == self.fault_code {
            Reported::Fault
        } else {
            Reported::Other(code)
        }
    }
}

/// How a valve is reached.
#[derive(Clone, Debug, PartialEq)]
pub enum ValveInterface {
    /// A Modbus valve driven through registers, over TCP or as a unit on an RS-485 line.
    Register { path: ModbusPath, valve: RegisterValve },
    /// A CJ/T 188 valve meter behind a gateway: commands (A017) and read-back (901F status) go through the
    /// gateway's actor, which owns the connection.
    Cjt188 { gateway: DeviceId, address: drivers::cjt188::Address },
}

/// One remote valve, resolved from configuration.
#[derive(Clone, Debug)]
pub struct ValveSpec {
    pub id: DeviceId,
    pub name: String,
    pub region: RegionId,
    /// Each request's timeout (Modbus, or the gateway's CJ/T 188 exchange).
    pub timeout: Duration,
    pub interface: ValveInterface,
    /// How often the position is read outside commands.
    pub poll: Duration,
    pub confirm_timeout: Duration,
    pub confirm_poll: Duration,
    /// A command that waited longer than this in the mailbox (possible only behind a command whose caller went
    /// away: the API lets one command per valve be pending) is refused, not executed (issue 8 §3).
    pub command_expiry: Duration,
}

impl ValveSpec {
    /// The longest one request may take, queueing included: on a shared RS-485 line behind other units'
    /// requests, or at a CJ/T 188 gateway in the middle of a cycle over all its meters.
    pub fn request_wait(&self) -> Duration {
        match &self.interface {
            ValveInterface::Register { path, .. } => path.max_wait(),
            ValveInterface::Cjt188 { .. } => self.timeout.saturating_mul(64),
        }
    }

    pub fn path(&self) -> String {
        match &self.interface {
            ValveInterface::Register { path, .. } => format!("primary {path}"),
            ValveInterface::Cjt188 { gateway, address } => format!("cjt188 via {gateway} meter {address}"),
        }
    }
}

pub enum ValveMsg {
    Poll,
    Command {
        action: ValveAction,
        reason: String,
        requested_by: String,
        /// When it was sent: a command older than `command_expiry` when its turn comes has expired.
        queued_at: tokio::time::Instant,
        reply: RpcReplyPort<CommandRecord>,
    },
    /// An operator resets a latched fault (issue 7 §5).
    Reset {
        reason: String,
        requested_by: String,
        reply: RpcReplyPort<Result<ResetRecord, ResetError>>,
    },
    View(RpcReplyPort<DeviceView>),
}

/// Why a reset did not happen.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ResetError {
    #[error("{0}")]
    Refused(ResetRefused),
    /// The reset could not be stored, so it was not made.
    #[error("the reset could not be stored: {0}")]
    Store(String),
}

#[derive(Clone, Copy)]
pub struct ValveActor;

pub struct ValveArgs {
    pub spec: Arc<ValveSpec>,
    pub ctx: DeviceContext,
    pub slot: Slot<ValveMsg>,
}

/// Why a valve could not be read or commanded, with the code the page renders (issue 7 §7). The text is what
/// the valve's comm status shows.
#[derive(Clone, Debug, thiserror::Error)]
enum LinkError {
    /// The device answered, but refused (an exception or abnormal reply).
    #[error("{}", .0.text)]
    Refused(CommError),
    /// No valid answer.
    #[error("{}", .0.text)]
    Unreachable(CommError),
}

/// The valve's connection.
enum ValveLink {
    Register(ModbusLink, RegisterValve),
    Cjt188 { gateway: Slot<Cjt188Msg>, address: drivers::cjt188::Address, wait: Duration },
}

/// Asks the CJ/T 188 gateway actor that owns the meter's link; what the gateway answers is inside.
async fn ask_gateway<T: Send + 'static>(
    gateway: &Slot<Cjt188Msg>,
    wait: Duration,
    msg: impl FnOnce(RpcReplyPort<Result<T, MeterValveError>>) -> Cjt188Msg,
) -> Result<Result<T, MeterValveError>, LinkError> {
    let Some(g) = gateway.get() else {
        return Err(LinkError::Unreachable(CommError::new(ErrorCode::Internal, "the gateway actor is not running")));
    };
    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    ractor::call_t!(g, msg, wait.as_millis() as u64).map_err(|_| {
        LinkError::Unreachable(
            CommError::new(ErrorCode::Timeout, format!("no answer from the gateway actor within {ms} ms"))
                .with("ms", ms),
        )
    })
}

impl ValveLink {
    async fn read(&mut self) -> Result<Reported, LinkError> {
        match self {
            ValveLink::Register(client, i) => match client.read_registers(i.status_function, i.status_address, 1).await
            {
                Ok(Ok(words)) => match words.first() {
                    Some(&word) => Ok(i.decode(word)),
                    None => Err(LinkError::Unreachable(
                        CommError::new(ErrorCode::BadReply, "empty reply").with("detail", "no register"),
                    )),
                },
                Ok(Err(exception)) => Err(LinkError::Refused(crate::comm_error::modbus_exception(exception))),
                Err(e) => Err(LinkError::Unreachable(crate::comm_error::modbus(&e))),
            },
            ValveLink::Cjt188 { gateway, address, wait } => {
                let address = *address;
                let asked = ask_gateway(gateway, *wait, |reply| Cjt188Msg::ReadValve { address, reply }).await?;
                let meter = address.to_string();
                asked.map(reported_of).map_err(|e| LinkError::Unreachable(crate::comm_error::cjt188_valve(&meter, &e)))
            }
        }
    }

    async fn command(&mut self, action: ValveAction) -> Result<(), LinkError> {
        let open = action == ValveAction::Open;
        match self {
            ValveLink::Register(client, i) => {
                let value = if open { i.open_value } else { i.close_value };
                let written = if i.command_coil {
                    client.write_coil(i.command_address, open).await
                } else {
                    client.write_register(i.command_address, value).await
                };
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(exception)) => Err(LinkError::Refused(crate::comm_error::modbus_exception(exception))),
                    Err(e) => Err(LinkError::Unreachable(crate::comm_error::modbus(&e))),
                }
            }
            ValveLink::Cjt188 { gateway, address, wait } => {
                let address = *address;
                let asked = ask_gateway(gateway, *wait, |reply| Cjt188Msg::SetValve { address, open, reply }).await?;
                let meter = address.to_string();
                asked.map(drop).map_err(|e| LinkError::Refused(crate::comm_error::cjt188_valve(&meter, &e)))
            }
        }
    }
}

fn reported_of(state: drivers::cjt188::ValveState) -> Reported {
    match state {
        drivers::cjt188::ValveState::Open => Reported::Open,
        drivers::cjt188::ValveState::Closed => Reported::Closed,
        drivers::cjt188::ValveState::Abnormal => Reported::Fault,
        drivers::cjt188::ValveState::Other(c) => Reported::Other(c),
    }
}

pub struct ValveActorState {
    args: ValveArgs,
    link: ValveLink,
    reported: Option<Reported>,
    comm: CommStatus,
    /// State, last command and latched fault: what is stored and restored.
    status: ValveStatus,
    /// Events waiting for the next store submission to commit before they are published.
    pending: Vec<Event>,
    /// A command found pending at start (a crash cut it off), to be audited and cleared in `post_start`.
    interrupted: Option<PendingValveCommand>,
}

fn view_of(spec: &ValveSpec, comm: CommStatus, status: &ValveStatus) -> DeviceView {
    DeviceView {
        id: spec.id.clone(),
        kind: DeviceKind::Valve,
        name: spec.name.clone(),
        region: spec.region.clone(),
        comm: CommView { status: comm, cycle_ms: spec.poll.as_millis() as u64 },
        meters: Vec::new(),
        values: Vec::new(),
        valve: Some(status.view()),
    }
}

/// The view of a valve as last stored (fresh if nothing was).
pub fn initial_view(spec: &ValveSpec, store: &dyn FieldStore) -> DeviceView {
    let (comm, status, _) = restored(spec, store);
    view_of(spec, comm, &status)
}

/// The comm status and valve status as last stored, and a command a crash cut off. A valve stored mid-travel
/// shows unknown: where it stopped is not known until it is read; so does one whose command was cut off, and
/// that command is its last one, failed as `command_interrupted`.
fn restored(spec: &ValveSpec, store: &dyn FieldStore) -> (CommStatus, ValveStatus, Option<PendingValveCommand>) {
    let comm = crate::restore::comm(store, &spec.id, spec.path(), 1);
    let mut status = crate::restore::valve(store, &spec.id);
    if matches!(status.state, ValveState::Opening | ValveState::Closing) {
        status.state = ValveState::Unknown;
    }
    let pending = store.valve_pending(&spec.id).unwrap_or_else(|e| {
        tracing::warn!(message = "Cannot read a valve's pending command.", valve = %spec.id, error = %e);
        None
    });
    if let Some(p) = &pending {
        status.state = ValveState::Unknown;
        status.last_command = Some(interrupted_record(p, status.state));
    }
    (comm, status, pending)
}

/// The record of a command cut off by a crash: requested, then no result.
fn interrupted_record(p: &PendingValveCommand, state: ValveState) -> CommandRecord {
    let e = CommError::new(
        ErrorCode::CommandInterrupted,
        "interrupted: the server stopped before the command's result was known",
    );
    CommandRecord {
        action: p.action,
        requested_by: p.requested_by.clone(),
        reason: p.reason.clone(),
        requested_at: p.requested_at,
        finished_at: p.requested_at,
        result: CommandResult::failed(&e),
        state,
    }
}

impl ValveActorState {
    fn now(&self) -> Timestamp {
        self.args.ctx.clock.now()
    }

    fn view(&self) -> DeviceView {
        view_of(&self.args.spec, self.comm.clone(), &self.status)
    }

    fn publish(&self) {
        self.args.ctx.publish(self.view());
    }

    /// Queues a comm-lost or restored event until the next commit.
    fn comm_event(&mut self, event: Option<CommEvent>, now: Timestamp) {
        let Some(event) = event else { return };
        let spec = &self.args.spec;
        let (device, region) = (spec.id.clone(), spec.region.clone());
        self.pending.push(match event {
            CommEvent::Lost { misses } => Event::comm_lost(&device, &region, now, misses, &self.comm),
            CommEvent::Restored { after_misses } => Event::CommRestored { device, region, ts: now, after_misses },
        });
    }

    /// Queues a fault raised or cleared until the next commit.
    fn fault_event(&mut self, change: Option<FaultChange>, now: Timestamp) {
        let Some(change) = change else { return };
        let spec = &self.args.spec;
        let (device, region) = (spec.id.clone(), spec.region.clone());
        self.pending.push(match change {
            FaultChange::Raised { reason, code, params } => {
                tracing::warn!(message = "Valve in fault.", valve = %device, region = %region, reason = %reason);
                Event::ValveFault {
                    device,
                    region,
                    ts: now,
                    reason,
                    error_code: code,
                    error_params: code.map(|_| params),
                }
            }
            FaultChange::Cleared(how) => {
                tracing::info!(message = "Valve fault cleared.", valve = %device, region = %region, how = ?how);
                Event::ValveFaultCleared { device, region, ts: now, how }
            }
        });
    }

    /// Queues a `ValveMoved` event when a poll found the valve at another end position than before
    /// (issue 9 §1): uncommanded unless it is now where its last command put it. Polls never overlap a
    /// command (the mailbox serialises them), so no command is running here.
    fn moved(&mut self, before: ValveState, now: Timestamp) {
        let after = self.status.state;
        let ends = |s: ValveState| matches!(s, ValveState::Open | ValveState::Closed);
        if before == after || !ends(before) || !ends(after) {
            return;
        }
        let commanded = self.status.last_command.as_ref().filter(|c| c.result.ok()).map(|c| c.action.target());
        let uncommanded = commanded != Some(after);
        let spec = &self.args.spec;
        if uncommanded {
            tracing::warn!(message = "Valve moved without a command.", valve = %spec.id, from = before.as_str(), to = after.as_str());
        }
        let (device, region) = (spec.id.clone(), spec.region.clone());
        self.pending.push(Event::ValveMoved { device, region, ts: now, from: before, to: after, uncommanded });
    }

    /// Stores the valve status and comm status, with `audit` if given, in one submission; then publishes the
    /// queued events (comm lost and restored through `EventBus::comm`, like every device's) and the view.
    /// The view goes out even if the store failed: it is what the valve reported, and the error is logged.
    async fn commit(&mut self, extra: Vec<Op>) -> Result<(), StoreError> {
        let id = self.args.spec.id.clone();
        let mut ops = extra;
        ops.push(Op::ValveStatus(id.clone(), self.status.clone()));
        ops.push(Op::DeviceStatus(id.clone(), self.comm.clone()));
        let stored = self.args.ctx.writer.submit(ops).await.map(drop);
        if let Err(e) = &stored {
            tracing::error!(message = "Valve status not stored.", valve = %id, error = %e);
        }
        // Events go out after their commit; after a failed one they wait for the next.
        let events = &self.args.ctx.events;
        let ready = if stored.is_ok() { std::mem::take(&mut self.pending) } else { Vec::new() };
        for event in ready {
            match event {
                lost @ Event::CommLost { .. } => events.comm_lost(lost),
                Event::CommRestored { device, region, ts, after_misses } => {
                    events.comm(CommEvent::Restored { after_misses }, &device, &region, ts, None)
                }
                other => events.publish(other),
            }
        }
        self.publish();
        stored
    }

    /// Reads the position once; updates comm status (the error with its code) and what the valve last reported.
    async fn read(&mut self) -> Result<Reported, CommError> {
        Metrics::inc(&self.args.ctx.metrics.polls);
        let result = self.link.read().await;
        let now = self.now();
        match result {
            Ok(reported) => {
                self.comm.record_attempt(now, true, None);
                self.comm.begin_cycle(1);
                let restored = self.comm.record_values(now, 1);
                self.comm_event(restored, now);
                self.reported = Some(reported);
                Ok(reported)
            }
            Err(e) => {
                Metrics::inc(&self.args.ctx.metrics.poll_failures);
                let (answered, e) = match e {
                    LinkError::Refused(e) => (true, e),
                    LinkError::Unreachable(e) => (false, e),
                };
                self.comm.record_failure(now, answered, &e);
                Err(e)
            }
        }
    }

    fn audit_entry(&self, action: String, by: &str, detail: String, ok: bool) -> AuditEntry {
        AuditEntry { ts: self.now(), actor: by.to_owned(), action, target: self.args.spec.id.to_string(), detail, ok }
    }

    /// Audits durably on its own (a request, or a refusal that changes nothing). Builds the entry first so no
    /// borrow of `self` lives across the commit.
    fn audit(
        &self,
        action: String,
        by: &str,
        detail: String,
        ok: bool,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let entry = self.audit_entry(action, by, detail, ok);
        let (writer, valve) = (self.args.ctx.writer.clone(), self.args.spec.id.clone());
        async move {
            if let Err(e) = writer.submit(vec![Op::Audit(entry)]).await {
                tracing::error!(message = "Valve audit entry not stored.", valve = %valve, error = %e);
            }
        }
    }

    /// A command whose turn came too late: audited, counted and logged, and nothing written.
    async fn expire(
        &mut self,
        action: ValveAction,
        reason: String,
        requested_by: String,
        waited: Duration,
    ) -> CommandRecord {
        let spec = self.args.spec.clone();
        let now = self.now();
        let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        Metrics::inc(&self.args.ctx.metrics.limits.valve_commands_expired);
        tracing::warn!(message = "Valve command expired in the queue; not executed.", valve = %spec.id, action = %action, by = %requested_by, waited_ms);
        let detail = format!("reason: {reason}; expired after waiting {waited_ms} ms in the queue; nothing written");
        self.audit(format!("valve.{action}.expired"), &requested_by, detail, false).await;
        CommandRecord {
            action,
            requested_by,
            reason,
            requested_at: now,
            finished_at: now,
            result: CommandResult::Expired { waited_ms },
            state: self.status.state,
        }
    }

    async fn command(&mut self, action: ValveAction, reason: String, requested_by: String) -> CommandRecord {
        let spec = self.args.spec.clone();
        let requested_at = self.now();
        let was_in_fault = self.status.in_fault();
        let before = self.status.state;
        tracing::info!(message = "Valve command.", valve = %spec.id, action = %action, by = %requested_by, reason = %reason);
        // The request's record and the pending command in one submission: a crash from here to the result's
        // commit leaves the command pending, and the next start closes it as interrupted.
        let requested =
            self.audit_entry(format!("valve.{action}.requested"), &requested_by, format!("reason: {reason}"), true);
        let pending =
            PendingValveCommand { action, requested_by: requested_by.clone(), reason: reason.clone(), requested_at };
        if let Err(e) = self
            .args
            .ctx
            .writer
            .submit(vec![Op::Audit(requested), Op::ValvePending(spec.id.clone(), Some(pending))])
            .await
        {
            tracing::error!(message = "Valve audit entry not stored.", valve = %spec.id, error = %e);
        }

        let mut written = false;
        let result = match self.read().await {
            Err(e) => CommandResult::failed(&valve::command_failure("before_command", &e)),
            Ok(current) => match valve::start(Some(current), action) {
                Start::AlreadyThere => {
                    self.status.state = action.target();
                    CommandResult::AlreadyInPosition
                }
                Start::Write { travelling } => {
                    let (result, reached) = self.write_and_confirm(action, travelling).await;
                    written = reached;
                    result
                }
            },
        };
        let record = CommandRecord {
            action,
            requested_by: requested_by.clone(),
            reason: reason.clone(),
            requested_at,
            finished_at: self.now(),
            result: result.clone(),
            state: self.status.state,
        };
        let took_ms = record.finished_at.0 - requested_at.0;
        let detail = match &result {
            CommandResult::Confirmed => format!("confirmed {} after {took_ms} ms; reason: {reason}", self.state_name()),
            CommandResult::AlreadyInPosition => {
                format!("already {}; nothing written; reason: {reason}", self.state_name())
            }
            CommandResult::Failed { error: why, .. } => {
                format!("failed after {took_ms} ms: {why}; reason: {reason}")
            }
            CommandResult::Expired { waited_ms } => format!("expired after {waited_ms} ms; reason: {reason}"),
        };
        if !result.ok() {
            tracing::warn!(message = "Valve command failed.", valve = %spec.id, action = %action, error = %detail);
        }
        let change = self.status.command_ended(was_in_fault, written, record.clone());
        let now = self.now();
        self.fault_event(change, now);
        if result.ok() {
            // Where it was commanded to be: an uncommanded move before it is over (issue 9 §1).
            let (device, region) = (spec.id.clone(), spec.region.clone());
            let (from, to) = (before, action.target());
            self.pending.push(Event::ValveMoved { device, region, ts: now, from, to, uncommanded: false });
        }
        let entry = self.audit_entry(format!("valve.{action}"), &requested_by, detail, result.ok());
        let _ = self.commit(vec![Op::Audit(entry), Op::ValvePending(spec.id.clone(), None)]).await;
        record
    }

    /// An operator resets the latched fault: audited with the result, stored with it.
    async fn reset(&mut self, reason: String, requested_by: String) -> Result<ResetRecord, ResetError> {
        let spec = self.args.spec.clone();
        let before = self.status.clone();
        let at = self.now();
        tracing::info!(message = "Valve fault reset.", valve = %spec.id, by = %requested_by, reason = %reason);
        match self.status.reset(self.reported, &requested_by, &reason) {
            Err(refused) => {
                tracing::warn!(message = "Valve fault reset refused.", valve = %spec.id, error = %refused);
                let detail = format!("refused: {refused}; reason: {reason}");
                self.audit("valve.reset".into(), &requested_by, detail, false).await;
                Err(ResetError::Refused(refused))
            }
            Ok(change) => {
                let detail = format!("fault cleared, now {}; reason: {reason}", self.state_name());
                let entry = self.audit_entry("valve.reset".into(), &requested_by, detail, true);
                self.fault_event(Some(change), at);
                if let Err(e) = self.commit(vec![Op::Audit(entry)]).await {
                    // Not stored, so not made: the fault stays as it was, and its clearing is not announced.
                    self.status = before;
                    self.pending.pop();
                    self.publish();
                    return Err(ResetError::Store(e.to_string()));
                }
                Ok(ResetRecord { requested_by, reason, at, cleared: before.fault, state: self.status.state })
            }
        }
    }

    fn state_name(&self) -> &'static str {
        match self.status.state {
            ValveState::Open => "open",
            ValveState::Closed => "closed",
            ValveState::Opening => "opening",
            ValveState::Closing => "closing",
            ValveState::Fault => "in fault",
            ValveState::Unknown => "unknown",
        }
    }

    /// Writes the command, then reads back until confirmed, faulted or timed out. Also says whether the
    /// command reached the valve.
    async fn write_and_confirm(&mut self, action: ValveAction, travelling: ValveState) -> (CommandResult, bool) {
        let spec = self.args.spec.clone();
        match self.link.command(action).await {
            Ok(()) => {}
            Err(LinkError::Refused(e)) => {
                return (CommandResult::failed(&valve::command_failure("refused", &e)), false)
            }
            Err(LinkError::Unreachable(e)) => {
                return (CommandResult::failed(&valve::command_failure("not_sent", &e)), false)
            }
        }
        self.status.state = travelling;
        self.publish();
        let deadline = tokio::time::Instant::now() + spec.confirm_timeout;
        let mut last = None;
        loop {
            tokio::time::sleep(spec.confirm_poll.min(deadline.saturating_duration_since(tokio::time::Instant::now())))
                .await;
            match self.read().await {
                Ok(reported) => {
                    last = Some(reported);
                    match valve::read_back(action, reported) {
                        Progress::Confirmed => {
                            self.status.state = action.target();
                            return (CommandResult::Confirmed, true);
                        }
                        Progress::Faulted => {
                            self.status.state = ValveState::Fault;
                            return (CommandResult::failed(&valve::device_fault()), true);
                        }
                        Progress::Waiting => {}
                    }
                }
                Err(e) => tracing::warn!(message = "Valve read-back failed.", valve = %spec.id, error = %e.text),
            }
            if tokio::time::Instant::now() >= deadline {
                self.status.state = ValveState::Fault;
                let (seen, other) = match last {
                    Some(Reported::Open) => ("open", None),
                    Some(Reported::Closed) => ("closed", None),
                    Some(Reported::Moving) => ("moving", None),
                    Some(Reported::Fault) => ("fault", None),
                    Some(Reported::Other(c)) => ("other", Some(c)),
                    None => ("nothing", None),
                };
                let shown = other.map_or_else(|| seen.to_owned(), |c| format!("code {c}"));
                let text = format!("not confirmed within {:?} (last read back: {shown})", spec.confirm_timeout);
                let ms = i64::try_from(spec.confirm_timeout.as_millis()).unwrap_or(i64::MAX);
                let mut e = CommError::new(ErrorCode::ValveNotConfirmed, text).with("ms", ms).with("seen", seen);
                if let Some(c) = other {
                    e = e.with("code", i64::from(c));
                }
                return (CommandResult::failed(&e), true);
            }
        }
    }

    async fn poll(&mut self) {
        self.comm.begin_cycle(1);
        let result = self.read().await;
        let now = self.now();
        let outcome = match &result {
            Ok(reported) => {
                // A latched fault stays until the valve reports the commanded position (the model decides).
                let before = self.status.state;
                let change = self.status.polled(*reported);
                self.fault_event(change, now);
                self.moved(before, now);
                CycleOutcome { read: 1, expected: 1, error: None }
            }
            Err(e) => CycleOutcome { read: 0, expected: 1, error: Some(e.text.clone()) },
        };
        let failure = result.as_ref().err();
        let lost = self.comm.end_cycle_with(&outcome, failure);
        self.comm_event(lost, now);
        let _ = self.commit(Vec::new()).await;
    }

    /// Closes a command a crash cut off: audited as interrupted, and no longer pending; its record is already
    /// the last command (`restored`).
    async fn close_interrupted(&mut self, p: PendingValveCommand) {
        let spec = self.args.spec.clone();
        tracing::warn!(message = "Valve command interrupted by a stop; its result is unknown.", valve = %spec.id, action = %p.action, by = %p.requested_by);
        let detail = format!(
            "requested at {} ms; the server stopped before its result; the valve may or may not have moved; reason: {}",
            p.requested_at.0, p.reason
        );
        let entry = self.audit_entry(format!("valve.{}.interrupted", p.action), &p.requested_by, detail, false);
        let _ = self.commit(vec![Op::Audit(entry), Op::ValvePending(spec.id.clone(), None)]).await;
    }
}

impl Actor for ValveActor {
    type Msg = ValveMsg;
    type State = ValveActorState;
    type Arguments = ValveArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ValveMsg>,
        args: ValveArgs,
    ) -> Result<ValveActorState, ActorProcessingErr> {
        args.slot.set(myself);
        let (comm, status, interrupted) = restored(&args.spec, args.ctx.store.as_ref());
        Ok(ValveActorState {
            link: match &args.spec.interface {
                ValveInterface::Register { path, valve } => {
                    ValveLink::Register(ModbusLink::new(path, &args.ctx.buses), valve.clone())
                }
                ValveInterface::Cjt188 { gateway, address } => ValveLink::Cjt188 {
                    gateway: args.ctx.gateways.get(gateway.as_str()).cloned().unwrap_or_default(),
                    address: *address,
                    wait: args.spec.request_wait(),
                },
            },
            reported: None,
            comm,
            status,
            pending: Vec::new(),
            interrupted,
            args,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ValveMsg>,
        state: &mut ValveActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(p) = state.interrupted.take() {
            state.close_interrupted(p).await;
        }
        myself.cast(ValveMsg::Poll)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ValveMsg>,
        msg: ValveMsg,
        state: &mut ValveActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ValveMsg::Poll => {
                let (started, wall) = (tokio::time::Instant::now(), state.args.ctx.clock.now());
                state.poll().await;
                // The next read-back on the poll's wall-clock boundary (issue 7 §4), not `poll` after this one.
                let spec = &state.args.spec;
                let next = state.args.ctx.time.delay_until_next(spec.id.as_str(), spec.poll, wall);
                myself.send_after(next.saturating_sub(started.elapsed()), || ValveMsg::Poll);
            }
            ValveMsg::Command { action, reason, requested_by, queued_at, reply } => {
                let waited = queued_at.elapsed();
                let record = if waited > state.args.spec.command_expiry {
                    state.expire(action, reason, requested_by, waited).await
                } else {
                    state.command(action, reason, requested_by).await
                };
                let _ = reply.send(record);
            }
            ValveMsg::Reset { reason, requested_by, reply } => {
                let result = state.reset(reason, requested_by).await;
                let _ = reply.send(result);
            }
            ValveMsg::View(reply) => {
                let _ = reply.send(state.view());
            }
        }
        Ok(())
    }
}
