//! Tests of the dynamic supervisor under paused time, with a real store in a temporary directory.
//!
//! The child is a counter whose value lives in the store (`actor_state`), shaped like an account actor: it
//! loads its state in `pre_start` and saves every change through the store writer before answering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::dynamic::*;
use super::restart::RestartPolicy;
use super::supervisor::Slot;
use crate::event::{Event, EventBus};
use crate::store::{ActorStates, Store, StoreHandle, StoreWriter, StoreWriterArgs};

#[derive(Default)]
struct Log {
    starts: Mutex<Vec<(String, Instant)>>,
    stops: Mutex<Vec<String>>,
    crashes: Mutex<Vec<Instant>>,
}

impl Log {
    fn starts_of(&self, key: &str) -> Vec<Instant> {
        self.starts.lock().unwrap().iter().filter(|(k, _)| k == key).map(|(_, t)| *t).collect()
    }
    fn stops(&self) -> Vec<String> {
        self.stops.lock().unwrap().clone()
    }
}

struct Counter;

struct CounterArgs {
    key: String,
    states: ActorStates,
    log: Arc<Log>,
    start_delay: Duration,
}

struct CounterState {
    args: CounterArgs,
    value: i64,
}

enum CounterMsg {
    Get(RpcReplyPort<i64>),
    Add(i64, RpcReplyPort<i64>),
    /// The handler fails: the actor crashes without answering.
    Crash(RpcReplyPort<i64>),
    /// The actor stops itself normally after answering.
    StopSelf(RpcReplyPort<i64>),
    /// Signals `entered`, then waits for `release` before answering: a request in flight.
    Hold(Arc<Notify>, Arc<Notify>, RpcReplyPort<i64>),
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ww-dynsup-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn state_key(key: &str) -> String {
    format!("counter/{key}")
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = CounterState;
    type Arguments = CounterArgs;

    async fn pre_start(&self, _m: ActorRef<CounterMsg>, args: CounterArgs) -> Result<CounterState, ActorProcessingErr> {
        if !args.start_delay.is_zero() {
            tokio::time::sleep(args.start_delay).await;
        }
        let value = match args.states.load(&state_key(&args.key))? {
            Some(blob) => i64::from_le_bytes(blob.as_slice().try_into().map_err(|_| "bad counter blob")?),
            None => 0,
        };
        args.log.starts.lock().unwrap().push((args.key.clone(), Instant::now()));
        Ok(CounterState { args, value })
    }

    async fn post_stop(&self, _m: ActorRef<CounterMsg>, state: &mut CounterState) -> Result<(), ActorProcessingErr> {
        state.args.log.stops.lock().unwrap().push(state.args.key.clone());
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<CounterMsg>,
        msg: CounterMsg,
        st: &mut CounterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Get(r) => {
                let _ = r.send(st.value);
            }
            CounterMsg::Add(n, r) => {
                st.value += n;
                st.args.states.save(&state_key(&st.args.key), st.value.to_le_bytes().to_vec()).await?;
                let _ = r.send(st.value);
            }
            CounterMsg::Crash(_r) => {
                st.args.log.crashes.lock().unwrap().push(Instant::now());
                return Err("deliberate crash".into());
            }
            CounterMsg::StopSelf(r) => {
                let _ = r.send(st.value);
                me.stop(None);
            }
            CounterMsg::Hold(entered, release, r) => {
                entered.notify_one();
                release.notified().await;
                let _ = r.send(st.value);
            }
        }
        Ok(())
    }
}

struct World {
    handle: DynamicHandle<String, CounterMsg>,
    join: tokio::task::JoinHandle<()>,
    log: Arc<Log>,
    states: ActorStates,
    events: tokio::sync::broadcast::Receiver<crate::event::EventRecord>,
}

fn policy() -> DynamicPolicy {
    DynamicPolicy {
        restart: RestartPolicy {
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            stable_after: Duration::from_secs(3600),
            max_restarts: 3,
            window: Duration::from_secs(3600),
        },
        idle_after: Some(Duration::from_secs(60)),
        max_active: 100,
    }
}

async fn world(policy: DynamicPolicy, start_delay: Duration) -> World {
    let store = Store::open(&tempdir()).unwrap();
    let metrics = Arc::<crate::metrics::Metrics>::default();
    let writer_slot = Slot::default();
    let (writer, _) = Actor::spawn(
        None,
        StoreWriter,
        StoreWriterArgs { store: Arc::new(store.clone()), metrics: metrics.clone(), max_batch_ops: 1000, events: None },
    )
    .await
    .unwrap();
    writer_slot.set(writer);
    let states = ActorStates::new(Arc::new(store), StoreHandle::new(writer_slot, metrics.clone()));
    let log = Arc::new(Log::default());
    let (st, lg) = (states.clone(), log.clone());
    let start = start_child(move |key: String, sup| {
        let args = CounterArgs { key, states: st.clone(), log: lg.clone(), start_delay };
        async move { Actor::spawn_linked(None, Counter, args, sup).await.map(|(r, _)| r) }
    });
    let events = EventBus::volatile(64);
    let rx = events.subscribe();
    let args = DynamicArgs { name: "counters".into(), start, restart: Restart::Transient, policy, events, metrics };
    let (sup, join) = Actor::spawn(None, DynamicSupervisor::default(), args).await.unwrap();
    let slot = Slot::default();
    slot.set(sup);
    World { handle: DynamicHandle::new(slot), join, log, states, events: rx }
}

impl World {
    async fn get(&self, key: &str) -> Result<i64, DynamicError> {
        self.handle.ask(key.to_owned(), CounterMsg::Get).await
    }
    async fn status(&self, key: &str) -> Option<ChildStatus> {
        self.handle.status(key.to_owned()).await.unwrap()
    }
    async fn seed(&self, key: &str, value: i64) {
        self.states.save(&state_key(key), value.to_le_bytes().to_vec()).await.unwrap();
    }
    /// Starts a request that stays in flight until the returned `release` is notified.
    async fn hold(&self, key: &str) -> (Arc<Notify>, tokio::task::JoinHandle<Result<i64, DynamicError>>) {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (h, k, e, r) = (self.handle.clone(), key.to_owned(), entered.clone(), release.clone());
        let task = tokio::spawn(async move { h.ask(k, |reply| CounterMsg::Hold(e.clone(), r.clone(), reply)).await });
        entered.notified().await;
        (release, task)
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_ask_activates_the_child_with_its_state_from_the_store() {
    let w = world(policy(), Duration::ZERO).await;
    w.seed("a", 41).await;
    assert_eq!(w.handle.stats().await.unwrap().activations, 0);
    assert_eq!(w.get("a").await, Ok(41));
    assert_eq!(w.get("a").await, Ok(41));
    let stats = w.handle.stats().await.unwrap();
    assert_eq!((stats.active, stats.activations), (1, 1));
    assert_eq!(w.log.starts_of("a").len(), 1);
    // A key with no stored state starts from nothing.
    assert_eq!(w.get("b").await, Ok(0));
}

#[tokio::test(start_paused = true)]
async fn concurrent_asks_for_one_key_share_a_single_activation() {
    // The child takes 50 ms to start, so every request arrives while the first activation is under way.
    let w = world(policy(), Duration::from_millis(50)).await;
    w.seed("a", 7).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let h = w.handle.clone();
        tasks.spawn(async move { h.ask("a".to_owned(), CounterMsg::Get).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), Ok(7));
    }
    assert_eq!(w.log.starts_of("a").len(), 1);
    assert_eq!(w.handle.stats().await.unwrap().activations, 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_child_is_passivated_after_idle_after_and_comes_back_with_its_state() {
    let w = world(policy(), Duration::ZERO).await;
    assert_eq!(w.handle.ask("a".to_owned(), |r| CounterMsg::Add(5, r)).await, Ok(5));
    tokio::time::sleep(Duration::from_millis(59_999)).await;
    assert!(w.status("a").await.is_some_and(|s| s.running), "still active just before idle_after");
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(w.status("a").await, None, "passivated at idle_after");
    assert_eq!(w.log.stops(), vec!["a".to_owned()]);
    let stats = w.handle.stats().await.unwrap();
    assert_eq!((stats.active, stats.passivations), (0, 1));
    // The next request activates it again, with the state it saved.
    assert_eq!(w.get("a").await, Ok(5));
    assert_eq!(w.log.starts_of("a").len(), 2);
    // `remove` passivates at once; the state stays in the store.
    w.handle.remove("a".to_owned()).await.unwrap();
    assert_eq!(w.status("a").await, None);
    assert_eq!(w.get("a").await, Ok(5));
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_its_child_from_passivation() {
    let w = world(policy(), Duration::ZERO).await;
    let (release, task) = w.hold("a").await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(w.status("a").await.is_some_and(|s| s.running && s.in_flight == 1));
    release.notify_one();
    assert_eq!(task.await.unwrap(), Ok(0));
    // Idle time counts from the end of the request.
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(w.status("a").await.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.status("a").await, None);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_child_restarts_after_a_growing_backoff_and_requests_wait_for_it() {
    let mut w = world(policy(), Duration::ZERO).await;
    w.seed("a", 3).await;
    assert_eq!(w.get("a").await, Ok(3));
    let crash = w.handle.ask("a".to_owned(), CounterMsg::Crash).await;
    assert_eq!(crash, Err(DynamicError::ChildGone { key: "a".into() }));
    // This request waits for the restart and is answered by the new child.
    assert_eq!(w.get("a").await, Ok(3));
    let starts = w.log.starts_of("a");
    let crashes = w.log.crashes.lock().unwrap().clone();
    assert_eq!(starts[1] - crashes[0], Duration::from_millis(10));
    assert!(w.handle.ask("a".to_owned(), CounterMsg::Crash).await.is_err());
    assert_eq!(w.get("a").await, Ok(3));
    let starts = w.log.starts_of("a");
    let crashes = w.log.crashes.lock().unwrap().clone();
    assert_eq!(starts[2] - crashes[1], Duration::from_millis(20));
    let mut delays = Vec::new();
    while let Ok(e) = w.events.try_recv() {
        if let Event::ChildRestarting { child, delay, .. } = e.event {
            assert_eq!(child, "a");
            delays.push(delay);
        }
    }
    assert_eq!(delays, vec![Duration::from_millis(10), Duration::from_millis(20)]);
    assert_eq!(w.status("a").await.map(|s| s.restarts), Some(2));
}

#[tokio::test(start_paused = true)]
async fn too_many_restarts_within_the_window_escalate_by_failing_the_supervisor() {
    let w = world(policy(), Duration::ZERO).await;
    // Three restarts are allowed within the window; the fourth crash escalates.
    for _ in 0..3 {
        assert!(w.handle.ask("a".to_owned(), CounterMsg::Crash).await.is_err());
        assert!(w.status("a").await.is_some(), "restart scheduled");
    }
    assert!(w.handle.ask("a".to_owned(), CounterMsg::Crash).await.is_err());
    tokio::time::timeout(Duration::from_secs(5), w.join).await.expect("the supervisor escalated").unwrap();
    assert_eq!(w.handle.stats().await, Err(DynamicError::Unavailable));
}

#[tokio::test(start_paused = true)]
async fn a_transient_childs_normal_stop_is_final_and_a_permanent_one_restarts() {
    let w = world(policy(), Duration::ZERO).await;
    assert_eq!(w.handle.ask("t".to_owned(), CounterMsg::StopSelf).await, Ok(0));
    w.handle.add("p".to_owned(), Restart::Permanent).await.unwrap();
    assert_eq!(w.handle.ask("p".to_owned(), CounterMsg::StopSelf).await, Ok(0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.status("t").await, None, "transient: entry dropped, not restarted");
    assert_eq!(w.log.starts_of("t").len(), 1);
    let p = w.status("p").await.unwrap();
    assert!(p.running && p.restarts == 1 && p.restart == Restart::Permanent, "{p:?}");
    assert_eq!(w.log.starts_of("p").len(), 2);
    // A transient child is activated again on demand.
    assert_eq!(w.get("t").await, Ok(0));
    assert_eq!(w.log.starts_of("t").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn when_full_the_least_recently_used_idle_child_is_passivated_or_the_request_refused() {
    let w = world(DynamicPolicy { max_active: 2, ..policy() }, Duration::ZERO).await;
    w.get("a").await.unwrap();
    w.get("b").await.unwrap();
    w.get("a").await.unwrap();
    // Full: c displaces b, the least recently used.
    w.get("c").await.unwrap();
    assert_eq!(w.status("b").await, None);
    assert!(w.status("a").await.is_some());
    assert_eq!(w.log.stops(), vec!["b".to_owned()]);
    // With a request in flight on both, nothing is idle: refused.
    let (ra, ta) = w.hold("a").await;
    let (rc, tc) = w.hold("c").await;
    let refused = w.handle.get_or_activate("d".to_owned()).await.unwrap_err();
    assert_eq!(refused, DynamicError::Full { supervisor: "counters".into(), active: 2 });
    ra.notify_one();
    rc.notify_one();
    ta.await.unwrap().unwrap();
    tc.await.unwrap().unwrap();
    assert_eq!(w.get("d").await, Ok(0));
    assert_eq!(w.handle.stats().await.unwrap().active, 2);
}
