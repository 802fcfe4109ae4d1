//! The store writer: one actor, one committer thread, group commit (DESIGN.md §1).
//!
//! Submissions queue in the actor while the committer thread runs a commit; when that commit returns, every
//! queued submission goes into the next transaction together. So a commit costs one fsync however many
//! readings it carries, and under load batches grow by themselves (no artificial wait). A submission is
//! answered only after the transaction that holds it has committed: that answer is the acknowledgement.
//!
//! The committer hands each finished batch to a second thread, the acker, which answers the submitters and
//! frees their operations, so the committer starts the next commit at once.
//!
//! The threads own no state but the batch in hand; if this actor is restarted, the old threads end when their
//! channels close and new ones start. Submitters reach the writer through a [`StoreHandle`], whose slot the
//! supervisor refills on restart; while the writer is down, submissions fail with `Unavailable` and the
//! submitter keeps its data to try again.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{Op, Store, StoreError};
use crate::event::EventBus;
use crate::metrics::Metrics;
use crate::supervisor::Slot;

/// Receipt of a committed submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// How many operations the transaction carried in all (this submission and its companions).
    pub batch_ops: usize,
}

type Reply = RpcReplyPort<Result<Committed, StoreError>>;

pub enum StoreWriterMsg {
    /// Commit these operations atomically and answer after the commit.
    Submit(Vec<Op>, Reply),
    /// The committer thread finished a batch.
    BatchDone,
}

pub struct StoreWriter;

pub struct StoreWriterArgs {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Upper bound on operations in one transaction; bigger queues are split over several commits.
    pub max_batch_ops: usize,
    /// Where committed events are delivered (after the commit, never before).
    pub events: Option<EventBus>,
}

pub struct StoreWriterState {
    committer: mpsc::Sender<Vec<(Vec<Op>, Reply)>>,
    queue: Vec<(Vec<Op>, Reply)>,
    queued_ops: usize,
    in_flight: bool,
    max_batch_ops: usize,
}

impl StoreWriterState {
    fn dispatch(&mut self) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        // Take submissions up to the batch bound (always at least one).
        let mut ops = 0;
        let mut split = 0;
        for (i, (sub, _)) in self.queue.iter().enumerate() {
            if i > 0 && ops + sub.len() > self.max_batch_ops {
                break;
            }
            ops += sub.len();
            split = i + 1;
        }
        let rest = self.queue.split_off(split);
        let batch = std::mem::replace(&mut self.queue, rest);
        self.queued_ops -= ops;
        if let Err(mpsc::SendError(batch)) = self.committer.send(batch) {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Unavailable));
            }
            return;
        }
        self.in_flight = true;
    }
}

impl Actor for StoreWriter {
    type Msg = StoreWriterMsg;
    type State = StoreWriterState;
    type Arguments = StoreWriterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: StoreWriterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (tx, rx) = mpsc::channel::<Vec<(Vec<Op>, Reply)>>();
        // Answering a batch (waking each submitter) and freeing its operations is the acker thread's work, so
        // the committer turns to the next batch at once (issue 7 §8). The acker ends when the committer does.
        let (ack_tx, ack_rx) = mpsc::channel::<(Vec<(Vec<Op>, Reply)>, Result<Committed, StoreError>)>();
        std::thread::Builder::new().name("store-acker".into()).spawn(move || {
            while let Ok((batch, result)) = ack_rx.recv() {
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        })?;
        let store = args.store.clone();
        let metrics = args.metrics.clone();
        let events = args.events.clone();
        std::thread::Builder::new().name("store-committer".into()).spawn(move || {
            while let Ok(batch) = rx.recv() {
                let n = batch.iter().map(|(ops, _)| ops.len()).sum();
                let result = store.apply(batch.iter().map(|(ops, _)| ops));
                match &result {
                    Ok(applied) => {
                        Metrics::add(&metrics.events_committed, applied.events.len() as u64);
                        if let Some(bus) = &events {
                            for record in &applied.events {
                                bus.deliver(record.clone());
                            }
                        }
                        Metrics::inc(&metrics.commits);
                        let (r, s) = batch.iter().flat_map(|(ops, _)| ops).fold((0, 0), |(r, s), op| match op {
                            Op::Reading(_) => (r + 1, s),
                            Op::Sample(_) => (r, s + 1),
                            _ => (r, s),
                        });
                        Metrics::add(&metrics.readings_stored, r);
                        Metrics::add(&metrics.samples_stored, s);
                    }
                    Err(e) => {
                        Metrics::inc(&metrics.commit_failures);
                        tracing::error!(message = "Commit failed; submissions are not acknowledged.", ops = n, error = %e);
                    }
                }
                let result = result.map(|_| Committed { batch_ops: n });
                let stopping = myself.cast(StoreWriterMsg::BatchDone).is_err();
                if let Err(mpsc::SendError((batch, result))) = ack_tx.send((batch, result)) {
                    for (_, reply) in batch {
                        let _ = reply.send(result.clone());
                    }
                }
                if stopping {
                    break;
                }
            }
        })?;
        Ok(StoreWriterState {
            committer: tx,
            queue: Vec::new(),
            queued_ops: 0,
            in_flight: false,
            max_batch_ops: args.max_batch_ops.max(1),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            StoreWriterMsg::Submit(ops, reply) => {
                state.queued_ops += ops.len();
                state.queue.push((ops, reply));
                state.dispatch();
            }
            StoreWriterMsg::BatchDone => {
                state.in_flight = false;
                state.dispatch();
            }
        }
        Ok(())
    }
}

/// How the rest of the system submits writes. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    slot: Slot<StoreWriterMsg>,
    metrics: Arc<Metrics>,
}

impl StoreHandle {
    pub fn new(slot: Slot<StoreWriterMsg>, metrics: Arc<Metrics>) -> StoreHandle {
        StoreHandle { slot, metrics }
    }

    /// The writer actor currently in the slot, if any.
    pub fn actor(&self) -> Option<ActorRef<StoreWriterMsg>> {
        self.slot.get()
    }

    /// Submits `ops` as one atomic unit and waits until they are committed.
    pub async fn submit(&self, ops: Vec<Op>) -> Result<Committed, StoreError> {
        let writer = self.slot.get().ok_or(StoreError::Unavailable)?;
        let started = Instant::now();
        let (tx, rx) = ractor::concurrency::oneshot();
        writer.cast(StoreWriterMsg::Submit(ops, tx.into())).map_err(|_| StoreError::Unavailable)?;
        // A dropped reply port means the writer died before answering: not acknowledged.
        let result = rx.await.map_err(|_| StoreError::Unavailable)?;
        self.metrics.commit_latency.observe(started.elapsed());
        result
    }
}
