//! Alarm transitions on the live stream (issue 9 §2 "every transition committed before it is shown", §4 the
//! heartbeat), through the real server: a chlorine dip made with the fault-injection API arrives as an `alarm`
//! frame whose journal record the journal API already serves; an operator's acknowledgement arrives the same
//! way; a client that reconnects with `?since=` gets the transitions it missed, in order, without a gap in the
//! sequence; a new client's snapshot carries the standing alarms; heartbeats come every `live.heartbeat`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const LOW: &str = "quality_low~east-wq~free_chlorine";

async fn sim_fault(server: &TestServer, device: &str, body: &str) {
    let base = format!("http://{}", server.app.sim_control_addr.expect("fault-injection API"));
    let r =
        http(&base, "PUT", &format!("/devices/{device}/fault"), &[("content-type", "application/json")], body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn post(server: &TestServer, cookie: &str, path: &str, body: Value) -> Response {
    let headers = [("content-type", "application/json"), ("cookie", cookie)];
    http(&server.base, "POST", path, &headers, &body.to_string()).await
}

fn is_alarm(m: &Value, id: &str, what: &str) -> bool {
    m["type"] == "alarm" && m["id"] == id && m["record"]["what"] == what
}

/// Reads frames until `pred`, checking that every numbered frame follows the one before it (`last`).
async fn until_in_order(ws: &mut WsClient, last: &mut u64, pred: impl Fn(&Value) -> bool) -> Value {
    ws.until(Duration::from_secs(30), |m| {
        let seq = m["seq"].as_u64().unwrap_or(0);
        match m["type"].as_str() {
            Some("heartbeat") => assert_eq!(seq, *last, "a heartbeat carries the client's sequence: {m}"),
            Some("snapshot") => *last = seq,
            Some(_) => {
                assert_eq!(seq, *last + 1, "no gap, no repeat: {m}");
                *last = seq;
            }
            None => panic!("a frame without a type: {m}"),
        }
        pred(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_transitions_reach_live_clients_after_their_commit_and_a_reconnect_resumes_without_gaps() {
    let config = format!("{VILLAGE}\n[live]\nheartbeat = \"300ms\"\n");
    let server = start_with_sim_control(&config).await;
    let admin = server.admin().await;
    let r = post(
        &server,
        &admin,
        "/api/users",
        json!({ "username": "duty1", "password": "a long enough password", "role": "operator" }),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let operator = server.login("duty1", "a long enough password").await;

    let mut ws = server.ws(&operator, "").await;
    let snapshot = ws.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["alarms"], json!([]), "nothing standing yet");
    let epoch = snapshot["epoch"].as_str().unwrap().to_owned();
    let mut last = snapshot["seq"].as_u64().unwrap();

    // A heartbeat comes while the socket is otherwise busy with deltas.
    until_in_order(&mut ws, &mut last, |m| m["type"] == "heartbeat").await;

    // The engine raises the alarm from the change feed: the frame comes after the commit, so the journal
    // already has the record it carries.
    sim_fault(&server, "east-wq", r#"{"values": {"free_chlorine": 0.1}}"#).await;
    let raised = until_in_order(&mut ws, &mut last, |m| is_alarm(m, LOW, "activated")).await;
    let journal = server.get("/api/alarms/journal?device=east-wq", &operator).await.json();
    let number = raised["journal"].as_u64().expect("the journal number");
    assert!(
        journal.as_array().unwrap().iter().any(|r| r["id"] == number && r["what"] == "activated"),
        "record {number} in the journal when its frame arrived: {journal}"
    );
    assert_eq!(
        (raised["alarm"]["state"].as_str(), raised["alarm"]["priority"].as_str(), raised["record"]["limit"].as_f64()),
        (Some("unacknowledged"), Some("high"), Some(0.3)),
        "{raised}"
    );

    // An operator's acknowledgement goes the same way.
    let r = post(&server, &operator, &format!("/api/alarms/{LOW}/ack"), json!({ "comment": "加氯泵已重启" })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let acked = until_in_order(&mut ws, &mut last, |m| is_alarm(m, LOW, "acknowledged")).await;
    assert_eq!(acked["journal"].as_u64(), Some(number + 1), "journal order: {acked}");
    assert_eq!(
        (acked["record"]["by"].as_str(), acked["record"]["comment"].as_str()),
        (Some("duty1"), Some("加氯泵已重启"))
    );
    assert_eq!(acked["alarm"]["state"], "acknowledged", "{acked}");

    // Disconnected while the value recovers: the reconnecting client resumes where it left off and gets
    // every frame it missed, the alarm's return to normal among them, with no gap.
    ws.close().await;
    sim_fault(&server, "east-wq", r#"{"values": {}}"#).await;
    eventually(Duration::from_secs(30), "the alarm back to normal", || async {
        let list = server.get("/api/alarms", &operator).await.json();
        list.as_array()?.is_empty().then_some(())
    })
    .await;
    let mut ws = server.ws(&operator, &format!("?since={last}&epoch={epoch}")).await;
    let normal = until_in_order(&mut ws, &mut last, |m| is_alarm(m, LOW, "cleared")).await;
    assert_eq!(normal["alarm"], Value::Null, "no longer standing: {normal}");
    assert_eq!(normal["journal"].as_u64(), Some(number + 2), "{normal}");
    ws.close().await;

    // A new client starts right: the snapshot carries what is standing (a silent concentrator's alarm).
    sim_fault(&server, "east-c1", r#"{"silent": true}"#).await;
    let lost = "comm_lost~east-c1~";
    eventually(Duration::from_secs(30), "the comm-lost alarm", || async {
        let list = server.get("/api/alarms", &operator).await.json();
        list.as_array()?.iter().any(|a| a["key"]["device"] == "east-c1").then_some(())
    })
    .await;
    let mut ws = server.ws(&operator, "").await;
    let snapshot = ws.next().await;
    let standing: Vec<String> = snapshot["alarms"]
        .as_array()
        .expect("alarms in the snapshot")
        .iter()
        .map(|a| {
            format!(
                "{}~{}~{}",
                a["key"]["class"].as_str().unwrap(),
                a["key"]["device"].as_str().unwrap(),
                a["key"]["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert!(standing.contains(&lost.to_owned()), "{standing:?}");
}
