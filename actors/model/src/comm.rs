//! Communication status of one device (R-A3, R-A4): last success, consecutive missed cycles, this cycle's
//! progress, link state, and the comm-lost decision.
//!
//! A cycle is *missed* when it ends (after its retries) with no data at all from the device. A partial cycle
//! (some meters read) is not a miss; its progress shows what is missing. Two missed cycles in a row mark the
//! device comm-lost; the first cycle with data clears it.
//!
//! [`MeterComm`] applies the same rule to one meter behind a device (a concentrator slot, a CJ/T 188 meter on a
//! gateway, an MQTT meter in a group), beside the device's own status: a cycle in which the device delivered
//! data but not this meter's is the meter's miss. A cycle in which the device delivered nothing at all is the
//! device's miss, not the meter's: the device's event covers it (one event, not one per meter), and the meter
//! only shows that it is not being read (`unread_cycles`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reading::Timestamp;

/// Consecutive missed cycles that make a device comm-lost (R-A4).
pub const MISSES_FOR_COMM_LOST: u32 = 2;

/// The state of the link to the device as last observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not tried yet since start-up.
    Unknown,
    /// The last request got a valid reply (data or a device exception).
    Up,
    /// The last request got no valid reply.
    Down,
}

/// How one cycle ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CycleOutcome {
    /// Values (meters or parameters) read in this cycle.
    pub read: u32,
    /// Values expected in this cycle.
    pub expected: u32,
    /// The last error of the cycle, if any request failed.
    pub error: Option<String>,
}

/// A change of the comm-lost decision, to be published as an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommEvent {
    Lost { misses: u32 },
    Restored { after_misses: u32 },
}

/// Why the last request to a device failed, as a stable code that a client renders in its own language with
/// [`ErrorParams`] (issue 7 §7). The English text stays in `last_error` for scripts and logs. Each driver's
/// error enum is mapped to these codes in one place (`actors::comm_error`), never by parsing text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No reply within `ms`.
    Timeout,
    /// No connection within `ms`.
    ConnectTimeout,
    /// Nothing listens at the device's address.
    ConnectionRefused,
    /// The connection (or serial port) could not be opened: `detail`.
    ConnectFailed,
    /// The device closed or reset the connection.
    ConnectionClosed,
    /// Another transport failure: `detail`.
    Transport,
    /// The device answered with Modbus exception `code`.
    Exception,
    /// The reply was not a valid frame of the protocol: `detail`.
    GarbageReply,
    /// A well-formed reply that does not answer the request (wrong length, content): `detail`.
    BadReply,
    /// A frame whose checksum or CRC is wrong.
    CrcError,
    /// A CJ/T 188 meter answered with the abnormal bit set (`control`).
    AbnormalReply,
    /// A value that cannot be stored (out of range, not a number): `detail`.
    BadValue,
    /// A pushing device (HJ 212 station, MQTT group) sent nothing in its interval.
    NoData,
    /// The store did not take the data; it is kept and tried again.
    StoreUnavailable,
    /// The driver's state was lost and the connection must be replaced.
    Internal,
    /// A valve command was written but the valve was not read back in the commanded position within `ms`;
    /// `seen` is what it last reported (`open`, `closed`, `moving`, `fault`, `other` with `code`, or `nothing`).
    ValveNotConfirmed,
    /// The valve reports a fault of its own.
    ValveReportsFault,
    /// A valve command was requested, then the server (or the valve's actor) stopped before its result: the
    /// valve may or may not have moved (issue 8 §4).
    CommandInterrupted,
}

/// One parameter of an error: a number (milliseconds, an exception code) or a text (a meter id, a detail).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorParam {
    Number(i64),
    Text(String),
}

impl From<i64> for ErrorParam {
    fn from(n: i64) -> Self {
        ErrorParam::Number(n)
    }
}

impl From<String> for ErrorParam {
    fn from(t: String) -> Self {
        ErrorParam::Text(t)
    }
}

impl From<&str> for ErrorParam {
    fn from(t: &str) -> Self {
        ErrorParam::Text(t.to_owned())
    }
}

/// The parameters of an error by name, e.g. `{"ms": 3000}` or `{"code": 2, "meter": "XC-CJ-01"}`.
pub type ErrorParams = BTreeMap<String, ErrorParam>;

/// A failure as a device actor records it: code and parameters for the page, English text for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommError {
    pub code: ErrorCode,
    pub params: ErrorParams,
    pub text: String,
}

impl CommError {
    pub fn new(code: ErrorCode, text: impl Into<String>) -> CommError {
        CommError { code, params: ErrorParams::new(), text: text.into() }
    }

    /// Adds a parameter.
    pub fn with(mut self, name: &str, value: impl Into<ErrorParam>) -> CommError {
        self.params.insert(name.to_owned(), value.into());
        self
    }

    /// The same failure of one meter behind the device: `meter {id}: {text}`, with the meter as a parameter.
    pub fn of_meter(self, meter: &str) -> CommError {
        let text = format!("meter {meter}: {}", self.text);
        CommError { text, ..self.with("meter", meter) }
    }
}

/// The communication status of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommStatus {
    pub link: LinkState,
    pub comm_lost: bool,
    pub last_success: Option<Timestamp>,
    pub last_attempt: Option<Timestamp>,
    pub consecutive_misses: u32,
    pub cycle_read: u32,
    pub cycle_expected: u32,
    pub last_error: Option<String>,
    /// The code of `last_error` when it came from a typed failure ([`CommStatus::note_error`]); `None` with a
    /// text set another way, and in statuses saved before codes existed.
    #[serde(default)]
    pub last_error_code: Option<ErrorCode>,
    /// The parameters of `last_error_code`.
    #[serde(default)]
    pub last_error_params: Option<ErrorParams>,
    /// The communication path in use, e.g. `tcp 10.0.3.7:502` (R-A8 shows it; failover comes later).
    pub path: String,
}

impl CommStatus {
    pub fn new(path: String, expected: u32) -> CommStatus {
        CommStatus {
            link: LinkState::Unknown,
            comm_lost: false,
            last_success: None,
            last_attempt: None,
            consecutive_misses: 0,
            cycle_read: 0,
            cycle_expected: expected,
            last_error: None,
            last_error_code: None,
            last_error_params: None,
            path,
        }
    }

    /// A new cycle begins: progress restarts at zero of `expected`.
    pub fn begin_cycle(&mut self, expected: u32) {
        self.cycle_read = 0;
        self.cycle_expected = expected;
    }

    /// One request finished; `ok` if it got a valid reply. Values read are counted by [`Self::record_values`].
    pub fn record_attempt(&mut self, now: Timestamp, ok: bool, error: Option<String>) {
        self.last_attempt = Some(now);
        self.link = if ok { LinkState::Up } else { LinkState::Down };
        if let Some(e) = error {
            self.last_error = Some(e);
            self.clear_error_code();
        }
    }

    /// One request failed with a typed error; `answered` if the device still gave a valid reply (an exception).
    pub fn record_failure(&mut self, now: Timestamp, answered: bool, error: &CommError) {
        self.record_attempt(now, answered, None);
        self.note_error(error);
    }

    /// Makes `error` the last error: text, code and parameters together.
    pub fn note_error(&mut self, error: &CommError) {
        self.last_error = Some(error.text.clone());
        self.last_error_code = Some(error.code);
        self.last_error_params = Some(error.params.clone());
    }

    fn clear_error_code(&mut self) {
        self.last_error_code = None;
        self.last_error_params = None;
    }

    /// [`Self::end_cycle`] for a cycle whose last failure is typed: a missed cycle keeps its code too.
    pub fn end_cycle_with(&mut self, outcome: &CycleOutcome, error: Option<&CommError>) -> Option<CommEvent> {
        let event = self.end_cycle(outcome);
        if let (0, Some(e)) = (outcome.read, error) {
            self.note_error(e);
        }
        event
    }

    /// `n` values of this cycle were read and committed. Data flowing again clears comm-lost at once.
    pub fn record_values(&mut self, now: Timestamp, n: u32) -> Option<CommEvent> {
        if n == 0 {
            return None;
        }
        self.cycle_read = self.cycle_read.saturating_add(n);
        self.last_success = Some(now);
        self.last_error = None;
        self.clear_error_code();
        let after = self.consecutive_misses;
        self.consecutive_misses = 0;
        if self.comm_lost {
            self.comm_lost = false;
            return Some(CommEvent::Restored { after_misses: after });
        }
        None
    }

    /// The cycle is over (its retries spent). A cycle without any data is a miss.
    pub fn end_cycle(&mut self, outcome: &CycleOutcome) -> Option<CommEvent> {
        if outcome.read > 0 {
            return None;
        }
        self.consecutive_misses = self.consecutive_misses.saturating_add(1);
        if outcome.error.is_some() && outcome.error != self.last_error {
            self.last_error.clone_from(&outcome.error);
            self.clear_error_code();
        }
        if !self.comm_lost && self.consecutive_misses >= MISSES_FOR_COMM_LOST {
            self.comm_lost = true;
            return Some(CommEvent::Lost { misses: self.consecutive_misses });
        }
        None
    }
}

/// The communication status of one meter behind a device (issue 7 §4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterComm {
    /// When the meter's data was last committed.
    pub last_success: Option<Timestamp>,
    /// Cycles in a row in which the device delivered data but none of this meter's.
    pub consecutive_misses: u32,
    /// Cycles in a row without this meter's data, whatever the cause (its own misses and its device's).
    pub unread_cycles: u32,
    /// The meter is reported comm-lost (a `MeterCommLost` event went out for it).
    pub comm_lost: bool,
}

impl MeterComm {
    /// The meter's data was committed at `now`. Data flowing again clears comm-lost at once.
    pub fn record_read(&mut self, now: Timestamp) -> Option<CommEvent> {
        self.last_success = Some(self.last_success.map_or(now, |t| t.max(now)));
        let after = self.consecutive_misses;
        self.consecutive_misses = 0;
        self.unread_cycles = 0;
        if self.comm_lost {
            self.comm_lost = false;
            return Some(CommEvent::Restored { after_misses: after });
        }
        None
    }

    /// A cycle ended without this meter's data. `device_delivered` says whether its device delivered any data
    /// in that cycle: if it did not, the miss is the device's, and the meter neither counts it nor raises an
    /// event (it only shows one more unread cycle).
    pub fn record_miss(&mut self, device_delivered: bool) -> Option<CommEvent> {
        self.unread_cycles = self.unread_cycles.saturating_add(1);
        if !device_delivered {
            return None;
        }
        self.consecutive_misses = self.consecutive_misses.saturating_add(1);
        if !self.comm_lost && self.consecutive_misses >= MISSES_FOR_COMM_LOST {
            self.comm_lost = true;
            return Some(CommEvent::Lost { misses: self.consecutive_misses });
        }
        None
    }

    /// Whether this status says nothing beyond "read in the last cycle" (what is worth storing is the rest).
    pub fn is_clean(&self) -> bool {
        self.consecutive_misses == 0 && self.unread_cycles == 0 && !self.comm_lost
    }
}

/// Ends a cycle for the meters of one device: every meter in `expected` that is not in `read` gets a miss.
/// Returns the comm-lost decisions that changed, by meter index. `device_delivered` is whether the device
/// delivered any data in the cycle (see [`MeterComm::record_miss`]). Reads were recorded as they committed.
pub fn meters_end_cycle(
    meters: &mut [MeterComm],
    expected: impl IntoIterator<Item = usize>,
    read: &[bool],
    device_delivered: bool,
) -> Vec<(usize, CommEvent)> {
    let mut events = Vec::new();
    for i in expected {
        if read.get(i).copied().unwrap_or(false) {
            continue;
        }
        if let Some(event) = meters.get_mut(i).and_then(|m| m.record_miss(device_delivered)) {
            events.push((i, event));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_error_sets_text_code_and_params_together_and_data_clears_them() {
        let mut s = CommStatus::new("tcp x".into(), 10);
        let timeout = CommError::new(ErrorCode::Timeout, "no reply within 3s").with("ms", 3000);
        s.record_failure(Timestamp(1), false, &timeout);
        assert_eq!(s.link, LinkState::Down);
        assert_eq!(s.last_error.as_deref(), Some("no reply within 3s"));
        assert_eq!(s.last_error_code, Some(ErrorCode::Timeout));
        assert_eq!(s.last_error_params.as_ref().and_then(|p| p.get("ms")), Some(&ErrorParam::Number(3000)));
        // A missed cycle keeps the typed error; an untyped text never shows under an old code.
        let outcome = CycleOutcome { read: 0, expected: 10, error: Some(timeout.text.clone()) };
        s.end_cycle_with(&outcome, Some(&timeout));
        assert_eq!(s.last_error_code, Some(ErrorCode::Timeout));
        s.record_attempt(Timestamp(2), false, Some("something else".into()));
        assert_eq!((s.last_error.as_deref(), s.last_error_code), (Some("something else"), None));
        s.record_failure(Timestamp(3), true, &CommError::new(ErrorCode::Exception, "exception 0x02").with("code", 2));
        s.record_values(Timestamp(4), 1);
        assert_eq!((s.last_error.clone(), s.last_error_code, s.last_error_params.clone()), (None, None, None));
        let meter = CommError::new(ErrorCode::ConnectionClosed, "connection closed by device").of_meter("M1");
        assert_eq!(meter.text, "meter M1: connection closed by device");
        assert_eq!(meter.params.get("meter"), Some(&ErrorParam::Text("M1".into())));
    }

    fn miss() -> CycleOutcome {
        CycleOutcome { read: 0, expected: 10, error: Some("no reply within 1s".into()) }
    }

    #[test]
    fn two_missed_cycles_make_comm_lost_and_data_restores() {
        let mut s = CommStatus::new("tcp x".into(), 10);
        s.begin_cycle(10);
        assert_eq!(s.end_cycle(&miss()), None);
        assert_eq!(s.consecutive_misses, 1);
        assert!(!s.comm_lost);
        s.begin_cycle(10);
        assert_eq!(s.end_cycle(&miss()), Some(CommEvent::Lost { misses: 2 }));
        assert!(s.comm_lost);
        // A third miss raises nothing new.
        assert_eq!(s.end_cycle(&miss()), None);
        assert_eq!(s.consecutive_misses, 3);
        s.begin_cycle(10);
        assert_eq!(s.record_values(Timestamp(5), 4), Some(CommEvent::Restored { after_misses: 3 }));
        assert!(!s.comm_lost);
        assert_eq!(s.consecutive_misses, 0);
        assert_eq!(s.last_success, Some(Timestamp(5)));
        assert_eq!(s.cycle_read, 4);
    }

    #[test]
    fn a_partial_cycle_is_not_a_miss() {
        let mut s = CommStatus::new("tcp x".into(), 10);
        s.begin_cycle(10);
        s.record_values(Timestamp(1), 3);
        assert_eq!(s.end_cycle(&CycleOutcome { read: 3, expected: 10, error: Some("timeout".into()) }), None);
        assert_eq!(s.consecutive_misses, 0);
    }

    #[test]
    fn one_miss_between_successes_never_alarms() {
        let mut s = CommStatus::new("tcp x".into(), 1);
        for _ in 0..5 {
            s.begin_cycle(1);
            assert_eq!(s.end_cycle(&miss()), None);
            s.begin_cycle(1);
            assert_eq!(s.record_values(Timestamp(1), 1), None);
            assert_eq!(s.end_cycle(&CycleOutcome { read: 1, expected: 1, error: None }), None);
        }
        assert!(!s.comm_lost);
    }

    #[test]
    fn a_meter_missing_two_cycles_of_a_live_device_is_lost_and_data_restores_it() {
        let mut m = MeterComm::default();
        assert_eq!(m.record_miss(true), None);
        assert_eq!((m.consecutive_misses, m.unread_cycles, m.comm_lost), (1, 1, false));
        assert_eq!(m.record_miss(true), Some(CommEvent::Lost { misses: 2 }));
        assert!(m.comm_lost);
        // Reported once.
        assert_eq!(m.record_miss(true), None);
        assert_eq!(m.record_read(Timestamp(9)), Some(CommEvent::Restored { after_misses: 3 }));
        assert!(m.is_clean());
        assert_eq!(m.last_success, Some(Timestamp(9)));
        // An older commit time never moves the last success back.
        assert_eq!(m.record_read(Timestamp(4)), None);
        assert_eq!(m.last_success, Some(Timestamp(9)));
    }

    #[test]
    fn a_dark_device_does_not_make_its_meters_lost_but_they_show_unread() {
        let mut meters = vec![MeterComm::default(); 144];
        for _ in 0..5 {
            assert_eq!(meters_end_cycle(&mut meters, 0..144, &[], false), Vec::new());
        }
        assert!(meters.iter().all(|m| !m.comm_lost && m.consecutive_misses == 0 && m.unread_cycles == 5));
        // The device is back: every meter but 7 answers; 7 needs two misses of its own to be lost.
        let mut read = vec![true; 144];
        read[7] = false;
        for (i, m) in meters.iter_mut().enumerate() {
            if read[i] {
                m.record_read(Timestamp(1));
            }
        }
        assert_eq!(meters_end_cycle(&mut meters, 0..144, &read, true), Vec::new());
        assert_eq!((meters[7].consecutive_misses, meters[7].unread_cycles), (1, 6));
        assert_eq!(meters_end_cycle(&mut meters, 0..144, &read, true), vec![(7, CommEvent::Lost { misses: 2 })]);
        assert!(meters.iter().enumerate().all(|(i, m)| m.comm_lost == (i == 7)));
    }

    #[test]
    fn a_lost_meter_stays_lost_without_a_new_event_while_its_device_is_dark() {
        let mut m = MeterComm { consecutive_misses: 2, unread_cycles: 2, comm_lost: true, last_success: None };
        assert_eq!(m.record_miss(false), None);
        assert_eq!(m.record_miss(true), None);
        assert!(m.comm_lost);
        assert_eq!(m.consecutive_misses, 3);
    }

    #[test]
    fn meters_not_expected_this_cycle_are_untouched() {
        let mut meters = vec![MeterComm::default(); 3];
        meters_end_cycle(&mut meters, [1], &[], true);
        assert_eq!(meters.iter().map(|m| m.unread_cycles).collect::<Vec<_>>(), vec![0, 1, 0]);
    }
}
