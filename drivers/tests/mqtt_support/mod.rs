//! Helpers shared by the MQTT integration tests: a real Mosquitto broker per test (its own process, port,
//! configuration and persistence directory), an ingest client with test timings, a committer that plays the
//! server's store, and waits on events with an upper bound (the bound only turns a hang into a failure).
//!
//! Not every test file uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sim::mqtt::{MqttSim, MqttSimSpec, SimLayout};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use waterworks_drivers::mqtt::{Incoming, MqttIngest, MqttSettings, PayloadMapping};

/// The broker the tests run; `scripts/install-test-deps.sh` installs it.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Upper bound on any wait; reached only when something is broken.
pub const LIMIT: Duration = Duration::from_secs(30);
/// How often a wait that has no event to await (a port that starts to accept, a process that exits) looks again.
const POLL: Duration = Duration::from_millis(10);

/// A unique directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("waterworks-mqtt-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free port on loopback: bound to port 0, then released for the broker to take.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

/// A Mosquitto process with persistence in its own directory. Killed (SIGKILL) when dropped, even when the test
/// fails; its log is printed then, to explain the failure.
pub struct Broker {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub async fn start() -> Broker {
        let mut last = String::new();
        // Another process may take the released port before Mosquitto binds it; then try another one.
        for _ in 0..5 {
            match Broker::start_on(free_port()).await {
                Ok(broker) => return broker,
                Err(reason) => last = reason,
            }
        }
        panic!("mosquitto did not start: {last}");
    }

    /// Starts a broker on `port`, or says why it could not.
    pub async fn start_on(port: u16) -> Result<Broker, String> {
        let mut broker = Broker { dir: TempDir::new(), port, child: None };
        broker.write_config();
        broker.spawn().await?;
        Ok(broker)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn config_path(&self) -> PathBuf {
        self.dir.0.join("mosquitto.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("mosquitto.log")
    }

    fn db_path(&self) -> PathBuf {
        self.dir.0.join("mosquitto.db")
    }

    /// Persistence on, saved every second and on SIGTERM, so that a restart keeps sessions (subscriptions,
    /// queued and unacknowledged QoS 1 messages). `user root` keeps a broker started by root from switching to
    /// the `mosquitto` user, which could not write this directory; it is ignored when not root.
    fn write_config(&self) {
        let dir = self.dir.0.display();
        let config = format!(
            "user root\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             persistence_file mosquitto.db\n\
             autosave_interval 1\n\
             max_queued_messages 100000\n\
             log_dest file {log}\n\
             log_type all\n",
            port = self.port,
            log = self.log_path().display(),
        );
        std::fs::write(self.config_path(), config).expect("write the broker configuration");
    }

    /// Runs the broker process and waits until it accepts connections (or exits).
    async fn spawn(&mut self) -> Result<(), String> {
        if !Path::new(MOSQUITTO).exists() {
            panic!(
                "{MOSQUITTO} is missing: the MQTT tests need a real Mosquitto broker. Run ./scripts/test.sh, \
                 which installs it (scripts/install-test-deps.sh)"
            );
        }
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {MOSQUITTO}: {e}"))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("mosquitto exited with {status} on port {}:\n{}", self.port, self.log()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("mosquitto does not accept connections on port {}", self.port));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the broker with SIGTERM, which makes it save its database, and waits until it has exited.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = tokio::time::Instant::now() + LIMIT;
        while child.try_wait().expect("wait for mosquitto").is_none() {
            assert!(tokio::time::Instant::now() < deadline, "mosquitto did not exit after SIGTERM");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts the broker again on the same port with the same persistence directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped broker only");
        let mut last = String::new();
        // The port was just released; if binding it fails once, try again shortly.
        for _ in 0..5 {
            match self.spawn().await {
                Ok(()) => return,
                Err(reason) => last = reason,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("mosquitto did not restart: {last}");
    }

    /// Deletes the saved database of a stopped broker: it comes back without any session.
    pub fn forget_sessions(&self) {
        assert!(self.child.is_none(), "forget the sessions of a stopped broker only");
        std::fs::remove_file(self.db_path()).expect("remove the broker database");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- mosquitto log (port {}) ---\n{}", self.port, self.log());
        }
    }
}

/// Ingest settings for a broker on loopback with test timings: backoff 50 ms doubling to 1 s.
pub fn ingest_settings(port: u16, client_id: &str, filter: &str, mapping: PayloadMapping) -> MqttSettings {
    let mut settings = MqttSettings::new("127.0.0.1", port, client_id);
    settings.topics = vec![(filter.to_owned(), mapping)];
    settings.keep_alive = Duration::from_secs(5);
    settings.initial_backoff = Duration::from_millis(50);
    settings.max_backoff = Duration::from_secs(1);
    settings.connect_timeout = Duration::from_secs(2);
    settings
}

/// Starts an ingest client reading `layout`'s messages and waits until its subscription is granted (so that
/// nothing published afterwards is missed).
pub async fn start_ingest(port: u16, client_id: &str, layout: &SimLayout) -> (MqttIngest, mpsc::Receiver<Incoming>) {
    start_ingest_with(ingest_settings(port, client_id, &layout.filter(), layout.mapping())).await
}

pub async fn start_ingest_with(settings: MqttSettings) -> (MqttIngest, mpsc::Receiver<Incoming>) {
    let (tx, rx) = mpsc::channel(16);
    let ingest = match MqttIngest::start(settings, tx) {
        Ok(ingest) => ingest,
        Err(e) => panic!("ingest did not start: {e}"),
    };
    let mut stats = ingest.subscribe_stats();
    until(&mut stats, "the subscription is granted", |s| s.subscriptions >= 1).await;
    (ingest, rx)
}

/// Per-meter messages on `water/{meter}/reading`.
pub fn per_meter() -> SimLayout {
    SimLayout::PerMeter { topic: "water/{meter}/reading".to_owned() }
}

/// Meter ids `M01`, `M02`, …
pub fn meter_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("M{i:02}")).collect()
}

/// A simulator spec for `meters` meters publishing `rounds` rounds every `interval`.
pub fn sim_spec(port: u16, client_id: &str, meters: usize, rounds: u64, interval: Duration) -> MqttSimSpec {
    let mut spec = MqttSimSpec::new("127.0.0.1", port, client_id, meter_ids(meters), per_meter());
    spec.rounds = Some(rounds);
    // The last round's time is now: older than the server's age limit or in its future would be flagged.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    spec.start_ts_ms = now - spec.step_ms * rounds as i64;
    spec.interval = interval;
    spec.initial_backoff = Duration::from_millis(50);
    spec.max_backoff = Duration::from_secs(1);
    spec
}

pub fn start_sim(spec: MqttSimSpec) -> MqttSim {
    match MqttSim::start(spec) {
        Ok(sim) => sim,
        Err(e) => panic!("simulator did not start: {e}"),
    }
}

/// Every `(meter, time)` key a simulator spec sends.
pub fn expected_keys(spec: &MqttSimSpec) -> BTreeSet<(String, i64)> {
    let rounds = spec.rounds.expect("a finite simulator");
    (0..rounds).flat_map(|r| spec.meters.iter().map(move |m| (m.clone(), spec.ts_of_round(r)))).collect()
}

/// What the committer has stored: readings by `(meter, time)`, how often each key came, refused messages.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// `(meter, time)` → `(volume m³, status)`. Inserting a key again is a no-op: commits are idempotent.
    pub readings: BTreeMap<(String, i64), (f64, Vec<String>)>,
    /// How many times each key was delivered.
    pub deliveries: BTreeMap<(String, i64), u32>,
    /// Messages that carried no readings.
    pub refused: u64,
}

/// Plays the server: commits every delivered reading into a [`Store`] and then acknowledges the message.
pub struct Committer {
    pub store: watch::Receiver<Store>,
    task: JoinHandle<()>,
}

impl Committer {
    pub fn spawn(mut rx: mpsc::Receiver<Incoming>) -> Committer {
        let (tx, store) = watch::channel(Store::default());
        let task = tokio::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                match incoming.readings {
                    Ok(readings) => {
                        tx.send_modify(|s| {
                            for r in readings {
                                let key = (r.meter, r.ts_ms.expect("the test mappings carry a time"));
                                *s.deliveries.entry(key.clone()).or_default() += 1;
                                s.readings.entry(key).or_insert((r.volume_m3, r.status));
                            }
                        });
                        // Committed: only now is the broker told.
                        incoming.ack.ack();
                    }
                    // Dropping the handle of a refused message acknowledges it.
                    Err(_) => tx.send_modify(|s| s.refused += 1),
                }
            }
        });
        Committer { store, task }
    }

    /// Waits until the store holds every key of `expected`, and returns the store.
    pub async fn until_committed(&mut self, expected: &BTreeSet<(String, i64)>) -> Store {
        until(&mut self.store, "every expected reading is committed", |s| {
            expected.iter().all(|k| s.readings.contains_key(k))
        })
        .await
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next delivered message.
pub async fn next(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    match tokio::time::timeout(LIMIT, rx.recv()).await {
        Ok(Some(incoming)) => incoming,
        Ok(None) => panic!("the ingest closed the channel"),
        Err(_) => panic!("no message delivered within {LIMIT:?}"),
    }
}

/// Waits until `check` holds for the watched value and returns that value.
pub async fn until<T: Clone + Debug>(rx: &mut watch::Receiver<T>, what: &str, check: impl FnMut(&T) -> bool) -> T {
    let outcome = tokio::time::timeout(LIMIT, rx.wait_for(check)).await.map(|seen| seen.map(|value| value.clone()));
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(_)) => panic!("waiting for {what}: the sender is gone"),
        Err(_) => panic!("waiting for {what}: not within {LIMIT:?}; last value: {:?}", *rx.borrow()),
    }
}
