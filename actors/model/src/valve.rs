//! Remote valves (R-A7): states, commands and the read-back rule, pure. A command writes, then the valve is
//! read back until it reports the commanded end position (confirmed) or the confirmation time runs out
//! (fault). A command for the position the valve already has is confirmed at once without writing
//! (idempotent). The actor serialises commands and does the I/O; this module decides.
//!
//! It also decides the latched fault (issue 7 §5): a command that ends in fault latches it; it clears when a
//! later read-back shows the commanded position, or when an operator resets it ([`ValveStatus`]). What it
//! deliberately does not do: talk to the valve, keep time, store or publish anything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::comm::{CommError, ErrorCode, ErrorParams};
use super::reading::Timestamp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValveState {
    Open,
    Closed,
    Opening,
    Closing,
    Fault,
    #[default]
    Unknown,
}

impl ValveState {
    /// The name on the wire (`snake_case`, as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            ValveState::Open => "open",
            ValveState::Closed => "closed",
            ValveState::Opening => "opening",
            ValveState::Closing => "closing",
            ValveState::Fault => "fault",
            ValveState::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValveAction {
    Open,
    Close,
}

impl ValveAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ValveAction::Open => "open",
            ValveAction::Close => "close",
        }
    }

    /// The end position this action commands.
    pub fn target(self) -> ValveState {
        match self {
            ValveAction::Open => ValveState::Open,
            ValveAction::Close => ValveState::Closed,
        }
    }

    /// The state while the valve travels towards the target.
    pub fn travelling(self) -> ValveState {
        match self {
            ValveAction::Open => ValveState::Opening,
            ValveAction::Close => ValveState::Closing,
        }
    }
}

impl fmt::Display for ValveAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValveAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(ValveAction::Open),
            "close" => Ok(ValveAction::Close),
            other => Err(format!("unknown valve action {other:?}; expected \"open\" or \"close\"")),
        }
    }
}

/// What a valve reports about itself when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    Open,
    Closed,
    Moving,
    Fault,
    /// A code the device's model does not define.
    Other(u16),
}

impl Reported {
    /// The state shown for a reading taken outside any command.
    pub fn as_state(self) -> ValveState {
        match self {
            Reported::Open => ValveState::Open,
            Reported::Closed => ValveState::Closed,
            // Moving without our command: someone drives it locally; the direction is not known.
            Reported::Moving => ValveState::Unknown,
            Reported::Fault => ValveState::Fault,
            Reported::Other(_) => ValveState::Unknown,
        }
    }
}

/// How a command starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The valve is confirmed in the commanded position already: nothing to write.
    AlreadyThere,
    /// Write the command; the state becomes `travelling`.
    Write { travelling: ValveState },
}

/// Decides how to start `action` given what the valve last reported.
pub fn start(last: Option<Reported>, action: ValveAction) -> Start {
    match (last, action) {
        (Some(Reported::Open), ValveAction::Open) | (Some(Reported::Closed), ValveAction::Close) => Start::AlreadyThere,
        _ => Start::Write { travelling: action.travelling() },
    }
}

/// One read-back during a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Confirmed,
    /// Keep reading back.
    Waiting,
    /// The valve reports a fault: stop, the command failed.
    Faulted,
}

pub fn read_back(action: ValveAction, reported: Reported) -> Progress {
    match (action, reported) {
        (ValveAction::Open, Reported::Open) | (ValveAction::Close, Reported::Closed) => Progress::Confirmed,
        (_, Reported::Fault) => Progress::Faulted,
        _ => Progress::Waiting,
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResult {
    /// Read back in the commanded position.
    Confirmed,
    /// Already in the commanded position; nothing was written.
    AlreadyInPosition,
    /// Not confirmed: why (timeout, device fault, no connection, write refused). Named `error` so that it never
    /// collides with the operator's `reason` when the result is flattened into a record. `error` is the English
    /// text; `error_code` and `error_params` let a page render it in its language (issue 7 §7), absent in
    /// records stored before they existed.
    Failed {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<ErrorCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_params: Option<ErrorParams>,
    },
    /// Waited in the valve's queue longer than its `command_expiry` (behind a command whose caller went
    /// away): refused without writing anything (issue 8 §3).
    Expired { waited_ms: u64 },
}

impl CommandResult {
    pub fn ok(&self) -> bool {
        !matches!(self, CommandResult::Failed { .. } | CommandResult::Expired { .. })
    }

    /// A failure with its code and parameters.
    pub fn failed(e: &CommError) -> CommandResult {
        CommandResult::Failed { error: e.text.clone(), error_code: Some(e.code), error_params: Some(e.params.clone()) }
    }
}

/// Why a command did not even start: `stage` says where (`before_command`: the valve could not be read;
/// `refused`: it refused the write; `not_sent`: the write got no valid reply), added to the comm error's
/// parameters, with its text prefixed for the English rendering.
pub fn command_failure(stage: &str, e: &CommError) -> CommError {
    let prefix = match stage {
        "before_command" => "valve unreachable before the command",
        "refused" => "the valve refused the command",
        _ => "the command could not be sent",
    };
    CommError { text: format!("{prefix}: {}", e.text), ..e.clone().with("stage", stage) }
}

/// The record of one command: who asked, why, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub action: ValveAction,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: Timestamp,
    pub finished_at: Timestamp,
    #[serde(flatten)]
    pub result: CommandResult,
    /// The state after the command.
    pub state: ValveState,
}

/// A fault latched by a command that did not end in the commanded position (timed out, or the valve reported
/// a fault). It stays until a read-back shows that position, or an operator resets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatchedFault {
    /// The command that was not confirmed; a read-back of its end position clears the fault.
    pub action: ValveAction,
    pub since: Timestamp,
    /// Why the command failed.
    pub reason: String,
}

/// How a valve's fault cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum FaultClearing {
    /// A read-back showed the valve where it was commanded (or no longer reporting a fault of its own).
    ReadBack { state: ValveState },
    /// An operator reset the latched fault.
    Reset { by: String, reason: String },
}

/// A change of a valve's fault, to be published as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultChange {
    /// `reason` is the English text; `code` and `params` render it in a language (absent for a fault latched
    /// before codes existed).
    Raised {
        reason: String,
        code: Option<ErrorCode>,
        params: ErrorParams,
    },
    Cleared(FaultClearing),
}

/// Why an operator's reset was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResetRefused {
    #[error("the valve is not in fault")]
    NotInFault,
    #[error("the valve itself reports a fault; that clears when the valve stops reporting it")]
    DeviceReportsFault,
}

/// Why a valve reporting a fault of its own is in fault.
pub const DEVICE_FAULT: &str = "the valve reports a fault";

/// [`DEVICE_FAULT`] with its code.
pub fn device_fault() -> CommError {
    CommError::new(ErrorCode::ValveReportsFault, DEVICE_FAULT)
}

/// What is kept of a valve, across restarts too: its state, its last command and the latched fault.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValveStatus {
    pub state: ValveState,
    pub last_command: Option<CommandRecord>,
    pub fault: Option<LatchedFault>,
}

fn edge(
    was: bool,
    now: bool,
    raised: impl FnOnce() -> (String, Option<ErrorCode>, ErrorParams),
    cleared: impl FnOnce() -> FaultClearing,
) -> Option<FaultChange> {
    match (was, now) {
        (false, true) => {
            let (reason, code, params) = raised();
            Some(FaultChange::Raised { reason, code, params })
        }
        (true, false) => Some(FaultChange::Cleared(cleared())),
        _ => None,
    }
}

impl ValveStatus {
    /// In fault: latched by a command, or reported by the valve itself.
    pub fn in_fault(&self) -> bool {
        self.state == ValveState::Fault
    }

    /// A read outside any command reported `reported`. A latched fault clears only when the valve reports the
    /// commanded end position; until then the valve stays in fault whatever it reports.
    pub fn polled(&mut self, reported: Reported) -> Option<FaultChange> {
        let was = self.in_fault();
        match &self.fault {
            Some(f) if reported.as_state() == f.action.target() => {
                self.state = f.action.target();
                self.fault = None;
            }
            Some(_) => self.state = ValveState::Fault,
            None => self.state = reported.as_state(),
        }
        let state = self.state;
        let device = || {
            let e = device_fault();
            (e.text, Some(e.code), e.params)
        };
        edge(was, self.in_fault(), device, || FaultClearing::ReadBack { state })
    }

    /// A command ended; `was_in_fault` is whether the valve was in fault when the command began, `written`
    /// whether the command reached the valve, and `record.state` the state the command left. A written command
    /// that fails in fault latches it (for its own action); any success (confirmed, or already in position) is
    /// a read-back of the commanded position and clears it; a failure that never reached the valve
    /// (unreachable, refused) keeps what was latched.
    pub fn command_ended(&mut self, was_in_fault: bool, written: bool, record: CommandRecord) -> Option<FaultChange> {
        self.state = record.state;
        let failure = match &record.result {
            CommandResult::Failed { error, error_code, error_params } => {
                if written && record.state == ValveState::Fault {
                    self.fault =
                        Some(LatchedFault { action: record.action, since: record.finished_at, reason: error.clone() });
                }
                Some((error.clone(), *error_code, error_params.clone().unwrap_or_default()))
            }
            CommandResult::Confirmed | CommandResult::AlreadyInPosition => {
                self.fault = None;
                None
            }
            // Never reached the valve: what was latched stays.
            CommandResult::Expired { .. } => None,
        };
        self.last_command = Some(record);
        let state = self.state;
        edge(
            was_in_fault,
            self.in_fault(),
            || {
                failure.unwrap_or_else(|| {
                    let e = device_fault();
                    (e.text, Some(e.code), e.params)
                })
            },
            || FaultClearing::ReadBack { state },
        )
    }

    /// An operator resets the fault. The state becomes what the valve last reported (`last`), unknown if it was
    /// never read. A fault the valve reports itself cannot be reset: it is the valve's, not ours.
    pub fn reset(&mut self, last: Option<Reported>, by: &str, reason: &str) -> Result<FaultChange, ResetRefused> {
        if !self.in_fault() && self.fault.is_none() {
            return Err(ResetRefused::NotInFault);
        }
        if last == Some(Reported::Fault) {
            return Err(ResetRefused::DeviceReportsFault);
        }
        self.fault = None;
        self.state = last.map_or(ValveState::Unknown, Reported::as_state);
        Ok(FaultChange::Cleared(FaultClearing::Reset { by: by.to_owned(), reason: reason.to_owned() }))
    }

    pub fn view(&self) -> ValveView {
        ValveView { state: self.state, last_command: self.last_command.clone(), fault: self.fault.clone() }
    }
}

/// What the HMI shows of a valve beyond its comm status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValveView {
    pub state: ValveState,
    pub last_command: Option<CommandRecord>,
    /// The latched fault, if any.
    pub fault: Option<LatchedFault>,
}

/// The record of an operator's reset of a latched fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResetRecord {
    pub requested_by: String,
    pub reason: String,
    pub at: Timestamp,
    /// The fault that was cleared.
    pub cleared: Option<LatchedFault>,
    /// The state after the reset.
    pub state: ValveState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_start_idempotently() {
        assert_eq!(start(Some(Reported::Open), ValveAction::Open), Start::AlreadyThere);
        assert_eq!(start(Some(Reported::Closed), ValveAction::Close), Start::AlreadyThere);
        assert_eq!(start(Some(Reported::Open), ValveAction::Close), Start::Write { travelling: ValveState::Closing });
        // Unknown, moving or faulted valves are always written: the command may clear it.
        assert_eq!(start(None, ValveAction::Open), Start::Write { travelling: ValveState::Opening });
        assert_eq!(start(Some(Reported::Fault), ValveAction::Open), Start::Write { travelling: ValveState::Opening });
        assert_eq!(start(Some(Reported::Moving), ValveAction::Close), Start::Write { travelling: ValveState::Closing });
    }

    #[test]
    fn read_back_confirms_only_the_commanded_position() {
        assert_eq!(read_back(ValveAction::Close, Reported::Closed), Progress::Confirmed);
        assert_eq!(read_back(ValveAction::Close, Reported::Moving), Progress::Waiting);
        assert_eq!(read_back(ValveAction::Close, Reported::Open), Progress::Waiting);
        assert_eq!(read_back(ValveAction::Open, Reported::Fault), Progress::Faulted);
        assert_eq!(read_back(ValveAction::Open, Reported::Other(9)), Progress::Waiting);
    }

    #[test]
    fn actions_parse() {
        assert_eq!("open".parse::<ValveAction>(), Ok(ValveAction::Open));
        assert!("shut".parse::<ValveAction>().unwrap_err().contains("\"shut\""));
    }
    fn record(action: ValveAction, result: CommandResult, state: ValveState) -> CommandRecord {
        CommandRecord {
            action,
            requested_by: "duty1".into(),
            reason: "test".into(),
            requested_at: Timestamp(1),
            finished_at: Timestamp(2),
            result,
            state,
        }
    }

    fn timed_out() -> CommandResult {
        let e = CommError::new(ErrorCode::ValveNotConfirmed, "not confirmed within 1s").with("ms", 1000);
        CommandResult::failed(&e)
    }

    fn raised(reason: &str, code: ErrorCode, params: &[(&str, i64)]) -> Option<FaultChange> {
        let params = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
        Some(FaultChange::Raised { reason: reason.into(), code: Some(code), params })
    }

    #[test]
    fn a_failure_before_the_command_names_its_stage() {
        let stage = command_failure("refused", &CommError::new(ErrorCode::Exception, "exception 0x02").with("code", 2));
        assert_eq!(stage.text, "the valve refused the command: exception 0x02");
        assert_eq!((stage.code, stage.params.len()), (ErrorCode::Exception, 2));
    }

    fn latched_close() -> ValveStatus {
        let mut s = ValveStatus { state: ValveState::Open, ..ValveStatus::default() };
        let change = s.command_ended(false, true, record(ValveAction::Close, timed_out(), ValveState::Fault));
        assert_eq!(change, raised("not confirmed within 1s", ErrorCode::ValveNotConfirmed, &[("ms", 1000)]));
        s
    }

    #[test]
    fn a_command_that_ends_in_fault_latches_it_until_the_commanded_position_is_read_back() {
        let mut s = latched_close();
        assert!(s.in_fault());
        assert_eq!(s.fault.as_ref().map(|f| (f.action, f.since)), Some((ValveAction::Close, Timestamp(2))));
        // Still open, moving, or any other report: the fault stays, and nothing new is raised.
        for r in [Reported::Open, Reported::Moving, Reported::Other(7), Reported::Fault] {
            assert_eq!(s.polled(r), None, "{r:?}");
            assert_eq!(s.state, ValveState::Fault, "{r:?}");
        }
        // The valve got there late: the read-back clears the fault.
        assert_eq!(
            s.polled(Reported::Closed),
            Some(FaultChange::Cleared(FaultClearing::ReadBack { state: ValveState::Closed }))
        );
        assert_eq!((s.state, s.fault.as_ref()), (ValveState::Closed, None));
        // Later reads follow the valve again.
        assert_eq!(s.polled(Reported::Open), None);
        assert_eq!(s.state, ValveState::Open);
    }

    #[test]
    fn a_successful_command_clears_the_latch_and_a_failure_that_never_moved_keeps_it() {
        let mut s = latched_close();
        let unreachable = CommandResult::failed(&CommError::new(ErrorCode::Timeout, "the command could not be sent"));
        assert_eq!(s.command_ended(true, false, record(ValveAction::Open, unreachable, ValveState::Fault)), None);
        assert_eq!(s.fault.as_ref().map(|f| f.action), Some(ValveAction::Close), "the first latch is kept");
        let change = s.command_ended(true, true, record(ValveAction::Open, CommandResult::Confirmed, ValveState::Open));
        assert_eq!(change, Some(FaultChange::Cleared(FaultClearing::ReadBack { state: ValveState::Open })));
        assert_eq!((s.state, s.fault.as_ref()), (ValveState::Open, None));
        assert_eq!(s.last_command.as_ref().map(|r| r.action), Some(ValveAction::Open));
        // A failure without a fault (the valve was unreachable) raises nothing.
        let unreachable = CommandResult::failed(&CommError::new(ErrorCode::Timeout, "unreachable"));
        assert_eq!(s.command_ended(false, false, record(ValveAction::Close, unreachable, ValveState::Open)), None);
        assert_eq!(s.fault, None);
    }

    #[test]
    fn a_fault_the_valve_reports_itself_is_raised_and_cleared_by_reads_without_latching() {
        let mut s = ValveStatus::default();
        assert_eq!(s.polled(Reported::Fault), raised(DEVICE_FAULT, ErrorCode::ValveReportsFault, &[]));
        assert_eq!(s.fault, None);
        assert_eq!(s.reset(Some(Reported::Fault), "op", "why"), Err(ResetRefused::DeviceReportsFault));
        assert_eq!(
            s.polled(Reported::Closed),
            Some(FaultChange::Cleared(FaultClearing::ReadBack { state: ValveState::Closed }))
        );
    }

    #[test]
    fn an_operator_resets_a_latched_fault_and_nothing_else() {
        let mut s = ValveStatus { state: ValveState::Open, ..ValveStatus::default() };
        assert_eq!(s.reset(Some(Reported::Open), "duty1", "checked on site"), Err(ResetRefused::NotInFault));
        let mut s = latched_close();
        let change = s.reset(Some(Reported::Open), "duty1", "checked on site").unwrap();
        assert_eq!(
            change,
            FaultChange::Cleared(FaultClearing::Reset { by: "duty1".into(), reason: "checked on site".into() })
        );
        assert_eq!((s.state, s.fault.as_ref()), (ValveState::Open, None), "the state is what the valve reports");
        let mut s = latched_close();
        s.reset(None, "duty1", "never read").unwrap();
        assert_eq!(s.state, ValveState::Unknown);
    }
}
