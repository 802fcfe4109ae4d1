//! Sessions, login throttling and the authenticated-user extractor (R-G4).
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie. The store keeps only a hash of
//! it, with the user and an expiry that moves with use (`server.session_idle`), so a restart logs nobody out and
//! nothing in the store opens a session (issue 8 §2; `actors::api::UsersApi` owns them). A user whose password
//! was set by someone else may only change it until they do (403 `password_change_required`).
//! Scripts and Prometheus may instead send HTTP Basic credentials, checked like a login and throttled alike,
//! then cached for a minute (see [`crate::guard::BasicCache`]).
//! Every request re-reads the user's account, so a disabled account or a changed role takes effect at once.
//!
//! Failed logins are counted per (username, client address) pair: after `FREE_FAILURES` each further attempt
//! of that pair is refused with 429 until a delay that doubles per failure has passed; every failure is
//! logged, counted and audited. Password checks hold a permit of the [`crate::guard::LoginGuard`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use actors::api::UserInfo;
use actors::metrics::Metrics;
use actors::model::Role;

use crate::error::AppError;
use crate::AppState;

/// Failures of one (user, address) pair allowed before its attempts are delayed.
const FREE_FAILURES: u32 = 3;
/// A pair without an attempt for this long is forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest delay between two attempts of one pair.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// Pairs remembered at most (a bounded table whatever an attacker sends).
const MAX_PAIRS: usize = 100_000;
/// Characters of a username kept in the throttle key.
const MAX_KEY_CHARS: usize = 64;

/// The throttle's key: who is tried from where. Failures are never pooled per user alone or per address alone,
/// so an attacker cannot lock a real user out (OWASP: lockout as denial of service).
type PairKey = (String, Option<IpAddr>);

struct PairRecord {
    /// Attempts counted as failures so far (an attempt is counted when it starts, see [`Throttle::begin`]).
    failures: u32,
    last: Instant,
}

/// An attempt reserved by [`Throttle::begin`]: already counted as a failure until it is resolved.
pub struct Attempt {
    key: PairKey,
    /// Failures of this pair including this attempt.
    pub failures: u32,
}

/// Failed-login bookkeeping per (username, client address) pair, with progressive delays.
///
/// After `FREE_FAILURES` failures of a pair, each further attempt of that pair must wait a delay that doubles
/// per failure (1 s, 2 s, 4 s, ... up to `MAX_DELAY`); a success forgets the pair. An attempt counts as a
/// failure from the moment it starts, under the lock, so simultaneous guesses cannot all slip in before the
/// first one fails. A correct password from another address (or for another user) is never refused.
#[derive(Default)]
pub struct Throttle {
    pairs: Mutex<HashMap<PairKey, PairRecord>>,
}

impl Throttle {
    fn delay(failures: u32) -> Duration {
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << (failures - FREE_FAILURES).min(12)).min(MAX_DELAY)
    }

    fn key(username: &str, ip: Option<IpAddr>) -> PairKey {
        // Long attacker-chosen names must not grow the table: only a bounded prefix is kept.
        (username.chars().take(MAX_KEY_CHARS).collect(), ip)
    }

    /// Starts an attempt: refused with the seconds to wait while this pair is delayed, otherwise counted as a
    /// failure at once (resolve it with [`Throttle::succeeded`] or [`Throttle::refund`]).
    pub fn begin(&self, username: &str, ip: Option<IpAddr>) -> Result<Attempt, u64> {
        let key = Self::key(username, ip);
        let mut table = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if table.get(&key).is_some_and(|r| now.duration_since(r.last) > FAILURE_WINDOW) {
            table.remove(&key);
        }
        if let Some(r) = table.get(&key) {
            let until = r.last + Self::delay(r.failures);
            if until > now {
                return Err(until.duration_since(now).as_secs_f64().ceil().max(1.0) as u64);
            }
        } else if table.len() >= MAX_PAIRS {
            table.retain(|_, r| now.duration_since(r.last) <= FAILURE_WINDOW);
            if table.len() >= MAX_PAIRS {
                // Full of live pairs (a flood): forget the stalest rather than refuse everyone.
                if let Some(oldest) = table.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| k.clone()) {
                    table.remove(&oldest);
                }
            }
        }
        let r = table.entry(key.clone()).or_insert(PairRecord { failures: 0, last: now });
        r.failures += 1;
        r.last = now;
        Ok(Attempt { key, failures: r.failures })
    }

    /// The attempt succeeded: the pair starts afresh.
    pub fn succeeded(&self, attempt: Attempt) {
        self.pairs.lock().unwrap_or_else(|p| p.into_inner()).remove(&attempt.key);
    }

    /// The attempt was never decided (no permit, an internal error): it does not count.
    pub fn refund(&self, attempt: Attempt) {
        let mut table = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = table.get_mut(&attempt.key) {
            r.failures = r.failures.saturating_sub(1);
            if r.failures == 0 {
                table.remove(&attempt.key);
            }
        }
    }
}

/// The client address (see [`crate::client`]), when the server was started with connect info.
pub fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    crate::client::client_address(peer, &parts.headers, &state.config.trusted_proxies)
}

/// The client's address as an extractor (absent when the server runs without connect info).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, state)))
    }
}

/// The session token from the cookie named `name` (see [`crate::cookie::name`]), if any.
pub fn session_token(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Standard base64 decoding (RFC 4648), enough for Basic credentials.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// An authenticated user. Extracting it refuses the request with 401 when there is no valid session.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: UserInfo,
    /// The session token, when authenticated by cookie.
    pub token: Option<String>,
    /// The session's id (as lists show it), when authenticated by cookie.
    pub session_id: Option<String>,
}

/// What a user who must change their password may still do: change it, see who they are, sign out, and load
/// the page that changes it.
fn allowed_before_password_change(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    matches!(
        (method, path),
        (&Method::POST, "/api/me/password")
            | (&Method::GET, "/api/me")
            | (&Method::POST, "/api/logout")
            | (&Method::GET, "/account")
            | (&Method::GET, "/assets/account.js")
            | (&Method::GET, "/assets/accounts-common.js")
            | (&Method::GET, "/assets/accounts.css")
    )
}

impl AuthUser {
    /// Refuses with 403 unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("role {} may not do this", self.user.role)))
        }
    }
}

impl AuthUser {
    /// The user of the request's live session cookie, if any; never checks Basic credentials (no argon2).
    pub async fn session_only(parts: &Parts, state: &AppState) -> Option<AuthUser> {
        let token = session_token(&parts.headers, state.config.cookie_name())?;
        let (session, user) = state.api.users().session(&token, state.config.session_idle).await.ok()??;
        Some(AuthUser { user, token: Some(token), session_id: Some(session.id) })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = authenticate(parts, state).await?;
        // Who this request is, should it end in 403 (`crate::audit::audit_denials`).
        crate::audit::authenticated(&user.user);
        if user.user.must_change_password && !allowed_before_password_change(&parts.method, parts.uri.path()) {
            return Err(AppError::PasswordChangeRequired);
        }
        Ok(user)
    }
}

/// The user of a session cookie, or of Basic credentials (cached, or checked like a login).
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<AuthUser, AppError> {
    if let Some(token) = session_token(&parts.headers, state.config.cookie_name()) {
        if let Some((session, user)) = state.api.users().session(&token, state.config.session_idle).await? {
            return Ok(AuthUser { user, token: Some(token), session_id: Some(session.id) });
        }
    }
    if let Some((username, password)) = basic_credentials(&parts.headers) {
        // The cache and the account know a user by the one normalised name (issue 8 §2).
        let username = actors::policy::normalise_username(&username).unwrap_or(username);
        // Credentials that verified within the last minute are let in without another argon2 run; the
        // account is still re-read, so a disabled account is refused at once.
        if state.guard.basic_cache.hit(&username, &password) {
            Metrics::inc(&state.guard.basic_cache_hits);
            return match state.api.users().user(&username)? {
                Some(user) => Ok(AuthUser { user, token: None, session_id: None }),
                None => {
                    state.guard.basic_cache.forget_user(&username);
                    Err(AppError::Unauthenticated)
                }
            };
        }
        let ip = client_ip(parts, state);
        // Basic credentials carry no second factor: a user with TOTP gets `totp_required` here.
        let user = check_login(state, &username, &password, None, ip).await?;
        state.guard.basic_cache.insert(&username, &password);
        audit_basic(state, &user, ip).await;
        return Ok(AuthUser { user, token: None, session_id: None });
    }
    Metrics::inc(&state.metrics.bad_requests);
    Err(AppError::Unauthenticated)
}

/// Audits Basic credentials that were checked: once per cache fill (a password check), not per request, so at
/// most once a minute per credential while a script keeps sending them (issue 8 §4).
async fn audit_basic(state: &AppState, user: &UserInfo, ip: Option<IpAddr>) {
    let ttl = crate::guard::BASIC_CACHE_TTL.as_secs();
    let detail = format!("HTTP Basic credentials verified (cached {ttl} s) from {}", shown(ip));
    if let Err(e) = state.api.audit().record(&user.username, "login.basic", &user.username, &detail, true).await {
        tracing::warn!(message = "Audit of a Basic login not stored.", error = %e);
    }
}

/// A client address as the audit shows it.
fn shown(ip: Option<IpAddr>) -> String {
    ip.map_or("unknown".to_owned(), |i| i.to_string())
}

/// Refuses a credential field longer than `max` (characters of a user name, bytes of a password): 400, counted,
/// logged with the length only (the text itself is junk or an attack).
fn too_long(
    state: &AppState,
    (field, unit): (&str, &str),
    len: usize,
    max: usize,
    ip: Option<IpAddr>,
) -> Result<(), AppError> {
    if len <= max {
        return Ok(());
    }
    let metrics = &state.metrics;
    Metrics::inc(&metrics.bad_requests);
    let n = metrics.limits.input_too_long.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    tracing::warn!(message = "Login refused: a field is too long.", field, len, max, client = ?ip, total = n);
    Err(AppError::BadRequest(format!("the {field} is longer than {max} {unit}")))
}

/// Audits a login refused before any password check: repeatable, so a flood of the same refusal is one entry
/// with a count. `username` is within its limit (a throttled login's); an over-long one is not recorded at all
/// (`None`: junk, and it would make every entry of a flood distinct), only the client address, as resolved
/// through `trusted_proxies`. The refusal is answered at once, without waiting for the entry's commit: a
/// throttled burst must not last longer (and outlive its own delays) because each refusal waits for the store.
fn audit_refusal(state: &AppState, username: Option<&str>, action: &'static str, ip: Option<IpAddr>, why: &str) {
    let (actor, target, detail) = match username {
        Some(name) => (name.to_owned(), name.to_owned(), format!("{why}; from {}", shown(ip))),
        None => ("-".to_owned(), format!("client {}", shown(ip)), why.to_owned()),
    };
    let audit = state.api.audit().clone();
    tokio::spawn(async move {
        if let Err(e) = audit.record_repeatable(&actor, action, &target, &detail, false).await {
            tracing::warn!(message = "Audit of a refused login not stored.", action, error = %e);
        }
    });
}

/// Checks credentials with throttling, a bounded number of concurrent checks, logging, counting and auditing;
/// shared by login and Basic auth.
pub async fn check_login(
    state: &AppState,
    username: &str,
    password: &str,
    totp: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<UserInfo, AppError> {
    // Over-long credentials are refused before they reach the throttle, the audit or the store (issue 8 §3).
    let long_name = too_long(
        state,
        ("username", "characters"),
        username.chars().count(),
        actors::model::user::MAX_USERNAME_CHARS,
        ip,
    );
    let long = long_name.and_then(|()| {
        too_long(state, ("password", "bytes"), password.len(), actors::model::user::MAX_PASSWORD_BYTES, ip)
    });
    if let Err(refused) = long {
        let AppError::BadRequest(why) = &refused else { return Err(refused) };
        audit_refusal(state, None, "login.refused", ip, why);
        return Err(refused);
    }
    // One name, one throttle key: `ADMIN` and `ａｄｍｉｎ` count as `admin` (issue 8 §2).
    let normal = actors::policy::normalise_username(username);
    let username = normal.as_deref().unwrap_or(username);
    let attempt = match state.throttle.begin(username, ip) {
        Ok(attempt) => attempt,
        Err(retry_after_s) => {
            Metrics::inc(&state.guard.throttled);
            tracing::warn!(message = "Login refused while throttled.", username, client = ?ip, retry_after_s);
            audit_refusal(state, Some(username), "login.throttled", ip, "too many failures");
            return Err(AppError::Throttled { retry_after_s });
        }
    };
    let users = state.api.users().clone();
    let (name, pass, code) = (username.to_owned(), password.to_owned(), totp.map(str::to_owned));
    let check = async move { users.login(&name, &pass, code.as_deref()).await };
    let Some(outcome) = state.guard.run_hashing(true, check).await else {
        state.throttle.refund(attempt);
        tracing::warn!(
            message = "Login refused: too many password checks at once.",
            username,
            client = ?ip,
            limit = state.guard.max_concurrent
        );
        return Err(AppError::Busy { retry_after_s: 1 });
    };
    match outcome {
        Ok(user) => {
            state.throttle.succeeded(attempt);
            Ok(user)
        }
        Err(actors::api::ApiError::InvalidCredentials) => {
            let failures = attempt.failures;
            Metrics::inc(&state.metrics.login_failures);
            tracing::warn!(message = "Login failed.", username, client = ?ip, failures);
            let detail = format!("from {}", shown(ip));
            if let Err(e) =
                state.api.audit().record_repeatable(username, "login.failure", username, &detail, false).await
            {
                tracing::warn!(message = "Audit of a failed login not stored.", error = %e);
            }
            // Slow every failure down a little more, so guessing costs time even before the delays start.
            tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20)))).await;
            Err(AppError::InvalidCredentials)
        }
        // A missing or wrong second factor counts as a failure too: the password alone must not be testable
        // without limit.
        Err(actors::api::ApiError::Refused(r)) if r.code.starts_with("totp_") => {
            Metrics::inc(&state.metrics.login_failures);
            tracing::warn!(message = "Login needs a valid TOTP code.", username, client = ?ip, code = r.code);
            if r.code == "totp_invalid" {
                let detail =
                    format!("wrong or reused TOTP code from {}", ip.map_or("unknown".to_owned(), |i| i.to_string()));
                if let Err(e) = state.api.users().audit(username, "login.failure", username, &detail, false).await {
                    tracing::warn!(message = "Audit of a failed login not stored.", error = %e);
                }
            }
            Err(AppError::Refused(r))
        }
        Err(e) => {
            state.throttle.refund(attempt);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!!").is_none());
    }

    #[test]
    fn throttle_delays_a_failing_pair_only() {
        let t = Throttle::default();
        let attacker = Some("10.0.0.1".parse().unwrap());
        let user = Some("10.0.0.2".parse().unwrap());
        for _ in 0..FREE_FAILURES {
            let _failed = t.begin("ops", attacker).unwrap();
        }
        assert!(t.begin("ops", attacker).is_err());
        // The same user from another address, and another user from the attacker's address, may try.
        t.succeeded(t.begin("ops", user).unwrap());
        assert!(t.begin("other", attacker).is_ok());
    }

    #[test]
    fn attempts_count_before_they_are_decided_and_refunds_give_them_back() {
        let t = Throttle::default();
        let ip = Some("10.0.0.1".parse().unwrap());
        // Simultaneous attempts: none resolved yet, only the free ones start.
        let started: Vec<_> = (0..10).filter_map(|_| t.begin("ops", ip).ok()).collect();
        assert_eq!(started.len(), FREE_FAILURES as usize);
        for a in started {
            t.refund(a);
        }
        assert!(t.begin("ops", ip).is_ok());
    }
}
