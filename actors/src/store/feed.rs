//! The durable change feed (DESIGN §12): every committed fact with a sequence number, read by consumers
//! from a cursor they persist.
//!
//! Two tables share one sequence: `feed` holds, per commit, the readings and samples it carried (one entry
//! per commit, not per reading or submission, so a group commit of 5,000 readings costs one feed row, in the
//! compact encoding of `feed_codec.rs`); `events`
//! holds one event per number, which also makes it the event journal the HMI searches. Numbers are given by
//! the writer in its commit, so an entry exists in the feed exactly when its facts are committed.
//!
//! What this module does not do: run consumers (that is [`crate::feed`]) or decide what a fact means.

use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Store, StoreError, CURSORS, EVENTS, FEED};
use crate::event::{Event, EventRecord};
use crate::model::{DeviceId, MeterReading, QualitySample, RegionId, Timestamp};

/// The highest committed sequence number, and a way to wait for the next.
#[derive(Debug)]
pub(crate) struct FeedHead {
    pub(super) last: AtomicU64,
    tx: watch::Sender<u64>,
}

impl FeedHead {
    pub(crate) fn new(last: u64) -> FeedHead {
        FeedHead { last: AtomicU64::new(last), tx: watch::channel(last).0 }
    }
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }
    pub(crate) fn advance(&self, to: u64) {
        if to > self.last.swap(to, Ordering::SeqCst) {
            self.tx.send_replace(to);
        }
    }
}

#[derive(Serialize)]
pub(crate) struct StoredEventRef<'a> {
    pub ts: Timestamp,
    pub event: &'a Event,
}

#[derive(Deserialize)]
struct StoredEvent {
    ts: Timestamp,
    event: Event,
}

/// What one feed entry carries.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedFact {
    /// The readings and samples of one commit (one or more submissions, each usually one device's cycle).
    Data {
        readings: Vec<MeterReading>,
        samples: Vec<QualitySample>,
    },
    Event(EventRecord),
    /// An entry that cannot be decoded (damaged on disk, or written by a newer version). It is handed on in
    /// its place, so one bad entry does not stop every consumer behind it: consumers skip it, and
    /// `FeedConsumer` logs and counts it (`waterworks_feed_unreadable_total`). The entry stays in the store.
    Unreadable {
        reason: String,
    },
}

/// One entry of the change feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    pub seq: u64,
    pub fact: FeedFact,
}

/// Which events to list; every field narrows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    pub region: Option<RegionId>,
    pub device: Option<DeviceId>,
    pub kind: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only events with a smaller sequence number (paging backwards).
    pub before: Option<u64>,
}

/// How many facts one `feed_after` call returns at most (after the first entry, which always comes whole).
pub const FEED_FACT_BUDGET: usize = 100_000;

/// At most this many events are examined per query, so a filter that matches little stays cheap.
const EVENT_SCAN_LIMIT: usize = 200_000;

impl EventFilter {
    fn matches(&self, r: &EventRecord) -> bool {
        if self.from.is_some_and(|f| r.ts < f) || self.to.is_some_and(|t| r.ts > t) {
            return false;
        }
        if self.kind.as_deref().is_some_and(|k| k != r.event.kind()) {
            return false;
        }
        if self.region.is_some() || self.device.is_some() {
            let Some(live) = r.event.to_live(r.ts) else { return false };
            if self.region.is_some() && live.region != self.region {
                return false;
            }
            if self.device.is_some() && live.device != self.device {
                return false;
            }
        }
        true
    }
}

fn decode_event(seq: u64, bytes: &[u8]) -> Result<EventRecord, StoreError> {
    let e: StoredEvent =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Io(format!("event {seq} cannot be read: {e}")))?;
    Ok(EventRecord { seq, ts: e.ts, event: e.event })
}

impl Store {
    /// The highest sequence number in the store (0: the feed is empty).
    pub(crate) fn last_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let a = txn.open_table(FEED)?.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        let b = txn.open_table(EVENTS)?.last()?.map(|(k, _)| k.value()).unwrap_or(0);
        Ok(a.max(b))
    }

    /// The highest committed sequence number.
    pub fn feed_head(&self) -> u64 {
        self.feed.last()
    }

    /// A receiver that changes whenever the feed head moves (for consumers waiting for new entries).
    pub fn watch_feed(&self) -> watch::Receiver<u64> {
        self.feed.tx.subscribe()
    }

    /// Feed entries with a sequence number above `after`, in order, at most `limit`; no further entry is
    /// taken once those taken hold [`FEED_FACT_BUDGET`] readings, samples and events (the first entry always
    /// comes): one entry holds a whole commit, up to `max_batch_ops` facts, so counting entries alone would let
    /// a consumer catching up on a backlog decode millions of readings at once.
    pub fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        self.feed_after_within(after, limit, FEED_FACT_BUDGET)
    }

    pub(crate) fn feed_after_within(
        &self,
        after: u64,
        limit: usize,
        budget: usize,
    ) -> Result<Vec<FeedEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let feed = txn.open_table(FEED)?;
        let events = txn.open_table(EVENTS)?;
        let mut a = feed.range(after.saturating_add(1)..)?.peekable();
        let mut b = events.range(after.saturating_add(1)..)?.peekable();
        let mut out = Vec::new();
        let mut facts = 0usize;
        while out.len() < limit && (out.is_empty() || facts < budget) {
            let next_a = match a.peek() {
                Some(Ok((k, _))) => Some(k.value()),
                Some(Err(_)) => {
                    return Err(a.next().and_then(Result::err).map(Into::into).unwrap_or(StoreError::Unavailable))
                }
                None => None,
            };
            let next_b = match b.peek() {
                Some(Ok((k, _))) => Some(k.value()),
                Some(Err(_)) => {
                    return Err(b.next().and_then(Result::err).map(Into::into).unwrap_or(StoreError::Unavailable))
                }
                None => None,
            };
            let take_data = match (next_a, next_b) {
                (None, None) => break,
                (Some(x), Some(y)) => x < y,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_data {
                let (k, v) = a.next().expect("peeked")?;
                let seq = k.value();
                let fact = match super::feed_codec::decode(v.value()) {
                    Ok(data) => {
                        facts += data.readings.len() + data.samples.len();
                        FeedFact::Data { readings: data.readings, samples: data.samples }
                    }
                    Err(e) => {
                        facts += 1;
                        FeedFact::Unreadable { reason: format!("data entry: {e}") }
                    }
                };
                out.push(FeedEntry { seq, fact });
            } else {
                let (k, v) = b.next().expect("peeked")?;
                facts += 1;
                let fact = match decode_event(k.value(), v.value()) {
                    Ok(record) => FeedFact::Event(record),
                    Err(e) => FeedFact::Unreadable { reason: e.to_string() },
                };
                out.push(FeedEntry { seq: k.value(), fact });
            }
        }
        Ok(out)
    }

    /// Overwrites a data entry's bytes (tests of damaged entries).
    #[cfg(test)]
    pub(crate) fn damage_feed_entry(&self, seq: u64, bytes: &[u8]) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(FEED).unwrap().insert(seq, bytes).unwrap();
        txn.commit().unwrap();
    }

    /// Overwrites an event entry's bytes (tests of damaged entries).
    #[cfg(test)]
    pub(crate) fn damage_event(&self, seq: u64, bytes: &[u8]) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(EVENTS).unwrap().insert(seq, bytes).unwrap();
        txn.commit().unwrap();
    }

    /// A consumer's cursor: the last sequence number it handled (0: none).
    pub fn cursor(&self, consumer: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(CURSORS)?.get(consumer)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Events matching `filter`, newest first, at most `limit`.
    pub fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(EVENTS)?;
        let upper = filter.before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for entry in t.range(..upper)?.rev().take(EVENT_SCAN_LIMIT) {
            let (k, v) = entry?;
            let r = decode_event(k.value(), v.value())?;
            if filter.matches(&r) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
