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
//! **Invariant:** every route except `/healthz`, `/login` (with `/assets/login.js` and `login.css`) and
//! `POST /api/login` requires a valid session (or
//! Basic credentials), and checks the role; unknown paths are refused the same way before they are 404s, and
//! methods other than GET, HEAD and POST before they are routed (`edge`, which also checks the body size and
//! the origin of state-changing requests).

// The OpenAPI document is one `json!` literal; with every route of issues 8 §2 and §4 it nests deeper than
// serde_json's macro expands by default.
#![recursion_limit = "256"]

mod accounts;
mod alarm_kpi;
mod audit;
pub mod client;
mod console;
mod cookie;
pub mod edge;
mod error;
pub mod guard;
mod metrics;
pub mod openapi;
pub mod pages;
mod redact;
mod routes;
pub mod serve;
mod session;
pub mod tls;
mod trends;
mod usage;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use actors::api::{AuditApi, EventsApi, FieldApi, SystemApi, UsersApi};
use actors::metrics::Metrics;
pub use error::AppError;
pub use serve::{serve, serve_with, ServerLimits};
use session::{AuthUser, Throttle};
pub use ws::LiveLimits;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HmiConfig {
    /// Mark the session cookie `Secure` (set when served behind TLS); it is then named `__Host-session`.
    pub secure_cookies: bool,
    /// The server speaks TLS itself (issue 8 §5): responses carry HSTS, the cookie is `Secure`.
    pub tls: bool,
    /// The origin browsers see (`https://scada.example`) when a proxy in front does not pass `Host` through;
    /// state-changing requests must name it (issue 8 §5). `None`: the request's `Host` is the server's origin.
    pub public_origin: Option<edge::Origin>,
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
            tls: false,
            public_origin: None,
            session_idle: Duration::from_secs(8 * 3600),
            live: LiveLimits::default(),
            max_concurrent_logins: guard::default_max_concurrent(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl HmiConfig {
    /// Whether the session cookie is `Secure` (and `__Host-` prefixed).
    pub fn secure(&self) -> bool {
        self.secure_cookies || self.tls
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        cookie::name(self.secure())
    }
}

/// What the routes share. A route that needs one domain extracts that domain's handle alone
/// (`State<FieldApi>`); only login, logout, the session extractor and the password routes (which need the
/// throttle and the login guard) take the whole state.
#[derive(Clone)]
pub struct AppState {
    api: actors::api::Handle,
    metrics: Arc<Metrics>,
    throttle: Arc<Throttle>,
    guard: Arc<guard::LoginGuard>,
    edge: Arc<edge::EdgeCounters>,
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

impl FromRef<AppState> for actors::api::AlarmsApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.alarms().clone()
    }
}

impl FromRef<AppState> for actors::api::UsageApi {
    fn from_ref(state: &AppState) -> Self {
        state.api.usage().clone()
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

impl FromRef<AppState> for Arc<edge::EdgeCounters> {
    fn from_ref(state: &AppState) -> Self {
        state.edge.clone()
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
const LOGIN_JS: &str = include_str!("../assets/login.js");
const LOGIN_CSS: &str = include_str!("../assets/login.css");

/// The Content-Security-Policy of every response (issue 8 §5): scripts and styles only from our own files (no
/// inline script, no inline event handler, no `style` attribute, no `eval`), no plugins, no framing, forms
/// post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// `Strict-Transport-Security` when the server speaks TLS itself: browsers use HTTPS only, for a year.
pub const HSTS: &str = "max-age=31536000";

/// Security headers on every response: no framing, no sniffing, only our own scripts; HSTS over native TLS.
/// `Referrer-Policy: same-origin`, not `no-referrer`: with `no-referrer` a browser sends `Origin: null` on the
/// page's own POSTs, which the origin check (`edge`) must refuse.
async fn security_headers(
    State(config): State<Arc<HmiConfig>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    h.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    if config.tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, header::HeaderValue::from_static(HSTS));
    }
    response
}

pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The HMI page. A browser without a session is sent to the login page; anything else gets 401 JSON.
async fn index(State(state): State<AppState>, request: Request) -> Response {
    pages::page(&state, request, routes::VIEW_ROLES, INDEX_HTML).await
}

async fn login_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_HTML).into_response()
}

/// The login page's own script and styles: public, like the page.
async fn login_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], LOGIN_JS).into_response()
}

async fn login_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], LOGIN_CSS).into_response()
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

/// A method a path does not serve: 401 without a session (as for unknown paths), 405 with one.
async fn method_not_allowed(_user: AuthUser) -> AppError {
    AppError::MethodNotAllowed
}

/// Builds the whole HTTP surface.
pub fn router(handle: actors::api::Handle, config: HmiConfig) -> Router {
    let state = AppState {
        metrics: handle.metrics_arc(),
        api: handle,
        throttle: Arc::new(Throttle::default()),
        guard: Arc::new(guard::LoginGuard::new(config.max_concurrent_logins)),
        edge: Arc::new(edge::EdgeCounters::default()),
        config: Arc::new(config),
    };
    let config = state.config.clone();
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/assets/login.js", get(login_js))
        .route("/assets/login.css", get(login_css))
        .route("/assets/vendor/uplot.js", get(pages::uplot_js))
        .route("/assets/vendor/uplot.css", get(pages::uplot_css))
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
        .route("/admin", get(accounts::admin_page))
        .route("/assets/admin.js", get(accounts::admin_js))
        .route("/account", get(accounts::account_page))
        .route("/assets/account.js", get(accounts::account_js))
        .route("/assets/accounts-common.js", get(accounts::common_js))
        .route("/assets/accounts.css", get(accounts::accounts_css))
        .route("/api/me/password", post(accounts::change_password))
        .route("/api/me/totp", post(accounts::totp_enrol))
        .route("/api/me/totp/confirm", post(accounts::totp_confirm))
        .route("/api/users/{name}/totp", axum::routing::delete(accounts::totp_remove))
        .route("/api/users", get(routes::users).post(routes::create_user))
        .route("/api/users/{name}", axum::routing::delete(accounts::delete))
        .route("/api/users/{name}/password", post(accounts::reset_password))
        .route("/api/users/{name}/disable", post(accounts::disable))
        .route("/api/users/{name}/enable", post(accounts::enable))
        .route("/api/users/{name}/role", post(accounts::set_role))
        .route("/api/sessions", get(accounts::sessions))
        .route("/api/sessions/{id}", axum::routing::delete(accounts::revoke_session))
        .route("/api/audit", get(audit::query))
        .route("/audit", get(audit::page))
        .route("/assets/audit.js", get(audit::script))
        .route("/assets/audit.css", get(audit::style))
        .route("/api/system/supervision", get(routes::supervision))
        .route("/api/alarms", get(routes::alarms::standing))
        .route("/api/alarms/journal", get(routes::alarms::journal))
        .route("/api/alarms/{id}/ack", post(routes::alarms::acknowledge))
        .route("/api/alarms/{id}/shelve", post(routes::alarms::shelve))
        .route("/api/alarms/ack", post(routes::alarms::acknowledge_many))
        .route("/api/alarms/{id}/unshelve", post(routes::alarms::unshelve))
        .route("/api/alarms/{id}/out-of-service", post(routes::alarms::out_of_service))
        .route("/api/alarms/{id}/return-to-service", post(routes::alarms::return_to_service))
        .route("/alarms", get(console::alarms_page))
        .route("/assets/alarms.js", get(console::alarms_js))
        .route("/assets/alarms.css", get(console::alarms_css))
        .route("/assets/banner.js", get(console::banner_js))
        .route("/assets/banner.css", get(console::banner_css))
        .route("/api/alarm-settings", get(routes::alarm_settings::get).put(routes::alarm_settings::put))
        .route("/alarm-settings", get(routes::alarm_settings::page))
        .route("/assets/alarm-settings.js", get(routes::alarm_settings::script))
        .route("/assets/alarm-settings.css", get(routes::alarm_settings::style))
        .route("/api/usage", get(usage::usage))
        .route("/api/zones", get(usage::zones))
        .route("/usage", get(usage::usage_page))
        .route("/zones", get(usage::zones_page))
        .route("/assets/usage.js", get(usage::script))
        .route("/assets/usage.css", get(usage::style))
        // Trends and devices (issue 9 §4).
        .route("/api/series", get(trends::series))
        .route("/trends", get(trends::trends_page))
        .route("/devices", get(trends::devices_page))
        .route("/devices/{id}", get(trends::device_page))
        .route("/assets/trends.js", get(trends::trends_js))
        .route("/assets/devices.js", get(trends::devices_js))
        .route("/assets/console-common.js", get(trends::console_js))
        .route("/assets/console.css", get(trends::console_css))
        // Alarm KPIs (issue 9 §3).
        .route("/api/alarms/kpi", get(alarm_kpi::api))
        .route("/alarm-kpi", get(alarm_kpi::page))
        .route("/assets/alarm-kpi.js", get(alarm_kpi::script))
        .route("/assets/alarm-kpi.css", get(alarm_kpi::style))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside `edge`: the origin refusals `edge` audits itself (`request.refused`) are not audited twice.
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit_denials))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::edge))
        .layer(axum::middleware::from_fn_with_state(config, security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(edge::MAX_BODY))
        .with_state(state)
}
