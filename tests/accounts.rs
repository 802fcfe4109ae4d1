//! Account management end to end over real HTTP (issue 8 §2, R-F12): changing one's own password, an admin's
//! reset, disable and enable, delete (the audit trail kept), role change, the last admin kept, sessions listed
//! and revoked, every one of a user's sessions ended by those changes; sessions that survive a restart and are
//! stored only as hashes; the generated first admin forced to change the password; the password policy and
//! user-name normalisation with look-alikes refused.

mod support;

use serde_json::{json, Value};
use support::*;

const PW: &str = "a long enough password";

async fn send(server: &TestServer, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Response {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("cookie", cookie)];
    if !text.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    http(&server.base, method, path, &headers, &text).await
}

/// Logs in, returning the status and (on success) the cookie.
async fn try_login(server: &TestServer, username: &str, password: &str) -> (u16, Option<String>, Value) {
    let body = json!({ "username": username, "password": password }).to_string();
    let r = http(&server.base, "POST", "/api/login", &[("content-type", "application/json")], &body).await;
    let cookie = r.header("set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
    let json = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, cookie, json)
}

fn expect(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

async fn create(server: &TestServer, admin: &str, name: &str, role: &str) -> Response {
    send(server, "POST", "/api/users", admin, Some(json!({ "username": name, "password": PW, "role": role }))).await
}

/// The audit journal's entries for `action` on `target`, as (actor, ok), newest first.
async fn audited(server: &TestServer, admin: &str, action: &str, target: &str) -> Vec<(String, bool)> {
    let audit = server.get("/api/audit?limit=500", admin).await.json();
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .map(|e| (e["actor"].as_str().unwrap().to_owned(), e["ok"].as_bool().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_managed_by_admins_and_every_change_ends_the_sessions_it_should() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    assert_eq!(create(&server, &admin, "ops1", "operator").await.status, 201);
    assert_eq!(create(&server, &admin, "crew1", "crew").await.status, 201);
    let (ops_a, ops_b, crew) =
        (server.login("ops1", PW).await, server.login("ops1", PW).await, server.login("crew1", PW).await);

    // Only an admin changes other accounts; the refusals are audited.
    let r = send(&server, "POST", "/api/users/ops1/disable", &crew, None).await;
    expect(&r, 403, "forbidden");
    let r =
        send(&server, "POST", "/api/users/ops1/password", &crew, Some(json!({ "password": "another long one" }))).await;
    expect(&r, 403, "forbidden");
    let r = send(&server, "POST", "/api/users/crew1/role", &ops_a, Some(json!({ "role": "admin" }))).await;
    expect(&r, 403, "forbidden");
    assert_eq!(audited(&server, &admin, "user.disable", "ops1").await, vec![("crew1".to_owned(), false)]);
    assert_eq!(audited(&server, &admin, "user.role", "crew1").await, vec![("ops1".to_owned(), false)]);

    // Changing one's own password needs the old one and follows the policy; then every session of the user
    // ends and the caller gets a fresh one, and Basic credentials with the old password stop working at once
    // (they were cached).
    let basic = format!("Basic {}", support::browser::base64_encode(format!("ops1:{PW}").as_bytes()));
    let basic_header = [("authorization", basic.as_str())];
    let by_basic = || http(&server.base, "GET", "/api/me", &basic_header, "");
    assert_eq!(by_basic().await.status, 200);
    assert_eq!(by_basic().await.status, 200, "from the cache");
    let change = |old: &str, new: &str| json!({ "old_password": old, "new_password": new });
    let r =
        send(&server, "POST", "/api/me/password", &ops_a, Some(change("not the password", "new secret for ops"))).await;
    expect(&r, 403, "wrong_password");
    let r = send(&server, "POST", "/api/me/password", &ops_a, Some(change(PW, "password2024"))).await;
    expect(&r, 400, "password_common");
    assert_eq!(server.get("/api/me", &ops_b).await.status, 200, "a refused change ends nothing");
    let r = send(&server, "POST", "/api/me/password", &ops_a, Some(change(PW, "new secret for ops"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ops_new = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    expect(&server.get("/api/me", &ops_a).await, 401, "unauthenticated");
    expect(&server.get("/api/me", &ops_b).await, 401, "unauthenticated");
    assert_eq!(server.get("/api/me", &ops_new).await.json()["username"], "ops1");
    assert_eq!(by_basic().await.status, 401, "Basic credentials with the old password");
    assert_eq!(try_login(&server, "ops1", PW).await.0, 401);
    assert_eq!(try_login(&server, "ops1", "new secret for ops").await.0, 200);
    assert_eq!(
        audited(&server, &admin, "user.password.change", "ops1").await.first(),
        Some(&("ops1".to_owned(), true))
    );

    // An admin's reset ends the user's sessions, and the user must change the password before anything else.
    let r =
        send(&server, "POST", "/api/users/crew1/password", &admin, Some(json!({ "password": "reset by the admin" })))
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    expect(&server.get("/api/me", &crew).await, 401, "unauthenticated");
    let (status, crew, body) = try_login(&server, "crew1", "reset by the admin").await;
    assert_eq!((status, &body["user"]["must_change_password"]), (200, &json!(true)), "{body}");
    let crew = crew.unwrap();
    expect(&server.get("/api/devices", &crew).await, 403, "password_change_required");
    expect(&server.get("/api/sessions", &crew).await, 403, "password_change_required");
    assert_eq!(server.get("/api/me", &crew).await.json()["must_change_password"], true);
    let r = send(&server, "POST", "/api/me/password", &crew, Some(change("reset by the admin", "crew chose this one")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let crew = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(server.get("/api/devices", &crew).await.status, 200);

    // Disable ends the sessions and refuses the login; enable lets the user in again.
    let r = send(&server, "POST", "/api/users/ops1/disable", &admin, None).await;
    assert_eq!((r.status, &r.json()["disabled"]), (200, &json!(true)), "{}", r.body);
    expect(&server.get("/api/me", &ops_new).await, 401, "unauthenticated");
    assert_eq!(try_login(&server, "ops1", "new secret for ops").await.0, 401);
    assert_eq!(send(&server, "POST", "/api/users/ops1/enable", &admin, None).await.status, 200);
    expect(&server.get("/api/me", &ops_new).await, 401, "unauthenticated"); // ended, not just paused
    let (status, ops, _) = try_login(&server, "ops1", "new secret for ops").await;
    assert_eq!(status, 200);
    let ops = ops.unwrap();

    // Sessions: one's own, or everyone's for an admin; a user cannot end someone else's.
    let mine = server.get("/api/sessions", &ops).await.json();
    assert!(mine.as_array().unwrap().iter().all(|s| s["username"] == "ops1"), "{mine}");
    assert!(!mine.to_string().contains(ops.split('=').nth(1).unwrap()), "the token is never listed: {mine}");
    let all = server.get("/api/sessions", &admin).await.json();
    let admin_session =
        all.as_array().unwrap().iter().find(|s| s["username"] == "admin" && s["current"] == true).unwrap();
    let ops_session = all.as_array().unwrap().iter().find(|s| s["username"] == "ops1").unwrap();
    let r =
        send(&server, "DELETE", &format!("/api/sessions/{}", admin_session["id"].as_str().unwrap()), &ops, None).await;
    expect(&r, 404, "no_such_session");
    assert_eq!(server.get("/api/me", &admin).await.status, 200);
    let r =
        send(&server, "DELETE", &format!("/api/sessions/{}", ops_session["id"].as_str().unwrap()), &admin, None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    expect(&server.get("/api/me", &ops).await, 401, "unauthenticated");

    // A role change ends the sessions; the next login has the new role.
    let ops = server.login("ops1", "new secret for ops").await;
    let r = send(&server, "POST", "/api/users/ops1/role", &admin, Some(json!({ "role": "manager" }))).await;
    assert_eq!((r.status, &r.json()["role"]), (200, &json!("manager")), "{}", r.body);
    expect(&server.get("/api/me", &ops).await, 401, "unauthenticated");
    let ops = server.login("ops1", "new secret for ops").await;
    assert_eq!(server.get("/api/me", &ops).await.json()["role"], "manager");

    // The last enabled admin cannot be disabled, deleted or demoted.
    expect(&send(&server, "POST", "/api/users/admin/disable", &admin, None).await, 409, "last_admin");
    expect(&send(&server, "DELETE", "/api/users/admin", &admin, None).await, 409, "last_admin");
    let r = send(&server, "POST", "/api/users/admin/role", &admin, Some(json!({ "role": "operator" }))).await;
    expect(&r, 409, "last_admin");
    assert_eq!(server.get("/api/me", &admin).await.json()["role"], "admin", "nothing changed");
    assert_eq!(audited(&server, &admin, "user.delete", "admin").await, vec![("admin".to_owned(), false)]);
    // With a second admin, the first may go.
    assert_eq!(create(&server, &admin, "chief", "admin").await.status, 201);
    let chief = server.login("chief", PW).await;
    assert_eq!(send(&server, "POST", "/api/users/admin/disable", &chief, None).await.status, 200);
    expect(&server.get("/api/me", &admin).await, 401, "unauthenticated");
    expect(
        &send(&server, "POST", "/api/users/chief/role", &chief, Some(json!({ "role": "crew" }))).await,
        409,
        "last_admin",
    );

    // Delete: the account and its sessions go, the audit trail stays.
    let r = send(&server, "DELETE", "/api/users/crew1", &chief, None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    expect(&server.get("/api/me", &crew).await, 401, "unauthenticated");
    assert_eq!(try_login(&server, "crew1", "crew chose this one").await.0, 401);
    let users = server.get("/api/users", &chief).await.json();
    assert!(users.as_array().unwrap().iter().all(|u| u["username"] != "crew1"), "{users}");
    assert_eq!(audited(&server, &chief, "user.delete", "crew1").await, vec![("chief".to_owned(), true)]);
    assert!(!audited(&server, &chief, "user.password.change", "crew1").await.is_empty(), "the trail is kept");
    expect(&send(&server, "DELETE", "/api/users/crew1", &chief, None).await, 404, "no_such_user");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_the_store_holds_only_hashes_of_their_tokens() {
    let dir = temp_dir("sessions");
    let server = start_in(VILLAGE, dir.clone()).await;
    let cookie = server.admin().await;
    let token = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(server.get("/api/me", &cookie).await.status, 200);
    server.app.shutdown().await;

    // The token is nowhere in the store's file, its hash is; the store lists the session under the hash.
    let bytes = std::fs::read(dir.join(actors::store::DB_FILE)).unwrap();
    let hash = actors::auth::token_hash(&token);
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(&token), "the session token is stored in the file");
    assert!(contains(&hash), "the hash of the token is not in the file (is the session stored at all?)");
    {
        // The stopped server's last handles on the store may outlive `shutdown` by a moment.
        let store =
            eventually(std::time::Duration::from_secs(20), "the stopped server to release the store", || async {
                actors::store::Store::open(&dir).ok()
            })
            .await;
        let sessions = store.sessions().unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(sessions[0].0, hash);
        assert_eq!(sessions[0].1.username, "admin");
        assert!(!format!("{sessions:?}").contains(&token));
    }

    // After the restart the same cookie is still a session; logging out ends it for good.
    let server = start_in(VILLAGE, dir.clone()).await;
    assert_eq!(server.get("/api/me", &cookie).await.json()["username"], "admin");
    assert_eq!(http(&server.base, "POST", "/api/logout", &[("cookie", cookie.as_str())], "").await.status, 204);
    expect(&server.get("/api/me", &cookie).await, 401, "unauthenticated");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_first_admin_must_change_the_password_before_anything_else() {
    let dir = temp_dir("first-admin");
    let config = waterworks::config::parse("test.toml", VILLAGE, None).unwrap();
    let opts = waterworks::app::RunOptions {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(dir.clone()),
        admin_password: None,
        ..Default::default()
    };
    let app = waterworks::app::start(config, opts).await.unwrap();
    let generated = app.generated_admin_password.clone().expect("a generated password to print once");
    let server = TestServer { base: format!("http://{}", app.addr), app, dir };

    let (status, cookie, body) = try_login(&server, "admin", &generated).await;
    assert_eq!((status, &body["user"]["must_change_password"]), (200, &json!(true)), "{body}");
    let cookie = cookie.unwrap();
    // Only the change-password route (and what its page needs) answers; the rest is 403 with a clear code.
    expect(&server.get("/api/devices", &cookie).await, 403, "password_change_required");
    expect(&server.get("/api/users", &cookie).await, 403, "password_change_required");
    expect(&server.get("/metrics", &cookie).await, 403, "password_change_required");
    let r =
        send(&server, "POST", "/api/users", &cookie, Some(json!({"username": "x1", "password": PW, "role": "admin"})))
            .await;
    expect(&r, 403, "password_change_required");
    // A browser asking for the HMI is sent to the form.
    let r = http(&server.base, "GET", "/", &[("cookie", cookie.as_str()), ("accept", "text/html")], "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/account")));
    for page in ["/account", "/assets/account.js", "/assets/accounts-common.js", "/assets/accounts.css"] {
        assert_eq!(server.get(page, &cookie).await.status, 200, "{page}");
    }
    // The generated password is not accepted as the new one, nor is a weak one.
    let change = |new: &str| Some(json!({ "old_password": generated, "new_password": new }));
    expect(&send(&server, "POST", "/api/me/password", &cookie, change(&generated)).await, 400, "password_unchanged");
    expect(
        &send(&server, "POST", "/api/me/password", &cookie, change("admin-2026-xyz")).await,
        400,
        "password_contains_username",
    );
    let r = send(&server, "POST", "/api/me/password", &cookie, change("the chief engineer's own")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["user"].get("must_change_password").is_none(), "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(server.get("/api/devices", &cookie).await.status, 200);
    assert_eq!(try_login(&server, "admin", &generated).await.0, 401);
    let audit = server.get("/api/audit", &cookie).await.json();
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["action"] == "user.password.change" && e["ok"] == true),
        "{audit}"
    );
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_and_look_alike_names_are_refused_with_clear_codes() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let new_user = |name: &str, password: &str| json!({ "username": name, "password": password, "role": "operator" });
    let cases = [
        (new_user("ops3", "short"), 400, "password_too_short"),
        (new_user("ops3", "aaaaaaaaaa"), 400, "password_repetitive"),
        (new_user("ops3", "          "), 400, "password_blank"),
        (new_user("ops3", "I am ops3, hello"), 400, "password_contains_username"),
        (new_user("ops3", "password123"), 400, "password_common"),
        (new_user("ops3", "Qwertyuiop!"), 400, "password_common"),
        (new_user("ADMIN", PW), 409, "user_exists"),
        (new_user("ＡＤＭＩＮ", PW), 409, "user_exists"),
        (new_user("\u{0430}dmin", PW), 400, "username_characters"),
        (new_user("adrnin", PW), 409, "username_confusable"),
        (new_user("bad name!", PW), 400, "username_characters"),
    ];
    for (body, status, code) in cases {
        let r = send(&server, "POST", "/api/users", &admin, Some(body.clone())).await;
        assert_eq!((r.status, r.json()["code"].as_str().unwrap()), (status, code), "{body}: {}", r.body);
    }
    let r = send(&server, "POST", "/api/users", &admin, Some(new_user("ops3", "short"))).await;
    assert_eq!(r.json()["params"], json!({ "min": "10" }), "the page renders the limit: {}", r.body);
    let r = send(&server, "POST", "/api/users", &admin, Some(new_user("adrnin", PW))).await;
    assert_eq!(r.json()["params"], json!({ "existing": "admin" }));
    assert_eq!(server.get("/api/users", &admin).await.json().as_array().unwrap().len(), 1, "nothing was created");

    // Names are normalised at creation and at login.
    let r = send(&server, "POST", "/api/users", &admin, Some(new_user("Ops.Shift-2", PW))).await;
    assert_eq!((r.status, &r.json()["username"]), (201, &json!("ops.shift-2")), "{}", r.body);
    assert_eq!(try_login(&server, "OPS.SHIFT-2", PW).await.0, 200);
    assert_eq!(try_login(&server, "ＡＤＭＩＮ", ADMIN_PASSWORD).await.0, 200);
    assert_eq!(try_login(&server, "\u{0430}dmin", ADMIN_PASSWORD).await.0, 401);
    // A reset follows the policy too.
    let r = send(&server, "POST", "/api/users/ops.shift-2/password", &admin, Some(json!({ "password": "1234567890" })))
        .await;
    expect(&r, 400, "password_common");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_second_factor_is_enrolled_confirmed_required_at_login_good_once_and_removable_by_an_admin() {
    use actors::clock::{Clock, ManualClock};
    use std::sync::Arc;
    // A fixed clock: codes are computed here for exactly the server's time.
    let clock = Arc::new(ManualClock::new(actors::model::Timestamp(1_800_000_000_000)));
    let config = waterworks::config::parse("test.toml", VILLAGE, None).unwrap();
    let dir = temp_dir("totp");
    let opts = waterworks::app::RunOptions {
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: Some(dir.clone()),
        admin_password: Some(ADMIN_PASSWORD.into()),
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let app = waterworks::app::start(config, opts).await.unwrap();
    let server = TestServer { base: format!("http://{}", app.addr), app, dir };
    let admin = server.admin().await;
    assert_eq!(create(&server, &admin, "ops1", "operator").await.status, 201);
    assert_eq!(create(&server, &admin, "crew1", "crew").await.status, 201);
    let ops = server.login("ops1", PW).await;
    let crew = server.login("crew1", PW).await;
    let code_now = |secret: &str, offset_ms: i64| actors::totp::code_at(secret, clock.now().0 + offset_ms).unwrap();
    // Each login from its own loopback address unless said otherwise: the throttle counts per (user, address).
    let next = std::sync::atomic::AtomicU8::new(10);
    let login_from = |from: std::net::IpAddr, code: Option<String>| {
        let mut body = json!({ "username": "ops1", "password": PW });
        if let Some(c) = code {
            body["totp"] = json!(c);
        }
        let base = server.base.clone();
        async move {
            let headers = [("content-type", "application/json")];
            http_from(Some(from), &base, "POST", "/api/login", &headers, &body.to_string()).await
        }
    };
    let login = |code: Option<String>| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        login_from(std::net::IpAddr::from([127, 0, 0, n]), code)
    };

    // Only admins and operators enrol; the secret is shown once, with an otpauth URI.
    expect(&send(&server, "POST", "/api/me/totp", &crew, None).await, 403, "totp_not_for_role");
    let r = send(&server, "POST", "/api/me/totp", &ops, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let uri = r.json()["uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/Waterworks:ops1?secret=") && uri.contains(&secret), "{uri}");
    assert!(!server.get("/api/users", &admin).await.body.contains(&secret), "the secret is never listed");
    // Until confirmed, login needs no code; a wrong confirmation is refused.
    assert_eq!(login(None).await.status, 200);
    let wrong = if code_now(&secret, 0) == "000000" { "111111" } else { "000000" };
    let r = send(&server, "POST", "/api/me/totp/confirm", &ops, Some(json!({ "code": wrong }))).await;
    expect(&r, 400, "totp_invalid");
    let r = send(&server, "POST", "/api/me/totp/confirm", &ops, Some(json!({ "code": code_now(&secret, 0) }))).await;
    assert_eq!((r.status, &r.json()["totp"]), (200, &json!(true)), "{}", r.body);

    // Login now asks for a code; the confirming code (this step) is used up, so the next step's code is needed.
    // A missing or wrong code counts as a failed login in the throttle (the password alone is not testable
    // without limit): after three from one address, the fourth waits.
    let one = std::net::IpAddr::from([127, 0, 0, 2]);
    expect(&login_from(one, None).await, 401, "totp_required");
    expect(&login_from(one, Some(wrong.to_owned())).await, 401, "totp_invalid");
    expect(&login_from(one, Some(code_now(&secret, 0))).await, 401, "totp_invalid");
    expect(&login_from(one, Some(code_now(&secret, 30_000))).await, 429, "throttled");
    clock.advance_millis(30_000);
    let code = code_now(&secret, 0);
    let r = login(Some(code.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    expect(&login(Some(code)).await, 401, "totp_invalid"); // replay of the same step
                                                           // One step of skew either way is accepted; two are not.
    clock.advance_millis(60_000);
    expect(&login(Some(code_now(&secret, 60_000))).await, 401, "totp_invalid");
    assert_eq!(login(Some(code_now(&secret, -30_000))).await.status, 200, "the step before, not used yet");
    assert_eq!(login(Some(code_now(&secret, 30_000))).await.status, 200, "the step after");
    // Basic credentials carry no code: refused for this user.
    let basic = format!("Basic {}", support::browser::base64_encode(format!("ops1:{PW}").as_bytes()));
    expect(&http(&server.base, "GET", "/api/me", &[("authorization", basic.as_str())], "").await, 401, "totp_required");

    // A second enrolment needs an admin to remove the first; only an admin removes it, audited.
    expect(&send(&server, "POST", "/api/me/totp", &ops, None).await, 409, "totp_enrolled");
    expect(&send(&server, "DELETE", "/api/users/ops1/totp", &ops, None).await, 403, "forbidden");
    let r = send(&server, "DELETE", "/api/users/ops1/totp", &admin, None).await;
    assert_eq!((r.status, &r.json()["totp"]), (200, &json!(false)), "{}", r.body);
    assert_eq!(login(None).await.status, 200);
    let removals = audited(&server, &admin, "user.totp.remove", "ops1").await;
    assert_eq!(removals, vec![("admin".to_owned(), true), ("ops1".to_owned(), false)], "the refusal is audited too");
    assert_eq!(audited(&server, &admin, "user.totp.confirm", "ops1").await.first(), Some(&("ops1".to_owned(), true)));
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_admin_recovers_the_admin_while_the_server_is_stopped() {
    let dir = temp_dir("reset-admin");
    let reset = |dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_waterworks"))
            .args(["reset-admin", "--data-dir", &dir.display().to_string()])
            .env("RUST_LOG", "warn")
            .output()
            .expect("run waterworks reset-admin")
    };
    let server = start_in(VILLAGE, dir.clone()).await;
    let admin = server.admin().await;
    // Refused while a server holds the store.
    let o = reset(&dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked by another running process"), "{o:?}");
    // The lost admin: disabled (by another admin) and with a second factor, say. Here: simply disabled.
    assert_eq!(create(&server, &admin, "chief", "admin").await.status, 201);
    let chief = server.login("chief", PW).await;
    assert_eq!(send(&server, "POST", "/api/users/admin/disable", &chief, None).await.status, 200);
    server.app.shutdown().await;

    // The stopped server's last handles on the store may outlive `shutdown` by a moment.
    let o = eventually(std::time::Duration::from_secs(20), "the stopped server to release the store", || async {
        let o = reset(&dir);
        (!String::from_utf8_lossy(&o.stderr).contains("locked by another running process")).then_some(o)
    })
    .await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let password =
        out.split("with password ").nth(1).and_then(|r| r.split_whitespace().next()).expect("the password").to_owned();
    assert_eq!(password.len(), 20, "{out}");

    let server = start_in(VILLAGE, dir.clone()).await;
    assert_eq!(try_login(&server, "admin", ADMIN_PASSWORD).await.0, 401, "the old password is gone");
    let (status, cookie, body) = try_login(&server, "admin", &password).await;
    assert_eq!((status, &body["user"]["must_change_password"]), (200, &json!(true)), "{body}");
    let cookie = cookie.unwrap();
    expect(&server.get("/api/devices", &cookie).await, 403, "password_change_required");
    let r = send(
        &server,
        "POST",
        "/api/me/password",
        &cookie,
        Some(json!({ "old_password": password, "new_password": "recovered at last" })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(audited(&server, &cookie, "user.reset_admin", "admin").await, vec![("system".to_owned(), true)]);
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_disabling_each_other_at_once_leave_one_enabled() {
    let server = start(VILLAGE).await;
    let mut survivor = ("admin".to_owned(), ADMIN_PASSWORD.to_owned());
    for round in 0..5 {
        let newcomer = format!("chief{round}");
        let cookie = server.login(&survivor.0, &survivor.1).await;
        assert_eq!(create(&server, &cookie, &newcomer, "admin").await.status, 201);
        let other = server.login(&newcomer, PW).await;
        let (path_a, path_b) = (format!("/api/users/{newcomer}/disable"), format!("/api/users/{}/disable", survivor.0));
        let (a, b) =
            tokio::join!(send(&server, "POST", &path_a, &cookie, None), send(&server, "POST", &path_b, &other, None),);
        // One wins; the other is refused as the last admin, or its session already ended.
        let statuses = [a.status, b.status];
        assert!(
            statuses.contains(&200) && statuses.iter().any(|s| *s == 409 || *s == 401),
            "round {round}: {statuses:?}"
        );
        let winner = if a.status == 200 {
            server.login(&survivor.0, &survivor.1).await
        } else {
            server.login(&newcomer, PW).await
        };
        let users = server.get("/api/users", &winner).await.json();
        let enabled_admins: Vec<&str> = users
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["role"] == "admin" && u["disabled"] == false)
            .map(|u| u["username"].as_str().unwrap())
            .collect();
        assert_eq!(enabled_admins.len(), 1, "round {round}: {users}");
        if b.status == 200 {
            survivor = (newcomer, PW.to_owned());
        }
    }
    server.app.shutdown().await;
}
