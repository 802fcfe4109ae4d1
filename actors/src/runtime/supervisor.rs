//! A restarting supervisor for ractor, which has none of its own (DESIGN.md §2, LIBRARY-NOTES.md §1).
//!
//! Every child is *permanent*: when it fails (panic, `Err` from a handler), stops, or is killed, it is started
//! again after an exponential backoff. The backoff resets once a child has run for `stable_after`. More than
//! `max_restarts` restarts of one child within `window` escalate: the supervisor fails itself, and its own
//! supervisor restarts it with all its children. That bookkeeping is [`super::restart::RestartTracker`], shared
//! with the dynamic supervisor; times are tokio's, so paused-time tests see them. A start that fails in `pre_start` comes back from
//! `spawn_linked` as an `Err`, not as a supervision event, and is handled the same way as a crash.
//!
//! Children are built by [`ChildSpec::start`] closures, which also refill the [`Slot`] through which the rest
//! of the system reaches that child, so a restarted actor is found again without a global name registry
//! (names are process-global in ractor, and tests run several servers in one process).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, RpcReplyPort, SpawnErr, SupervisionEvent};

use tokio::time::Instant;

pub use super::restart::RestartPolicy;
use super::restart::{RestartTracker, Verdict};
use crate::event::{Event, EventBus};
use crate::metrics::Metrics;

/// A shared, refillable reference to an actor that may be restarted.
pub struct Slot<M: Message>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M: Message> Clone for Slot<M> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<M: Message> Default for Slot<M> {
    fn default() -> Self {
        Slot(Arc::new(RwLock::new(None)))
    }
}

impl<M: Message> Slot<M> {
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set(&self, actor: ActorRef<M>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(actor);
    }
}

pub type StartFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// How to start one child, linked to the given supervisor cell.
#[derive(Clone)]
pub struct ChildSpec {
    pub name: String,
    pub start: Arc<dyn Fn(ActorCell) -> StartFuture + Send + Sync>,
}

impl ChildSpec {
    /// A child spec from a closure `supervisor -> future of the started cell`.
    pub fn new<F, Fut>(name: impl Into<String>, start: F) -> ChildSpec
    where
        F: Fn(ActorCell) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        ChildSpec { name: name.into(), start: Arc::new(move |sup| Box::pin(start(sup))) }
    }
}

/// What a supervisor reports about a child.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChildInfo {
    pub name: String,
    pub running: bool,
    pub restarts: u64,
}

pub enum SupervisorMsg {
    /// Start (or restart) child number `usize`.
    Start(usize),
    Children(RpcReplyPort<Vec<ChildInfo>>),
}

pub struct Supervisor;

pub struct SupervisorArgs {
    pub name: String,
    pub children: Vec<ChildSpec>,
    pub policy: RestartPolicy,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    history: RestartTracker,
    /// A restart is scheduled; do not schedule another.
    pending: bool,
}

pub struct SupervisorState {
    name: String,
    children: Vec<Child>,
    policy: RestartPolicy,
    events: EventBus,
    metrics: Arc<Metrics>,
}

impl SupervisorState {
    fn index_of(&self, cell: &ActorCell) -> Option<usize> {
        self.children.iter().position(|c| c.cell.as_ref().is_some_and(|x| x.get_id() == cell.get_id()))
    }

    /// Schedules a restart of child `i`, or escalates if it restarts too often.
    fn schedule_restart(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        i: usize,
        reason: &str,
    ) -> Result<(), ActorProcessingErr> {
        let policy = self.policy;
        let child = &mut self.children[i];
        child.cell = None;
        if child.pending {
            return Ok(());
        }
        let delay = match child.history.stopped(&policy, Instant::now()) {
            Verdict::Restart { delay } => delay,
            Verdict::Escalate { .. } => {
                let msg = format!(
                    "{}: child {} restarted more than {} times within {:?}; escalating",
                    self.name, child.spec.name, policy.max_restarts, policy.window
                );
                tracing::error!(message = "Restart intensity exceeded.", supervisor = %self.name, child = %child.spec.name, error = %reason);
                return Err(msg.into());
            }
        };
        child.pending = true;
        Metrics::inc(&self.metrics.actor_restarts);
        tracing::warn!(
            message = "Child stopped; restarting after backoff.",
            supervisor = %self.name,
            child = %child.spec.name,
            delay_ms = delay.as_millis() as u64,
            error = %reason
        );
        self.events.publish(Event::ChildRestarting {
            supervisor: self.name.clone(),
            child: child.spec.name.clone(),
            reason: reason.to_owned(),
            delay,
        });
        myself.send_after(delay, move || SupervisorMsg::Start(i));
        Ok(())
    }

    async fn start_child(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) -> Result<(), ActorProcessingErr> {
        let child = &mut self.children[i];
        child.pending = false;
        if child.cell.is_some() {
            return Ok(());
        }
        match (child.spec.start)(myself.get_cell()).await {
            Ok(cell) => {
                child.cell = Some(cell);
                child.history.started(Instant::now());
                Ok(())
            }
            Err(e) => {
                let reason = format!("start failed: {e}");
                self.schedule_restart(myself, i, &reason)
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            name: args.name,
            children: args
                .children
                .into_iter()
                .map(|spec| Child { spec, cell: None, history: RestartTracker::default(), pending: false })
                .collect(),
            policy: args.policy,
            events: args.events,
            metrics: args.metrics,
        })
    }

    /// Children start in order, each after the previous one's `pre_start` returned: the store writer and the
    /// live hub are up before any device actor that uses them.
    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        for i in 0..state.children.len() {
            state.start_child(&myself, i).await?;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start(i) if i < state.children.len() => state.start_child(&myself, i).await?,
            SupervisorMsg::Start(_) => {}
            SupervisorMsg::Children(reply) => {
                let info = state
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        name: c.spec.name.clone(),
                        running: c.cell.is_some(),
                        restarts: c.history.restarts(),
                    })
                    .collect();
                let _ = reply.send(info);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(i) = state.index_of(&cell) {
                    state.schedule_restart(&myself, i, &format!("failed: {err}"))?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(i) = state.index_of(&cell) {
                    let reason = reason.unwrap_or_else(|| "stopped".to_owned());
                    state.schedule_restart(&myself, i, &format!("terminated: {reason}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A child that fails its handler when told to, and whose start fails while `fail_starts` is positive.
    struct Flaky;
    struct FlakyArgs {
        starts: Arc<AtomicU32>,
        fail_starts: Arc<AtomicU32>,
        slot: Slot<FlakyMsg>,
    }
    enum FlakyMsg {
        Crash,
        Panic,
    }

    impl Actor for Flaky {
        type Msg = FlakyMsg;
        type State = ();
        type Arguments = FlakyArgs;
        async fn pre_start(&self, myself: ActorRef<FlakyMsg>, args: FlakyArgs) -> Result<(), ActorProcessingErr> {
            if args.fail_starts.load(Ordering::SeqCst) > 0 {
                args.fail_starts.fetch_sub(1, Ordering::SeqCst);
                return Err("cannot open port".into());
            }
            args.starts.fetch_add(1, Ordering::SeqCst);
            args.slot.set(myself);
            Ok(())
        }
        async fn handle(&self, _m: ActorRef<FlakyMsg>, msg: FlakyMsg, _s: &mut ()) -> Result<(), ActorProcessingErr> {
            match msg {
                FlakyMsg::Crash => Err("handler error".into()),
                FlakyMsg::Panic => panic!("deliberate panic in a test child"),
            }
        }
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            stable_after: Duration::from_secs(3600),
            max_restarts: 4,
            window: Duration::from_secs(3600),
        }
    }

    async fn start(
        fail_starts: u32,
    ) -> (
        ActorRef<SupervisorMsg>,
        Arc<AtomicU32>,
        Slot<FlakyMsg>,
        tokio::sync::broadcast::Receiver<crate::event::EventRecord>,
        tokio::task::JoinHandle<()>,
    ) {
        let starts = Arc::new(AtomicU32::new(0));
        let fail = Arc::new(AtomicU32::new(fail_starts));
        let slot = Slot::default();
        let (s, f, sl) = (starts.clone(), fail.clone(), slot.clone());
        let spec = ChildSpec::new("flaky", move |sup| {
            let args = FlakyArgs { starts: s.clone(), fail_starts: f.clone(), slot: sl.clone() };
            async move { Actor::spawn_linked(None, Flaky, args, sup).await.map(|(r, _)| r.get_cell()) }
        });
        let events = EventBus::volatile(64);
        let rx = events.subscribe();
        let args = SupervisorArgs {
            name: "test".into(),
            children: vec![spec],
            policy: policy(),
            events,
            metrics: Arc::default(),
        };
        let (sup, join) = Actor::spawn(None, Supervisor, args).await.unwrap();
        (sup, starts, slot, rx, join)
    }

    async fn next_restart(rx: &mut tokio::sync::broadcast::Receiver<crate::event::EventRecord>) -> Duration {
        loop {
            if let Event::ChildRestarting { delay, .. } = rx.recv().await.unwrap().event {
                return delay;
            }
        }
    }

    async fn wait_starts(starts: &AtomicU32, n: u32) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while starts.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("child restarted in time");
    }

    #[tokio::test]
    async fn crashed_killed_and_panicked_children_restart_with_growing_backoff() {
        let (sup, starts, slot, mut rx, _join) = start(0).await;
        wait_starts(&starts, 1).await;
        slot.get().unwrap().cast(FlakyMsg::Crash).unwrap();
        assert_eq!(next_restart(&mut rx).await, Duration::from_millis(10));
        wait_starts(&starts, 2).await;
        slot.get().unwrap().get_cell().kill();
        assert_eq!(next_restart(&mut rx).await, Duration::from_millis(20));
        wait_starts(&starts, 3).await;
        slot.get().unwrap().cast(FlakyMsg::Panic).unwrap();
        assert_eq!(next_restart(&mut rx).await, Duration::from_millis(40));
        wait_starts(&starts, 4).await;
        let children = ractor::call!(sup, SupervisorMsg::Children).unwrap();
        assert_eq!(children, vec![ChildInfo { name: "flaky".into(), running: true, restarts: 3 }]);
        sup.stop(None);
    }

    #[tokio::test]
    async fn a_failing_start_is_retried_like_a_crash() {
        // pre_start fails twice: those come back from spawn_linked as Err, not as supervision events.
        let (sup, starts, _slot, mut rx, _join) = start(2).await;
        assert_eq!(next_restart(&mut rx).await, Duration::from_millis(10));
        assert_eq!(next_restart(&mut rx).await, Duration::from_millis(20));
        wait_starts(&starts, 1).await;
        sup.stop(None);
    }

    #[tokio::test]
    async fn too_many_restarts_escalate_by_failing_the_supervisor() {
        let (sup, _starts, _slot, _rx, join) = start(100).await;
        // 4 restarts are allowed in the window; the 5th failure escalates and the supervisor dies.
        tokio::time::timeout(Duration::from_secs(5), join).await.expect("supervisor escalated").unwrap();
        assert!(matches!(sup.get_status(), ractor::ActorStatus::Stopped));
    }
}
