//! The audit journal's bounds, repeats and reads, and the server's run record (issue 8 §4, R-F7, R-G4).
//!
//! Tables (created at open; new tables, so no schema step):
//! - `audit` (in `mod.rs`): `seq -> JSON AuditEntry`, one row per entry, numbered from 1;
//! - `audit_repeats`: `seq -> (times, last_ts)`: an entry written with [`Op::AuditRepeatable`] that happened
//!   again within [`REPEAT_WINDOW_MS`] of its first time is counted here instead of being written again (a
//!   flood of identical failures costs one row, rewritten in place);
//! - `audit_recent`: `slot -> seq`: the latest repeatable entry per hash slot of its text, where a repeat looks
//!   for its first time (a slot is overwritten by a different entry: at worst a repeat is written anew);
//! - `server_run`: `"running" -> JSON RunMarker` while a server runs (set at start, removed at a clean stop:
//!   a marker found at start means the previous run crashed) and `"config_hash" -> text`.
//!
//! Every entry is cut to [`AuditEntry::bounded`]'s limits here, whoever wrote it, so no text an attacker sends
//! can grow a row past a few kilobytes. Reads ([`Store::audit_query`]) go newest first from a cursor (the
//! sequence number), filter as they go and stop at a page size or a scan budget, whichever comes first; the
//! caller continues from `next_before`.
//!
//! What it does not do: decide what is audited (the API handles and the HTTP layer do) or prune the journal.

use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AuditEntry, Store, StoreError};
use crate::model::Timestamp;

/// Characters kept of an entry's actor and action.
pub const MAX_ACTOR_CHARS: usize = crate::model::user::MAX_USERNAME_CHARS;
pub const MAX_ACTION_CHARS: usize = 64;
/// Characters kept of an entry's target (a device, a user, a route).
pub const MAX_TARGET_CHARS: usize = 160;
/// Characters kept of an entry's detail.
pub const MAX_DETAIL_CHARS: usize = crate::model::user::MAX_AUDIT_DETAIL_CHARS;
/// A repeatable entry that happens again within this time of its first is counted, not written again.
pub const REPEAT_WINDOW_MS: i64 = 60_000;
/// Slots of the repeat table (a bounded table whatever is sent).
const RECENT_SLOTS: u64 = 4096;

const AUDIT_REPEATS: TableDefinition<u64, (u64, i64)> = TableDefinition::new("audit_repeats");
const AUDIT_RECENT: TableDefinition<u64, u64> = TableDefinition::new("audit_recent");
const SERVER_RUN: TableDefinition<&str, &[u8]> = TableDefinition::new("server_run");

/// `text` cut to at most `max` characters, on a character boundary, marked with `…` when cut.
pub fn cut(text: &str, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            let keep = text[..at].char_indices().nth(max.saturating_sub(1)).map_or(at, |(i, _)| i);
            (format!("{}…", &text[..keep]), true)
        }
        None => (text.to_owned(), false),
    }
}

impl AuditEntry {
    /// The entry with every text field cut to its limit; `true` when something was cut.
    pub fn bounded(&self) -> (AuditEntry, bool) {
        let (actor, a) = cut(&self.actor, MAX_ACTOR_CHARS);
        let (action, b) = cut(&self.action, MAX_ACTION_CHARS);
        let (target, c) = cut(&self.target, MAX_TARGET_CHARS);
        let (detail, d) = cut(&self.detail, MAX_DETAIL_CHARS);
        (AuditEntry { ts: self.ts, actor, action, target, detail, ok: self.ok }, a || b || c || d)
    }

    fn same_fact(&self, other: &AuditEntry) -> bool {
        (&self.actor, &self.action, &self.target, &self.detail, self.ok)
            == (&other.actor, &other.action, &other.target, &other.detail, other.ok)
    }

    fn slot(&self) -> u64 {
        // FNV-1a: stable across runs (the slot is stored), cheap, and a collision only costs a new row.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for field in [&self.actor, &self.action, &self.target, &self.detail] {
            for b in field.as_bytes().iter().chain([&0xffu8]) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        (h ^ u64::from(self.ok)) % RECENT_SLOTS
    }
}

/// The record of a running server, kept while it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMarker {
    pub started: Timestamp,
    pub version: String,
    pub pid: u32,
}

/// A change to the run record (`Op::Run`).
#[derive(Clone, Debug)]
pub enum RunOp {
    /// The server runs: a marker found at the next start means this run did not stop cleanly.
    Started(RunMarker),
    /// A clean stop: the marker goes.
    Stopped,
    /// The hash of the configuration this run loaded.
    ConfigHash(String),
}

/// Opens the tables of this module (at store open).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(AUDIT_REPEATS)?;
    txn.open_table(AUDIT_RECENT)?;
    txn.open_table(SERVER_RUN)?;
    Ok(())
}

fn encode(entry: &AuditEntry) -> Result<Vec<u8>, StoreError> {
    let (entry, _) = entry.bounded();
    serde_json::to_vec(&entry).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Writes one entry (bounded) under `seq`.
pub(super) fn put(audit: &mut Table<u64, &[u8]>, seq: u64, entry: &AuditEntry) -> Result<(), StoreError> {
    audit.insert(seq, encode(entry)?.as_slice())?;
    Ok(())
}

/// Writes a repeatable entry: counted on its first row when the same fact was written within
/// [`REPEAT_WINDOW_MS`], otherwise written under `*next` (which then moves on).
pub(super) fn put_repeatable(
    txn: &WriteTransaction,
    audit: &mut Table<u64, &[u8]>,
    next: &mut u64,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    let (entry, _) = entry.bounded();
    let slot = entry.slot();
    let mut recent = txn.open_table(AUDIT_RECENT)?;
    let first = recent.get(slot)?.map(|v| v.value());
    if let Some(seq) = first {
        let stored: Option<AuditEntry> = audit.get(seq)?.and_then(|v| serde_json::from_slice(v.value()).ok());
        if let Some(stored) =
            stored.filter(|s| s.same_fact(&entry) && (0..REPEAT_WINDOW_MS).contains(&(entry.ts.0 - s.ts.0)))
        {
            let mut repeats = txn.open_table(AUDIT_REPEATS)?;
            let times = repeats.get(seq)?.map_or(1, |v| v.value().0);
            repeats.insert(seq, (times + 1, entry.ts.0.max(stored.ts.0)))?;
            return Ok(());
        }
    }
    put(audit, *next, &entry)?;
    recent.insert(slot, *next)?;
    *next += 1;
    Ok(())
}

/// Applies a change to the run record.
pub(super) fn put_run(txn: &WriteTransaction, op: &RunOp) -> Result<(), StoreError> {
    let mut run = txn.open_table(SERVER_RUN)?;
    match op {
        RunOp::Started(marker) => {
            let json = serde_json::to_vec(marker).map_err(|e| StoreError::Encode(e.to_string()))?;
            run.insert("running", json.as_slice())?;
        }
        RunOp::Stopped => {
            run.remove("running")?;
        }
        RunOp::ConfigHash(hash) => {
            run.insert("config_hash", hash.as_bytes())?;
        }
    }
    Ok(())
}

/// How a text filter matches: the whole field, or its start.
#[derive(Clone, Debug, PartialEq)]
pub enum TextMatch {
    Exact(String),
    Prefix(String),
}

impl TextMatch {
    /// `text*` is a prefix, anything else exact.
    pub fn parse(text: &str) -> TextMatch {
        match text.strip_suffix('*') {
            Some(prefix) => TextMatch::Prefix(prefix.to_owned()),
            None => TextMatch::Exact(text.to_owned()),
        }
    }

    fn matches(&self, field: &str) -> bool {
        match self {
            TextMatch::Exact(t) => field == t,
            TextMatch::Prefix(p) => field.starts_with(p.as_str()),
        }
    }
}

/// What an audit query keeps. Absent fields keep everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<TextMatch>,
    pub action: Option<TextMatch>,
    pub target: Option<TextMatch>,
    pub ok: Option<bool>,
    /// Entries with `from <= ts` (ms since the epoch).
    pub from: Option<Timestamp>,
    /// Entries with `ts <= to`.
    pub to: Option<Timestamp>,
    /// Entries numbered below this (the cursor of the previous page).
    pub before: Option<u64>,
}

impl AuditFilter {
    fn keeps(&self, e: &AuditEntry) -> bool {
        self.actor.as_ref().is_none_or(|m| m.matches(&e.actor))
            && self.action.as_ref().is_none_or(|m| m.matches(&e.action))
            && self.target.as_ref().is_none_or(|m| m.matches(&e.target))
            && self.ok.is_none_or(|ok| e.ok == ok)
            && self.from.is_none_or(|f| e.ts >= f)
            && self.to.is_none_or(|t| e.ts <= t)
    }
}

/// One entry as read back: its number (the paging cursor) and how often it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// How many times this happened (more than 1 for repeats counted within the window).
    pub times: u64,
    /// When it last happened (the first time when `times` is 1).
    pub last_ts: Timestamp,
}

/// A page of entries, newest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// Where the next (older) page starts (`before=`); `None` when the journal's start was reached.
    pub next_before: Option<u64>,
}

impl Store {
    /// Entries kept by `filter`, newest first: at most `limit`, looking at no more than `scan` entries; a
    /// page that stopped early says where to continue.
    pub fn audit_query(&self, filter: &AuditFilter, limit: usize, scan: usize) -> Result<AuditPage, StoreError> {
        let txn = self.db.begin_read()?;
        let audit = txn.open_table(super::AUDIT)?;
        let repeats = txn.open_table(AUDIT_REPEATS)?;
        let mut entries = Vec::new();
        let mut next_before = None;
        let range = audit.range(..filter.before.unwrap_or(u64::MAX))?;
        for (looked, row) in range.rev().enumerate() {
            let (k, v) = row?;
            let seq = k.value();
            if entries.len() >= limit || looked >= scan {
                next_before = Some(seq + 1);
                break;
            }
            let entry: AuditEntry =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Io(format!("audit entry {seq}: {e}")))?;
            if filter.keeps(&entry) {
                let (times, last) = repeats.get(seq)?.map_or((1, entry.ts.0), |r| r.value());
                entries.push(AuditRecord { seq, last_ts: Timestamp(last), times, entry });
            }
        }
        Ok(AuditPage { entries, next_before })
    }

    /// The marker of a run that has not stopped cleanly (this one, once it has started).
    pub fn run_marker(&self) -> Result<Option<RunMarker>, StoreError> {
        let txn = self.db.begin_read()?;
        let run = txn.open_table(SERVER_RUN)?;
        match run.get("running")? {
            Some(v) => {
                serde_json::from_slice(v.value()).map(Some).map_err(|e| StoreError::Io(format!("run marker: {e}")))
            }
            None => Ok(None),
        }
    }

    /// The hash of the configuration the last run loaded.
    pub fn config_hash(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let run = txn.open_table(SERVER_RUN)?;
        Ok(run.get("config_hash")?.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;

    fn entry(ts: i64, actor: &str, action: &str, ok: bool) -> AuditEntry {
        AuditEntry {
            ts: Timestamp(ts),
            actor: actor.into(),
            action: action.into(),
            target: "t".into(),
            detail: "d".into(),
            ok,
        }
    }

    #[test]
    fn cut_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(cut("abc", 3), ("abc".to_owned(), false));
        assert_eq!(cut("abcd", 3), ("ab…".to_owned(), true));
        // Multi-byte characters are never split: 水 is 3 bytes.
        let (s, was_cut) = cut(&"水".repeat(100), 10);
        assert!(was_cut);
        assert_eq!(s.chars().count(), 10);
        assert_eq!(s, format!("{}…", "水".repeat(9)));
    }

    #[test]
    fn a_60_kb_entry_is_stored_within_its_limits() {
        let dir = crate::store::tests::tempdir();
        let store = Store::open(&dir).unwrap();
        let huge = "é".repeat(60_000);
        let e = AuditEntry {
            ts: Timestamp(1),
            actor: huge.clone(),
            action: huge.clone(),
            target: huge.clone(),
            detail: huge,
            ok: false,
        };
        store.apply_one(&[Op::Audit(e.clone()), Op::AuditRepeatable(e)]).unwrap();
        let page = store.audit_query(&AuditFilter::default(), 10, 100).unwrap();
        assert_eq!(page.entries.len(), 2);
        for r in &page.entries {
            let e = &r.entry;
            assert_eq!(e.actor.chars().count(), MAX_ACTOR_CHARS);
            assert_eq!(e.action.chars().count(), MAX_ACTION_CHARS);
            assert_eq!(e.target.chars().count(), MAX_TARGET_CHARS);
            assert_eq!(e.detail.chars().count(), MAX_DETAIL_CHARS);
            assert!(serde_json::to_vec(e).unwrap().len() < 8 * 1024);
        }
    }

    #[test]
    fn repeats_within_the_window_are_counted_on_the_first_entry() {
        let dir = crate::store::tests::tempdir();
        let store = Store::open(&dir).unwrap();
        for ts in [1_000, 2_000, 3_000] {
            store.apply_one(&[Op::AuditRepeatable(entry(ts, "x", "login.throttled", false))]).unwrap();
        }
        // Another fact in between is its own entry; the same fact after the window is a new entry.
        store.apply_one(&[Op::AuditRepeatable(entry(3_500, "y", "login.throttled", false))]).unwrap();
        store
            .apply_one(&[Op::AuditRepeatable(entry(1_000 + REPEAT_WINDOW_MS, "x", "login.throttled", false))])
            .unwrap();
        let page = store.audit_query(&AuditFilter::default(), 10, 100).unwrap();
        let got: Vec<_> = page.entries.iter().map(|r| (r.seq, r.entry.actor.as_str(), r.times, r.last_ts.0)).collect();
        assert_eq!(got, vec![(3, "x", 1, 61_000), (2, "y", 1, 3_500), (1, "x", 3, 3_000)]);
    }

    #[test]
    fn queries_filter_page_newest_first_and_stop_at_the_scan_budget() {
        let dir = crate::store::tests::tempdir();
        let store = Store::open(&dir).unwrap();
        let ops: Vec<Op> = (0..20)
            .map(|i| {
                let actor = if i % 2 == 0 { "alice" } else { "bob" };
                let action = if i % 3 == 0 { "valve.close" } else { "login" };
                Op::Audit(entry(i * 10, actor, action, i % 4 != 0))
            })
            .collect();
        store.apply_one(&ops).unwrap();
        let seqs = |p: &AuditPage| p.entries.iter().map(|r| r.seq).collect::<Vec<_>>();
        let all = AuditFilter::default();
        let p = store.audit_query(&all, 5, 1000).unwrap();
        assert_eq!((seqs(&p), p.next_before), (vec![20, 19, 18, 17, 16], Some(16)));
        let p = store.audit_query(&AuditFilter { before: Some(3), ..all.clone() }, 5, 1000).unwrap();
        assert_eq!((seqs(&p), p.next_before), (vec![2, 1], None));
        let f = AuditFilter {
            actor: Some(TextMatch::parse("bob")),
            action: Some(TextMatch::parse("valve.*")),
            ..all.clone()
        };
        assert_eq!(seqs(&store.audit_query(&f, 50, 1000).unwrap()), vec![16, 10, 4]);
        let f = AuditFilter { ok: Some(false), from: Some(Timestamp(40)), to: Some(Timestamp(120)), ..all.clone() };
        assert_eq!(seqs(&store.audit_query(&f, 50, 1000).unwrap()), vec![13, 9, 5]);
        // A scan budget of 4 rows: nothing of bob's valve commands among the newest 4, and where to go on.
        let f = AuditFilter { actor: Some(TextMatch::parse("bob")), action: Some(TextMatch::parse("valve.*")), ..all };
        let p = store.audit_query(&f, 50, 4).unwrap();
        assert_eq!((seqs(&p), p.next_before), (vec![], Some(17)));
    }

    #[test]
    fn the_run_record_round_trips() {
        let dir = crate::store::tests::tempdir();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.run_marker().unwrap(), None);
        let marker = RunMarker { started: Timestamp(5), version: "1.0".into(), pid: 7 };
        store.apply_one(&[Op::Run(RunOp::Started(marker.clone())), Op::Run(RunOp::ConfigHash("abc".into()))]).unwrap();
        assert_eq!(store.run_marker().unwrap(), Some(marker));
        assert_eq!(store.config_hash().unwrap().as_deref(), Some("abc"));
        store.apply_one(&[Op::Run(RunOp::Stopped)]).unwrap();
        assert_eq!(store.run_marker().unwrap(), None);
    }
}
