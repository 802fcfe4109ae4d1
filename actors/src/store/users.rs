//! Sessions kept in the store (issue 8 §2): table `sessions: hash of the token (hex) -> JSON SessionRecord`,
//! written by `Op::Session`, and user deletion (`Op::DeleteUser`; the audit journal keeps its entries).
//!
//! Only a hash of each session token is stored (BLAKE2b-256 of the random 256-bit token, see
//! `auth::token_hash`): whoever reads the file cannot open a session with what they find. The token itself is
//! only ever in the cookie. A session restarts with the server: it is looked up by hash after a restart.
//!
//! Kept apart from `mod.rs` on purpose: `mod.rs` only routes the ops here and opens the table at start-up.
//! Deciding who may open, touch or end a session is the users API's (`api/users.rs`), not this file's.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::model::Timestamp;

pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// One open session, as stored (never the token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// A random id that names the session in lists and revocations (not the token, not its hash).
    pub id: String,
    pub username: String,
    pub created: Timestamp,
    /// When it was last used (written at most once a minute per session).
    pub last_seen: Timestamp,
    /// It ends at this time unless used again before (idle timeout from `last_seen`).
    pub expires: Timestamp,
    /// The client address it was opened from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// A change to the sessions table.
#[derive(Clone, Debug)]
pub enum SessionOp {
    /// A new session under the hash of its token.
    Open { hash: String, record: SessionRecord },
    /// Used again: moves `last_seen` and `expires`, only if the session still exists (a touch racing a
    /// revocation must not bring it back).
    Touch { hash: String, last_seen: Timestamp, expires: Timestamp },
    /// Ends one session by the hash of its token.
    End { hash: String },
    /// Ends one session by its id.
    EndId { id: String },
    /// Ends every session of a user (disable, delete, role or password change).
    EndUser { username: String },
    /// Forgets sessions that expired before this time.
    Purge { now: Timestamp },
}

/// Applies a session change inside the writer's transaction.
pub(super) fn apply_session(txn: &WriteTransaction, op: &SessionOp) -> Result<(), StoreError> {
    let mut table = txn.open_table(SESSIONS)?;
    let encode = |r: &SessionRecord| serde_json::to_vec(r).map_err(|e| StoreError::Encode(e.to_string()));
    match op {
        SessionOp::Open { hash, record } => {
            table.insert(hash.as_str(), encode(record)?.as_slice())?;
        }
        SessionOp::Touch { hash, last_seen, expires } => {
            let current = table.get(hash.as_str())?.map(|v| decode(v.value())).transpose()?;
            if let Some(mut record) = current {
                record.last_seen = *last_seen;
                record.expires = *expires;
                table.insert(hash.as_str(), encode(&record)?.as_slice())?;
            }
        }
        SessionOp::End { hash } => {
            table.remove(hash.as_str())?;
        }
        SessionOp::EndId { id } => {
            let doomed = matching(&table, |r| r.id == *id)?;
            for hash in doomed {
                table.remove(hash.as_str())?;
            }
        }
        SessionOp::EndUser { username } => {
            let doomed = matching(&table, |r| r.username == *username)?;
            for hash in doomed {
                table.remove(hash.as_str())?;
            }
        }
        SessionOp::Purge { now } => {
            let doomed = matching(&table, |r| r.expires <= *now)?;
            for hash in doomed {
                table.remove(hash.as_str())?;
            }
        }
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Io(format!("session record: {e}")))
}

fn matching(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    pred: impl Fn(&SessionRecord) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        // A record that no longer decodes is dropped with the others it matches nothing of: kept, harmless.
        if decode(v.value()).is_ok_and(|r| pred(&r)) {
            out.push(k.value().to_owned());
        }
    }
    Ok(out)
}

impl Store {
    /// The session stored under the hash of a token, if any (expired or not: the caller decides).
    pub fn session(&self, hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        table.get(hash)?.map(|v| decode(v.value())).transpose()
    }

    /// Every stored session with the hash it is stored under.
    pub fn sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), decode(v.value())?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;

    fn record(id: &str, user: &str, expires: i64) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            username: user.into(),
            created: Timestamp(1),
            last_seen: Timestamp(1),
            expires: Timestamp(expires),
            client: None,
        }
    }

    #[test]
    fn sessions_open_touch_end_and_survive_a_reopen() {
        let dir = crate::store::tests::tempdir();
        {
            let store = Store::open(&dir).unwrap();
            let open = |h: &str, r: SessionRecord| Op::Session(SessionOp::Open { hash: h.into(), record: r });
            store
                .apply_one(&[
                    open("h1", record("s1", "ops", 100)),
                    open("h2", record("s2", "ops", 100)),
                    open("h3", record("s3", "crew", 5)),
                ])
                .unwrap();
            store
                .apply_one(&[Op::Session(SessionOp::Touch {
                    hash: "h1".into(),
                    last_seen: Timestamp(50),
                    expires: Timestamp(150),
                })])
                .unwrap();
            // A touch of an ended session does not bring it back.
            store.apply_one(&[Op::Session(SessionOp::End { hash: "h2".into() })]).unwrap();
            store
                .apply_one(&[Op::Session(SessionOp::Touch {
                    hash: "h2".into(),
                    last_seen: Timestamp(60),
                    expires: Timestamp(160),
                })])
                .unwrap();
            assert_eq!(store.session("h2").unwrap(), None);
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.session("h1").unwrap().unwrap().expires, Timestamp(150));
        store.apply_one(&[Op::Session(SessionOp::Purge { now: Timestamp(10) })]).unwrap();
        assert_eq!(store.session("h3").unwrap(), None, "expired, purged");
        store.apply_one(&[Op::Session(SessionOp::EndUser { username: "ops".into() })]).unwrap();
        assert!(store.sessions().unwrap().is_empty());
    }
}
