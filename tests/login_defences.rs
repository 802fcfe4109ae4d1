//! Login that cannot be turned into a weapon (issue 8 §1, R-G4): concurrent password checks are bounded (excess
//! refused at once with 503, memory stays within a stated bound, measured from `/proc`), the throttle keys
//! (user, address) pairs so an attacker cannot lock a real user out, simultaneous guesses cannot bypass it,
//! `X-Forwarded-For` is believed only from trusted proxies, and HTTP Basic credentials are checked once and
//! then cached.
//!
//! Second client addresses are real: Linux routes all of 127.0.0.0/8 to loopback, so a test connects from
//! 127.0.0.2 and up without a second machine.

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("an address"))
}

async fn login_from(source: Option<IpAddr>, base: &str, user: &str, password: &str, xff: Option<&str>) -> Response {
    let body = json!({ "username": user, "password": password }).to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(x) = xff {
        headers.push(("x-forwarded-for", x));
    }
    http_from(source, base, "POST", "/api/login", &headers, &body).await
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// Growth of resident memory allowed while 64 failed logins arrive at once, with 2 checks allowed at once.
/// argon2 takes about 19 MiB per check; unbounded, 64 checks took well over 1 GiB.
const RSS_GROWTH_BOUND_MIB: u64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_are_bounded_refused_fast_and_memory_stays_bounded() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = temp_dir("login-rss");
    let config = VILLAGE.replacen("[server]\n", "[server]\nmax_concurrent_logins = 2\n", 1);
    let path = dir.join("waterworks.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_waterworks"))
        .args(["run", "--config", &path.display().to_string(), "--data-dir", &data.display().to_string()])
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env("WATERWORKS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run waterworks");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.ok()?;
            if let Some(rest) = line.split("HMI: ").nth(1) {
                return Some(rest.split_whitespace().next()?.trim_end_matches('/').to_owned());
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("the server says where it listens");

    // Warm up (one real login) before the baseline, so the first argon2 run is not counted as growth.
    assert_eq!(login_from(None, &base, "admin", ADMIN_PASSWORD, None).await.status, 200);
    let baseline = vm_rss_kib(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(vm_rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    // 64 simultaneous failed logins, each for another name so the throttle lets all of them try.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let r = login_from(None, &base, &format!("intruder{i}"), "wrong password", None).await;
                (r, started.elapsed())
            })
        })
        .collect();
    let mut busy = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (r, took) = t.await.unwrap();
        match r.status {
            503 => {
                assert_eq!(r.json()["code"], "busy", "{}", r.body);
                assert_eq!(r.header("retry-after"), Some("1"));
                busy.push(took);
            }
            401 => failed += 1,
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("RSS {} MiB before, {} MiB at the peak: grew {growth_mib} MiB", baseline / 1024, peak / 1024);
    assert!(
        growth_mib < RSS_GROWTH_BOUND_MIB,
        "RSS grew {growth_mib} MiB (from {} MiB to {} MiB)",
        baseline / 1024,
        peak / 1024
    );
    assert!(busy.len() >= 32, "only {} of 64 refused as busy ({failed} checked)", busy.len());
    // A refusal does not wait for a password check: far quicker than one argon2 run plus the failure delay.
    busy.sort();
    let median = busy[busy.len() / 2];
    assert!(median < Duration::from_millis(500), "busy refusals took {median:?} (median)");
    // The real admin still gets in afterwards, and the refusals are counted.
    let r = login_from(None, &base, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let metrics = http(&base, "GET", "/metrics", &[("cookie", cookie.as_str())], "").await.body;
    assert!(metrics.contains(&format!("waterworks_logins_busy_total {}", busy.len())), "{metrics}");
    assert!(metrics.contains("waterworks_max_concurrent_logins 2"), "{metrics}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_guesses_are_throttled_and_the_real_user_still_gets_in() {
    // Enough permits that no guess is refused as busy: this test is about the throttle alone.
    let server = start(&VILLAGE.replacen("[server]\n", "[server]\nmax_concurrent_logins = 200\n", 1)).await;
    let attacker = ip("127.0.0.1");
    // 160 simultaneous wrong passwords for one user from one address: each attempt is counted before it is
    // checked: the 3 free attempts are checked, and one more each time the progressive delay (1 s, 2 s, ...)
    // has passed while the burst still arrives; every other one is throttled.
    let tasks: Vec<_> = (0..160)
        .map(|_| {
            let base = server.base.clone();
            tokio::spawn(async move { login_from(attacker, &base, "admin", "wrong password", None).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5 && throttled == 160 - checked, "{checked} checked, {throttled} throttled: {statuses:?}");
    // The attacker's own pair stays delayed, even with the right password.
    assert_eq!(login_from(attacker, &server.base, "admin", ADMIN_PASSWORD, None).await.status, 429);
    // The admin from another address is not refused, however the attacker keeps failing, and attackers
    // rotating through addresses against the admin do not lock the admin out either.
    for round in 0..5 {
        for a in 3..8 {
            let r = login_from(ip(&format!("127.0.0.{a}")), &server.base, "admin", "wrong password", None).await;
            assert!([401, 429, 503].contains(&r.status), "{}", r.body);
        }
        let r = login_from(ip("127.0.0.2"), &server.base, "admin", ADMIN_PASSWORD, None).await;
        assert_eq!(r.status, 200, "round {round}: {}", r.body);
    }
    server.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    // 127.0.0.1 plays the TLS reverse proxy: trusted, it appends the client's address to X-Forwarded-For.
    let server = start(&VILLAGE.replacen("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n", 1)).await;
    let proxy = ip("127.0.0.1");
    // The attacker (forwarded as 203.0.113.9) fails until throttled, even forging an earlier hop each time.
    let mut throttled = 0;
    for i in 0..8 {
        let forwarded = format!("10.9.9.{i}, 203.0.113.9");
        let r = login_from(proxy, &server.base, "admin", "wrong password", Some(&forwarded)).await;
        assert!([401, 429].contains(&r.status), "{}", r.body);
        throttled += usize::from(r.status == 429);
    }
    assert!(throttled >= 4, "the forged hops must not reset the throttle: {throttled} of 8 throttled");
    // The real admin, at another address behind the same proxy, is not refused.
    let r = login_from(proxy, &server.base, "admin", ADMIN_PASSWORD, Some("198.51.100.7")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    // The audit names the forwarded address, not the proxy's.
    let audit = server.get("/api/audit", &cookie).await.json();
    let details: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login.failure")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(!details.is_empty() && details.iter().all(|d| *d == "from 203.0.113.9"), "{details:?}");

    // A peer that is not a trusted proxy cannot choose its address with X-Forwarded-For: rotating the header
    // does not escape the throttle of its real address.
    let stranger = ip("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..6 {
        let forged = format!("198.51.100.{}", 100 + i);
        statuses.push(login_from(stranger, &server.base, "admin", "wrong password", Some(&forged)).await.status);
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    server.app.shutdown().await;
}

fn counter(metrics: &str, name: &str) -> u64 {
    let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}"));
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}

fn basic(user: &str, password: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { T[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_are_checked_once_then_cached() {
    let server = start(VILLAGE).await;
    let right = basic("admin", ADMIN_PASSWORD);
    let get = |auth: String| {
        let base = server.base.clone();
        async move { http(&base, "GET", "/metrics", &[("authorization", auth.as_str())], "").await }
    };
    let first = get(right.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let checks = counter(&first.body, "waterworks_password_checks_total");
    // The second and third requests take no permit and run no argon2.
    for _ in 0..2 {
        let again = get(right.clone()).await;
        assert_eq!(again.status, 200);
        assert_eq!(counter(&again.body, "waterworks_password_checks_total"), checks, "hashed again");
    }
    let last = get(right.clone()).await;
    assert_eq!(counter(&last.body, "waterworks_basic_cache_hits_total"), 3);
    // A wrong password for the same user is not let in by the cache: it is checked and refused.
    let wrong = get(basic("admin", "not the password")).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let after = get(right).await;
    assert_eq!(counter(&after.body, "waterworks_password_checks_total"), checks + 1);
    server.app.shutdown().await;
}
