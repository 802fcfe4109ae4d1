//! Pages and their static files, served one way everywhere: a page needs a session and one of its roles (a
//! browser without a session goes to `/login`, one whose password must change goes to `/account`); a script
//! or style sheet needs the same. New pages add their `include_str!` constants and three one-line handlers
//! that call [`page`] and [`asset`].
//!
//! Vendored libraries (`assets/vendor/`, see its README) are served here too, to every role that may view the
//! HMI: `/assets/vendor/uplot.js` and `/assets/vendor/uplot.css` (issue 9 §4, trends and charts).

use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

use actors::model::Role;

use crate::error::AppError;
use crate::routes::VIEW_ROLES;
use crate::session::AuthUser;
use crate::AppState;

/// What a static file is, for its `Content-Type`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Html,
    Js,
    Css,
}

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Kind::Html => "text/html; charset=utf-8",
            Kind::Js => "text/javascript; charset=utf-8",
            Kind::Css => "text/css; charset=utf-8",
        }
    }
}

/// A page for `roles`: the HTML for a user with one of them, a redirect for a browser that must log in (or
/// change a password first), the error as JSON otherwise.
pub async fn page(state: &AppState, request: Request, roles: &[Role], html: &'static str) -> Response {
    let (mut parts, _) = request.into_parts();
    match <AuthUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await {
        Ok(user) => match user.require(roles) {
            Ok(()) => ([(header::CONTENT_TYPE, Kind::Html.content_type())], html).into_response(),
            Err(e) => e.into_response(),
        },
        Err(AppError::Unauthenticated) if crate::wants_html(&parts.headers) => Redirect::to("/login").into_response(),
        Err(AppError::PasswordChangeRequired) if crate::wants_html(&parts.headers) => {
            Redirect::to("/account").into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A page's script or style sheet, for the same roles as the page.
pub fn asset(user: &AuthUser, roles: &[Role], kind: Kind, body: &'static str) -> Result<Response, AppError> {
    user.require(roles)?;
    Ok(([(header::CONTENT_TYPE, kind.content_type())], body).into_response())
}

const UPLOT_JS: &str = include_str!("../assets/vendor/uplot.min.js");
const UPLOT_CSS: &str = include_str!("../assets/vendor/uplot.min.css");

pub async fn uplot_js(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Js, UPLOT_JS)
}

pub async fn uplot_css(user: AuthUser) -> Result<Response, AppError> {
    asset(&user, VIEW_ROLES, Kind::Css, UPLOT_CSS)
}
