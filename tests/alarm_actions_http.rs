//! The alarm actions the summary page uses, through the real server (issue 9 §2, §5): acknowledging several
//! alarms in one request answers per id (done, already acknowledged, not standing); bad bodies are 400 and
//! change nothing; an operator unshelves; only an admin takes an alarm out of service (with a reason) and
//! returns it; every action and refusal is audited.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use sim::modbus::ModbusFault;
use support::*;

const LOW: &str = "quality_low~east-wq~free_chlorine";
const LOST: &str = "comm_lost~east-c1~";

async fn post(server: &TestServer, cookie: &str, path: &str, body: &str) -> Response {
    let headers = [("content-type", "application/json"), ("cookie", cookie)];
    http(&server.base, "POST", path, &headers, body).await
}

/// The state of the standing alarm `id` (by id: the simulated village also has meter alarms standing, e.g. a
/// tampered meter behind every concentrator).
async fn state_of(server: &TestServer, cookie: &str, id: &str) -> Option<String> {
    let list = server.get("/api/alarms", cookie).await.json();
    let key =
        |a: &Value| format!("{}~{}~{}", a["key"]["class"], a["key"]["device"], a["key"]["detail"]).replace('"', "");
    let found = list.as_array()?.iter().find(|a| key(a) == id)?;
    found["state"].as_str().map(str::to_owned)
}

async fn until_state(server: &TestServer, cookie: &str, id: &str, state: &str) {
    eventually(Duration::from_secs(30), &format!("{id} {state}"), || async {
        (state_of(server, cookie, id).await.as_deref() == Some(state)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_alarms_are_acknowledged_at_once_and_admins_alone_take_one_out_of_service() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let body = json!({ "username": "duty1", "password": "a long enough password", "role": "operator" });
    assert_eq!(post(&server, &admin, "/api/users", &body.to_string()).await.status, 201);
    let operator = server.login("duty1", "a long enough password").await;

    let fault = ModbusFault { values: [("free_chlorine".into(), 0.1)].into(), ..ModbusFault::default() };
    server.sim().set_fault("east-wq", fault).unwrap();
    server.sim().set_fault("east-c1", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    until_state(&server, &operator, LOW, "unacknowledged").await;
    until_state(&server, &operator, LOST, "unacknowledged").await;

    // Bad requests change nothing.
    let too_many: Vec<String> = (0..201).map(|i| format!("comm_lost~d{i}~")).collect();
    for bad in [json!({ "ids": [] }), json!({ "ids": too_many }), json!({ "ids": [LOW], "extra": 1 })] {
        let r = post(&server, &operator, "/api/alarms/ack", &bad.to_string()).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let r = post(&server, &operator, "/api/alarms/ack", "not json").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(state_of(&server, &operator, LOW).await.as_deref(), Some("unacknowledged"));

    // One request, three ids: done, done, not standing.
    let body = json!({ "ids": [LOW, LOST, "comm_lost~nowhere~"], "comment": "交班前确认" });
    let r = post(&server, &operator, "/api/alarms/ack", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.json()["results"].clone();
    let statuses: Vec<(Value, Value)> =
        results.as_array().unwrap().iter().map(|x| (x["id"].clone(), x["status"].clone())).collect();
    assert_eq!(
        statuses,
        vec![(json!(LOW), json!(200)), (json!(LOST), json!(200)), (json!("comm_lost~nowhere~"), json!(404))],
        "{results}"
    );
    assert_eq!(results[0]["record"]["comment"], "交班前确认", "{results}");
    // Again: both already acknowledged, each answered 409.
    let r = post(&server, &operator, "/api/alarms/ack", &json!({ "ids": [LOW, LOST] }).to_string()).await;
    let again: Vec<Value> = r.json()["results"].as_array().unwrap().iter().map(|x| x["status"].clone()).collect();
    assert_eq!(again, vec![json!(409), json!(409)], "{}", r.body);

    // Shelve and unshelve (operator).
    let r = post(&server, &operator, &format!("/api/alarms/{LOST}/shelve"), r#"{"minutes": 20}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(&server, &operator, &format!("/api/alarms/{LOST}/unshelve"), "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["what"], "unshelved", "{}", r.body);
    let r = post(&server, &operator, &format!("/api/alarms/{LOST}/unshelve"), "{}").await;
    assert_eq!(r.status, 409, "not shelved any more: {}", r.body);

    // Out of service: not for operators; admins with a reason; then back.
    let oos = format!("/api/alarms/{LOW}/out-of-service");
    let r = post(&server, &operator, &oos, r#"{"reason": "analyser replaced"}"#).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(&server, &admin, &oos, r#"{"reason": "  "}"#).await;
    assert_eq!(r.status, 400, "a reason is needed: {}", r.body);
    let r = post(&server, &admin, &oos, "{}").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&server, &admin, &oos, r#"{"reason": "分析仪更换中"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    until_state(&server, &operator, LOW, "out_of_service").await;
    let back = format!("/api/alarms/{LOW}/return-to-service");
    let r = post(&server, &operator, &back, "{}").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(&server, &admin, &back, "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let audit = server.get("/api/audit", &admin).await.json();
    let actions: Vec<(String, String, bool)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"].as_str().is_some_and(|x| x.starts_with("alarm.")))
        .map(|a| (a["action"].as_str().unwrap().into(), a["actor"].as_str().unwrap().into(), a["ok"] == true))
        .collect();
    for (action, actor, ok, times) in [
        ("alarm.acknowledge", "duty1", true, 2),
        ("alarm.acknowledge", "duty1", false, 2),
        ("alarm.unshelve", "duty1", true, 1),
        ("alarm.unshelve", "duty1", false, 1),
        ("alarm.out_of_service", "duty1", false, 1),
        ("alarm.out_of_service", "admin", true, 1),
        ("alarm.in_service", "duty1", false, 1),
        ("alarm.in_service", "admin", true, 1),
    ] {
        let n = actions.iter().filter(|(a, u, o)| a == action && u == actor && *o == ok).count();
        assert_eq!(n, times, "{action} by {actor} ok={ok}: {actions:?}");
    }
    server.app.shutdown().await;
}
