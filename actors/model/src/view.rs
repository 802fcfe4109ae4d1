//! Live views: what the HMI and the JSON API show of a device, and the events on the live stream.
//! These types serialise to the wire format documented in ARCHITECTURE.md ("Live stream").

use serde::Serialize;

use super::comm::{CommStatus, MeterComm};
use super::ids::{DeviceId, MeterId, RegionId};
use super::reading::{MeterStatus, QualityFlags, Timestamp, Volume};
use super::valve::ValveState;

/// What a device is, as the live stream's `kind` says it (ARCHITECTURE.md "The live stream"). The first three
/// values are as old as the stream; the others came with issue 7 §7, when gateways, serial lines, MQTT groups
/// and HJ 212 stations stopped being shown as concentrators or loggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A Modbus meter concentrator (TCP or on an RS-485 line).
    Concentrator,
    /// A Modbus water-quality data logger.
    Logger,
    /// A remote valve (Modbus registers, or a CJ/T 188 valve meter).
    Valve,
    /// A CJ/T 188 transparent gateway over TCP, with the meters read through it.
    Cjt188Gateway,
    /// CJ/T 188 meters on a serial line (M-Bus or RS-485) the server drives itself.
    Cjt188Line,
    /// A group of meters that publish over MQTT (NB-IoT, say).
    MqttGroup,
    /// A water-quality station that pushes HJ 212-2017 data.
    Hj212Station,
}

impl DeviceKind {
    /// Whether the device's view lists meters (`meters`) rather than water-quality values (`values`).
    pub fn has_meters(self) -> bool {
        matches!(self, Self::Concentrator | Self::Cjt188Gateway | Self::Cjt188Line | Self::MqttGroup)
    }
}

/// A region as listed in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegionView {
    pub id: RegionId,
    pub name: String,
}

/// The latest reading of one meter.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeterView {
    pub id: MeterId,
    /// m³ with three decimals, as a string so no float rounding touches it.
    pub volume_m3: Option<String>,
    pub ts: Option<Timestamp>,
    pub status: Vec<&'static str>,
    /// The meter is comm-lost on its own (its device delivers data, but not this meter's; issue 7 §4).
    pub comm_lost: bool,
    /// When the meter's data was last committed.
    pub last_success: Option<Timestamp>,
    /// Cycles in a row without this meter's data, whatever the cause: above zero, the meter is not being read
    /// (also while its device is comm-lost, which is reported for the device, not per meter).
    pub missed_cycles: u32,
}

impl MeterView {
    pub fn empty(id: MeterId) -> MeterView {
        MeterView {
            id,
            volume_m3: None,
            ts: None,
            status: Vec::new(),
            comm_lost: false,
            last_success: None,
            missed_cycles: 0,
        }
    }

    /// Shows the meter's communication status.
    pub fn set_comm(&mut self, comm: &MeterComm) {
        self.comm_lost = comm.comm_lost;
        self.last_success = comm.last_success;
        self.missed_cycles = comm.unread_cycles;
    }

    /// Shows a committed reading as the meter's current value, unless its time is implausible (flagged
    /// `time_future` or `time_stale`): such a reading is stored, never current.
    pub fn set(&mut self, volume: Volume, ts: Timestamp, status: MeterStatus) {
        if status.time_implausible() {
            return;
        }
        self.volume_m3 = Some(volume.to_string());
        self.ts = Some(ts);
        self.status = status.names();
    }
}

/// The latest sample of one water-quality parameter beside its limits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParameterView {
    pub param: String,
    pub value: Option<f64>,
    pub unit: String,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub ts: Option<Timestamp>,
    pub flags: Vec<&'static str>,
}

impl ParameterView {
    /// Shows a committed sample as the parameter's current value, unless its time is implausible.
    pub fn set(&mut self, value: f64, ts: Timestamp, flags: QualityFlags) {
        if flags.time_implausible() {
            return;
        }
        self.value = Some(value);
        self.ts = Some(ts);
        self.flags = flags.names();
    }
}

/// Everything the HMI shows about one device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceView {
    pub id: DeviceId,
    pub kind: DeviceKind,
    pub name: String,
    pub region: RegionId,
    pub comm: CommView,
    pub meters: Vec<MeterView>,
    pub values: Vec<ParameterView>,
    /// Present for valves only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valve: Option<crate::valve::ValveView>,
}

/// Communication status with the cycle length, as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommView {
    #[serde(flatten)]
    pub status: CommStatus,
    pub cycle_ms: u64,
}

/// A fact on the live stream (and the event bus).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub device: Option<DeviceId>,
    pub region: Option<RegionId>,
    pub ts: Timestamp,
    pub message: String,
}

/// Collection progress and communication status of one region (R-A3): what duty staff see per village.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegionStatus {
    pub id: RegionId,
    pub name: String,
    pub devices: usize,
    pub comm_lost: usize,
    pub link_down: usize,
    /// Valves in fault (latched by a command, or reported by the valve) (issue 7 §5).
    pub valve_fault: usize,
    /// Values read in the devices' current cycles, of those expected.
    pub cycle_read: u32,
    pub cycle_expected: u32,
    /// The most recent success of any device in the region.
    pub last_success: Option<Timestamp>,
}

/// Sums device status per region, in region order. Devices of an unknown region are not counted.
pub fn region_status(regions: &[RegionView], devices: &[DeviceView]) -> Vec<RegionStatus> {
    regions
        .iter()
        .map(|r| {
            let mine = devices.iter().filter(|d| d.region == r.id);
            let mut s = RegionStatus {
                id: r.id.clone(),
                name: r.name.clone(),
                devices: 0,
                comm_lost: 0,
                link_down: 0,
                valve_fault: 0,
                cycle_read: 0,
                cycle_expected: 0,
                last_success: None,
            };
            for d in mine {
                let c = &d.comm.status;
                s.devices += 1;
                s.comm_lost += usize::from(c.comm_lost);
                s.link_down += usize::from(c.link == super::comm::LinkState::Down);
                s.valve_fault += usize::from(d.valve.as_ref().is_some_and(|v| v.state == ValveState::Fault));
                s.cycle_read += c.cycle_read.min(c.cycle_expected);
                s.cycle_expected += c.cycle_expected;
                s.last_success = s.last_success.max(c.last_success);
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::{CommStatus, LinkState};

    fn device(id: &str, region: &str, read: u32, expected: u32, lost: bool, success: Option<i64>) -> DeviceView {
        let mut status = CommStatus::new("tcp x".into(), expected);
        status.cycle_read = read;
        status.comm_lost = lost;
        status.link = if lost { LinkState::Down } else { LinkState::Up };
        status.last_success = success.map(Timestamp);
        DeviceView {
            id: DeviceId::new(id),
            kind: DeviceKind::Concentrator,
            name: id.into(),
            region: RegionId::new(region),
            comm: CommView { status, cycle_ms: 1000 },
            meters: Vec::new(),
            values: Vec::new(),
            valve: None,
        }
    }

    #[test]
    fn devices_with_meters_are_told_from_those_with_values() {
        let meters =
            [DeviceKind::Concentrator, DeviceKind::Cjt188Gateway, DeviceKind::Cjt188Line, DeviceKind::MqttGroup];
        let others = [DeviceKind::Logger, DeviceKind::Valve, DeviceKind::Hj212Station];
        assert!(meters.iter().all(|k| k.has_meters()) && !others.iter().any(|k| k.has_meters()));
    }

    #[test]
    fn regions_sum_their_devices() {
        let regions = [
            RegionView { id: RegionId::new("e"), name: "东村".into() },
            RegionView { id: RegionId::new("w"), name: "西村".into() },
        ];
        let devices = [
            device("a", "e", 40, 40, false, Some(10)),
            device("b", "e", 0, 36, true, Some(5)),
            device("c", "w", 3, 5, false, None),
            device("x", "nowhere", 1, 1, false, Some(99)),
        ];
        let s = region_status(&regions, &devices);
        assert_eq!(
            (s[0].devices, s[0].comm_lost, s[0].link_down, s[0].cycle_read, s[0].cycle_expected),
            (2, 1, 1, 40, 76)
        );
        assert_eq!(s[0].last_success, Some(Timestamp(10)));
        assert_eq!(
            (s[1].devices, s[1].comm_lost, s[1].cycle_read, s[1].cycle_expected, s[1].last_success),
            (1, 0, 3, 5, None)
        );
        assert_eq!((s[0].valve_fault, s[1].valve_fault), (0, 0));
    }

    #[test]
    fn a_valve_in_fault_counts_in_its_region() {
        let regions = [RegionView { id: RegionId::new("w"), name: "西村".into() }];
        let valve = |id: &str, state: ValveState| {
            let mut d = device(id, "w", 1, 1, false, Some(1));
            d.kind = DeviceKind::Valve;
            d.valve = Some(crate::valve::ValveView { state, last_command: None, fault: None });
            d
        };
        let devices = [valve("v1", ValveState::Fault), valve("v2", ValveState::Open), valve("v3", ValveState::Fault)];
        let s = region_status(&regions, &devices);
        assert_eq!((s[0].devices, s[0].valve_fault), (3, 2));
    }

    #[test]
    fn implausibly_dated_values_are_never_current() {
        let mut meter = MeterView::empty(MeterId::new("m1"));
        meter.set(Volume::from_litres(1_000), Timestamp(10), MeterStatus(0));
        let future = MeterStatus(0).with_time(crate::reading::TimeVerdict::Future);
        meter.set(Volume::from_litres(9_000), Timestamp(99), future);
        assert_eq!((meter.volume_m3.as_deref(), meter.ts), (Some("1.000"), Some(Timestamp(10))));
        let mut value = ParameterView {
            param: "ph".into(),
            value: None,
            unit: String::new(),
            low: None,
            high: None,
            ts: None,
            flags: Vec::new(),
        };
        value.set(7.0, Timestamp(5), QualityFlags(0).with_time(crate::reading::TimeVerdict::Stale));
        assert_eq!(value.value, None);
        value.set(7.2, Timestamp(6), QualityFlags(0));
        assert_eq!(value.value, Some(7.2));
    }
}
