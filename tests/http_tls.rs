//! Native TLS (issue 8 §5): with `server.tls_cert` and `tls_key` the server speaks HTTPS only. A self-signed
//! certificate made in the test (with the `openssl` command) serves a login over HTTPS to a client that trusts
//! it; responses carry HSTS; the session cookie is `__Host-session`, `Secure`, `Path=/`, without `Domain`;
//! plain HTTP to the port is answered 400 and closed, a stalled handshake is cut at the header timeout, and
//! the server keeps serving. Configuration refuses half a pair and names the key of a file it cannot use.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A self-signed certificate for `localhost` and 127.0.0.1 and its key, made by `openssl` in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.cert.pem")), dir.join(format!("{name}.key.pem")));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian package openssl) makes the test certificate");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// A TLS client trusting only `cert`.
fn client(cert: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTPS request (Connection: close) to `localhost` at `addr`.
async fn https(
    tls: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await; // a close without close_notify still leaves the answer read
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response { status, headers, body: body.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_login_with_hsts_and_a_host_prefixed_secure_cookie() {
    let dir = temp_dir("tls");
    let (cert, key) = self_signed(&dir, "server");
    let config = VILLAGE.replacen(
        "[server]\n",
        &format!("[server]\ntls_cert = {:?}\ntls_key = {:?}\nheader_timeout = \"1s\"\n", cert, key),
        1,
    );
    let server = start(&config).await;
    assert!(server.app.tls);
    let addr = server.app.addr;
    let tls = client(&cert);

    let r = https(&tls, addr, "GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("strict-transport-security"), Some(hmi::HSTS));

    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD }).to_string();
    let r = https(&tls, addr, "POST", "/api/login", &[("content-type", "application/json")], &login).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("strict-transport-security").is_some());
    let set_cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(set_cookie.starts_with("__Host-session="), "{set_cookie}");
    let attributes: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    for wanted in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {set_cookie}");
    }
    assert!(!attributes.iter().any(|a| a.to_ascii_lowercase().starts_with("domain")), "{set_cookie}");
    let cookie = attributes[0].to_owned();
    let r = https(&tls, addr, "GET", "/api/me", &[("cookie", &cookie)], "").await;
    assert_eq!((r.status, r.json()["username"].as_str()), (200, Some("admin")), "{}", r.body);
    // The same token under the plain-HTTP name is not a session here.
    let token = cookie.split_once('=').unwrap().1;
    let plain = format!("ww_session={token}");
    assert_eq!(https(&tls, addr, "GET", "/api/me", &[("cookie", &plain)], "").await.status, 401);
    // With TLS on, only an https origin is this server's.
    let origin = format!("https://localhost:{}", addr.port());
    let http_origin = format!("http://localhost:{}", addr.port());
    let r = https(&tls, addr, "POST", "/api/logout", &[("cookie", &cookie), ("origin", &http_origin)], "").await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Plain HTTP to the TLS port: a clear 400, and the connection closes.
    let r = http(&server.base, "GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "tls_required");
    // A handshake that stalls after its first byte is cut at the header timeout (1 s here).
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16]).await.unwrap();
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the stalled handshake was not closed");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    // A client that does not trust the certificate fails its handshake.
    let (other_cert, _) = self_signed(&dir, "other");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = client(&other_cert).connect(ServerName::try_from("localhost").unwrap(), tcp).await;
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    // Each is counted: the plain request once, the stalled and the refused handshakes.
    let failures = |body: &str, reason: &str| -> u64 {
        let line = format!("waterworks_tls_failures_total{{reason=\"{reason}\"}} ");
        body.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let counted = eventually(Duration::from_secs(10), "both handshake failures counted", || async {
        let body = https(&tls, addr, "GET", "/metrics", &[("cookie", &cookie)], "").await.body;
        (failures(&body, "handshake") >= 2).then_some(body)
    })
    .await;
    assert_eq!(failures(&counted, "plain_http"), 1, "{counted}");
    // The server serves on: the session still works and ends.
    let r = https(&tls, addr, "POST", "/api/logout", &[("cookie", &cookie), ("origin", &origin)], "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(r.header("set-cookie").unwrap().starts_with("__Host-session=;"));
    assert_eq!(https(&tls, addr, "GET", "/api/me", &[("cookie", &cookie)], "").await.status, 401);
    server.app.shutdown().await;
}

#[test]
fn configuration_wants_both_files_and_names_the_one_it_cannot_use() {
    let dir = temp_dir("tls-config");
    let (cert, key) = self_signed(&dir, "server");
    let (_, other_key) = self_signed(&dir, "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let missing = dir.join("missing.pem");
    let with = |keys: &str| VILLAGE.replacen("[server]\n", &format!("[server]\n{keys}"), 1);
    let problems = |keys: String| match waterworks::config::parse("t.toml", &with(&keys), None) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let pair = |c: &Path, k: &Path| format!("tls_cert = {c:?}\ntls_key = {k:?}\n");
    assert_eq!(problems(pair(&cert, &key)), "");
    let cases = [
        (format!("tls_cert = {cert:?}\n"), "server.tls_key: missing"),
        (format!("tls_key = {key:?}\n"), "server.tls_cert: missing"),
        (pair(&missing, &key), "server.tls_cert: cannot read"),
        (pair(&garbage, &key), "server.tls_cert: "),
        (pair(&cert, &garbage), "server.tls_key: "),
        (pair(&cert, &cert), "server.tls_key: "),
        (pair(&cert, &other_key), "server.tls_key: "),
    ];
    for (keys, expected) in cases {
        let text = problems(keys.clone());
        assert!(text.contains(expected), "{keys}: {text}");
    }
    assert!(problems(pair(&cert, &garbage)).contains("garbage.pem is not PEM a private key"));
    assert!(problems(pair(&cert, &other_key)).contains("does not fit the certificate"));
    assert!(problems("public_origin = \"https://scada.example/login\"\n".into()).contains("server.public_origin"));
}
