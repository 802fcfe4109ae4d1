//! Trends, the device list and device pages, and the region roll-up (issue 9 §4), against the whole server
//! and its simulator.
//!
//! Over HTTP: `/api/series` downsamples a logger's chlorine with its dip kept (min per bucket), with its unit
//! and the limits the alarm engine applies, and a meter's volume and usage rate; every bad query is a 400
//! naming the problem and counted in `/metrics`.
//!
//! In a real headless Chromium: a chlorine dip below its limit is drawn on `/trends` (checked in the chart's
//! own data and in its legend, not in pixels) with the limit as a line, zoom, pan and reset change the range,
//! and the CSV export holds the dip; the device list filters to the abnormal devices of a region as the
//! overview's region roll-up links to it; a device's page shows its values, meters (paged), alarms and
//! trend; every page at 1920×1080 and 390×844 without sideways scrolling and with 44 px tap targets.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sim::modbus::ModbusFault;
use support::browser::Browser;
use support::*;

/// Where the screenshots go: the `target/` directory this test was built in.
fn target_dir() -> PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}

/// The chlorine the simulator is made to read during the dip, below the plant-outlet limit of 0.3 mg/L.
const DIP: f64 = 0.1;

/// Forces east-wq's free chlorine to [`DIP`] until the store has it, then lets it recover and waits until the
/// store has a normal value after it. Returns the low limit the device view shows.
async fn make_a_dip(server: &TestServer, cookie: &str) -> f64 {
    let forced = ModbusFault { values: [("free_chlorine".into(), DIP)].into(), ..ModbusFault::default() };
    server.sim().set_fault("east-wq", forced).unwrap();
    let chlorine = |d: &Value| {
        d["values"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["param"] == "free_chlorine"))
            .cloned()
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(20), "the dip committed", || async {
        let p = chlorine(&device(server, cookie, "east-wq").await);
        p["value"].as_f64().is_some_and(|v| (v - DIP).abs() < 1e-6).then_some(())
    })
    .await;
    server.sim().set_fault("east-wq", ModbusFault::default()).unwrap();
    let p = eventually(Duration::from_secs(20), "chlorine back to normal", || async {
        let p = chlorine(&device(server, cookie, "east-wq").await);
        p["value"].as_f64().is_some_and(|v| v > 0.3).then_some(p)
    })
    .await;
    p["low"].as_f64().expect("free chlorine has a low limit")
}

async fn bad_requests(server: &TestServer, cookie: &str) -> u64 {
    let text = server.get("/metrics", cookie).await.body;
    let line = text.lines().find(|l| l.starts_with("waterworks_bad_requests_total")).expect("the counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_api_keeps_a_dip_with_its_limit_and_refuses_bad_queries() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let low = make_a_dip(&server, &admin).await;
    assert_eq!(low, 0.3, "the plant-outlet default of GB 5749-2022");

    // A day of chlorine in 10 buckets: the dip is each bucket's minimum where it fell, not averaged away.
    let r = server.get("/api/series?pen=param:east-wq/free_chlorine&points=10", &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let pen = &body["pens"][0];
    assert_eq!(
        (pen["pen"].as_str(), pen["kind"].as_str(), pen["unit"].as_str()),
        (Some("param:east-wq/free_chlorine"), Some("param"), Some("mg/L")),
        "{pen}"
    );
    assert_eq!((pen["limits"]["low"].as_f64(), pen["limits"]["high"].as_f64()), (Some(0.3), Some(2.0)), "{pen}");
    let t = pen["t"].as_array().unwrap();
    assert!(!t.is_empty() && t.len() <= 10, "at most 10 buckets: {pen}");
    let mins: Vec<f64> = pen["min"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let maxs: Vec<f64> = pen["max"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(mins.iter().any(|m| (m - DIP).abs() < 1e-6), "the dip is a bucket's minimum: {pen}");
    assert!(maxs.iter().any(|m| *m > 0.3), "the normal values are there too: {pen}");
    let rows = pen["rows"].as_u64().unwrap();
    let counted: u64 = pen["n"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted, rows, "every stored sample fell in a bucket: {pen}");
    assert_eq!(pen["truncated"], false);

    // A meter's volume and usage rate, and a second pen on the same chart.
    let r = server.get("/api/series?pen=meter:E1-0001&pen=rate:E1-0001&pen=param:east-wq/ph", &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let units: Vec<&str> = body["pens"].as_array().unwrap().iter().map(|p| p["unit"].as_str().unwrap()).collect();
    assert_eq!(units, ["m³", "m³/h", "pH"], "{body}");
    assert_eq!(body["pens"][0]["device"], "east-c1");
    assert!(!body["pens"][0]["t"].as_array().unwrap().is_empty(), "the meter has readings: {body}");
    assert_eq!(body["pens"][0]["limits"]["low"], Value::Null);
    // The simulated meters count up: the usage rate between readings is never negative.
    let rates = body["pens"][1]["max"].as_array().unwrap();
    assert!(!rates.is_empty() && rates.iter().all(|r| r.as_f64().is_some_and(|r| r >= 0.0)), "{body}");

    // Everyone who watches the plant may draw trends (crew included); the billing role may not.
    for (name, role, status) in [("crew1", "crew", 200), ("billing1", "billing", 403)] {
        let body =
            serde_json::json!({ "username": name, "password": "a long enough password", "role": role }).to_string();
        let headers = [("content-type", "application/json"), ("cookie", admin.as_str())];
        let r = http(&server.base, "POST", "/api/users", &headers, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let cookie = server.login(name, "a long enough password").await;
        for path in ["/api/series?pen=param:east-wq/free_chlorine", "/assets/trends.js", "/assets/devices.js"] {
            assert_eq!(server.get(path, &cookie).await.status, status, "{role} {path}");
        }
    }

    // Bad queries: a 400 that names the problem, counted.
    let before = bad_requests(&server, &admin).await;
    let nine = (0..9).map(|_| "pen=param:east-wq/ph").collect::<Vec<_>>().join("&");
    let long = format!("pen=param:east-wq/{}", "x".repeat(201));
    let now = 1_900_000_000_000i64;
    let cases = [
        ("/api/series".to_owned(), "at least one pen"),
        (format!("/api/series?{nine}"), "at most 8 pens"),
        ("/api/series?pen=param:east-wq/nitrate".to_owned(), "no such pen"),
        ("/api/series?pen=meter:nobody".to_owned(), "no such pen"),
        ("/api/series?pen=volume:E1-0001".to_owned(), "expected meter:ID"),
        (format!("/api/series?{long}"), "longer than 200"),
        ("/api/series?pen=meter:E1-0001&points=0".to_owned(), "`points` must be"),
        ("/api/series?pen=meter:E1-0001&points=2001".to_owned(), "`points` must be"),
        ("/api/series?pen=meter:E1-0001&from=abc".to_owned(), "not a whole number"),
        (format!("/api/series?pen=meter:E1-0001&from={now}&to={}", now - 1), "after `to`"),
        (format!("/api/series?pen=meter:E1-0001&from=0&to={now}"), "longer than 400 days"),
        ("/api/series?pen=meter:E1-0001&colour=red".to_owned(), "unknown parameter"),
    ];
    for (path, why) in &cases {
        let r = server.get(path, &admin).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains(why), "{path}: {}", r.body);
    }
    assert_eq!(bad_requests(&server, &admin).await, before + cases.len() as u64, "every refusal counted");
    server.app.shutdown().await;
}

/// JavaScript: elements wider than the screen, and visible controls smaller than a 44 px tap target.
const LAYOUT: &str = "(() => {
    const W = Math.min(innerWidth, screen.width);
    const shown = e => e.checkVisibility();
    const out = [...document.querySelectorAll('body *')].filter(e => shown(e) &&
        (r => r.width > 0 && (r.left < -0.5 || r.right > W + 0.5))(e.getBoundingClientRect()))
        .map(e => e.tagName + '#' + e.id + '.' + e.className);
    const small = [...document.querySelectorAll('button, select, input:not([type=checkbox]), a')]
        .filter(e => shown(e) && !e.closest('.u-wrap'))
        .filter(e => (r => r.height < 43.5 && !(e.tagName === 'A' && e.closest('p, li, .count')))(e.getBoundingClientRect()))
        .map(e => e.tagName + '#' + e.id + ' ' + e.textContent.slice(0, 20) + ' ' + e.getBoundingClientRect().height);
    return { page: document.documentElement.scrollWidth, inner: innerWidth, screen: screen.width, out: out, small: small };
})()";

async fn check_layout(browser: &Browser, at: &str, width: u32) {
    // Waits for the page to lay out again at the new width (the chart resizes on its ResizeObserver); on
    // timeout the last layout names what is too wide or too small.
    browser
        .wait_for(&format!("no sideways scrolling and 44 px controls at {at}"), LAYOUT, "location.href", |v| {
            let fits = v["screen"] == width && v["page"].as_u64()? <= width as u64;
            (fits && v["out"].as_array()?.is_empty() && v["small"].as_array()?.is_empty()).then_some(())
        })
        .await;
}

/// What the trends chart holds, as JavaScript: the pen's drawn values, the limit series, the legend.
const CHART: &str = "(() => {
    const el = document.querySelector('#chart');
    const u = el.uplot;
    if (!u || el.dataset.state !== 'ready') return { state: el.dataset.state ?? null };
    const values = u.data[1].filter(v => v !== null);
    const limits = u.series.map((s, i) => [s.label, u.data[i]]).slice(2)
        .map(([label, d]) => ({ label: label, values: [...new Set(d)] }));
    const pen = document.querySelector('#legend li.pen');
    const low = document.querySelector('#legend li.limit[data-limit=\"low\"]');
    return { state: 'ready', min: Math.min(...values), max: Math.max(...values), n: values.length, limits: limits,
             from: u.scales.x.min, to: u.scales.x.max, label: u.series[1].label,
             legend_min: pen ? Number(pen.dataset.min) : null, legend_low: low ? Number(low.dataset.value) : null,
             legend: document.querySelector('#legend').textContent };
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chlorine_dip_is_drawn_with_its_limit_exported_and_found_from_the_device_pages() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let low = make_a_dip(&server, &admin).await;
    let shots = target_dir();

    // Sign in through the form.
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            v.as_bool()?.then_some(())
        })
        .await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#submit").await;
    browser.wait_for("the overview", "location.pathname", "location.href", |v| (v == "/").then_some(())).await;

    // 1. The trends page, reached by a link with the pen in the URL: the dip and the limit line are drawn.
    browser.set_viewport(1920, 1080, false).await;
    browser.navigate(&format!("{}/trends?pen=param:east-wq/free_chlorine&range=1h", server.base)).await;
    let chart = browser
        .wait_for("the chart with the dip", CHART, "document.querySelector('main')?.outerHTML.slice(0, 3000)", |v| {
            (v["state"] == "ready" && v["min"].as_f64()? < 0.3).then(|| v.clone())
        })
        .await;
    assert!((chart["min"].as_f64().unwrap() - DIP).abs() < 1e-6, "the dip is drawn: {chart}");
    assert!(chart["max"].as_f64().unwrap() > 0.3, "the normal values are drawn: {chart}");
    let limit_lines: Vec<&Value> = chart["limits"].as_array().unwrap().iter().collect();
    assert!(
        limit_lines
            .iter()
            .any(|l| l["values"] == serde_json::json!([low]) && l["label"].as_str().unwrap().contains("下限")),
        "a low-limit line at {low}: {chart}"
    );
    assert_eq!(
        (chart["legend_min"].as_f64(), chart["legend_low"].as_f64()),
        (Some(chart["min"].as_f64().unwrap()), Some(low)),
        "{chart}"
    );
    assert!(chart["label"].as_str().unwrap().contains("游离氯"), "zh-CN first: {chart}");
    let span = chart["to"].as_f64().unwrap() - chart["from"].as_f64().unwrap();
    assert!((span - 3600.0).abs() < 1.0, "the 1 h range: {chart}");
    browser.screenshot(&shots.join("trends-1920.png")).await;

    // 2. CSV of what is shown, downloaded as a user would: it holds the dip.
    let downloads = temp_dir("csv");
    let allow = serde_json::json!({ "behavior": "allow", "downloadPath": downloads.to_str().unwrap() });
    browser.page("Page.setDownloadBehavior", allow).await.unwrap();
    browser.click("#csv").await;
    let csv = eventually(Duration::from_secs(20), "the downloaded CSV", || async {
        let file = std::fs::read_dir(&downloads)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".csv"))?;
        let name = file.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("trend-"), "{name}");
        std::fs::read_to_string(file.path()).ok().filter(|s| !s.is_empty())
    })
    .await;
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    let head = lines.next().unwrap();
    assert!(head.starts_with("时间,") && head.contains("游离氯") && head.contains("(mg/L)"), "{head}");
    let dip_rows = lines
        .filter(|l| l.split(',').nth(1).and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| (v - DIP).abs() < 1e-6))
        .count();
    assert!(dip_rows > 0, "the dip in the CSV:\n{csv}");

    // 3. Zoom by dragging across the middle of the chart: a shorter range, asked from the server again.
    let over = browser
        .eval("(r => [r.left, r.top, r.width, r.height])(document.querySelector('#chart .u-over').getBoundingClientRect())")
        .await
        .unwrap();
    let (x, y, w, hgt) =
        (over[0].as_f64().unwrap(), over[1].as_f64().unwrap(), over[2].as_f64().unwrap(), over[3].as_f64().unwrap());
    let mid = y + hgt / 2.0;
    for (kind, at) in
        [("mouseMoved", 0.3), ("mousePressed", 0.3), ("mouseMoved", 0.45), ("mouseMoved", 0.6), ("mouseReleased", 0.6)]
    {
        let event = serde_json::json!({ "type": kind, "x": x + w * at, "y": mid, "button": "left", "buttons": 1, "clickCount": 1 });
        browser.page("Input.dispatchMouseEvent", event).await.unwrap();
    }
    let zoomed = browser
        .wait_for("the zoomed chart", CHART, "document.querySelector('#shown').textContent", |v| {
            (v["state"] == "ready" && (v["to"].as_f64()? - v["from"].as_f64()?) < 0.5 * span).then(|| v.clone())
        })
        .await;
    let zspan = zoomed["to"].as_f64().unwrap() - zoomed["from"].as_f64().unwrap();
    assert!((zspan - 0.3 * span).abs() < 0.05 * span, "the dragged 30 % of the range: {zoomed}");
    // Pan back by half the view, then reset to the whole hour.
    browser.click("#pan-left").await;
    let panned = browser
        .wait_for("the panned chart", CHART, "document.querySelector('#shown').textContent", |v| {
            (v["state"] == "ready" && v["to"].as_f64()? < zoomed["to"].as_f64()? - 0.4 * zspan).then(|| v.clone())
        })
        .await;
    assert!(((panned["to"].as_f64().unwrap() - panned["from"].as_f64().unwrap()) - zspan).abs() < 1.0, "{panned}");
    browser.click("#reset").await;
    browser
        .wait_for("the reset chart", CHART, "document.querySelector('#shown').textContent", |v| {
            (v["state"] == "ready" && ((v["to"].as_f64()? - v["from"].as_f64()?) - 3600.0).abs() < 1.0).then_some(())
        })
        .await;

    // A second pen chosen by searching, and the 24 h preset: both in the URL, both on the chart.
    browser.type_into("#pen-search", "浑浊").await;
    browser.click("#pen-results button[data-pen=\"param:east-wq/turbidity\"]").await;
    browser.click(".range button[data-range=\"24h\"]").await;
    let two = "(u => u && document.querySelector('#chart').dataset.state === 'ready' ? \
               [u.series.map(s => s.label), (u.scales.x.max - u.scales.x.min), location.search] : null)(document.querySelector('#chart').uplot)";
    let both = browser
        .wait_for("two pens over 24 h", two, "document.querySelector('#pens').outerHTML", |v| {
            let labels = v[0].as_array()?;
            let ok = labels.iter().any(|l| l.as_str().is_some_and(|l| l.ends_with("浑浊度")))
                && (v[1].as_f64()? - 86400.0).abs() < 1.0;
            ok.then(|| v.clone())
        })
        .await;
    assert_eq!(
        both[2], "?pen=param%3Aeast-wq%2Ffree_chlorine&pen=param%3Aeast-wq%2Fturbidity&range=24h",
        "the URL names what is shown: {both}"
    );
    // A custom range: two hours, ending now (the inputs take local wall-clock time, as a user types it).
    browser.click(".range button[data-range=\"custom\"]").await;
    browser
        .eval(
            "(() => { const local = ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60e3).toISOString().slice(0, 16); \
             const to = Math.ceil(Date.now() / 60e3) * 60e3; \
             document.querySelector('#c-from').value = local(to - 7200e3); document.querySelector('#c-to').value = local(to); })()",
        )
        .await
        .unwrap();
    browser.click("#custom button[type=\"submit\"]").await;
    browser
        .wait_for("the custom two hours", two, "document.querySelector('#custom').outerHTML", |v| {
            ((v[1].as_f64()? - 7200.0).abs() < 1.0 && v[2].as_str()?.contains("range=custom")).then_some(())
        })
        .await;
    browser.click("#pens li[data-pen=\"param:east-wq/turbidity\"] .remove").await;
    browser
        .wait_for("one pen again", two, "document.querySelector('#pens').outerHTML", |v| {
            (v[0].as_array()?.iter().all(|l| !l.as_str().unwrap_or("").ends_with("浑浊度"))).then_some(())
        })
        .await;

    // 4. English, and the phone.
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    browser
        .wait_for("English labels", CHART, "document.querySelector('#legend').textContent", |v| {
            v["label"].as_str()?.contains("Free chlorine").then_some(())
        })
        .await;
    check_layout(&browser, "trends 1920", 1920).await;
    browser.set_viewport(390, 844, true).await;
    check_layout(&browser, "trends 390", 390).await;
    browser.screenshot(&shots.join("trends-390.png")).await;
    browser.click(".lang-switch button[data-lang=\"zh\"]").await;

    // 5. The chlorine low again: the overview's region roll-up counts it and links to the region's abnormal
    // devices; the list shows only those.
    let forced = ModbusFault { values: [("free_chlorine".into(), DIP)].into(), ..ModbusFault::default() };
    server.sim().set_fault("east-wq", forced).unwrap();
    browser.set_viewport(1920, 1080, false).await;
    browser.navigate(&format!("{}/", server.base)).await;
    let rollup = browser
        .wait_for(
            "the east roll-up with a quality breach",
            "(a => a && [a.getAttribute('href'), Number(a.dataset.quality), a.textContent])(document.querySelector('[data-region=\"east\"] .region-rollup'))",
            "document.querySelector('[data-region=\"east\"]')?.outerHTML.slice(0, 2000) ?? 'no east region'",
            |v| (v[1].as_f64()? >= 1.0).then(|| v.clone()),
        )
        .await;
    assert_eq!(rollup[0], "/devices?abnormal=1&region=east", "{rollup}");
    assert!(rollup[2].as_str().unwrap().contains("水质超限 1"), "{rollup}");
    browser.click("[data-region=\"east\"] .region-rollup").await;
    let rows = "[location.pathname + location.search, [...document.querySelectorAll('#rows tr')].map(r => [r.dataset.device, Number(r.dataset.abnormal)]), document.querySelector('#f-region').value, document.querySelector('#f-abnormal').checked]";
    let listed = browser
        .wait_for(
            "the abnormal devices of east",
            rows,
            "document.querySelector('main').outerHTML.slice(0, 3000)",
            |v| {
                let rows = v[1].as_array()?;
                rows.iter().any(|r| r[0] == "east-wq").then(|| v.clone())
            },
        )
        .await;
    assert_eq!((listed[2].as_str(), listed[3].as_bool()), (Some("east"), Some(true)), "{listed}");
    for r in listed[1].as_array().unwrap() {
        assert!(r[1].as_f64().unwrap() > 0.0, "only abnormal devices: {listed}");
        assert!(r[0].as_str().unwrap().starts_with("east-"), "only the east region: {listed}");
    }
    browser.screenshot(&shots.join("devices-1920.png")).await;
    // Without the filters every device is listed; sorted by name.
    browser.click("#f-abnormal").await;
    browser
        .wait_for("every east device", rows, "document.querySelector('main').outerHTML.slice(0, 3000)", |v| {
            (v[1].as_array()?.len() == 3).then_some(())
        })
        .await;
    check_layout(&browser, "devices 1920", 1920).await;
    browser.set_viewport(390, 844, true).await;
    check_layout(&browser, "devices 390", 390).await;
    browser.screenshot(&shots.join("devices-390.png")).await;

    // 6. A device's page: its values (the low chlorine flagged), its standing alarm, its trend; a
    // concentrator's page pages its meters.
    eventually(Duration::from_secs(20), "a standing chlorine alarm", || async {
        let alarms = server.get("/api/alarms", &admin).await.json();
        alarms.as_array()?.iter().any(|a| a["key"]["device"] == "east-wq").then_some(())
    })
    .await;
    browser.set_viewport(1920, 1080, false).await;
    browser.navigate(&format!("{}/devices/east-wq", server.base)).await;
    let page = "[document.body.dataset.ready, document.querySelector('h1').textContent, \
                document.querySelector('[data-param=\"free_chlorine\"] .abn')?.textContent ?? null, \
                document.querySelectorAll('#alarms li[data-alarm]').length, !!document.querySelector('#chart').uplot, \
                document.querySelector('#trend-open').getAttribute('href'), Number(document.body.dataset.abnormal), \
                document.querySelector('#alarms li[data-alarm]')?.textContent ?? null]";
    let shown = browser
        .wait_for("east-wq's page", page, "document.querySelector('main').outerHTML.slice(0, 3000)", |v| {
            (v[0] == "true" && v[2].is_string() && v[3].as_u64()? > 0).then(|| v.clone())
        })
        .await;
    assert_eq!(shown[1], "东村水厂", "{shown}");
    assert!(shown[2].as_str().unwrap().starts_with("0.100"), "{shown}");
    assert_eq!(shown[4], true, "a trend chart: {shown}");
    assert!(shown[5].as_str().unwrap().starts_with("/trends?pen=param%3Aeast-wq%2Ffree_chlorine"), "{shown}");
    assert!(shown[6].as_f64().unwrap() > 0.0, "{shown}");
    // The alarm is named as the banner and every other page name its class.
    assert!(shown[7].as_str().unwrap_or("").contains("水质低于下限"), "{shown}");
    check_layout(&browser, "device 1920", 1920).await;
    browser.screenshot(&shots.join("device-1920.png")).await;
    browser.set_viewport(390, 844, true).await;
    check_layout(&browser, "device 390", 390).await;
    browser.screenshot(&shots.join("device-390.png")).await;

    browser.set_viewport(1920, 1080, false).await;
    browser.navigate(&format!("{}/devices/east-c1", server.base)).await;
    let meters =
        "[document.body.dataset.ready, [...document.querySelectorAll('#meters tbody tr')].map(r => r.dataset.meter), \
                  document.querySelector('#m-count').textContent]";
    let m = browser
        .wait_for("east-c1's meters", meters, "document.querySelector('main').outerHTML.slice(0, 3000)", |v| {
            (v[0] == "true" && v[1].as_array()?.len() == 12).then(|| v.clone())
        })
        .await;
    assert_eq!(m[1][0], "E1-0001", "{m}");
    browser.type_into("#m-q", "E1-001").await;
    browser
        .wait_for("the meter search", meters, "document.querySelector('#meters').outerHTML.slice(0, 2000)", |v| {
            (v[1].as_array()?.len() == 3).then_some(())
        })
        .await;

    // A device that does not exist says so.
    browser.navigate(&format!("{}/devices/nobody", server.base)).await;
    browser
        .wait_for(
            "no such device",
            "[document.body.dataset.ready, document.querySelector('#status').textContent]",
            "location.href",
            |v| (v[0] == "missing" && v[1].as_str()?.contains("nobody")).then_some(()),
        )
        .await;

    assert_eq!(browser.page_errors(), Vec::<String>::new(), "no page errors");
    server.app.shutdown().await;
}
