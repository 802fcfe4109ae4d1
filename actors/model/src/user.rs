//! Users and roles (R-G4, R-F12). Password hashing itself happens in the auth service; the model only holds
//! the PHC string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::reading::Timestamp;

/// What a user may do. Admin alone grants roles (R-F12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    Manager,
    Crew,
    Billing,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Operator, Role::Manager, Role::Crew, Role::Billing];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Manager => "manager",
            Role::Crew => "crew",
            Role::Billing => "billing",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected admin, operator, manager, crew or billing"))
    }
}

/// A stored user account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub role: Role,
    /// Argon2id PHC string; never leaves the server.
    pub password_hash: String,
    pub created: Timestamp,
    pub created_by: String,
    pub disabled: bool,
    /// The password was set by someone else (a generated first admin, an admin's reset): until the user sets
    /// their own, their sessions may only change it (issue 8 §2). Absent in records written before.
    #[serde(default)]
    pub must_change_password: bool,
    /// The TOTP second factor (RFC 6238), when enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Totp>,
}

/// A user's TOTP second factor: the shared secret (base32, as shown once at enrolment), whether the user
/// confirmed it with a code (only then does login ask for one), and the last time step accepted (a code is
/// good once: the same step is refused again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Totp {
    pub secret: String,
    pub confirmed: bool,
    #[serde(default)]
    pub last_step: u64,
}

/// The longest user name, in characters (issue 8 §3: longer ones are refused before the audit or the store).
pub const MAX_USERNAME_CHARS: usize = 64;
/// The longest password, in bytes: enough for any passphrase, short enough to hash cheaply.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The longest audit `detail` kept, in characters; a longer one is cut (a backstop behind the checks at the
/// edges, which refuse long input first).
pub const MAX_AUDIT_DETAIL_CHARS: usize = 2000;

/// Whether a username is acceptable: 1–64 characters of letters, digits, `.`, `_`, `-`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
