//! Alarm KPIs through the real server (issue 9 §3): a journal generated into the store before the server
//! starts (a flood of 12 alarms in 10 minutes at position "east", an alarm chattering 4 times in 40 s, an
//! alarm standing for 30 hours, one alarm at position "west") is found by `GET /api/alarms/kpi`, exported in
//! `/metrics`, and shown on the KPI page in headless Chromium at 1920 × 1080 and at 390 × 844 (zh-CN, then
//! English; no horizontal overflow on the phone).

mod support;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use actors::model::{AlarmClass, AlarmKey, DeviceId, Priority, RegionId, Timestamp};
use actors::store::{AlarmOp, CommitStore, Op, Store};
use serde_json::Value;
use support::browser::Browser;
use support::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn config() -> String {
    format!("{VILLAGE}\n[alarm_positions]\neast = [\"east\"]\nwest = [\"west\"]\n")
}

fn cond(region: &str, device: &str, active: bool, at: i64) -> Op {
    Op::Alarm(AlarmOp::Condition {
        key: AlarmKey::new(AlarmClass::CommLost, &DeviceId::new(device), ""),
        region: RegionId::new(region),
        priority: Priority::High,
        active,
        at: Timestamp(at),
        value: None,
        limit: None,
    })
}

/// Writes the generated journal into a new store in `dir`, dated back from now, in commit order by date.
fn generate_journal(dir: &Path) {
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let mut ops: Vec<(i64, Op)> = Vec::new();
    // Standing for 30 hours: stale.
    ops.push((now - 30 * HOUR, cond("east", "gen-stale", true, now - 30 * HOUR)));
    // A flood: 12 devices within 6 minutes, three hours ago (inside one 10-minute bucket), each cleared later.
    let flood = (now - 3 * HOUR).div_euclid(10 * MIN) * 10 * MIN + MIN;
    for i in 0..12 {
        let device = format!("gen-flood-{i:02}");
        ops.push((flood + i * 30_000, cond("east", &device, true, flood + i * 30_000)));
        ops.push((flood + 20 * MIN + i, cond("east", &device, false, flood + 20 * MIN + i)));
    }
    // Chattering: four activations within 40 s, two hours ago.
    let chat = now - 2 * HOUR;
    for i in 0..4 {
        ops.push((chat + i * 13_000, cond("east", "gen-chatty", true, chat + i * 13_000)));
        ops.push((chat + i * 13_000 + 5_000, cond("east", "gen-chatty", false, chat + i * 13_000 + 5_000)));
    }
    ops.push((now - HOUR, cond("west", "gen-west", true, now - HOUR)));
    ops.sort_by_key(|(at, _)| *at);
    let store = Store::open(dir).expect("store");
    for (_, op) in ops {
        store.commit(&[std::slice::from_ref(&op)]).expect("journal written");
    }
}

async fn server_with_journal() -> TestServer {
    let dir: PathBuf = temp_dir("alarm-kpi");
    generate_journal(&dir);
    start_in(&config(), dir).await
}

fn position<'a>(kpi: &'a Value, name: &str) -> &'a Value {
    kpi["positions"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{kpi}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kpis_find_the_flood_the_chattering_and_the_stale_alarm_and_metrics_export_them() {
    let server = server_with_journal().await;
    let admin = server.admin().await;

    let r = server.get("/api/alarms/kpi?window=24h", &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kpi = r.json();
    let east = position(&kpi, "east");
    assert!(east["peak_per_10min"].as_u64().unwrap() >= 12, "the flood is the peak: {east}");
    assert_eq!(east["peak_ok"], false, "{east}");
    assert!(east["floods"].as_u64().unwrap() >= 1, "{east}");
    assert_eq!(east["regions"], serde_json::json!(["east"]));
    let west = position(&kpi, "west");
    assert_eq!((west["peak_ok"].as_bool(), west["avg_ok"].as_bool()), (Some(true), Some(true)), "{west}");
    let ids = |list: &str| -> Vec<String> {
        kpi[list].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(ids("chattering").contains(&"comm_lost~gen-chatty~".to_owned()), "{kpi}");
    assert!(!ids("chattering").iter().any(|i| i.contains("gen-flood")), "once each is not chattering: {kpi}");
    assert_eq!(ids("frequent").first().map(String::as_str), Some("comm_lost~gen-chatty~"), "{kpi}");
    assert!(ids("stale_alarms").contains(&"comm_lost~gen-stale~".to_owned()), "{kpi}");
    assert!(kpi["stale"].as_u64().unwrap() >= 1);
    assert_eq!(kpi["targets"]["flood_per_10min"], 10);

    // A one-hour window does not reach back to the flood.
    let hour = server.get("/api/alarms/kpi?window=1h", &admin).await.json();
    assert!(position(&hour, "east")["peak_per_10min"].as_u64().unwrap() < 12, "{hour}");

    // Bad windows are refused, counted, and change nothing.
    for bad in ["5m", "32d", "1w", "24", "abc", "1h&x=1"] {
        let r = server.get(&format!("/api/alarms/kpi?window={bad}"), &admin).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }

    let metrics = server.get("/metrics", &admin).await.body;
    assert!(metrics.contains("# HELP waterworks_alarm_rate_peak_10m_24h "), "{metrics}");
    assert!(metrics.contains("# TYPE waterworks_alarm_rate_peak_10m_24h gauge"), "{metrics}");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("waterworks_alarm_rate_peak_10m_24h{position=\"east\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let peak: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(peak >= 12.0, "{line}");
    assert!(
        metrics.lines().any(|l| l.starts_with("waterworks_alarms_chattering_24h ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("waterworks_alarms_stale ") && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.contains("waterworks_alarm_rate_last_10m{position=\"west\"}"), "{metrics}");
    server.app.shutdown().await;
}

/// What the KPI page shows, as JavaScript.
const PAGE: &str = "(() => {
    const shown = e => !!e && e.checkVisibility();
    const W = Math.min(innerWidth, screen.width);
    const out = [...document.querySelectorAll('body *')].filter(e => shown(e) &&
        (r => r.left < -0.5 || r.right > W + 0.5)(e.getBoundingClientRect()))
        .map(e => (e.id || e.className || e.tagName));
    const pos = name => document.querySelector(`[data-position=\"${name}\"]`);
    return {
        loaded: document.body.dataset.loaded ?? null, lang: document.documentElement.lang,
        title: document.querySelector('h1').textContent,
        stale: document.querySelector('[data-kpi=\"stale\"] .n').textContent,
        east_peak_ok: pos('east')?.dataset.peakOk ?? null, west_peak_ok: pos('west')?.dataset.peakOk ?? null,
        east_chart: !!pos('east')?.querySelector('.chart canvas'),
        frequent: [...document.querySelectorAll('#frequent tbody tr')].map(r => r.dataset.alarm ?? null),
        frequent_text: document.querySelector('#frequent tbody tr')?.textContent ?? null,
        chattering: [...document.querySelectorAll('#chattering tbody tr')].map(r => r.dataset.alarm ?? null),
        stale_rows: [...document.querySelectorAll('#stale tbody tr')].map(r => r.dataset.alarm ?? null),
        page: document.documentElement.scrollWidth, inner: innerWidth, out,
    };
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kpi_page_charts_the_rate_and_lists_the_bad_actors_on_a_monitor_and_a_phone() {
    let browser = Browser::launch().await;
    let server = server_with_journal().await;
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            v.as_bool()?.then_some(())
        })
        .await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#submit").await;
    browser
        .wait_for(
            "the overview, live, with its KPI link",
            "[!!document.querySelector('#kpi-link'), document.querySelector('#conn')?.dataset.state ?? null, \
             document.querySelector('#user-name')?.textContent ?? null]",
            "location.href",
            |v| (v[0] == true && v[1] == "live" && v[2] == "admin").then_some(()),
        )
        .await;
    browser.click("#kpi-link").await;
    browser
        .wait_for("the KPI page from the header link", "location.pathname", "location.href", |v| {
            (v == "/alarm-kpi").then_some(())
        })
        .await;

    for (width, height, mobile) in [(1920, 1080, false), (390, 844, true)] {
        browser.set_viewport(width, height, mobile).await;
        browser.navigate(&format!("{}/alarm-kpi", server.base)).await;
        let page = browser
            .wait_for("the KPI page, loaded", PAGE, "document.body.outerHTML.slice(0, 3000)", |v| {
                (v["loaded"] == "24h").then(|| v.clone())
            })
            .await;
        assert_eq!(page["lang"], "zh-CN", "{page}");
        assert_eq!(page["title"], "报警绩效", "{page}");
        assert_ne!(page["stale"], "0", "{page}");
        assert_eq!((page["east_peak_ok"].as_str(), page["west_peak_ok"].as_str()), (Some("false"), Some("true")));
        assert_eq!(page["east_chart"], true, "uPlot drew the chart: {page}");
        assert_eq!(page["frequent"][0], "comm_lost~gen-chatty~", "{page}");
        // The class is named as the banner and every other page name it.
        assert!(page["frequent_text"].as_str().unwrap_or("").contains("设备通信中断"), "{page}");
        assert!(page["chattering"].as_array().unwrap().contains(&"comm_lost~gen-chatty~".into()), "{page}");
        assert!(page["stale_rows"].as_array().unwrap().contains(&"comm_lost~gen-stale~".into()), "{page}");
        assert!(page["page"].as_u64().unwrap() <= u64::from(width), "no horizontal overflow at {width}: {page}");
        assert_eq!(page["out"], serde_json::json!([]), "nothing sticks out at {width}: {page}");
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("alarm-kpi-{width}.png"));
        browser.screenshot(&shot).await;
    }

    // The English switch, and the other window.
    browser.click(".lang-switch button[data-lang='en']").await;
    browser.click(".windows button[data-window='7d']").await;
    let page = browser
        .wait_for("English, 7 days", PAGE, "document.body.outerHTML.slice(0, 3000)", |v| {
            (v["loaded"] == "7d" && v["lang"] == "en").then(|| v.clone())
        })
        .await;
    assert_eq!(page["title"], "Alarm KPIs", "{page}");
    assert!(page["frequent_text"].as_str().unwrap_or("").contains("Device comm lost"), "{page}");
    assert_eq!(browser.page_errors(), Vec::<String>::new());
    server.app.shutdown().await;
}
