//! The change feed across SIGKILL (issue 7 §3, DESIGN §12): a child process runs the real store, store writer,
//! durable event bus and a feed consumer, and submits readings and events, printing each acknowledgement;
//! the test kills it with SIGKILL at arbitrary points, three times, then lets a last run drain the feed.
//! Then, reading the store file itself:
//! - every acknowledged reading and event is in the store (nothing acknowledged is lost);
//! - every entry the consumer's handler was given is in the store with the same content (nothing reaches a
//!   handler before it is committed);
//! - every entry in the store was handled at least once (the consumer resumed from its cursor each time).

// The child process talks to the test through its standard output: that is its whole purpose.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use actors::clock::SystemClock;
use actors::event::{Event, EventBus};
use actors::feed::{FeedConsumer, FeedConsumerArgs, FeedError, FeedHandler};
use actors::metrics::Metrics;
use actors::model::{DeviceId, MeterId, MeterReading, MeterStatus, RegionId, Timestamp, Volume};
use actors::store::{FeedEntry, FeedFact, Op, Store, StoreHandle, StoreWriter, StoreWriterArgs, Stores};
use actors::supervisor::Slot;
use ractor::Actor;

const CONSUMER: &str = "crash-recorder";

/// What the handler saw of an entry, and what the store holds: the same text if they are the same entry.
fn digest(entry: &FeedEntry) -> String {
    match &entry.fact {
        FeedFact::Data { readings, samples } => {
            let r: Vec<String> = readings.iter().map(|r| format!("{}@{}={}", r.meter, r.ts.0, r.volume)).collect();
            format!("R:{}:{}", r.join(","), samples.len())
        }
        FeedFact::Event(e) => match &e.event {
            Event::CommLost { device, .. } => format!("E:comm_lost:{device}"),
            other => format!("E:{}", other.kind()),
        },
        FeedFact::Unreadable { reason } => format!("U:{reason}"),
    }
}

/// Appends what it is given to a file, synced before the batch counts as handled.
struct Recorder {
    file: std::fs::File,
}

impl FeedHandler for Recorder {
    fn name(&self) -> &str {
        CONSUMER
    }

    async fn handle(&mut self, _stores: &Stores, entries: &[FeedEntry]) -> Result<Vec<Op>, FeedError> {
        let mut text = String::new();
        for e in entries {
            text.push_str(&format!("{} {}\n", e.seq, digest(e)));
        }
        self.file.write_all(text.as_bytes()).map_err(|e| FeedError::Handler(e.to_string()))?;
        self.file.sync_data().map_err(|e| FeedError::Handler(e.to_string()))?;
        Ok(Vec::new())
    }
}

/// The child process: runs until killed (`submit`) or until the consumer caught up (`drain`).
#[test]
fn child_process() {
    let (Ok(dir), Ok(mode)) = (std::env::var("WW_FEED_CHILD"), std::env::var("WW_FEED_MODE")) else { return };
    let start: i64 = std::env::var("WW_FEED_START").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = PathBuf::from(dir);
        let store = Store::open(&dir.join("data")).expect("store opens");
        let metrics = Arc::new(Metrics::default());
        let slot = Slot::default();
        let handle = StoreHandle::new(slot.clone(), metrics.clone());
        let bus = EventBus::durable(1024, handle.clone(), Arc::new(SystemClock), metrics.clone());
        let args = StoreWriterArgs {
            store: Arc::new(store.clone()),
            metrics: metrics.clone(),
            max_batch_ops: 50_000,
            events: Some(bus.clone()),
        };
        let (writer, _) = Actor::spawn(None, StoreWriter, args).await.expect("writer starts");
        slot.set(writer);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("handled.log")).unwrap();
        let consumer = FeedConsumerArgs {
            handler: Recorder { file },
            stores: store.clone().into(),
            writer: handle.clone(),
            metrics: metrics.clone(),
            batch: 16,
        };
        Actor::spawn(None, FeedConsumer::<Recorder>::default(), consumer).await.expect("consumer starts");
        if mode == "drain" {
            while store.cursor(CONSUMER).unwrap() < store.feed_head() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            println!("DRAINED {}", store.feed_head());
            return;
        }
        // Several submitters at once, as device actors are, so commits group; each prints its acknowledgements.
        let mut tasks = Vec::new();
        for lane in 0..4i64 {
            let handle = handle.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = start + lane;
                loop {
                    let ops = if i % 3 == 0 {
                        vec![Op::Event(
                            Timestamp(i),
                            Event::CommLost {
                                device: DeviceId::new(format!("d{i}")),
                                region: RegionId::new("r"),
                                ts: Timestamp(i),
                                misses: 2,
                                error: None,
                                error_code: None,
                                error_params: None,
                            },
                        )]
                    } else {
                        (0..3)
                            .map(|m| {
                                Op::Reading(MeterReading {
                                    meter: MeterId::new(format!("m{m}")),
                                    device: DeviceId::new("c"),
                                    ts: Timestamp(i),
                                    volume: Volume::from_litres(i * 10 + m),
                                    status: MeterStatus::default(),
                                    meter_clock: None,
                                    settlement_volume: None,
                                })
                            })
                            .collect()
                    };
                    handle.submit(ops).await.expect("committed");
                    println!("ACK {} {i}", if i % 3 == 0 { "E" } else { "R" });
                    i += 4;
                }
            }));
        }
        // Events published through the bus, too, as actors do (not acknowledged; in the store once delivered).
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn run_child(dir: &Path, mode: &str, start: i64, kill_after: usize) -> (Vec<(String, i64)>, Option<u64>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env("WW_FEED_CHILD", dir)
        .env("WW_FEED_MODE", mode)
        .env("WW_FEED_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut acks = Vec::new();
    let mut drained = None;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        // The test harness may print "test child_process ... " on the same line first.
        let at = line.find("ACK ").or_else(|| line.find("DRAINED ")).unwrap_or(line.len());
        let mut words = line[at..].split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("ACK"), Some(kind), Some(i)) => {
                acks.push((kind.to_owned(), i.parse().unwrap()));
                if acks.len() >= kill_after {
                    child.kill().expect("SIGKILL");
                    break;
                }
            }
            (Some("DRAINED"), Some(head), _) => drained = Some(head.parse().unwrap()),
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    if mode == "drain" {
        assert!(status.success(), "the draining run exits normally: {status:?}");
    } else {
        assert!(!status.success(), "killed, not exited: {status:?}");
    }
    (acks, drained)
}

#[test]
fn sigkill_loses_no_committed_entry_and_the_consumer_resumes() {
    let dir = std::env::temp_dir().join(format!("ww-feed-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let mut acked: Vec<(String, i64)> = Vec::new();
    for (round, kill_after) in [300usize, 500, 150].into_iter().enumerate() {
        let start = 1 + (round as i64) * 1_000_000;
        let (acks, _) = run_child(&dir, "submit", start, kill_after);
        assert!(acks.len() >= kill_after, "round {round}: {} acknowledgements", acks.len());
        acked.extend(acks);
    }
    let handled_before_drain = std::fs::read_to_string(dir.join("handled.log")).unwrap_or_default().lines().count();
    let (_, drained) = run_child(&dir, "drain", 0, usize::MAX);
    let head = drained.expect("the last run drained the feed");

    // Read the store file itself.
    let store = Store::open(&dir.join("data")).unwrap();
    assert_eq!(store.feed_head(), head);
    assert_eq!(store.cursor(CONSUMER).unwrap(), head, "the consumer's cursor reached the head");
    let mut stored: BTreeMap<u64, String> = BTreeMap::new();
    let mut after = 0;
    loop {
        let batch = store.feed_after(after, 1000).unwrap();
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for e in &batch {
            stored.insert(e.seq, digest(e));
        }
    }
    assert_eq!(stored.keys().copied().collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>(), "the feed has no holes");

    // Nothing acknowledged is lost.
    let readings: BTreeSet<(String, i64)> = stored
        .values()
        .filter_map(|d| d.strip_prefix("R:"))
        .flat_map(|d| d.split(':').next().unwrap_or("").split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|r| {
            let (meter, rest) = r.split_once('@')?;
            Some((meter.to_owned(), rest.split('=').next()?.parse().ok()?))
        })
        .collect();
    let events: BTreeSet<&str> = stored.values().filter_map(|d| d.strip_prefix("E:comm_lost:")).collect();
    for (kind, i) in &acked {
        if kind == "E" {
            assert!(events.contains(format!("d{i}").as_str()), "acknowledged event d{i} lost");
        } else {
            for m in 0..3 {
                assert!(readings.contains(&(format!("m{m}"), *i)), "acknowledged reading m{m}@{i} lost");
            }
        }
    }

    // Every handled entry is in the store with the same content, and every stored entry was handled.
    let log = std::fs::read_to_string(dir.join("handled.log")).unwrap();
    let mut handled: BTreeSet<u64> = BTreeSet::new();
    for line in log.lines() {
        let (seq, what) = line.split_once(' ').unwrap();
        let seq: u64 = seq.parse().unwrap();
        assert_eq!(
            stored.get(&seq).map(String::as_str),
            Some(what),
            "entry {seq} was handled but is not in the store as handled"
        );
        handled.insert(seq);
    }
    let unhandled: Vec<u64> = stored.keys().filter(|s| !handled.contains(s)).copied().collect();
    assert!(unhandled.is_empty(), "entries never handled: {:?}", &unhandled[..unhandled.len().min(10)]);
    assert!(handled_before_drain > 0, "the consumer ran while the submitters did, before the kills");
    let _ = std::fs::remove_dir_all(&dir);
}
