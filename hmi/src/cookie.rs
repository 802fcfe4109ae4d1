//! The session cookie's name and form, shared by the session extractor, the login and logout routes and the
//! API document. A leaf module: it imports nothing of this crate, so that the modules sharing it do not import
//! each other. It deliberately knows nothing of tokens or sessions themselves (that is `session`).

/// The name of the cookie that carries the session token over plain HTTP (tests, a loopback-only demo).
pub const COOKIE: &str = "ww_session";

/// The name when the cookie is `Secure` (issue 8 §5). Browsers accept a `__Host-` cookie only if it is
/// `Secure`, has `Path=/` and no `Domain`, and was set over HTTPS: no subdomain and no plain-HTTP page can
/// plant or overwrite it.
pub const SECURE_COOKIE: &str = "__Host-session";

/// The cookie's name: [`SECURE_COOKIE`] when `secure`, else [`COOKIE`].
pub fn name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value for session token `value` (empty to clear it), valid `max_age_s` seconds: HttpOnly,
/// SameSite=Strict, `Path=/`, never `Domain`; `Secure` with the `__Host-` name when `secure`.
pub fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    let name = name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secure_cookie_has_the_host_prefix_and_its_rules() {
        let c = set_cookie("t", 60, true);
        assert!(c.starts_with("__Host-session=t; Path=/;") && c.ends_with("; Secure") && !c.contains("Domain"), "{c}");
        assert!(set_cookie("t", 60, false).starts_with("ww_session=t; Path=/;"));
        assert!(!set_cookie("t", 60, false).contains("Secure"));
    }
}
