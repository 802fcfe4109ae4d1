//! The simulator's HTTP control API, for tests and demos: list devices, and set or clear a device's fault.
//!
//! - `GET /devices`: a JSON list of `{id, addr, kind, unit_id, fault, requests, malformed}`.
//! - `GET /devices/{id}`: one of them.
//! - `PUT /devices/{id}/fault` with a [`Fault`] JSON body (unknown keys are refused): replaces the fault.
//! - `DELETE /devices/{id}/fault`: clears it.
//!
//! Errors are JSON `{"error": "...", "code": "..."}`. This is not the server's HMI API and deliberately has
//! no authentication; the simulator only binds it to loopback.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{DeviceStatus, Fault, Shared, SimError};

/// What can go wrong in a control request; each maps to a status and a stable code.
#[derive(Debug, thiserror::Error)]
enum ControlError {
    #[error("no simulated device {0:?}")]
    UnknownDevice(String),
    #[error("fault is not valid json for a fault: {0}")]
    BadFault(String),
    #[error("{0}")]
    InvalidFault(String),
    #[error("no such endpoint")]
    NotFound,
}

impl ControlError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ControlError::UnknownDevice(_) => (StatusCode::NOT_FOUND, "unknown_device"),
            ControlError::BadFault(_) => (StatusCode::BAD_REQUEST, "bad_fault"),
            ControlError::InvalidFault(_) => (StatusCode::BAD_REQUEST, "invalid_fault"),
            ControlError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        (status, Json(serde_json::json!({ "error": self.to_string(), "code": code }))).into_response()
    }
}

impl From<SimError> for ControlError {
    fn from(error: SimError) -> Self {
        match error {
            SimError::UnknownDevice(id) => ControlError::UnknownDevice(id),
            other => ControlError::InvalidFault(other.to_string()),
        }
    }
}

/// The control API over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{id}", get(show))
        .route("/devices/{id}/fault", axum::routing::put(put_fault).delete(clear_fault))
        .fallback(|| async { ControlError::NotFound })
        .with_state(shared)
}

fn view(shared: &Shared, id: &str) -> Result<DeviceStatus, ControlError> {
    shared.status(id).ok_or_else(|| ControlError::UnknownDevice(id.to_owned()))
}

async fn list(State(shared): State<Arc<Shared>>) -> Result<Json<Vec<DeviceStatus>>, ControlError> {
    shared.devices.iter().map(|d| view(&shared, &d.id)).collect::<Result<_, _>>().map(Json)
}

async fn show(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<DeviceStatus>, ControlError> {
    view(&shared, &id).map(Json)
}

/// Takes the body as bytes rather than `Json<Fault>`, so that bad JSON is a 400 in our error format (axum's
/// extractor would answer 415 or 422 in plain text).
async fn put_fault(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DeviceStatus>, ControlError> {
    if shared.device(&id).is_none() {
        return Err(ControlError::UnknownDevice(id));
    }
    let fault: Fault = serde_json::from_slice(&body).map_err(|e| ControlError::BadFault(e.to_string()))?;
    shared.set_fault(&id, fault)?;
    view(&shared, &id).map(Json)
}

async fn clear_fault(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<DeviceStatus>, ControlError> {
    shared.set_fault(&id, Fault::default())?;
    view(&shared, &id).map(Json)
}
