//! Modbus polling rates: our engine against a reference client, and the RTU engine against its wire limit.
//!
//! Run with `cargo bench --bench modbus_poll` (after `scripts/install-bench-deps.sh` for the reference).
//!
//! (a) **TCP.** The TCP simulator (`sim::modbus::ModbusSim`) plays 16 devices on loopback, on its own tokio
//! runtime. Our engine, `drivers::modbus::ModbusTcpClient`, runs 16 clients in parallel on a second runtime, one
//! per device, each reading 10 holding registers in a loop for a fixed time. The reference is libmodbus
//! (Debian's libmodbus 3.1.6): a small C client compiled here, run as 16 processes, one per device, doing the
//! same loop. Both sides connect first, then start together at an agreed instant and count inside the measured
//! window only, so neither process start-up nor connecting is counted. Rates are summed over the clients as
//! polls / own measured time. Both run in the same run against the same simulator, alternately, five times; the
//! table shows each round, and the greppable line the median round of each.
//!
//! **Placement.** The simulator and the client share the machine, so unpinned the rate mostly measured how the
//! scheduler split the CPUs between them. So the simulator's runtime is pinned to one CPU and the client side to
//! another, the same for both clients: the simulator's runtime threads on the first CPU this process may use;
//! our client runtime's threads, the measuring thread and the 16 libmodbus processes (which inherit its affinity;
//! checked) on the second. Each runtime has one worker, as tokio sizes a runtime for one CPU. Pinning is done
//! with `taskset` on thread ids (the workspace forbids the `unsafe` of `sched_setaffinity`, and it spares a
//! dependency). `MODBUS_POLL_PIN=0`, or fewer than 2 CPUs, gives the old placement: no pinning, 2-worker
//! runtimes.
//!
//! Besides the rate, the CPU time each client side spends per poll is measured (our client runtime's threads
//! from `/proc/self/task`, the C processes with `CLOCK_PROCESS_CPUTIME_ID`), as is the simulator's, and the share
//! of the machine's CPU time that neither used ("others": other processes, steal, from `/proc/stat`). A median
//! round where others took more than 5 % is flagged: the machine was not quiet and the rates are disturbed.
//! CPU per poll is not a fixed cost: a saturated side batches more work per wakeup, so it falls as load rises.
//! Why not `mbpoll`: its loop mode sleeps a poll period of more than 10 ms between requests (`-l`) and has no
//! poll count, so it measures its own sleep, not libmodbus.
//!
//! (b) **RTU.** One simulated slave on a pty paced to the baud rate (`sim::rtu::RtuSim`), read by
//! `drivers::rtu::RtuLine`, 10 registers per poll. The wire limit of one poll is what the pacing allows: the
//! client's t3.5 before the request, the request (8 bytes), the slave's t3.5 (end-of-frame detection), the
//! reply (25 bytes); at 9600 8N1 (10 bits a character) that is 40 character times = 41.67 ms, 24.0 polls/s.
//!
//! Environment: `MODBUS_POLL_SECONDS` changes the TCP window (default 4 s); `MODBUS_POLL_PIN=0` turns pinning off.

// A benchmark reports on standard output.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drivers::modbus::{ModbusTcpClient, TcpTarget};
use drivers::registers::{DataType, Function, WordOrder};
use drivers::rtu::{CharFormat, RtuLine};
use sim::modbus::{ConcentratorLayout, FieldSpec, ModbusFault, ModbusSim, ModbusSimSpec, SimDeviceSpec, SimKind};
use sim::rtu::{RtuFault, RtuSim, RtuSimSpec, RtuSlaveSpec};
use tokio::runtime::Runtime;

const CONNECTIONS: usize = 16;
const REGISTERS: u16 = 10;
const ROUNDS: usize = 5;
/// Time for every client to connect before the common start.
const START_DELAY: Duration = Duration::from_millis(500);
const TCP_TIMEOUT: Duration = Duration::from_secs(1);
/// RTU request: unit, function, address, count, crc. Reply: unit, function, byte count, 20 data bytes, crc.
const RTU_REQUEST: usize = 8;
const RTU_REPLY: usize = 5 + 2 * REGISTERS as usize;

/// The reference client, our own few lines of C over libmodbus: connect, wait for the common start (Unix ms),
/// read 10 holding registers from 0 in a loop for the window, print "polls errors seconds cpu_seconds".
const REFERENCE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <modbus.h>

static double since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT START_UNIX_MS SECONDS\n", argv[0]);
        return 2;
    }
    modbus_t *ctx = modbus_new_tcp(argv[1], atoi(argv[2]));
    if (ctx == NULL || modbus_set_slave(ctx, 1) == -1 || modbus_set_response_timeout(ctx, 1, 0) == -1
        || modbus_connect(ctx) == -1) {
        fprintf(stderr, "libmodbus: %s\n", modbus_strerror(errno));
        return 1;
    }
    long long start_ms = atoll(argv[3]);
    double window = atof(argv[4]);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long wait_ms = start_ms - ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    if (wait_ms > 0) {
        struct timespec pause = { wait_ms / 1000, (wait_ms % 1000) * 1000000 };
        nanosleep(&pause, NULL);
    }
    uint16_t regs[10];
    long polls = 0, errors = 0;
    struct timespec t0, cpu0, cpu1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (since(&t0) < window) {
        if (modbus_read_registers(ctx, 0, 10, regs) == 10) {
            polls++;
        } else {
            errors++;
        }
    }
    double seconds = since(&t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
    double cpu = (double)(cpu1.tv_sec - cpu0.tv_sec) + (double)(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9;
    printf("%ld %ld %.6f %.6f\n", polls, errors, seconds, cpu);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
"#;

/// Polls and errors of one side in one window; the rate sums each client's polls over its own measured time.
/// CPU seconds are those spent in the window by the clients and by the simulator.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    polls: u64,
    errors: u64,
    per_s: f64,
    client_cpu: f64,
    sim_cpu: f64,
    /// Share of the machine's CPU time in the window used by neither side (other work, steal).
    others: f64,
}

impl Tally {
    fn add(&mut self, polls: u64, errors: u64, seconds: f64) {
        self.polls += polls;
        self.errors += errors;
        if seconds > 0.0 {
            self.per_s += polls as f64 / seconds;
        }
    }

    fn client_us_per_poll(&self) -> f64 {
        1e6 * self.client_cpu / self.polls.max(1) as f64
    }

    fn sim_us_per_poll(&self) -> f64 {
        1e6 * self.sim_cpu / self.polls.max(1) as f64
    }
}

/// Thread-name prefixes, so that CPU time can be told apart per runtime (Linux limits names to 15 bytes).
const SIM_THREADS: &str = "bench-sim";
const CLIENT_THREADS: &str = "bench-client";

/// CPU seconds (user + system) used so far by this process's live threads whose name starts with `prefix`,
/// from `/proc/self/task/*/stat`; 0 where `/proc` is not there.
fn threads_cpu(prefix: &str, ticks_per_s: f64) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        // After the name: state (field 3), …, utime (field 14), stime (field 15).
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / ticks_per_s
}

/// CPU seconds (all but idle and I/O wait, summed over CPUs) the machine has spent so far, from the first
/// line of `/proc/stat`, and the number of CPUs; `(0, 1)` where `/proc` is not there.
fn machine_busy(ticks_per_s: f64) -> (f64, usize) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpus = stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")).count().max(1);
    let Some(total) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0.0, cpus) };
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let fields: Vec<u64> = total.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = fields[..] else { return (0.0, cpus) };
    ((user + nice + system + irq + softirq + steal) as f64 / ticks_per_s, cpus)
}

/// The share of the machine's CPU time during `window` that neither the simulator nor the measured client used:
/// other processes, the kernel's own work, time the hypervisor took (steal). High in a disturbed round.
fn others_share(before: (f64, usize), after: (f64, usize), tally: &Tally, window: Duration) -> f64 {
    let others = (after.0 - before.0) - tally.client_cpu - tally.sim_cpu;
    (others / (window.as_secs_f64() * after.1 as f64)).max(0.0)
}

/// Other work above this share of the machine makes a round's figures unreliable.
const DISTURBED: f64 = 0.05;

/// Says so when other work took a noticeable share of the machine during a reported (median) round.
fn warn_if_disturbed(medians: &[Tally]) {
    let worst = medians.iter().map(|t| t.others).fold(0.0, f64::max);
    if worst > DISTURBED {
        println!(
            "warning: other work used {:.0}% of the machine during a median round; the rates are disturbed, \
             rerun on a quiet machine",
            100.0 * worst
        );
    }
}

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, 100 on Linux if that fails).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

fn main() {
    let window = std::env::var("MODBUS_POLL_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(4), Duration::from_secs_f64);
    let ticks = clock_ticks();
    let placement = Placement::choose();
    let (sim_rt, client_rt) = match placement {
        Placement::Pinned { sim, client } => {
            (runtime(SIM_THREADS, 1, Some(sim)), runtime(CLIENT_THREADS, 1, Some(client)))
        }
        Placement::Shared(_) => (runtime(SIM_THREADS, 2, None), runtime(CLIENT_THREADS, 2, None)),
    };

    // (a) TCP
    let sim = sim_rt.block_on(ModbusSim::start(tcp_spec())).expect("the tcp simulator starts");
    let addrs: Vec<SocketAddr> = sim.device_ids().iter().map(|id| sim.addr(id).expect("device")).collect();
    let reference = build_reference();
    if let Err(why) = &reference {
        println!("reference client unavailable ({why}); run scripts/install-bench-deps.sh");
    }
    println!(
        "tcp: {CONNECTIONS} connections, {REGISTERS} holding registers per poll, {:.1} s per window, {} rounds; {}",
        window.as_secs_f64(),
        ROUNDS,
        placement.describe()
    );
    println!(
        "{:<7} {:<36} {:>10} {:>10} {:>7} {:>18} {:>15} {:>11}",
        "round", "client", "polls/s", "polls", "errors", "client cpu us/poll", "sim cpu us/poll", "others cpu"
    );
    let (mut ours_rounds, mut ref_rounds) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let ours = client_rt.block_on(poll_ours(&addrs, window, ticks));
        print_row(round, "ours (ModbusTcpClient, 16 tasks)", ours);
        ours_rounds.push(ours);
        if let Ok(binary) = &reference {
            let theirs = poll_reference(binary, &addrs, window, ticks, placement);
            print_row(round, "libmodbus 3.1.6 (C, 16 processes)", theirs);
            ref_rounds.push(theirs);
        }
    }
    let ours = median(&ours_rounds);
    print_row_named("median", "ours", ours);
    match (!ref_rounds.is_empty()).then(|| median(&ref_rounds)) {
        Some(theirs) => {
            print_row_named("median", "libmodbus", theirs);
            println!(
                "modbus_poll case=tcp ours_per_s={:.0} ref_per_s={:.0} ratio={:.2} ours_cpu_us_per_poll={:.2} \
                 ref_cpu_us_per_poll={:.2} cpu_ratio={:.2} reference=libmodbus connections={CONNECTIONS} \
                 registers={REGISTERS} seconds={:.1} rounds={ROUNDS} pinned={} others_pct={:.1}",
                ours.per_s,
                theirs.per_s,
                ours.per_s / theirs.per_s,
                ours.client_us_per_poll(),
                theirs.client_us_per_poll(),
                theirs.client_us_per_poll() / ours.client_us_per_poll(),
                window.as_secs_f64(),
                placement.is_pinned(),
                100.0 * ours.others.max(theirs.others)
            );
            warn_if_disturbed(&[ours, theirs]);
        }
        None => println!(
            "modbus_poll case=tcp ours_per_s={:.0} ref_per_s=NA ratio=NA ours_cpu_us_per_poll={:.2} \
             reference=unavailable connections={CONNECTIONS} registers={REGISTERS} seconds={:.1} rounds={ROUNDS} \
             pinned={} others_pct={:.1}",
            ours.per_s,
            ours.client_us_per_poll(),
            window.as_secs_f64(),
            placement.is_pinned(),
            100.0 * ours.others
        ),
    }
    if ref_rounds.is_empty() {
        warn_if_disturbed(&[ours]);
    }
    drop(sim);

    // (b) RTU
    println!();
    println!(
        "{:<14} {:>10} {:>14} {:>14} {:>9} {:>7} {:>7}",
        "rtu line", "polls/s", "wire limit/s", "poll on wire", "fraction", "polls", "errors"
    );
    for (baud, format, seconds) in [(9600, "8N1", 8.0), (19_200, "8E1", 4.0)] {
        poll_rtu(&sim_rt, &client_rt, baud, format, Duration::from_secs_f64(seconds));
    }
}

/// A runtime of `workers` threads named `name`, each pinned to `cpu` if given.
fn runtime(name: &str, workers: usize, cpu: Option<usize>) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).thread_name(name).enable_all();
    if let Some(cpu) = cpu {
        builder.on_thread_start(move || pin_thread(&thread_self(), cpu).expect("a runtime thread is pinned"));
    }
    builder.build().expect("a tokio runtime")
}

/// Where the simulator and the clients run.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// The simulator's runtime on CPU `sim`; our client runtime, the measuring thread and the reference
    /// processes on CPU `client`. Each runtime has one worker, as tokio would size it for one CPU.
    Pinned { sim: usize, client: usize },
    /// Everything shares the machine's CPUs (2-worker runtimes), with the reason pinning was not done.
    Shared(&'static str),
}

impl Placement {
    /// Pinned to the first two CPUs this process may use, unless `MODBUS_POLL_PIN=0` or there are fewer. When
    /// pinned, the calling thread is already on the clients' CPU: it measures, and the reference processes it
    /// starts inherit its affinity.
    fn choose() -> Placement {
        if std::env::var("MODBUS_POLL_PIN").is_ok_and(|v| v == "0") {
            return Placement::Shared("MODBUS_POLL_PIN=0");
        }
        match allowed_cpus()[..] {
            [sim, client, ..] => match pin_thread(&thread_self(), client) {
                Ok(()) => Placement::Pinned { sim, client },
                Err(_) => Placement::Shared("taskset failed"),
            },
            _ => Placement::Shared("fewer than 2 cpus"),
        }
    }

    fn is_pinned(self) -> bool {
        matches!(self, Placement::Pinned { .. })
    }

    fn describe(self) -> String {
        match self {
            Placement::Pinned { sim, client } => format!(
                "simulator pinned to cpu {sim} (1-worker runtime), clients to cpu {client} (ours: 1-worker runtime; \
                 libmodbus: its 16 processes)"
            ),
            Placement::Shared(why) => format!(
                "not pinned ({why}): simulator and clients share {} cpus (2-worker runtimes)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
        }
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`, such as `0-1` or `0,2`).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else { return Vec::new() };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.parse::<usize>(), hi.parse::<usize>()) {
            cpus.extend(lo..=hi);
        }
    }
    cpus
}

/// This thread's id, from `/proc/thread-self` (a link to `PID/task/TID`).
fn thread_self() -> String {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name().map(|tid| tid.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// The CPU list (`Cpus_allowed_list`) of process or thread `pid`, as `/proc` shows it.
fn affinity(pid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_owned()
}

/// Pins thread `tid` to `cpu` with `taskset` (the workspace forbids the `unsafe` a direct `sched_setaffinity`
/// would need).
fn pin_thread(tid: &str, cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["--pid", "--cpu-list", &cpu.to_string(), tid])
        .output()
        .map_err(|e| format!("cannot run taskset: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("taskset failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Five meters of a u32 volume each: holding registers 0 to 9 all answer.
fn meters_layout() -> ConcentratorLayout {
    ConcentratorLayout {
        meters: 5,
        function: Function::Holding,
        base: 0,
        stride: 2,
        volume: FieldSpec { offset: 0, data_type: DataType::U32, word_order: WordOrder::Abcd, scale: 0.001 },
        status: None,
        status_bits: Vec::new(),
        no_data: None,
        no_data_bit: None,
        district: None,
    }
}

fn tcp_spec() -> ModbusSimSpec {
    let devices = (0..CONNECTIONS)
        .map(|i| SimDeviceSpec {
            id: format!("d{i}"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            unit_id: 1,
            kind: SimKind::Concentrator(meters_layout()),
            fault: ModbusFault::default(),
        })
        .collect();
    ModbusSimSpec { devices, speed: 1.0, seed: 7 }
}

/// The round with the median rate (rounds are few and odd in number).
fn median(rounds: &[Tally]) -> Tally {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
    sorted[sorted.len() / 2]
}

fn print_row(round: usize, client: &str, t: Tally) {
    print_row_named(&round.to_string(), client, t);
}

fn print_row_named(round: &str, client: &str, t: Tally) {
    println!(
        "{round:<7} {client:<36} {:>10.0} {:>10} {:>7} {:>18.2} {:>15.2} {:>10.1}%",
        t.per_s,
        t.polls,
        t.errors,
        t.client_us_per_poll(),
        t.sim_us_per_poll(),
        100.0 * t.others
    );
}

/// 16 of our clients, one per device, connected first, then polling together for `window`.
async fn poll_ours(addrs: &[SocketAddr], window: Duration, ticks: f64) -> Tally {
    let start = tokio::time::Instant::now() + START_DELAY;
    let tasks: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let target = TcpTarget { addr: addr.to_string(), unit_id: 1, timeout: TCP_TIMEOUT };
            tokio::spawn(async move {
                let mut client = ModbusTcpClient::new(target);
                // Connecting is not part of the measurement.
                let _ = client.read_registers(Function::Holding, 0, REGISTERS).await;
                tokio::time::sleep_until(start).await;
                let (mut polls, mut errors) = (0u64, 0u64);
                let t0 = tokio::time::Instant::now();
                while t0.elapsed() < window {
                    match client.read_registers(Function::Holding, 0, REGISTERS).await {
                        Ok(Ok(words)) if words.len() == usize::from(REGISTERS) => polls += 1,
                        _ => errors += 1,
                    }
                }
                (polls, errors, t0.elapsed().as_secs_f64())
            })
        })
        .collect();
    // This future runs on the thread that called `block_on`, not on a client worker, so it measures without
    // being measured.
    tokio::time::sleep_until(start).await;
    let (client0, sim0) = (threads_cpu(CLIENT_THREADS, ticks), threads_cpu(SIM_THREADS, ticks));
    let busy0 = machine_busy(ticks);
    tokio::time::sleep_until(start + window).await;
    let busy1 = machine_busy(ticks);
    let (client1, sim1) = (threads_cpu(CLIENT_THREADS, ticks), threads_cpu(SIM_THREADS, ticks));
    let mut tally = Tally { client_cpu: client1 - client0, sim_cpu: sim1 - sim0, ..Tally::default() };
    tally.others = others_share(busy0, busy1, &tally, window);
    for task in tasks {
        let (polls, errors, seconds) = task.await.expect("a polling task");
        tally.add(polls, errors, seconds);
    }
    tally
}

/// Compiles the C reference client into the benchmark's scratch directory.
fn build_reference() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let source = dir.join("modbus_poll_ref.c");
    let binary = dir.join("modbus_poll_ref");
    std::fs::write(&source, REFERENCE_C).map_err(|e| format!("cannot write {}: {e}", source.display()))?;
    let out = Command::new("cc")
        .args(["-O2", "-I/usr/include/modbus", "-o"])
        .arg(&binary)
        .arg(&source)
        .arg("-lmodbus")
        .output()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if !out.status.success() {
        return Err(format!("cc failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(binary)
}

/// 16 reference processes, one per device, connected first, then polling together for `window`.
fn poll_reference(binary: &Path, addrs: &[SocketAddr], window: Duration, ticks: f64, placement: Placement) -> Tally {
    let start = SystemTime::now() + START_DELAY;
    let start_ms = start.duration_since(UNIX_EPOCH).expect("after 1970").as_millis();
    let children: Vec<_> = addrs
        .iter()
        .map(|addr| {
            Command::new(binary)
                .arg(addr.ip().to_string())
                .arg(addr.port().to_string())
                .arg(start_ms.to_string())
                .arg(format!("{:.3}", window.as_secs_f64()))
                .stdout(Stdio::piped())
                .spawn()
                .expect("the reference client starts")
        })
        .collect();
    if let Placement::Pinned { client, .. } = placement {
        for child in &children {
            let pid = child.id().to_string();
            assert_eq!(affinity(&pid), client.to_string(), "reference process {pid} is on the clients' cpu");
        }
    }
    let until = |t: SystemTime| std::thread::sleep(t.duration_since(SystemTime::now()).unwrap_or_default());
    until(start);
    let sim0 = threads_cpu(SIM_THREADS, ticks);
    let busy0 = machine_busy(ticks);
    until(start + window);
    let busy1 = machine_busy(ticks);
    let mut tally = Tally { sim_cpu: threads_cpu(SIM_THREADS, ticks) - sim0, ..Tally::default() };
    for child in children {
        let out = child.wait_with_output().expect("the reference client ends");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<&str> = text.split_whitespace().collect();
        match (out.status.success(), fields.as_slice()) {
            (true, [polls, errors, seconds, cpu]) => {
                tally.add(
                    polls.parse().expect("polls"),
                    errors.parse().expect("errors"),
                    seconds.parse().expect("seconds"),
                );
                tally.client_cpu += cpu.parse::<f64>().expect("cpu seconds");
            }
            _ => panic!("the reference client failed: {} {text:?}", out.status),
        }
    }
    tally.others = others_share(busy0, busy1, &tally, window);
    tally
}

/// One slave on a paced line at `baud`, polled for `window`; prints the rate against the wire limit.
fn poll_rtu(sim_rt: &Runtime, client_rt: &Runtime, baud: u32, format: &str, window: Duration) {
    let char_format: CharFormat = format.parse().expect("a character format");
    let slave = RtuSlaveSpec {
        id: "c1".to_owned(),
        unit_id: 1,
        kind: SimKind::Concentrator(meters_layout()),
        fault: RtuFault::default(),
    };
    let spec = RtuSimSpec { baud, format: char_format, slaves: vec![slave], speed: 1.0, seed: 7 };
    let sim = {
        let _enter = sim_rt.enter();
        RtuSim::start(spec).expect("the rtu simulator starts")
    };
    let settings = sim.line_settings(Duration::from_millis(500));
    let per_poll =
        settings.silence() + settings.wire_time(RTU_REQUEST) + settings.silence() + settings.wire_time(RTU_REPLY);
    let limit = 1.0 / per_poll.as_secs_f64();
    let (polls, errors, seconds, first_error) = client_rt.block_on(async {
        let mut line = RtuLine::new(settings);
        // Opening the port is not part of the measurement.
        let _ = line.read_registers(1, Function::Holding, 0, REGISTERS).await;
        let (mut polls, mut errors, mut first_error) = (0u64, 0u64, None);
        let t0 = Instant::now();
        while t0.elapsed() < window {
            match line.read_registers(1, Function::Holding, 0, REGISTERS).await {
                Ok(Ok(words)) if words.len() == usize::from(REGISTERS) => polls += 1,
                other => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("{other:?}"));
                }
            }
        }
        (polls, errors, t0.elapsed().as_secs_f64(), first_error)
    });
    if let Some(error) = first_error {
        println!("{baud} {format}: first error after {:.2} s: {error}", seconds);
    }
    let rate = polls as f64 / seconds;
    let name = format!("{baud} {format}");
    let on_wire = format!("{:.2} ms", per_poll.as_secs_f64() * 1e3);
    println!(
        "{name:<14} {rate:>10.2} {limit:>14.2} {on_wire:>14} {:>8.1}% {polls:>7} {errors:>7}",
        100.0 * rate / limit
    );
    println!(
        "modbus_poll case=rtu baud={baud} format={format} registers={REGISTERS} polls_per_s={rate:.2} \
         wire_limit_per_s={limit:.2} fraction={:.3} errors={errors}",
        rate / limit
    );
    drop(sim);
}
