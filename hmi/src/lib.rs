//! The control-room HMI and the HTTP API: the only crate that speaks HTTP, JSON and WebSocket.
//!
//! # Layout
//! - [`router`] builds the axum `Router` over an [`actors::api::Handle`]; each route takes from [`AppState`]
//!   only the domain handle it serves (`State<FieldApi>`, `State<UsersApi>`, …, through `FromRef`);
//! - `session`: sessions, login throttling and the credential check, the authenticated-user extractor;
//!   `cookie`: the session cookie's name and form;
//! - [`serve`]: the connection loop with its limits (timeouts, the connection cap; issue 8 §3);
//! - `audit`: the audit of 403s, the journal's query and the admins' audit page (issue 8 §4);
//! - `routes`: JSON handlers; `ws`: the live stream; `metrics`: Prometheus text; `openapi`: the API document;
//! - `assets/`: the web page, compiled into the binary (no CDN; DESIGN.md §10).
//!
//! **Invariant:** every route except `/healthz`, `/login` and `POST /api/login` requires a valid session (or
//! Basic credentials), and checks the role; unknown paths are refused the same way before they are 404s.

mod audit;
pub mod client;
mod cookie;
mod error;
pub mod guard;
mod metrics;
pub mod openapi;
mod routes;
pub mod serve;
mod session;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use actors::api::{AuditApi, EventsApi, FieldApi, SystemApi, UsersApi};
use actors::metrics::Metrics;
pub use error::AppError;
pub use serve::{serve, ServerLimits};
use session::{AuthUser, Sessions, Throttle};
pub use ws::LiveLimits;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HmiConfig {
    /// Mark the session cookie `Secure` (set when served behind TLS).
    pub secure_cookies: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// How the live stream finds clients that stopped reading (issue 8 §3).
    pub live: LiveLimits,
    /// Password checks (argon2) allowed at once; more are refused with 503 (issue 8 §1).
    pub max_concurrent_logins: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (issue 8 §1); empty: trust none.
    pub trusted_proxies: Vec<client::Cidr>,
}

impl Default for HmiConfig {
    fn default() -> Self {
        HmiConfig {
            secure_cookies: false,
            session_idle: Duration::from_secs(8 * 3600),
            live: LiveLimits::default(),
            max_concurrent_logins: guard::default_max_concurrent(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the routes share. A route that needs one domain extracts that domain's handle alone
/// (`State<FieldApi>`); only login, logout and the session extractor take the whole state.
#[derive(Clone)]
pub struct AppState {
    api: actors::api::Handle,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    throttle: Arc<Throttle>,
    guard: Arc<guard::LoginGuard>,
    config: Arc<HmiConfig>,
}

impl FromRef<AppState> for FieldApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.field().clone()
    }
}

impl FromRef<AppState> for EventsApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.events().clone()
    }
}

impl FromRef<AppState> for UsersApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.users().clone()
    }
}

impl FromRef<AppState> for SystemApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.system().clone()
    }
}

impl FromRef<AppState> for AuditApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.audit().clone()
    }
}

impl FromRef<AppState> for Arc<guard::LoginGuard> {
    fn from_ref(state: &AppState) -> Self {
        state.guard.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const LOGIN_HTML: &str = include_str!("../assets/login.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Security headers on every response: no framing, no sniffing, only our own scripts.
async fn security_headers(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The HMI page. A browser without a session is sent to the login page; anything else gets 401 JSON.
async fn index(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    match <AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &state).await {
        Ok(_) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response(),
        Err(AppError::Unauthenticated) if wants_html(&parts.headers) => Redirect::to("/login").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn login_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_HTML).into_response()
}

async fn app_js(_user: AuthUser) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
}

async fn app_css(_user: AuthUser) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

/// Unknown paths: 401 without a session (nothing is revealed), 404 with one.
async fn not_found(_user: AuthUser) -> AppError {
    AppError::NotFound("no such path".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// Builds the whole HTTP surface.
pub fn router(handle: actors::api::Handle, config: HmiConfig) -> Router {
    let state = AppState {
        metrics: handle.metrics_arc(),
        api: handle,
        sessions: Arc::new(Sessions::new(config.session_idle)),
        throttle: Arc::new(Throttle::default()),
        guard: Arc::new(guard::LoginGuard::new(config.max_concurrent_logins)),
        config: Arc::new(config),
    };
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/ws", get(ws::upgrade))
        .route("/api/login", post(routes::login))
        .route("/api/logout", post(routes::logout))
        .route("/api/me", get(routes::me))
        .route("/api/openapi.json", get(routes::openapi))
        .route("/api/devices", get(routes::devices))
        .route("/api/devices/{id}", get(routes::device))
        .route("/api/readings", get(routes::readings))
        .route("/api/events", get(routes::events))
        .route("/api/valves/{id}/command", post(routes::command_valve))
        .route("/api/valves/{id}/reset", post(routes::reset_valve))
        .route("/api/users", get(routes::users).post(routes::create_user))
        .route("/api/audit", get(audit::query))
        .route("/audit", get(audit::page))
        .route("/assets/audit.js", get(audit::script))
        .route("/assets/audit.css", get(audit::style))
        .route("/api/system/supervision", get(routes::supervision))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit_denials))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}
