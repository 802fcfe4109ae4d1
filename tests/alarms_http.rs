//! Alarms through the real server (issue 9 §2, §5): a chlorine dip made with the fault-injection API becomes
//! a standing alarm from the change feed, served by `GET /api/alarms`; an operator acknowledges it with a
//! comment (a second acknowledge is 409), shelves a comm-lost alarm within the operator's limit; a crew member
//! sees alarms but may not acknowledge; the journal is searchable and every action is audited.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

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

async fn user(server: &TestServer, admin: &str, name: &str, role: &str) -> String {
    let body = json!({ "username": name, "password": "a long enough password", "role": role });
    let r = post(server, admin, "/api/users", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.login(name, "a long enough password").await
}

/// The standing alarm with this id, once it is in the state wanted.
async fn standing(server: &TestServer, cookie: &str, id: &str, state: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("alarm {id} {state}"), || async {
        let list = server.get("/api/alarms", cookie).await.json();
        list.as_array()?.iter().find(|a| alarm_id(a) == id && a["state"] == state).cloned()
    })
    .await
}

fn alarm_id(a: &Value) -> String {
    format!(
        "{}~{}~{}",
        a["key"]["class"].as_str().unwrap(),
        a["key"]["device"].as_str().unwrap(),
        a["key"]["detail"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chlorine_dip_is_an_alarm_operators_acknowledge_and_shelve_and_crews_only_see() {
    let server = start_with_sim_control(VILLAGE).await;
    let admin = server.admin().await;
    let operator = user(&server, &admin, "duty1", "operator").await;
    let crew = user(&server, &admin, "crew1", "crew").await;

    // 0.1 mg/L free chlorine at the plant (GB 5749: at least 0.3): a high-priority low alarm, unacknowledged.
    sim_fault(&server, "east-wq", r#"{"values": {"free_chlorine": 0.1}}"#).await;
    let low = "quality_low~east-wq~free_chlorine";
    let alarm = standing(&server, &crew, low, "unacknowledged").await;
    assert_eq!(
        (alarm["priority"].as_str(), alarm["region"].as_str(), alarm["limit"].as_f64()),
        (Some("high"), Some("east"), Some(0.3)),
        "{alarm}"
    );
    assert!((alarm["value"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{alarm}");
    let list = server.get("/api/alarms", &admin).await.json();
    assert_eq!(
        list.as_array().unwrap().iter().filter(|a| alarm_id(a) == low).count(),
        1,
        "one alarm for one condition: {list}"
    );

    // The crew sees it but may not acknowledge it.
    let r = post(&server, &crew, &format!("/api/alarms/{low}/ack"), json!({})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The operator acknowledges it with a comment; a second acknowledge is refused.
    let r = post(&server, &operator, &format!("/api/alarms/{low}/ack"), json!({ "comment": "加氯泵已重启" })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["from"].as_str(), r.json()["to"].as_str()), (Some("unacknowledged"), Some("acknowledged")));
    let acked = standing(&server, &crew, low, "acknowledged").await;
    assert_eq!((acked["by"].as_str(), acked["comment"].as_str()), (Some("duty1"), Some("加氯泵已重启")));
    let r = post(&server, &operator, &format!("/api/alarms/{low}/ack"), json!({})).await;
    assert_eq!(r.status, 409, "{}", r.body);

    // A silent concentrator: its comm-lost alarm, shelved by the operator within one shift.
    sim_fault(&server, "east-c1", r#"{"silent": true}"#).await;
    let lost = "comm_lost~east-c1~";
    standing(&server, &operator, lost, "unacknowledged").await;
    let r = post(&server, &operator, &format!("/api/alarms/{lost}/shelve"), json!({ "minutes": 600 })).await;
    assert_eq!(r.status, 400, "longer than an operator may shelve: {}", r.body);
    let r = post(
        &server,
        &operator,
        &format!("/api/alarms/{lost}/shelve"),
        json!({ "minutes": 30, "reason": "crew on site" }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shelved = standing(&server, &operator, lost, "shelved").await;
    assert!(shelved["shelved_until"].as_i64().is_some(), "{shelved}");
    let r = post(&server, &operator, "/api/alarms/comm_lost~nowhere~/ack", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(&server, &operator, &format!("/api/alarms/{lost}/shelve"), json!({ "minutes": "soon" })).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // The journal: by state and by device; bad filters are refused.
    let journal = server.get("/api/alarms/journal?state=acknowledged&device=east-wq", &crew).await;
    assert_eq!(journal.status, 200, "{}", journal.body);
    let journal = journal.json();
    let records = journal.as_array().unwrap();
    assert_eq!(records.len(), 1, "{journal}");
    assert_eq!((records[0]["by"].as_str(), records[0]["what"].as_str()), (Some("duty1"), Some("acknowledged")));
    assert!(records[0]["id"].as_u64().is_some());
    let shelves = server.get("/api/alarms/journal?state=shelved&priority=high", &admin).await.json();
    assert_eq!(shelves.as_array().unwrap().len(), 1, "{shelves}");
    for bad in ["class=bogus", "state=asleep", "priority=4", "limit=x", "extra=1"] {
        let r = server.get(&format!("/api/alarms/journal?{bad}"), &admin).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }

    // Every action, and the refusals, in the audit journal.
    let audit = server.get("/api/audit", &admin).await.json();
    let actions: Vec<(String, String, bool)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"].as_str().is_some_and(|x| x.starts_with("alarm.")))
        .map(|a| {
            (a["action"].as_str().unwrap().into(), a["actor"].as_str().unwrap().into(), a["ok"].as_bool().unwrap())
        })
        .collect();
    let want = |a: &str, u: &str, ok: bool| (a.to_owned(), u.to_owned(), ok);
    for expect in [
        want("alarm.acknowledge", "crew1", false),
        want("alarm.acknowledge", "duty1", true),
        want("alarm.acknowledge", "duty1", false),
        want("alarm.shelve", "duty1", true),
    ] {
        assert!(actions.contains(&expect), "{expect:?} in {actions:?}");
    }
}
