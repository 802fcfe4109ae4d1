//! The users domain's API: login (same cost for unknown and known users), accounts, creating accounts (only
//! by an admin, R-F12), the first admin, and the audit log (R-G4). It holds sessions nowhere: sessions and
//! login throttling are the HTTP layer's.

use serde::Serialize;

use super::{ApiError, HandleParts};
use crate::auth;
use crate::clock::SharedClock;
use crate::model::user::valid_username;
use crate::model::{Role, UserRecord};
use crate::store::{AuditEntry, Op, StoreHandle, UserStore};

/// A user as the API shows it (never the hash).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub role: Role,
}

/// Login, users, the audit log. Cheap to clone.
#[derive(Clone)]
pub struct UsersApi {
    store: std::sync::Arc<dyn UserStore>,
    writer: StoreHandle,
    clock: SharedClock,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl UsersApi {
    pub(super) fn new(parts: &HandleParts) -> UsersApi {
        UsersApi {
            store: parts.stores.users.clone(),
            writer: parts.writer.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
        }
    }

    /// Checks a username and password. Unknown users cost the same hashing work as known ones.
    pub async fn login(&self, username: &str, password: &str) -> Result<UserInfo, ApiError> {
        let record = self.store.user(username)?;
        let password = password.to_owned();
        // A fixed dummy hash keeps the timing of unknown and known users alike.
        let hash = match record.as_ref() {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .map_err(|_| ApiError::Internal)?;
        match record {
            Some(r) if ok && !r.disabled => Ok(UserInfo { username: r.username, role: r.role }),
            _ => Err(ApiError::InvalidCredentials),
        }
    }

    /// The current record of a user, if the account exists and is enabled.
    pub fn user(&self, username: &str) -> Result<Option<UserInfo>, ApiError> {
        Ok(self.store.user(username)?.filter(|r| !r.disabled).map(|r| UserInfo { username: r.username, role: r.role }))
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, ApiError> {
        Ok(self.store.users()?.into_iter().map(|r| UserInfo { username: r.username, role: r.role }).collect())
    }

    /// Creates an account. Only an admin grants roles (R-F12); the change is audited.
    pub async fn create_user(
        &self,
        by: &UserInfo,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<UserInfo, ApiError> {
        if by.role != Role::Admin {
            return Err(ApiError::Forbidden("only an admin creates accounts".into()));
        }
        if !valid_username(username) {
            return Err(ApiError::BadRequest("username must be 1-64 letters, digits, '.', '_' or '-'".into()));
        }
        if password.len() > crate::model::user::MAX_PASSWORD_BYTES {
            crate::metrics::Metrics::inc(&self.metrics.limits.input_too_long);
            tracing::warn!(message = "Account not created: the password is too long.", by = %by.username, len = password.len());
        }
        if let Some(problem) = auth::password_problem(password) {
            return Err(ApiError::BadRequest(problem));
        }
        if self.store.user(username)?.is_some() {
            return Err(ApiError::Conflict(format!("user {username:?} already exists")));
        }
        let record = self.new_user_record(username, password, role, &by.username).await?;
        let audit = self.audit_entry(&by.username, "user.create", username, &format!("role {role}"), true);
        self.writer.submit(vec![Op::User(record), Op::Audit(audit)]).await?;
        Ok(UserInfo { username: username.to_owned(), role })
    }

    async fn new_user_record(
        &self,
        username: &str,
        password: &str,
        role: Role,
        by: &str,
    ) -> Result<UserRecord, ApiError> {
        let pw = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
            .await
            .map_err(|_| ApiError::Internal)?
            .map_err(|e| {
                tracing::error!(message = "Password hashing failed.", error = %e);
                ApiError::Internal
            })?;
        Ok(UserRecord {
            username: username.to_owned(),
            role,
            password_hash: hash,
            created: self.clock.now(),
            created_by: by.to_owned(),
            disabled: false,
        })
    }

    /// Makes sure an admin account exists (DESIGN.md: the first admin). With no users in the store, creates
    /// `admin` with the given password, or a generated one which is returned so that it is shown once.
    pub async fn ensure_first_admin(&self, password: Option<String>) -> Result<Option<String>, ApiError> {
        if !self.store.users()?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => {
                if let Some(problem) = auth::password_problem(&p) {
                    return Err(ApiError::BadRequest(format!("WATERWORKS_ADMIN_PASSWORD: {problem}")));
                }
                (p, false)
            }
            None => (auth::random_password(), true),
        };
        let record = self.new_user_record("admin", &password, Role::Admin, "system").await?;
        let audit = self.audit_entry("system", "user.create", "admin", "first admin", true);
        self.writer.submit(vec![Op::User(record), Op::Audit(audit)]).await?;
        Ok(generated.then_some(password))
    }

    /// An audit entry, each field cut to its limit (issue 8 §3): the edges refuse long input first, so a cut
    /// here means an edge missed a check; it is counted and logged.
    fn audit_entry(&self, actor: &str, action: &str, target: &str, detail: &str, ok: bool) -> AuditEntry {
        use crate::model::user::{MAX_AUDIT_DETAIL_CHARS, MAX_USERNAME_CHARS};
        let mut cut = false;
        let mut capped = |text: &str, max: usize| match text.char_indices().nth(max) {
            Some((at, _)) => {
                cut = true;
                format!("{}…", &text[..at])
            }
            None => text.to_owned(),
        };
        let entry = AuditEntry {
            ts: self.clock.now(),
            actor: capped(actor, MAX_USERNAME_CHARS),
            action: capped(action, MAX_USERNAME_CHARS),
            target: capped(target, 2 * MAX_USERNAME_CHARS),
            detail: capped(detail, MAX_AUDIT_DETAIL_CHARS),
            ok,
        };
        if cut {
            crate::metrics::Metrics::inc(&self.metrics.limits.input_too_long);
            tracing::warn!(message = "Audit entry cut to its limits.", action = %entry.action, actor = %entry.actor);
        }
        entry
    }

    /// Records an audited action durably (acknowledged after commit).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str, ok: bool) -> Result<(), ApiError> {
        let entry = self.audit_entry(actor, action, target, detail, ok);
        self.writer.submit(vec![Op::Audit(entry)]).await?;
        Ok(())
    }

    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, ApiError> {
        Ok(self.store.audit_entries(limit)?)
    }
}

/// An argon2id hash of a random string nobody knows, verified against for unknown usernames so that they
/// cost the same work as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::random_password()).unwrap_or_default())
}
