//! The audit journal over HTTP (issue 8 §4, R-F7, R-G4): every 403 is audited (who, which route, which
//! role), the journal's query `GET /api/audit`, and the admins' page `/audit`.
//!
//! Denials: [`audit_denials`] wraps every route and runs it with an empty record in a task-local slot; the
//! session extractor notes the user it authenticated ([`authenticated`]) and a 403 response notes why
//! ([`forbidden`]: a role check, a cross-origin request, ...); a response that leaves with 403 is audited as
//! `access.denied` with the user (or `-`), the method and path, and why (repeatable: the same denial again
//! within a minute is counted on its first entry) before it is sent.
//!
//! The query takes `actor`, `action`, `target` (exact, or a prefix when ending in `*`), `ok`, `from`/`to`
//! (ms since the epoch), `before` (the `seq` cursor) and `limit` (1..=500); anything else, or a bad value, is
//! 400 with a message naming the parameter. The body is the page, newest first; `X-Next-Before` says where the
//! next (older) page starts when there may be one.

use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use actors::api::{AuditApi, UserInfo, MAX_AUDIT_PAGE};
use actors::metrics::Metrics;
use actors::model::{Role, Timestamp};
use actors::store::{AuditFilter, TextMatch};

use crate::error::AppError;
use crate::pages::{self, Kind};
use crate::session::AuthUser;
use crate::AppState;

/// Longest text filter (characters).
const MAX_FILTER_CHARS: usize = 160;

/// What a request's 403 is audited with: who the request was authenticated as, and why it was refused.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<(Option<UserInfo>, Option<String>)>>);

impl Seen {
    fn update(&self, f: impl FnOnce(&mut (Option<UserInfo>, Option<String>))) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn get(&self) -> (Option<UserInfo>, Option<String>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

tokio::task_local! {
    static SEEN: Seen;
}

/// Notes who the request is (outside [`audit_denials`], as in unit tests, nothing happens).
pub fn authenticated(user: &UserInfo) {
    let _ = SEEN.try_with(|seen| seen.update(|s| s.0 = Some(user.clone())));
}

/// Notes why the request is refused with 403.
pub fn forbidden(why: &str) {
    let _ = SEEN.try_with(|seen| seen.update(|s| s.1 = Some(why.to_owned())));
}

/// Audits every 403 with the user, the route and why, before the answer goes out.
pub async fn audit_denials(State(audit): State<AuditApi>, request: Request, next: Next) -> Response {
    let seen = Seen::default();
    let route = format!("{} {}", request.method(), request.uri().path());
    let response = SEEN.scope(seen.clone(), next.run(request)).await;
    if response.status() == StatusCode::FORBIDDEN {
        let (user, why) = seen.get();
        let why = why.unwrap_or_else(|| "forbidden".into());
        let actor = user.as_ref().map_or("-", |u| u.username.as_str());
        tracing::warn!(message = "Access denied.", username = %actor, route = %route, why = %why);
        if let Err(e) = audit.record_repeatable(actor, "access.denied", &route, &why, false).await {
            tracing::warn!(message = "Audit of a denial not stored.", error = %e);
        }
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    ok: Option<bool>,
    from: Option<i64>,
    to: Option<i64>,
    before: Option<u64>,
    limit: Option<usize>,
}

fn bad(metrics: &Metrics, message: String) -> AppError {
    Metrics::inc(&metrics.bad_requests);
    AppError::BadRequest(message)
}

fn text_filter(metrics: &Metrics, name: &str, value: Option<String>) -> Result<Option<TextMatch>, AppError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > MAX_FILTER_CHARS => {
            Err(bad(metrics, format!("{name} is longer than {MAX_FILTER_CHARS} characters")))
        }
        Some(v) => Ok(Some(TextMatch::parse(&v))),
    }
}

/// The audit journal, filtered and paged, newest first (admin only).
pub async fn query(
    State(audit): State<AuditApi>,
    State(metrics): State<Arc<Metrics>>,
    user: AuthUser,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    user.require(&[Role::Admin])?;
    let Query(q) = query.map_err(|e| bad(&metrics, format!("bad query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(bad(&metrics, format!("limit must be 1 to {MAX_AUDIT_PAGE}")));
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(bad(&metrics, "from is later than to".into()));
        }
    }
    if q.before == Some(0) {
        return Err(bad(&metrics, "before must be at least 1".into()));
    }
    let filter = AuditFilter {
        actor: text_filter(&metrics, "actor", q.actor)?,
        action: text_filter(&metrics, "action", q.action)?,
        target: text_filter(&metrics, "target", q.target)?,
        ok: q.ok,
        from: q.from.map(Timestamp),
        to: q.to.map(Timestamp),
        before: q.before,
    };
    let page = audit.query(filter, limit).await?;
    let mut response = Json(page.entries).into_response();
    if let Some(next) = page.next_before.and_then(|n| HeaderValue::from_str(&n.to_string()).ok()) {
        response.headers_mut().insert("x-next-before", next);
    }
    Ok(response)
}

const AUDIT_HTML: &str = include_str!("../assets/audit.html");
const AUDIT_JS: &str = include_str!("../assets/audit.js");
const AUDIT_CSS: &str = include_str!("../assets/audit.css");

/// The audit page, for admins. A browser without a session goes to the login page.
pub async fn page(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, &[Role::Admin], AUDIT_HTML).await
}

pub async fn script(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, &[Role::Admin], Kind::Js, AUDIT_JS)
}

pub async fn style(user: AuthUser) -> Result<Response, AppError> {
    pages::asset(&user, &[Role::Admin], Kind::Css, AUDIT_CSS)
}
