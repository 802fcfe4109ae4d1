//! The one fault-injection HTTP API, over every simulator a process runs (`waterworks simulate --control`,
//! `waterworks run --sim-control`, and tests): Modbus TCP devices and valves, Modbus RTU slaves on simulated
//! RS-485 lines, CJ/T 188 meters, HJ 212 stations and MQTT meter groups, each addressed by the id the caller
//! gives it (the server names them after its configuration). It knows no configuration format: where an id
//! depends on configuration (which line is a device's primary path, which meter id a CJ/T 188 address has), the
//! caller says so when adding the simulator.
//!
//! - `GET /devices`: every simulated device, with its `protocol` and `kind`, where it is, its current `fault`
//!   and its counters.
//! - `GET /devices/{id}`: one of them.
//! - `PUT /devices/{id}/fault` with the JSON fault of the device's protocol (unknown keys are refused): replaces
//!   the fault. `DELETE /devices/{id}/fault`: clears it.
//!
//! The fault JSON per protocol is the simulator's own fault type: [`crate::modbus::ModbusFault`] (Modbus TCP),
//! [`crate::rtu::RtuFault`] (Modbus RTU), [`crate::cjt188::Cjt188Fault`] (a CJ/T 188 meter),
//! [`crate::hj212::Hj212Fault`] (an HJ 212 station), [`crate::mqtt::MqttFault`] (an MQTT group).
//!
//! Ids: a Modbus device is listed under its id on its primary path; a device also simulated as a slave on the
//! line of a backup path is listed a second time as `ID@LINE` (`@` never occurs in a configured id), so that
//! one path can fail alone. A CJ/T 188 meter is listed under its meter id.
//!
//! Errors are JSON `{"error": "...", "code": "..."}`: 404 `unknown_device` or `not_found`, 400 `bad_fault` (not
//! JSON for that fault, or an unknown key) or `invalid_fault` (a fault that does not fit the device, e.g. a
//! forced value for a parameter it lacks). It has no authentication and only ever listens on loopback; it is a
//! test and demo tool, not part of the server's HTTP surface (that is `waterworks-hmi`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use drivers::cjt188::Address;

use crate::cjt188::{Cjt188Sim, Cjt188SimHandle};
use crate::hj212::{Hj212Sim, Hj212SimHandle};
use crate::modbus::{ModbusSim, ModbusSimHandle};
use crate::mqtt::{MqttSim, MqttSimHandle};
use crate::rtu::{RtuSim, RtuSimHandle};

/// Why the API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the fault-injection API listens on loopback only, not on {0}")]
    NotLoopback(SocketAddr),
    #[error("the fault-injection API cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Whether the API may listen on `listen`: it has no authentication, so only on loopback.
pub fn check_listen(listen: SocketAddr) -> Result<(), ServeError> {
    if listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(ServeError::NotLoopback(listen))
    }
}

/// One simulated thing the API can break, and the simulator that plays it.
enum Target {
    ModbusTcp { sim: ModbusSimHandle, device: String },
    ModbusRtu { line: String, sim: RtuSimHandle, unit: u8 },
    Cjt188 { gateway: String, at: GatewayAt, sim: Cjt188SimHandle, address: Address },
    Hj212 { mn: String, server: SocketAddr, sim: Hj212SimHandle },
    Mqtt { broker: String, sim: MqttSimHandle },
}

/// Where a simulated CJ/T 188 gateway is reached.
#[derive(Clone)]
enum GatewayAt {
    Tcp(SocketAddr),
    Serial(String),
}

struct Entry {
    id: String,
    target: Target,
}

/// Every simulator of the process, by configured id. Built while the simulators start, then served.
#[derive(Default)]
pub struct SimControl {
    /// In the order added: Modbus TCP, RTU lines, CJ/T 188 gateways, HJ 212 stations, MQTT groups.
    entries: Vec<Entry>,
}

impl SimControl {
    fn push(&mut self, id: String, target: Target) {
        if self.entries.iter().any(|e| e.id == id) {
            // Device ids are unique; a CJ/T 188 meter id may equal a device id. The device keeps the name.
            tracing::warn!(message = "fault-injection API: id already taken, not listed", id = %id);
            return;
        }
        self.entries.push(Entry { id, target });
    }

    /// The Modbus TCP devices and valves of `sim`.
    pub fn add_modbus_tcp(&mut self, sim: &ModbusSim) {
        let handle = sim.handle();
        for status in handle.statuses() {
            self.push(status.id.clone(), Target::ModbusTcp { sim: handle.clone(), device: status.id });
        }
    }

    /// The slaves of the simulated RS-485 lines, by line id: each under its own id when the line is its primary
    /// path (`primary_line` gives the line of a device's primary path, `None` when that is no line), else as
    /// `ID@LINE`.
    pub fn add_rtu_lines(&mut self, lines: &[(String, RtuSim)], primary_line: impl Fn(&str) -> Option<String>) {
        for (line, sim) in lines {
            let handle = sim.handle();
            for slave in handle.slaves() {
                let id = if primary_line(&slave.id).as_deref() == Some(line.as_str()) {
                    slave.id
                } else {
                    format!("{}@{line}", slave.id)
                };
                let target = Target::ModbusRtu { line: line.clone(), sim: handle.clone(), unit: slave.unit_id };
                self.push(id, target);
            }
        }
    }

    /// The meters of the simulated CJ/T 188 gateways and lines, by gateway id, under their meter ids:
    /// `meters(gateway)` gives each meter's id and address.
    pub fn add_cjt188(&mut self, gateways: &[(String, Cjt188Sim)], meters: impl Fn(&str) -> Vec<(String, Address)>) {
        for (gateway, sim) in gateways {
            let at = match (sim.addr(), sim.path()) {
                (Some(addr), _) => GatewayAt::Tcp(addr),
                (None, path) => GatewayAt::Serial(path.unwrap_or_default().to_owned()),
            };
            for (id, address) in meters(gateway) {
                let target = Target::Cjt188 { gateway: gateway.clone(), at: at.clone(), sim: sim.handle(), address };
                self.push(id, target);
            }
        }
    }

    /// A simulated HJ 212 station: `id` of its `[[region.station]]`, pushing to `server`.
    pub fn add_station(&mut self, id: &str, mn: &str, server: SocketAddr, station: &Hj212Sim) {
        self.push(id.to_owned(), Target::Hj212 { mn: mn.to_owned(), server, sim: station.handle() });
    }

    /// A simulated MQTT meter group: `id` of its `[[region.mqtt]]`, publishing to `broker` (`host:port`).
    pub fn add_mqtt(&mut self, id: &str, broker: String, meters: &MqttSim) {
        self.push(id.to_owned(), Target::Mqtt { broker, sim: meters.handle() });
    }

    /// The ids listed, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.id.as_str()).collect()
    }

    /// Serves the API on `listen` (loopback only; port 0 picks a port) until the returned server is dropped.
    pub async fn serve(self, listen: SocketAddr) -> Result<ControlServer, ServeError> {
        check_listen(listen)?;
        let bind_error = |source| ServeError::Bind { addr: listen, source };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let router = router(Arc::new(self));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(message = "fault-injection API stopped", error = %error);
            }
        });
        tracing::info!(message = "fault-injection API listening", addr = %addr);
        Ok(ControlServer { addr, task: Some(task) })
    }

    fn entry(&self, id: &str) -> Result<&Entry, ControlError> {
        self.entries.iter().find(|e| e.id == id).ok_or_else(|| ControlError::UnknownDevice(id.to_owned()))
    }
}

/// A running fault-injection API. Dropping it stops it.
pub struct ControlServer {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Stops serving and waits until the server task is gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What can go wrong in a control request; each maps to a status and a stable code.
#[derive(Debug)]
enum ControlError {
    UnknownDevice(String),
    BadFault(String),
    InvalidFault(String),
    NotFound,
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ControlError::UnknownDevice(id) => {
                (StatusCode::NOT_FOUND, "unknown_device", format!("no simulated device {id:?}"))
            }
            ControlError::BadFault(e) => {
                (StatusCode::BAD_REQUEST, "bad_fault", format!("fault is not valid json for a fault: {e}"))
            }
            ControlError::InvalidFault(e) => (StatusCode::BAD_REQUEST, "invalid_fault", e),
            ControlError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".to_owned()),
        };
        (status, Json(json!({ "error": message, "code": code }))).into_response()
    }
}

fn router(control: Arc<SimControl>) -> Router {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{id}", get(show))
        .route("/devices/{id}/fault", axum::routing::put(put_fault).delete(clear_fault))
        .fallback(|| async { ControlError::NotFound })
        .with_state(control)
}

/// Adds `counters` (a JSON object) to `view`, minus the keys in `skip`.
fn merge(view: &mut Value, counters: Value, skip: &[&str]) {
    if let (Some(view), Value::Object(counters)) = (view.as_object_mut(), counters) {
        view.extend(counters.into_iter().filter(|(k, _)| !skip.contains(&k.as_str())));
    }
}

fn view(entry: &Entry) -> Value {
    let id = &entry.id;
    match &entry.target {
        Target::ModbusTcp { sim, device } => match sim.status(device) {
            Some(status) => {
                let mut view = json!(status);
                view["protocol"] = json!("modbus_tcp");
                view
            }
            None => json!({ "id": id, "protocol": "modbus_tcp" }),
        },
        Target::ModbusRtu { line, sim, unit } => {
            let mut view = json!({ "id": id, "protocol": "modbus_rtu", "line": line, "path": sim.path() });
            if let Some(status) = sim.status(*unit) {
                merge(&mut view, json!(status), &["id"]);
            }
            view
        }
        Target::Cjt188 { gateway, at, sim, address } => {
            let mut view = json!({
                "id": id, "protocol": "cjt188", "kind": "meter", "gateway": gateway, "address": address.to_string(),
                "fault": sim.fault(address), "requests": sim.requests(address), "malformed": sim.malformed(),
            });
            match at {
                GatewayAt::Tcp(addr) => view["addr"] = json!(addr),
                GatewayAt::Serial(path) => view["path"] = json!(path),
            }
            view
        }
        Target::Hj212 { mn, server, sim } => {
            let mut view = json!({ "id": id, "protocol": "hj212", "kind": "station", "mn": mn, "server": server, "fault": sim.fault() });
            merge(&mut view, json!(sim.stats()), &[]);
            view
        }
        Target::Mqtt { broker, sim } => {
            let stats = sim.stats();
            let mut view = json!({ "id": id, "protocol": "mqtt", "kind": "meter_group", "broker": broker,
                "fault": sim.fault(), "malformed_sent": stats.malformed });
            merge(&mut view, json!(stats), &["paused", "malformed"]);
            view
        }
    }
}

async fn list(State(control): State<Arc<SimControl>>) -> Json<Vec<Value>> {
    Json(control.entries.iter().map(view).collect())
}

async fn show(State(control): State<Arc<SimControl>>, Path(id): Path<String>) -> Result<Json<Value>, ControlError> {
    control.entry(&id).map(|e| Json(view(e)))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::BadFault(e.to_string()))
}

/// Sets the fault of `entry` from a JSON body; an empty body is the healthy fault (for DELETE).
fn set_fault(entry: &Entry, body: Option<&[u8]>) -> Result<(), ControlError> {
    let invalid = |e: &dyn std::fmt::Display| ControlError::InvalidFault(e.to_string());
    match &entry.target {
        Target::ModbusTcp { sim, device } => {
            let fault = body.map_or_else(|| Ok(Default::default()), parse)?;
            sim.set_fault(device, fault).map_err(|e| invalid(&e))
        }
        Target::ModbusRtu { sim, unit, .. } => {
            let fault = body.map_or_else(|| Ok(Default::default()), parse)?;
            sim.set_fault(*unit, fault).map_err(|e| invalid(&e))
        }
        Target::Cjt188 { sim, address, .. } => {
            let fault = body.map_or_else(|| Ok(Default::default()), parse)?;
            sim.set_fault(address, fault).map_err(|e| invalid(&e))
        }
        Target::Hj212 { sim, .. } => {
            let fault = body.map_or_else(|| Ok(Default::default()), parse)?;
            sim.set_fault(fault).map_err(|e| invalid(&e))
        }
        Target::Mqtt { sim, .. } => {
            sim.set_fault(body.map_or_else(|| Ok(Default::default()), parse)?);
            Ok(())
        }
    }
}

/// Takes the body as bytes rather than through `Json`, so that bad JSON is a 400 in our error format.
async fn put_fault(
    State(control): State<Arc<SimControl>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ControlError> {
    let entry = control.entry(&id)?;
    set_fault(entry, Some(&body))?;
    tracing::info!(message = "fault set through the fault-injection API", device = %id);
    Ok(Json(view(entry)))
}

async fn clear_fault(
    State(control): State<Arc<SimControl>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let entry = control.entry(&id)?;
    set_fault(entry, None)?;
    tracing::info!(message = "fault cleared through the fault-injection API", device = %id);
    Ok(Json(view(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        let everywhere = SocketAddr::from(([0, 0, 0, 0], 0));
        let error = SimControl::default().serve(everywhere).await.err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("the fault-injection API listens on loopback only, not on 0.0.0.0:0"));
        let server = SimControl::default().serve(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        assert!(server.is_ok_and(|s| s.addr.ip().is_loopback() && s.addr.port() != 0));
    }
}
