//! The demo's own Mosquitto dies with the server (issue 8 §5), even when the server is killed with SIGKILL, and
//! a broker left running on the data directory by an earlier run is found through its pid file and replaced.
//! The server binary runs as a child process on the embedded demo with a data directory of the test's own.

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use support::*;

fn demo(data: &Path) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_waterworks"));
    command.args(["run", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data);
    spawn_server_process(command)
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// The broker's pid from its pid file, and checks that it is a running Mosquitto.
fn broker(data: &Path) -> u32 {
    let text = std::fs::read_to_string(data.join("mosquitto/mosquitto.pid")).expect("the broker's pid file");
    let pid: u32 = text.trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(String::from_utf8_lossy(&cmdline).contains("mosquitto"), "pid {pid} is not mosquitto");
    assert!(running(pid), "the broker {pid} does not run");
    pid
}

/// The port the broker listens on, from its configuration file.
fn broker_port(data: &Path) -> u16 {
    let conf = std::fs::read_to_string(data.join("mosquitto/mosquitto.conf")).unwrap();
    let line = conf.lines().find_map(|l| l.strip_prefix("listener ")).unwrap();
    line.split_whitespace().next().unwrap().parse().unwrap()
}

async fn gone(pid: u32, what: &str) {
    eventually(Duration::from_secs(10), what, || async move { (!running(pid)).then_some(()) }).await;
}

async fn serves(base: &str, data: &Path) {
    assert_eq!(http(base, "GET", "/healthz", &[], "").await.status, 200);
    let port = broker_port(data);
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the broker accepts connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_broker_dies_with_a_killed_server_and_a_stale_one_is_replaced() {
    assert!(Path::new("/usr/sbin/mosquitto").exists(), "this test needs mosquitto: run scripts/install-test-deps.sh");
    let data = temp_dir("demo-broker");

    // SIGKILL the server: its broker goes too.
    let (mut server, base) = demo(&data);
    let first = broker(&data);
    serves(&base, &data).await;
    server.kill().unwrap();
    server.wait().unwrap();
    gone(first, "the first broker to die with its server").await;

    // Started again on the same data directory, it works, with a new broker.
    let (mut server, base) = demo(&data);
    let second = broker(&data);
    assert_ne!(second, first);
    serves(&base, &data).await;
    server.kill().unwrap();
    server.wait().unwrap();
    gone(second, "the second broker to die with its server").await;

    // A broker left over on this data directory (as from a version without the parent-death signal): the next
    // start stops it and runs its own.
    let conf = data.join("mosquitto/mosquitto.conf");
    let mut stale = Command::new("/usr/sbin/mosquitto").arg("-c").arg(&conf).spawn().unwrap();
    std::fs::write(data.join("mosquitto/mosquitto.pid"), format!("{}\n", stale.id())).unwrap();
    let port = broker_port(&data);
    eventually(Duration::from_secs(10), "the stale broker to listen", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await;
    let (mut server, base) = demo(&data);
    assert!(!running(stale.id()), "the stale broker still runs");
    let _ = stale.wait();
    let third = broker(&data);
    assert_ne!(third, stale.id());
    serves(&base, &data).await;
    server.kill().unwrap();
    server.wait().unwrap();
    gone(third, "the third broker to die with its server").await;
}
