//! The session cookie's name and form, shared by the session extractor, the login and logout routes and the
//! API document. A leaf module: it imports nothing of this crate, so that the modules sharing it do not import
//! each other. It deliberately knows nothing of tokens or sessions themselves (that is `session`).

/// The name of the cookie that carries the session token.
pub const COOKIE: &str = "ww_session";

/// The `Set-Cookie` value for session token `value` (empty to clear it), valid `max_age_s` seconds: HttpOnly,
/// SameSite=Strict, and `Secure` when `secure`.
pub fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}
