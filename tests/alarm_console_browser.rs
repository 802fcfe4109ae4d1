//! The alarm console in a real headless Chromium against the whole server and its simulator (issue 9 §4, the
//! "Done when"): a chlorine breach appears on the banner with its priority and sounds; silence stops the tone
//! but leaves the alarm unacknowledged, and the next alarm sounds again; a flood is summarised while the top
//! alarm stays shown; the operator acknowledges one alarm with a comment and shelves another on `/alarms`; the
//! journal view finds the acknowledgement; both languages; a monitor and a phone (390 px: no sideways
//! scrolling, 44 px tap targets); a crew member sees the alarms with no action buttons and the API answers
//! 403; the page says "stalled" while the server process is frozen (SIGSTOP), and "live" again after.
//!
//! Hooks read: `#alarm-banner` (`data-live`, `data-sounding-priority`, `data-sound`), `#ab-top`
//! (`data-priority`, `data-alarm`), `[data-count-priority]` (`data-n`), `#ab-flood`, `#rows tr[data-alarm]`
//! (`data-state`), `input.sel`, `button[data-action]`, `#conn[data-state]`. Screenshots go to `target/`.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use sim::modbus::ModbusFault;
use support::browser::{js_string, Browser};
use support::*;

const LOW: &str = "quality_low~east-wq~free_chlorine";
const LOST: &str = "comm_lost~east-c1~";

fn target_dir() -> PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}

/// What the banner shows, as JavaScript.
const BANNER: &str = "(() => { const b = document.querySelector('#alarm-banner'); if (!b) return null;
    const top = b.querySelector('#ab-top'); const flood = b.querySelector('#ab-flood');
    return { live: b.dataset.live, top: top.dataset.priority, alarm: top.dataset.alarm, text: top.textContent,
      counts: Object.fromEntries([...b.querySelectorAll('[data-count-priority]')].map(c => [c.dataset.countPriority, +c.dataset.n])),
      sounding: b.dataset.soundingPriority, sound: b.dataset.sound,
      flood: flood.hidden ? null : flood.textContent, floodN: +flood.dataset.n,
      list: b.querySelector('#ab-list').textContent, first: document.body.firstElementChild === b }; })()";

/// The rows of the standing alarms, as JavaScript.
const ROWS: &str = "[...document.querySelectorAll('#rows tr')].map(r => ({ id: r.dataset.alarm, state: r.dataset.state,
    text: r.textContent, sel: !!r.querySelector('input.sel'),
    actions: [...r.querySelectorAll('button[data-action]')].map(b => b.dataset.action) }))";

/// Layout at the present viewport: sideways overflow, elements sticking out, tap targets under 44 px, and
/// whether the standing alarms come before the journal.
const LAYOUT: &str = "(() => {
    const shown = e => !!e && e.checkVisibility() && (r => r.width > 0 && r.height > 0)(e.getBoundingClientRect());
    const W = Math.min(innerWidth, screen.width);
    const out = [...document.querySelectorAll('body *')].filter(e => shown(e) && (r => r.left < -0.5 || r.right > W + 0.5)(e.getBoundingClientRect()))
      .filter(e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return false; return true; })
      .map(e => (e.id || e.className || e.tagName) + ' ' + Math.round(e.getBoundingClientRect().left) + '..' + Math.round(e.getBoundingClientRect().right));
    const small = [...document.querySelectorAll('a, button, select, input, textarea')].filter(shown)
      .filter(e => e.getBoundingClientRect().height < 43.5 || e.getBoundingClientRect().width < 43.5)
      .map(e => (e.id || e.className || e.tagName) + ' ' + Math.round(e.getBoundingClientRect().width) + 'x' + Math.round(e.getBoundingClientRect().height));
    const standing = document.querySelector('#standing'), journal = document.querySelector('#journal-section');
    return { inner: innerWidth, screen: screen.width, page: document.documentElement.scrollWidth, out: out, small: small,
      alarmsFirst: !standing || !journal || standing.getBoundingClientRect().top < journal.getBoundingClientRect().top,
      lang: document.documentElement.lang };
})()";

async fn sign_in_at(browser: &Browser, base: &str, username: &str, password: &str) {
    browser.navigate(&format!("{base}/login")).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            v.as_bool()?.then_some(())
        })
        .await;
    browser.type_into("#username", username).await;
    browser.type_into("#password", password).await;
    browser.click("#submit").await;
    browser.wait_for("the overview", "location.pathname", "location.href", |v| (v == "/").then_some(())).await;
}

/// Opens `/alarms` and waits until it knows the user and the banner is live.
async fn open_alarms(browser: &Browser, base: &str) {
    browser.navigate(&format!("{base}/alarms")).await;
    browser
        .wait_for(
            "the alarm page, ready and live",
            "[document.body.dataset.ready ?? null, document.querySelector('#alarm-banner')?.dataset.live ?? null]",
            "document.body.outerHTML.slice(0, 2000)",
            |v| (v[0] == "1" && v[1] == "live").then_some(()),
        )
        .await;
}

async fn banner_until(browser: &Browser, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    browser
        .wait_for(what, BANNER, "document.querySelector('#alarm-banner')?.outerHTML ?? 'no banner'", |v| {
            accept(v).then(|| v.clone())
        })
        .await
}

async fn rows_until(browser: &Browser, what: &str, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    browser
        .wait_for(what, ROWS, "document.querySelector('#rows')?.outerHTML ?? 'no rows'", |v| {
            let rows = v.as_array()?;
            accept(rows).then(|| rows.clone())
        })
        .await
}

fn row<'a>(rows: &'a [Value], id: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["id"] == id)
}

/// The village with one more concentrator, of a model that marks a slot it has no reading for (so its meters
/// go comm-lost one by one when the simulator silences them, as in `tests/meter_comm.rs`).
fn village_with_ten_meters_that_can_say_no_data() -> String {
    let dir = temp_dir("flood-models");
    let model = "model = \"acme-nd\"\nkind = \"concentrator\"\n[meters]\nfunction = 3\nbase = 0\nstride = 4\n\
                 volume = { offset = 0, type = \"u32\", order = \"ABCD\", scale = 0.001 }\n\
                 status = { offset = 2, type = \"u16\" }\nno_data = 0xFFFFFFFF\n";
    std::fs::write(dir.join("nd.toml"), model).unwrap();
    VILLAGE.replacen("[server]\n", &format!("[server]\ndevices_dir = \"{}\"\n", dir.display()), 1)
        + r#"
[[region.concentrator]]
id = "west-nd"
address = "127.0.0.1:0"
model = "acme-nd"
cycle = "300ms"
meters = { prefix = "WN-", first = 1, count = 10 }
"# + NO_METER_STATUS_ALARMS
}

async fn create_user(server: &TestServer, admin: &str, name: &str, role: &str) -> String {
    let body = json!({ "username": name, "password": "a long enough password", "role": role }).to_string();
    let r = http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", admin)], &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.login(name, "a long enough password").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_is_on_the_banner_and_the_operator_acknowledges_and_shelves_on_a_monitor_and_a_phone() {
    let browser = Browser::launch().await;
    let server = start(&village_with_ten_meters_that_can_say_no_data()).await;
    let admin = server.admin().await;
    create_user(&server, &admin, "duty1", "operator").await;
    sign_in_at(&browser, &server.base, "duty1", "a long enough password").await;
    browser.set_viewport(1920, 1080, false).await;
    open_alarms(&browser, &server.base).await;
    let quiet = banner_until(&browser, "a quiet banner", |v| v["top"] == "none").await;
    assert_eq!((quiet["first"].as_bool(), quiet["sounding"].as_str()), (Some(true), Some("")), "{quiet}");
    // A click anywhere lets the page make sound (browsers allow audio only after a user gesture).
    browser.click("h1").await;

    // 1. A chlorine breach: on the banner with its priority, sounding.
    server
        .sim()
        .set_fault("east-wq", ModbusFault { values: [("free_chlorine".into(), 0.1)].into(), ..ModbusFault::default() })
        .unwrap();
    let b = banner_until(&browser, "the breach on the banner", |v| v["alarm"] == LOW).await;
    assert_eq!((b["top"].as_str(), b["counts"]["high"].as_u64()), (Some("high"), Some(1)), "{b}");
    assert!(b["text"].as_str().unwrap().contains("水质低于下限"), "{b}");
    assert_eq!((b["sounding"].as_str(), b["sound"].as_str()), (Some("high"), Some("on")), "{b}");

    // 2. Silence is not acknowledge: the tone stops, the alarm stays unacknowledged; the next alarm sounds.
    browser.click("#ab-silence").await;
    let b = banner_until(&browser, "silenced", |v| v["sound"] == "silenced").await;
    assert_eq!((b["sounding"].as_str(), b["alarm"].as_str()), (Some(""), Some(LOW)), "{b}");
    let rows = rows_until(&browser, "the breach in the table", |r| row(r, LOW).is_some()).await;
    assert_eq!(row(&rows, LOW).unwrap()["state"], "unacknowledged");
    server.sim().set_fault("east-c1", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    let b = banner_until(&browser, "the comm-lost alarm sounding again", |v| v["counts"]["high"] == 2).await;
    assert_eq!((b["sounding"].as_str(), b["sound"].as_str()), (Some("high"), Some("on")), "{b}");

    // 3. A flood (nine of the ten meters behind west-nd fall silent, the tenth keeps it talking: 11 alarms in 10 minutes) is summarised; the top
    // alarm stays on the banner.
    let silent: Vec<u16> = (0..9).collect();
    server.sim().set_fault("west-nd", ModbusFault { silent_meters: silent, ..ModbusFault::default() }).unwrap();
    let b = banner_until(&browser, "the flood summary", |v| v["flood"].is_string()).await;
    assert!(b["floodN"].as_u64().unwrap() >= 10, "{b}");
    assert!(b["flood"].as_str().unwrap().contains("分钟"), "{b}");
    assert_eq!(b["top"], "high", "the top-priority alarm is still shown: {b}");

    // 4. The operator selects the breach and acknowledges it with a comment.
    browser.click(&format!("input.sel[data-alarm=\"{LOW}\"]")).await;
    browser.type_into("#ack-comment", "加氯泵已重启").await;
    browser.click("#ack-selected").await;
    rows_until(&browser, "the breach acknowledged", |r| row(r, LOW).is_some_and(|a| a["state"] == "acknowledged"))
        .await;
    let list = server.get("/api/alarms", &admin).await.json();
    let acked = list.as_array().unwrap().iter().find(|a| a["key"]["device"] == "east-wq").unwrap();
    assert_eq!((acked["by"].as_str(), acked["comment"].as_str()), (Some("duty1"), Some("加氯泵已重启")), "{acked}");

    // 5. And shelves the comm-lost alarm for 30 minutes with a reason.
    browser.click(&format!("button[data-action=\"shelve\"][data-alarm=\"{LOST}\"]")).await;
    browser.eval("document.querySelector('#ad-minutes').value = '30'").await.unwrap();
    browser.type_into("#ad-text", "外勤已到现场").await;
    browser.click("#ad-confirm").await;
    let rows =
        rows_until(&browser, "comm lost shelved", |r| row(r, LOST).is_some_and(|a| a["state"] == "shelved")).await;
    assert!(row(&rows, LOST).unwrap()["actions"].as_array().unwrap().contains(&json!("unshelve")), "{rows:?}");
    let b = banner_until(&browser, "neither on the banner", |v| {
        v["alarm"] != LOW && v["alarm"] != LOST && v["counts"]["high"] == 0
    })
    .await;
    assert_ne!(b["top"], "none", "the meters are still unacknowledged: {b}");

    // 6. The journal view finds the acknowledgement by state and device.
    browser.type_into("#j-device", "east-wq").await;
    browser.eval("document.querySelector('#j-state').value = 'acknowledged'").await.unwrap();
    browser.click("#j-search").await;
    let journal = browser
        .wait_for(
            "the acknowledgement in the journal view",
            "[...document.querySelectorAll('#journal li')].map(l => [l.dataset.what, l.textContent])",
            "document.querySelector('#journal-section').outerHTML",
            |v| {
                let items = v.as_array()?;
                (items.len() == 1 && items[0][0] == "acknowledged").then(|| items[0][1].clone())
            },
        )
        .await;
    assert!(journal.as_str().unwrap().contains("加氯泵已重启"), "{journal}");

    // 7. Both languages, a monitor and a phone.
    for (width, height, lang) in [(1920, 1080, "zh"), (1920, 1080, "en"), (390, 844, "en"), (390, 844, "zh")] {
        let at = format!("{width}x{height} {lang}");
        browser.set_viewport(width, height, width < 600).await;
        browser.click(&format!(".lang-switch button[data-lang=\"{lang}\"]")).await;
        let want_list = if lang == "zh" { "报警列表" } else { "Alarm list" };
        banner_until(&browser, &format!("the banner in {lang}"), |v| v["list"] == want_list).await;
        let layout: Value = browser
            .wait_for(&format!("the layout at {at}"), LAYOUT, "''", |v| (v["screen"] == width).then(|| v.clone()))
            .await;
        browser.screenshot(&target_dir().join(format!("alarms-{width}-{lang}.png"))).await;
        assert_eq!(layout["lang"], if lang == "zh" { "zh-CN" } else { "en" }, "{at}: {layout}");
        assert!(layout["page"].as_u64() <= layout["inner"].as_u64(), "{at}: the page scrolls sideways: {layout}");
        assert_eq!(layout["out"], json!([]), "{at}: elements stick out: {layout}");
        assert_eq!(layout["alarmsFirst"], true, "{at}: {layout}");
        if width < 600 {
            assert_eq!(layout["small"], json!([]), "{at}: tap targets under 44 px: {layout}");
        }
        let acked = if lang == "zh" { "已确认" } else { "Acknowledged" };
        rows_until(&browser, &format!("the rows in {lang}"), |r| {
            row(r, LOW).is_some_and(|a| a["text"].as_str().unwrap_or("").contains(acked))
        })
        .await;
    }
    // The overview page carries the banner too, and still fits a phone.
    browser.navigate(&format!("{}/", server.base)).await;
    let b = banner_until(&browser, "the banner on the overview", |v| v["live"] == "live" && v["top"] != "none").await;
    assert_eq!(b["first"], true, "{b}");
    let layout: Value = browser.wait_for("the overview layout", LAYOUT, "''", |v| Some(v.clone())).await;
    browser.screenshot(&target_dir().join("alarms-overview-390-zh.png")).await;
    assert!(layout["page"].as_u64() <= layout["inner"].as_u64(), "the overview scrolls sideways: {layout}");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crew_member_sees_alarms_without_action_buttons_and_the_api_refuses_them() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let crew = create_user(&server, &admin, "crew1", "crew").await;
    server
        .sim()
        .set_fault("east-wq", ModbusFault { values: [("free_chlorine".into(), 0.1)].into(), ..ModbusFault::default() })
        .unwrap();
    sign_in_at(&browser, &server.base, "crew1", "a long enough password").await;
    browser.set_viewport(390, 844, true).await;
    open_alarms(&browser, &server.base).await;
    let rows = rows_until(&browser, "the breach listed for the crew", |r| row(r, LOW).is_some()).await;
    let r = row(&rows, LOW).unwrap();
    assert_eq!((r["sel"].as_bool(), r["actions"].clone()), (Some(false), json!([])), "no buttons: {r}");
    let hidden = browser.eval("document.querySelector('#bulk').hidden").await.unwrap();
    assert_eq!(hidden, true, "no acknowledge bar for a crew");
    banner_until(&browser, "the breach on the crew's banner", |v| v["alarm"] == LOW).await;
    browser.screenshot(&target_dir().join("alarms-crew-390.png")).await;

    // The API refuses the crew, one alarm or several, and audits it.
    let headers = [("content-type", "application/json"), ("cookie", crew.as_str())];
    let r = http(&server.base, "POST", &format!("/api/alarms/{LOW}/ack"), &headers, "{}").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(&server.base, "POST", "/api/alarms/ack", &headers, &json!({ "ids": [LOW] }).to_string()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(&server.base, "POST", &format!("/api/alarms/{LOW}/shelve"), &headers, r#"{"minutes":5}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let audit = server.get("/api/audit?actor=crew1", &admin).await.json();
    let refused = audit.as_array().unwrap().iter().filter(|a| a["action"] == "alarm.acknowledge" && a["ok"] == false);
    assert!(refused.count() >= 2, "{audit}");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// Sends `signal` (`-STOP`, `-CONT`) to the server process.
fn signal(process: &ServerProcess, signal: &str) {
    let ok = std::process::Command::new("kill").args([signal, &process.child.id().to_string()]).status().unwrap();
    assert!(ok.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_say_stalled_while_the_server_is_frozen_and_live_after() {
    let dir = temp_dir("stall");
    let config = dir.join("waterworks.toml");
    std::fs::write(&config, format!("{VILLAGE}\n[live]\nheartbeat = \"500ms\"\n")).unwrap();
    let server = ServerProcess::run(&config, dir.join("data"));
    let browser = Browser::launch().await;
    sign_in_at(&browser, &server.base, "admin", ADMIN_PASSWORD).await;
    let state = "[document.querySelector('#conn')?.dataset.state ?? null, \
                 document.querySelector('#alarm-banner')?.dataset.live ?? null, \
                 document.querySelector('#conn .conn-text')?.textContent ?? null]";
    let context = "document.querySelector('header')?.outerHTML ?? ''";
    browser.wait_for("live", state, context, |v| (v[0] == "live" && v[1] == "live").then_some(())).await;

    signal(&server, "-STOP");
    // The socket stays open (the kernel keeps it), but nothing arrives: stalled within 2.5 heartbeats.
    let text = browser
        .wait_for("stalled", state, context, |v| (v[0] == "stalled" && v[1] == "stalled").then(|| v[2].clone()))
        .await;
    assert_eq!(text, "数据流停滞", "{text}");
    browser.screenshot(&target_dir().join("alarms-stalled.png")).await;
    signal(&server, "-CONT");
    browser.wait_for("live again", state, context, |v| (v[0] == "live" && v[1] == "live").then_some(())).await;
    let errors = browser.page_errors();
    assert_eq!(errors, Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    let _ = js_string("");
}
