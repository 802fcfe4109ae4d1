//! Benchmark of on-demand actors (issue 7 §2, DESIGN.md §3): activate and passivate 100,000 idle
//! account-shaped actors whose state lives in the store.
//!
//! A fresh redb store in a temporary directory is filled with 100,000 account state blobs (account number,
//! balance in integer fen, tariff id, four timestamps; JSON, about 150 bytes) through the real `StoreWriter`.
//! A `DynamicSupervisor` then hosts one `Account` actor per account: each is activated by asking it its balance
//! (which `pre_start` loaded from the store), one request at a time through `DynamicHandle::ask`, and every
//! answer is checked against the seeded balance. Then every actor is passivated with `DynamicHandle::remove`
//! (drain, stop, entry dropped), again one at a time, and the supervisor must report none active.
//!
//! Reported: activation latency per actor (p50, p99, max) and activations per second; resident memory per
//! active actor (VmRSS from `/proc/self/status` before and after activating all of them, divided by their
//! count; the store's pages were read once before the first figure, so its cache is not counted as actors);
//! passivation latency (p50, p99) and passivations per second; and the machine's load average, since the
//! machine is shared. It measures the supervisor, ractor and the store read path, not a real account's logic.
//!
//! Run: `cargo bench --bench actor_activation` (about a minute); `… -- 20000` for another count. The store lives
//! under `WW_BENCH_DIR` if set, else the system temp directory.

// A benchmark's printed table is its whole purpose; the workspace lint is meant for the server's code paths.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::event::EventBus;
use actors::metrics::Metrics;
use actors::runtime::dynamic::{
    start_child, DynamicArgs, DynamicError, DynamicHandle, DynamicPolicy, DynamicSupervisor, Restart,
};
use actors::store::{ActorStateOp, ActorStates, Op, Store, StoreHandle, StoreWriter, StoreWriterArgs};
use actors::supervisor::Slot;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

const DEFAULT_ACCOUNTS: u64 = 100_000;

/// Blobs per writer submission while seeding the store.
const SEED_BATCH: u64 = 2_000;

/// 2026-01-01T00:00:00Z.
const EPOCH_MS: i64 = 1_767_225_600_000;

/// What an account actor keeps: the shape of a customer account's hot state.
#[derive(Serialize, Deserialize)]
struct AccountState {
    number: u64,
    balance_fen: i64,
    tariff: u32,
    opened_ms: i64,
    last_reading_ms: i64,
    last_payment_ms: i64,
    last_bill_ms: i64,
}

fn seeded(number: u64) -> AccountState {
    let n = number as i64;
    AccountState {
        number,
        balance_fen: 10_000 + (n * 7919) % 50_000 - 25_000,
        tariff: (number % 5) as u32 + 1,
        opened_ms: EPOCH_MS - n * 60_000,
        last_reading_ms: EPOCH_MS + n,
        last_payment_ms: EPOCH_MS - 86_400_000 + n,
        last_bill_ms: EPOCH_MS - 30 * 86_400_000,
    }
}

fn state_key(number: u64) -> String {
    format!("account/{number:08}")
}

struct Account;

enum AccountMsg {
    Balance(RpcReplyPort<i64>),
}

struct AccountArgs {
    number: u64,
    states: ActorStates,
}

impl Actor for Account {
    type Msg = AccountMsg;
    type State = AccountState;
    type Arguments = AccountArgs;

    async fn pre_start(&self, _m: ActorRef<AccountMsg>, args: AccountArgs) -> Result<AccountState, ActorProcessingErr> {
        let key = state_key(args.number);
        let blob = args.states.load(&key)?.ok_or_else(|| format!("no state for {key}"))?;
        Ok(serde_json::from_slice(&blob)?)
    }

    async fn handle(
        &self,
        _m: ActorRef<AccountMsg>,
        msg: AccountMsg,
        st: &mut AccountState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AccountMsg::Balance(reply) => {
                let _ = reply.send(st.balance_fen);
            }
        }
        Ok(())
    }
}

/// Resident memory of this process in KiB, from `/proc/self/status`.
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Nearest-rank percentile in microseconds of sorted latencies.
fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

struct Phase {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Phase {
    fn per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn p(&self, p: f64) -> f64 {
        percentile_us(&self.latencies, p)
    }
    fn max_us(&self) -> f64 {
        self.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)
    }
}

fn main() -> ExitCode {
    let accounts: u64 = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_ACCOUNTS);
    let base = std::env::var_os("WW_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("ww-bench-actor-activation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!("actor_activation: {accounts} account actors, state in redb under {}", dir.display());
    println!("machine: {cores} cores, load average at start {}", load_average());
    let result = runtime.block_on(run(accounts, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actor_activation: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(accounts: u64, dir: &std::path::Path) -> Result<(), String> {
    let store = Store::open(dir).map_err(|e| format!("cannot open store: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let writer_slot = Slot::default();
    let args = StoreWriterArgs {
        store: Arc::new(store.clone()),
        metrics: metrics.clone(),
        max_batch_ops: 50_000,
        events: None,
    };
    let (writer, _) = Actor::spawn(None, StoreWriter, args).await.map_err(|e| e.to_string())?;
    writer_slot.set(writer.clone());
    let states = ActorStates::new(Arc::new(store.clone()), StoreHandle::new(writer_slot, metrics.clone()));

    // Seed the store through the writer, as account actors will write their state.
    let seed_started = Instant::now();
    let handle = StoreHandle::new(
        {
            let s = Slot::default();
            s.set(writer);
            s
        },
        metrics.clone(),
    );
    for first in (0..accounts).step_by(SEED_BATCH as usize) {
        let ops = (first..(first + SEED_BATCH).min(accounts))
            .map(|n| {
                let blob = serde_json::to_vec(&seeded(n)).map_err(|e| e.to_string())?;
                Ok(Op::ActorState(ActorStateOp::Put { key: state_key(n), blob }))
            })
            .collect::<Result<Vec<_>, String>>()?;
        handle.submit(ops).await.map_err(|e| format!("seeding failed: {e}"))?;
    }
    let blob_bytes = serde_json::to_vec(&seeded(accounts / 2)).map_or(0, |b| b.len());
    println!(
        "seeded {accounts} state blobs (~{blob_bytes} bytes each) in {:.2} s",
        seed_started.elapsed().as_secs_f64()
    );
    // Read every blob once, so the store's page cache is in memory before the first RSS figure.
    for n in 0..accounts {
        states.load(&state_key(n)).map_err(|e| e.to_string())?.ok_or("seeded blob missing")?;
    }

    let st = states.clone();
    let start = start_child(move |number: u64, sup| {
        let args = AccountArgs { number, states: st.clone() };
        async move { Actor::spawn_linked(None, Account, args, sup).await.map(|(r, _)| r) }
    });
    let policy = DynamicPolicy { idle_after: None, max_active: accounts as usize + 1, ..DynamicPolicy::default() };
    let sup_args = DynamicArgs {
        name: "accounts".into(),
        start,
        restart: Restart::Transient,
        policy,
        events: EventBus::volatile(16),
        metrics,
    };
    let (sup, sup_join) =
        Actor::spawn(None, DynamicSupervisor::default(), sup_args).await.map_err(|e| e.to_string())?;
    let slot = Slot::default();
    slot.set(sup.clone());
    let accounts_handle: DynamicHandle<u64, AccountMsg> = DynamicHandle::new(slot);

    let rss_before = vm_rss_kib();
    let activation = {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(accounts as usize);
        for n in 0..accounts {
            let t = Instant::now();
            let balance = accounts_handle.ask(n, AccountMsg::Balance).await.map_err(|e| format!("account {n}: {e}"))?;
            latencies.push(t.elapsed());
            if balance != seeded(n).balance_fen {
                return Err(format!("account {n}: balance {balance}, seeded {}", seeded(n).balance_fen));
            }
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        Phase { latencies, elapsed }
    };
    let rss_active = vm_rss_kib();
    let stats = accounts_handle.stats().await.map_err(|e: DynamicError| e.to_string())?;
    if stats.active as u64 != accounts || stats.activations != accounts {
        return Err(format!("expected {accounts} active actors, supervisor reports {stats:?}"));
    }
    let load_mid = load_average();

    let passivation = {
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(accounts as usize);
        for n in 0..accounts {
            let t = Instant::now();
            accounts_handle.remove(n).await.map_err(|e| format!("account {n}: {e}"))?;
            latencies.push(t.elapsed());
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        Phase { latencies, elapsed }
    };
    let stats = accounts_handle.stats().await.map_err(|e| e.to_string())?;
    if stats.active != 0 || stats.passivations != accounts {
        return Err(format!("expected every actor passivated, supervisor reports {stats:?}"));
    }
    let rss_passive = vm_rss_kib();
    sup.stop(None);
    let _ = sup_join.await;

    let per_actor_bytes = match (rss_before, rss_active) {
        (Some(b), Some(a)) => format!("{:.0}", (a.saturating_sub(b) as f64 * 1024.0) / accounts as f64),
        _ => "unknown".to_owned(),
    };
    let kib = |v: Option<u64>| v.map_or("unknown".to_owned(), |v| v.to_string());
    println!();
    println!(
        "activation:  {accounts} actors in {:.2} s, {:.0}/s; latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        activation.elapsed.as_secs_f64(),
        activation.per_s(),
        activation.p(50.0),
        activation.p(99.0),
        activation.max_us()
    );
    println!(
        "memory:      VmRSS {} KiB before, {} KiB with all active, {} KiB after passivation: {per_actor_bytes} bytes \
         per active actor",
        kib(rss_before),
        kib(rss_active),
        kib(rss_passive)
    );
    println!(
        "passivation: {accounts} actors in {:.2} s, {:.0}/s; latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        passivation.elapsed.as_secs_f64(),
        passivation.per_s(),
        passivation.p(50.0),
        passivation.p(99.0),
        passivation.max_us()
    );
    println!("load average: {load_mid} after activation, {} at the end ({} cores)", load_average(), {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    });
    println!(
        "actor_activation accounts={accounts} activate_seconds={:.3} activations_per_s={:.0} activate_p50_us={:.1} \
         activate_p99_us={:.1} activate_max_us={:.1} rss_before_kib={} rss_active_kib={} rss_passivated_kib={} \
         bytes_per_active_actor={per_actor_bytes} passivate_seconds={:.3} passivations_per_s={:.0} \
         passivate_p50_us={:.1} passivate_p99_us={:.1} verified=true",
        activation.elapsed.as_secs_f64(),
        activation.per_s(),
        activation.p(50.0),
        activation.p(99.0),
        activation.max_us(),
        kib(rss_before),
        kib(rss_active),
        kib(rss_passive),
        passivation.elapsed.as_secs_f64(),
        passivation.per_s(),
        passivation.p(50.0),
        passivation.p(99.0),
    );
    Ok(())
}
