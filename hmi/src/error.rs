//! The one error type of the HTTP layer. Every error leaves as JSON `{"error": "...", "code": "..."}` with a
//! proper status; internals are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use actors::api::{ApiError, RefusalKind};

#[derive(Debug, Clone, PartialEq)]
pub enum AppError {
    Unauthenticated,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    InvalidCredentials,
    Throttled {
        retry_after_s: u64,
    },
    /// Too many password checks are running; refused at once rather than queued (issue 8 §1).
    Busy {
        retry_after_s: u64,
    },
    MethodNotAllowed,
    /// The request body is over the limit (issue 8 §5).
    PayloadTooLarge,
    Unavailable(String),
    Internal,
    /// A refusal with a stable code and parameters from the API (issue 8 §2: account changes, the policy).
    Refused(actors::api::Refusal),
    /// The user must change the password someone else set before doing anything else (issue 8 §2).
    PasswordChangeRequired,
}

impl AppError {
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", "log in first".into()),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            AppError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            AppError::InvalidCredentials => {
                (StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid username or password".into())
            }
            AppError::Throttled { retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("too many failed logins; try again in {retry_after_s} s"),
            ),
            AppError::Busy { retry_after_s } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("too many logins at once; try again in {retry_after_s} s"),
            ),
            AppError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path".into())
            }
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {} KiB", crate::edge::MAX_BODY / 1024),
            ),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone()),
            AppError::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log".into())
            }
            AppError::Refused(r) => {
                let status = match r.kind {
                    RefusalKind::BadRequest => StatusCode::BAD_REQUEST,
                    RefusalKind::Unauthorized => StatusCode::UNAUTHORIZED,
                    RefusalKind::Forbidden => StatusCode::FORBIDDEN,
                    RefusalKind::NotFound => StatusCode::NOT_FOUND,
                    RefusalKind::Conflict => StatusCode::CONFLICT,
                };
                (status, r.code, r.message.clone())
            }
            AppError::PasswordChangeRequired => (
                StatusCode::FORBIDDEN,
                "password_change_required",
                "change your password first (POST /api/me/password)".into(),
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if let AppError::Forbidden(why) = &self {
            // Why, for the audit of the 403 (`crate::audit::audit_denials`).
            crate::audit::forbidden(why);
        }
        let mut body = json!({ "error": message, "code": code });
        if let AppError::Refused(r) = &self {
            if !r.params.is_empty() {
                let params: serde_json::Map<String, serde_json::Value> =
                    r.params.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str()))).collect();
                body["params"] = serde_json::Value::Object(params);
            }
        }
        let mut response = (status, Json(body)).into_response();
        if let AppError::Throttled { retry_after_s } | AppError::Busy { retry_after_s } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(m) => AppError::NotFound(m),
            ApiError::BadRequest(m) => AppError::BadRequest(m),
            ApiError::Conflict(m) => AppError::Conflict(m),
            ApiError::InvalidCredentials => AppError::InvalidCredentials,
            ApiError::Forbidden(m) => AppError::Forbidden(m),
            ApiError::Unavailable(what) => AppError::Unavailable(format!("{what} is unavailable, try again")),
            ApiError::Internal => AppError::Internal,
            ApiError::Refused(r) => AppError::Refused(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every API error reaches the client with the status and code the HMI and scripts rely on, and the
    /// message users see; nothing internal leaks.
    #[test]
    fn each_api_error_variant_has_its_status_code_and_message() {
        let cases = [
            (ApiError::NotFound("no device \"x\"".into()), StatusCode::NOT_FOUND, "not_found", "no device \"x\""),
            (ApiError::BadRequest("bad".into()), StatusCode::BAD_REQUEST, "bad_request", "bad"),
            (
                ApiError::Conflict("valve v1: not in fault".into()),
                StatusCode::CONFLICT,
                "conflict",
                "valve v1: not in fault",
            ),
            (
                ApiError::InvalidCredentials,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid username or password",
            ),
            (ApiError::Forbidden("no".into()), StatusCode::FORBIDDEN, "forbidden", "no"),
            (
                ApiError::Unavailable("the live hub".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the live hub is unavailable, try again",
            ),
            (ApiError::Internal, StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log"),
        ];
        for (api, status, code, message) in cases {
            let (s, c, m) = AppError::from(api.clone()).parts();
            assert_eq!((s, c, m.as_str()), (status, code, message), "{api:?}");
        }
    }
}
