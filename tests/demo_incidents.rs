//! The demo breaks something now and then (issue 9 "Done when"): with `[simulator] incidents` set, the real
//! server's simulator drops a logger's chlorine below its limit, silences a concentrator and sets a meter's
//! tamper bit, one after the other, each for `incident_length`; the alarm engine raises each alarm and clears
//! it when the incident ends, as the alarm journal shows. (The schedule itself is tested under paused time in
//! `src/incidents.rs`.)

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The journal's transitions (oldest first) of the alarm `class~device~detail`.
async fn transitions(server: &TestServer, cookie: &str, class: &str, device: &str, detail: &str) -> Vec<String> {
    let path = format!("/api/alarms/journal?class={class}&device={device}&limit=1000");
    let journal = server.get(&path, cookie).await.json();
    let mut whats: Vec<String> = journal
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"]["detail"] == detail)
        .map(|r| r["what"].as_str().unwrap_or_default().to_owned())
        .collect();
    whats.reverse();
    whats
}

async fn came_and_went(server: &TestServer, cookie: &str, class: &str, device: &str, detail: &str) {
    eventually(Duration::from_secs(60), &format!("{class} at {device} {detail} raised and cleared"), || async {
        let whats = transitions(server, cookie, class, device, detail).await;
        let raised = whats.iter().position(|w| w == "activated")?;
        whats[raised..].iter().any(|w| w == "cleared").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_incidents_raise_alarms_that_clear_when_each_ends() {
    let config = VILLAGE.replace("seed = 42", "seed = 42\nincidents = \"1s\"\nincident_length = \"3s\"");
    let server = start(&config).await;
    let admin = server.admin().await;
    came_and_went(&server, &admin, "quality_low", "east-wq", "free_chlorine").await;
    came_and_went(&server, &admin, "comm_lost", "east-c1", "").await;
    came_and_went(&server, &admin, "meter_tamper", "east-c1", "E1-0012").await;
    let low = transitions(&server, &admin, "quality_low", "east-wq", "free_chlorine").await;
    assert_eq!(low.first().map(String::as_str), Some("activated"), "{low:?}");
    let standing: Value = server.get("/api/alarms", &admin).await.json();
    assert!(
        !standing.as_array().unwrap().iter().any(|a| a["key"]["class"] == "comm_lost" && a["active"] == true),
        "the concentrator answers again: {standing}"
    );
    server.app.shutdown().await;
}
