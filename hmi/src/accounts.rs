//! Account management over HTTP (issue 8 §2, R-F12): one's own password, the admin's changes to accounts
//! (reset, disable, enable, delete, role), sessions (list, revoke), and the two pages that use them: `/admin`
//! (admins: accounts and sessions) and `/account` (everyone: change the password, one's sessions).
//!
//! Each handler checks the session and hands the decision to `actors::api::UsersApi`, which checks the role,
//! audits success and refusal alike, and ends the sessions a change should end. Password checks here hold a
//! permit of the login guard and count in the login throttle, as logins do (issue 8 §1).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use actors::api::{ApiError, UsersApi};
use actors::metrics::Metrics;
use actors::model::user::{MAX_PASSWORD_BYTES, MAX_USERNAME_CHARS};
use actors::model::Role;

use crate::error::AppError;
use crate::routes::{bad_json, session_cookie};
use crate::session::{AuthUser, ClientIp};
use crate::AppState;

const ADMIN_HTML: &str = include_str!("../assets/admin.html");
const ADMIN_JS: &str = include_str!("../assets/admin.js");
const ACCOUNT_HTML: &str = include_str!("../assets/account.html");
const ACCOUNT_JS: &str = include_str!("../assets/account.js");
const COMMON_JS: &str = include_str!("../assets/accounts-common.js");
const ACCOUNTS_CSS: &str = include_str!("../assets/accounts.css");

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn js(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body).into_response()
}

/// The admin page: accounts and sessions (admins only).
pub async fn admin_page(user: AuthUser) -> Result<Response, AppError> {
    user.require(&[Role::Admin])?;
    Ok(html(ADMIN_HTML))
}

pub async fn admin_js(user: AuthUser) -> Result<Response, AppError> {
    user.require(&[Role::Admin])?;
    Ok(js(ADMIN_JS))
}

/// The account page: change one's password (forced after a reset or for the generated first admin).
pub async fn account_page(_user: AuthUser) -> Response {
    html(ACCOUNT_HTML)
}

pub async fn account_js(_user: AuthUser) -> Response {
    js(ACCOUNT_JS)
}

/// The language, error texts and fetch helper both pages share.
pub async fn common_js(_user: AuthUser) -> Response {
    js(COMMON_JS)
}

pub async fn accounts_css(_user: AuthUser) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], ACCOUNTS_CSS).into_response()
}

/// Refuses a password or a path's user name beyond its limit before anything else sees it (issue 8 §3).
pub(crate) fn bounded(metrics: &Metrics, what: &str, len: usize, max: usize) -> Result<(), AppError> {
    if len <= max {
        return Ok(());
    }
    Metrics::inc(&metrics.bad_requests);
    Metrics::inc(&metrics.limits.input_too_long);
    tracing::warn!(message = "Account request refused: a field is too long.", field = what, len, max);
    Err(AppError::BadRequest(format!("the {what} is longer than {max}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

/// `POST /api/me/password`: the user changes their own password with the old one. Every session of theirs
/// ends; a fresh one is set in the cookie.
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    user: AuthUser,
    body: Result<Json<PasswordChange>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&state.metrics, e))?;
    bounded(&state.metrics, "old password", body.old_password.len(), MAX_PASSWORD_BYTES)?;
    bounded(&state.metrics, "new password", body.new_password.len(), MAX_PASSWORD_BYTES)?;
    // Guessing the old password through a stolen session is throttled like a login.
    let attempt = match state.throttle.begin(&user.user.username, ip) {
        Ok(attempt) => attempt,
        Err(retry_after_s) => {
            Metrics::inc(&state.guard.throttled);
            return Err(AppError::Throttled { retry_after_s });
        }
    };
    let users = state.api.users().clone();
    let (by, idle, client) = (user.user.clone(), state.config.session_idle, ip.map(|i| i.to_string()));
    let change =
        async move { users.change_own_password(&by, &body.old_password, &body.new_password, client, idle).await };
    let Some(outcome) = state.guard.run_hashing(true, change).await else {
        state.throttle.refund(attempt);
        return Err(AppError::Busy { retry_after_s: 1 });
    };
    match outcome {
        Ok(session) => {
            state.throttle.succeeded(attempt);
            // Basic credentials with the old password must not keep working from the cache.
            state.guard.basic_cache.forget_user(&session.user.username);
            tracing::info!(message = "Password changed; every session of the user ended.", username = %session.user.username);
            let mut response = Json(json!({ "user": session.user })).into_response();
            let cookie = session_cookie(&state, &session.token, state.config.session_idle.as_secs());
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(ApiError::Refused(r)) if r.code == "wrong_password" => {
            Metrics::inc(&state.metrics.login_failures);
            tracing::warn!(message = "Password change refused: wrong current password.", username = %user.user.username, client = ?ip);
            Err(AppError::Refused(r))
        }
        Err(e) => {
            state.throttle.refund(attempt);
            Err(e.into())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    password: String,
}

/// `POST /api/users/{name}/password` (admin): sets a password the user must change at the next login.
pub async fn reset_password(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    body: Result<Json<PasswordReset>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&state.metrics, e))?;
    bounded(&state.metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    bounded(&state.metrics, "password", body.password.len(), MAX_PASSWORD_BYTES)?;
    let users = state.api.users().clone();
    let by = user.user.clone();
    let reset = async move { users.reset_password(&by, &name, &body.password).await };
    let Some(outcome) = state.guard.run_hashing(false, reset).await else {
        return Err(AppError::Busy { retry_after_s: 1 });
    };
    let outcome = outcome?;
    state.guard.basic_cache.forget_user(&outcome.username);
    Ok(Json(outcome).into_response())
}

/// `POST /api/users/{name}/disable` (admin).
pub async fn disable(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    bounded(&metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    Ok(Json(users.set_disabled(&user.user, &name, true).await?).into_response())
}

/// `POST /api/users/{name}/enable` (admin).
pub async fn enable(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    bounded(&metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    Ok(Json(users.set_disabled(&user.user, &name, false).await?).into_response())
}

/// `DELETE /api/users/{name}` (admin): the account goes, its audit entries stay.
pub async fn delete(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    bounded(&metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    users.delete_user(&user.user, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    role: String,
}

/// `POST /api/users/{name}/role` (admin).
pub async fn set_role(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(name): Path<String>,
    body: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    bounded(&metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    let role: Role = body.role.parse().map_err(|e: String| {
        Metrics::inc(&metrics.bad_requests);
        AppError::BadRequest(e)
    })?;
    Ok(Json(users.set_role(&user.user, &name, role).await?).into_response())
}

/// `GET /api/sessions`: the caller's sessions, or everyone's for an admin.
pub async fn sessions(State(users): State<UsersApi>, user: AuthUser) -> Result<Response, AppError> {
    Ok(Json(users.sessions(&user.user, user.session_id.as_deref())?).into_response())
}

/// `DELETE /api/sessions/{id}`: ends one's own session, or anyone's for an admin.
pub async fn revoke_session(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    bounded(&metrics, "session id", id.len(), 64)?;
    users.revoke_session(&user.user, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/me/totp`: starts enrolling one's TOTP second factor (admins and operators); the secret is in
/// this answer only.
pub async fn totp_enrol(State(users): State<UsersApi>, user: AuthUser) -> Result<Response, AppError> {
    Ok(Json(users.totp_enrol(&user.user).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    code: String,
}

/// `POST /api/me/totp/confirm`: confirms the enrolment with a code; login asks for codes from then on.
pub async fn totp_confirm(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    body: Result<Json<TotpCode>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|e| bad_json(&metrics, e))?;
    bounded(&metrics, "code", body.code.len(), 16)?;
    Ok(Json(users.totp_confirm(&user.user, &body.code).await?).into_response())
}

/// `DELETE /api/users/{name}/totp` (admin): removes a user's second factor.
pub async fn totp_remove(
    State(users): State<UsersApi>,
    State(metrics): State<std::sync::Arc<Metrics>>,
    user: AuthUser,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    bounded(&metrics, "user name", name.chars().count(), MAX_USERNAME_CHARS)?;
    Ok(Json(users.totp_remove(&user.user, &name).await?).into_response())
}
