//! Test support: a whole server in-process on port 0 against its in-process simulator (also on port 0), a
//! minimal HTTP/1.1 client, a WebSocket client and `eventually`, so tests await events instead of sleeping.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use waterworks::app::{self, App, RunOptions};

pub mod browser;

/// The first admin's password in tests (it follows the password policy: not containing `admin`).
pub const ADMIN_PASSWORD: &str = "test-first-pw-Kq7";

/// Starts the server binary as a child process (`command` names it and its arguments, perhaps through a shell
/// that sets a limit first), with the test admin password and stdout piped; waits for the line that names its
/// HMI address and returns the child and `http://host:port`. Stdout keeps being drained on a thread, so the
/// child never blocks on a full pipe.
pub fn spawn_server_process(mut command: std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = command
        .env("WATERWORKS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn waterworks");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("waterworks printed its address").expect("read stdout");
        if let Some(rest) = line.split("HMI: http://").nth(1) {
            break format!("http://{}", rest.split('/').next().unwrap_or(rest));
        }
        if let Some(rest) = line.split("HMI: https://").nth(1) {
            break format!("https://{}", rest.split('/').next().unwrap_or(rest));
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// The server binary running as a child process on `127.0.0.1:0` (`waterworks run --config … --data-dir …`),
/// killed when dropped; for tests that SIGKILL or restart the real process.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    pub fn run(config: impl AsRef<std::ffi::OsStr>, data: impl AsRef<std::ffi::OsStr>) -> ServerProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_waterworks"));
        command.arg("run").arg("--config").arg(config).arg("--data-dir").arg(data).args(["--listen", "127.0.0.1:0"]);
        let (child, base) = spawn_server_process(command);
        ServerProcess { child, base }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs in at `base` and returns the session cookie (`name=value`).
pub async fn login_at(base: &str, username: &str, password: &str) -> String {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let r = http(base, "POST", "/api/login", &[("content-type", "application/json")], &body).await;
    assert_eq!(r.status, 200, "login as {username}: {}", r.body);
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned()
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("ww-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A small village with short cycles: 300 ms concentrator cycles, 250 ms request timeouts, no retries, so
/// that two missed cycles take well under two seconds.
pub const VILLAGE: &str = r#"
[server]
listen = "127.0.0.1:0"

[simulator]
enabled = true
speed = 600.0
seed = 42

[supervision]
base_backoff = "20ms"
max_backoff = "200ms"

[defaults]
timeout = "250ms"
retries = 0
retry_delay = "50ms"

[[region]]
id = "east"
name = "东村"

[[region.concentrator]]
id = "east-c1"
name = "东村1号集中器"
address = "127.0.0.1:0"
model = "ww-concentrator-v1"
cycle = "300ms"
meters = { prefix = "E1-", first = 1, count = 12 }

[[region.concentrator]]
id = "east-c2"
address = "127.0.0.1:0"
model = "hx-c200"
cycle = "300ms"
meters = { prefix = "E2-", first = 1, count = 8 }

[[region.logger]]
id = "east-wq"
name = "东村水厂"
address = "127.0.0.1:0"
model = "ww-wq-logger-v1"
parameters = [
  { name = "free_chlorine", cycle = "300ms" },
  { name = "turbidity", cycle = "300ms" },
  { name = "ph", cycle = "600ms" },
]

[[region]]
id = "west"
name = "西村"

[[region.concentrator]]
id = "west-c1"
address = "127.0.0.1:0"
model = "ww-concentrator-v1"
cycle = "300ms"
meters = { prefix = "W1-", first = 1, count = 5 }
"#;

pub struct TestServer {
    pub app: App,
    pub base: String,
    pub dir: PathBuf,
}

/// Starts a whole server in-process from config text, with its store in a fresh directory.
/// Appended to [`VILLAGE`] by tests about one alarm's life: the simulated meters carry status bits (a tampered
/// meter behind every concentrator, some low batteries, MQTT meters whose tamper bit comes and goes), whose
/// alarms would stand beside and interleave with the alarm under test. Switched off through `[alarms]`, as a
/// utility would.
pub const NO_METER_STATUS_ALARMS: &str = r#"
[alarms.class.meter_tamper]
enabled = false
[alarms.class.meter_battery_low]
enabled = false
[alarms.class.meter_reverse_flow]
enabled = false
[alarms.class.meter_fault]
enabled = false
[alarms.class.meter_valve_fault]
enabled = false
"#;

pub async fn start(config_text: &str) -> TestServer {
    start_in(config_text, temp_dir("server")).await
}

pub async fn start_in(config_text: &str, dir: PathBuf) -> TestServer {
    start_with(config_text, dir, None).await
}

/// Starts a whole server as [`start`] does, with the fault-injection API on a loopback port of its own
/// (`server.app.sim_control_addr`).
pub async fn start_with_sim_control(config_text: &str) -> TestServer {
    start_with(config_text, temp_dir("server"), Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))).await
}

async fn start_with(config_text: &str, dir: PathBuf, sim_control: Option<std::net::SocketAddr>) -> TestServer {
    let config = waterworks::config::parse("test.toml", config_text, None).expect("valid test config");
    // Always port 0: tests run in parallel.
    let opts = RunOptions {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(dir.clone()),
        admin_password: Some(ADMIN_PASSWORD.into()),
        sim_control,
        ..RunOptions::default()
    };
    let app = app::start(config, opts).await.expect("server starts");
    let base = format!("http://{}", app.addr);
    TestServer { app, base, dir }
}

impl TestServer {
    pub fn sim(&self) -> &sim::modbus::ModbusSim {
        self.app.sim.as_ref().expect("simulator enabled")
    }

    /// Logs in and returns the cookie header value.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        let r = http(&self.base, "POST", "/api/login", &[("content-type", "application/json")], &body).await;
        assert_eq!(r.status, 200, "login as {username}: {}", r.body);
        let set_cookie = r.header("set-cookie").expect("session cookie");
        set_cookie.split(';').next().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    pub async fn get(&self, path: &str, cookie: &str) -> Response {
        http(&self.base, "GET", path, &[("cookie", cookie)], "").await
    }

    pub async fn ws(&self, cookie: &str, query: &str) -> WsClient {
        WsClient::connect(&format!("ws://{}/ws{query}", self.app.addr), cookie).await
    }
}

/// An HTTP response as text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client (Connection: close; chunked bodies decoded), enough for tests. Like a browser, it
/// names the server's own `Origin` on a state-changing request that carries a cookie, unless `headers` name
/// one (the server refuses such requests without it, issue 8 §5); [`http_exact`] sends only what it is given.
pub async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    http_from(None, base, method, path, headers, body).await
}

/// [`http`] with exactly the given headers (besides Host, Connection and Content-Length).
pub async fn http_exact(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    send(None, base, method, path, headers, body).await
}

/// The headers a browser adds: its page's `Origin` on a state-changing request with a cookie.
fn as_browser<'a>(base: &'a str, method: &str, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = headers.to_vec();
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !matches!(method, "GET" | "HEAD") && has("cookie") && !has("origin") && !has("referer") {
        all.push(("origin", base));
    }
    all
}

/// Like [`http`], from a chosen local address (any 127.x.y.z works on Linux: a second client address
/// without a second machine).
pub async fn http_from(
    source: Option<std::net::IpAddr>,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    send(source, base, method, path, &as_browser(base, method, headers), body).await
}

async fn send(
    source: Option<std::net::IpAddr>,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let host = base.trim_start_matches("http://");
    let mut stream = match source {
        None => TcpStream::connect(host).await.expect("connect"),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(std::net::SocketAddr::new(ip, 0)).expect("bind the source address");
            socket.connect(host.parse().expect("an address")).await.expect("connect")
        }
    };
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("http head");
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Response { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A WebSocket client of the live stream.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str, cookie: &str) -> WsClient {
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert("cookie", cookie.parse().expect("cookie header"));
        let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
        WsClient { stream }
    }

    /// The next JSON message (pings and pongs skipped).
    pub async fn next(&mut self) -> Value {
        use futures_util::StreamExt;
        loop {
            match tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("a live message in time")
            {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON message"),
                Some(Ok(Message::Close(c))) => panic!("socket closed: {c:?}"),
                Some(Ok(_)) => continue,
                other => panic!("socket failed: {other:?}"),
            }
        }
    }

    /// Reads messages until one satisfies `pred`, within `within`.
    pub async fn until(&mut self, within: Duration, mut pred: impl FnMut(&Value) -> bool) -> Value {
        tokio::time::timeout(within, async {
            loop {
                let m = self.next().await;
                if pred(&m) {
                    return m;
                }
            }
        })
        .await
        .expect("the awaited live message arrived in time")
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }

    /// Reads (and discards) whatever is buffered until the server closes the socket; false if it is still
    /// open after `within`.
    pub async fn closed_by_server_within(&mut self, within: Duration) -> bool {
        use futures_util::StreamExt;
        tokio::time::timeout(within, async {
            loop {
                match self.stream.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A device's JSON view from `/api/devices`.
pub async fn device(server: &TestServer, cookie: &str, id: &str) -> Value {
    let r = server.get(&format!("/api/devices/{id}"), cookie).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Commands a valve through the HMI's one entry point, as the web page does.
pub async fn command_valve(server: &TestServer, cookie: &str, valve: &str, action: &str, reason: &str) -> Response {
    let body = serde_json::json!({ "action": action, "reason": reason }).to_string();
    http(
        &server.base,
        "POST",
        &format!("/api/valves/{valve}/command"),
        &[("content-type", "application/json"), ("cookie", cookie)],
        &body,
    )
    .await
}

/// A TCP forwarder standing for one communication path to a device (a 4G gateway, a second RS-485 gateway).
/// When down, it drops every forwarded connection and holds new ones open without answering, as a dead
/// link does: clients see timeouts, not refusals.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    live: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, l) = (down.clone(), live.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = if d.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let mut sink = [0u8; 512];
                        while matches!(inbound.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                } else {
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    })
                };
                l.lock().unwrap().push(task);
            }
        });
        Proxy { addr, down, live, accept }
    }

    /// Takes the path down (dropping its connections) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for t in self.live.lock().unwrap().drain(..) {
                t.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.live.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
