//! [`AlarmsApi`]: the alarm domain as the HMI reaches it (issue 9 §2, §5): the standing alarms, the alarm
//! journal, and what people do to alarms: operators acknowledge and shelve, administrators take alarms out
//! of service and back (with a reason). Every action is role-checked here, checked against the alarm's state
//! before it is submitted (a refusal is `Conflict` with the lifecycle's reason), and audited in the same
//! submission as the change (R-G4); refusals are audited too.
//!
//! What it deliberately does not do: raise or clear alarms (the engine does, from the change feed), or
//! speak HTTP (`hmi` does).

use std::sync::Arc;
use std::time::Duration;

use super::{ApiError, HandleParts};
use crate::alarms::kpi::{self, AlarmKpi, AlarmPositions};
use crate::clock::SharedClock;
use crate::model::{Alarm, AlarmKey, JournalRecord, Role, Timestamp};
use crate::store::{AlarmAction, AlarmOp, AlarmStore, AuditEntry, JournalFilter, Op, StoreHandle};

/// The longest comment or reason (characters).
pub const MAX_TEXT_CHARS: usize = 500;
/// The most journal records one query returns.
pub const MAX_JOURNAL: usize = 1000;
/// The longest shelf an operator may set: one shift.
pub const MAX_SHELF_OPERATOR: Duration = Duration::from_secs(8 * 3600);
/// The longest shelf an administrator may set.
pub const MAX_SHELF_ADMIN: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest window the KPIs are computed over.
pub const MAX_KPI_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);
/// Alarm ids are `class~device~detail`; anything longer is no alarm of ours.
const MAX_ID_CHARS: usize = 128;

/// The alarm domain's handle. Cheap to clone.
#[derive(Clone)]
pub struct AlarmsApi {
    store: Arc<dyn AlarmStore>,
    writer: StoreHandle,
    clock: SharedClock,
    /// Operator positions, for the KPIs (issue 9 §3).
    positions: Arc<AlarmPositions>,
}

/// A journal record with its number (for paging with `before`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JournalEntry {
    pub id: u64,
    #[serde(flatten)]
    pub record: JournalRecord,
}

impl AlarmsApi {
    pub(crate) fn new(parts: &HandleParts) -> AlarmsApi {
        let api = AlarmsApi::with(parts.stores.alarms.clone(), parts.writer.clone(), parts.clock.clone());
        AlarmsApi { positions: Arc::new(parts.alarm_positions.clone()), ..api }
    }

    pub(crate) fn with(store: Arc<dyn AlarmStore>, writer: StoreHandle, clock: SharedClock) -> AlarmsApi {
        AlarmsApi { store, writer, clock, positions: Arc::default() }
    }

    /// The alarm KPIs of the `window` that ends now (issue 9 §3), at most [`MAX_KPI_WINDOW`]: rate per
    /// operator position against the ISA-18.2 targets, standing, stale, chattering, frequent, shelved and
    /// out-of-service alarms (`alarms::kpi`).
    pub fn kpi(&self, window: Duration) -> Result<AlarmKpi, ApiError> {
        if window.is_zero() || window > MAX_KPI_WINDOW {
            return Err(ApiError::BadRequest(format!(
                "a KPI window lasts more than 0 and at most {} days",
                MAX_KPI_WINDOW.as_secs() / 86_400
            )));
        }
        let to = self.clock.now();
        let from = Timestamp(to.0 - i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let activity = self.store.alarm_activity(from, to)?;
        let standing = self.store.standing_alarms()?;
        Ok(kpi::compute(&self.positions, &activity, &standing, from, to))
    }

    /// Every standing alarm, most urgent first, then newest first.
    pub fn standing(&self) -> Result<Vec<Alarm>, ApiError> {
        let mut alarms = self.store.standing_alarms()?;
        alarms.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.since.cmp(&a.since)));
        Ok(alarms)
    }

    /// Journal records matching `filter`, newest first, at most `limit` (capped at [`MAX_JOURNAL`]).
    pub fn journal(&self, filter: &JournalFilter, limit: usize) -> Result<Vec<JournalEntry>, ApiError> {
        let records = self.store.alarm_journal(filter, limit.clamp(1, MAX_JOURNAL))?;
        Ok(records.into_iter().map(|(id, record)| JournalEntry { id, record }).collect())
    }

    /// An operator acknowledges an alarm, with an optional comment.
    pub async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        role: Role,
        comment: Option<&str>,
    ) -> Result<JournalRecord, ApiError> {
        let comment = optional_text(comment)?;
        self.act(id, by, role, AlarmAction::Acknowledge { comment }).await
    }

    /// An operator shelves an alarm for `duration` (at most one shift for operators), with an optional reason.
    pub async fn shelve(
        &self,
        id: &str,
        by: &str,
        role: Role,
        duration: Duration,
        reason: Option<&str>,
    ) -> Result<JournalRecord, ApiError> {
        let max = if role == Role::Admin { MAX_SHELF_ADMIN } else { MAX_SHELF_OPERATOR };
        if duration.is_zero() || duration > max {
            return Err(ApiError::BadRequest(format!(
                "a shelf lasts more than 0 and at most {} minutes for the {} role",
                max.as_secs() / 60,
                role.as_str()
            )));
        }
        let reason = optional_text(reason)?;
        let until = self.clock.now().plus_millis(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        self.act(id, by, role, AlarmAction::Shelve { until, reason }).await
    }

    /// An operator takes an alarm off its shelf early.
    pub async fn unshelve(&self, id: &str, by: &str, role: Role) -> Result<JournalRecord, ApiError> {
        self.act(id, by, role, AlarmAction::Unshelve).await
    }

    /// An administrator takes an alarm out of service, with a reason.
    pub async fn remove_from_service(
        &self,
        id: &str,
        by: &str,
        role: Role,
        reason: &str,
    ) -> Result<JournalRecord, ApiError> {
        let reason = optional_text(Some(reason))?
            .ok_or_else(|| ApiError::BadRequest("taking an alarm out of service needs a reason".into()))?;
        self.act(id, by, role, AlarmAction::RemoveFromService { reason }).await
    }

    /// An administrator returns an alarm to service.
    pub async fn return_to_service(&self, id: &str, by: &str, role: Role) -> Result<JournalRecord, ApiError> {
        self.act(id, by, role, AlarmAction::ReturnToService).await
    }

    async fn act(&self, id: &str, by: &str, role: Role, action: AlarmAction) -> Result<JournalRecord, ApiError> {
        let at = self.clock.now();
        let allowed: &[Role] = match action {
            AlarmAction::Acknowledge { .. } | AlarmAction::Shelve { .. } | AlarmAction::Unshelve => {
                &[Role::Admin, Role::Operator]
            }
            AlarmAction::RemoveFromService { .. } | AlarmAction::ReturnToService => &[Role::Admin],
        };
        let target = id.chars().take(MAX_ID_CHARS).collect::<String>();
        if !allowed.contains(&role) {
            self.audit(at, by, &action, &target, &format!("refused: the {} role may not", role.as_str()), false)
                .await?;
            return Err(ApiError::Forbidden(format!("the {} role may not do this to an alarm", role.as_str())));
        }
        let key = (id.chars().count() <= MAX_ID_CHARS).then(|| AlarmKey::parse(id)).flatten();
        let Some(key) = key else { return Err(ApiError::NotFound(format!("no alarm {target:?}"))) };
        let Some(mut alarm) = self.store.alarm(&key)? else {
            return Err(ApiError::NotFound(format!("alarm {id} is not standing")));
        };
        let record = match action.run(&mut alarm, by, at) {
            Ok(record) => record,
            Err(refused) => {
                self.audit(at, by, &action, id, &format!("refused: {refused}"), false).await?;
                return Err(ApiError::Conflict(format!("alarm {id}: {refused}")));
            }
        };
        let detail = format!(
            "{} -> {}{}",
            record.from,
            record.to,
            record.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
        );
        let audit = audit_entry(at, by, &action, id, &detail, true);
        let op = AlarmOp::Action { key: key.clone(), by: by.to_owned(), at, action, audit: Some(audit) };
        // The journal's newest record before the commit: the check below reads only what came after it.
        let head = self.store.alarm_journal(&JournalFilter::default(), 1)?.first().map(|(n, _)| *n);
        self.writer.submit(vec![Op::Alarm(op)]).await?;
        // The commit ran the action again on the alarm as it then stood (the engine may have changed it since
        // the check above) and audited the outcome; the journal says whether it took effect.
        let filter = JournalFilter {
            from: Some(at),
            to: Some(at),
            device: Some(key.device.clone()),
            after: head,
            ..Default::default()
        };
        let done = self
            .store
            .alarm_journal(&filter, MAX_JOURNAL)?
            .into_iter()
            .any(|(_, r)| r.key == key && r.by == by && r.from == record.from && r.to == record.to);
        if !done {
            return Err(ApiError::Conflict(format!("alarm {id} changed before the action took effect; look again")));
        }
        Ok(record)
    }

    async fn audit(
        &self,
        at: Timestamp,
        by: &str,
        action: &AlarmAction,
        target: &str,
        detail: &str,
        ok: bool,
    ) -> Result<(), ApiError> {
        self.writer.submit(vec![Op::Audit(audit_entry(at, by, action, target, detail, ok))]).await?;
        Ok(())
    }
}

fn audit_entry(at: Timestamp, by: &str, action: &AlarmAction, target: &str, detail: &str, ok: bool) -> AuditEntry {
    AuditEntry {
        ts: at,
        actor: by.to_owned(),
        action: action.name().to_owned(),
        target: target.to_owned(),
        detail: detail.to_owned(),
        ok,
    }
}

/// A comment or reason: trimmed, at most [`MAX_TEXT_CHARS`]; empty is none.
fn optional_text(text: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::BadRequest(format!("the text is longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(Some(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use ractor::Actor;

    use super::*;
    use crate::clock::ManualClock;
    use crate::metrics::Metrics;
    use crate::model::{AlarmClass, AlarmState, DeviceId, Priority, RegionId};
    use crate::store::tests::tempdir;
    use crate::store::{Store, StoreWriter, StoreWriterArgs};
    use crate::supervisor::Slot;

    async fn api() -> (AlarmsApi, Store) {
        let store = Store::open(&tempdir()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let args = StoreWriterArgs {
            store: Arc::new(store.clone()),
            metrics: metrics.clone(),
            max_batch_ops: 100,
            events: None,
        };
        let (writer, _) = Actor::spawn(None, StoreWriter, args).await.unwrap();
        let slot = Slot::default();
        slot.set(writer);
        let clock: SharedClock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
        let api = AlarmsApi::with(Arc::new(store.clone()), StoreHandle::new(slot, metrics), clock);
        (api, store)
    }

    fn raise(store: &Store, class: AlarmClass, priority: Priority, at: i64) -> String {
        let key = AlarmKey::new(class, &DeviceId::new("w1"), "chlorine");
        let op = AlarmOp::Condition {
            key: key.clone(),
            region: RegionId::new("r1"),
            priority,
            active: true,
            at: Timestamp(at),
            value: Some(0.1),
            limit: Some(0.3),
        };
        store.apply_one(&[Op::Alarm(op)]).unwrap();
        key.id()
    }

    #[tokio::test]
    async fn operators_acknowledge_and_shelve_admins_take_out_of_service_every_action_audited() {
        let (api, store) = api().await;
        let low = raise(&store, AlarmClass::QualityLow, Priority::High, 10);
        let untrusted = raise(&store, AlarmClass::SensorUntrusted, Priority::Medium, 20);
        let urgent = raise(&store, AlarmClass::QualityLowLow, Priority::Urgent, 5);
        let order: Vec<_> = api.standing().unwrap().into_iter().map(|a| a.key.id()).collect();
        assert_eq!(order, vec![urgent.clone(), low.clone(), untrusted.clone()], "most urgent first");

        // A crew member and a manager may not acknowledge; the refusal is audited and changes nothing.
        for role in [Role::Crew, Role::Manager, Role::Billing] {
            let err = api.acknowledge(&low, "someone", role, None).await.unwrap_err();
            assert!(matches!(err, ApiError::Forbidden(_)), "{role:?}: {err:?}");
        }
        let r = api.acknowledge(&low, "duty1", Role::Operator, Some("  crew sent  ")).await.unwrap();
        assert_eq!(
            (r.from, r.to, r.comment.as_deref()),
            (AlarmState::Unacknowledged, AlarmState::Acknowledged, Some("crew sent"))
        );
        // Twice: the lifecycle refuses, 409, audited.
        let err = api.acknowledge(&low, "duty1", Role::Operator, None).await.unwrap_err();
        assert!(matches!(&err, ApiError::Conflict(m) if m.contains("cannot be acknowledged")), "{err:?}");

        // Shelving is bounded by role.
        let err =
            api.shelve(&untrusted, "duty1", Role::Operator, Duration::from_secs(9 * 3600), None).await.unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
        let r = api
            .shelve(&untrusted, "duty1", Role::Operator, Duration::from_secs(3600), Some("recalibrating"))
            .await
            .unwrap();
        assert_eq!(r.to, AlarmState::Shelved);
        assert_eq!(
            store.alarm(&AlarmKey::parse(&untrusted).unwrap()).unwrap().unwrap().shelved_until,
            Some(Timestamp(1_000_000 + 3_600_000))
        );

        // Out of service: administrators only, with a reason.
        let err = api.remove_from_service(&urgent, "duty1", Role::Operator, "broken").await.unwrap_err();
        assert!(matches!(err, ApiError::Forbidden(_)));
        let err = api.remove_from_service(&urgent, "root", Role::Admin, "  ").await.unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        api.remove_from_service(&urgent, "root", Role::Admin, "analyser replaced").await.unwrap();
        assert_eq!(api.return_to_service(&urgent, "root", Role::Admin).await.unwrap().to, AlarmState::Unacknowledged);

        // Unknown, malformed and normal alarms are not found.
        for id in ["nope", "quality_low~w9~chlorine", &"x".repeat(10_000)] {
            let err = api.acknowledge(id, "duty1", Role::Operator, None).await.unwrap_err();
            assert!(matches!(err, ApiError::NotFound(_)), "{err:?}");
        }
        let err = api.acknowledge(&low, "duty1", Role::Operator, Some(&"y".repeat(501))).await.unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));

        let audit = store.audit_entries(100).unwrap();
        let summary: Vec<_> = audit.iter().rev().map(|a| (a.action.as_str(), a.actor.as_str(), a.ok)).collect();
        assert_eq!(
            summary,
            vec![
                ("alarm.acknowledge", "someone", false),
                ("alarm.acknowledge", "someone", false),
                ("alarm.acknowledge", "someone", false),
                ("alarm.acknowledge", "duty1", true),
                ("alarm.acknowledge", "duty1", false),
                ("alarm.shelve", "duty1", true),
                ("alarm.out_of_service", "duty1", false),
                ("alarm.out_of_service", "root", true),
                ("alarm.in_service", "root", true),
            ]
        );
        assert!(audit.iter().any(|a| a.detail == "unacknowledged -> acknowledged: crew sent"));

        // The journal, by who did what.
        let f = JournalFilter { state: Some(AlarmState::Shelved), ..JournalFilter::default() };
        let shelved = api.journal(&f, 10).unwrap();
        assert_eq!(shelved.len(), 1);
        assert_eq!(
            (shelved[0].record.by.as_str(), shelved[0].record.comment.as_deref()),
            ("duty1", Some("recalibrating"))
        );
        let f = JournalFilter { priority: Some(Priority::Urgent), ..JournalFilter::default() };
        assert_eq!(api.journal(&f, 10).unwrap().len(), 3, "raised, out of service, back in service");
    }
}
