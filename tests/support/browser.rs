//! A small Chrome DevTools Protocol client for browser tests: it launches Debian's headless Chromium with a
//! fresh profile, opens one page over a flattened session and evaluates, clicks, types and takes screenshots
//! there, with every wait bounded by [`WAIT`] (the start itself by `LAUNCH_WAIT`, one start at a time).
//!
//! It deliberately is not a general CDP library: one browser, one page, replies matched to requests by id,
//! and events kept for later inspection (uncaught page errors) or taken by a test that awaits one (a request
//! paused by `Fetch` interception). The browser process group is killed
//! and its profile deleted on drop, so a failing test leaves nothing behind.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The bound of every wait: a reply, the DevTools URL, an awaited page state.
pub const WAIT: Duration = Duration::from_secs(20);

/// The bound of Chromium's start (until it names its DevTools socket). Starts are one at a time (see
/// [`launch_permit`]); on a busy 2-core machine one start has taken over 20 s.
const LAUNCH_WAIT: Duration = Duration::from_secs(60);

/// Browser tests run in parallel, each with its own Chromium; several starting at once on two cores starve
/// each other (a start then missed the old 20 s bound). Starts take turns; the tests run side by side after.
fn launch_permit() -> &'static tokio::sync::Semaphore {
    static LAUNCH: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    LAUNCH.get_or_init(|| tokio::sync::Semaphore::new(1))
}

/// How often an awaited page state is polled.
const POLL: Duration = Duration::from_millis(50);

/// The size of the page's viewport, that of a small control-room screen.
const VIEWPORT: (u32, u32) = (1366, 900);

/// How many lines of Chromium's stderr are kept to explain a failure.
const LOG_LINES: usize = 60;

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// Chromium's stderr, last lines only.
type Log = Arc<Mutex<VecDeque<String>>>;

/// The Chromium process and its profile directory; both go away on drop.
struct Process {
    child: Child,
    profile: PathBuf,
    log: Log,
}

impl Process {
    fn log_tail(&self) -> String {
        self.log.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The browser leads its own process group (see `launch`), so this ends its renderer and GPU helpers
        // too, and nothing else. Only while the browser is unreaped: then its id cannot name another group.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper killed with the group may still be on its way out; give the directory a few tries.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.profile) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
    }
}

/// What the reader task shares with callers: requests waiting for their reply, and the events seen so far.
#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    events: Mutex<Vec<Value>>,
}

/// A headless Chromium with one page attached.
pub struct Browser {
    sink: tokio::sync::Mutex<Sink>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    session: String,
    reader: tokio::task::JoinHandle<()>,
    // Last, so that it is dropped (killed) after the connection.
    process: Process,
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Installed in every document before its own scripts: reports CSP violations as console errors.
const CSP_WATCH: &str = "window.__cspWatch = 1; document.addEventListener('securitypolicyviolation', (e) => { \
     console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + \
     ' at ' + e.sourceFile + ':' + e.lineNumber); });";

impl Browser {
    /// Starts Chromium with a fresh profile and opens a blank page of [`VIEWPORT`] size. Panics, saying how to
    /// install it, when Chromium is missing.
    pub async fn launch() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: this test drives a real headless Chromium. Run the test command from the \
             README, which installs it (scripts/install-test-deps.sh installs the Debian package `chromium`)."
        );
        let turn = launch_permit().acquire().await.expect("the launch semaphore is never closed");
        let profile = super::temp_dir("chromium");
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.display()),
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM}: {e}"));
        let mut process = Process { child, profile, log: Log::default() };
        let url = devtools_url(&mut process).await;
        drop(turn);

        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the DevTools socket {url}: {e}"));
        let (sink, stream) = ws.split();
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_messages(stream, shared.clone()));
        let mut browser = Browser {
            sink: tokio::sync::Mutex::new(sink),
            shared,
            next_id: AtomicU64::new(1),
            session: String::new(),
            reader,
            process,
        };

        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await;
        let target = target.unwrap_or_else(|e| browser.fail(&e));
        let attached = browser
            .call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))
            .await
            .unwrap_or_else(|e| browser.fail(&e));
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        let (width, height) = VIEWPORT;
        let metrics = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        // Every Content-Security-Policy violation (an inline script, an inline handler or style the page tried)
        // becomes a console error before any page script runs, so `page_errors` reports it (issue 8 §5).
        let csp = json!({ "source": CSP_WATCH });
        for (method, params) in [
            ("Runtime.enable", json!({})),
            ("Page.enable", json!({})),
            ("Page.addScriptToEvaluateOnNewDocument", csp),
            ("Emulation.setDeviceMetricsOverride", metrics),
        ] {
            browser.page(method, params).await.unwrap_or_else(|e| browser.fail(&e));
        }
        browser
    }

    /// Resizes the page's viewport to `width` × `height` CSS pixels; `mobile` emulates a phone (the meta
    /// viewport applies, scrollbars overlay). The page is not reloaded: it lays out again as on a rotation.
    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        let metrics = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
            "screenWidth": width, "screenHeight": height,
        });
        self.page("Emulation.setDeviceMetricsOverride", metrics).await.unwrap_or_else(|e| self.fail(&e));
    }

    /// Panics with `error` and the tail of Chromium's stderr.
    fn fail(&self, error: &str) -> ! {
        panic!("{error}\nchromium stderr (last lines):\n{}", self.process.log_tail())
    }

    /// Sends a command, to the browser (`session` None) or to a session, and returns its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap().insert(id, tx);
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            request["sessionId"] = session.into();
        }
        let sent = self.sink.lock().await.send(Message::Text(request.to_string().into())).await;
        if let Err(e) = sent {
            self.shared.pending.lock().unwrap().remove(&id);
            return Err(format!("{method}: cannot send: {e}"));
        }
        let reply = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(format!("{method}: the DevTools connection closed")),
            Err(_) => {
                self.shared.pending.lock().unwrap().remove(&id);
                return Err(format!("{method}: no reply within {WAIT:?}"));
            }
        };
        match reply.get("error") {
            Some(error) => Err(format!("{method}: {error}")),
            None => Ok(reply["result"].clone()),
        }
    }

    /// Sends a command to the page.
    pub async fn page(&self, method: &str, params: Value) -> Result<Value, String> {
        self.call(Some(&self.session), method, params).await
    }

    /// Evaluates a JavaScript expression in the page (awaiting it if it is a promise) and returns its value
    /// as JSON; a thrown exception is an error.
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let params = json!({ "expression": expression, "returnByValue": true, "awaitPromise": true });
        let result = self.page("Runtime.evaluate", params).await?;
        if let Some(details) = result.get("exceptionDetails") {
            let why = details["exception"]["description"].as_str().or(details["text"].as_str()).unwrap_or("?");
            return Err(format!("`{expression}` threw: {why}"));
        }
        Ok(result["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expression` until `accept` takes its value, within [`WAIT`]. On timeout, panics naming `what`,
    /// with the last value and the value of `context` (a DOM snippet, say) at that moment.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        expression: &str,
        context: &str,
        mut accept: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let last = self.eval(expression).await;
            if let Some(found) = last.as_ref().ok().and_then(&mut accept) {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                let context = match self.eval(context).await {
                    Ok(Value::String(s)) => s,
                    other => format!("{other:?}"),
                };
                panic!("timed out after {WAIT:?} waiting for {what}\nlast value: {last:?}\ncontext:\n{context}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Loads `url` in the page (returning once the navigation is committed, not when the page is ready).
    pub async fn navigate(&self, url: &str) {
        let result = self.page("Page.navigate", json!({ "url": url })).await.unwrap_or_else(|e| self.fail(&e));
        if let Some(error) = result["errorText"].as_str() {
            self.fail(&format!("navigation to {url} failed: {error}"));
        }
    }

    /// Clicks the middle of the element `selector` with the mouse, as a user would: once it is on the page,
    /// scrolled into view and not covered by anything else.
    pub async fn click(&self, selector: &str) {
        let find = format!(
            "(() => {{
                const e = document.querySelector({sel});
                if (!e) return null;
                e.scrollIntoView({{ block: 'center', inline: 'center' }});
                const r = e.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                return r.width > 0 && r.height > 0 && e.contains(document.elementFromPoint(x, y)) ? [x, y] : null;
            }})()",
            sel = js_string(selector)
        );
        let context = format!("document.querySelector({})?.outerHTML ?? 'no such element'", js_string(selector));
        let (x, y) = self
            .wait_for(&format!("{selector} to be clickable"), &find, &context, |v| {
                Some((v[0].as_f64()?, v[1].as_f64()?))
            })
            .await;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let event = json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 });
            self.page("Input.dispatchMouseEvent", event).await.unwrap_or_else(|e| self.fail(&e));
        }
    }

    /// Focuses the input `selector`, clears it and types `text` into it (trusted `input` events, as from a
    /// keyboard or an input method).
    pub async fn type_into(&self, selector: &str, text: &str) {
        let focus = format!(
            "(() => {{
                const e = document.querySelector({sel});
                if (!e) return false;
                e.focus();
                e.select();
                return document.activeElement === e;
            }})()",
            sel = js_string(selector)
        );
        let context = format!("document.querySelector({})?.outerHTML ?? 'no such input'", js_string(selector));
        self.wait_for(&format!("{selector} to take the focus"), &focus, &context, |v| v.as_bool()?.then_some(())).await;
        self.page("Input.insertText", json!({ "text": text })).await.unwrap_or_else(|e| self.fail(&e));
    }

    /// Presses and releases one key (a DOM `key` name with its `code` and Windows key code, e.g. `"Escape"`,
    /// `"Escape"`, 27) in whatever has the focus.
    pub async fn press_key(&self, key: &str, code: &str, key_code: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            let event = json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code });
            self.page("Input.dispatchKeyEvent", event).await.unwrap_or_else(|e| self.fail(&e));
        }
    }

    /// Waits (within [`WAIT`]) for an event `method` of the page and takes it out of the kept events.
    pub async fn take_event(&self, method: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let mut events = self.shared.events.lock().unwrap();
                let found =
                    events.iter().position(|e| e["method"] == method && e["sessionId"] == self.session.as_str());
                if let Some(i) = found {
                    return events.remove(i);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(&format!("no {method} event within {WAIT:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves a PNG of the whole page (not just the viewport) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let metrics = self.page("Page.getLayoutMetrics", json!({})).await.unwrap_or_else(|e| self.fail(&e));
        let size = &metrics["cssContentSize"];
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let params = json!({ "format": "png", "captureBeyondViewport": true, "clip": clip });
        let shot = self.page("Page.captureScreenshot", params).await.unwrap_or_else(|e| self.fail(&e));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data")).expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Saves a PNG of the element `selector` alone, twice its size (a close-up for a human), to `path`.
    pub async fn screenshot_element(&self, selector: &str, path: &Path) {
        let find = format!(
            "(e => e && (r => [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height])\
             (e.getBoundingClientRect()))(document.querySelector({}))",
            js_string(selector)
        );
        let rect = self.eval(&find).await.unwrap_or_else(|e| self.fail(&e));
        let clip = json!({ "x": rect[0], "y": rect[1], "width": rect[2], "height": rect[3], "scale": 2 });
        assert!(clip["width"].as_f64().is_some_and(|w| w > 0.0), "no {selector} to take a picture of: {rect}");
        let params = json!({ "format": "png", "captureBeyondViewport": true, "clip": clip });
        let shot = self.page("Page.captureScreenshot", params).await.unwrap_or_else(|e| self.fail(&e));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data")).expect("base64 screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Uncaught exceptions and `console.error` calls of the page so far, as text.
    pub fn page_errors(&self) -> Vec<String> {
        let events = self.shared.events.lock().unwrap();
        let ours = events.iter().filter(|e| e["sessionId"] == self.session.as_str());
        ours.filter_map(|e| {
            let p = &e["params"];
            match e["method"].as_str()? {
                "Runtime.exceptionThrown" => {
                    let d = &p["exceptionDetails"];
                    Some(d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?").to_owned())
                }
                "Runtime.consoleAPICalled" if p["type"] == "error" => Some(format!("console.error {}", p["args"])),
                _ => None,
            }
        })
        .collect()
    }
}

/// Reads Chromium's stderr until it names its DevTools socket (`DevTools listening on ws://…`), and keeps
/// draining it in a thread afterwards so that the browser never blocks on a full pipe.
async fn devtools_url(process: &mut Process) -> String {
    let stderr = process.child.stderr.take().expect("piped stderr");
    let log = process.log.clone();
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut reader = std::io::BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            line.clear();
            if let Some(url) = text.strip_prefix("DevTools listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
            let mut log = log.lock().unwrap();
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(text);
        }
    });
    match tokio::time::timeout(LAUNCH_WAIT, rx).await {
        Ok(Ok(url)) => url,
        Ok(Err(_)) => {
            let status = process.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            panic!("chromium exited ({status}) before naming its DevTools socket; stderr:\n{}", process.log_tail())
        }
        Err(_) => panic!("chromium named no DevTools socket within {LAUNCH_WAIT:?}; stderr:\n{}", process.log_tail()),
    }
}

/// Hands each reply to the request waiting for it and keeps every event, until the connection closes.
async fn read_messages(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    shared: Arc<Shared>,
) {
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
        match message["id"].as_u64() {
            Some(id) => {
                if let Some(tx) = shared.pending.lock().unwrap().remove(&id) {
                    let _ = tx.send(message);
                }
            }
            None => shared.events.lock().unwrap().push(message),
        }
    }
}

/// `s` as a JavaScript string literal (JSON's string syntax is a subset of JavaScript's).
pub fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// Encodes standard base64 (padded), as CDP takes binary data.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |w, (i, &b)| w | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((word >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (with or without padding), as CDP sends binary data.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0u32);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}
