//! Alarm KPIs over HTTP (issue 9 §3): `GET /api/alarms/kpi?window=24h` (the figures of `actors::alarms::kpi`
//! as JSON), the KPI page `/alarm-kpi` with its script and style sheet, and the KPI gauges of `/metrics`.
//! Everyone who sees the plant sees the KPIs (a manager reviews them more than anyone); `/metrics` keeps its
//! own roles.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use actors::alarms::kpi::{AlarmKpi, PositionKpi};
use actors::api::AlarmsApi;
use actors::metrics::Metrics;

use crate::error::AppError;
use crate::pages::{self, Kind};
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

const KPI_HTML: &str = include_str!("../assets/alarm-kpi.html");
const KPI_JS: &str = include_str!("../assets/alarm-kpi.js");
const KPI_CSS: &str = include_str!("../assets/alarm-kpi.css");

/// The window when none is asked for, and the one `/metrics` reports over.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    /// `<n>m`, `<n>h` or `<n>d`, from 10 minutes to 31 days.
    window: Option<String>,
}

/// A window such as `30m`, `24h`, `7d`: at most 6 digits and a unit.
pub fn parse_window(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_secs(n * unit))
}

/// The KPIs of the window that ends now.
pub async fn api(
    State(alarms): State<AlarmsApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<KpiQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(VIEW_ROLES)?;
    let bad = |why: String| {
        Metrics::inc(&metrics.bad_requests);
        AppError::BadRequest(why)
    };
    let Query(q) = query.map_err(|e| bad(format!("bad query: {}", e.body_text())))?;
    let window = match q.window.as_deref() {
        None => DEFAULT_WINDOW,
        Some(w) => parse_window(w)
            .filter(|d| *d >= Duration::from_secs(600) && *d <= actors::api::MAX_KPI_WINDOW)
            .ok_or_else(|| bad(format!("window {w:?} is not 10m to 31d (e.g. 1h, 24h, 7d)")))?,
    };
    let kpi = tokio::task::spawn_blocking(move || alarms.kpi(window)).await.map_err(|_| AppError::Internal)??;
    Ok(Json(kpi).into_response())
}

pub async fn page(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, VIEW_ROLES, KPI_HTML).await
}

pub async fn script(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, VIEW_ROLES, Kind::Js, KPI_JS)
}

pub async fn style(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, VIEW_ROLES, Kind::Css, KPI_CSS)
}

/// Appends the KPI gauges of the last [`DEFAULT_WINDOW`] to the `/metrics` text (nothing but a comment if
/// the store cannot be read: the other metrics still matter then).
pub async fn render_metrics(out: &mut String, alarms: AlarmsApi) {
    match tokio::task::spawn_blocking(move || alarms.kpi(DEFAULT_WINDOW)).await {
        Ok(Ok(kpi)) => render(out, &kpi),
        _ => {
            let _ = writeln!(out, "# alarm KPIs unavailable (store)");
        }
    }
}

/// A per-position gauge: name, help, and its value.
type PositionGauge = (&'static str, &'static str, fn(&PositionKpi) -> f64);

fn render(out: &mut String, k: &AlarmKpi) {
    let per_position: [PositionGauge; 6] = [
        (
            "waterworks_alarm_rate_last_10m",
            "Alarms annunciated to the operator position in the last 10 minutes (ISA-18.2 flood: 10 or more).",
            |p| f64::from(p.last_10min),
        ),
        ("waterworks_alarm_rate_last_1h", "Alarms annunciated to the operator position in the last hour.", |p| {
            f64::from(p.last_hour)
        }),
        (
            "waterworks_alarm_rate_avg_10m_24h",
            "Average alarms per 10 minutes at the operator position over the last 24 h (target about 1).",
            |p| p.avg_per_10min,
        ),
        (
            "waterworks_alarm_rate_peak_10m_24h",
            "Most alarms in any 10 minutes at the operator position over the last 24 h (target fewer than 10).",
            |p| f64::from(p.peak_per_10min),
        ),
        (
            "waterworks_alarm_floods_24h",
            "10-minute periods with 10 or more alarms at the operator position over the last 24 h.",
            |p| f64::from(p.floods),
        ),
        (
            "waterworks_alarms_standing_position",
            "Standing alarms (condition holds, not hidden) of the operator position's regions.",
            |p| f64::from(p.standing),
        ),
    ];
    for (name, help, value) in per_position {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for p in &k.positions {
            let _ = writeln!(out, "{name}{{position=\"{}\"}} {}", p.name, value(p));
        }
    }
    let totals = [
        (
            "waterworks_alarms_standing",
            "Standing alarms: condition holds, not shelved, suppressed or out of service.",
            k.standing,
        ),
        (
            "waterworks_alarms_unacknowledged",
            "Alarms waiting for an acknowledgement (active or returned to normal).",
            k.unacknowledged,
        ),
        ("waterworks_alarms_stale", "Standing alarms whose condition has held for more than 24 h.", k.stale),
        ("waterworks_alarms_shelved", "Alarms shelved by an operator.", k.shelved),
        ("waterworks_alarms_suppressed", "Alarms suppressed by design (their device is comm-lost).", k.suppressed),
        ("waterworks_alarms_out_of_service", "Alarms taken out of service by an administrator.", k.out_of_service),
        (
            "waterworks_alarms_chattering_24h",
            "Alarms activated 3 or more times within one minute in the last 24 h.",
            k.chattering_count,
        ),
    ];
    for (name, help, v) in totals {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_minutes_hours_or_days_and_nothing_else() {
        assert_eq!(parse_window("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_window("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_window("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1.5h", "-1h", "1w", "9999999d", "24 h", "２h"] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
    }
}
