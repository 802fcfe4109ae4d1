//! 12,000 meters in 12 regions stay responsive (issue 9 §4): 12 regions × 4 simulated concentrators × 250
//! meters. The live snapshot (about 2 MB of JSON) goes zlib-compressed in a binary frame to a client that
//! asks (`?z=1`, as the page does where `DecompressionStream` exists) and as text to one that does not; the
//! page builds meter rows only for an opened device; and headless Chromium sees no long task (the
//! `longtask` PerformanceObserver: main-thread work of 50 ms or more) over 100 ms while the page loads the
//! snapshot, while every device updates twice, and while one device's 250 rows are opened and updated. The
//! worst long task seen is printed (`hmi_scale worst_long_task_ms=…`).

mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::browser::Browser;
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const REGIONS: usize = 12;
const PER_REGION: usize = 4;
const METERS: usize = 250;

fn config() -> String {
    let mut c = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[simulator]\nenabled = true\nspeed = 60.0\nseed = 7\n\n\
         [defaults]\ntimeout = \"1s\"\nretries = 0\n",
    );
    for r in 0..REGIONS {
        c += &format!("\n[[region]]\nid = \"r{r:02}\"\nname = \"第{}片区\"\n", r + 1);
        for d in 0..PER_REGION {
            c += &format!(
                "\n[[region.concentrator]]\nid = \"r{r:02}-c{d}\"\naddress = \"127.0.0.1:0\"\n\
                 model = \"ww-concentrator-v1\"\ncycle = \"3s\"\n\
                 meters = {{ prefix = \"R{r:02}C{d}-\", first = 1, count = {METERS}, width = 4 }}\n"
            );
        }
    }
    c
}

/// The first data frame of `/ws{query}`: text, or binary.
async fn first_frame(server: &TestServer, cookie: &str, query: &str) -> Message {
    let mut request = format!("ws://{}/ws{query}", server.app.addr).into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut stream, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), stream.next()).await.expect("a frame") {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
            Some(Ok(_)) => continue,
            other => panic!("socket failed: {other:?}"),
        }
    }
}

/// The one-minute load average and the number of cores.
fn load_and_cores() -> (f64, usize) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0);
    (load, std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn meters_in(snapshot: &Value) -> usize {
    snapshot["devices"].as_array().unwrap().iter().map(|d| d["meters"].as_array().map_or(0, Vec::len)).sum()
}

const LONG_TASKS: &str = "window.__longTasks = []; try { new PerformanceObserver((list) => { \
     for (const e of list.getEntries()) window.__longTasks.push(Math.round(e.duration)); \
     }).observe({ type: 'longtask', buffered: true }); } catch (e) { window.__longTasks = null; } \
     window.__loaf = []; try { new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.duration > 50) window.__loaf.push([Math.round(e.duration), Math.round(e.renderStart ? e.startTime + e.duration - e.renderStart : 0), Math.round(e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0), (e.scripts || []).map(s => [s.invoker, s.sourceFunctionName, Math.round(s.duration), Math.round(s.forcedStyleAndLayoutDuration || 0)])]); }).observe({ type: 'long-animation-frame', buffered: true }); } catch (e) {}";

/// The page's state: long tasks so far, live sequence number, cards, meter rows.
const STATE: &str = "({ long: window.__longTasks, seq: Number(document.body.dataset.seq ?? -1), \
     cards: document.querySelectorAll('[data-device]').length, rows: document.querySelectorAll('[data-meter]').length, \
     conn: document.querySelector('#conn')?.dataset.state ?? null })";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_meters_load_compressed_and_update_without_long_tasks() {
    let server = start(&config()).await;
    let admin = server.admin().await;

    // Every concentrator has been read once: the snapshot holds all 12,000 meters.
    let total = REGIONS * PER_REGION * METERS;
    let text = eventually(std::time::Duration::from_secs(60), "every meter read once", || async {
        match first_frame(&server, &admin, "").await {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let read = v["devices"].as_array()?.iter().all(|d| d["comm"]["last_success"].is_number());
                (v["type"] == "snapshot" && meters_in(&v) == total && read).then(|| t.to_string())
            }
            other => panic!("without z=1 the snapshot is text: {other:?}"),
        }
    })
    .await;
    let Message::Binary(zipped) = first_frame(&server, &admin, "?z=1").await else {
        panic!("with z=1 the snapshot is a binary frame")
    };
    let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(&zipped).expect("zlib");
    let snapshot: Value = serde_json::from_slice(&inflated).unwrap();
    assert_eq!((snapshot["type"].as_str(), meters_in(&snapshot)), (Some("snapshot"), total));
    eprintln!("hmi_scale snapshot_json_bytes={} compressed_bytes={}", text.len(), zipped.len());
    assert!(zipped.len() * 4 < text.len(), "compressed {} of {} bytes", zipped.len(), text.len());

    let browser = Browser::launch().await;
    browser
        .page("Page.addScriptToEvaluateOnNewDocument", json!({ "source": LONG_TASKS }))
        .await
        .expect("long-task observer installed");
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            v.as_bool()?.then_some(())
        })
        .await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#submit").await;
    let cards = REGIONS * PER_REGION;
    let loaded = browser
        .wait_for("the overview with every device", STATE, "location.href", |v| {
            (v["cards"].as_u64()? == cards as u64 && v["seq"].as_i64()? >= 0 && v["conn"] == "live").then(|| v.clone())
        })
        .await;
    assert!(loaded["long"].is_array(), "the browser reports long tasks: {loaded}");
    eprintln!("hmi_scale after load: {}", loaded["long"]);
    assert_eq!(loaded["rows"], 0, "no meter row is built while every device is closed: {loaded}");

    // Every device updates twice.
    let seq0 = loaded["seq"].as_i64().unwrap();
    browser
        .wait_for("two cycles of updates", STATE, "location.href", |v| {
            (v["seq"].as_i64()? >= seq0 + 2 * cards as i64).then_some(())
        })
        .await;

    eprintln!("hmi_scale after updates: {}", browser.eval("JSON.stringify(window.__longTasks)").await.unwrap());
    // One device opened: its 250 rows, and they update.
    browser.click("[data-device=\"r05-c2\"] .meters-toggle").await;
    let opened = browser
        .wait_for("250 rows of the opened device", STATE, "location.href", |v| {
            (v["rows"].as_u64()? == METERS as u64).then(|| v.clone())
        })
        .await;
    let seq1 = opened["seq"].as_i64().unwrap();
    let last = browser
        .wait_for("a cycle with the device open", STATE, "location.href", |v| {
            (v["seq"].as_i64()? >= seq1 + cards as i64).then(|| v.clone())
        })
        .await;
    assert_eq!(last["rows"], METERS as u64, "only the opened device has rows: {last}");

    let long: Vec<u64> = last["long"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
    let worst = long.iter().copied().max().unwrap_or(0);
    eprintln!("hmi_scale long_tasks={} worst_long_task_ms={worst} all={long:?}", long.len());
    // Where the time went: long animation frames over 50 ms, [duration, rendering, style and layout, scripts].
    eprintln!("hmi_scale long_animation_frames {}", browser.eval("JSON.stringify(window.__loaf)").await.unwrap());
    // The 100 ms bound holds on a quiet machine. On a contended one (more runnable threads than cores, as when
    // other builds share it) a task is stretched by waiting for a core, so the run says CONTENDED and only
    // the gross failure is checked: building every meter row (12,000 rows) takes seconds, not 1.
    let (load, cores) = load_and_cores();
    if load <= cores as f64 {
        assert!(worst < 100, "a long task of {worst} ms (all: {long:?}; load {load:.1} on {cores} cores)");
    } else {
        eprintln!("hmi_scale CONTENDED load={load:.1} cores={cores}: 100 ms bound not judged, worst {worst} ms");
        assert!(worst < 1000, "a long task of {worst} ms even for a contended machine (all: {long:?})");
    }
    assert_eq!(browser.page_errors(), Vec::<String>::new());
    server.app.shutdown().await;
}
