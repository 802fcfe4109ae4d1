//! Alarm settings at runtime (issue 9 §1, §5) through the real server: every role that sees alarms reads
//! them; an operator's PUT is 403 and audited as `access.denied`; bad settings are 400 with every problem's
//! key and change nothing; an admin's change is audited old → new, raises the next alarm with the new
//! priority without a restart, and is still in force after one. The admin page in a real headless Chromium at
//! 1920×1080 and on a 390×844 phone: reached from the header link, in Chinese and English, a priority changed
//! and saved, nothing wider than the phone.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::browser::Browser;
use support::*;

const PW: &str = "a long enough password";

async fn user(server: &TestServer, admin: &str, name: &str, role: &str) -> String {
    let body = json!({ "username": name, "password": PW, "role": role }).to_string();
    let headers = [("content-type", "application/json"), ("cookie", admin)];
    let r = http(&server.base, "POST", "/api/users", &headers, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.login(name, PW).await
}

async fn put(server: &TestServer, cookie: &str, body: &str) -> Response {
    let headers = [("content-type", "application/json"), ("cookie", cookie)];
    http(&server.base, "PUT", "/api/alarm-settings", &headers, body).await
}

async fn sim_fault(server: &TestServer, device: &str, body: &str) {
    let base = format!("http://{}", server.app.sim_control_addr.expect("fault-injection API"));
    let headers = [("content-type", "application/json")];
    let r = http(&base, "PUT", &format!("/devices/{device}/fault"), &headers, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn audit(audit: &Value, action: &str) -> Vec<Value> {
    audit.as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_change_alarm_settings_at_runtime_checked_audited_and_kept_across_a_restart() {
    let server = start_with_sim_control(VILLAGE).await;
    let admin = server.admin().await;
    let operator = user(&server, &admin, "duty1", "operator").await;
    let crew = user(&server, &admin, "crew1", "crew").await;
    let r = server.get("/api/alarm-settings", &crew).await;
    assert_eq!((r.status, r.json()), (200, json!({})), "no [alarms]: the defaults");

    let urgent = r#"{"class": {"quality_low": {"priority": "urgent"}}, "device": {"east-wq": {"on_delay_s": 0}}}"#;
    assert_eq!(put(&server, &operator, urgent).await.status, 403);
    let bad = r#"{"site": {"network_end": {"deadband_percent": 99}}, "device": {"nowhere": {}}}"#;
    let r = put(&server, &admin, bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let why = r.json()["error"].as_str().unwrap().to_owned();
    assert!(why.contains("site.network_end.deadband_percent") && why.contains("device.nowhere"), "{why}");
    for bad in [r#"{"class": {"quality_lo": {}}}"#, r#"{"class": {"comm_lost": {"priority": 1}}}"#, "[1]", "{"] {
        assert_eq!(put(&server, &admin, bad).await.status, 400, "{bad}");
    }
    assert_eq!(server.get("/api/alarm-settings", &admin).await.json(), json!({}), "refusals change nothing");

    let r = put(&server, &admin, urgent).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["class"]["quality_low"]["priority"], "urgent");
    let entries = server.get("/api/audit?limit=200", &admin).await.json();
    let denied = audit(&entries, "access.denied");
    assert!(
        denied.iter().any(|e| e["actor"] == "duty1" && e["target"].as_str().unwrap().contains("/api/alarm-settings")),
        "{denied:?}"
    );
    let changes = audit(&entries, "alarm_settings.change");
    let done: Vec<&Value> = changes.iter().filter(|e| e["ok"] == true).collect();
    assert_eq!(done.len(), 1, "{changes:?}");
    assert_eq!(done[0]["actor"], "admin");
    assert!(done[0]["detail"].as_str().unwrap().starts_with("{} -> {\"class\""), "old -> new: {}", done[0]["detail"]);
    assert!(changes.iter().any(|e| e["ok"] == false && e["detail"].as_str().unwrap().contains("device.nowhere")));

    // No restart: the next chlorine dip is raised with the new priority.
    sim_fault(&server, "east-wq", r#"{"values": {"free_chlorine": 0.1}}"#).await;
    let alarm = eventually(Duration::from_secs(30), "the low chlorine alarm", || async {
        let list = server.get("/api/alarms", &crew).await.json();
        list.as_array()?.iter().find(|a| a["key"]["class"] == "quality_low" && a["key"]["device"] == "east-wq").cloned()
    })
    .await;
    assert_eq!(alarm["priority"], "urgent", "{alarm}");

    // After a restart the saved settings are still in force.
    let dir = server.dir.clone();
    server.app.shutdown().await;
    eventually(Duration::from_secs(10), "the store released", || async {
        actors::store::Store::open(&dir).ok().map(drop)
    })
    .await;
    let server = start_in(VILLAGE, dir).await;
    let admin = server.admin().await;
    let kept = server.get("/api/alarm-settings", &admin).await.json();
    assert_eq!(kept["class"]["quality_low"]["priority"], "urgent", "{kept}");
    server.app.shutdown().await;
}

fn target_dir() -> PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}

async fn sign_in(browser: &Browser, server: &TestServer) {
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            (v == true).then_some(())
        })
        .await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#submit").await;
}

async fn wait_text(browser: &Browser, what: &str, expr: &str, want: &str) {
    browser
        .wait_for(what, expr, "document.querySelector('main')?.outerHTML ?? location.href", |v| {
            v.as_str().is_some_and(|s| s.contains(want)).then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_settings_page_works_in_both_languages_on_a_desktop_and_a_phone() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    browser.set_viewport(1920, 1080, false).await;
    sign_in(&browser, &server).await;
    browser
        .wait_for(
            "the header link",
            "(() => { const a = document.querySelector('#alarm-settings-link'); return !!a && !a.hidden; })()",
            "document.querySelector('header')?.outerHTML ?? location.href",
            |v| (v == true).then_some(()),
        )
        .await;
    browser.click("#alarm-settings-link").await;
    let row = "tr[data-class=\"meter_tamper\"]";
    wait_text(
        &browser,
        "the class table in Chinese",
        &format!("document.querySelector('{row}')?.textContent ?? ''"),
        "水表磁干扰",
    )
    .await;
    browser.screenshot(&target_dir().join("alarm-settings-1920.png")).await;

    // English, then a priority set and saved on the phone.
    browser.click("button[data-lang=\"en\"]").await;
    wait_text(
        &browser,
        "English labels",
        &format!("document.querySelector('{row}')?.textContent ?? ''"),
        "Meter magnetic tamper",
    )
    .await;
    browser.set_viewport(390, 844, true).await;
    browser
        .eval(&format!(
            "(() => {{ const s = document.querySelector('{row} select'); s.value = 'urgent'; return s.value; }})()"
        ))
        .await
        .unwrap();
    browser.click("#save").await;
    wait_text(&browser, "saved", "document.querySelector('#status').textContent", "in force now").await;
    let saved = server.get("/api/alarm-settings", &admin).await.json();
    assert_eq!(saved["class"]["meter_tamper"]["priority"], "urgent", "{saved}");
    let w = browser.eval("document.documentElement.scrollWidth").await.unwrap();
    assert!(w.as_u64().unwrap() <= 390, "the page is {w} px wide on a 390 px phone");
    let small = browser
        .eval("[...document.querySelectorAll('button, select, input[type=number]')].filter(e => e.getBoundingClientRect().height < 44).length")
        .await
        .unwrap();
    assert_eq!(small, 0, "44 px tap targets on the phone");
    browser.screenshot(&target_dir().join("alarm-settings-390.png")).await;
    // A bad value: the server's reason, with its key, on the page.
    browser.eval("document.querySelector('#devices').value = '{\"nowhere\": {}}'").await.unwrap();
    browser.click("#save").await;
    wait_text(&browser, "the refusal", "document.querySelector('#status').textContent", "device.nowhere").await;
    assert_eq!(browser.page_errors(), Vec::<String>::new());
    server.app.shutdown().await;
}
