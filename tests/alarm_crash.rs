//! A standing alarm and its journal survive SIGKILL (issue 9 §2): the real binary raises a water-quality
//! alarm (the logger's chlorine limit set above anything the simulator sends), an administrator acknowledges it with a comment, the process is
//! killed with SIGKILL right after the answer, and the server started again on the same data directory
//! shows the alarm acknowledged, with its comment, and one activation in the journal, not two.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const LOW: &str = "quality_low~east-wq~free_chlorine";

async fn alarm(base: &str, cookie: &str) -> Option<Value> {
    let list = http(base, "GET", "/api/alarms", &[("cookie", cookie)], "").await.json();
    list.as_array()?.iter().find(|a| a["key"]["class"] == "quality_low" && a["key"]["device"] == "east-wq").cloned()
}

async fn journal(base: &str, cookie: &str) -> Vec<Value> {
    let r = http(base, "GET", "/api/alarms/journal?device=east-wq&class=quality_low", &[("cookie", cookie)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_alarm_and_its_journal_survive_sigkill() {
    let dir = temp_dir("alarm-crash");
    // Every chlorine sample is below a low limit of 50 mg/L: a standing low alarm.
    let low = r#"{ name = "free_chlorine", cycle = "300ms", low = 50.0, high = 100.0 }"#;
    let text = VILLAGE.replace(r#"{ name = "free_chlorine", cycle = "300ms" }"#, low);
    assert_ne!(text, VILLAGE);
    let config = dir.join("waterworks.toml");
    std::fs::write(&config, text).unwrap();
    let (config, data) = (config.display().to_string(), dir.join("data").display().to_string());

    let mut server = ServerProcess::run(&config, &data);
    let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
    let raised = eventually(Duration::from_secs(30), "the chlorine alarm", || alarm(&server.base, &cookie)).await;
    assert_eq!(
        (raised["state"].as_str(), raised["priority"].as_str()),
        (Some("unacknowledged"), Some("high")),
        "{raised}"
    );
    let body = json!({ "comment": "before the crash" }).to_string();
    let headers = [("content-type", "application/json"), ("cookie", cookie.as_str())];
    let r = http(&server.base, "POST", &format!("/api/alarms/{LOW}/ack"), &headers, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Kill -9 right after the acknowledgement's answer.
    server.child.kill().expect("SIGKILL");
    assert!(!server.child.wait().unwrap().success());
    drop(server);

    let server = ServerProcess::run(&config, &data);
    let cookie = login_at(&server.base, "admin", ADMIN_PASSWORD).await;
    let kept = alarm(&server.base, &cookie).await.expect("the standing alarm survived");
    assert_eq!(
        (kept["state"].as_str(), kept["comment"].as_str(), kept["by"].as_str()),
        (Some("acknowledged"), Some("before the crash"), Some("admin")),
        "{kept}"
    );
    let records = journal(&server.base, &cookie).await;
    let whats: Vec<&str> = records.iter().filter_map(|r| r["what"].as_str()).collect();
    assert_eq!(whats, vec!["acknowledged", "activated"], "one activation, then the acknowledgement: {records:?}");
}
