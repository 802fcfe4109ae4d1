//! Remote valves (R-A7): states, commands and the read-back rule, pure. A command writes, then the valve is
//! read back until it reports the commanded end position (confirmed) or the confirmation time runs out
//! (fault). A command for the position the valve already has is confirmed at once without writing
//! (idempotent). The actor serialises commands and does the I/O; this module decides.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::reading::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValveState {
    Open,
    Closed,
    Opening,
    Closing,
    Fault,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResult {
    /// Read back in the commanded position.
    Confirmed,
    /// Already in the commanded position; nothing was written.
    AlreadyInPosition,
    /// Not confirmed: why (timeout, device fault, no connection, write refused). Named `error` so that it never
    /// collides with the operator's `reason` when the result is flattened into a record.
    Failed { error: String },
}

impl CommandResult {
    pub fn ok(&self) -> bool {
        !matches!(self, CommandResult::Failed { .. })
    }
}

/// The record of one command: who asked, why, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
}

/// What the HMI shows of a valve beyond its comm status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValveView {
    pub state: ValveState,
    pub last_command: Option<CommandRecord>,
}
