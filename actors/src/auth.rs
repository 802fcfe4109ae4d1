//! Password hashing (argon2id, R-G4) and random secrets. Verification is CPU-heavy by design: callers run it
//! on a blocking thread.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Why a password could not be hashed (argon2 refused its parameters or the input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HashError(argon2::password_hash::Error);

/// Hashes a password into an argon2id PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(HashError)
}

/// Checks a password against a PHC string; a malformed hash never verifies.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A random token of `bytes` bytes, hex encoded (session ids).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random password that is easy to type: 20 characters from an alphabet without look-alikes.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// The hash under which a session token is stored (issue 8 §2): BLAKE2b-256 of the token, hex. The token
/// is 256 random bits, so an unkeyed fast hash is enough (nothing to guess), and the store never holds
/// anything that opens a session.
pub fn token_hash(token: &str) -> String {
    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};
    let digest = Blake2b::<U32>::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "wrong horse battery"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn random_secrets_differ_and_have_their_length() {
        assert_eq!(random_token(32).len(), 64);
        assert_ne!(random_token(16), random_token(16));
        assert_eq!(random_password().len(), 20);
        assert!(crate::policy::password_problem(&random_password(), "admin").is_none());
        assert_eq!(token_hash("abc").len(), 64);
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
