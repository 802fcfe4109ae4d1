//! Consumers of the durable change feed (DESIGN §12): the one way business logic reacts to what the field
//! side committed.
//!
//! A [`FeedConsumer`] actor reads the feed from its persisted cursor, hands entries in order to its
//! [`FeedHandler`], and commits the handler's results **together with the new cursor** in one store
//! submission. So a result is recorded exactly when its entries count as handled; after a crash or restart
//! the consumer resumes after the last committed cursor, and entries whose results were not committed are
//! handled again (at least once, never lost). A handler with outside effects (an SMS) must make them
//! idempotent itself, e.g. keyed by the entry's sequence number.
//!
//! The consumer never reads the live-stream broadcast: it is woken by the store's feed head, and reads
//! from the store, so no entry reaches a handler without being committed first.
//!
//! [`LimitWatcher`] is the first consumer: it turns water-quality samples into limit-crossing events.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::event::{Event, LimitSide};
use crate::metrics::Metrics;
use crate::model::{DeviceId, QualityFlags, QualitySample, RegionId};
use crate::store::{FeedEntry, FeedFact, FieldStore, Op, StoreError, StoreHandle, Stores};

/// Why a handler could not handle a batch (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Handler(String),
}

/// What a consumer does with feed entries.
pub trait FeedHandler: Send + 'static {
    /// The consumer's stable name: its cursor is stored under it.
    fn name(&self) -> &str;

    /// Handles committed entries, in order, reading what it needs through `stores` (one interface per domain). Returns the store operations recording the results; they are
    /// committed atomically with the cursor after the last entry. On `Err` nothing is committed and the
    /// same entries come again after a backoff.
    fn handle(
        &mut self,
        stores: &Stores,
        entries: &[FeedEntry],
    ) -> impl Future<Output = Result<Vec<Op>, FeedError>> + Send;
}

/// Entries read per batch.
pub const DEFAULT_BATCH: usize = 256;

pub struct FeedConsumer<H>(PhantomData<fn() -> H>);

impl<H> Default for FeedConsumer<H> {
    fn default() -> Self {
        FeedConsumer(PhantomData)
    }
}

impl<H> Clone for FeedConsumer<H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H> Copy for FeedConsumer<H> {}

pub struct FeedConsumerArgs<H> {
    pub handler: H,
    pub stores: Stores,
    pub writer: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub batch: usize,
}

pub enum FeedMsg {
    /// Look for new entries.
    Pump,
}

pub struct FeedConsumerState<H> {
    handler: H,
    name: String,
    stores: Stores,
    writer: StoreHandle,
    metrics: Arc<Metrics>,
    batch: usize,
    cursor: u64,
    backoff: Duration,
    /// A `Pump` is queued; the feed watcher does not queue another (the mailbox stays bounded).
    pending: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl<H: FeedHandler> FeedConsumerState<H> {
    fn retry_later(&mut self, myself: &ActorRef<FeedMsg>) {
        Metrics::inc(&self.metrics.feed_handler_failures);
        myself.send_after(self.backoff, || FeedMsg::Pump);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

impl<H: FeedHandler> Actor for FeedConsumer<H> {
    type Msg = FeedMsg;
    type State = FeedConsumerState<H>;
    type Arguments = FeedConsumerArgs<H>;

    async fn pre_start(
        &self,
        myself: ActorRef<FeedMsg>,
        args: FeedConsumerArgs<H>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let name = args.handler.name().to_owned();
        let cursor = args.stores.events.cursor(&name)?;
        let pending = Arc::new(AtomicBool::new(true));
        let mut head = args.stores.events.watch_feed();
        let (me, flag) = (myself.clone(), pending.clone());
        let watcher = tokio::spawn(async move {
            while head.changed().await.is_ok() {
                if !flag.swap(true, Ordering::SeqCst) && me.cast(FeedMsg::Pump).is_err() {
                    break;
                }
            }
        });
        myself.cast(FeedMsg::Pump)?;
        tracing::info!(message = "Feed consumer started.", consumer = %name, cursor, head = args.stores.events.feed_head());
        Ok(FeedConsumerState {
            handler: args.handler,
            name,
            stores: args.stores,
            writer: args.writer,
            metrics: args.metrics,
            batch: args.batch.max(1),
            cursor,
            backoff: MIN_BACKOFF,
            pending,
            watcher,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<FeedMsg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.watcher.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<FeedMsg>,
        msg: FeedMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let FeedMsg::Pump = msg;
        state.pending.store(false, Ordering::SeqCst);
        let entries = match state.stores.events.feed_after(state.cursor, state.batch) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(message = "Feed read failed; retrying.", consumer = %state.name, %error);
                state.retry_later(&myself);
                return Ok(());
            }
        };
        let Some(last) = entries.last().map(|e| e.seq) else { return Ok(()) };
        let mut ops = match state.handler.handle(&state.stores, &entries).await {
            Ok(ops) => ops,
            Err(error) => {
                tracing::warn!(message = "Feed handler failed; the entries will be handled again.", consumer = %state.name, from = entries[0].seq, to = last, %error);
                state.retry_later(&myself);
                return Ok(());
            }
        };
        ops.push(Op::Cursor(state.name.clone(), last));
        if let Err(error) = state.writer.submit(ops).await {
            tracing::warn!(message = "Feed results not committed; the entries will be handled again.", consumer = %state.name, %error);
            state.retry_later(&myself);
            return Ok(());
        }
        Metrics::add(&state.metrics.feed_handled, entries.len() as u64);
        for entry in &entries {
            if let FeedFact::Unreadable { reason } = &entry.fact {
                // After the cursor moved past it, so logged and counted once per consumer, not per retry.
                tracing::error!(message = "Feed entry cannot be read; skipped (it stays in the store).", consumer = %state.name, seq = entry.seq, %reason);
                Metrics::inc(&state.metrics.feed_unreadable);
            }
        }
        state.cursor = last;
        state.backoff = MIN_BACKOFF;
        if entries.len() == state.batch && !state.pending.swap(true, Ordering::SeqCst) {
            myself.cast(FeedMsg::Pump)?;
        }
        Ok(())
    }
}

/// The configured limits of one water-quality series, and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesLimits {
    pub region: RegionId,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// Turns water-quality samples into [`Event::LimitCrossed`] / [`Event::LimitCleared`] (R-A6): a 12-minute
/// chlorine dip leaves two events in the journal even when it has cleared by the time anyone looks.
///
/// A crossing is a change of a sample's limit flags against the stored sample of the same series just
/// before it in time, so the result depends only on committed data: handling an entry twice gives the same
/// events, and those are committed with the cursor, so they are recorded once. Samples the device flagged as
/// untrusted do not cross (the alarm engine raises "sensor untrusted" for them); averages are not watched.
pub struct LimitWatcher {
    pub limits: HashMap<(DeviceId, String), SeriesLimits>,
}

impl LimitWatcher {
    pub const NAME: &'static str = "limit-watcher";

    fn crossing(&self, store: &dyn FieldStore, s: &QualitySample) -> Result<Option<Event>, StoreError> {
        let Some(lim) = self.limits.get(&(s.device.clone(), s.parameter.clone())) else { return Ok(None) };
        if s.flags.0 & QualityFlags::DEVICE_FLAGGED != 0 {
            return Ok(None);
        }
        let side = |f: QualityFlags| {
            if f.0 & QualityFlags::BELOW_LOW != 0 {
                Some(LimitSide::Low)
            } else if f.0 & QualityFlags::ABOVE_HIGH != 0 {
                Some(LimitSide::High)
            } else {
                None
            }
        };
        let before = store.sample_before(&s.device, &s.parameter, s.ts)?.map(|(_, _, f)| f);
        let (was, now) = (before.and_then(side), side(s.flags));
        Ok(match (was, now) {
            (a, b) if a == b => None,
            (_, Some(side)) => Some(Event::LimitCrossed {
                device: s.device.clone(),
                region: lim.region.clone(),
                ts: s.ts,
                parameter: s.parameter.clone(),
                value: s.value,
                unit: s.unit.clone(),
                side,
                limit: match side {
                    LimitSide::Low => lim.low,
                    LimitSide::High => lim.high,
                },
            }),
            (Some(_), None) => Some(Event::LimitCleared {
                device: s.device.clone(),
                region: lim.region.clone(),
                ts: s.ts,
                parameter: s.parameter.clone(),
                value: s.value,
                unit: s.unit.clone(),
            }),
            (None, None) => None,
        })
    }
}

impl FeedHandler for LimitWatcher {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn handle(&mut self, stores: &Stores, entries: &[FeedEntry]) -> Result<Vec<Op>, FeedError> {
        let mut ops = Vec::new();
        for entry in entries {
            if let FeedFact::Data { samples, .. } = &entry.fact {
                for s in samples {
                    if let Some(event) = self.crossing(stores.field.as_ref(), s)? {
                        tracing::info!(message = "Water-quality limit crossing.", device = %s.device, parameter = %s.parameter, value = s.value, kind = event.kind());
                        let ts = s.ts;
                        ops.push(Op::Event(ts, event));
                    }
                }
            }
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{reading, tempdir};
    use crate::store::{Store, StoreWriter, StoreWriterArgs};
    use crate::supervisor::Slot;
    use tokio::sync::mpsc;

    /// Reports each batch it is given: the sequence numbers of the data entries in it.
    struct Seen(mpsc::UnboundedSender<Vec<u64>>);

    impl FeedHandler for Seen {
        fn name(&self) -> &str {
            "seen"
        }

        async fn handle(&mut self, _stores: &Stores, entries: &[FeedEntry]) -> Result<Vec<Op>, FeedError> {
            let data = entries.iter().filter(|e| matches!(e.fact, FeedFact::Data { .. })).map(|e| e.seq).collect();
            let _ = self.0.send(data);
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_consumer_passes_over_an_unreadable_entry_and_counts_it() {
        let store = Store::open(&tempdir()).unwrap();
        for ts in 1..=3 {
            store.apply_one(&[reading("m1", ts, ts)]).unwrap();
        }
        store.damage_feed_entry(2, b"\x01\xFF");
        let metrics = Arc::new(Metrics::default());
        let slot = Slot::default();
        let args = StoreWriterArgs {
            store: Arc::new(store.clone()),
            metrics: metrics.clone(),
            max_batch_ops: 100,
            events: None,
        };
        let (writer, _) = Actor::spawn(None, StoreWriter, args).await.unwrap();
        slot.set(writer);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let args = FeedConsumerArgs {
            handler: Seen(tx),
            stores: store.clone().into(),
            writer: StoreHandle::new(slot, metrics.clone()),
            metrics: metrics.clone(),
            batch: 1,
        };
        let (_consumer, _) = Actor::spawn(None, FeedConsumer::<Seen>::default(), args).await.unwrap();
        // One entry per batch: 1, the unreadable 2 (no data), then 3: the bad entry does not stop the consumer.
        let mut batches = Vec::new();
        for _ in 0..3 {
            let batch = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("the consumer goes on");
            batches.push(batch.unwrap());
        }
        assert_eq!(batches, [vec![1], vec![], vec![3]]);
        assert_eq!(Metrics::get(&metrics.feed_unreadable), 1);
    }
}
