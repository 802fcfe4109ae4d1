//! The HMI in a real headless Chromium, driven over the DevTools protocol against the whole server and its
//! simulator: without a session the page lands on the login form; a user signs in; the overview shows live
//! values that keep changing; a silent device is flagged comm-lost on its card and recovers; an out-of-limit
//! water-quality value is flagged; the language switch turns the labels English. It leaves a screenshot in
//! `target/` for a human to look at.
//!
//! It reads the page only through its stable hooks (`data-device`, `data-comm-lost`, `data-param`,
//! `data-meter`, `.progress`, `#conn[data-state]`, `body[data-seq]`), never through layout or styling.

mod support;

use std::path::PathBuf;

use drivers::sim::Fault;
use serde_json::Value;
use support::browser::{js_string, Browser};
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
    server.sim().set_fault("east-c2", Fault { silent: true, ..Fault::default() }).unwrap();
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
    let forced = Fault { values: [("free_chlorine".into(), 0.1)].into(), ..Fault::default() };
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
    server.sim().set_fault("east-c2", Fault::default()).unwrap();
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
