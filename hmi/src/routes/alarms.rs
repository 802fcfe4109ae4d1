//! The alarm routes (issue 9 §2, §5): standing alarms and the journal for everyone who sees the plant;
//! acknowledge and shelve for operators (and admins), out of service for admins. Each handler takes
//! `State<AlarmsApi>` and nothing wider; the roles are checked by the API (and audited there), and the
//! route adds only HTTP: bodies, queries and their limits.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use actors::api::AlarmsApi;
use actors::metrics::Metrics;
use actors::model::{AlarmClass, AlarmState, DeviceId, Priority, RegionId, Timestamp};
use actors::store::JournalFilter;

use super::{bad_json, bad_query, VIEW_ROLES};
use crate::error::AppError;
use crate::session::AuthUser;

/// Every standing alarm (not normal), most urgent first.
pub async fn standing(State(alarms): State<AlarmsApi>, user: AuthUser) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    Ok(Json(alarms.standing()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalQuery {
    /// Milliseconds since the epoch (UTC).
    from: Option<i64>,
    to: Option<i64>,
    device: Option<String>,
    region: Option<String>,
    class: Option<String>,
    /// The state a transition led to.
    state: Option<String>,
    priority: Option<String>,
    /// Only records with a smaller `id` (to page back).
    before: Option<u64>,
    limit: Option<usize>,
}

/// The alarm journal, newest first.
pub async fn journal(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<JournalQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(q) = query.map_err(|e| bad_query(&metrics, e))?;
    let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > 200);
    if long(&q.device) || long(&q.region) {
        return Err(AppError::BadRequest("a filter is longer than 200 characters".into()));
    }
    fn named<T>(what: &str, value: Option<String>, parse: fn(&str) -> Option<T>) -> Result<Option<T>, AppError> {
        value.map(|v| parse(&v).ok_or_else(|| AppError::BadRequest(format!("unknown {what} {v:?}")))).transpose()
    }
    let filter = JournalFilter {
        from: q.from.map(Timestamp),
        to: q.to.map(Timestamp),
        device: q.device.map(DeviceId::new),
        region: q.region.map(RegionId::new),
        class: named("class", q.class, AlarmClass::parse)?,
        state: named("state", q.state, AlarmState::parse)?,
        priority: named("priority", q.priority, Priority::parse)?,
        before: q.before,
        after: None,
    };
    Ok(Json(alarms.journal(&filter, q.limit.unwrap_or(200))?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    comment: Option<String>,
}

/// Acknowledges one alarm, with an optional comment. 200 with the journal record; 409 if its state does not
/// allow it (already acknowledged, shelved, …); 404 if it is not standing.
pub async fn acknowledge(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    let (name, role) = (&user.user.username, user.user.role);
    Ok(Json(alarms.acknowledge(&id, name, role, body.comment.as_deref()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShelveBody {
    /// How long, in minutes (operators at most one shift).
    minutes: u64,
    reason: Option<String>,
}

/// Shelves one alarm for a while. 200 with the journal record; 400 beyond the role's longest shelf.
pub async fn shelve(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<Json<ShelveBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    let duration = Duration::from_secs(body.minutes.min(u64::MAX / 60) * 60);
    let (name, role) = (&user.user.username, user.user.role);
    Ok(Json(alarms.shelve(&id, name, role, duration, body.reason.as_deref()).await?).into_response())
}

/// The most alarms one acknowledgement names.
pub const MAX_ACK_IDS: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckManyBody {
    ids: Vec<String>,
    comment: Option<String>,
}

/// Acknowledges several alarms with one optional comment (issue 9 §2 "single or many at once"), each
/// through the API (role-checked, checked against its state, audited with its outcome). 200 with one result
/// per id, in order: `{"id", "status", "record"}` when done, `{"id", "status", "code", "error"}` when not;
/// 403 when the role may acknowledge none (each refusal audited); 400 for no ids or more than
/// [`MAX_ACK_IDS`].
pub async fn acknowledge_many(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    body: Result<Json<AckManyBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    if body.ids.is_empty() || body.ids.len() > MAX_ACK_IDS {
        Metrics::inc(&metrics.bad_requests);
        return Err(AppError::BadRequest(format!("name 1 to {MAX_ACK_IDS} alarms")));
    }
    let (name, role) = (&user.user.username, user.user.role);
    let mut results = Vec::with_capacity(body.ids.len());
    let mut forbidden = None;
    for id in &body.ids {
        match alarms.acknowledge(id, name, role, body.comment.as_deref()).await {
            Ok(record) => results.push(serde_json::json!({ "id": id, "status": 200, "record": record })),
            Err(actors::api::ApiError::Forbidden(why)) => {
                // The role decides for every id alike: the first refusal (audited) answers for all.
                forbidden = Some(why);
                break;
            }
            Err(e) => {
                let (status, code, error) = AppError::from(e).parts();
                results.push(serde_json::json!({ "id": id, "status": status.as_u16(), "code": code, "error": error }));
            }
        }
    }
    if let Some(why) = forbidden {
        return Err(AppError::Forbidden(why));
    }
    Ok(Json(serde_json::json!({ "results": results })).into_response())
}

/// Takes one alarm off its shelf before its expiry (operators, admins). 200 with the journal record.
pub async fn unshelve(
    State(alarms): State<AlarmsApi>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (name, role) = (&user.user.username, user.user.role);
    Ok(Json(alarms.unshelve(&id, name, role).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: String,
}

/// Takes one alarm out of service, with a reason (admins). 200 with the journal record; 400 without a reason.
pub async fn out_of_service(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<Json<ReasonBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    let (name, role) = (&user.user.username, user.user.role);
    Ok(Json(alarms.remove_from_service(&id, name, role, &body.reason).await?).into_response())
}

/// Returns one alarm to service (admins). 200 with the journal record.
pub async fn return_to_service(
    State(alarms): State<AlarmsApi>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (name, role) = (&user.user.username, user.user.role);
    Ok(Json(alarms.return_to_service(&id, name, role).await?).into_response())
}
