//! Remote valves (R-A7, issue 3 §5): a command writes, then reads back until confirmed or timed out (then
//! fault); commands to one valve are serialised and idempotent; every command is audited (who, when, why,
//! result); only operators and admins command; the live stream shows the valve's state.

mod support;

use std::time::Duration;

use actors::model::ValveAction;
use serde_json::{json, Value};
use sim::modbus::ModbusFault;
use support::*;

fn village_with_valve() -> String {
    VILLAGE.replace("seed = 42", "seed = 42\nvalve_travel = \"150ms\"")
        + r#"
[[region.valve]]
id = "west-v1"
name = "西村总阀"
address = "127.0.0.1:0"
model = "ww-valve-v1"
poll = "200ms"
timeout = "250ms"
confirm_timeout = "1s"
confirm_poll = "40ms"
"#
}

async fn create_user(server: &TestServer, admin: &str, name: &str, role: &str) -> String {
    let body = json!({ "username": name, "password": "a long enough password", "role": role }).to_string();
    let r = http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", admin)], &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.login(name, "a long enough password").await
}

fn audit_for(audit: &Value, action: &str) -> Vec<Value> {
    audit.as_array().unwrap().iter().filter(|e| e["action"] == action && e["target"] == "west-v1").cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_closes_and_opens_a_valve_with_read_back_and_audit() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    let operator = create_user(&server, &admin, "duty1", "operator").await;
    let mut ws = server.ws(&operator, "").await;
    ws.until(Duration::from_secs(10), |m| {
        m["type"] == "delta" && m["device"]["id"] == "west-v1" && m["device"]["valve"]["state"] == "open"
    })
    .await;

    let r = command_valve(&server, &operator, "west-v1", "close", "burst main on Xicun road").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let record = r.json();
    assert_eq!((record["result"].as_str(), record["state"].as_str()), (Some("confirmed"), Some("closed")), "{record}");
    assert_eq!((record["requested_by"].as_str(), record["action"].as_str()), (Some("duty1"), Some("close")));
    assert_eq!(server.sim().valve_open("west-v1"), Some(false), "the simulated valve really closed");
    // The live stream went through closing to closed.
    ws.until(Duration::from_secs(10), |m| {
        m["type"] == "delta" && m["device"]["id"] == "west-v1" && m["device"]["valve"]["state"] == "closing"
    })
    .await;
    ws.until(Duration::from_secs(10), |m| {
        m["type"] == "delta" && m["device"]["id"] == "west-v1" && m["device"]["valve"]["state"] == "closed"
    })
    .await;

    // Idempotent: closing a closed valve writes nothing.
    let writes = server.sim().valve_commands("west-v1").unwrap();
    let again = command_valve(&server, &operator, "west-v1", "close", "double click").await.json();
    assert_eq!(again["result"], "already_in_position", "{again}");
    assert_eq!(server.sim().valve_commands("west-v1"), Some(writes));

    let reopened = command_valve(&server, &operator, "west-v1", "open", "repair done").await.json();
    assert_eq!((reopened["result"].as_str(), reopened["state"].as_str()), (Some("confirmed"), Some("open")));

    // Every command is audited when requested and with its result: who, when, why, result.
    let audit = server.get("/api/audit?limit=100", &admin).await.json();
    let requested = audit_for(&audit, "valve.close.requested");
    assert_eq!(requested.len(), 2, "{audit}");
    assert!(requested.iter().all(|e| e["actor"] == "duty1" && e["ts"].is_i64()));
    let closes = audit_for(&audit, "valve.close");
    assert_eq!(closes.len(), 2);
    assert!(
        closes.iter().any(|e| e["ok"] == true
            && e["detail"].as_str().unwrap().contains("confirmed closed")
            && e["detail"].as_str().unwrap().contains("burst main")),
        "{closes:?}"
    );
    assert!(
        closes.iter().any(|e| e["detail"].as_str().unwrap().contains("already closed; nothing written")),
        "{closes:?}"
    );
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valve_that_never_confirms_ends_in_fault_with_an_audit_entry() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    eventually(Duration::from_secs(10), "valve polled", || async {
        let v = server.app.handle.field().device("west-v1").await.ok()?;
        (v.valve?.state == actors::model::ValveState::Open).then_some(())
    })
    .await;
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let record = command_valve(&server, &admin, "west-v1", "close", "arrears shut-off test").await.json();
    assert_eq!((record["result"].as_str(), record["state"].as_str()), (Some("failed"), Some("fault")), "{record}");
    assert!(record["error"].as_str().unwrap().contains("not confirmed within 1s (last read back: open)"), "{record}");
    // The failure's code and parameters, for the page to render in its language (issue 7 §7).
    assert_eq!(record["error_code"], "valve_not_confirmed", "{record}");
    assert_eq!(record["error_params"], serde_json::json!({"ms": 1000, "seen": "open"}), "{record}");
    assert_eq!(record["reason"], "arrears shut-off test", "the operator's reason is kept beside the error");
    // The fault is latched: polls that read the stuck valve "open" do not clear it.
    let polls = server.sim().requests("west-v1").unwrap();
    eventually(Duration::from_secs(5), "two more polls", || async {
        (server.sim().requests("west-v1")? > polls + 2).then_some(())
    })
    .await;
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(view["valve"]["state"], "fault");
    assert_eq!(view["valve"]["last_command"]["result"], "failed");
    let audit = server.get("/api/audit?limit=100", &admin).await.json();
    let failed = audit_for(&audit, "valve.close");
    assert_eq!(failed.len(), 1, "{audit}");
    assert_eq!((failed[0]["ok"].as_bool(), failed[0]["actor"].as_str()), (Some(false), Some("admin")));
    assert!(failed[0]["detail"].as_str().unwrap().contains("not confirmed"), "{failed:?}");

    // Freed, the next command works and clears the fault.
    server.sim().set_fault("west-v1", ModbusFault::default()).unwrap();
    let record = command_valve(&server, &admin, "west-v1", "close", "retry after freeing the spindle").await.json();
    assert_eq!((record["result"].as_str(), record["state"].as_str()), (Some("confirmed"), Some("closed")), "{record}");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_to_one_valve_run_one_at_a_time_and_roles_and_input_are_checked() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    let crew = create_user(&server, &admin, "crew1", "crew").await;
    eventually(Duration::from_secs(10), "valve polled", || async {
        server
            .app
            .handle
            .field()
            .device("west-v1")
            .await
            .ok()?
            .valve
            .filter(|v| v.state == actors::model::ValveState::Open)
    })
    .await;

    // While one command is pending (a stuck valve: it never confirms within its 1 s), every other command to
    // the valve is refused with 409 at once instead of queueing (issue 8 §3).
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let first = command_valve(&server, &admin, "west-v1", "close", "first");
    let others = async {
        eventually(Duration::from_secs(5), "the first command pending", || async {
            server.app.handle.field().valve_command_pending("west-v1").then_some(())
        })
        .await;
        let actions = ["open", "close"];
        futures_util::future::join_all(
            (0..10).map(|i| command_valve(&server, &admin, "west-v1", actions[i % 2], "impatient")),
        )
        .await
    };
    let (first, others) = tokio::join!(first, others);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["result"], "failed", "the stuck valve never confirmed: {}", first.body);
    for r in &others {
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.json()["code"], "conflict");
        assert!(r.json()["error"].as_str().unwrap().contains("already in progress (close by admin)"), "{}", r.body);
    }
    assert!(!server.app.handle.field().valve_command_pending("west-v1"));
    let audit = server.get("/api/audit", &admin).await.json();
    assert_eq!(audit_for(&audit, "valve.close.requested").len(), 1, "refused commands never reached the valve");
    assert_eq!(audit_for(&audit, "valve.open.requested").len(), 0);
    let metrics = server.get("/metrics", &admin).await.body;
    assert!(metrics.contains("waterworks_valve_commands_refused_total{reason=\"busy\"} 10"), "{metrics}");
    server.sim().set_fault("west-v1", ModbusFault::default()).unwrap();

    assert_eq!(command_valve(&server, &crew, "west-v1", "close", "not my job").await.status, 403);
    assert_eq!(command_valve(&server, &admin, "west-v1", "close", "   ").await.status, 400);
    assert_eq!(command_valve(&server, &admin, "west-v1", "explode", "why").await.status, 400);
    assert_eq!(command_valve(&server, &admin, "nosuch", "close", "why").await.status, 404);
    let r = http(
        &server.base,
        "POST",
        "/api/valves/west-v1/command",
        &[("content-type", "application/json")],
        r#"{"action":"close","reason":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    server.app.shutdown().await;
}

/// A valve commanded through a coil (function 5) and read back from a register (issue 3 §5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coil_valve_is_commanded_and_confirmed() {
    let config = village_with_valve()
        + r#"
[[region.valve]]
id = "west-v2"
address = "127.0.0.1:0"
model = "ww-valve-coil-v1"
poll = "200ms"
timeout = "250ms"
confirm_timeout = "1s"
confirm_poll = "40ms"
"#;
    let server = start(&config).await;
    let admin = server.admin().await;
    eventually(Duration::from_secs(10), "valve polled", || async {
        server
            .app
            .handle
            .field()
            .device("west-v2")
            .await
            .ok()?
            .valve
            .filter(|v| v.state == actors::model::ValveState::Open)
    })
    .await;
    let closed = command_valve(&server, &admin, "west-v2", "close", "coil test").await.json();
    assert_eq!((closed["result"].as_str(), closed["state"].as_str()), (Some("confirmed"), Some("closed")), "{closed}");
    assert_eq!(server.sim().valve_open("west-v2"), Some(false));
    let opened = command_valve(&server, &admin, "west-v2", "open", "coil test").await.json();
    assert_eq!((opened["result"].as_str(), opened["state"].as_str()), (Some("confirmed"), Some("open")), "{opened}");
    assert_eq!(server.sim().valve_commands("west-v2"), Some(2));
    server.app.shutdown().await;
}

// ----- issue 7 §5: the latched fault clears, raises events, rolls up, survives a restart -----

/// Resets a valve's latched fault through the HMI's route.
async fn reset_valve(server: &TestServer, cookie: &str, valve: &str, reason: &str) -> Response {
    let body = json!({ "reason": reason }).to_string();
    http(
        &server.base,
        "POST",
        &format!("/api/valves/{valve}/reset"),
        &[("content-type", "application/json"), ("cookie", cookie)],
        &body,
    )
    .await
}

/// The west region's roll-up from `/api/devices`.
async fn west_status(server: &TestServer, cookie: &str) -> Value {
    let all = server.get("/api/devices", cookie).await.json();
    all["regions"].as_array().unwrap().iter().find(|r| r["id"] == "west").cloned().unwrap()
}

fn valve_event(m: &Value, kind: &str) -> bool {
    m["type"] == "event" && m["event"]["kind"] == kind && m["event"]["device"] == "west-v1"
}

async fn polled_open(server: &TestServer) {
    eventually(Duration::from_secs(10), "valve polled open", || async {
        server
            .app
            .handle
            .field()
            .device("west-v1")
            .await
            .ok()?
            .valve
            .filter(|v| v.state == actors::model::ValveState::Open)
    })
    .await;
}

/// A valve slower than its confirmation time: the command fails in fault, the fault is an event and counts in
/// its region; when the valve gets there, the read-back clears it, with an event saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_valve_faults_then_the_read_back_clears_the_fault_with_events_and_roll_up() {
    let server = start(&village_with_valve().replace("valve_travel = \"150ms\"", "valve_travel = \"2500ms\"")).await;
    let admin = server.admin().await;
    let mut ws = server.ws(&admin, "").await;
    polled_open(&server).await;
    assert_eq!(west_status(&server, &admin).await["valve_fault"], 0);

    let record = command_valve(&server, &admin, "west-v1", "close", "night shut-off").await.json();
    assert_eq!((record["result"].as_str(), record["state"].as_str()), (Some("failed"), Some("fault")), "{record}");
    let raised = ws.until(Duration::from_secs(10), |m| valve_event(m, "valve_fault")).await;
    assert_eq!(raised["event"]["region"], "west", "{raised}");
    assert!(raised["event"]["message"].as_str().unwrap().contains("not confirmed within 1s"), "{raised}");
    assert_eq!(raised["event"]["params"]["error_code"], "valve_not_confirmed", "{raised}");
    let params: Value = serde_json::from_str(raised["event"]["params"]["error_params"].as_str().unwrap()).unwrap();
    assert_eq!(params["ms"], 1000, "{raised}");
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(
        (view["valve"]["state"].as_str(), view["valve"]["fault"]["action"].as_str()),
        (Some("fault"), Some("close"))
    );
    // The fault rolls up into the region (and so the summary tiles).
    assert_eq!(west_status(&server, &admin).await["valve_fault"], 1);

    // The valve arrives late: the next read-back matches the command and clears the fault.
    let cleared = ws.until(Duration::from_secs(15), |m| valve_event(m, "valve_fault_cleared")).await;
    assert_eq!(cleared["event"]["message"], "read back closed", "{cleared}");
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(view["valve"]["state"], "closed", "{view}");
    assert!(view["valve"]["fault"].is_null(), "{view}");
    assert_eq!(west_status(&server, &admin).await["valve_fault"], 0);
    server.app.shutdown().await;
}

/// A stuck valve stays in fault until an operator resets it; the reset is checked, audited and an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resets_a_latched_fault_audited_and_announced() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    let operator = create_user(&server, &admin, "duty1", "operator").await;
    let crew = create_user(&server, &admin, "crew1", "crew").await;
    polled_open(&server).await;
    // Not in fault: nothing to reset.
    assert_eq!(reset_valve(&server, &operator, "west-v1", "just in case").await.status, 409);

    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let record = command_valve(&server, &operator, "west-v1", "close", "arrears").await.json();
    assert_eq!(record["state"], "fault", "{record}");
    server.sim().set_fault("west-v1", ModbusFault::default()).unwrap();

    let mut ws = server.ws(&operator, "").await;
    assert_eq!(reset_valve(&server, &crew, "west-v1", "not my job").await.status, 403);
    assert_eq!(reset_valve(&server, &operator, "west-v1", "  ").await.status, 400);
    assert_eq!(reset_valve(&server, &operator, "nosuch", "why").await.status, 404);
    let r = http(
        &server.base,
        "POST",
        "/api/valves/west-v1/reset",
        &[("content-type", "application/json")],
        r#"{"reason":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(device(&server, &admin, "west-v1").await["valve"]["state"], "fault", "refusals change nothing");

    let r = reset_valve(&server, &operator, "west-v1", "spindle freed on site").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reset = r.json();
    assert_eq!((reset["state"].as_str(), reset["requested_by"].as_str()), (Some("open"), Some("duty1")), "{reset}");
    assert_eq!(reset["cleared"]["action"], "close", "{reset}");
    let cleared = ws.until(Duration::from_secs(10), |m| valve_event(m, "valve_fault_cleared")).await;
    assert_eq!(cleared["event"]["message"], "reset by duty1: spindle freed on site", "{cleared}");
    // Later polls read it open and keep it so.
    let polls = server.sim().requests("west-v1").unwrap();
    eventually(Duration::from_secs(5), "two more polls", || async {
        (server.sim().requests("west-v1")? > polls + 2).then_some(())
    })
    .await;
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(view["valve"]["state"], "open", "{view}");
    assert!(view["valve"]["fault"].is_null(), "{view}");
    assert_eq!(reset_valve(&server, &operator, "west-v1", "again").await.status, 409);

    let audit = server.get("/api/audit?limit=100", &admin).await.json();
    let resets = audit_for(&audit, "valve.reset");
    assert!(
        resets.iter().any(|e| e["ok"] == true
            && e["actor"] == "duty1"
            && e["ts"].is_i64()
            && e["detail"].as_str().unwrap().contains("spindle freed on site")),
        "{resets:?}"
    );
    assert_eq!(resets.iter().filter(|e| e["ok"] == false).count(), 2, "both refusals are audited: {resets:?}");
    server.app.shutdown().await;
}

/// A silent valve goes comm-lost and comes back, each an event like any device's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valve_that_stops_answering_raises_comm_lost_and_comm_restored() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    let mut ws = server.ws(&admin, "").await;
    polled_open(&server).await;
    server.sim().set_fault("west-v1", ModbusFault { silent: true, ..ModbusFault::default() }).unwrap();
    let lost = ws.until(Duration::from_secs(10), |m| valve_event(m, "comm_lost")).await;
    assert_eq!(lost["event"]["region"], "west", "{lost}");
    assert_eq!(lost["event"]["params"]["error_code"], "timeout", "the event renders in the page's language: {lost}");
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(view["comm"]["comm_lost"], true);
    // The comm error carries its code like every device's (issue 7 §7): a timeout, in milliseconds.
    assert_eq!(view["comm"]["last_error_code"], "timeout", "{view}");
    assert!(view["comm"]["last_error_params"]["ms"].as_u64().is_some(), "{view}");
    server.sim().set_fault("west-v1", ModbusFault::default()).unwrap();
    ws.until(Duration::from_secs(10), |m| valve_event(m, "comm_restored")).await;
    assert_eq!(device(&server, &admin, "west-v1").await["comm"]["comm_lost"], false);
    server.app.shutdown().await;
}

/// The last command and the latched fault survive a restart on the same data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_command_and_the_fault_survive_a_restart() {
    let config = village_with_valve();
    let server = start(&config).await;
    let admin = server.admin().await;
    polled_open(&server).await;
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let record = command_valve(&server, &admin, "west-v1", "close", "before the restart").await.json();
    assert_eq!(record["state"], "fault", "{record}");
    let dir = server.dir.clone();
    server.app.shutdown().await;
    // Actors let go of the store as they finish stopping; wait until it opens.
    eventually(Duration::from_secs(10), "the store released", || async {
        actors::store::Store::open(&dir).ok().map(drop)
    })
    .await;

    // The new simulator's valve is open: the latched close is not confirmed, so the fault stays.
    let server = start_in(&config, dir).await;
    let admin = server.admin().await;
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(view["valve"]["state"], "fault", "{view}");
    assert_eq!(view["valve"]["fault"]["action"], "close", "{view}");
    assert_eq!(view["valve"]["last_command"]["reason"], "before the restart", "{view}");
    assert_eq!(view["valve"]["last_command"]["result"], "failed", "{view}");
    assert_eq!(west_status(&server, &admin).await["valve_fault"], 1);
    // And after polls of the restarted actor, still.
    eventually(Duration::from_secs(10), "polled after the restart", || async {
        let v = server.app.handle.field().device("west-v1").await.ok()?;
        v.comm.status.last_success.map(|_| ())
    })
    .await;
    let view = device(&server, &admin, "west-v1").await;
    assert_eq!(
        (view["valve"]["state"].as_str(), view["valve"]["fault"]["action"].as_str()),
        (Some("fault"), Some("close"))
    );
    server.app.shutdown().await;
}

/// A command that waited in the valve's queue longer than `command_expiry` (behind one whose caller went away,
/// which freed the one-pending slot) is refused with 409, audited and not executed (issue 8 §3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_behind_an_abandoned_one_expires() {
    let config =
        village_with_valve().replace("confirm_poll = \"40ms\"", "confirm_poll = \"40ms\"\ncommand_expiry = \"300ms\"");
    let server = start(&config).await;
    let admin = server.admin().await;
    eventually(Duration::from_secs(10), "valve polled", || async {
        server
            .app
            .handle
            .field()
            .device("west-v1")
            .await
            .ok()?
            .valve
            .filter(|v| v.state == actors::model::ValveState::Open)
    })
    .await;
    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    // The first caller goes away while its command runs (the valve actor keeps running it for its 1 s).
    let handle = server.app.handle.clone();
    let abandoned =
        tokio::spawn(
            async move { handle.field().command_valve("west-v1", ValveAction::Close, "first", "admin").await },
        );
    eventually(Duration::from_secs(5), "the first command pending", || async {
        server.app.handle.field().valve_command_pending("west-v1").then_some(())
    })
    .await;
    abandoned.abort();
    let _ = abandoned.await;
    assert!(!server.app.handle.field().valve_command_pending("west-v1"), "the slot is freed with its caller");
    // The next command queues behind the running one and is too old when its turn comes.
    let r = command_valve(&server, &admin, "west-v1", "open", "second").await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("expired"), "{}", r.body);
    let audit = server.get("/api/audit", &admin).await.json();
    let expired = audit_for(&audit, "valve.open.expired");
    assert_eq!(expired.len(), 1, "{audit}");
    assert_eq!(expired[0]["ok"], false);
    assert_eq!(audit_for(&audit, "valve.open.requested").len(), 0, "the expired command was not executed");
    let metrics = server.get("/metrics", &admin).await.body;
    assert!(metrics.contains("waterworks_valve_commands_refused_total{reason=\"expired\"} 1"), "{metrics}");
    server.app.shutdown().await;
}

/// The standing alarm with this id, once it is in the state wanted.
async fn alarm_in(server: &TestServer, cookie: &str, id: &str, state: &str) -> Value {
    eventually(Duration::from_secs(20), &format!("alarm {id} {state}"), || async {
        let list = server.get("/api/alarms", cookie).await.json();
        list.as_array()?
            .iter()
            .find(|a| {
                let k = &a["key"];
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                format!("{}~{}~{}", s(&k["class"]), s(&k["device"]), s(&k["detail"])) == id && a["state"] == state
            })
            .cloned()
    })
    .await
}

/// Issue 9 §1 valve alarms: a valve turned by hand (no command) raises "uncommanded change of position",
/// announced as an event; a successful command clears it. A command that ends in fault raises "command
/// failed"; the operator's reset clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommanded_move_and_a_failed_command_are_alarms_that_clear() {
    let server = start(&village_with_valve()).await;
    let admin = server.admin().await;
    let operator = create_user(&server, &admin, "duty1", "operator").await;
    let mut ws = server.ws(&operator, "").await;
    polled_open(&server).await;
    let uncommanded = "valve_uncommanded~west-v1~";
    let failed = "valve_command_failed~west-v1~";

    assert!(server.sim().turn_valve_by_hand("west-v1", false));
    let moved = ws.until(Duration::from_secs(10), |m| valve_event(m, "valve_moved")).await;
    assert_eq!(
        (moved["event"]["params"]["uncommanded"].as_str(), moved["event"]["params"]["to"].as_str()),
        (Some("true"), Some("closed")),
        "{moved}"
    );
    let a = alarm_in(&server, &operator, uncommanded, "unacknowledged").await;
    assert_eq!((a["priority"].as_str(), a["region"].as_str()), (Some("high"), Some("west")), "{a}");
    // The operator puts it back where it belongs: the command clears the alarm.
    let r = command_valve(&server, &operator, "west-v1", "open", "turned by hand on site").await;
    assert_eq!(r.json()["result"], "confirmed", "{}", r.body);
    alarm_in(&server, &operator, uncommanded, "returned_unacknowledged").await;

    server.sim().set_fault("west-v1", ModbusFault { stuck: true, ..ModbusFault::default() }).unwrap();
    let record = command_valve(&server, &operator, "west-v1", "close", "arrears").await.json();
    assert_eq!(record["state"], "fault", "{record}");
    alarm_in(&server, &operator, failed, "unacknowledged").await;
    server.sim().set_fault("west-v1", ModbusFault::default()).unwrap();
    let r = reset_valve(&server, &operator, "west-v1", "spindle freed on site").await;
    assert_eq!(r.status, 200, "{}", r.body);
    alarm_in(&server, &operator, failed, "returned_unacknowledged").await;
    server.app.shutdown().await;
}
