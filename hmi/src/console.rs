//! The alarm console's pages and files (issue 9 §4): the alarm banner every page includes
//! (`/assets/banner.js`, `/assets/banner.css`) and the alarm summary page `/alarms` with its journal view
//! (`/assets/alarms.js`, `/assets/alarms.css`), for every role that sees the plant; the actions on it are
//! the API's (`routes::alarms`), which checks the role again.

use axum::extract::{Request, State};
use axum::response::Response;

use crate::error::AppError;
use crate::pages::{asset, page, Kind};
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

const ALARMS_HTML: &str = include_str!("../assets/alarms.html");
const ALARMS_JS: &str = include_str!("../assets/alarms.js");
const ALARMS_CSS: &str = include_str!("../assets/alarms.css");
const BANNER_JS: &str = include_str!("../assets/banner.js");
const BANNER_CSS: &str = include_str!("../assets/banner.css");

pub async fn alarms_page(State(state): State<AppState>, request: Request) -> Response {
    page(&state, request, VIEW_ROLES, ALARMS_HTML).await
}

pub async fn alarms_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, ALARMS_JS)
}

pub async fn alarms_css(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Css, ALARMS_CSS)
}

pub async fn banner_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, BANNER_JS)
}

pub async fn banner_css(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Css, BANNER_CSS)
}
