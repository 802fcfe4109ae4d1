//! The HMI in a real headless Chromium, driven over the DevTools protocol against the whole server and its
//! simulator: without a session the page lands on the login form; a user signs in; the overview shows live
//! values that keep changing; a silent device is flagged comm-lost on its card and recovers; an out-of-limit
//! water-quality value is flagged; the language switch turns the labels English. A second scenario commands a
//! remote valve through the confirmation dialog (confirmed, refused, lost, stuck in fault), shows a device on
//! its backup path, and checks that a crew member sees the valve without buttons. Both leave screenshots in
//! `target/` for a human to look at.
//!
//! It reads the page only through its stable hooks (`data-device`, `data-comm-lost`, `data-param`,
//! `data-meter`, `.progress`, `#conn[data-state]`, `body[data-seq]`, `data-valve-state`, `data-action`,
//! `data-command`, `data-last-result`, `#valve-dialog`), never through layout (one styling check aside: the
//! flashing of a valve fault).

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use sim::modbus::ModbusFault;
use support::browser::{base64_encode, js_string, Browser};
use support::*;

/// `document.querySelector(selector)` as JavaScript.
fn q(selector: &str) -> String {
    format!("document.querySelector({})", js_string(selector))
}

/// The card of device `id`, as JavaScript.
fn card(id: &str) -> String {
    q(&format!("[data-device=\"{id}\"]"))
}

/// The markup of device `id`'s card, as JavaScript: the context of a failed expectation about it.
fn card_html(id: &str) -> String {
    format!("{}?.outerHTML ?? 'no card for {id}'", card(id))
}

/// Where the screenshots go: the `target/` directory this test was built in (CARGO_TARGET_DIR if set).
fn target_dir() -> PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}

/// A volume as the HMI shows it: digits, a point, exactly three decimals.
fn is_volume(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    text.split_once('.').is_some_and(|(whole, fraction)| digits(whole) && digits(fraction) && fraction.len() == 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hmi_shows_live_values_and_a_flagged_comm_lost_device() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;

    // 1. Without a session, the overview sends the browser to the login page.
    browser.navigate(&format!("{}/", server.base)).await;
    browser
        .wait_for(
            "the login page",
            "[location.pathname, !!document.querySelector('#login-form')]",
            "document.documentElement.outerHTML.slice(0, 3000)",
            |v| (v[0] == "/login" && v[1] == true).then_some(()),
        )
        .await;

    // 2. A user signs in through the form.
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    let typed = browser.eval("['#username', '#password'].map(s => document.querySelector(s).value)").await.unwrap();
    assert_eq!(typed, serde_json::json!(["admin", ADMIN_PASSWORD]), "what the form holds");
    browser.click("#submit").await;
    browser
        .wait_for(
            "the overview with a live connection",
            "[location.pathname, document.querySelector('#conn')?.dataset.state ?? null]",
            "location.href + '\\nerror: ' + (document.querySelector('#error')?.textContent ?? '') + '\\n' + \
             (document.querySelector('#conn')?.outerHTML ?? 'no #conn')",
            |v| (v[0] == "/" && v[1] == "live").then_some(()),
        )
        .await;
    browser
        .wait_for("the user's name in the header", "document.querySelector('#user-name').textContent", "''", |v| {
            (v == "admin").then_some(())
        })
        .await;

    // 3. Live values: a chlorine reading in its usual range, a full concentrator cycle, a meter volume.
    let chlorine = format!("{}?.querySelector('[data-param=\"free_chlorine\"] .value')?.textContent", card("east-wq"));
    let value: f64 = browser
        .wait_for("a free chlorine value on east-wq", &chlorine, &card_html("east-wq"), |v| v.as_str()?.parse().ok())
        .await;
    assert!(
        (0.3..=0.8).contains(&value),
        "free chlorine {value}:\n{}",
        browser.eval(&card_html("east-wq")).await.unwrap()
    );

    let progress =
        format!("(p => p && [p.dataset.read, p.dataset.expected])({}?.querySelector('.progress'))", card("east-c1"));
    browser
        .wait_for("east-c1 reading 12 of 12 meters", &progress, &card_html("east-c1"), |v| {
            (v[0] == "12" && v[1] == "12").then_some(())
        })
        .await;

    // Meter rows are built only when the table is opened (issue 9 §4).
    browser.click("[data-device=\"east-c1\"] .meters-toggle").await;
    let meter = format!(
        "(r => r && {{ volume: r.querySelector('.volume').textContent, ts: r.querySelector('time').getAttribute('datetime'), \
         seq: Number(document.body.dataset.seq) }})({})",
        q("[data-meter=\"E1-0001\"]")
    );
    let first: Value = browser
        .wait_for("a volume of meter E1-0001", &meter, &card_html("east-c1"), |v| {
            is_volume(v["volume"].as_str()?).then(|| v.clone())
        })
        .await;

    // ... and they change: a later reading of the same meter, under a higher sequence number.
    let later: Value = browser
        .wait_for("a newer reading of meter E1-0001", &meter, &card_html("east-c1"), |v| {
            let newer = v["ts"] != first["ts"] && v["seq"].as_u64()? > first["seq"].as_u64()?;
            (newer && is_volume(v["volume"].as_str()?)).then(|| v.clone())
        })
        .await;
    let volume = |v: &Value| v["volume"].as_str().unwrap().parse::<f64>().unwrap();
    assert!(volume(&later) >= volume(&first), "the volume went down: {first} then {later}");

    // 4. A silent concentrator is flagged on its card, visibly; the others are not.
    server.sim().set_fault("east-c2", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    let comm = |id: &str| {
        format!(
            "(c => c && {{ lost: c.dataset.commLost, badge: c.querySelector('.lost-badge').textContent.trim(), \
             shown: c.querySelector('.lost-badge').checkVisibility() }})({})",
            card(id)
        )
    };
    let lost: Value = browser
        .wait_for("east-c2 flagged comm-lost", &comm("east-c2"), &card_html("east-c2"), |v| {
            (v["lost"] == "true").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("east-c2")).await.unwrap();
    assert_eq!((&lost["badge"], &lost["shown"]), (&Value::from("通信中断"), &Value::from(true)), "badge:\n{html}");
    for other in ["east-c1", "east-wq", "west-c1"] {
        let state = browser.eval(&comm(other)).await.unwrap();
        let html = browser.eval(&card_html(other)).await.unwrap();
        assert_eq!((&state["lost"], &state["shown"]), (&Value::from("false"), &Value::from(false)), "{other}:\n{html}");
    }

    // 5. A chlorine value below its low limit is flagged on its row.
    let forced = ModbusFault { values: [("free_chlorine".into(), 0.1)].into(), ..ModbusFault::default() };
    server.sim().set_fault("east-wq", forced).unwrap();
    let row = format!(
        "(r => r && {{ out: r.classList.contains('out-of-limit'), breach: r.dataset.breach ?? null, \
         value: r.querySelector('.value').textContent, text: r.querySelector('.breach').textContent, \
         shown: r.querySelector('.breach').checkVisibility() }})({}?.querySelector('[data-param=\"free_chlorine\"]'))",
        card("east-wq")
    );
    let flagged: Value = browser
        .wait_for("free chlorine flagged below its limit", &row, &card_html("east-wq"), |v| {
            (v["out"] == true && v["breach"] == "low").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("east-wq")).await.unwrap();
    assert_eq!(
        (&flagged["value"], &flagged["text"], &flagged["shown"]),
        (&Value::from("0.100"), &Value::from("低于下限 0.3"), &Value::from(true)),
        "free chlorine row:\n{html}"
    );
    browser.screenshot(&target_dir().join("hmi-screenshot-zh.png")).await;

    // 6. Revived, the concentrator loses its flag.
    server.sim().set_fault("east-c2", ModbusFault::default()).unwrap();
    browser
        .wait_for("east-c2 no longer comm-lost", &comm("east-c2"), &card_html("east-c2"), |v| {
            (v["lost"] == "false" && v["shown"] == false).then_some(())
        })
        .await;

    // 7. The language switch turns the page English, cards included.
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    let labels = format!(
        "({{ lang: document.documentElement.lang, title: document.querySelector('h1.brand').textContent, \
         conn: document.querySelector('#conn .conn-text').textContent, \
         badge: {c2}?.querySelector('.lost-badge').textContent, \
         param: {wq}?.querySelector('[data-param=\"free_chlorine\"] .param').textContent, \
         breach: {wq}?.querySelector('[data-param=\"free_chlorine\"] .breach').textContent }})",
        c2 = card("east-c2"),
        wq = card("east-wq")
    );
    let english: Value = browser
        .wait_for("English labels", &labels, "document.querySelector('header.topbar').outerHTML", |v| {
            (v["lang"] == "en").then(|| v.clone())
        })
        .await;
    assert_eq!(
        english,
        serde_json::json!({
            "lang": "en",
            "title": "Waterworks SCADA",
            "conn": "Live",
            "badge": "COMM LOST",
            "param": "Free chlorine",
            "breach": "Below low limit 0.3",
        }),
        "{}",
        browser.eval(&card_html("east-wq")).await.unwrap()
    );

    // 8. A picture for a human, then no page errors along the way.
    browser.screenshot(&target_dir().join("hmi-screenshot.png")).await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// The west region's concentrator `west-c2` (added by [`village_with_valve`]) as a simulator of its own, so
/// that its backup path has something to reach.
const BACKUP_SHAPE: &str = r#"
[[region]]
id = "west"
name = "西村"

[[region.concentrator]]
id = "west-c2"
address = "127.0.0.1:1"
model = "ww-concentrator-v1"
cycle = "300ms"
meters = { prefix = "W2-", first = 1, count = 4 }
"#;

/// The test village plus, in the west region, a remote valve quick enough for a test (the simulated valve
/// travels in 150 ms; a command reads it back every 40 ms for at most 1 s), and a concentrator `west-c2`
/// whose backup path is `backup`: silence its primary and it moves there after one failure.
fn village_with_valve(backup: &str) -> String {
    VILLAGE.replace("seed = 42", "seed = 42\nvalve_travel = \"150ms\"")
        + &format!(
            r#"
[[region.valve]]
id = "west-v1"
name = "西村总阀"
address = "127.0.0.1:0"
model = "ww-valve-v1"
poll = "200ms"
timeout = "250ms"
confirm_timeout = "1s"
confirm_poll = "40ms"

[[region.concentrator]]
id = "west-c2"
address = "127.0.0.1:0"
backup = ["{backup}"]
failover_after = 1
probe_every = 1000
model = "ww-concentrator-v1"
cycle = "300ms"
meters = {{ prefix = "W2-", first = 1, count = 4 }}
"#
        )
}

/// Signs `username` in through the login form and waits for the overview with a live connection and its
/// first snapshot applied.
async fn sign_in(browser: &Browser, server: &TestServer, username: &str, password: &str) {
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            v.as_bool()?.then_some(())
        })
        .await;
    browser.type_into("#username", username).await;
    browser.type_into("#password", password).await;
    browser.click("#submit").await;
    browser
        .wait_for(
            &format!("the overview, live, for {username}"),
            "[location.pathname, document.querySelector('#conn')?.dataset.state ?? null, \
             document.querySelector('#user-name')?.textContent ?? null, document.body.dataset.seq ?? null]",
            "location.href + '\\nerror: ' + (document.querySelector('#error')?.textContent ?? '')",
            |v| (v[0] == "/" && v[1] == "live" && v[2] == username && v[3].is_string()).then_some(()),
        )
        .await;
}

/// What valve card `id` shows, as JavaScript: state, buttons (`true` when disabled, `null` when absent), this
/// page's command in flight or its error, the last command, the path.
fn valve(id: &str) -> String {
    format!(
        "(c => c && {{ state: c.dataset.valveState ?? null, command: c.dataset.command ?? null, \
         result: c.dataset.lastResult ?? null, stateText: c.querySelector('.valve-state-text').textContent, \
         open: c.querySelector('[data-action=\"open\"]')?.disabled ?? null, \
         close: c.querySelector('[data-action=\"close\"]')?.disabled ?? null, \
         reset: (b => b ? !b.hidden : null)(c.querySelector('[data-action=\"reset\"]')), \
         buttons: c.querySelectorAll('[data-action], button.valve-btn').length, \
         feedback: (f => f.checkVisibility() ? f.textContent : null)(c.querySelector('.valve-feedback')), \
         feedbackError: c.querySelector('.valve-feedback').classList.contains('cmd-error'), \
         summary: c.querySelector('.cmd-summary').textContent, \
         resultText: (r => r.checkVisibility() ? r.textContent : null)(c.querySelector('.cmd-result')), \
         resultRed: c.querySelector('.cmd-result').classList.contains('cmd-failed'), \
         reason: (r => r.checkVisibility() ? r.textContent : null)(c.querySelector('.cmd-reason')), \
         failure: (r => r.checkVisibility() ? r.textContent : null)(c.querySelector('.cmd-failure')), \
         flashing: getComputedStyle(c.querySelector('.valve-state')).animationName, \
         path: c.querySelector('.path').textContent, \
         lost: c.dataset.commLost }})({})",
        card(id)
    )
}

/// What the confirmation dialog shows, as JavaScript.
const DIALOG: &str = "(d => ({ open: d.open, valve: d.dataset.valve ?? null, action: d.dataset.action ?? null, \
     title: d.querySelector('#vd-title').textContent, name: d.querySelector('#vd-valve-name').textContent, \
     id: d.querySelector('#vd-valve-id').textContent, actionText: d.querySelector('#vd-action').textContent, \
     confirm: d.querySelector('#vd-confirm').disabled, confirmText: d.querySelector('#vd-confirm').textContent, \
     focus: document.activeElement?.id ?? null }))(document.querySelector('#valve-dialog'))";

/// Clicks `action` on valve card `id`, gives the reason in the confirmation dialog and confirms.
async fn command_valve(browser: &Browser, id: &str, action: &str, reason: &str) {
    browser.click(&format!("[data-device=\"{id}\"] [data-action=\"{action}\"]")).await;
    browser
        .wait_for(
            &format!("the dialog to {action} {id}"),
            DIALOG,
            "document.querySelector('#valve-dialog').outerHTML",
            |v| (v["open"] == true && v["valve"] == id && v["action"] == action).then_some(()),
        )
        .await;
    browser.type_into("#vd-reason", reason).await;
    browser.click("#vd-confirm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_commands_a_valve_through_a_confirmation_and_a_crew_member_only_watches() {
    // The backup path of west-c2: a simulator of its own.
    let shape = waterworks::config::parse("shape.toml", BACKUP_SHAPE, None).expect("backup shape");
    let spec =
        waterworks::simulation::spec_from_config(&shape, 600.0, 7, Some("127.0.0.1:0".parse().unwrap())).unwrap();
    let backup = sim::modbus::ModbusSim::start(spec).await.expect("backup simulator");
    let backup_addr = backup.addr("west-c2").expect("backup address");

    let browser = Browser::launch().await;
    let server = start(&village_with_valve(&backup_addr.to_string())).await;
    let admin = server.admin().await;
    let body = json!({ "username": "crew1", "password": "a long enough password", "role": "crew" }).to_string();
    let r =
        http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", &admin)], &body)
            .await;
    assert_eq!(r.status, 201, "creating the crew user: {}", r.body);

    sign_in(&browser, &server, "admin", ADMIN_PASSWORD).await;
    // The primary path of west-c2 goes silent: after one failure the device moves to its backup. Only now,
    // with the page live: events are not part of the snapshot, so an earlier switch would not be listed.
    server.sim().set_fault("west-c2", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();

    // 1. The valve card: open, so Open is disabled and Close is not; no command yet; its path is the primary.
    let first: Value = browser
        .wait_for("west-v1 shown open", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["state"] == "open").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("west-v1")).await.unwrap();
    assert_eq!(
        (&first["stateText"], &first["open"], &first["close"], &first["command"], &first["result"]),
        (&json!("全开"), &json!(true), &json!(false), &json!("none"), &Value::Null),
        "{html}"
    );
    assert_eq!((&first["summary"], &first["lost"]), (&json!("无"), &json!("false")), "{html}");
    assert!(first["path"].as_str().unwrap().starts_with("primary tcp 127.0.0.1:"), "{html}");
    let writes = server.sim().valve_commands("west-v1").expect("a simulated valve");

    // 2. A device on its backup path says so in amber, and the switch is in the event list.
    let path = format!(
        "(p => p && [p.textContent, p.classList.contains('path-backup'), getComputedStyle(p).backgroundColor])\
         ({}?.querySelector('.path'))",
        card("west-c2")
    );
    let on_backup: Value = browser
        .wait_for("west-c2 on its backup path", &path, &card_html("west-c2"), |v| {
            (v[0].as_str()?.starts_with("backup 1 tcp") && v[1] == true).then(|| v.clone())
        })
        .await;
    assert_eq!(on_backup[2], "rgb(242, 169, 0)", "the backup path is amber: {on_backup}");
    let switched = "(e => e && [e.querySelector('.ev-kind').textContent, e.querySelector('.ev-device').textContent, \
                    getComputedStyle(e.querySelector('.ev-kind')).backgroundColor])\
                    (document.querySelector('#events [data-kind=\"path_switched\"]'))";
    let event: Value = browser
        .wait_for("the path switch in the event list", switched, "document.querySelector('#events').outerHTML", |v| {
            (!v.is_null()).then(|| v.clone())
        })
        .await;
    assert_eq!(event, json!(["通信链路切换", "west-c2", "rgb(242, 169, 0)"]));

    // 3. Close asks for confirmation first, naming the valve and the action, with the focus on the reason;
    //    Confirm waits for a reason (blanks are none); Esc cancels, back to the button, nothing sent.
    browser.click("[data-device=\"west-v1\"] [data-action=\"close\"]").await;
    let dialog: Value = browser
        .wait_for("the confirmation dialog", DIALOG, "document.querySelector('#valve-dialog').outerHTML", |v| {
            (v["open"] == true).then(|| v.clone())
        })
        .await;
    assert_eq!(
        dialog,
        json!({ "open": true, "valve": "west-v1", "action": "close", "title": "确认关闭阀门", "name": "西村总阀",
                "id": "west-v1", "actionText": "关闭", "confirm": true, "confirmText": "确认关闭", "focus": "vd-reason" })
    );
    browser.type_into("#vd-reason", "   ").await;
    let blank = browser.eval(DIALOG).await.unwrap();
    assert_eq!((&blank["open"], &blank["confirm"]), (&json!(true), &json!(true)), "a blank reason: {blank}");
    browser.type_into("#vd-reason", "西村路主管爆管").await;
    assert_eq!(browser.eval(DIALOG).await.unwrap()["confirm"], false, "a reason enables Confirm");
    browser.screenshot(&target_dir().join("hmi-valves-dialog.png")).await;
    browser.press_key("Escape", "Escape", 27).await;
    browser
        .wait_for(
            "Esc to close the dialog, focus back on Close",
            "[document.querySelector('#valve-dialog').open, document.activeElement?.dataset.action ?? null]",
            "document.querySelector('#valve-dialog').outerHTML",
            |v| (v[0] == false && v[1] == "close").then_some(()),
        )
        .await;

    // 4. Failures of the request itself, made at the network layer: while the request is held the card says
    //    the command is in progress and both buttons are off; a 403 and a lost connection are explained.
    browser.page("Fetch.enable", json!({ "patterns": [{ "urlPattern": "*/api/valves/*" }] })).await.unwrap();
    command_valve(&browser, "west-v1", "close", "forbidden, as faked").await;
    let paused = browser.take_event("Fetch.requestPaused").await;
    let request = &paused["params"]["request"];
    assert_eq!(request["method"], "POST");
    assert!(request["url"].as_str().unwrap().ends_with("/api/valves/west-v1/command"), "{request}");
    let sent: Value = serde_json::from_str(request["postData"].as_str().expect("a body")).unwrap();
    assert_eq!(sent, json!({ "action": "close", "reason": "forbidden, as faked" }));
    let pending = browser.eval(&valve("west-v1")).await.unwrap();
    let html = browser.eval(&card_html("west-v1")).await.unwrap();
    assert_eq!(
        (&pending["command"], &pending["open"], &pending["close"]),
        (&json!("pending"), &json!(true), &json!(true))
    );
    assert!(pending["feedback"].as_str().is_some_and(|f| f.starts_with("命令执行中…")), "{html}");
    browser
        .wait_for(
            "the focus on the progress line after Confirm",
            "document.activeElement?.classList.contains('valve-feedback') ?? false",
            "document.activeElement?.outerHTML ?? 'nothing focused'",
            |v| v.as_bool()?.then_some(()),
        )
        .await;
    let refusal = json!({ "error": "role crew may not do this", "code": "forbidden" }).to_string();
    browser
        .page(
            "Fetch.fulfillRequest",
            json!({ "requestId": paused["params"]["requestId"], "responseCode": 403,
                    "responseHeaders": [{ "name": "Content-Type", "value": "application/json" }],
                    "body": base64_encode(refusal.as_bytes()) }),
        )
        .await
        .unwrap();
    let refused: Value = browser
        .wait_for("the 403 explained on the card", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["command"] == "error").then(|| v.clone())
        })
        .await;
    assert!(refused["feedback"].as_str().is_some_and(|f| f.contains("无权操作阀门")), "{refused}");
    assert_eq!((&refused["feedbackError"], &refused["close"]), (&json!(true), &json!(false)), "{refused}");

    command_valve(&browser, "west-v1", "close", "the network fails").await;
    let paused = browser.take_event("Fetch.requestPaused").await;
    browser
        .page(
            "Fetch.failRequest",
            json!({ "requestId": paused["params"]["requestId"], "errorReason": "InternetDisconnected" }),
        )
        .await
        .unwrap();
    let lost: Value = browser
        .wait_for("the network failure explained", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["command"] == "error" && v["feedback"].as_str()?.contains("网络错误")).then(|| v.clone())
        })
        .await;
    assert_eq!(lost["close"], false, "{lost}");
    browser.page("Fetch.disable", json!({})).await.unwrap();
    assert_eq!(server.sim().valve_commands("west-v1"), Some(writes), "nothing reached the valve so far");

    // 5. For real: Close, with a reason, confirmed by read-back.
    let reason = "西村路主管爆管，关阀抢修";
    command_valve(&browser, "west-v1", "close", reason).await;
    let closed: Value = browser
        .wait_for("west-v1 closed and confirmed", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["state"] == "closed" && v["result"] == "confirmed" && v["command"] == "done").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("west-v1")).await.unwrap();
    assert_eq!(
        (&closed["stateText"], &closed["summary"], &closed["resultText"], &closed["reason"], &closed["failure"]),
        (&json!("全关"), &json!("关闭 · admin"), &json!("已确认"), &json!(reason), &Value::Null),
        "{html}"
    );
    assert_eq!(
        (&closed["open"], &closed["close"], &closed["feedback"]),
        (&json!(false), &json!(true), &Value::Null),
        "{html}"
    );
    assert_eq!(server.sim().valve_open("west-v1"), Some(false), "the simulated valve really closed");

    // ... and audited with its reason, once: the refused, lost and cancelled attempts never reached the server.
    let audit = server.get("/api/audit?limit=200", &admin).await.json();
    let entries = |action: &str| -> Vec<Value> {
        let all = audit.as_array().expect("an audit list");
        all.iter().filter(|e| e["action"] == action && e["target"] == "west-v1").cloned().collect()
    };
    let requested = entries("valve.close.requested");
    assert_eq!(requested.len(), 1, "{audit}");
    let done = entries("valve.close");
    assert_eq!(done.len(), 1, "{audit}");
    assert_eq!((&done[0]["actor"], &done[0]["ok"]), (&json!("admin"), &json!(true)), "{done:?}");
    let detail = done[0]["detail"].as_str().unwrap();
    assert!(detail.contains("confirmed closed") && detail.contains(reason), "{detail}");

    // 6. A stuck valve: Open is never confirmed, the card shows the fault flashing red and why it failed.
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let reason = "抢修完毕，恢复供水";
    command_valve(&browser, "west-v1", "open", reason).await;
    let fault: Value = browser
        .wait_for("west-v1 in fault after a failed Open", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["state"] == "fault" && v["result"] == "failed" && v["command"] == "done").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("west-v1")).await.unwrap();
    assert_eq!(
        (&fault["stateText"], &fault["summary"], &fault["resultText"], &fault["resultRed"], &fault["reason"]),
        (&json!("故障"), &json!("打开 · admin"), &json!("失败"), &json!(true), &json!(reason)),
        "{html}"
    );
    // The failure and the fault event render from their codes in the page's language (issue 7 §7).
    assert_eq!(fault["failure"], json!("1 秒内未确认到位（最后回读：全关）"), "{html}");
    let fault_event = "[...document.querySelectorAll('#events [data-kind=\"valve_fault\"] .ev-message')]\
                       .map(e => e.textContent)";
    let events_html = "document.querySelector('#events').outerHTML";
    browser
        .wait_for("the valve fault event in Chinese", fault_event, events_html, |v| {
            (v[0] == "1 秒内未确认到位（最后回读：全关）").then_some(())
        })
        .await;
    assert_eq!(
        (&fault["flashing"], &fault["open"], &fault["close"], &fault["reset"]),
        (&json!("wq-flash"), &json!(false), &json!(false), &json!(true)),
        "in fault, a reset button is offered (issue 7 §5)"
    );
    // The fault rolls up into the summary tile and the region's header.
    let rollup = "[document.querySelector('#sum-valve-fault').textContent, \
                  document.querySelector('[data-region=\"west\"] .region-valve-fault').checkVisibility()]";
    assert_eq!(browser.eval(rollup).await.unwrap(), json!(["1", true]));
    browser.screenshot(&target_dir().join("hmi-valves.png")).await;
    browser.screenshot_element("[data-device=\"west-v1\"]", &target_dir().join("hmi-valves-card.png")).await;

    // 7. In English.
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    let english: Value = browser
        .wait_for("the valve card in English", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["stateText"] == "FAULT").then(|| v.clone())
        })
        .await;
    assert_eq!((&english["summary"], &english["resultText"]), (&json!("Open · admin"), &json!("Failed")), "{english}");
    assert_eq!(english["failure"], json!("not confirmed within 1 s (last read back: Closed)"), "{english}");
    browser
        .wait_for("the valve fault event in English", fault_event, events_html, |v| {
            (v[0] == "not confirmed within 1 s (last read back: Closed)").then_some(())
        })
        .await;
    let labels = format!(
        "[...{}.querySelectorAll('[data-action]')].map(b => b.textContent)\
         .concat([document.querySelector('#events [data-kind=\"path_switched\"] .ev-kind').textContent])",
        card("west-v1")
    );
    assert_eq!(browser.eval(&labels).await.unwrap(), json!(["Open", "Close", "Reset fault", "Path switched"]));

    // 7b. A valve that does not answer cannot be commanded: Open and Close are disabled while it is comm-lost
    // (issue 7 §5), and enabled again when it answers.
    server.sim().set_fault("west-v1", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    let silent: Value = browser
        .wait_for("west-v1 comm-lost", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["lost"] == "true").then(|| v.clone())
        })
        .await;
    assert_eq!((&silent["open"], &silent["close"]), (&json!(true), &json!(true)), "{silent}");
    // Its comm-lost event names the error in the page's language (from its code: "250 ms", where the
    // server's English text says "250ms").
    let lost_event = "[...document.querySelectorAll('#events [data-kind=\"comm_lost\"] .ev-message')]\
                      .map(e => e.textContent).find(t => t.includes('no reply')) || null";
    let lost_text = browser
        .wait_for("west-v1's comm-lost event", lost_event, "document.querySelector('#events').outerHTML", |v| {
            v.as_str().map(str::to_owned)
        })
        .await;
    let after = lost_text.split("no reply within ").nth(1).unwrap_or("");
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    assert!(!digits.is_empty() && after[digits.len()..].starts_with(" ms"), "{lost_text}");
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    browser
        .wait_for("west-v1 answers again", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["lost"] == "false" && v["open"] == false && v["close"] == false).then_some(())
        })
        .await;

    // 7c. Reset of the latched fault, through the same confirmation: the fault clears, the reset is audited.
    command_valve(&browser, "west-v1", "reset", "checked on site").await;
    let after: Value = browser
        .wait_for("west-v1 out of fault after the reset", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["state"] != "fault" && v["command"] == "done").then(|| v.clone())
        })
        .await;
    assert_eq!((&after["reset"], &after["state"]), (&json!(false), &json!("closed")), "{after}");
    assert_eq!(browser.eval("document.querySelector('#sum-valve-fault').textContent").await.unwrap(), json!("0"));
    let audit = server.get("/api/audit?limit=50", &admin).await.json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "valve.reset" && e["ok"] == true && e["actor"] == "admin"),
        "{audit}"
    );
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");

    // 8. A crew member sees the valve and its last command (the failed Open), but has no buttons to press.
    browser.click("#logout").await;
    browser
        .wait_for("the login page after logout", "location.pathname", "location.href", |v| {
            (v == "/login").then_some(())
        })
        .await;
    sign_in(&browser, &server, "crew1", "a long enough password").await;
    let watched: Value = browser
        .wait_for("west-v1 for the crew", &valve("west-v1"), &card_html("west-v1"), |v| {
            (v["state"] == "closed").then(|| v.clone())
        })
        .await;
    let html = browser.eval(&card_html("west-v1")).await.unwrap();
    assert_eq!(
        (&watched["buttons"], &watched["open"], &watched["close"], &watched["result"]),
        (&json!(0), &Value::Null, &Value::Null, &json!("failed")),
        "{html}"
    );
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// What card `id` says it is and its last error as shown, with the error's code hook, as JavaScript.
fn kind_and_error(id: &str) -> String {
    format!(
        "(c => c && {{ kind: c.querySelector('.dev-kind').textContent, \
         error: c.querySelector('.error-text').textContent, \
         code: c.querySelector('.error-text').dataset.errorCode ?? null, \
         errorShown: c.querySelector('.error-text').checkVisibility() }})({})",
        card(id)
    )
}

/// Issue 7 §7, on the demo village as a user starts it: every kind of device is labelled as what it is (a
/// CJ/T 188 gateway, a CJ/T 188 serial line, an MQTT meter group, an HJ 212 station are not
/// "concentrators"), and a device that times out carries `last_error_code` `timeout` with its milliseconds,
/// which the page renders in the chosen language while `last_error` stays English for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_labels_each_kind_and_renders_errors_in_the_chosen_language() {
    let browser = Browser::launch().await;
    let server = start(waterworks::config::DEMO_TOML).await;
    sign_in(&browser, &server, "admin", ADMIN_PASSWORD).await;

    let zh = [
        ("dc-c1", "集中器"),
        ("dc-wq1", "数据采集仪"),
        ("dc-v1", "阀门"),
        ("xc-g1", "CJ/T 188 网关"),
        ("xc-m1", "CJ/T 188 串口线路"),
        ("xc-nb", "MQTT 表组"),
        ("dc-st1", "HJ 212 水质站"),
    ];
    for (id, label) in zh {
        let shown: Value = browser
            .wait_for(&format!("{id} labelled {label}"), &kind_and_error(id), &card_html(id), |v| {
                (v["kind"] == label).then(|| v.clone())
            })
            .await;
        assert_eq!(shown["kind"], label, "{id}");
    }

    // The MQTT group and the gateways keep the meter table of a concentrator.
    for id in ["xc-g1", "xc-m1", "xc-nb"] {
        browser.click(&format!("[data-device=\"{id}\"] .meters-toggle")).await;
        let meters = format!("{}?.querySelectorAll('[data-meter]').length", card(id));
        browser
            .wait_for(&format!("{id}'s meter rows"), &meters, &card_html(id), |v| (v.as_u64()? > 0).then_some(()))
            .await;
    }

    // A silent concentrator times out: the code on the wire, the Chinese template on the page.
    server.sim().set_fault("dc-c1", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    let shown: Value = browser
        .wait_for("dc-c1's timeout in Chinese", &kind_and_error("dc-c1"), &card_html("dc-c1"), |v| {
            (v["code"] == "timeout").then(|| v.clone())
        })
        .await;
    assert_eq!((&shown["error"], &shown["errorShown"]), (&Value::from("1000 毫秒内无应答"), &Value::from(true)));
    let cookie = server.admin().await;
    let comm = device(&server, &cookie, "dc-c1").await["comm"].clone();
    assert_eq!(
        (&comm["last_error"], &comm["last_error_code"], &comm["last_error_params"]),
        (&json!("no reply within 1s"), &json!("timeout"), &json!({"ms": 1000})),
        "{comm}"
    );

    // In English, the labels and the error follow.
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    let en = [
        ("dc-c1", "Concentrator"),
        ("xc-g1", "CJ/T 188 gateway"),
        ("xc-m1", "CJ/T 188 serial line"),
        ("xc-nb", "MQTT meter group"),
        ("dc-st1", "HJ 212 station"),
    ];
    for (id, label) in en {
        browser
            .wait_for(&format!("{id} labelled {label}"), &kind_and_error(id), &card_html(id), |v| {
                (v["kind"] == label).then_some(())
            })
            .await;
    }
    let shown = browser.eval(&kind_and_error("dc-c1")).await.unwrap();
    assert_eq!(shown["error"], "no reply within 1000 ms", "{}", browser.eval(&card_html("dc-c1")).await.unwrap());
    browser.screenshot(&target_dir().join("hmi-screenshot-kinds.png")).await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// What the layout looks like at the current viewport, as JavaScript: the page's and the body's scroll width
/// against the window's, whether the event panel, its filter form, its history list and the "comm lost now"
/// line are shown, and which of those elements (and device cards, summary tiles) stick out of the window.
const LAYOUT: &str = "(() => {
    const shown = e => !!e && e.checkVisibility() && (r => r.width > 0 && r.height > 0)(e.getBoundingClientRect());
    const W = Math.min(innerWidth, screen.width);
    const sticksOut = e => (r => r.left < -0.5 || r.right > W + 0.5)(e.getBoundingClientRect());
    // Anything inside a container that clips or scrolls sideways may be wider than the window: it does not
    // widen the page, the container scrolls.
    const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
    const out = [...document.querySelectorAll('body *')].filter(e => shown(e) && sticksOut(e) && !clipped(e))
        .map(e => (e.id || e.dataset.device || e.className || e.tagName) + ' ' +
             Math.round(e.getBoundingClientRect().left) + '..' + Math.round(e.getBoundingClientRect().right));
    return {
        inner: innerWidth, screen: screen.width, page: document.documentElement.scrollWidth, body: document.body.scrollWidth,
        panel: shown(document.querySelector('.events-panel')), form: shown(document.querySelector('#ev-filter')),
        search: shown(document.querySelector('#evf-search')), events: document.querySelectorAll('#events > li').length,
        lost: (e => shown(e) ? e.textContent : null)(document.querySelector('#lost-now')),
        cards: [...document.querySelectorAll('[data-device]')].filter(shown).length,
        // Value tables that only fit by scrolling sideways inside their card.
        scrolling: [...document.querySelectorAll('.values')].filter(e => e.scrollWidth > e.clientWidth + 1).length,
        out: out,
    };
})()";

/// The kinds of the events the panel lists, and whether it shows search results.
const LISTED: &str = "({ kinds: [...document.querySelectorAll('#events > li')].map(e => e.dataset.kind), \
     searching: document.querySelector('#events-mode').checkVisibility(), \
     mode: document.querySelector('#events-mode').textContent })";

/// The event panel and the device list at a control-room monitor (1920×1080) and at a phone (390×844), in
/// Chinese and in English: nothing runs wider than the window, the panel, its filter form, its history and the
/// "comm lost now" line are shown, and the filter form submits and filters (issue 7, the HMI's done-when).
/// Screenshots: `target/hmi-layout-{1920,390}-{zh,en}.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_panel_and_device_list_fit_a_monitor_and_a_phone_in_both_languages() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    sign_in(&browser, &server, "admin", ADMIN_PASSWORD).await;
    // Something to list: a concentrator falls silent (comm lost now, and a comm_lost event).
    server.sim().set_fault("east-c2", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    browser
        .wait_for(
            "east-c2 comm-lost now and in the event list",
            LAYOUT,
            "document.querySelector('.events-panel').outerHTML",
            |v| (v["lost"].as_str()?.contains("east-c2") && v["events"].as_u64()? > 0).then_some(()),
        )
        .await;

    for (width, height, lang) in [(1920, 1080, "zh"), (1920, 1080, "en"), (390, 844, "en"), (390, 844, "zh")] {
        let at = format!("{width}x{height} {lang}");
        browser.set_viewport(width, height, width < 600).await;
        browser.click(&format!(".lang-switch button[data-lang=\"{lang}\"]")).await;
        let layout: Value = browser
            .wait_for(&format!("the layout at {at}"), LAYOUT, "''", |v| {
                let relaid = v["screen"] == width && v["lost"].is_string();
                let translated = browser_lang_ok(v["lost"].as_str()?, lang);
                (relaid && translated).then(|| v.clone())
            })
            .await;
        browser.screenshot(&target_dir().join(format!("hmi-layout-{width}-{lang}.png"))).await;
        // On a phone a page wider than the screen would widen the layout viewport (zoomed out) instead.
        assert_eq!(layout["inner"], width, "{at}: the page is wider than the screen: {layout}");
        assert!(layout["page"].as_u64() <= layout["inner"].as_u64(), "{at}: the page scrolls sideways: {layout}");
        assert!(layout["body"].as_u64() <= layout["inner"].as_u64(), "{at}: the body is too wide: {layout}");
        assert_eq!(layout["out"], json!([]), "{at}: elements stick out of the window: {layout}");
        assert_eq!(layout["scrolling"], 0, "{at}: a logger's table scrolls inside its card: {layout}");
        assert_eq!(
            (&layout["panel"], &layout["form"], &layout["search"], &layout["cards"]),
            (&json!(true), &json!(true), &json!(true), &json!(4)),
            "{at}: {layout}"
        );

        // The filter form: only comm_lost events, through the search button; then back to live.
        browser.eval("(s => { s.value = 'comm_lost'; s.dispatchEvent(new Event('change')); })(document.querySelector('#evf-kind'))").await.unwrap();
        browser.click("#evf-search").await;
        let listed: Value = browser
            .wait_for(
                &format!("comm_lost search results at {at}"),
                LISTED,
                "document.querySelector('.events-panel').outerHTML",
                |v| {
                    let kinds = v["kinds"].as_array()?;
                    (v["searching"] == true && !kinds.is_empty() && kinds.iter().all(|k| k == "comm_lost"))
                        .then(|| v.clone())
                },
            )
            .await;
        let mode = listed["mode"].as_str().unwrap_or("");
        assert!(if lang == "zh" { mode.contains("历史查询结果") } else { mode.contains("results") }, "{at}: {listed}");
        browser.eval("document.querySelector('#evf-kind').value = ''").await.unwrap();
        browser.click("#evf-live").await;
        browser
            .wait_for(&format!("the live list again at {at}"), LISTED, "''", |v| {
                (v["searching"] == false).then_some(())
            })
            .await;
    }
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// Whether the "comm lost now" text is in `lang` (the page has switched).
fn browser_lang_ok(lost: &str, lang: &str) -> bool {
    lost.contains("当前通信中断") == (lang == "zh")
}
