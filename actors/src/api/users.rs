//! The users domain's API (R-F12, R-G4, issue 8 §2): login (same cost for unknown and known users), accounts
//! (create, change one's own password, reset, disable and enable, delete, role change, TOTP), sessions (kept
//! in the store as hashes of their tokens, listed and revoked), the first admin, and the audit log.
//!
//! Rules it keeps:
//! - **Admin only** for every change to another account; a user may change only their own password (with the
//!   old one) and end only their own sessions.
//! - **Never without an admin**: the last enabled admin cannot be disabled, deleted or demoted (409
//!   `last_admin`). Account changes take one lock, so two admins demoting each other cannot both pass.
//! - **A change ends the sessions it should**: disable, delete, role change and password change end every
//!   session of the user, in the same commit as the change (a password change opens one fresh session for
//!   whoever changed it).
//! - **Audited**, success and refusal alike (actor, action, target, outcome), in the same submission as the
//!   change.
//! - **User names are normalised** (NFKC, lower case; `policy`) at creation and at login, and a new name that
//!   looks like an existing one is refused.
//!
//! The HTTP layer (`hmi`) bounds concurrent password checks and throttles them before calling here.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{ApiError, HandleParts, Refusal, RefusalKind};
use crate::auth;
use crate::clock::SharedClock;
use crate::model::{Role, Timestamp, UserRecord};
use crate::policy;
use crate::store::users::{SessionOp, SessionRecord};
use crate::store::{AuditEntry, Backend, Op, StoreHandle, UserStore};
use crate::totp;

/// A session's `last_seen` is written at most this often (and at least four times per idle timeout).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A user as the API shows it (never the hash).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub role: Role,
    /// Set until the user replaced a password someone else chose (first admin, reset): their sessions may
    /// then only change it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub must_change_password: bool,
    /// A confirmed TOTP second factor (login asks for a code).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub totp: bool,
}

impl UserInfo {
    fn of(r: &UserRecord) -> UserInfo {
        UserInfo {
            username: r.username.clone(),
            role: r.role,
            must_change_password: r.must_change_password,
            totp: r.totp.as_ref().is_some_and(|t| t.confirmed),
        }
    }
}

/// An account as the admin's list shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserAccount {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    /// A confirmed TOTP second factor.
    pub totp: bool,
    pub created: Timestamp,
    pub created_by: String,
}

/// A session as lists show it: its id (to revoke it), never the token or its hash.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub username: String,
    pub created: Timestamp,
    pub last_seen: Timestamp,
    pub expires: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The session of the request that asked.
    pub current: bool,
}

/// A TOTP secret just issued: shown once (base32 and as an `otpauth://` URI), never again.
#[derive(Clone, Debug, Serialize)]
pub struct TotpEnrolment {
    pub secret: String,
    pub uri: String,
}

/// A session just opened: the token for the cookie (never stored) and its user.
#[derive(Clone, Debug)]
pub struct OpenedSession {
    pub token: String,
    pub id: String,
    pub user: UserInfo,
}

/// Login, users, sessions, the audit log. Cheap to clone.
#[derive(Clone)]
pub struct UsersApi {
    store: Arc<dyn UserStore>,
    writer: StoreHandle,
    clock: SharedClock,
    metrics: Arc<crate::metrics::Metrics>,
    /// Held by every account change, so that the last-admin rule cannot be raced.
    accounts: Arc<tokio::sync::Mutex<()>>,
}

fn refused(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::refused(kind, code, message)
}

fn password_refusal(p: policy::PasswordProblem) -> ApiError {
    ApiError::Refused(Refusal {
        kind: RefusalKind::BadRequest,
        code: p.code(),
        message: p.to_string(),
        params: p.params(),
    })
}

fn username_refusal(p: policy::UsernameProblem) -> ApiError {
    refused(RefusalKind::BadRequest, p.code(), p.to_string())
}

fn admin_only(by: &UserInfo, what: &str) -> Result<(), ApiError> {
    if by.role == Role::Admin {
        Ok(())
    } else {
        Err(refused(RefusalKind::Forbidden, "forbidden", format!("only an admin may {what}")))
    }
}

async fn hash(password: &str) -> Result<String, ApiError> {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&pw)).await.map_err(|_| ApiError::Internal)?.map_err(|e| {
        tracing::error!(message = "Password hashing failed.", error = %e);
        ApiError::Internal
    })
}

async fn verify(hash: String, password: &str) -> Result<bool, ApiError> {
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || auth::verify_password(&hash, &pw)).await.map_err(|_| ApiError::Internal)
}

impl UsersApi {
    pub(super) fn new(parts: &HandleParts) -> UsersApi {
        UsersApi {
            store: parts.stores.users.clone(),
            writer: parts.writer.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
            accounts: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The stored record of a user name as typed: normalised first; a record stored under the name as typed
    /// (accounts created before names were normalised) is found too.
    fn find(&self, name: &str) -> Result<Option<UserRecord>, ApiError> {
        if let Ok(normal) = policy::normalise_username(name) {
            if let Some(r) = self.store.user(&normal)? {
                return Ok(Some(r));
            }
        }
        Ok(self.store.user(name)?)
    }

    /// The record of a target account, or 404.
    fn target(&self, name: &str) -> Result<UserRecord, ApiError> {
        self.find(name)?.ok_or_else(|| refused(RefusalKind::NotFound, "no_such_user", format!("no user {name:?}")))
    }

    /// Checks a username (normalised), password and, for a user with a confirmed second factor, the TOTP
    /// code (`totp_required` without one, `totp_invalid` for a wrong or reused one; both 401, and both count
    /// as failures in the login throttle). Unknown users cost the same hashing work as known ones.
    pub async fn login(&self, username: &str, password: &str, totp: Option<&str>) -> Result<UserInfo, ApiError> {
        let record = self.find(username)?;
        // A fixed dummy hash keeps the timing of unknown and known users alike.
        let hash = match record.as_ref() {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let ok = verify(hash, password).await?;
        let record = match record {
            Some(r) if ok && !r.disabled => r,
            _ => return Err(ApiError::InvalidCredentials),
        };
        if !record.totp.as_ref().is_some_and(|t| t.confirmed) {
            return Ok(UserInfo::of(&record));
        }
        let Some(code) = totp.filter(|c| !c.trim().is_empty()) else {
            return Err(refused(
                RefusalKind::Unauthorized,
                "totp_required",
                "enter the code of your authenticator app",
            ));
        };
        // Under the accounts lock and re-read, so that one code cannot be used twice at once.
        let _lock = self.accounts.lock().await;
        let mut record = self.target(&record.username)?;
        let Some(t) = record.totp.as_mut().filter(|t| t.confirmed) else { return Ok(UserInfo::of(&record)) };
        match totp::verify(&t.secret, code, self.clock.now().0, t.last_step) {
            Some(step) => {
                t.last_step = step;
                let info = UserInfo::of(&record);
                self.writer.submit(vec![Op::User(record)]).await?;
                Ok(info)
            }
            None => Err(refused(RefusalKind::Unauthorized, "totp_invalid", "the code is wrong or was used already")),
        }
    }

    /// Starts enrolling the caller's TOTP second factor (admins and operators, the people who can move valves):
    /// a new secret, shown once; login asks for codes only after [`UsersApi::totp_confirm`]. Audited.
    pub async fn totp_enrol(&self, by: &UserInfo) -> Result<TotpEnrolment, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            if !matches!(by.role, Role::Admin | Role::Operator) {
                return Err(refused(RefusalKind::Forbidden, "totp_not_for_role", "TOTP is for admins and operators"));
            }
            let mut record = self.target(&by.username)?;
            if record.totp.as_ref().is_some_and(|t| t.confirmed) {
                return Err(refused(
                    RefusalKind::Conflict,
                    "totp_enrolled",
                    "TOTP is already on; an admin removes it first",
                ));
            }
            let secret = totp::new_secret();
            let enrolment = TotpEnrolment { uri: totp::otpauth_uri(&secret, &record.username), secret: secret.clone() };
            record.totp = Some(crate::model::Totp { secret, confirmed: false, last_step: 0 });
            Ok((vec![Op::User(record)], "secret issued, not yet confirmed".to_owned(), enrolment))
        }
        .await;
        self.audited(&by.username, "user.totp.enrol", &by.username, outcome).await
    }

    /// Confirms the enrolment with a code from the app; from then on login asks for a code. Audited.
    pub async fn totp_confirm(&self, by: &UserInfo, code: &str) -> Result<UserAccount, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            let mut record = self.target(&by.username)?;
            let Some(t) = record.totp.as_mut().filter(|t| !t.confirmed) else {
                return Err(refused(RefusalKind::Conflict, "totp_not_pending", "no TOTP enrolment to confirm"));
            };
            let Some(step) = totp::verify(&t.secret, code, self.clock.now().0, 0) else {
                return Err(refused(RefusalKind::BadRequest, "totp_invalid", "the code is wrong"));
            };
            t.confirmed = true;
            t.last_step = step;
            let account = account_of(&record);
            Ok((vec![Op::User(record)], "confirmed; login asks for a code".to_owned(), account))
        }
        .await;
        self.audited(&by.username, "user.totp.confirm", &by.username, outcome).await
    }

    /// An admin removes a user's second factor (a lost phone). Audited.
    pub async fn totp_remove(&self, by: &UserInfo, target: &str) -> Result<UserAccount, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            admin_only(by, "remove a second factor")?;
            let mut record = self.target(target)?;
            if record.totp.take().is_none() {
                return Err(refused(RefusalKind::Conflict, "totp_none", "the user has no TOTP"));
            }
            let account = account_of(&record);
            Ok((vec![Op::User(record)], "second factor removed".to_owned(), account))
        }
        .await;
        self.audited(&by.username, "user.totp.remove", target, outcome).await
    }

    /// The current record of a user, if the account exists and is enabled.
    pub fn user(&self, username: &str) -> Result<Option<UserInfo>, ApiError> {
        Ok(self.find(username)?.filter(|r| !r.disabled).map(|r| UserInfo::of(&r)))
    }

    /// Every account (admin's list).
    pub fn users(&self) -> Result<Vec<UserAccount>, ApiError> {
        Ok(self.store.users()?.iter().map(account_of).collect())
    }

    /// Commits a change with its audit entry, or audits the refusal; returns the outcome either way.
    async fn audited<T>(
        &self,
        by: &str,
        action: &str,
        target: &str,
        outcome: Result<(Vec<Op>, String, T), ApiError>,
    ) -> Result<T, ApiError> {
        match outcome {
            Ok((mut ops, detail, value)) => {
                ops.push(Op::Audit(self.audit_entry(by, action, target, &detail, true)));
                self.writer.submit(ops).await?;
                Ok(value)
            }
            Err(e) => {
                if !matches!(e, ApiError::Unavailable(_) | ApiError::Internal) {
                    let detail = format!("refused: {e}");
                    if let Err(store) = self.audit(by, action, target, &detail, false).await {
                        tracing::warn!(message = "Audit of a refused account change not stored.", error = %store);
                    }
                }
                Err(e)
            }
        }
    }

    /// Creates an account. Only an admin grants roles (R-F12); the name is normalised and may not look like
    /// an existing one; the password follows the policy; audited.
    pub async fn create_user(
        &self,
        by: &UserInfo,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<UserInfo, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = self.plan_create(by, username, password, role).await;
        let target = outcome.as_ref().map_or(username.to_owned(), |(_, _, u): &(_, _, UserInfo)| u.username.clone());
        self.audited(&by.username, "user.create", &target, outcome).await
    }

    async fn plan_create(
        &self,
        by: &UserInfo,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<(Vec<Op>, String, UserInfo), ApiError> {
        admin_only(by, "create accounts")?;
        let name = policy::normalise_username(username).map_err(username_refusal)?;
        if password.len() > policy::MAX_PASSWORD_BYTES {
            crate::metrics::Metrics::inc(&self.metrics.limits.input_too_long);
            tracing::warn!(message = "Account not created: the password is too long.", by = %by.username, len = password.len());
        }
        if let Some(problem) = policy::password_problem(password, &name) {
            return Err(password_refusal(problem));
        }
        let skeleton = policy::skeleton(&name);
        for other in self.store.users()? {
            if other.username == name {
                return Err(refused(RefusalKind::Conflict, "user_exists", format!("user {name:?} already exists")));
            }
            if policy::skeleton(&other.username) == skeleton {
                return Err(ApiError::Refused(Refusal {
                    kind: RefusalKind::Conflict,
                    code: "username_confusable",
                    message: format!("user name {name:?} looks like the existing {:?}", other.username),
                    params: vec![("existing", other.username)],
                }));
            }
        }
        let record = self.new_user_record(&name, password, role, &by.username).await?;
        let info = UserInfo::of(&record);
        Ok((vec![Op::User(record)], format!("role {role}"), info))
    }

    async fn new_user_record(
        &self,
        username: &str,
        password: &str,
        role: Role,
        by: &str,
    ) -> Result<UserRecord, ApiError> {
        Ok(UserRecord {
            username: username.to_owned(),
            role,
            password_hash: hash(password).await?,
            created: self.clock.now(),
            created_by: by.to_owned(),
            disabled: false,
            must_change_password: false,
            totp: None,
        })
    }

    /// The user changes their own password, proving the old one. Every session of theirs ends; one fresh
    /// session is opened for the caller (returned), in the same commit. Clears "must change password".
    /// The caller holds a password-check permit (two argon2 runs).
    pub async fn change_own_password(
        &self,
        by: &UserInfo,
        old: &str,
        new: &str,
        client: Option<String>,
        idle: Duration,
    ) -> Result<OpenedSession, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            let mut record = self.target(&by.username)?;
            if !verify(record.password_hash.clone(), old).await? {
                return Err(refused(RefusalKind::Forbidden, "wrong_password", "the current password is wrong"));
            }
            if let Some(problem) = policy::password_problem(new, &record.username) {
                return Err(password_refusal(problem));
            }
            if old == new {
                return Err(refused(RefusalKind::BadRequest, "password_unchanged", "the new password is the old one"));
            }
            record.password_hash = hash(new).await?;
            record.must_change_password = false;
            let (open, session) = self.session_op(&record, client, idle);
            let ops = vec![
                Op::User(record.clone()),
                Op::Session(SessionOp::EndUser { username: record.username.clone() }),
                open,
            ];
            Ok((ops, "every session ended; a new one opened".to_owned(), session))
        }
        .await;
        self.audited(&by.username, "user.password.change", &by.username, outcome).await
    }

    /// An admin sets another user's password (or their own without the old one): the user must change it at
    /// their next login, and every session of theirs ends.
    pub async fn reset_password(&self, by: &UserInfo, target: &str, new: &str) -> Result<UserInfo, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            admin_only(by, "reset passwords")?;
            let mut record = self.target(target)?;
            if let Some(problem) = policy::password_problem(new, &record.username) {
                return Err(password_refusal(problem));
            }
            record.password_hash = hash(new).await?;
            record.must_change_password = true;
            let info = UserInfo::of(&record);
            let ops = vec![Op::Session(SessionOp::EndUser { username: record.username.clone() }), Op::User(record)];
            Ok((ops, "must change at next login; every session ended".to_owned(), info))
        }
        .await;
        self.audited(&by.username, "user.password.reset", target, outcome).await
    }

    /// How many enabled admins there are besides `except`.
    fn other_enabled_admins(&self, except: &str) -> Result<usize, ApiError> {
        Ok(self.store.users()?.iter().filter(|r| r.role == Role::Admin && !r.disabled && r.username != except).count())
    }

    /// Refuses a change that would leave no enabled admin.
    fn keep_an_admin(&self, record: &UserRecord, what: &str) -> Result<(), ApiError> {
        if record.role == Role::Admin && !record.disabled && self.other_enabled_admins(&record.username)? == 0 {
            return Err(refused(
                RefusalKind::Conflict,
                "last_admin",
                format!(
                    "{:?} is the last enabled admin and cannot be {what}; make another admin first",
                    record.username
                ),
            ));
        }
        Ok(())
    }

    /// Disables or enables an account (admin). Disabling ends every session of the user.
    pub async fn set_disabled(&self, by: &UserInfo, target: &str, disabled: bool) -> Result<UserAccount, ApiError> {
        let _lock = self.accounts.lock().await;
        let action = if disabled { "user.disable" } else { "user.enable" };
        let outcome = async {
            admin_only(by, "disable or enable accounts")?;
            let mut record = self.target(target)?;
            if disabled {
                self.keep_an_admin(&record, "disabled")?;
            }
            record.disabled = disabled;
            let mut ops = Vec::new();
            if disabled {
                ops.push(Op::Session(SessionOp::EndUser { username: record.username.clone() }));
            }
            let account = account_of(&record);
            ops.push(Op::User(record));
            Ok((ops, if disabled { "every session ended" } else { "enabled" }.to_owned(), account))
        }
        .await;
        self.audited(&by.username, action, target, outcome).await
    }

    /// Deletes an account (admin); its sessions end; its audit entries stay.
    pub async fn delete_user(&self, by: &UserInfo, target: &str) -> Result<(), ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            admin_only(by, "delete accounts")?;
            let record = self.target(target)?;
            self.keep_an_admin(&record, "deleted")?;
            let ops = vec![
                Op::Session(SessionOp::EndUser { username: record.username.clone() }),
                Op::DeleteUser(record.username.clone()),
            ];
            Ok((ops, format!("role {}; every session ended; audit entries kept", record.role), ()))
        }
        .await;
        self.audited(&by.username, "user.delete", target, outcome).await
    }

    /// Changes an account's role (admin); every session of the user ends.
    pub async fn set_role(&self, by: &UserInfo, target: &str, role: Role) -> Result<UserAccount, ApiError> {
        let _lock = self.accounts.lock().await;
        let outcome = async {
            admin_only(by, "change roles")?;
            let mut record = self.target(target)?;
            if role != Role::Admin {
                self.keep_an_admin(&record, "demoted")?;
            }
            let detail = format!("{} -> {role}; every session ended", record.role);
            record.role = role;
            let account = account_of(&record);
            let ops = vec![Op::Session(SessionOp::EndUser { username: record.username.clone() }), Op::User(record)];
            Ok((ops, detail, account))
        }
        .await;
        self.audited(&by.username, "user.role", target, outcome).await
    }

    /// A new session's record and the op that stores it.
    fn session_op(&self, record: &UserRecord, client: Option<String>, idle: Duration) -> (Op, OpenedSession) {
        let token = auth::random_token(32);
        let now = self.clock.now();
        let stored = SessionRecord {
            id: auth::random_token(8),
            username: record.username.clone(),
            created: now,
            last_seen: now,
            expires: now.plus_millis(idle.as_millis() as i64),
            client,
        };
        let opened = OpenedSession { token: token.clone(), id: stored.id.clone(), user: UserInfo::of(record) };
        (Op::Session(SessionOp::Open { hash: auth::token_hash(&token), record: stored }), opened)
    }

    /// Opens a session for a user who just logged in (expired sessions are forgotten in the same commit).
    pub async fn open_session(
        &self,
        user: &UserInfo,
        client: Option<String>,
        idle: Duration,
    ) -> Result<OpenedSession, ApiError> {
        let record = self.target(&user.username)?;
        let (open, session) = self.session_op(&record, client, idle);
        self.writer.submit(vec![Op::Session(SessionOp::Purge { now: self.clock.now() }), open]).await?;
        Ok(session)
    }

    /// The live session of a token and its (enabled) user, refreshing its expiry; `None` when the token is
    /// unknown, ended or expired, or its user is disabled or gone.
    pub async fn session(&self, token: &str, idle: Duration) -> Result<Option<(SessionRecord, UserInfo)>, ApiError> {
        let hash = auth::token_hash(token);
        let Some(mut record) = self.store.session(&hash)? else { return Ok(None) };
        let now = self.clock.now();
        if record.expires <= now {
            return Ok(None);
        }
        let Some(user) = self.user(&record.username)? else { return Ok(None) };
        let every = TOUCH_EVERY.min(idle / 4).as_millis() as i64;
        if now.0 - record.last_seen.0 >= every {
            record.last_seen = now;
            record.expires = now.plus_millis(idle.as_millis() as i64);
            let op = SessionOp::Touch { hash, last_seen: record.last_seen, expires: record.expires };
            // A touch that cannot be stored costs at most the minute since the last one: the request goes on.
            if let Err(e) = self.writer.submit(vec![Op::Session(op)]).await {
                tracing::warn!(message = "A session's last use not stored.", error = %e);
            }
        }
        Ok(Some((record, user)))
    }

    /// Whether a token's session is still live, without refreshing it (long-lived WebSockets check this).
    pub fn session_live(&self, token: &str) -> bool {
        match self.store.session(&auth::token_hash(token)) {
            Ok(Some(r)) => r.expires > self.clock.now() && matches!(self.user(&r.username), Ok(Some(_))),
            _ => false,
        }
    }

    /// Ends the session of a token (logout).
    pub async fn end_session(&self, token: &str) -> Result<(), ApiError> {
        self.writer.submit(vec![Op::Session(SessionOp::End { hash: auth::token_hash(token) })]).await?;
        Ok(())
    }

    /// Live sessions: the caller's own, or everyone's for an admin. `current` marks the caller's session.
    pub fn sessions(&self, by: &UserInfo, current: Option<&str>) -> Result<Vec<SessionInfo>, ApiError> {
        let now = self.clock.now();
        let mut out: Vec<SessionInfo> = self
            .store
            .sessions()?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.expires > now && (by.role == Role::Admin || r.username == by.username))
            .map(|r| SessionInfo {
                current: current == Some(r.id.as_str()),
                id: r.id,
                username: r.username,
                created: r.created,
                last_seen: r.last_seen,
                expires: r.expires,
                client: r.client,
            })
            .collect();
        out.sort_by(|a, b| (&a.username, b.last_seen).cmp(&(&b.username, a.last_seen)));
        Ok(out)
    }

    /// Ends a session by id: one's own, or anyone's for an admin. Audited.
    pub async fn revoke_session(&self, by: &UserInfo, id: &str) -> Result<(), ApiError> {
        let outcome = async {
            let found = self.store.sessions()?.into_iter().map(|(_, r)| r).find(|r| r.id == id);
            let Some(record) = found.filter(|r| by.role == Role::Admin || r.username == by.username) else {
                // Someone else's session is "not found" to a non-admin: ids are not confirmed to exist.
                return Err(refused(RefusalKind::NotFound, "no_such_session", "no such session"));
            };
            let ops = vec![Op::Session(SessionOp::EndId { id: id.to_owned() })];
            Ok((ops, format!("session of {}", record.username), ()))
        }
        .await;
        self.audited(&by.username, "session.revoke", id, outcome).await
    }

    /// Makes sure an admin account exists (DESIGN.md: the first admin). With no users in the store, creates
    /// `admin` with the given password, or a generated one which is returned so that it is shown once; a
    /// generated password must be changed at the first login (issue 8 §2).
    pub async fn ensure_first_admin(&self, password: Option<String>) -> Result<Option<String>, ApiError> {
        if !self.store.users()?.is_empty() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => {
                if let Some(problem) = policy::password_problem(&p, "admin") {
                    return Err(ApiError::BadRequest(format!("WATERWORKS_ADMIN_PASSWORD: {problem}")));
                }
                (p, false)
            }
            None => (auth::random_password(), true),
        };
        let mut record = self.new_user_record("admin", &password, Role::Admin, "system").await?;
        record.must_change_password = generated;
        let detail = if generated { "first admin; generated password, must change it" } else { "first admin" };
        let audit = self.audit_entry("system", "user.create", "admin", detail, true);
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
}

/// Break-glass recovery of an admin account while the server is stopped (`waterworks reset-admin`, issue 8
/// §2): `username` (created if missing) becomes an enabled admin with a new generated password that must be
/// changed at the next login, without TOTP, and every session of theirs ends; audited as `system`. Returns the
/// password, to be shown once. The caller opened the store itself, so redb's lock guarantees that no server
/// (and no store writer) is running: this is the one write that does not go through the writer.
pub fn reset_admin_offline(store: &dyn Backend, username: &str, now: Timestamp) -> Result<String, ApiError> {
    let name = policy::normalise_username(username).map_err(username_refusal)?;
    let password = auth::random_password();
    let hash = auth::hash_password(&password).map_err(|e| {
        tracing::error!(message = "Password hashing failed.", error = %e);
        ApiError::Internal
    })?;
    let existing = store.user(&name)?;
    let detail = match &existing {
        Some(r) => format!(
            "offline reset (was {}, {}); every session ended",
            r.role,
            if r.disabled { "disabled" } else { "enabled" }
        ),
        None => "offline reset: account created".to_owned(),
    };
    let record = UserRecord {
        username: name.clone(),
        role: Role::Admin,
        password_hash: hash,
        created: existing.as_ref().map_or(now, |r| r.created),
        created_by: existing.as_ref().map_or_else(|| "reset-admin".to_owned(), |r| r.created_by.clone()),
        disabled: false,
        must_change_password: true,
        totp: None,
    };
    let audit = AuditEntry {
        ts: now,
        actor: "system".into(),
        action: "user.reset_admin".into(),
        target: name.clone(),
        detail,
        ok: true,
    };
    let ops = [Op::Session(SessionOp::EndUser { username: name }), Op::User(record), Op::Audit(audit)];
    store.commit(&[&ops])?;
    Ok(password)
}

fn account_of(r: &UserRecord) -> UserAccount {
    UserAccount {
        username: r.username.clone(),
        role: r.role,
        disabled: r.disabled,
        must_change_password: r.must_change_password,
        totp: r.totp.as_ref().is_some_and(|t| t.confirmed),
        created: r.created,
        created_by: r.created_by.clone(),
    }
}

/// An argon2id hash of a random string nobody knows, verified against for unknown usernames so that they
/// cost the same work as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::random_password()).unwrap_or_default())
}
