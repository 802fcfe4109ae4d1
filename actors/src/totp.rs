//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1, 6 digits, 30-second steps, the
//! step before and after accepted for clock skew, and each step good once (the caller keeps the last step
//! accepted and passes it in). Pure: the time is passed in. Secrets are 160 random bits, shown to the user
//! once as base32 and as an `otpauth://` URI for authenticator apps.

use sha1::{Digest, Sha1};

/// Seconds per step.
pub const STEP_S: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const WINDOW: i64 = 1;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh random secret, base32 (32 characters, 160 bits).
pub fn new_secret() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut key = [0u8; 20];
    OsRng.fill_bytes(&mut key);
    base32_encode(&key)
}

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// RFC 4648 base32, case-insensitive, spaces and padding ignored; `None` for anything else.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = BASE32.iter().position(|&b| b as char == c.to_ascii_uppercase())? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut inner, mut outer) = (Sha1::new(), Sha1::new());
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The HOTP value (RFC 4226) of `key` at `counter`, `digits` long.
fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let mac = hmac_sha1(key, &counter.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    format!("{:0width$}", binary % 10u32.pow(digits), width = digits as usize)
}

/// The step of a time in milliseconds since the epoch.
pub fn step_at(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000).div_euclid(STEP_S)
}

/// The code of a base32 secret at a time (ms since the epoch); `None` for a malformed secret.
pub fn code_at(secret: &str, now_ms: i64) -> Option<String> {
    let key = base32_decode(secret)?;
    Some(hotp(&key, u64::try_from(step_at(now_ms)).ok()?, DIGITS))
}

/// Checks a code at `now_ms`: the step it belongs to (within ±[`WINDOW`]) if it is right and later than
/// `last_step` (a step already used is refused: no replay).
pub fn verify(secret: &str, code: &str, now_ms: i64, last_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = base32_decode(secret)?;
    let now = step_at(now_ms);
    let mut found = None;
    for step in now - WINDOW..=now + WINDOW {
        let Ok(step) = u64::try_from(step) else { continue };
        // Every candidate is computed and compared in full, so timing does not tell which step matched.
        let same = hotp(&key, step, DIGITS).bytes().zip(code.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same && step > last_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI of a secret for authenticator apps (issuer Waterworks; SHA-1, 6 digits, 30 s).
pub fn otpauth_uri(secret: &str, username: &str) -> String {
    let label: String = username
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("otpauth://totp/Waterworks:{label}?secret={secret}&issuer=Waterworks&algorithm=SHA1&digits={DIGITS}&period={STEP_S}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 Appendix B, SHA-1 key "12345678901234567890"; the last six of its eight digits.
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(&secret, t * 1000).unwrap(), code, "t = {t}");
        }
    }

    #[test]
    fn a_code_is_good_once_within_one_step_either_side() {
        let secret = new_secret();
        assert_eq!(base32_decode(&secret).unwrap().len(), 20);
        let now = 1_800_000_000_000;
        let step = step_at(now) as u64;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(verify(&secret, &code, now, 0), Some(step));
        assert_eq!(verify(&secret, &code, now, step), None, "replay of the same step");
        let before = code_at(&secret, now - 30_000).unwrap();
        let after = code_at(&secret, now + 30_000).unwrap();
        assert_eq!(verify(&secret, &before, now, 0), Some(step - 1));
        assert_eq!(verify(&secret, &after, now, step), Some(step + 1));
        let far = code_at(&secret, now + 90_000).unwrap();
        assert_eq!(verify(&secret, &far, now, 0), None, "two steps ahead");
        assert_eq!(verify(&secret, "12345", now, 0), None);
        assert_eq!(verify(&secret, "abcdef", now, 0), None);
        assert!(otpauth_uri(&secret, "张伟").starts_with("otpauth://totp/Waterworks:%E5%BC%A0"));
    }
}
