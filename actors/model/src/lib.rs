//! The pure domain model: identifiers, units, readings, communication status, live views, users, and the
//! water-quality tables (limits by site type, default cycles, HJ 212 factor codes).
//!
//! **Invariant:** nothing here does I/O, imports tokio or ractor, or reads the clock. This is a crate of its
//! own (`waterworks-model`) so that the compiler keeps it so: its only dependencies are std, serde,
//! rust_decimal and error derives, and `tests/dependency_rules.rs` fails if that changes. Time is passed in as a
//! [`Timestamp`]; actors turn messages into calls on this model and its results into I/O.

pub mod alarm;
pub mod comm;
pub mod ids;
pub mod link;
pub mod notify;
pub mod quality;
pub mod reading;
pub mod usage;
pub mod user;
pub mod valve;
pub mod view;
pub mod volume_check;

pub use alarm::{
    Alarm, AlarmClass, AlarmKey, AlarmState, AnalogConfig, AnalogLimits, AnalogState, JournalRecord, Level,
    LifecycleError, Priority, Transition,
};
pub use comm::{
    meters_end_cycle, CommError, CommEvent, CommStatus, CycleOutcome, ErrorCode, ErrorParam, ErrorParams, LinkState,
    MeterComm,
};
pub use ids::{DeviceId, MeterId, RegionId};
pub use link::{LinkSelector, PathSwitch, SwitchReason};
pub use quality::{default_cycle, default_limits, hj212_factor, Hj212Factor, Limits, SiteType};
pub use reading::{
    MeterReading, MeterStatus, QualityFlags, QualitySample, TimePlausibility, TimeVerdict, Timestamp, Volume,
};
pub use usage::{
    bucket_usage, leakage_rate, night_flow, usage_between, AbnormalRule, AbnormalVerdict, BucketUsage, UsagePoint,
    UsageRules,
};
pub use user::{Role, Totp, UserRecord};
pub use valve::{
    CommandRecord, CommandResult, FaultChange, FaultClearing, LatchedFault, Reported, ResetRecord, ResetRefused,
    ValveAction, ValveState, ValveStatus, ValveView,
};
pub use view::{region_status, DeviceKind, DeviceView, LiveEvent, MeterView, ParameterView, RegionStatus, RegionView};
pub use volume_check::{VolumeLimits, VolumeVerdict};
