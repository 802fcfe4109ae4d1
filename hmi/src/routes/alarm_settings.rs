//! The alarm settings (issue 9 §1, §5): `GET /api/alarm-settings` for every role that sees alarms, `PUT` for
//! admins (checked and audited by `AlarmSettingsApi`; another role's 403 is audited as `access.denied` by the
//! audit middleware), and the admins' page `/alarm-settings` with its script and style sheet.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use actors::alarms::AlarmSettings;
use actors::metrics::Metrics;
use actors::model::Role;

use super::{bad_json, VIEW_ROLES};
use crate::error::AppError;
use crate::pages::{self, Kind};
use crate::session::AuthUser;
use crate::AppState;

const PAGE_HTML: &str = include_str!("../../assets/alarm-settings.html");
const PAGE_JS: &str = include_str!("../../assets/alarm-settings.js");
const PAGE_CSS: &str = include_str!("../../assets/alarm-settings.css");
const ADMIN: &[Role] = &[Role::Admin];

/// The settings in force (the configuration's `[alarms]`, or what an admin saved since).
pub async fn get(State(state): State<AppState>, user: AuthUser) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let settings = state.api.alarm_settings().get();
    Ok(Json(&*settings).into_response())
}

/// Replaces the settings whole. 200 with the settings now in force; 400 listing every problem with its key.
pub async fn put(
    State(state): State<AppState>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    body: Result<Json<AlarmSettings>, JsonRejection>,
) -> Result<Response, AppError> {
    user.require(ADMIN)?;
    let Json(settings) = body.map_err(|e| bad_json(&metrics, e))?;
    let saved = state.api.alarm_settings().put(settings, &user.user.username, user.user.role).await?;
    Ok(Json(&*saved).into_response())
}

pub async fn page(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, ADMIN, PAGE_HTML).await
}

pub async fn script(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, ADMIN, Kind::Js, PAGE_JS)
}

pub async fn style(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, ADMIN, Kind::Css, PAGE_CSS)
}
