//! Rebuilding a device's live state from the store after a (re)start, the same way for every kind of device
//! actor and for the live hub, so that both show the same thing. A store error is logged and the device starts
//! fresh for that part: a restart never fails on history.

use crate::model::{CommStatus, DeviceId, LinkState, MeterComm, MeterId, MeterView, ParameterView, ValveStatus};
use crate::store::FieldStore;

/// The last saved comm status of a device, or a fresh one. The link state before a restart is not known now;
/// the path and the values expected per cycle are today's configuration.
pub fn comm(store: &dyn FieldStore, device: &DeviceId, path: String, expected: u32) -> CommStatus {
    let mut comm = match store.device_status(device) {
        Ok(Some(saved)) => saved,
        Ok(None) => CommStatus::new(path.clone(), expected),
        Err(e) => {
            tracing::warn!(message = "Cannot load device status; starting fresh.", device = %device, error = %e);
            CommStatus::new(path.clone(), expected)
        }
    };
    comm.link = LinkState::Unknown;
    comm.path = path;
    comm.cycle_expected = expected;
    comm.cycle_read = comm.cycle_read.min(expected);
    comm
}

/// A valve's last stored state, last command and latched fault, or a fresh status (issue 7 §5).
pub fn valve(store: &dyn FieldStore, device: &DeviceId) -> ValveStatus {
    match store.valve_status(device) {
        Ok(Some(saved)) => saved,
        Ok(None) => ValveStatus::default(),
        Err(e) => {
            tracing::warn!(message = "Cannot load valve status; starting fresh.", device = %device, error = %e);
            ValveStatus::default()
        }
    }
}

/// A view per meter with its latest stored reading.
pub fn meters<'a>(store: &dyn FieldStore, ids: impl IntoIterator<Item = &'a MeterId>) -> Vec<MeterView> {
    ids.into_iter()
        .map(|id| {
            let mut view = MeterView::empty(id.clone());
            match store.latest_reading(id) {
                Ok(Some((ts, volume, status))) => view.set(volume, ts, status),
                Ok(None) => {}
                Err(e) => tracing::warn!(message = "Cannot load latest reading.", meter = %id, error = %e),
            }
            view
        })
        .collect()
}

/// Each meter's comm status (issue 7 §4), in the order of `views`, which it also updates: the saved status of
/// the meters that were not read in their last cycle or are comm-lost, and for the others a clean status whose
/// last success is their latest reading's time.
pub fn meter_comm(store: &dyn FieldStore, device: &DeviceId, views: &mut [MeterView]) -> Vec<MeterComm> {
    let saved = store.meter_comm(device).unwrap_or_else(|e| {
        tracing::warn!(message = "Cannot load meter status; starting fresh.", device = %device, error = %e);
        Vec::new()
    });
    views
        .iter_mut()
        .map(|view| {
            let comm = saved
                .iter()
                .find(|(id, _)| *id == view.id)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| MeterComm { last_success: view.ts, ..MeterComm::default() });
            view.set_comm(&comm);
            comm
        })
        .collect()
}

/// The meters of a device worth saving: those that are not clean, with their ids.
pub fn unclean_meters<'a>(ids: impl IntoIterator<Item = &'a MeterId>, comm: &[MeterComm]) -> Vec<(MeterId, MeterComm)> {
    ids.into_iter().zip(comm).filter(|(_, c)| !c.is_clean()).map(|(id, c)| (id.clone(), c.clone())).collect()
}

/// A water-quality parameter's view with its latest stored sample.
pub fn parameter(
    store: &dyn FieldStore,
    device: &DeviceId,
    name: &str,
    unit: &str,
    low: Option<f64>,
    high: Option<f64>,
) -> ParameterView {
    let mut view = ParameterView {
        param: name.to_owned(),
        value: None,
        unit: unit.to_owned(),
        low,
        high,
        ts: None,
        flags: Vec::new(),
    };
    match store.latest_sample(device, name) {
        Ok(Some((ts, value, flags))) => view.set(value, ts, flags),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(message = "Cannot load latest sample.", device = %device, parameter = name, error = %e)
        }
    }
    view
}
