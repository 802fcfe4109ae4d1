//! Trends and devices (issue 9 §4): `GET /api/series` (several pens over a range, downsampled by
//! `FieldApi::series`), the trends page `/trends`, the device list `/devices` and a device's page
//! `/devices/{id}`, with their scripts and the style sheet they share. Every role that watches the plant may
//! use them; the routes add only HTTP (the query's bounds and its parsing); the pages read the JSON API like
//! any client (`/api/devices`, `/api/events`, `/api/alarms`, `/api/series`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use actors::api::{FieldApi, Pen, MAX_PENS};
use actors::metrics::Metrics;
use actors::model::Timestamp;

use crate::error::AppError;
use crate::pages::{asset, page, Kind};
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

const TRENDS_HTML: &str = include_str!("../assets/trends.html");
const TRENDS_JS: &str = include_str!("../assets/trends.js");
const DEVICES_HTML: &str = include_str!("../assets/devices.html");
const DEVICE_HTML: &str = include_str!("../assets/device.html");
const DEVICES_JS: &str = include_str!("../assets/devices.js");
const CONSOLE_JS: &str = include_str!("../assets/console-common.js");
const CONSOLE_CSS: &str = include_str!("../assets/console.css");

/// The longest pen text a query may hold.
const MAX_PEN_CHARS: usize = 200;
/// Buckets per pen when the query does not say.
const DEFAULT_POINTS: usize = 600;

/// A counted 400.
fn bad(metrics: &Metrics, message: String) -> AppError {
    Metrics::inc(&metrics.bad_requests);
    AppError::BadRequest(message)
}

/// `GET /api/series?pen=…&pen=…&from=MS&to=MS&points=N`: each pen's min, max and last per bucket, with its
/// unit and limits. `from` defaults to 24 h before `to`, `to` to now; at most 8 pens, 2,000 points, 400 days.
pub async fn series(
    State(field): State<FieldApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(pairs) = query.map_err(|e| bad(&metrics, format!("bad query: {}", e.body_text())))?;
    let (mut pens, mut from, mut to, mut points) = (Vec::new(), None, None, None);
    let number = |key: &str, value: &str| -> Result<i64, AppError> {
        value.parse().map_err(|_| bad(&metrics, format!("`{key}` is not a whole number: {value:?}")))
    };
    for (key, value) in &pairs {
        match key.as_str() {
            "pen" => {
                if pens.len() == MAX_PENS {
                    return Err(bad(&metrics, format!("at most {MAX_PENS} pens")));
                }
                if value.chars().count() > MAX_PEN_CHARS {
                    return Err(bad(&metrics, format!("a pen is longer than {MAX_PEN_CHARS} characters")));
                }
                pens.push(Pen::parse(value).map_err(|e| bad(&metrics, e))?);
            }
            "from" => from = Some(number(key, value)?),
            "to" => to = Some(number(key, value)?),
            "points" => points = Some(number(key, value)?),
            other => {
                let other: String = other.chars().take(40).collect();
                return Err(bad(&metrics, format!("unknown parameter {other:?}")));
            }
        }
    }
    if pens.is_empty() {
        return Err(bad(&metrics, "name at least one pen (pen=meter:ID, rate:ID or param:DEVICE/PARAM)".into()));
    }
    let to = Timestamp(to.unwrap_or_else(|| field.clock().now().0));
    let from = Timestamp(from.unwrap_or(to.0.saturating_sub(24 * 3600 * 1000)));
    let points = match points {
        None => DEFAULT_POINTS,
        Some(p) if (1..=actors::api::MAX_POINTS as i64).contains(&p) => p as usize,
        Some(p) => return Err(bad(&metrics, format!("`points` must be 1 to {}, not {p}", actors::api::MAX_POINTS))),
    };
    match field.series(&pens, from, to, points).await {
        Ok(series) => Ok(Json(series).into_response()),
        Err(actors::api::ApiError::BadRequest(m)) => Err(bad(&metrics, m)),
        Err(e) => Err(e.into()),
    }
}

pub async fn trends_page(State(state): State<AppState>, request: Request) -> Response {
    page(&state, request, VIEW_ROLES, TRENDS_HTML).await
}

pub async fn devices_page(State(state): State<AppState>, request: Request) -> Response {
    page(&state, request, VIEW_ROLES, DEVICES_HTML).await
}

/// One device's page; the script reads the id from the path (an unknown id shows "no such device").
pub async fn device_page(State(state): State<AppState>, request: Request) -> Response {
    page(&state, request, VIEW_ROLES, DEVICE_HTML).await
}

pub async fn trends_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, TRENDS_JS)
}

pub async fn devices_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, DEVICES_JS)
}

pub async fn console_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, CONSOLE_JS)
}

pub async fn console_css(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Css, CONSOLE_CSS)
}
