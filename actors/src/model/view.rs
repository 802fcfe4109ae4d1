//! Live views: what the HMI and the JSON API show of a device, and the events on the live stream.
//! These types serialise to the wire format documented in ARCHITECTURE.md ("Live stream").

use serde::Serialize;

use super::comm::CommStatus;
use super::ids::{DeviceId, MeterId, RegionId};
use super::reading::{MeterStatus, QualityFlags, Timestamp, Volume};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Concentrator,
    Logger,
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
}

impl MeterView {
    pub fn empty(id: MeterId) -> MeterView {
        MeterView { id, volume_m3: None, ts: None, status: Vec::new() }
    }

    pub fn set(&mut self, volume: Volume, ts: Timestamp, status: MeterStatus) {
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
    pub fn set(&mut self, value: f64, ts: Timestamp, flags: QualityFlags) {
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
