//! The store writer: one actor, one committer thread, group commit (DESIGN.md §1).
//!
//! The actor hands each submission straight to the committer thread's intake; while a commit runs,
//! submissions wait there, and when it returns, every waiting submission goes into the next transaction
//! together. So a commit costs one fsync however many readings it carries, and under load batches grow by
//! themselves (no artificial wait). A submission is answered only after the transaction that holds it has
//! committed: that answer is the acknowledgement.
//!
//! The committer hands each finished batch to a second thread, the acker, which answers the submitters and
//! frees their operations, so the committer starts the next commit at once.
//!
//! The threads own no state but the batch in hand. If this actor stops or is restarted, its old committer
//! still commits and acknowledges what was already handed to it, then ends when its intake closes; a new
//! one starts. Two committers never number the feed twice: `Store::apply` holds the store's commit lock from
//! the start of its transaction until the feed head has moved. Submitters reach the writer through a [`StoreHandle`], whose slot the
//! supervisor refills on restart; while the writer is down, submissions fail with `Unavailable` and the
//! submitter keeps its data to try again.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{CommitStore, Op, StoreError};
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
type Submission = (Vec<Op>, Reply);

pub enum StoreWriterMsg {
    /// Commit these operations atomically and answer after the commit.
    Submit(Vec<Op>, Reply),
}

pub struct StoreWriter;

pub struct StoreWriterArgs {
    /// Where commits go: any backend's [`CommitStore`].
    pub store: Arc<dyn CommitStore>,
    pub metrics: Arc<Metrics>,
    /// Upper bound on operations in one transaction; bigger queues are split over several commits.
    pub max_batch_ops: usize,
    /// Where committed events are delivered (after the commit, never before).
    pub events: Option<EventBus>,
}

pub struct StoreWriterState {
    /// The committer's intake; dropping it (when this actor stops) ends the committer once it has committed
    /// what was already handed to it.
    committer: mpsc::Sender<Submission>,
}

/// The committer thread: takes every submission waiting in its intake (up to `max_batch_ops` operations,
/// always at least one submission) into one transaction, commits, delivers the committed events, hands the
/// batch to the acker, and goes straight on to what arrived meanwhile.
fn run_committer(
    rx: mpsc::Receiver<Submission>,
    ack: mpsc::Sender<(Vec<Submission>, Result<Committed, StoreError>)>,
    store: Arc<dyn CommitStore>,
    metrics: Arc<Metrics>,
    events: Option<EventBus>,
    max_batch_ops: usize,
) {
    let mut carry: Option<Submission> = None;
    loop {
        let first = match carry.take() {
            Some(sub) => sub,
            None => match rx.recv() {
                Ok(sub) => sub,
                Err(mpsc::RecvError) => return,
            },
        };
        let mut n = first.0.len();
        let mut batch = vec![first];
        while n < max_batch_ops {
            match rx.try_recv() {
                Ok(sub) if n + sub.0.len() > max_batch_ops => {
                    carry = Some(sub);
                    break;
                }
                Ok(sub) => {
                    n += sub.0.len();
                    batch.push(sub);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let ops: Vec<&[Op]> = batch.iter().map(|(ops, _)| ops.as_slice()).collect();
        let result = store.commit(&ops);
        drop(ops);
        metrics.commit_duration.observe(started.elapsed());
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
        if let Err(mpsc::SendError((batch, result))) = ack.send((batch, result)) {
            for (_, reply) in batch {
                let _ = reply.send(result.clone());
            }
        }
    }
}

impl Actor for StoreWriter {
    type Msg = StoreWriterMsg;
    type State = StoreWriterState;
    type Arguments = StoreWriterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: StoreWriterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (tx, rx) = mpsc::channel::<Submission>();
        // Answering a batch (waking each submitter) and freeing its operations is the acker thread's work, so
        // the committer turns to the next batch at once (issue 7 §8). The acker ends when the committer does.
        let (ack_tx, ack_rx) = mpsc::channel::<(Vec<Submission>, Result<Committed, StoreError>)>();
        std::thread::Builder::new().name("store-acker".into()).spawn(move || {
            while let Ok((batch, result)) = ack_rx.recv() {
                for (_, reply) in batch {
                    let _ = reply.send(result.clone());
                }
            }
        })?;
        let StoreWriterArgs { store, metrics, max_batch_ops, events } = args;
        let max_batch_ops = max_batch_ops.max(1);
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || run_committer(rx, ack_tx, store, metrics, events, max_batch_ops))?;
        Ok(StoreWriterState { committer: tx })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let StoreWriterMsg::Submit(ops, reply) = msg;
        if let Err(mpsc::SendError((_, reply))) = state.committer.send((ops, reply)) {
            // The committer thread is gone (it panicked): refuse, and fail so that the supervisor restarts
            // this actor with a new thread.
            let _ = reply.send(Err(StoreError::Unavailable));
            return Err("the store committer thread has stopped".into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceId, MeterId, MeterReading, MeterStatus, Timestamp, Volume};

    fn readings(sub: usize, n: usize) -> Vec<Op> {
        (0..n)
            .map(|i| {
                Op::Reading(MeterReading {
                    meter: MeterId::new(format!("m-{sub}-{i}")),
                    device: DeviceId::new("c1"),
                    ts: Timestamp(1_000),
                    volume: Volume::from_litres(i as i64),
                    meter_clock: None,
                    settlement_volume: None,
                    status: MeterStatus(0),
                })
            })
            .collect()
    }

    /// Fills the committer's intake before it starts, then lets it run until the intake closes: the batches
    /// it forms are then fixed by the bound alone.
    #[tokio::test]
    async fn waiting_submissions_share_commits_up_to_the_bound_and_all_are_committed_before_the_committer_ends() {
        let store = super::super::Store::open(&super::super::tests::tempdir()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::channel::<Submission>();
        let (ack_tx, ack_rx) = mpsc::channel();
        let mut answers = Vec::new();
        // 50 submissions of 3 readings, then one of 25 (bigger than the bound of 10: it commits alone).
        for sub in 0..51 {
            let (reply, answer) = ractor::concurrency::oneshot();
            tx.send((readings(sub, if sub == 50 { 25 } else { 3 }), reply.into())).unwrap();
            answers.push(answer);
        }
        drop(tx);
        let (s, m): (Arc<dyn CommitStore>, _) = (Arc::new(store.clone()), metrics.clone());
        std::thread::spawn(move || run_committer(rx, ack_tx, s, m, None, 10)).join().unwrap();
        let mut batches = Vec::new();
        while let Ok((batch, result)) = ack_rx.recv() {
            let committed: Committed = result.unwrap();
            batches.push((batch.len(), committed.batch_ops));
            for (_, reply) in batch {
                reply.send(Ok(committed)).unwrap();
            }
        }
        // Three submissions (9 operations) per commit, the 51st's 25 operations alone.
        let mut expected = vec![(3, 9); 16];
        expected.extend([(2, 6), (1, 25)]);
        assert_eq!(batches, expected);
        assert_eq!(store.reading_count().unwrap(), 50 * 3 + 25);
        assert_eq!(Metrics::get(&metrics.commits), 18);
        for answer in answers {
            assert!(answer.await.unwrap().is_ok());
        }
    }
}
