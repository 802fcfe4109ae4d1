//! [`AlarmSettingsApi`]: the alarm settings as administrators see and change them at runtime (issue 9 §5):
//! read by every role that sees alarms, replaced whole by an administrator. A new version is checked like the
//! configuration's `[alarms]` (the same [`AlarmSettings::problems`], plus: only configured devices), stored
//! with its audit entry in one submission (old → new), and only then put in force: the engine reads it at its
//! next batch, no restart.
//!
//! What it deliberately does not do: speak HTTP, or evaluate alarms.

use std::collections::HashSet;
use std::sync::Arc;

use super::{ApiError, HandleParts};
use crate::alarms::{AlarmSettings, SharedSettings};
use crate::clock::SharedClock;
use crate::model::{DeviceId, Role};
use crate::store::{AuditEntry, Op, StoreHandle};

/// The most problems one refusal lists.
const MAX_PROBLEMS: usize = 20;
/// The most characters of each of the old and the new settings in the audit entry.
const MAX_AUDIT_CHARS: usize = 4000;

/// The alarm settings' handle. Cheap to clone.
#[derive(Clone)]
pub struct AlarmSettingsApi {
    settings: SharedSettings,
    writer: StoreHandle,
    clock: SharedClock,
    devices: Arc<HashSet<DeviceId>>,
    /// One change at a time, so each audit entry's "old" is what the change replaced.
    changing: Arc<tokio::sync::Mutex<()>>,
}

impl AlarmSettingsApi {
    pub(crate) fn new(parts: &HandleParts) -> AlarmSettingsApi {
        let devices = (parts.devices.iter().map(|d| d.id.clone()))
            .chain(parts.stations.iter().map(|s| s.id.clone()))
            .chain(parts.valves.iter().map(|v| v.id.clone()))
            .chain(parts.gateways.iter().map(|g| g.id.clone()))
            .chain(parts.groups.iter().map(|g| g.id.clone()))
            .collect();
        AlarmSettingsApi::with(parts.alarm_settings.clone(), parts.writer.clone(), parts.clock.clone(), devices)
    }

    pub(crate) fn with(
        settings: SharedSettings,
        writer: StoreHandle,
        clock: SharedClock,
        devices: HashSet<DeviceId>,
    ) -> AlarmSettingsApi {
        AlarmSettingsApi { settings, writer, clock, devices: Arc::new(devices), changing: Arc::default() }
    }

    /// The settings in force.
    pub fn get(&self) -> Arc<AlarmSettings> {
        self.settings.get()
    }

    /// An administrator replaces the settings. `BadRequest` lists what is wrong (each with its key); nothing
    /// changes then. Audited (`alarm_settings.change`, old → new), refusals too.
    pub async fn put(&self, new: AlarmSettings, by: &str, role: Role) -> Result<Arc<AlarmSettings>, ApiError> {
        let _one = self.changing.lock().await;
        let at = self.clock.now();
        let audit = |detail: String, ok: bool| AuditEntry {
            ts: at,
            actor: by.to_owned(),
            action: "alarm_settings.change".into(),
            target: "alarm-settings".into(),
            detail,
            ok,
        };
        if role != Role::Admin {
            let entry = audit(format!("refused: the {} role may not", role.as_str()), false);
            self.writer.submit(vec![Op::Audit(entry)]).await?;
            return Err(ApiError::Forbidden(format!("the {} role may not change alarm settings", role.as_str())));
        }
        let problems = new.problems(|d| self.devices.contains(d));
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().take(MAX_PROBLEMS).map(|(k, p)| format!("{k}: {p}")).collect();
            let text = text.join("; ");
            self.writer.submit(vec![Op::Audit(audit(format!("refused: {text}"), false))]).await?;
            return Err(ApiError::BadRequest(text));
        }
        let old = self.settings.get();
        let json = |s: &AlarmSettings| {
            let text = serde_json::to_string(s).unwrap_or_default();
            let mut cut: String = text.chars().take(MAX_AUDIT_CHARS).collect();
            if cut.len() < text.len() {
                cut.push('…');
            }
            cut
        };
        let entry = audit(format!("{} -> {}", json(&old), json(&new)), true);
        self.writer.submit(vec![Op::AlarmSettings(Box::new(new.clone())), Op::Audit(entry)]).await?;
        tracing::info!(message = "Alarm settings changed.", by);
        self.settings.set(new);
        Ok(self.settings.get())
    }
}
