//! The edges of the HTTP surface (issue 8 §5): methods a stranger may not use are refused with 401 before
//! routing, 401s carry the Basic challenge except for a browser's own scripts, large bodies get 413, and a
//! state-changing request with a browser session must name the server's own origin (refusals counted and
//! audited). The Content-Security-Policy allows no inline script.

mod support;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_json_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let body: Value = r.json();
    assert_eq!(body["code"], code, "{body}");
}

const CHALLENGE: &str = r#"Basic realm="waterworks", charset="UTF-8""#;

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", browser::base64_encode(format!("{user}:{password}").as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_401_for_any_method_and_scripts_get_the_basic_challenge() {
    let server = start(VILLAGE).await;
    // Logged in before the failed logins below throttle this address.
    let admin = server.admin().await;
    // TRACE, TRACK, methods that do not exist, and methods no path serves: 401 before routing, even on public
    // paths, never a 405 telling which paths exist.
    for (method, path) in [
        ("TRACE", "/"),
        ("TRACE", "/healthz"),
        ("TRACK", "/api/login"),
        ("FROB", "/api/devices"),
        ("DELETE", "/api/devices"),
        ("PUT", "/login"),
        ("OPTIONS", "/api/nope"),
        ("PATCH", "/healthz"),
    ] {
        let r = http(&server.base, method, path, &[], "").await;
        assert_json_error(&r, 401, "unauthenticated");
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{method} {path}");
    }
    // A public path's unsupported method is 401 too, not 405.
    assert_json_error(&http(&server.base, "DELETE", "/api/login", &[], "").await, 401, "unauthenticated");
    // Wrong Basic credentials: 401 with the challenge, even from a browser.
    let wrong = basic("admin", "wrong password");
    for fetch in [vec![], vec![("sec-fetch-mode", "cors")]] {
        let mut headers = fetch.clone();
        headers.push(("authorization", wrong.as_str()));
        let r = http(&server.base, "GET", "/api/devices", &headers, "").await;
        assert_json_error(&r, 401, "invalid_credentials");
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    }
    // The HMI's own scripts (fetch metadata, no Authorization) get no challenge: the browser would pop up its
    // password dialog over the login page.
    let r = http(&server.base, "GET", "/api/me", &[("sec-fetch-mode", "cors")], "").await;
    assert_json_error(&r, 401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), None);
    let bad_login = json!({ "username": "admin", "password": "not it" }).to_string();
    let r = http(
        &server.base,
        "POST",
        "/api/login",
        &[("content-type", "application/json"), ("sec-fetch-mode", "cors")],
        &bad_login,
    )
    .await;
    assert_json_error(&r, 401, "invalid_credentials");
    assert_eq!(r.header("www-authenticate"), None);
    // Authenticated, the router answers: 405 for a method a path does not serve.
    for method in ["TRACE", "FROB", "DELETE"] {
        let r = http(&server.base, method, "/api/devices", &[("cookie", admin.as_str())], "").await;
        assert_json_error(&r, 405, "method_not_allowed");
    }
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_get_413_json_declared_or_chunked() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let big = json!({ "username": "u", "password": "x".repeat(70_000), "role": "crew" }).to_string();
    // Declared: refused before it is read, with or without a session.
    for cookie in [None, Some(admin.as_str())] {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(cookie.map(|c| ("cookie", c)));
        let r = http(&server.base, "POST", "/api/users", &headers, &big).await;
        assert_json_error(&r, 413, "payload_too_large");
    }
    // Chunked (no length declared): refused as it outgrows the limit.
    let host = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /api/users HTTP/1.1\r\nHost: {host}\r\nOrigin: {}\r\nCookie: {admin}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.base
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.as_bytes().chunks(8192) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break; // the server answered and closed
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains(r#""code":"payload_too_large""#), "{text}");
    // Nothing was created, the refusals are counted, and the server serves on.
    assert_eq!(server.get("/api/users", &admin).await.json().as_array().unwrap().len(), 1);
    let metrics = server.get("/metrics", &admin).await.body;
    let n = metrics.lines().find_map(|l| l.strip_prefix("waterworks_http_body_too_large_total "));
    assert!(n.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 2), "{metrics}");
    server.app.shutdown().await;
}

async fn post(server: &TestServer, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    http_exact(&server.base, "POST", path, &all, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_requests_from_a_browser_session_must_name_this_origin() {
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let own = server.base.clone();
    let user =
        |name: &str| json!({ "username": name, "password": "a long enough password", "role": "crew" }).to_string();
    let cookie = ("cookie", admin.as_str());
    // Another site's page, a page whose origin is hidden (null), and a session without Origin: 403.
    for origin in [vec![("origin", "http://evil.example")], vec![("origin", "null")], vec![]] {
        let mut headers = vec![cookie];
        headers.extend(origin.clone());
        let r = post(&server, "/api/users", &headers, &user("csrf1")).await;
        assert_json_error(&r, 403, "forbidden");
    }
    // A foreign Origin is refused even without a session (login CSRF), and on logout.
    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD }).to_string();
    assert_json_error(
        &post(&server, "/api/login", &[("origin", "http://evil.example")], &login).await,
        403,
        "forbidden",
    );
    assert_json_error(
        &post(&server, "/api/logout", &[cookie, ("origin", "http://127.0.0.1:1")], "").await,
        403,
        "forbidden",
    );
    // The server's own origin passes; so does a same-origin Referer when there is no Origin.
    let r = post(&server, "/api/users", &[cookie, ("origin", own.as_str())], &user("ok1")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let referer = format!("{own}/");
    let r = post(&server, "/api/users", &[cookie, ("referer", referer.as_str())], &user("ok2")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Scripts with Basic credentials and no cookie are not browsers: no Origin needed.
    let basic = basic("admin", ADMIN_PASSWORD);
    let r = post(&server, "/api/users", &[("authorization", basic.as_str())], &user("ok3")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // None of the refused requests changed anything.
    let names: Vec<String> = server
        .get("/api/users", &admin)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "csrf1") && names.len() == 4, "{names:?}");
    // Refusals carrying a session are audited under that user; all are counted.
    let audit = server.get("/api/audit", &admin).await.json();
    let refused: Vec<&Value> = audit.as_array().unwrap().iter().filter(|e| e["action"] == "request.refused").collect();
    assert_eq!(refused.len(), 4, "{audit}");
    assert!(refused.iter().all(|e| e["actor"] == "admin" && e["ok"] == false), "{audit}");
    assert!(refused.iter().any(|e| e["detail"].as_str().unwrap().contains("http://evil.example")), "{audit}");
    let metrics = server.get("/metrics", &admin).await.body;
    assert!(metrics.contains("waterworks_http_origin_refused_total 5"), "{metrics}");
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_configured_public_origin_is_the_only_own_origin() {
    let config = VILLAGE.replacen("[server]\n", "[server]\npublic_origin = \"https://scada.example\"\n", 1);
    let server = start(&config).await;
    let admin = server.admin().await;
    let body = json!({ "username": "crew1", "password": "a long enough password", "role": "crew" }).to_string();
    let cookie = ("cookie", admin.as_str());
    let r = post(&server, "/api/users", &[cookie, ("origin", server.base.as_str())], &body).await;
    assert_json_error(&r, 403, "forbidden");
    let r = post(&server, "/api/users", &[cookie, ("origin", "https://scada.example")], &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_security_policy_allows_no_inline_script() {
    let server = start(VILLAGE).await;
    for path in ["/login", "/healthz"] {
        let r = http(&server.base, "GET", path, &[], "").await;
        let csp = r.header("content-security-policy").unwrap();
        assert_eq!(csp, hmi::CSP);
        let script = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src")).unwrap();
        assert_eq!(script, "script-src 'self'");
        assert!(!csp.contains("unsafe"), "{csp}");
        // Over plain HTTP there is no HSTS (tests/http_tls.rs checks it with TLS).
        assert_eq!(r.header("strict-transport-security"), None);
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    }
    server.app.shutdown().await;
}
