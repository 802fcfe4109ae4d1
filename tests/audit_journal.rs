//! The complete audit journal (issue 8 §4, R-F7, R-G4), each entry after the real action: a 403 of an operator
//! on an admin route, a throttled login (the address as resolved through `trusted_proxies`), a login refused
//! for a 60 KB user name (bounded: the store grows by a bounded amount per request), HTTP Basic access (once
//! per cache fill), the server's start, clean stop by SIGTERM, crash by SIGKILL found at the next start, a
//! configuration change between two starts, a valve command's outcome and a command cut off by a SIGKILL
//! (closed as interrupted at start, and the valve's last command after the restart). Then the query: filters,
//! paging by sequence number, the page-size cap and 400s for bad parameters. The admins' page runs in a real
//! headless Chromium at 1920×1080 and 390×844.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::browser::{js_string, Browser};
use support::*;

const OPERATOR_PASSWORD: &str = "a long enough password";

async fn create_user(base: &str, admin: &str, name: &str, role: &str) {
    let body = json!({ "username": name, "password": OPERATOR_PASSWORD, "role": role }).to_string();
    let r = http(base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", admin)], &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// The journal (newest first) as the admin sees it through `GET /api/audit?{query}`.
async fn audit(base: &str, cookie: &str, query: &str) -> Vec<Value> {
    let r = http(base, "GET", &format!("/api/audit?{query}"), &[("cookie", cookie)], "").await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.json().as_array().unwrap().clone()
}

fn with_action<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", support::browser::base64_encode(format!("{user}:{password}").as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_throttled_and_refused_logins_and_basic_access_are_audited_within_bounds() {
    let server = start(&VILLAGE.replacen("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n", 1)).await;
    let base = server.base.clone();
    let admin = server.admin().await;
    create_user(&base, &admin, "duty1", "operator").await;
    let operator = login_at(&base, "duty1", OPERATOR_PASSWORD).await;

    // 403: an operator on two admin routes, one of them twice.
    for path in ["/api/users", "/api/users", "/api/audit"] {
        assert_eq!(server.get(path, &operator).await.status, 403, "{path}");
    }
    let denied = audit(&base, &admin, "action=access.denied").await;
    let users_denial: Vec<_> = denied.iter().filter(|e| e["target"] == "GET /api/users").collect();
    assert_eq!(users_denial.len(), 1, "the repeat is counted, not written again: {denied:?}");
    let e = users_denial[0];
    assert_eq!(
        (e["actor"].as_str(), e["detail"].as_str(), e["ok"].as_bool()),
        (Some("duty1"), Some("role operator may not do this"), Some(false))
    );
    assert_eq!(e["times"], 2, "{e}");
    assert!(denied.iter().any(|e| e["target"] == "GET /api/audit" && e["times"] == 1), "{denied:?}");

    // A 403 that is not a role check: the admin's live stream opened from another site's page.
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\nCookie: {admin}\r\n\r\n",
        base.trim_start_matches("http://")
    );
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        stream.write_all(upgrade.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await.unwrap();
        String::from_utf8_lossy(&head[..n]).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let ws_denial = audit(&base, &admin, "action=access.denied&target=GET%20/ws").await;
    assert_eq!(ws_denial.len(), 1, "{ws_denial:?}");
    assert_eq!(
        (ws_denial[0]["actor"].as_str(), ws_denial[0]["detail"].as_str()),
        (Some("admin"), Some("cross-origin WebSocket refused"))
    );

    // Throttled: the fourth wrong password of one (user, address) pair is refused with 429; the address is the
    // client's from X-Forwarded-For, because the peer is a trusted proxy.
    let wrong = json!({ "username": "duty1", "password": "not the password" }).to_string();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let headers = [("content-type", "application/json"), ("x-forwarded-for", "203.0.113.7")];
        statuses.push(http(&base, "POST", "/api/login", &headers, &wrong).await.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    // A refusal is answered before its entry commits (a throttled burst must not wait for the store).
    let throttled = eventually(Duration::from_secs(10), "both throttled logins audited", || async {
        let found = audit(&base, &admin, "action=login.throttled").await;
        (found.first().is_some_and(|e| e["times"] == 2)).then_some(found)
    })
    .await;
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!((throttled[0]["actor"].as_str(), throttled[0]["times"].as_u64()), (Some("duty1"), Some(2)));
    assert!(throttled[0]["detail"].as_str().unwrap().contains("from 203.0.113.7"), "{throttled:?}");
    let failures = audit(&base, &admin, "action=login.failure&actor=duty1").await;
    assert_eq!((failures.len(), failures[0]["times"].as_u64()), (1, Some(3)), "{failures:?}");

    // HTTP Basic: audited once per cache fill (one password check), not per request.
    for _ in 0..3 {
        let r = http(&base, "GET", "/api/me", &[("authorization", &basic("admin", ADMIN_PASSWORD))], "").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let basic_entries = audit(&base, &admin, "action=login.basic").await;
    assert_eq!(basic_entries.len(), 1, "{basic_entries:?}");
    assert_eq!((basic_entries[0]["actor"].as_str(), basic_entries[0]["times"].as_u64()), (Some("admin"), Some(1)));

    // A flood of logins with 60 KB user names, each one different: refused, audited within bounds, and the
    // store grows by a bounded amount per request (it grew by 170 KB per request when names were stored whole).
    let store_file = server.dir.join("waterworks.redb");
    let size_before = std::fs::metadata(&store_file).unwrap().len();
    const FLOOD: usize = 64;
    for i in 0..FLOOD {
        let name = format!("{i:02}{}", "水".repeat(20_000));
        let body = json!({ "username": name, "password": "x" }).to_string();
        let r = http(&base, "POST", "/api/login", &[("content-type", "application/json")], &body).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    let refused = eventually(Duration::from_secs(10), "every refusal counted", || async {
        let found = audit(&base, &admin, "action=login.refused&limit=500").await;
        let counted: u64 = found.iter().filter_map(|e| e["times"].as_u64()).sum();
        (counted == FLOOD as u64).then_some(found)
    })
    .await;
    let grown = std::fs::metadata(&store_file).unwrap().len().saturating_sub(size_before);
    let per_request = grown / FLOOD as u64;
    eprintln!("store growth over {FLOOD} refused 60 KB logins: {grown} bytes ({per_request} per request)");
    assert!(per_request < 8 * 1024, "the store grew by {grown} bytes, {per_request} per request");
    // The refusals are one entry with a count, keyed by the client address; no text of the names is kept.
    assert_eq!(refused.len(), 1, "{refused:?}");
    let e = &refused[0];
    assert_eq!(
        (e["actor"].as_str(), e["target"].as_str(), e["times"].as_u64()),
        (Some("-"), Some("client 127.0.0.1"), Some(FLOOD as u64))
    );
    assert!(e["detail"].as_str().unwrap().contains("longer than 64 characters"), "{e}");
    assert!(!e.to_string().contains('水'), "{e}");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_filters_pages_newest_first_and_refuses_bad_parameters() {
    let server = start(VILLAGE).await;
    let base = server.base.clone();
    let admin = server.admin().await;
    for name in ["ops1", "ops2", "ops3"] {
        create_user(&base, &admin, name, "operator").await;
    }
    let ops1 = login_at(&base, "ops1", OPERATOR_PASSWORD).await;
    assert_eq!(server.get("/api/users", &ops1).await.status, 403);

    let all = audit(&base, &admin, "limit=500").await;
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    assert!(with_action(&all, "server.start").len() == 1, "{all:?}");

    // Exact and prefix filters, outcome, and a time range.
    let by_actor = audit(&base, &admin, "actor=ops1").await;
    assert!(!by_actor.is_empty() && by_actor.iter().all(|e| e["actor"] == "ops1"), "{by_actor:?}");
    let creates = audit(&base, &admin, "action=user.create&target=ops2").await;
    assert_eq!(creates.len(), 1, "{creates:?}");
    let logins = audit(&base, &admin, "action=login*").await;
    assert!(logins.len() >= 2 && logins.iter().all(|e| e["action"].as_str().unwrap().starts_with("login")));
    let targets = audit(&base, &admin, "action=user.create&target=ops*").await;
    assert_eq!(targets.len(), 3, "{targets:?}");
    let failed = audit(&base, &admin, "ok=false").await;
    assert!(!failed.is_empty() && failed.iter().all(|e| e["ok"] == false), "{failed:?}");
    assert_eq!(with_action(&failed, "access.denied").len(), 1);
    let ts: Vec<i64> = all.iter().map(|e| e["ts"].as_i64().unwrap()).collect();
    let (lo, hi) = (*ts.iter().min().unwrap(), *ts.iter().max().unwrap());
    assert_eq!(audit(&base, &admin, &format!("from={lo}&to={hi}&limit=500")).await.len(), all.len());
    assert_eq!(audit(&base, &admin, &format!("from={}", hi + 1)).await.len(), 0);
    assert!(audit(&base, &admin, &format!("to={lo}")).await.iter().all(|e| e["ts"].as_i64() == Some(lo)));

    // Paging by sequence number: pages of 2, each continuing where the last stopped, give the whole journal.
    let mut paged = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let query = match before {
            Some(b) => format!("limit=2&before={b}"),
            None => "limit=2".to_owned(),
        };
        let r = http(&base, "GET", &format!("/api/audit?{query}"), &[("cookie", &admin)], "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json().as_array().unwrap().clone();
        assert!(page.len() <= 2);
        paged.extend(page.iter().map(|e| e["seq"].as_u64().unwrap()));
        match r.header("x-next-before") {
            Some(next) => before = Some(next.parse().unwrap()),
            None => break,
        }
    }
    // Entries written meanwhile (none: only the admin reads) would only be newer than the first page.
    assert_eq!(paged, seqs, "paging gives every entry once, newest first");

    // Bad parameters: 400 with a message naming the problem; the cap is hard.
    for (query, says) in [
        ("limit=0", "limit must be 1 to 500"),
        ("limit=501", "limit must be 1 to 500"),
        ("ok=maybe", "ok"),
        ("from=abc", "from"),
        ("from=10&to=5", "from is later than to"),
        ("before=0", "before must be at least 1"),
        ("colour=red", "colour"),
    ] {
        let r = server.get(&format!("/api/audit?{query}"), &admin).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains(says), "{query}: {}", r.body);
    }
    let long = "a".repeat(161);
    let r = server.get(&format!("/api/audit?actor={long}"), &admin).await;
    assert_eq!(r.status, 400, "{}", r.body);
    server.app.shutdown().await;
}

/// A village with a valve whose simulated travel takes a minute, so a close command is in flight for long.
fn village_with_slow_valve() -> String {
    VILLAGE.replace("seed = 42", "seed = 42\nvalve_travel = \"60s\"")
        + r#"
[[region.valve]]
id = "west-v1"
name = "西村总阀"
address = "127.0.0.1:0"
model = "ww-valve-v1"
poll = "200ms"
timeout = "250ms"
confirm_timeout = "120s"
confirm_poll = "40ms"
"#
}

fn sigterm(server: &mut ServerProcess) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "a clean stop after SIGTERM: {exit:?}");
}

fn sigkill(server: &mut ServerProcess) {
    server.child.kill().expect("SIGKILL");
    let exit = server.child.wait().unwrap();
    assert!(!exit.success(), "killed, not exited: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_crash_config_change_and_an_interrupted_valve_command_are_audited() {
    let dir = temp_dir("audit-runs");
    let (config, data) = (dir.join("waterworks.toml"), dir.join("data"));
    std::fs::write(&config, village_with_slow_valve()).unwrap();
    let config_path = config.display().to_string();

    // 1. First start: server.start with the version and the configuration, and the first configuration hash.
    let mut first = ServerProcess::run(&config, &data);
    let admin = login_at(&first.base, "admin", ADMIN_PASSWORD).await;
    let entries = audit(&first.base, &admin, "actor=system").await;
    let start = with_action(&entries, "server.start");
    assert_eq!(start.len(), 1, "{entries:?}");
    let detail = start[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))), "{detail}");
    assert!(detail.contains(&config_path), "{detail}");
    let changed = with_action(&entries, "config.changed");
    assert_eq!(changed.len(), 1, "{entries:?}");
    let first_hash =
        changed[0]["detail"].as_str().unwrap().split("new ").nth(1).unwrap().split(';').next().unwrap().to_owned();
    assert!(changed[0]["detail"].as_str().unwrap().starts_with("old none new "), "{changed:?}");
    assert!(with_action(&entries, "server.crash_detected").is_empty());
    sigterm(&mut first);

    // 2. After SIGTERM: a clean stop with its signal; the same configuration is no change, and no crash.
    let mut second = ServerProcess::run(&config, &data);
    let admin = login_at(&second.base, "admin", ADMIN_PASSWORD).await;
    let entries = audit(&second.base, &admin, "actor=system").await;
    let stops = with_action(&entries, "server.stop");
    assert_eq!(stops.len(), 1, "{entries:?}");
    assert_eq!(stops[0]["detail"], "clean stop: signal SIGTERM");
    assert_eq!(with_action(&entries, "server.start").len(), 2);
    assert_eq!(with_action(&entries, "config.changed").len(), 1, "unchanged configuration: {entries:?}");
    assert!(with_action(&entries, "server.crash_detected").is_empty(), "{entries:?}");

    // 3. A close command is in flight (the valve travels for a minute) when the server is killed.
    let valve_open = || async {
        let r = http(&second.base, "GET", "/api/devices/west-v1", &[("cookie", &admin)], "").await;
        (r.json()["valve"]["state"] == "open").then_some(())
    };
    eventually(Duration::from_secs(20), "the valve polled open", valve_open).await;
    let (base, cookie) = (second.base.clone(), admin.clone());
    let command = tokio::spawn(async move {
        let body = json!({ "action": "close", "reason": "burst main" }).to_string();
        let headers = [("content-type", "application/json"), ("cookie", cookie.as_str())];
        // The server dies mid-command: the connection ends without an answer.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            let host = base.trim_start_matches("http://").to_owned();
            let mut stream = tokio::net::TcpStream::connect(host.as_str()).await.ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut req = format!(
                "POST /api/valves/west-v1/command HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
                body.len()
            );
            // A request with a session cookie must name the server's own origin (issue 8 §5).
            req.push_str(&format!("origin: http://{host}\r\n"));
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            req.push_str(&body);
            stream.write_all(req.as_bytes()).await.ok()?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.ok()?;
            Some(out)
        })
        .await;
    });
    eventually(Duration::from_secs(20), "the close command requested and moving", || async {
        let requested = audit(&second.base, &admin, "action=valve.close.requested").await;
        let r = http(&second.base, "GET", "/api/devices/west-v1", &[("cookie", &admin)], "").await;
        (!requested.is_empty() && r.json()["valve"]["state"] == "closing").then_some(())
    })
    .await;
    sigkill(&mut second);
    command.await.unwrap();

    // 4. The next start, with a changed configuration: the crash, the change with both hashes, the interrupted
    // command, and the valve's last command is that command, not null.
    std::fs::write(&config, village_with_slow_valve() + "\n# poll changed by the night shift\n").unwrap();
    let mut third = ServerProcess::run(&config, &data);
    let admin = login_at(&third.base, "admin", ADMIN_PASSWORD).await;
    let entries = audit(&third.base, &admin, "actor=system").await;
    let crash = with_action(&entries, "server.crash_detected");
    assert_eq!(crash.len(), 1, "{entries:?}");
    assert!(crash[0]["detail"].as_str().unwrap().contains("did not record a clean stop"), "{crash:?}");
    assert_eq!(crash[0]["ok"], false);
    let changed = with_action(&entries, "config.changed");
    assert_eq!(changed.len(), 2, "{entries:?}");
    let detail = changed[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("old {first_hash} new ")), "{detail}");
    assert!(!detail.contains(&format!("new {first_hash}")), "{detail}");
    assert_eq!(with_action(&entries, "server.stop").len(), 1, "the SIGKILL recorded no stop: {entries:?}");

    let interrupted = eventually(Duration::from_secs(20), "the interrupted command closed", || async {
        let found = audit(&third.base, &admin, "action=valve.close.interrupted").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    let e = &interrupted[0];
    assert_eq!(
        (e["actor"].as_str(), e["target"].as_str(), e["ok"].as_bool()),
        (Some("admin"), Some("west-v1"), Some(false))
    );
    assert!(e["detail"].as_str().unwrap().contains("reason: burst main"), "{e}");
    let view = http(&third.base, "GET", "/api/devices/west-v1", &[("cookie", &admin)], "").await.json();
    let last = &view["valve"]["last_command"];
    assert_eq!(
        (last["action"].as_str(), last["requested_by"].as_str(), last["result"].as_str(), last["error_code"].as_str()),
        (Some("close"), Some("admin"), Some("failed"), Some("command_interrupted")),
        "{view}"
    );
    // Closed once: a further restart finds nothing pending.
    sigterm(&mut third);
    let fourth = ServerProcess::run(&config, &data);
    let admin = login_at(&fourth.base, "admin", ADMIN_PASSWORD).await;
    assert_eq!(audit(&fourth.base, &admin, "action=valve.close.interrupted").await.len(), 1);
    let view = http(&fourth.base, "GET", "/api/devices/west-v1", &[("cookie", &admin)], "").await.json();
    assert_eq!(view["valve"]["last_command"]["error_code"], "command_interrupted", "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valve_command_and_a_refused_second_one_are_audited_with_their_outcomes() {
    let server = start(&village_with_slow_valve().replace("valve_travel = \"60s\"", "valve_travel = \"1s\"")).await;
    let admin = server.admin().await;
    eventually(Duration::from_secs(20), "the valve polled open", || async {
        (device(&server, &admin, "west-v1").await["valve"]["state"] == "open").then_some(())
    })
    .await;
    let (first, second) = tokio::join!(command_valve(&server, &admin, "west-v1", "close", "first"), async {
        eventually(Duration::from_secs(10), "the first command requested", || async {
            let requested = audit(&server.base, &admin, "action=valve.close.requested").await;
            (!requested.is_empty() && server.app.handle.field().valve_command_pending("west-v1")).then_some(())
        })
        .await;
        command_valve(&server, &admin, "west-v1", "close", "second").await
    });
    assert_eq!((first.status, second.status), (200, 409), "{} / {}", first.body, second.body);
    let entries = audit(&server.base, &admin, "target=west-v1&action=valve.*").await;
    let actions: Vec<&str> = entries.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["valve.close.requested", "valve.close.refused", "valve.close"], "{entries:?}");
    let outcome = with_action(&entries, "valve.close")[0];
    assert!(outcome["detail"].as_str().unwrap().starts_with("confirmed closed"), "{outcome}");
    assert_eq!(outcome["ok"], true);
    let refused = with_action(&entries, "valve.close.refused")[0];
    assert!(refused["detail"].as_str().unwrap().contains("reason: second"), "{refused}");
    assert_eq!(refused["ok"], false);
    server.app.shutdown().await;
}

/// What the audit page shows, as JavaScript.
const PAGE: &str = "(() => {
    const shown = e => !!e && e.checkVisibility();
    const W = Math.min(innerWidth, screen.width);
    const out = [...document.querySelectorAll('body *')].filter(e => shown(e) &&
        (r => r.left < -0.5 || r.right > W + 0.5)(e.getBoundingClientRect()))
        .map(e => (e.id || e.className || e.tagName));
    return {
        path: location.pathname, lang: document.documentElement.lang, title: document.querySelector('h1').textContent,
        rows: [...document.querySelectorAll('#rows tr')].map(r => ({ seq: Number(r.dataset.seq),
            action: r.querySelector('.action-label').textContent, actor: r.querySelector('.actor').textContent })),
        status: document.querySelector('#status').textContent, info: document.querySelector('#page-info').textContent,
        older: document.querySelector('#older').disabled, newer: document.querySelector('#newer').disabled,
        inner: innerWidth, screen: screen.width, page: document.documentElement.scrollWidth,
        search: shown(document.querySelector('#search')), filters: shown(document.querySelector('#filters')),
        out: out,
    };
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_the_journal_on_a_page_with_filters_and_paging_on_a_monitor_and_a_phone() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    create_user(&server.base, &admin, "duty1", "operator").await;
    let operator = login_at(&server.base, "duty1", OPERATOR_PASSWORD).await;
    // 60 accounts created: more than one page of 50 of them.
    for i in 0..60 {
        create_user(&server.base, &admin, &format!("u{i:02}"), "crew").await;
    }
    // The page is the admins': an operator gets 403, a stranger goes to the login page.
    assert_eq!(server.get("/audit", &operator).await.status, 403);
    let stranger = http(&server.base, "GET", "/audit", &[("accept", "text/html")], "").await;
    assert_eq!((stranger.status, stranger.header("location")), (303, Some("/login")));

    // Sign in through the form; the header links to the journal for admins.
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
            "the overview with the audit link",
            "[location.pathname, (a => a && !a.hidden)(document.querySelector('#audit-link'))]",
            "document.querySelector('header')?.outerHTML ?? location.href",
            |v| (v[0] == "/" && v[1] == true).then_some(()),
        )
        .await;
    browser.click("#audit-link").await;

    for (width, height) in [(1920u32, 1080u32), (390, 844)] {
        browser.set_viewport(width, height, width < 600).await;
        for lang in ["zh", "en"] {
            let at = format!("{width}x{height} {lang}");
            browser.click(&format!(".lang-switch button[data-lang=\"{lang}\"]")).await;
            browser.click("#clear").await;
            let first: Value = browser
                .wait_for(&format!("the newest page at {at}"), PAGE, "document.body.outerHTML.slice(0, 3000)", |v| {
                    let ready = v["path"] == "/audit" && v["rows"].as_array()?.len() == 50 && v["screen"] == width;
                    let translated =
                        if lang == "zh" { v["title"] == "审计日志" } else { v["title"] == "Audit journal" };
                    (ready && translated && v["older"] == false).then(|| v.clone())
                })
                .await;
            assert!(first["page"].as_u64() <= first["inner"].as_u64(), "{at}: the page scrolls sideways: {first}");
            assert_eq!(first["out"], json!([]), "{at}: elements stick out of the window: {first}");
            assert_eq!((&first["search"], &first["filters"]), (&json!(true), &json!(true)), "{at}");
            // The newest entry is the admin's login through the form.
            let label = if lang == "zh" { "登录" } else { "Login" };
            assert_eq!(
                (&first["rows"][0]["action"], &first["rows"][0]["actor"]),
                (&json!(label), &json!("admin")),
                "{at}: {first}"
            );
            // Older continues below the last entry shown.
            let last_seq = first["rows"][49]["seq"].as_u64().unwrap();
            browser.click("#older").await;
            let older: Value = browser
                .wait_for(&format!("the older page at {at}"), PAGE, "''", |v| {
                    let rows = v["rows"].as_array()?;
                    (!rows.is_empty() && rows[0]["seq"].as_u64()? < last_seq).then(|| v.clone())
                })
                .await;
            assert_eq!(older["newer"], false, "{at}: {older}");
            browser.screenshot(&target_dir().join(format!("audit-page-{width}-{lang}.png"))).await;

            // Filters: the accounts created, u00 to u59: 50, then the 10 older ones.
            browser.type_into("#f-action", "user.create").await;
            browser.type_into("#f-target", "u*").await;
            browser.eval(&format!("document.querySelector('#f-ok').value = {}", js_string("true"))).await.unwrap();
            browser.click("#search").await;
            let created = if lang == "zh" { "创建用户" } else { "User created" };
            let filtered: Value = browser
                .wait_for(&format!("the filtered page at {at}"), PAGE, "''", |v| {
                    let rows = v["rows"].as_array()?;
                    (rows.len() == 50 && rows.iter().all(|r| r["action"] == created) && v["older"] == false)
                        .then(|| v.clone())
                })
                .await;
            assert_eq!(filtered["rows"][0]["actor"], "admin", "{filtered}");
            browser.click("#older").await;
            browser
                .wait_for(&format!("the ten oldest accounts at {at}"), PAGE, "''", |v| {
                    let rows = v["rows"].as_array()?;
                    (rows.len() == 10 && rows.iter().all(|r| r["action"] == created) && v["older"] == true)
                        .then_some(())
                })
                .await;
            browser.click("#newest").await;
            browser
                .wait_for(&format!("back to the newest accounts at {at}"), PAGE, "''", |v| {
                    (v["rows"].as_array()?.len() == 50 && v["newer"] == true).then_some(())
                })
                .await;
        }
    }
    // No inline script and no inline event handler (the CSP is to forbid them).
    let inline = browser
        .eval(
            "({ scripts: [...document.scripts].filter(s => !s.src).length, handlers: [...document.querySelectorAll('*')] \
             .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length, styles: \
             document.querySelectorAll('style, [style]').length })",
        )
        .await
        .unwrap();
    assert_eq!(inline, json!({ "scripts": 0, "handlers": 0, "styles": 0 }), "inline code on the audit page");
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

fn target_dir() -> std::path::PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}
