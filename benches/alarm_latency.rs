//! Alarm latency (issue 9 "Done when"): from the committed water-quality sample that crosses a limit to the
//! alarm frame on every WebSocket client, with 50 and with 1,000 clients, while 50,000 readings/s are
//! ingested.
//!
//! Run with `cargo bench --bench alarm_latency` (both client counts), or `cargo bench --bench alarm_latency --
//! 50` / `1000` for one. `ALARM_LATENCY_CROSSINGS` sets the crossings per run (default 100);
//! `ALARM_LATENCY_DEBUG=1` prints what client 0 receives.
//!
//! **What runs.** The whole server in this process (`waterworks::app::start`, the same start-up as `run`), with
//! one simulated water-quality logger `wq` (free chlorine, plant outlet: low limit 0.3 mg/L) whose own poll is
//! hourly, so it stays out of the way. The crossing sample (0.1 mg/L) and the clearing one (0.5 mg/L) are
//! submitted to the server's store writer as the logger's actor would submit them (`Op::Sample`, the device's
//! id and parameter), and **t0 is when the writer acknowledged the commit** (the sample is durable). From there
//! the real path runs: the change feed wakes the alarm engine (`FeedConsumer<AlarmEngine>`), which commits the
//! alarm op with its cursor; the alarm journal head moves; the live hub's forwarder reads the record and
//! broadcasts an `alarm` frame; each `/ws` session sends it. **t1 is when a client task reads the frame
//! whose record activates `quality_low~wq~free_chlorine`.** Every (crossing, client) pair is one sample of
//! t1 − t0; the "all clients" figure is, per crossing, the time until the last client had it.
//!
//! **The load.** A task offers 50,000 readings/s to the same writer (every 10 ms one submission of 500
//! readings of 10,000 meters, each submission awaited in its own task, so a slow commit does not lower the
//! offered rate), as concentrators' actors would after decoding; the rate acknowledged during the run is
//! printed. Modbus decoding is not in this path (see `modbus_poll` for its cost). `ALARM_LATENCY_READINGS=0`
//! runs without the load, to see what it costs.
//!
//! **Where the clients are.** The WebSocket clients (tokio-tungstenite, HTTP Basic credentials of the first
//! admin) run on the same runtime and machine as the server, so their reading competes with the server for
//! the 2 cores: the figures include that. Each client only looks for the alarm's id and `activated` in the
//! text, it does not parse every frame.
//!
//! Output: one line per client count, greppable: `alarm_latency clients=… crossings=… p50_ms=… p99_ms=…
//! all_p50_ms=… all_p99_ms=… max_ms=… ingest_readings_per_s=… load=…` (load: the one-minute load average at
//! the end; above the number of cores the machine was shared and the line says CONTENDED).

// A benchmark reports on standard output.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actors::model::{DeviceId, MeterId, MeterReading, MeterStatus, QualityFlags, QualitySample, Timestamp, Volume};
use actors::store::{Op, StoreHandle};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use waterworks::app::{self, RunOptions};

const PASSWORD: &str = "alarm latency bench password";
const ALARM_ID: &str = "quality_low~wq~free_chlorine";
/// The ingest load offered; `ALARM_LATENCY_READINGS` changes it (0: none, to see what the load costs).
fn readings_per_s() -> u64 {
    std::env::var("ALARM_LATENCY_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}
const TICK: Duration = Duration::from_millis(10);
const METERS: u64 = 10_000;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_connections = 4000

[simulator]
enabled = true

[[region]]
id = "r1"

[[region.logger]]
id = "wq"
address = "127.0.0.1:0"
model = "ww-wq-logger-v1"
parameters = [ { name = "free_chlorine", cycle = "1h" } ]
"#;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sample(value: f64) -> Op {
    Op::Sample(QualitySample {
        device: DeviceId::new("wq"),
        parameter: "free_chlorine".into(),
        ts: Timestamp(now_ms()),
        value,
        unit: "mg/L".into(),
        flags: QualityFlags(0),
    })
}

/// What a client saw: its index, activated (or cleared), and when.
type Seen = (usize, bool, Instant);

async fn client(addr: std::net::SocketAddr, auth: String, idx: usize, tx: mpsc::UnboundedSender<Seen>) {
    let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
    request.headers_mut().insert("authorization", auth.parse().expect("header"));
    let (mut stream, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(s) => s,
        Err(e) => panic!("client {idx} cannot connect: {e}"),
    };
    let _ = tx.send((idx, false, Instant::now())); // connected
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Text(t) = msg {
            let t = t.as_str();
            if idx == 0 && std::env::var_os("ALARM_LATENCY_DEBUG").is_some() {
                eprintln!("client 0: {}", t.chars().take(400).collect::<String>());
            }
            if t.contains("\"type\":\"alarm\"") && t.contains(ALARM_ID) {
                let activated = t.contains("\"what\":\"activated\"");
                let cleared = t.contains("\"what\":\"cleared\"");
                if activated || cleared {
                    let _ = tx.send((idx, activated, Instant::now()));
                }
            }
        }
    }
}

/// Offers `READINGS_PER_S` until `stop`; counts the readings acknowledged.
async fn ingest(
    writer: StoreHandle,
    acked: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    waits: Arc<std::sync::Mutex<Vec<f64>>>,
) {
    let per_tick = readings_per_s() * TICK.as_millis() as u64 / 1000;
    if per_tick == 0 {
        return;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let ts = now_ms();
        let ops: Vec<Op> = (next..next + per_tick)
            .map(|i| {
                Op::Reading(MeterReading {
                    meter: MeterId::new(format!("load-{:05}", i % METERS)),
                    device: DeviceId::new(format!("load-c{:03}", (i % METERS) / 250)),
                    ts: Timestamp(ts + (i / METERS) as i64 % 1000),
                    volume: Volume::from_litres((i / METERS) as i64 + 1),
                    meter_clock: None,
                    settlement_volume: None,
                    status: MeterStatus(0),
                })
            })
            .collect();
        next += per_tick;
        let (writer, acked, waits) = (writer.clone(), acked.clone(), waits.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            if writer.submit(ops).await.is_ok() {
                acked.fetch_add(per_tick, Ordering::Relaxed);
                waits.lock().unwrap_or_else(|p| p.into_inner()).push(sent.elapsed().as_secs_f64() * 1e3);
            }
        });
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

async fn run(clients: usize, crossings: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("ww-alarm-latency-{}-{clients}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = waterworks::config::parse("alarm_latency.toml", CONFIG, None).map_err(|e| e.to_string())?;
    let opts =
        RunOptions { data_dir: Some(dir.clone()), admin_password: Some(PASSWORD.into()), ..RunOptions::default() };
    let server = app::start(config, opts).await.map_err(|e| format!("server: {e}"))?;
    let writer = server.handle.store_writer().clone();
    let auth = format!("Basic {}", base64(format!("admin:{PASSWORD}").as_bytes()));

    // Connect the clients: one first (its Basic check fills the credential cache), then the rest, 50 at a time.
    let (tx, mut rx) = mpsc::unbounded_channel::<Seen>();
    let mut connected = 0;
    for batch in std::iter::once(0..1).chain((1..clients).step_by(50).map(|s| s..(s + 50).min(clients))) {
        let n = batch.len();
        for idx in batch {
            tokio::spawn(client(server.addr, auth.clone(), idx, tx.clone()));
        }
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.map_err(|_| "clients connect")?;
            connected += 1;
        }
    }
    assert_eq!(connected, clients);
    // The snapshot each client gets first must be out of the way: a moment for it, then the load.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waits = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = tokio::spawn(ingest(writer.clone(), acked.clone(), stop.clone(), waits.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await; // the load runs before the first crossing
    let acked_before = acked.load(Ordering::Relaxed);
    waits.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let started = Instant::now();

    // The logger's own first poll must be in before the first crossing (a later sample of its own would be
    // newer than ours); then one crossing as a warm-up, not counted.
    for _ in 0..200 {
        match server.handle.field().device("wq").await {
            Ok(view) if view.comm.status.last_success.is_some() => break,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut each = Vec::with_capacity(crossings * clients);
    let mut all = Vec::with_capacity(crossings);
    for round in 0..=crossings {
        if round == 1 {
            each.clear();
            all.clear();
        }
        for (value, activated) in [(0.1, true), (0.5, false)] {
            writer.submit(vec![sample(value)]).await.map_err(|e| format!("sample: {e}"))?;
            let t0 = Instant::now();
            let mut seen = vec![false; clients];
            let mut got = 0;
            let mut last = t0;
            while got < clients {
                let (idx, is_activated, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .map_err(|_| format!("only {got} of {clients} clients got the alarm frame within 30 s"))?
                    .ok_or("clients gone")?;
                if is_activated != activated || seen[idx] {
                    continue;
                }
                seen[idx] = true;
                got += 1;
                if activated {
                    each.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                }
                last = last.max(at);
            }
            if activated {
                all.push(last.saturating_duration_since(t0).as_secs_f64() * 1e3);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (acked.load(Ordering::Relaxed) - acked_before) as f64 / elapsed;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;

    // Where the time goes: how long the ingest's own submissions waited for their commit meanwhile (the
    // alarm engine's commit queues behind them in the same writer).
    let mut waits = std::mem::take(&mut *waits.lock().unwrap_or_else(|p| p.into_inner()));
    waits.sort_by(f64::total_cmp);
    each.sort_by(f64::total_cmp);
    all.sort_by(f64::total_cmp);
    let load = load_average();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "alarm_latency clients={clients} crossings={crossings} p50_ms={:.2} p99_ms={:.2} all_p50_ms={:.2} \
         all_p99_ms={:.2} max_ms={:.2} ingest_readings_per_s={rate:.0} ingest_commit_p50_ms={:.2} \
         ingest_commit_p99_ms={:.2} load={load:.1}{}",
        percentile(&each, 0.5),
        percentile(&each, 0.99),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        each.last().copied().unwrap_or(f64::NAN),
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
        if load > cores as f64 { " CONTENDED" } else { "" }
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let counts: Vec<usize> =
        if args.is_empty() { vec![50, 1000] } else { args.iter().filter_map(|a| a.parse().ok()).collect() };
    let crossings =
        std::env::var("ALARM_LATENCY_CROSSINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(100usize).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for clients in counts {
        if let Err(e) = runtime.block_on(run(clients, crossings)) {
            eprintln!("alarm_latency clients={clients}: {e}");
            std::process::exit(1);
        }
    }
}
