//! JSON API handlers: login and logout, devices, readings, users, audit, supervision, health, metrics.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

pub mod alarm_settings;
pub mod alarms;

use actors::api::{EventsApi, FieldApi, SystemApi, UserInfo, UsersApi};
use std::sync::Arc;

use actors::metrics::Metrics;
use actors::model::{Role, Timestamp};

use crate::cookie::set_cookie;
use crate::error::AppError;
use crate::session::{check_login, AuthUser, ClientIp};
use crate::AppState;

/// Roles that may watch the live state of the field (the HMI).
pub const VIEW_ROLES: &[Role] = &[Role::Admin, Role::Operator, Role::Manager, Role::Crew];
/// Roles that may see the supervision tree and metrics.
pub const OPS_ROLES: &[Role] = &[Role::Admin, Role::Operator];

/// Most rows one readings query returns.
const MAX_LIMIT: usize = 10_000;

/// Maps a JSON extraction failure to a counted 400, or 413 when the body outgrew the limit (issue 8 §5).
pub fn bad_json(metrics: &Metrics, e: JsonRejection) -> AppError {
    Metrics::inc(&metrics.bad_requests);
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::PayloadTooLarge;
    }
    AppError::BadRequest(format!("bad JSON body: {}", e.body_text()))
}

fn bad_query(metrics: &Metrics, e: QueryRejection) -> AppError {
    Metrics::inc(&metrics.bad_requests);
    AppError::BadRequest(format!("bad query: {}", e.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// The TOTP code, for users with a second factor (issue 8 §2).
    #[serde(default)]
    totp: Option<String>,
}

pub(crate) fn session_cookie(state: &AppState, value: &str, max_age_s: u64) -> HeaderValue {
    let cookie = set_cookie(value, max_age_s, state.config.secure());
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("ww_session=; Path=/; Max-Age=0"))
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&state.metrics, e))?;
    if body.totp.as_ref().is_some_and(|c| c.len() > 16) {
        Metrics::inc(&state.metrics.bad_requests);
        return Err(AppError::BadRequest("the TOTP code is longer than 16 characters".into()));
    }
    let user = check_login(&state, &body.username, &body.password, body.totp.as_deref(), ip).await?;
    let session = state.api.users().open_session(&user, ip.map(|i| i.to_string()), state.config.session_idle).await?;
    let token = session.token;
    tracing::info!(message = "Login.", username = %user.username, role = %user.role, client = ?ip);
    if let Err(e) = state.api.users().audit(&user.username, "login", &user.username, "session opened", true).await {
        tracing::warn!(message = "Audit of a login not stored.", error = %e);
    }
    let mut response = Json(json!({ "user": user })).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, &token, state.config.session_idle.as_secs()));
    Ok(response)
}

pub async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<Response, AppError> {
    if let Some(token) = &user.token {
        state.api.users().end_session(token).await?;
    }
    let _ = state.api.users().audit(&user.user.username, "logout", &user.user.username, "session closed", true).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

pub async fn me(user: AuthUser) -> Json<UserInfo> {
    Json(user.user)
}

pub async fn devices(State(field): State<FieldApi>, user: AuthUser) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let devices = field.devices().await?;
    let regions = actors::model::region_status(field.regions(), &devices);
    let mut body = json!({ "regions": regions, "devices": devices });
    if crate::redact::applies(user.user.role) {
        body["devices"].as_array_mut().into_iter().flatten().for_each(crate::redact::device);
    }
    Ok(Json(body).into_response())
}

pub async fn device(
    State(field): State<FieldApi>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let view = field.device(&id).await?;
    if crate::redact::applies(user.user.role) {
        let mut body = serde_json::to_value(&view).map_err(|_| AppError::Internal)?;
        crate::redact::device(&mut body);
        return Ok(Json(body).into_response());
    }
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingsQuery {
    device: String,
    /// Milliseconds since the epoch (UTC); default 24 h before `to`.
    from: Option<i64>,
    /// Milliseconds since the epoch (UTC); default now.
    to: Option<i64>,
    limit: Option<usize>,
}

pub async fn readings(
    State(field): State<FieldApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<ReadingsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(q) = query.map_err(|e| bad_query(&metrics, e))?;
    let to = Timestamp(q.to.unwrap_or_else(|| field.clock().now().0));
    let from = Timestamp(q.from.unwrap_or(to.0.saturating_sub(24 * 3600 * 1000)));
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_LIMIT);
    Ok(Json(field.history(&q.device, from, to, limit).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    region: Option<String>,
    device: Option<String>,
    /// The event kind, e.g. `comm_lost`.
    kind: Option<String>,
    /// Milliseconds since the epoch (UTC).
    from: Option<i64>,
    to: Option<i64>,
    /// Only events with a smaller `id` (to page back).
    before: Option<u64>,
    limit: Option<usize>,
}

/// Most events one query returns.
const MAX_EVENTS: usize = 1000;

/// The event journal: every committed event, newest first (issue 7 §3).
pub async fn events(
    State(events): State<EventsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(q) = query.map_err(|e| bad_query(&metrics, e))?;
    let bounded = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > 200);
    if bounded(&q.region) || bounded(&q.device) || bounded(&q.kind) {
        return Err(AppError::BadRequest("a filter is longer than 200 characters".into()));
    }
    let filter = actors::store::EventFilter {
        region: q.region.map(actors::model::RegionId::new),
        device: q.device.map(actors::model::DeviceId::new),
        kind: q.kind,
        from: q.from.map(Timestamp),
        to: q.to.map(Timestamp),
        before: q.before,
    };
    let limit = q.limit.unwrap_or(200).clamp(1, MAX_EVENTS);
    let journal = events.journal(filter, limit).await?;
    if crate::redact::applies(user.user.role) {
        let mut body = serde_json::to_value(&journal).map_err(|_| AppError::Internal)?;
        body.as_array_mut().into_iter().flatten().for_each(crate::redact::event);
        return Ok(Json(body).into_response());
    }
    Ok(Json(journal).into_response())
}

/// Roles that may command valves (R-A7).
pub const VALVE_ROLES: &[Role] = &[Role::Admin, Role::Operator];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValveCommandBody {
    action: String,
    reason: String,
}

/// Opens or closes a valve and waits for the read-back. 200 with the command record whatever the result;
/// `result` says `confirmed`, `already_in_position` or `failed` (with the reason).
pub async fn command_valve(
    State(field): State<FieldApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<Json<ValveCommandBody>, JsonRejection>,
) -> Result<Response, AppError> {
    user.require(VALVE_ROLES)?;
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    let action = body.action.parse().map_err(AppError::BadRequest)?;
    let record = field.command_valve(&id, action, &body.reason, &user.user.username).await?;
    Ok(Json(record).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValveResetBody {
    reason: String,
}

/// Resets a valve's latched fault after the operator checked it (issue 7 §5). 200 with the reset record; 409
/// if the valve is not in fault or reports a fault itself. Audited either way.
pub async fn reset_valve(
    State(field): State<FieldApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
    body: Result<Json<ValveResetBody>, JsonRejection>,
) -> Result<Response, AppError> {
    user.require(VALVE_ROLES)?;
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    let record = field.reset_valve(&id, &body.reason, &user.user.username).await?;
    Ok(Json(record).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: String,
}

pub async fn users(State(users): State<UsersApi>, user: AuthUser) -> Result<Response, AppError> {
    user.require(&[Role::Admin])?;
    Ok(Json(users.users()?).into_response())
}

pub async fn create_user(
    State(users): State<UsersApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<Response, AppError> {
    user.require(&[Role::Admin])?;
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    // Over-long input is refused before it reaches the audit (issue 8 §3); refusals after this are audited.
    let limits = (actors::model::user::MAX_USERNAME_CHARS, actors::model::user::MAX_PASSWORD_BYTES);
    crate::accounts::bounded(&metrics, "user name", body.username.chars().count(), limits.0)?;
    crate::accounts::bounded(&metrics, "password", body.password.len(), limits.1)?;
    let role: Role = body.role.parse().map_err(AppError::BadRequest)?;
    let created = users.create_user(&user.user, &body.username, &body.password, role).await?;
    tracing::info!(message = "User created.", by = %user.user.username, username = %created.username, role = %created.role);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn supervision(State(system): State<SystemApi>, user: AuthUser) -> Result<Response, AppError> {
    user.require(OPS_ROLES)?;
    Ok(Json(system.supervision().await).into_response())
}

/// Liveness for load balancers and systemd: no authentication, no secrets.
pub async fn healthz(State(system): State<SystemApi>) -> Response {
    let health = system.health().await;
    let status = if health.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(health)).into_response()
}

pub async fn metrics(
    State(system): State<SystemApi>,
    State(guard): State<Arc<crate::guard::LoginGuard>>,
    State(edge): State<Arc<crate::edge::EdgeCounters>>,
    State(alarms): State<actors::api::AlarmsApi>,
    user: AuthUser,
) -> Result<Response, AppError> {
    user.require(OPS_ROLES)?;
    let mut body = crate::metrics::render(system.metrics());
    crate::metrics::render_login(&mut body, &guard);
    crate::metrics::render_edge(&mut body, &edge);
    crate::alarm_kpi::render_metrics(&mut body, alarms).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

pub async fn openapi(user: AuthUser) -> Result<Response, AppError> {
    let _ = user;
    Ok(Json(crate::openapi::document()).into_response())
}
