//! Benchmark of the durable write path: readings acknowledged per second through the real store writer.
//!
//! Each shape opens a fresh redb store in a temporary directory (durable commits, redb's default
//! `Durability::Immediate`), spawns the `StoreWriter` actor with ractor, and drives it through a
//! `StoreHandle` from many concurrent tokio tasks. Every task builds one submission of distinct readings,
//! submits it and awaits its acknowledgement, which the writer sends only after the commit holding the
//! submission returned. Closed-loop shapes (a–d) saturate the writer and give its capacity; open-loop shapes
//! (e, f) offer the target rate of 100,000 readings/s and give the latency at that load.
//!
//! Reported per shape: readings acknowledged per second; submit→ack latency per submission (p50, p99, max);
//! commits and mean readings per commit (group commit at work); bytes sent to storage per reading; and how
//! busy the committer thread and the tokio workers were and the committer's CPU time per reading, which say
//! where the limit is. After each shape the store is reopened and must hold exactly the readings
//! acknowledged, or the benchmark fails.
//!
//! It deliberately does not use criterion or any crate the project does not already depend on, and it does
//! not start the supervision tree: only the writer actor, its committer thread and the store are measured.
//!
//! Run: `cargo bench --bench store_writer` (all shapes, about 35 s), or `… -- a b` for some. The store lives
//! under `WW_BENCH_DIR` if set, else the system temp directory; fsync cost depends on that disk.

// A benchmark's printed table is its whole purpose; the workspace lint is meant for the server's code paths.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::metrics::Metrics;
use actors::model::{CommStatus, DeviceId, MeterId, MeterReading, MeterStatus, Timestamp, Volume};
use actors::store::{Op, Store, StoreError, StoreHandle, StoreWriter, StoreWriterArgs};
use actors::supervisor::Slot;
use ractor::Actor;

#[path = "support/pg_peer.rs"]
mod pg_peer;

/// The server's default bound on operations per commit (`[store] max_batch_ops` in the config).
const MAX_BATCH_OPS: usize = 50_000;

/// The issue's target: readings acknowledged per second, each after its durable commit.
const TARGET_READINGS_PER_S: f64 = 100_000.0;

/// The issue's latency target at that rate offered (issue 7 §8): p99 submit→acknowledgement.
const TARGET_P99_MS: f64 = 15.0;

/// A run whose committer waited this share of its time for a CPU was measured against other work on the
/// machine: its figures describe the machine's load, not the writer.
const CONTENDED_QUEUED_SHARE: f64 = 0.10;

/// Meters in the simulated utility: reading `i` belongs to meter `i % METERS`.
const METERS: u64 = 10_000;

/// 2026-01-01T00:00:00Z, the time of the first reading cycle.
const FIRST_CYCLE_MS: i64 = 1_767_225_600_000;

/// A meter is read once per 15-minute cycle.
const CYCLE_MS: i64 = 15 * 60 * 1000;

/// How submissions arrive.
#[derive(Clone, Copy, Debug)]
enum Load {
    /// This many tokio tasks, each submitting again as soon as its previous submission is acknowledged: the
    /// writer is saturated, so the figures are its capacity and latency is in-flight work / throughput.
    Closed { submitters: usize },
    /// Submissions issued on a fixed schedule at this many readings per second, each in its own task, whatever
    /// the acknowledgements do: latency at a given offered load. Measured from the scheduled instant (so the
    /// scheduler's lag and a tick of up to 1 ms count against the writer, never in its favour).
    Open { readings_per_s: u64 },
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Closed { submitters } => write!(f, "{submitters} tasks"),
            Load::Open { readings_per_s } => write!(f, "{}k/s open", readings_per_s / 1000),
        }
    }
}

/// One load shape: who submits how much, and for how long.
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    /// Readings in one submission (one `StoreHandle::submit` call).
    per_submission: u64,
    load: Load,
    /// Whether each submission also carries the concentrator's `DeviceStatus` (JSON), as the field actor's do.
    with_status: bool,
    /// Readings submitted before measuring (same store, not counted in the figures).
    warmup: u64,
    /// Readings in the measured run.
    readings: u64,
    what: &'static str,
}

const SHAPES: [Shape; 6] = [
    Shape {
        name: "a",
        per_submission: 1,
        load: Load::Closed { submitters: 256 },
        with_status: false,
        warmup: 20_000,
        readings: 500_000,
        what: "1 reading per submission, 256 submitters (ack per reading)",
    },
    Shape {
        name: "b",
        per_submission: 100,
        load: Load::Closed { submitters: 64 },
        with_status: false,
        warmup: 50_000,
        readings: 1_000_000,
        what: "100 readings per submission, 64 submitters (a concentrator's cycle)",
    },
    Shape {
        name: "c",
        per_submission: 1000,
        load: Load::Closed { submitters: 16 },
        with_status: false,
        warmup: 50_000,
        readings: 1_000_000,
        what: "1000 readings per submission, 16 submitters",
    },
    Shape {
        name: "d",
        per_submission: 100,
        load: Load::Closed { submitters: 64 },
        with_status: true,
        warmup: 50_000,
        readings: 1_000_000,
        what: "as b, plus the device status op (JSON) each field actor submits",
    },
    Shape {
        name: "e",
        per_submission: 1,
        load: Load::Open { readings_per_s: 100_000 },
        with_status: false,
        warmup: 20_000,
        readings: 400_000,
        what: "1 reading per submission offered at 100k readings/s (latency at the target)",
    },
    Shape {
        name: "f",
        per_submission: 100,
        load: Load::Open { readings_per_s: 100_000 },
        with_status: false,
        warmup: 50_000,
        readings: 400_000,
        what: "100 readings per submission offered at 100k readings/s (latency at the target)",
    },
];

/// What one measured run produced.
struct Outcome {
    shape: Shape,
    elapsed: Duration,
    submissions: usize,
    /// Submit→acknowledgement of each submission, sorted.
    latencies: Vec<Duration>,
    commits: u64,
    readings_committed: u64,
    largest_batch_ops: usize,
    /// The committer's transaction times in the run, as histogram bucket bounds in ms: (p99 at most, slowest
    /// at most); `f64::INFINITY` beyond the last bucket (1 s).
    commit_ms: (f64, f64),
    /// Bytes this process caused to be written to storage during the run (Linux `/proc/self/io`), if known.
    disk_bytes: Option<u64>,
    /// Where the threads spent the run, if known.
    cpu: Option<CpuShares>,
}

/// Shares of the run's wall time, from the kernel's per-thread scheduler accounting (Linux `schedstat`).
#[derive(Clone, Copy, Debug)]
struct CpuShares {
    /// The committer thread on a CPU (1.0 = always running: the single writer is the bottleneck).
    committer_busy: f64,
    /// The committer thread runnable but waiting for a CPU (the machine is short of cores).
    committer_queued: f64,
    /// All tokio workers on a CPU together (up to the number of workers).
    workers_busy: f64,
}

/// Cumulative on-CPU and run-queue nanoseconds of named threads of this process.
#[derive(Clone, Copy, Debug, Default)]
struct ThreadTimes {
    committer: (u64, u64),
    workers: (u64, u64),
}

impl ThreadTimes {
    /// `None` where `/proc/self/task/*/schedstat` does not exist.
    fn now() -> Option<ThreadTimes> {
        let mut t = ThreadTimes::default();
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let dir = entry.path();
            let (Ok(comm), Ok(stat)) =
                (std::fs::read_to_string(dir.join("comm")), std::fs::read_to_string(dir.join("schedstat")))
            else {
                continue; // The thread ended between listing and reading.
            };
            let mut fields = stat.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(run)), Some(Ok(wait))) = (fields.next(), fields.next()) else { continue };
            let sum = match comm.trim_end() {
                "store-committer" => &mut t.committer,
                "tokio-rt-worker" => &mut t.workers,
                _ => continue,
            };
            sum.0 += run;
            sum.1 += wait;
        }
        Some(t)
    }

    fn shares_since(self, before: ThreadTimes, wall: Duration) -> CpuShares {
        let share = |after: u64, before: u64| after.saturating_sub(before) as f64 / wall.as_nanos().max(1) as f64;
        CpuShares {
            committer_busy: share(self.committer.0, before.committer.0),
            committer_queued: share(self.committer.1, before.committer.1),
            workers_busy: share(self.workers.0, before.workers.0),
        }
    }
}

impl Outcome {
    fn readings_per_s(&self) -> f64 {
        self.shape.readings as f64 / self.elapsed.as_secs_f64()
    }
    fn readings_per_commit(&self) -> f64 {
        self.readings_committed as f64 / self.commits.max(1) as f64
    }
    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[i].as_secs_f64() * 1e3
    }
    /// The committer thread's CPU time per reading: what one reading costs the single writer, and so its
    /// capacity, fairly independent of other load on the machine.
    fn committer_us_per_reading(&self) -> Option<f64> {
        self.cpu.map(|c| c.committer_busy * self.elapsed.as_secs_f64() * 1e6 / self.shape.readings as f64)
    }
    fn disk_kib_per_reading(&self) -> Option<f64> {
        self.disk_bytes.map(|b| b as f64 / 1024.0 / self.shape.readings as f64)
    }
    /// A closed-loop shape meets the target if its capacity reaches it; an open-loop shape if it kept up with
    /// the rate it was offered (within 1 %, the drain of the last commit) with a p99 within the target.
    fn target_met(&self) -> bool {
        match self.shape.load {
            Load::Closed { .. } => self.readings_per_s() >= TARGET_READINGS_PER_S,
            Load::Open { readings_per_s } => {
                self.readings_per_s() >= 0.99 * readings_per_s as f64 && self.percentile_ms(99.0) <= TARGET_P99_MS
            }
        }
    }
    fn contended(&self) -> bool {
        self.cpu.is_some_and(|c| c.committer_queued > CONTENDED_QUEUED_SHARE)
    }
    fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; any other argument names a shape to run.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let shapes: Vec<Shape> =
        SHAPES.iter().copied().filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s.name)).collect();
    if shapes.is_empty() {
        let names: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
        eprintln!("store_writer: no shape named {wanted:?}; shapes are {names:?}");
        return ExitCode::FAILURE;
    }
    let base = std::env::var_os("WW_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");

    println!(
        "store_writer: redb Durability::Immediate (fsync per commit), ack after commit, max_batch_ops {MAX_BATCH_OPS}, \
         {METERS} meters"
    );
    println!("machine: {cores} cores (tokio workers {cores} + 1 committer thread); store under {}", base.display());
    match fsync_probe(&base) {
        Ok(d) => println!(
            "disk: a 4 KiB write + fdatasync takes {:.2} ms (median of 50); fsync cost depends on the disk, \
             so these figures hold for this disk only",
            d.as_secs_f64() * 1e3
        ),
        Err(e) => println!("disk: fsync probe failed ({e}); fsync cost depends on the disk"),
    }
    println!("the machine may be shared with other builds: compare several runs, not single figures");
    println!();

    let mut outcomes = Vec::new();
    for shape in shapes {
        print!("shape {}: {} ... ", shape.name, shape.what);
        let _ = std::io::stdout().flush();
        match runtime.block_on(run_shape(shape, &base)) {
            Ok(o) => {
                println!("{:.1} s, verified", o.elapsed.as_secs_f64());
                outcomes.push(o);
            }
            Err(e) => {
                println!("FAILED");
                eprintln!("store_writer: shape {}: {e}", shape.name);
                return ExitCode::FAILURE;
            }
        }
    }
    println!();
    print_table(&outcomes);
    println!();
    let fraction = |v: Option<f64>| v.map_or("unknown".to_owned(), |v| format!("{v:.2}"));
    for o in &outcomes {
        let (submitters, offered) = match o.shape.load {
            Load::Closed { submitters } => (submitters.to_string(), "none".to_owned()),
            Load::Open { readings_per_s } => ("open".to_owned(), readings_per_s.to_string()),
        };
        println!(
            "store_writer shape={} per_submission={} submitters={submitters} offered_per_s={offered} status_op={} \
             readings={} submissions={} seconds={:.3} readings_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} \
             commits={} readings_per_commit={:.1} largest_batch_ops={} commit_p99_ms_le={} commit_max_ms_le={} \
             disk_kib_per_reading={} committer_busy={} \
             committer_queued={} tokio_busy={} committer_us_per_reading={} contended={} target_met={} verified=true",
            o.shape.name,
            o.shape.per_submission,
            o.shape.with_status,
            o.shape.readings,
            o.submissions,
            o.elapsed.as_secs_f64(),
            o.readings_per_s(),
            o.percentile_ms(50.0),
            o.percentile_ms(99.0),
            o.max_ms(),
            o.commits,
            o.readings_per_commit(),
            o.largest_batch_ops,
            o.commit_ms.0,
            o.commit_ms.1,
            o.disk_kib_per_reading().map_or("unknown".to_owned(), |k| format!("{k:.2}")),
            fraction(o.cpu.map(|c| c.committer_busy)),
            fraction(o.cpu.map(|c| c.committer_queued)),
            fraction(o.cpu.map(|c| c.workers_busy)),
            o.committer_us_per_reading().map_or("unknown".to_owned(), |u| format!("{u:.2}")),
            o.contended(),
            o.target_met(),
        );
    }
    if std::env::var("WW_BENCH_PEER").as_deref() != Ok("0") {
        println!();
        peer(&outcomes, &base, &runtime);
    }
    ExitCode::SUCCESS
}

/// Readings the peer writes per shape: enough for a steady rate, fewer than ours when it is slower.
const PEER_READINGS: u64 = 200_000;

/// A day of 15-minute readings: cycles per day.
const DAY_CYCLES: u64 = 96;

/// The same workloads into PostgreSQL, in the same run (issue 7 §8), and bytes on disk per stored reading
/// after a day's worth of 15-minute readings for every meter, for both.
fn peer(outcomes: &[Outcome], base: &Path, runtime: &tokio::runtime::Runtime) {
    let pg = match pg_peer::Pg::start(base) {
        Ok(pg) => pg,
        Err(e) => {
            println!("peer: PostgreSQL not run: {e}");
            return;
        }
    };
    println!(
        "peer: PostgreSQL {} (fsync on, synchronous_commit on, one connection per submitter, pgbench), same shapes:",
        pg.version()
    );
    println!(
        "{:<6} {:>14} {:>14} {:>7} {:>10} {:>10} {:>13} {:>13}",
        "shape", "ours /s", "postgres /s", "ratio", "ours p99", "pg p99", "ours KiB/rd", "pg KiB/rd"
    );
    for o in outcomes.iter().filter(|o| !o.shape.with_status && o.shape.per_submission <= 100) {
        let (clients, rate) = match o.shape.load {
            Load::Closed { submitters } => (submitters, None),
            Load::Open { readings_per_s } => (256, Some(readings_per_s)),
        };
        let readings = PEER_READINGS.min(o.shape.readings);
        match pg.drive(readings, o.shape.per_submission, clients, rate) {
            Ok(run) => {
                let ratio = o.readings_per_s() / run.readings_per_s().max(1e-9);
                let kib = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.2}"));
                println!(
                    "{:<6} {:>14.0} {:>14.0} {:>6.2}x {:>8.2}ms {:>8.2}ms {:>13} {:>13}",
                    o.shape.name,
                    o.readings_per_s(),
                    run.readings_per_s(),
                    ratio,
                    o.percentile_ms(99.0),
                    run.percentile_ms(99.0),
                    kib(o.disk_kib_per_reading()),
                    kib(run.kib_written_per_reading()),
                );
                println!(
                    "store_writer_peer shape={} ours_per_s={:.0} pg_per_s={:.0} ratio={ratio:.2} ours_p99_ms={:.2} \
                     pg_p50_ms={:.2} pg_p99_ms={:.2} ours_kib_written_per_reading={} pg_kib_written_per_reading={} \
                     pg_readings={}",
                    o.shape.name,
                    o.readings_per_s(),
                    run.readings_per_s(),
                    o.percentile_ms(99.0),
                    run.percentile_ms(50.0),
                    run.percentile_ms(99.0),
                    kib(o.disk_kib_per_reading()),
                    kib(run.kib_written_per_reading()),
                    run.readings,
                );
            }
            Err(e) => println!("{:<6} postgres run failed: {e}", o.shape.name),
        }
    }
    let ours = runtime.block_on(day_bytes_per_reading(base));
    let theirs = pg.day_bytes_per_reading(METERS, DAY_CYCLES);
    let show = |r: &Result<f64, String>| match r {
        Ok(b) => format!("{b:.1}"),
        Err(e) => format!("failed ({e})"),
    };
    println!(
        "bytes on disk per stored reading after a day of 15-minute readings for {METERS} meters ({} readings): \
         ours {} (redb file, readings table plus the change feed), postgres {} (table plus primary key)",
        METERS * DAY_CYCLES,
        show(&ours),
        show(&theirs),
    );
    println!(
        "store_writer_day readings={} ours_bytes_per_reading={} pg_bytes_per_reading={}",
        METERS * DAY_CYCLES,
        show(&ours),
        show(&theirs)
    );
}

/// Our store after a day of 15-minute readings for every meter, written as concentrators submit them (100 per
/// submission, 16 at a time): the file's size per stored reading.
async fn day_bytes_per_reading(base: &Path) -> Result<f64, String> {
    let dir = base.join(format!("ww-bench-day-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let shape = Shape {
        name: "day",
        per_submission: 100,
        load: Load::Closed { submitters: 16 },
        with_status: false,
        warmup: 0,
        readings: METERS * DAY_CYCLES,
        what: "a day of readings",
    };
    let result = async {
        let store = Store::open(&dir).map_err(|e| format!("cannot open store: {e}"))?;
        let metrics = Arc::new(Metrics::default());
        let args = StoreWriterArgs {
            store: Arc::new(store.clone()),
            metrics: metrics.clone(),
            max_batch_ops: MAX_BATCH_OPS,
            events: None,
        };
        let (actor, join) = Actor::spawn(None, StoreWriter, args).await.map_err(|e| e.to_string())?;
        let slot = Slot::default();
        slot.set(actor.clone());
        let handle = StoreHandle::new(slot, metrics);
        drive(&handle, shape, 0, shape.readings).await?;
        actor.stop(None);
        let _ = join.await;
        drop(handle);
        let stored = store.reading_count().map_err(|e| e.to_string())?;
        drop(store);
        let size = std::fs::metadata(dir.join(actors::store::DB_FILE)).map_err(|e| e.to_string())?.len();
        Ok(size as f64 / stored.max(1) as f64)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn print_table(outcomes: &[Outcome]) {
    let percent = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{:.0}%", v * 100.0));
    println!(
        "{:<5} {:>7} {:>12} {:>6} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8}",
        "shape", "per_sub", "load", "status", "readings", "secs", "readings/s", "p50 ms", "p99 ms", "max ms"
    );
    for o in outcomes {
        println!(
            "{:<5} {:>7} {:>12} {:>6} {:>9} {:>6.2} {:>10.0} {:>8.2} {:>8.2} {:>8.2}",
            o.shape.name,
            o.shape.per_submission,
            o.shape.load.to_string(),
            if o.shape.with_status { "yes" } else { "no" },
            o.shape.readings,
            o.elapsed.as_secs_f64(),
            o.readings_per_s(),
            o.percentile_ms(50.0),
            o.percentile_ms(99.0),
            o.max_ms(),
        );
    }
    println!();
    println!(
        "{:<5} {:>7} {:>11} {:>16} {:>11} {:>15} {:>17} {:>13} {:>15}",
        "shape",
        "commits",
        "rdg/commit",
        "commit p99/max",
        "disk KiB/r",
        "committer busy",
        "committer queued",
        "tokio busy",
        "committer us/r"
    );
    for o in outcomes {
        println!(
            "{:<5} {:>7} {:>11.1} {:>16} {:>11} {:>15} {:>17} {:>13} {:>15}",
            o.shape.name,
            o.commits,
            o.readings_per_commit(),
            format!("≤{} / ≤{} ms", o.commit_ms.0, o.commit_ms.1),
            o.disk_kib_per_reading().map_or("?".to_owned(), |k| format!("{k:.2}")),
            percent(o.cpu.map(|c| c.committer_busy)),
            percent(o.cpu.map(|c| c.committer_queued)),
            percent(o.cpu.map(|c| c.workers_busy)),
            o.committer_us_per_reading().map_or("?".to_owned(), |u| format!("{u:.2}")),
        );
    }
    let missed: Vec<&str> = outcomes.iter().filter(|o| !o.target_met()).map(|o| o.shape.name).collect();
    println!(
        "target {TARGET_READINGS_PER_S:.0} readings/s acknowledged after commit (open-loop shapes: kept up, p99 \
         <= {TARGET_P99_MS} ms): {}",
        if missed.is_empty() { "met by every shape run".to_owned() } else { format!("MISSED by {missed:?}") }
    );
    let contended: Vec<&str> = outcomes.iter().filter(|o| o.contended()).map(|o| o.shape.name).collect();
    if !contended.is_empty() {
        println!(
            "CONTENDED: in shapes {contended:?} the committer waited more than {:.0}% of the run for a CPU taken by \
             other work on this machine; rerun them when it is quiet",
            CONTENDED_QUEUED_SHARE * 100.0
        );
    }
    println!(
        "(busy = on a CPU, queued = runnable but waiting for a CPU, as shares of the run's wall time; tokio busy \
         sums all workers; disk KiB/r = bytes this process sent to storage per reading; committer us/r = the \
         committer's CPU time per reading)"
    );
}

/// One shape on a fresh store: warm-up, measured run, verification, clean-up.
async fn run_shape(shape: Shape, base: &Path) -> Result<Outcome, String> {
    let dir = base.join(format!("ww-bench-store-writer-{}-{}", std::process::id(), shape.name));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(shape, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(shape: Shape, dir: &Path) -> Result<Outcome, String> {
    let store = Store::open(dir).map_err(|e| format!("cannot open store: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let args = StoreWriterArgs {
        store: Arc::new(store.clone()),
        metrics: metrics.clone(),
        max_batch_ops: MAX_BATCH_OPS,
        events: None,
    };
    let (actor, join) =
        Actor::spawn(None, StoreWriter, args).await.map_err(|e| format!("cannot spawn the store writer: {e}"))?;
    let slot = Slot::default();
    slot.set(actor.clone());
    let handle = StoreHandle::new(slot, metrics.clone());

    drive(&handle, shape, 0, shape.warmup).await?;
    let commits_before = Metrics::get(&metrics.commits);
    let durations_before = metrics.commit_duration.snapshot();
    let stored_before = Metrics::get(&metrics.readings_stored);
    let disk_before = disk_write_bytes();
    let threads_before = ThreadTimes::now();
    let started = Instant::now();
    let run = drive(&handle, shape, shape.warmup, shape.readings).await?;
    let elapsed = run.last_ack.saturating_duration_since(started);
    let cpu = ThreadTimes::now().zip(threads_before).map(|(after, before)| after.shares_since(before, elapsed));
    let disk_bytes = disk_write_bytes().zip(disk_before).map(|(after, before)| after.saturating_sub(before));
    let commits = Metrics::get(&metrics.commits) - commits_before;
    let commit_ms = commit_duration_bounds(&durations_before, &metrics.commit_duration.snapshot());
    let readings_committed = Metrics::get(&metrics.readings_stored) - stored_before;

    actor.stop(None);
    let _ = join.await;
    drop(handle);
    drop(store);

    // A benchmark that loses (or invents) data is a bug report, not a figure. The count comes from the file,
    // reopened once the writer has let go of it.
    let acknowledged = shape.warmup + shape.readings;
    let store = reopen(dir).await?;
    let stored = store.reading_count().map_err(|e| format!("cannot count stored readings: {e}"))?;
    if stored != acknowledged {
        return Err(format!("DATA LOSS: {acknowledged} readings acknowledged but the store holds {stored}"));
    }
    let counted = Metrics::get(&metrics.readings_stored);
    if counted != acknowledged {
        return Err(format!("metrics count {counted} readings stored, but {acknowledged} were acknowledged"));
    }
    let failures = Metrics::get(&metrics.commit_failures);
    if failures != 0 {
        return Err(format!("{failures} commits failed"));
    }

    let mut latencies = run.latencies;
    latencies.sort_unstable();
    Ok(Outcome {
        shape,
        elapsed,
        submissions: latencies.len(),
        latencies,
        commits,
        readings_committed,
        largest_batch_ops: run.largest_batch_ops,
        commit_ms,
        disk_bytes,
        cpu,
    })
}

/// (p99, max) of the commit durations observed between two snapshots of the histogram, as bucket bounds in ms.
fn commit_duration_bounds(before: &(Vec<(u64, u64)>, u64, u64), after: &(Vec<(u64, u64)>, u64, u64)) -> (f64, f64) {
    let n = after.1.saturating_sub(before.1);
    let cumulative: Vec<(u64, u64)> =
        after.0.iter().zip(&before.0).map(|(&(le, a), &(_, b))| (le, a.saturating_sub(b))).collect();
    let bound =
        |count: u64| cumulative.iter().find(|&&(_, c)| c >= count).map_or(f64::INFINITY, |&(le, _)| le as f64 / 1e3);
    (bound((n as f64 * 0.99).ceil() as u64), bound(n))
}

/// Opens the store again once the old committer thread, which ends after its actor, has closed it.
async fn reopen(dir: &Path) -> Result<Store, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(dir) {
            Ok(store) => return Ok(store),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(format!("cannot reopen the store to verify it: {e}")),
        }
    }
}

/// What the submitters of one run observed.
struct Run {
    /// Each submission's latency to its acknowledgement, unordered.
    latencies: Vec<Duration>,
    /// When the last acknowledgement arrived (collecting the results afterwards is not part of the run).
    last_ack: Instant,
    /// The largest transaction, in operations, that any acknowledgement reported.
    largest_batch_ops: usize,
}

impl Run {
    fn new(capacity: usize) -> Run {
        Run { latencies: Vec::with_capacity(capacity), last_ack: Instant::now(), largest_batch_ops: 0 }
    }
    fn record(&mut self, latency: Duration, acked: Instant, batch_ops: usize) {
        self.latencies.push(latency);
        self.last_ack = self.last_ack.max(acked);
        self.largest_batch_ops = self.largest_batch_ops.max(batch_ops);
    }
    fn merge(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.last_ack = self.last_ack.max(other.last_ack);
        self.largest_batch_ops = self.largest_batch_ops.max(other.largest_batch_ops);
    }
}

/// Submits readings `first .. first + count` in submissions of `shape.per_submission` under the shape's load.
/// Any refused submission fails the run.
async fn drive(handle: &StoreHandle, shape: Shape, first: u64, count: u64) -> Result<Run, String> {
    match shape.load {
        Load::Closed { submitters } => drive_closed(handle, shape, submitters, first, count).await,
        Load::Open { readings_per_s } => drive_open(handle, shape, readings_per_s, first, count).await,
    }
}

async fn drive_closed(
    handle: &StoreHandle,
    shape: Shape,
    submitters: usize,
    first: u64,
    count: u64,
) -> Result<Run, String> {
    // Submitters take the next range of readings from a shared counter, so together they submit each reading
    // exactly once however their acknowledgements interleave.
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(submitters);
    for _ in 0..submitters {
        let (handle, next) = (handle.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut run = Run::new(0);
            loop {
                let start = next.fetch_add(shape.per_submission, Ordering::Relaxed);
                if start >= count {
                    return Ok::<_, String>(run);
                }
                let end = (start + shape.per_submission).min(count);
                let ops = submission(first + start, first + end, shape.with_status);
                let submitted = Instant::now();
                let committed = handle.submit(ops).await.map_err(|e| format!("submission refused: {e}"))?;
                let acked = Instant::now();
                run.record(acked - submitted, acked, committed.batch_ops);
            }
        }));
    }
    let mut all = Run::new(count.div_ceil(shape.per_submission) as usize);
    for task in tasks {
        all.merge(task.await.map_err(|e| format!("submitter task failed: {e}"))??);
    }
    Ok(all)
}

async fn drive_open(
    handle: &StoreHandle,
    shape: Shape,
    readings_per_s: u64,
    first: u64,
    count: u64,
) -> Result<Run, String> {
    let submissions = count.div_ceil(shape.per_submission);
    let spacing = Duration::from_secs_f64(shape.per_submission as f64 / readings_per_s as f64);
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let begin = Instant::now();
    let mut issued = 0u64;
    while issued < submissions {
        ticks.tick().await;
        // Everything scheduled up to now is issued now, each submission timed from its scheduled instant.
        let due = ((begin.elapsed().as_secs_f64() / spacing.as_secs_f64()) as u64 + 1).min(submissions);
        while issued < due {
            let scheduled = begin + spacing.mul_f64(issued as f64);
            let start = issued * shape.per_submission;
            let end = (start + shape.per_submission).min(count);
            let handle = handle.clone();
            tasks.spawn(async move {
                let ops = submission(first + start, first + end, shape.with_status);
                let committed = handle.submit(ops).await.map_err(|e| format!("submission refused: {e}"))?;
                let acked = Instant::now();
                Ok::<_, String>((acked - scheduled, acked, committed.batch_ops))
            });
            issued += 1;
        }
    }
    let mut all = Run::new(submissions as usize);
    while let Some(joined) = tasks.join_next().await {
        let (latency, acked, batch_ops) = joined.map_err(|e| format!("submitter task failed: {e}"))??;
        all.record(latency, acked, batch_ops);
    }
    Ok(all)
}

/// Readings `from .. to` as one submission. Reading `i` is meter `i % METERS` in cycle `i / METERS`, so every
/// reading has its own (meter, time) key and consecutive readings are different meters at the same time, as
/// in one concentrator's cycle.
fn submission(from: u64, to: u64, with_status: bool) -> Vec<Op> {
    let device = DeviceId::new(format!("conc-{:04}", (from % METERS) / 100));
    let mut ops = Vec::with_capacity((to - from) as usize + 1);
    for i in from..to {
        let meter = i % METERS;
        let cycle = (i / METERS) as i64;
        ops.push(Op::Reading(MeterReading {
            meter: MeterId::new(format!("m-{meter:05}")),
            device: device.clone(),
            ts: Timestamp(FIRST_CYCLE_MS + cycle * CYCLE_MS),
            volume: Volume::from_litres(1_000 * meter as i64 + 7 * cycle),
            meter_clock: None,
            settlement_volume: None,
            status: MeterStatus(0),
        }));
    }
    if with_status {
        let mut status = CommStatus::new(format!("tcp 10.0.{}.{}:502", (from / 25_600) % 256, (from / 100) % 256), 100);
        status.last_success = Some(Timestamp(FIRST_CYCLE_MS));
        status.cycle_read = (to - from) as u32;
        ops.push(Op::DeviceStatus(device, status));
    }
    ops
}

/// Bytes this process has caused to be written to storage so far (Linux only; `None` elsewhere).
fn disk_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

/// The median time of a 4 KiB write plus `fdatasync` in `base`: what one durable commit costs at least.
fn fsync_probe(base: &Path) -> std::io::Result<Duration> {
    let path = base.join(format!("ww-bench-fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5Au8; 4096];
    let mut times = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort_unstable();
    Ok(times[times.len() / 2])
}
