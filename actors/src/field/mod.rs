//! Field device actors: one per concentrator and per water-quality data logger (the design card).
//!
//! - [`spec`]: what a device is, resolved from configuration by `src/` (no file format here).
//! - [`plan`]: pure read planning and decoding: which registers to read for which due values, and what the
//!   words mean.
//! - [`device`]: the actor: polls on its cycle, retries, commits, reports status and views.

pub mod device;
pub mod plan;
pub mod spec;

pub use device::{initial_view, FieldDevice, FieldDeviceArgs, FieldMsg};
pub use spec::{
    ConcentratorSpec, DeviceKindSpec, DeviceSpec, FieldLayout, LoggerSpec, MeterLayout, MeterSpec, NoDataMarker,
    ParameterSpec,
};
