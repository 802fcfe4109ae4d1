//! One simulated CJ/T 188 water meter with a valve: its volume, its valve, and its answer to a request frame.
//!
//! Pure: time comes in as an argument (elapsed time since the simulator started, and the meter clock's
//! reading), and nothing here touches a socket or a clock. The volume is the initial reading plus a constant
//! flow times the total time the valve has been open, computed in whole milliseconds, so it never depends
//! on how often the meter is read. It deliberately does not model daily profiles (the Modbus concentrator
//! simulator does), valve travel time, leaks or reverse flow.

use std::time::Duration;

use drivers::calendar::Zone;
use drivers::cjt188::frame::{Address, Control, Frame, MeterType};
use drivers::cjt188::payload::{
    metering_reply_data, parse_metering_request, parse_valve_request, split_header, valve_reply_data, DiOrder, Reading,
    StBits, ValveState, Volume, VolumeUnit,
};

/// A meter's configuration; see `SimMeterSpec` for the meaning of each field.
#[derive(Debug, Clone)]
pub(crate) struct MeterState {
    pub(crate) address: Address,
    meter_type: MeterType,
    initial: Volume,
    flow_ml_per_s: u64,
    unit: VolumeUnit,
    pub(crate) valve_open: bool,
    pub(crate) stuck: bool,
    battery_low: bool,
    magnetic_tamper: bool,
    reply_di_order: Option<DiOrder>,
    /// Total time the valve was open up to `updated`.
    open_for: Duration,
    /// The elapsed simulator time `open_for` was summed to; it only moves forward.
    updated: Duration,
}

/// What a meter makes of a request addressed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The meter replies with this frame.
    Reply(Frame),
    /// A master's frame the meter does not answer (it is a reply, not a request).
    Ignore,
}

impl MeterState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        address: Address,
        meter_type: MeterType,
        initial: Volume,
        flow_ml_per_s: u64,
        unit: VolumeUnit,
        valve_open: bool,
        stuck: bool,
        battery_low: bool,
        magnetic_tamper: bool,
        reply_di_order: Option<DiOrder>,
    ) -> Self {
        MeterState {
            address,
            meter_type,
            initial,
            flow_ml_per_s,
            unit,
            valve_open,
            stuck,
            battery_low,
            magnetic_tamper,
            reply_di_order,
            open_for: Duration::ZERO,
            updated: Duration::ZERO,
        }
    }

    /// Sums the open time up to `elapsed` (an earlier `elapsed` counts as the latest seen).
    fn advance(&mut self, elapsed: Duration) {
        if elapsed > self.updated {
            if self.valve_open {
                self.open_for += elapsed - self.updated;
            }
            self.updated = elapsed;
        }
    }

    /// The true volume at `elapsed` simulator time.
    pub(crate) fn volume(&mut self, elapsed: Duration) -> Volume {
        self.advance(elapsed);
        let added = u128::from(self.flow_ml_per_s) * self.open_for.as_millis() / 1000;
        let added = u64::try_from(added).unwrap_or(u64::MAX);
        Volume::from_millilitres(self.initial.millilitres().saturating_add(added))
    }

    fn status(&self, st_bits: &StBits) -> u16 {
        let valve = if self.valve_open { ValveState::Open } else { ValveState::Closed };
        st_bits.encode(valve, self.battery_low, self.magnetic_tamper, false)
    }

    /// The DI bytes to reply with for a request that sent `sent`.
    fn reply_di(&self, sent: [u8; 2], di: u16) -> [u8; 2] {
        self.reply_di_order.map_or(sent, |order| order.bytes(di))
    }

    fn reply(&self, function: u8, data: Vec<u8>) -> Answer {
        Answer::Reply(Frame {
            meter_type: self.meter_type,
            address: self.address,
            control: Control::reply(function),
            data,
        })
    }

    /// An abnormal reply in KingDa's layout: SER and ST.
    fn abnormal(&self, function: u8, serial: u8, st_bits: &StBits) -> Answer {
        let [st1, st2] = self.status(st_bits).to_le_bytes();
        Answer::Reply(Frame {
            meter_type: self.meter_type,
            address: self.address,
            control: Control::abnormal_reply(function),
            data: vec![serial, st1, st2],
        })
    }

    /// Answers `request` at `elapsed` simulator time with the meter clock showing `clock` (BCD, CJ/T 188
    /// order). With `abnormal`, every request gets an abnormal reply (the fault of that name).
    pub(crate) fn answer(
        &mut self,
        request: &Frame,
        elapsed: Duration,
        clock: [u8; 7],
        st_bits: &StBits,
        abnormal: bool,
    ) -> Answer {
        if request.control.is_reply() {
            return Answer::Ignore;
        }
        let function = request.control.function();
        let serial = split_header(&request.data).map(|(_, serial, _)| serial).unwrap_or(0);
        if abnormal {
            return self.abnormal(function, serial, st_bits);
        }
        match function {
            Control::READ_DATA => match parse_metering_request(&request.data) {
                Ok((di, serial)) => {
                    let current = Reading { volume: self.volume(elapsed), unit: self.unit };
                    let settlement = Reading { volume: self.initial, unit: self.unit };
                    let di = self.reply_di(di, drivers::cjt188::payload::DI_METERING);
                    let data = metering_reply_data(di, serial, current, settlement, clock, self.status(st_bits));
                    self.reply(function, data)
                }
                Err(_) => self.abnormal(function, serial, st_bits),
            },
            Control::WRITE_DATA => match parse_valve_request(&request.data) {
                Ok((serial, open)) => {
                    // Sum the flow up to now under the old valve state before changing it.
                    self.advance(elapsed);
                    if !self.stuck {
                        self.valve_open = open;
                    }
                    let di = split_header(&request.data).map(|(di, _, _)| di).unwrap_or([0xA0, 0x17]);
                    let di = self.reply_di(di, drivers::cjt188::payload::DI_VALVE);
                    self.reply(function, valve_reply_data(di, serial, self.status(st_bits)))
                }
                Err(_) => self.abnormal(function, serial, st_bits),
            },
            _ => self.abnormal(function, serial, st_bits),
        }
    }
}

/// The meter clock's seven BCD bytes (`ss mm hh DD MM YY YY`) for `unix_seconds`, in China Standard Time.
pub(crate) fn clock_bytes(unix_seconds: i64) -> [u8; 7] {
    let china = Zone::fixed_minutes(8 * 60).unwrap_or_else(Zone::utc);
    let t = china.to_local(unix_seconds.saturating_mul(1000));
    let bcd = |v: i64| {
        let v = v.rem_euclid(100) as u8;
        ((v / 10) << 4) | (v % 10)
    };
    [bcd(t.second), bcd(t.minute), bcd(t.hour), bcd(t.day), bcd(t.month), bcd(t.year % 100), bcd(t.year / 100)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use drivers::cjt188::payload::{parse_metering_reply, parse_valve_reply, read_metering_request, valve_request};
    use drivers::cjt188::payload::{Cjt188Model, MeterTime};

    fn meter(open: bool, stuck: bool) -> MeterState {
        let address = "00000000000001".parse().unwrap_or(Address::WILDCARD);
        MeterState::new(
            address,
            MeterType::COLD_WATER,
            Volume::from_millilitres(1_000_000),
            500,
            VolumeUnit::Litre,
            open,
            stuck,
            false,
            false,
            None,
        )
    }

    fn reply(answer: Answer) -> Frame {
        match answer {
            Answer::Reply(frame) => frame,
            Answer::Ignore => panic!("the meter ignored the request"),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn volume_runs_only_while_the_valve_is_open() {
        let mut m = meter(true, false);
        assert_eq!(m.volume(Duration::from_millis(2500)).millilitres(), 1_001_250);
        assert_eq!(m.volume(SECOND).millilitres(), 1_001_250, "time never runs backwards");
        let model = Cjt188Model::default();
        let close = valve_request(&model, m.address, 1, false);
        let got = reply(m.answer(&close, 3 * SECOND, [0; 7], &StBits::STANDARD, false));
        assert_eq!(parse_valve_reply(&got.data, &StBits::STANDARD).map(|(_, s)| s.valve), Ok(ValveState::Closed));
        assert_eq!(m.volume(10 * SECOND).millilitres(), 1_001_500, "closed after 3 s");
    }

    #[test]
    fn stuck_valve_never_moves() {
        let mut m = meter(true, true);
        let model = Cjt188Model::default();
        let close = valve_request(&model, m.address, 1, false);
        let got = reply(m.answer(&close, SECOND, [0; 7], &StBits::STANDARD, false));
        assert_eq!(parse_valve_reply(&got.data, &StBits::STANDARD).map(|(_, s)| s.valve), Ok(ValveState::Open));
        assert!(m.valve_open);
    }

    #[test]
    fn metering_reply_echoes_di_and_ser() {
        let mut m = meter(true, false);
        let model = Cjt188Model::edition_2018();
        let request = read_metering_request(&model, m.address, 42);
        let clock = clock_bytes(1_772_323_200);
        let got = reply(m.answer(&request, 2 * SECOND, clock, &StBits::STANDARD, false));
        assert_eq!(got.control, Control(0x81));
        assert_eq!(&got.data[..3], &[0x1F, 0x90, 42]);
        let data = parse_metering_reply(&got.data, &StBits::STANDARD).expect("valid reply");
        assert_eq!(data.current.volume.millilitres(), 1_001_000);
        assert_eq!(data.settlement.map(|r| r.volume.millilitres()), Some(1_000_000));
        assert_eq!(data.status.valve, ValveState::Open);
        assert_eq!(data.time.map(|t| t.to_string()).as_deref(), Some("2026-03-01 08:00:00"));
    }

    #[test]
    fn unknown_requests_get_abnormal_replies_and_replies_are_ignored() {
        let mut m = meter(true, false);
        let other_di = Frame {
            meter_type: MeterType::COLD_WATER,
            address: m.address,
            control: Control(0x01),
            data: vec![0x81, 0x0A, 7],
        };
        let got = reply(m.answer(&other_di, SECOND, [0; 7], &StBits::STANDARD, false));
        assert_eq!((got.control, got.data), (Control(0xC1), vec![7, 0, 0]));
        let write_address = Frame { control: Control(0x15), ..other_di.clone() };
        assert_eq!(reply(m.answer(&write_address, SECOND, [0; 7], &StBits::STANDARD, false)).control, Control(0xD5));
        let echo = Frame { control: Control(0x81), ..other_di.clone() };
        assert_eq!(m.answer(&echo, SECOND, [0; 7], &StBits::STANDARD, false), Answer::Ignore);
        let model = Cjt188Model::default();
        let read = read_metering_request(&model, m.address, 9);
        assert_eq!(reply(m.answer(&read, SECOND, [0; 7], &StBits::STANDARD, true)).control, Control(0xC1));
    }

    #[test]
    fn clock_is_china_standard_time() {
        // 2026-03-01 00:00:00 UTC.
        assert_eq!(clock_bytes(1_772_323_200), [0x00, 0x00, 0x08, 0x01, 0x03, 0x26, 0x20]);
        // 1999-12-31 23:59:59 UTC is 2000-01-01 07:59:59 in China.
        assert_eq!(clock_bytes(946_684_799), [0x59, 0x59, 0x07, 0x01, 0x01, 0x00, 0x20]);
        // 2024-02-29 12:00:00 UTC.
        assert_eq!(
            MeterTime::decode(clock_bytes(1_709_208_000)).map(|t| t.to_string()).as_deref(),
            Some("2024-02-29 20:00:00")
        );
    }
}
