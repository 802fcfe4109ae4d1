//! Usage and zone leakage (issue 9 §1, §4; R-B1, R-B5): `GET /api/usage` (a meter's or a region's usage by
//! hour, day or month with the same period last year beside it), `GET /api/zones` (each zone's leakage per
//! period, latest first), and their pages `/usage` and `/zones` (one script and one style sheet for both).
//! Every route is for everyone who may view the plant; nothing here changes state. The handlers take
//! `State<UsageApi>` and nothing wider; bounds (span, rows, periods) are the API's.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use actors::alarms::usage::Bucket;
use actors::api::{UsageApi, UsageTarget};
use actors::metrics::Metrics;
use actors::model::{MeterId, RegionId, Timestamp};

use crate::error::AppError;
use crate::pages::{self, Kind};
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

const USAGE_HTML: &str = include_str!("../assets/usage.html");
const ZONES_HTML: &str = include_str!("../assets/zones.html");
const USAGE_JS: &str = include_str!("../assets/usage.js");
const USAGE_CSS: &str = include_str!("../assets/usage.css");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    meter: Option<String>,
    region: Option<String>,
    /// `hour`, `day` (default) or `month`.
    bucket: Option<String>,
    /// Milliseconds since the epoch (UTC).
    from: i64,
    to: i64,
}

/// A meter's or a region's usage per bucket, with last year beside each.
pub async fn usage(
    State(api): State<UsageApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(q) = query.map_err(|e| {
        Metrics::inc(&metrics.bad_requests);
        AppError::BadRequest(format!("bad query: {}", e.body_text()))
    })?;
    let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > 64);
    if long(&q.meter) || long(&q.region) {
        return Err(AppError::BadRequest("an id is longer than 64 characters".into()));
    }
    let target = match (q.meter, q.region) {
        (Some(m), None) => UsageTarget::Meter(MeterId::new(m)),
        (None, Some(r)) => UsageTarget::Region(RegionId::new(r)),
        _ => return Err(AppError::BadRequest("give either meter or region".into())),
    };
    let bucket = match q.bucket.as_deref() {
        None => Bucket::Day,
        Some(b) => Bucket::parse(b).ok_or_else(|| AppError::BadRequest(format!("unknown bucket {b:?}")))?,
    };
    Ok(Json(api.usage(target, bucket, Timestamp(q.from), Timestamp(q.to)).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesQuery {
    /// Periods per zone (default 60, at most 400).
    periods: Option<usize>,
}

/// Every zone with its leakage per period, latest first.
pub async fn zones(
    State(api): State<UsageApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<ZonesQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let Query(q) = query.map_err(|e| {
        Metrics::inc(&metrics.bad_requests);
        AppError::BadRequest(format!("bad query: {}", e.body_text()))
    })?;
    Ok(Json(api.zones(q.periods.unwrap_or(60)).await?).into_response())
}

pub async fn usage_page(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, VIEW_ROLES, USAGE_HTML).await
}

pub async fn zones_page(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, VIEW_ROLES, ZONES_HTML).await
}

pub async fn script(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, VIEW_ROLES, Kind::Js, USAGE_JS)
}

pub async fn style(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, VIEW_ROLES, Kind::Css, USAGE_CSS)
}
