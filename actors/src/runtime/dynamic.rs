//! The dynamic supervisor: children started on demand by key, passivated when idle (issue 7 §2, DESIGN.md §3).
//!
//! One supervisor hosts children of one actor type, each under a key (an account number, a work-order id).
//! Callers reach a child only through [`DynamicHandle`]: [`DynamicHandle::ask`] activates the child if it is not
//! running and sends it a request; [`DynamicHandle::get_or_activate`] hands out its reference. Activation runs
//! inside the supervisor's mailbox, one at a time, so concurrent callers for the same key get the same single
//! child (never two for one key). The child loads its state from the store in `pre_start`; the supervisor holds
//! none of it.
//!
//! - **Restart.** A crash (panic, `Err` from a handler) restarts the child after an exponential backoff; a stop
//!   the supervisor did not ask for restarts a [`Restart::Permanent`] child and is final for a
//!   [`Restart::Transient`] one (its entry is dropped; the next request activates it anew). More than
//!   `max_restarts` restarts of one key within `window` escalate: the supervisor fails itself, like the static
//!   one ([`super::restart::RestartTracker`] is shared). Requests that arrive during the backoff wait for it.
//! - **Passivation.** A child that had no request for `idle_after` (none in flight, none finished) is drained
//!   (messages already queued are handled, then it stops) and its entry dropped. A request for a key whose
//!   child is still stopping waits until it has stopped, then activates it again: one child per key at a time.
//! - **Bound.** At most `max_active` children (not counting those stopping). Activating one more passivates the
//!   least recently used child with no request in flight, or is refused with [`DynamicError::Full`].
//! - **Time** is tokio's: backoff, the restart window and idle timing run in virtual time under
//!   `#[tokio::test(start_paused = true)]`.
//!
//! Children are never named: ractor's names are process-global, and tests run several servers in one process.
//! Deliberately not here: persistence (children save their own state through the store writer), routing by
//! key hash over several supervisors (shard by creating several, if one mailbox ever becomes the bottleneck),
//! and requests that bypass [`DynamicHandle::ask`] (a reference from `get_or_activate` is not tracked as in
//! flight, so such a child can be passivated while it works; it still finishes the messages already queued).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, MessagingErr, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::time::Instant;

use super::restart::{RestartPolicy, RestartTracker, Verdict};
use super::supervisor::Slot;
use crate::event::{Event, EventBus};
use crate::metrics::Metrics;

/// What a key must be: cheap to clone, hashable, printable in logs.
pub trait ChildKey: Clone + Eq + Hash + Display + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + Display + Send + Sync + 'static> ChildKey for T {}

/// Whether a child that stops of its own accord is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Restart {
    /// A normal stop is final (the entry is dropped); a crash restarts it.
    Transient,
    /// Restarted after any stop the supervisor did not ask for. Passivation and `remove` are asked for.
    Permanent,
}

/// The limits of a dynamic supervisor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynamicPolicy {
    pub restart: RestartPolicy,
    /// Passivate a child that had no request for this long; `None` keeps children until removed.
    pub idle_after: Option<Duration>,
    /// At most this many children at once (those stopping are not counted).
    pub max_active: usize,
}

impl Default for DynamicPolicy {
    fn default() -> Self {
        DynamicPolicy {
            restart: RestartPolicy::default(),
            idle_after: Some(Duration::from_secs(600)),
            max_active: 100_000,
        }
    }
}

/// Why a request to a dynamic child failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DynamicError {
    #[error("dynamic supervisor is not running")]
    Unavailable,
    #[error("{supervisor}: {active} children active and none idle; request refused")]
    Full { supervisor: String, active: usize },
    #[error("child {key} could not be started: {reason}")]
    StartFailed { key: String, reason: String },
    #[error("child {key} stopped before it answered")]
    ChildGone { key: String },
}

/// A future that starts one child, linked to the given supervisor cell.
pub type StartFuture<M> = Pin<Box<dyn Future<Output = Result<ActorRef<M>, SpawnErr>> + Send>>;

/// How to start the child of a key: `(key, supervisor) -> started child`. It must not name the child.
pub type StartChild<K, M> = Arc<dyn Fn(K, ActorCell) -> StartFuture<M> + Send + Sync>;

/// A [`StartChild`] from a closure.
pub fn start_child<K, M, F, Fut>(f: F) -> StartChild<K, M>
where
    F: Fn(K, ActorCell) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ActorRef<M>, SpawnErr>> + Send + 'static,
{
    Arc::new(move |key, sup| Box::pin(f(key, sup)))
}

pub struct DynamicArgs<K, M> {
    pub name: String,
    pub start: StartChild<K, M>,
    /// The restart kind of children activated on demand ([`DynamicHandle::add`] may choose another).
    pub restart: Restart,
    pub policy: DynamicPolicy,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
}

/// What the supervisor reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DynamicStats {
    /// Children running or waiting for a restart (not those stopping).
    pub active: usize,
    pub activations: u64,
    pub passivations: u64,
    pub restarts: u64,
}

/// What the supervisor reports about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChildStatus {
    pub running: bool,
    pub restart: Restart,
    pub restarts: u64,
    pub in_flight: u32,
}

/// A request in flight to one child. Dropping it tells the supervisor the request is over (the child was
/// active then). The supervisor creates it, so a reply that never reaches its caller still ends it.
pub struct InFlight<K: ChildKey, M: Message> {
    supervisor: ActorRef<DynamicMsg<K, M>>,
    key: Option<K>,
    generation: u64,
}

impl<K: ChildKey, M: Message> Drop for InFlight<K, M> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.supervisor.cast(DynamicMsg::Done { key, generation: self.generation });
        }
    }
}

/// A running child handed to a caller, with its in-flight mark if the caller asked for one.
pub struct Lease<K: ChildKey, M: Message> {
    pub actor: ActorRef<M>,
    pub in_flight: Option<InFlight<K, M>>,
}

type LeaseReply<K, M> = RpcReplyPort<Result<Lease<K, M>, DynamicError>>;

pub enum DynamicMsg<K: ChildKey, M: Message> {
    /// Hand out the child of `key`, activating it if needed; `track` marks a request in flight.
    Activate {
        key: K,
        restart: Option<Restart>,
        track: bool,
        reply: LeaseReply<K, M>,
    },
    /// A tracked request to entry `generation` of `key` ended.
    Done {
        key: K,
        generation: u64,
    },
    /// Stop the child of `key` and drop its entry; answered once it has stopped.
    Remove {
        key: K,
        reply: RpcReplyPort<()>,
    },
    /// The backoff of entry `generation` of `key` is over.
    Restart {
        key: K,
        generation: u64,
    },
    /// Passivate the children idle since `idle_after`.
    Sweep,
    Stats(RpcReplyPort<DynamicStats>),
    Status(K, RpcReplyPort<Option<ChildStatus>>),
}

enum Phase<K: ChildKey, M: Message> {
    Running(ActorRef<M>),
    /// A restart is scheduled; requests wait for it.
    Backoff {
        waiters: Vec<Waiter<K, M>>,
    },
    /// Asked to stop (passivation or `remove`); requests wait until it has, then activate anew.
    Stopping {
        waiters: Vec<Waiter<K, M>>,
        removers: Vec<RpcReplyPort<()>>,
    },
}

struct Waiter<K: ChildKey, M: Message> {
    track: bool,
    reply: LeaseReply<K, M>,
}

struct Entry<K: ChildKey, M: Message> {
    restart: Restart,
    /// Tells this entry from an earlier or later one of the same key (timers and `Done` carry it).
    generation: u64,
    phase: Phase<K, M>,
    history: RestartTracker,
    in_flight: u32,
    /// Position in the least-recently-used order while running.
    lru: Option<u64>,
    last_active: Instant,
}

pub struct DynamicState<K: ChildKey, M: Message> {
    name: String,
    start: StartChild<K, M>,
    default_restart: Restart,
    policy: DynamicPolicy,
    events: EventBus,
    metrics: Arc<Metrics>,
    entries: HashMap<K, Entry<K, M>>,
    by_cell: HashMap<ActorId, K>,
    /// Running children, least recently active first.
    lru: BTreeMap<u64, K>,
    next_seq: u64,
    next_generation: u64,
    stopping: usize,
    sweep_armed: bool,
    stats: DynamicStats,
}

/// The dynamic supervisor actor (behaviour only; see the module documentation).
pub struct DynamicSupervisor<K, M>(PhantomData<fn() -> (K, M)>);

impl<K, M> Default for DynamicSupervisor<K, M> {
    fn default() -> Self {
        DynamicSupervisor(PhantomData)
    }
}

impl<K: ChildKey, M: Message> DynamicState<K, M> {
    fn active(&self) -> usize {
        self.entries.len() - self.stopping
    }

    /// Marks `key` active now, moving it to the back of the LRU order if it is running.
    fn touch(&mut self, key: &K) {
        let now = Instant::now();
        let seq = self.next_seq;
        let Some(entry) = self.entries.get_mut(key) else { return };
        entry.last_active = now;
        if let Some(old) = entry.lru.take() {
            self.lru.remove(&old);
            entry.lru = Some(seq);
            self.lru.insert(seq, key.clone());
            self.next_seq += 1;
        }
    }

    fn lease(&mut self, myself: &ActorRef<DynamicMsg<K, M>>, key: &K, track: bool) -> Option<Lease<K, M>> {
        let entry = self.entries.get_mut(key)?;
        let Phase::Running(actor) = &entry.phase else { return None };
        let in_flight = track.then(|| {
            entry.in_flight += 1;
            InFlight { supervisor: myself.clone(), key: Some(key.clone()), generation: entry.generation }
        });
        Some(Lease { actor: actor.clone(), in_flight })
    }

    /// Answers a request for a running child (or queues it behind a restart or a stop).
    fn serve(&mut self, myself: &ActorRef<DynamicMsg<K, M>>, key: &K, waiter: Waiter<K, M>) {
        match self.entries.get_mut(key).map(|e| &mut e.phase) {
            Some(Phase::Running(_)) => {
                self.touch(key);
                if let Some(lease) = self.lease(myself, key, waiter.track) {
                    // A caller that gave up drops the lease here, which ends its in-flight mark.
                    let _ = waiter.reply.send(Ok(lease));
                }
            }
            Some(Phase::Backoff { waiters }) | Some(Phase::Stopping { waiters, .. }) => waiters.push(waiter),
            None => requeue(myself, key, vec![waiter]),
        }
    }

    async fn activate(
        &mut self,
        myself: &ActorRef<DynamicMsg<K, M>>,
        key: K,
        restart: Option<Restart>,
        waiter: Waiter<K, M>,
    ) {
        if self.entries.contains_key(&key) {
            return self.serve(myself, &key, waiter);
        }
        if self.active() >= self.policy.max_active.max(1) && !self.evict_one() {
            let full = DynamicError::Full { supervisor: self.name.clone(), active: self.active() };
            tracing::warn!(message = "Dynamic supervisor full; request refused.", supervisor = %self.name, child = %key, error = %full);
            let _ = waiter.reply.send(Err(full));
            return;
        }
        match (self.start)(key.clone(), myself.get_cell()).await {
            Ok(actor) => {
                let generation = self.next_generation;
                self.next_generation += 1;
                let mut history = RestartTracker::default();
                history.started(Instant::now());
                self.by_cell.insert(actor.get_id(), key.clone());
                self.entries.insert(
                    key.clone(),
                    Entry {
                        restart: restart.unwrap_or(self.default_restart),
                        generation,
                        phase: Phase::Running(actor),
                        history,
                        in_flight: 0,
                        lru: Some(self.next_seq),
                        last_active: Instant::now(),
                    },
                );
                self.lru.insert(self.next_seq, key.clone());
                self.next_seq += 1;
                self.stats.activations += 1;
                self.serve(myself, &key, waiter);
            }
            Err(e) => {
                // A first activation that fails goes back to the caller and leaves no entry: one bad state
                // blob must not escalate and take every other child down.
                tracing::warn!(message = "Child activation failed.", supervisor = %self.name, child = %key, error = %e);
                let _ =
                    waiter.reply.send(Err(DynamicError::StartFailed { key: key.to_string(), reason: e.to_string() }));
            }
        }
    }

    /// Passivates the least recently used running child with no request in flight; false if there is none.
    fn evict_one(&mut self) -> bool {
        let victim = self.lru.values().find(|k| self.entries.get(*k).is_some_and(|e| e.in_flight == 0)).cloned();
        match victim {
            Some(key) => {
                self.begin_stop(&key);
                true
            }
            None => false,
        }
    }

    /// Drains the running child of `key`: it handles what is queued, then stops; its entry waits for that.
    fn begin_stop(&mut self, key: &K) {
        let Some(entry) = self.entries.get_mut(key) else { return };
        let Phase::Running(actor) = &entry.phase else { return };
        if actor.drain().is_err() {
            // Already stopping on its own; its supervision event ends the entry.
            tracing::debug!(message = "Child was already stopping.", supervisor = %self.name, child = %key);
        }
        if let Some(seq) = entry.lru.take() {
            self.lru.remove(&seq);
        }
        entry.phase = Phase::Stopping { waiters: Vec::new(), removers: Vec::new() };
        self.stopping += 1;
        self.stats.passivations += 1;
    }

    fn sweep(&mut self) {
        self.sweep_armed = false;
        let Some(idle) = self.policy.idle_after else { return };
        let now = Instant::now();
        while let Some((_, key)) = self.lru.first_key_value() {
            let key = key.clone();
            let Some(entry) = self.entries.get(&key) else {
                self.lru.pop_first();
                continue;
            };
            if entry.last_active + idle > now {
                break;
            }
            if entry.in_flight > 0 {
                // A request still being handled is activity.
                self.touch(&key);
            } else {
                tracing::debug!(message = "Passivating idle child.", supervisor = %self.name, child = %key);
                self.begin_stop(&key);
            }
        }
    }

    /// Keeps one sweep timer armed for the least recently active child, if any.
    fn arm_sweep(&mut self, myself: &ActorRef<DynamicMsg<K, M>>) {
        let Some(idle) = self.policy.idle_after else { return };
        if self.sweep_armed {
            return;
        }
        let Some(entry) = self.lru.values().next().and_then(|k| self.entries.get(k)) else { return };
        // Activity only moves deadlines later, so a timer armed for the oldest deadline is never late.
        let delay = (entry.last_active + idle).saturating_duration_since(Instant::now());
        myself.send_after(delay, || DynamicMsg::Sweep);
        self.sweep_armed = true;
    }

    /// The child of `key` stopped (`failed`: crashed). Restarts it, drops it, or escalates.
    fn child_exited(
        &mut self,
        myself: &ActorRef<DynamicMsg<K, M>>,
        key: K,
        failed: bool,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entry) = self.entries.get_mut(&key) else { return Ok(()) };
        match &mut entry.phase {
            Phase::Stopping { waiters, removers } => {
                let (waiters, removers) = (std::mem::take(waiters), std::mem::take(removers));
                self.entries.remove(&key);
                self.stopping -= 1;
                for r in removers {
                    let _ = r.send(());
                }
                requeue(myself, &key, waiters);
                Ok(())
            }
            Phase::Backoff { .. } => Ok(()),
            Phase::Running(_) => {
                if let Some(seq) = entry.lru.take() {
                    self.lru.remove(&seq);
                }
                if !failed && entry.restart == Restart::Transient {
                    tracing::debug!(message = "Transient child stopped; not restarted.", supervisor = %self.name, child = %key);
                    self.entries.remove(&key);
                    return Ok(());
                }
                entry.phase = Phase::Backoff { waiters: Vec::new() };
                self.schedule_restart(myself, key, reason)
            }
        }
    }

    /// Puts the entry of `key` (in backoff) on a timer for its restart, or escalates.
    fn schedule_restart(
        &mut self,
        myself: &ActorRef<DynamicMsg<K, M>>,
        key: K,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let policy = self.policy.restart;
        let Some(entry) = self.entries.get_mut(&key) else { return Ok(()) };
        let delay = match entry.history.stopped(&policy, Instant::now()) {
            Verdict::Restart { delay } => delay,
            Verdict::Escalate { restarts_in_window } => {
                tracing::error!(message = "Restart intensity exceeded.", supervisor = %self.name, child = %key, restarts = restarts_in_window, error = %reason);
                return Err(format!(
                    "{}: child {key} restarted more than {} times within {:?}; escalating",
                    self.name, policy.max_restarts, policy.window
                )
                .into());
            }
        };
        let generation = entry.generation;
        self.stats.restarts += 1;
        Metrics::inc(&self.metrics.actor_restarts);
        tracing::warn!(
            message = "Child stopped; restarting after backoff.",
            supervisor = %self.name,
            child = %key,
            delay_ms = delay.as_millis() as u64,
            error = %reason
        );
        self.events.publish(Event::ChildRestarting {
            supervisor: self.name.clone(),
            child: key.to_string(),
            reason: reason.to_owned(),
            delay,
        });
        myself.send_after(delay, move || DynamicMsg::Restart { key, generation });
        Ok(())
    }

    async fn restart(
        &mut self,
        myself: &ActorRef<DynamicMsg<K, M>>,
        key: K,
        generation: u64,
    ) -> Result<(), ActorProcessingErr> {
        match self.entries.get(&key) {
            Some(e) if e.generation == generation && matches!(e.phase, Phase::Backoff { .. }) => {}
            _ => return Ok(()),
        }
        match (self.start)(key.clone(), myself.get_cell()).await {
            Ok(actor) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.by_cell.insert(actor.get_id(), key.clone());
                let Some(entry) = self.entries.get_mut(&key) else { return Ok(()) };
                let now = Instant::now();
                entry.history.started(now);
                entry.last_active = now;
                entry.lru = Some(seq);
                self.lru.insert(seq, key.clone());
                let waiters = match std::mem::replace(&mut entry.phase, Phase::Running(actor)) {
                    Phase::Backoff { waiters } => waiters,
                    _ => Vec::new(),
                };
                for w in waiters {
                    self.serve(myself, &key, w);
                }
                Ok(())
            }
            Err(e) => self.schedule_restart(myself, key, &format!("start failed: {e}")),
        }
    }

    fn remove(&mut self, myself: &ActorRef<DynamicMsg<K, M>>, key: K, reply: RpcReplyPort<()>) {
        match self.entries.get_mut(&key).map(|e| &mut e.phase) {
            Some(Phase::Running(_)) => {
                self.begin_stop(&key);
                if let Some(Phase::Stopping { removers, .. }) = self.entries.get_mut(&key).map(|e| &mut e.phase) {
                    removers.push(reply);
                }
            }
            Some(Phase::Stopping { removers, .. }) => removers.push(reply),
            Some(Phase::Backoff { waiters }) => {
                // Nothing runs; the pending restart timer finds no entry of its generation and does nothing.
                let waiters = std::mem::take(waiters);
                self.entries.remove(&key);
                let _ = reply.send(());
                requeue(myself, &key, waiters);
            }
            None => {
                let _ = reply.send(());
            }
        }
    }

    fn done(&mut self, key: K, generation: u64) {
        match self.entries.get_mut(&key) {
            Some(e) if e.generation == generation => e.in_flight = e.in_flight.saturating_sub(1),
            _ => return,
        }
        self.touch(&key);
    }
}

/// Sends waiting requests back through the mailbox, behind whatever is queued (their key has no child now).
fn requeue<K: ChildKey, M: Message>(myself: &ActorRef<DynamicMsg<K, M>>, key: &K, waiters: Vec<Waiter<K, M>>) {
    for w in waiters {
        let msg = DynamicMsg::Activate { key: key.clone(), restart: None, track: w.track, reply: w.reply };
        if let Err(MessagingErr::SendErr(DynamicMsg::Activate { reply, .. })) = myself.send_message(msg) {
            let _ = reply.send(Err(DynamicError::Unavailable));
        }
    }
}

impl<K: ChildKey, M: Message> Actor for DynamicSupervisor<K, M> {
    type Msg = DynamicMsg<K, M>;
    type State = DynamicState<K, M>;
    type Arguments = DynamicArgs<K, M>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: DynamicArgs<K, M>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(DynamicState {
            name: args.name,
            start: args.start,
            default_restart: args.restart,
            policy: args.policy,
            events: args.events,
            metrics: args.metrics,
            entries: HashMap::new(),
            by_cell: HashMap::new(),
            lru: BTreeMap::new(),
            next_seq: 0,
            next_generation: 0,
            stopping: 0,
            sweep_armed: false,
            stats: DynamicStats::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DynamicMsg::Activate { key, restart, track, reply } => {
                state.activate(&myself, key, restart, Waiter { track, reply }).await;
            }
            DynamicMsg::Done { key, generation } => state.done(key, generation),
            DynamicMsg::Remove { key, reply } => state.remove(&myself, key, reply),
            DynamicMsg::Restart { key, generation } => state.restart(&myself, key, generation).await?,
            DynamicMsg::Sweep => state.sweep(),
            DynamicMsg::Stats(reply) => {
                let _ = reply.send(DynamicStats { active: state.active(), ..state.stats });
            }
            DynamicMsg::Status(key, reply) => {
                let status = state.entries.get(&key).map(|e| ChildStatus {
                    running: matches!(e.phase, Phase::Running(_)),
                    restart: e.restart,
                    restarts: e.history.restarts(),
                    in_flight: e.in_flight,
                });
                let _ = reply.send(status);
            }
        }
        state.arm_sweep(&myself);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failed, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, false, format!("terminated: {}", reason.as_deref().unwrap_or("stopped")))
            }
            _ => return Ok(()),
        };
        if let Some(key) = state.by_cell.remove(&cell.get_id()) {
            state.child_exited(&myself, key, failed, &reason)?;
        }
        state.arm_sweep(&myself);
        Ok(())
    }
}

/// How callers reach children: the one way in. Cheap to clone; survives restarts of the supervisor through
/// its [`Slot`].
pub struct DynamicHandle<K: ChildKey, M: Message> {
    slot: Slot<DynamicMsg<K, M>>,
}

impl<K: ChildKey, M: Message> Clone for DynamicHandle<K, M> {
    fn clone(&self) -> Self {
        DynamicHandle { slot: self.slot.clone() }
    }
}

impl<K: ChildKey, M: Message> DynamicHandle<K, M> {
    pub fn new(slot: Slot<DynamicMsg<K, M>>) -> Self {
        DynamicHandle { slot }
    }

    async fn call<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> DynamicMsg<K, M>,
    ) -> Result<T, DynamicError> {
        let sup = self.slot.get().ok_or(DynamicError::Unavailable)?;
        let (tx, rx) = ractor::concurrency::oneshot();
        sup.cast(msg(tx.into())).map_err(|_| DynamicError::Unavailable)?;
        rx.await.map_err(|_| DynamicError::Unavailable)
    }

    async fn lease(&self, key: K, restart: Option<Restart>, track: bool) -> Result<Lease<K, M>, DynamicError> {
        self.call(|reply| DynamicMsg::Activate { key, restart, track, reply }).await?
    }

    /// The running child of `key`, activated if needed. Messages sent to it directly are not tracked as in
    /// flight (see the module documentation); prefer [`DynamicHandle::ask`].
    pub async fn get_or_activate(&self, key: K) -> Result<ActorRef<M>, DynamicError> {
        Ok(self.lease(key, None, false).await?.actor)
    }

    /// Starts the child of `key` now with the given restart kind (if it is not already running).
    pub async fn add(&self, key: K, restart: Restart) -> Result<ActorRef<M>, DynamicError> {
        Ok(self.lease(key, Some(restart), false).await?.actor)
    }

    /// Sends the child of `key` (activated if needed) the request `build(reply)` and waits for the answer.
    /// A child that stops before the request reached it is activated again and the request resent; once the
    /// request is in its mailbox it is never sent twice.
    pub async fn ask<R: Send + 'static>(
        &self,
        key: K,
        mut build: impl FnMut(RpcReplyPort<R>) -> M,
    ) -> Result<R, DynamicError> {
        for _ in 0..3 {
            let lease = self.lease(key.clone(), None, true).await?;
            let (tx, rx) = ractor::concurrency::oneshot();
            if lease.actor.send_message(build(tx.into())).is_err() {
                continue;
            }
            let answer = rx.await.map_err(|_| DynamicError::ChildGone { key: key.to_string() });
            drop(lease);
            return answer;
        }
        Err(DynamicError::ChildGone { key: key.to_string() })
    }

    /// Stops the child of `key` (it handles what is queued first) and drops its entry; returns once it has
    /// stopped. Its state stays in the store: the next request activates it again.
    pub async fn remove(&self, key: K) -> Result<(), DynamicError> {
        self.call(|reply| DynamicMsg::Remove { key, reply }).await
    }

    pub async fn stats(&self) -> Result<DynamicStats, DynamicError> {
        self.call(DynamicMsg::Stats).await
    }

    pub async fn status(&self, key: K) -> Result<Option<ChildStatus>, DynamicError> {
        self.call(|reply| DynamicMsg::Status(key, reply)).await
    }
}
