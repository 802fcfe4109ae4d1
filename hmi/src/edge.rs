//! The edge of the HTTP surface (issue 8 §5): what every request passes before it is routed.
//!
//! In this order, so that a stranger learns nothing from the answer:
//! 1. **Methods.** The server serves `GET`, `HEAD` and `POST` without a session (health, the login page, the
//!    login). Every other method (`TRACE`, `TRACK`, `PUT`, `DELETE`, methods that do not exist) must be
//!    authenticated first: a request without a valid session or Basic credentials gets 401 before routing, so
//!    a 405 never tells a stranger which paths exist. (Authenticated, the router answers as usual: 405 for a
//!    method a path does not serve.)
//! 2. **Body size.** A declared body (`Content-Length`) over [`MAX_BODY`] gets 413 at once, before it is read;
//!    a chunked body that grows past the limit gets 413 from the JSON extractor (`routes::bad_json`).
//! 3. **Origin** on state-changing requests (`POST`, `PUT`, `PATCH`, `DELETE`): a browser names the page's
//!    origin in `Origin`. A request whose `Origin` (or, without one, the origin of its `Referer`) is not the
//!    server's own is refused with 403; so is one that carries the session cookie and names no origin at all
//!    (a browser always does). Scripts using Basic credentials or nothing send no cookie and pass: they are not
//!    browsers, and no other site can make a browser send their credentials. The server's own origin is
//!    `[server] public_origin` when set (behind a proxy that rewrites `Host`), otherwise the request's `Host`
//!    (with `https` when native TLS is on). Refusals are counted and logged (rate-limited); one that carries a
//!    live session is audited as `request.refused` under that user (another site tried to act as them).
//!    Refusals without a session are not audited, so strangers cannot fill the audit.
//! 4. **`WWW-Authenticate`** on 401s (RFC 9110 §11.6.1), except those answering a browser's script: a request
//!    with fetch metadata (`Sec-Fetch-Mode`) and no `Authorization` header gets none, because a Basic challenge
//!    there would make the browser pop up its own password dialog over the HMI's login page. Scripts,
//!    Prometheus and every request that tried Basic get `Basic realm="waterworks", charset="UTF-8"`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use actors::metrics::Metrics;

use crate::error::AppError;
use crate::session::AuthUser;
use crate::AppState;

/// The largest request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// The challenge sent with 401s (RFC 7617).
pub const BASIC_CHALLENGE: &str = r#"Basic realm="waterworks", charset="UTF-8""#;

/// What the edge refused, for `/metrics`.
#[derive(Default)]
pub struct EdgeCounters {
    /// State-changing requests refused for their origin.
    pub origin_refused: AtomicU64,
    /// Requests refused with 413 for their body's size.
    pub body_too_large: AtomicU64,
}

/// An origin as browsers send it: scheme, lower-case host, port (the scheme's default when not written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing path, as in a `Referer`, is ignored). `None` for `null`, other
    /// schemes and anything malformed.
    pub fn parse(text: &str) -> Option<Origin> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next()?;
        if authority.contains('@') {
            return None;
        }
        let (host, port) = split_host_port(authority, default)?;
        Some(Origin { scheme, host, port })
    }

    /// The same origin written out (`https://scada.example`, `http://127.0.0.1:8080`).
    pub fn text(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.port == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::str::FromStr for Origin {
    type Err = String;
    /// A configured origin: `scheme://host[:port]`, a trailing `/` allowed, nothing else.
    fn from_str(s: &str) -> Result<Origin, String> {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        let rest = trimmed.split_once("://").map_or("", |(_, r)| r);
        match Origin::parse(trimmed) {
            Some(o) if !rest.contains(['/', '?', '#']) => Ok(o),
            _ => Err(format!("{s:?} is not an origin like \"https://scada.example\" (scheme, host, optional port)")),
        }
    }
}

/// `host[:port]` (IPv6 in brackets) with the host lower-cased; `default` when no port is written.
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), default),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `claimed` is this server: the configured public origin, or else the request's `Host` (any scheme
/// without native TLS, since a proxy in front may speak HTTPS to the browser; only `https` with it).
pub fn is_own_origin(claimed: &Origin, headers: &HeaderMap, public: Option<&Origin>, tls: bool) -> bool {
    if let Some(public) = public {
        return claimed == public;
    }
    if tls && claimed.scheme != "https" {
        return false;
    }
    let default = if claimed.scheme == "https" { 443 } else { 80 };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    split_host_port(host, default).is_some_and(|(host, port)| host == claimed.host && port == claimed.port)
}

/// The origin a request names: `Origin`, or the origin of its `Referer` when there is no `Origin`.
/// `Err(())` when a header is there but names no usable origin (`Origin: null`).
fn claimed_origin(headers: &HeaderMap) -> Result<Option<Origin>, ()> {
    if let Some(v) = headers.get(header::ORIGIN) {
        return v.to_str().ok().and_then(Origin::parse).map(Some).ok_or(());
    }
    if let Some(v) = headers.get(header::REFERER) {
        return v.to_str().ok().and_then(Origin::parse).map(Some).ok_or(());
    }
    Ok(None)
}

fn state_changing(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

/// Methods a stranger may use at all (on the public paths).
fn public_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::POST)
}

/// Whether a 401 to this request should carry the Basic challenge (see the module text).
fn wants_challenge(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || !headers.contains_key("sec-fetch-mode")
}

/// The middleware (see the module text).
pub async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let challenge = wants_challenge(request.headers());
    let mut response = check_and_run(state, request, next).await;
    if challenge && response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
    }
    response
}

async fn check_and_run(state: AppState, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let mut user = None;
    if !public_method(&parts.method) {
        match AuthUser::from_request_parts(&mut parts, &state).await {
            Ok(u) => user = Some(u),
            Err(e) => return e.into_response(),
        }
    }
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    if declared.and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > MAX_BODY as u64) {
        Metrics::inc(&state.edge.body_too_large);
        return AppError::PayloadTooLarge.into_response();
    }
    if state_changing(&parts.method) {
        if let Err(refusal) = check_origin(&state, &mut parts, user).await {
            return refusal;
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Refuses a state-changing request that another site's page may have sent (see the module text).
async fn check_origin(
    state: &AppState,
    parts: &mut axum::http::request::Parts,
    user: Option<AuthUser>,
) -> Result<(), Response> {
    let cookie = crate::session::session_token(&parts.headers, state.config.cookie_name()).is_some();
    let why = match claimed_origin(&parts.headers) {
        Ok(Some(claimed)) => {
            if is_own_origin(&claimed, &parts.headers, state.config.public_origin.as_ref(), state.config.tls) {
                return Ok(());
            }
            format!("Origin {} is not this server", claimed.text())
        }
        Err(()) => "Origin names no site (null or malformed)".to_owned(),
        Ok(None) if cookie => "a browser session without Origin".to_owned(),
        Ok(None) => return Ok(()),
    };
    // Whose session it was, if it is one: that user is audited as the one another site tried to act as.
    let user = match user {
        Some(u) => Some(u),
        None if cookie => AuthUser::session_only(parts, state).await,
        None => None,
    };
    let n = state.edge.origin_refused.fetch_add(1, Ordering::Relaxed) + 1;
    let path = parts.uri.path().chars().take(128).collect::<String>();
    let method = parts.method.as_str().chars().take(16).collect::<String>();
    let client = crate::session::client_ip(parts, state);
    if n.is_power_of_two() || user.is_some() {
        tracing::warn!(
            message = "Cross-origin request refused.",
            reason = %why,
            method = %method,
            path = %path,
            username = user.as_ref().map(|u| u.user.username.as_str()),
            client = ?client,
            total = n
        );
    }
    if let Some(u) = &user {
        let detail = format!("{method} {path}: {why}; from {}", client.map_or("unknown".to_owned(), |i| i.to_string()));
        if let Err(e) = state.api.users().audit(&u.user.username, "request.refused", &path, &detail, false).await {
            tracing::warn!(message = "Audit of a refused request not stored.", error = %e);
        }
    }
    Err(AppError::Forbidden("cross-origin request refused".into()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn origins_parse_with_default_ports_and_lower_case_hosts() {
        let o = Origin::parse("HTTPS://SCADA.example").unwrap();
        assert_eq!((o.scheme.as_str(), o.host.as_str(), o.port), ("https", "scada.example", 443));
        assert_eq!(Origin::parse("http://127.0.0.1:8080/login?x").unwrap().port, 8080);
        assert_eq!(Origin::parse("http://[::1]:9000").unwrap().host, "[::1]");
        for bad in ["null", "", "ftp://x", "http://", "http://a:b", "http://u@evil", "http://a b"] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
        assert_eq!(Origin::parse("https://scada.example:443").unwrap().text(), "https://scada.example");
        assert!("https://scada.example".parse::<Origin>().is_ok());
        assert!("https://scada.example/".parse::<Origin>().is_ok());
        assert!("https://scada.example/login".parse::<Origin>().is_err());
        assert!("scada.example".parse::<Origin>().is_err());
    }

    #[test]
    fn own_origin_is_the_host_or_the_configured_public_origin() {
        let own = Origin::parse("http://127.0.0.1:8080").unwrap();
        assert!(is_own_origin(&own, &host("127.0.0.1:8080"), None, false));
        assert!(!is_own_origin(&own, &host("127.0.0.1:8081"), None, false));
        assert!(!is_own_origin(
            &Origin::parse("http://evil.example:8080").unwrap(),
            &host("127.0.0.1:8080"),
            None,
            false
        ));
        // Behind a proxy the browser speaks https to the proxy; the Host it forwards decides.
        let via_proxy = Origin::parse("https://scada.example").unwrap();
        assert!(is_own_origin(&via_proxy, &host("scada.example"), None, false));
        assert!(is_own_origin(&via_proxy, &host("SCADA.example:443"), None, false));
        // With native TLS only https is this server.
        assert!(!is_own_origin(
            &Origin::parse("http://scada.example:443").unwrap(),
            &host("scada.example"),
            None,
            true
        ));
        // A configured public origin is the only one, whatever Host says.
        let public = Origin::parse("https://scada.example").unwrap();
        assert!(is_own_origin(&via_proxy, &host("127.0.0.1:8080"), Some(&public), false));
        assert!(!is_own_origin(&own, &host("127.0.0.1:8080"), Some(&public), false));
        assert!(!is_own_origin(&own, &HeaderMap::new(), None, false));
    }
}
