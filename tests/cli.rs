//! The real binary's contract (DESIGN.md "outside contract", R-A5): `validate` exits 0 or prints every
//! problem with file and key and exits 2; a bad config, a port in use, a locked or corrupt store each end as
//! one clear paragraph and a non-zero exit, never a panic trace.

mod support;

use std::process::{Command, Output};

use support::*;

fn waterworks(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waterworks")).args(args).env("RUST_LOG", "warn").output().expect("run waterworks")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn assert_clean_failure(o: &Output, code: i32, expect: &[&str]) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(code), "stdout: {out}\nstderr: {err}");
    for e in expect {
        assert!(err.contains(e), "stderr lacks {e:?}:\n{err}");
    }
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("stack backtrace"), "{err}");
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("waterworks.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn validate_accepts_the_shipped_configs() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config/example.toml", "config/demo.toml"] {
        let o = waterworks(&["validate", "--config", &format!("{root}/{file}")]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{file}: {out}{err}");
        assert!(out.contains(": ok ("), "{out}");
    }
    let o = waterworks(&["validate", "--config", &format!("{root}/config/example.toml")]);
    let out = text(&o).0;
    assert!(
        out.contains("ok (1 region: 3 Modbus devices, 2 CJ/T 188 gateways, 2 valves, 1 HJ 212 station, 1 MQTT meter group, 2 serial lines)"),
        "validate says what the file describes: {out}"
    );
}

#[test]
fn validate_names_every_problem_with_file_and_key_and_exits_2() {
    let dir = temp_dir("cli-validate");
    let path = write_config(
        &dir,
        &VILLAGE
            .replace("cycle = \"300ms\"\nmeters = { prefix = \"W1-\"", "cycle = \"fast\"\nmeters = { prefix = \"W1-\"")
            .replace("[simulator]\nenabled = true", "[simulator]\nenabled = true\nturbo = 1"),
    );
    let o = waterworks(&["validate", "--config", &path]);
    assert_clean_failure(&o, 2, &[&path, "unknown field `turbo`"]);
    let path = write_config(
        &dir,
        &VILLAGE
            .replace("cycle = \"300ms\"\nmeters = { prefix = \"W1-\"", "cycle = \"fast\"\nmeters = { prefix = \"W1-\"")
            .replace("model = \"hx-c200\"", "model = \"hx-c999\""),
    );
    let o = waterworks(&["validate", "--config", &path]);
    assert_clean_failure(
        &o,
        2,
        &[
            "the configuration has 2 problems",
            &format!("{path}: region[0] (east).concentrator[1] (east-c2).model: unknown model \"hx-c999\""),
            &format!("{path}: region[1] (west).concentrator[0] (west-c1).cycle: \"fast\" is not a duration"),
        ],
    );
    let o = waterworks(&["validate", "--config", "/nonexistent/waterworks.toml"]);
    assert_clean_failure(&o, 2, &["/nonexistent/waterworks.toml: cannot read"]);
    // `run` refuses the same config before opening anything.
    let o = waterworks(&["run", "--config", &path, "--data-dir", &dir.join("data").display().to_string()]);
    assert_clean_failure(&o, 2, &["unknown model \"hx-c999\""]);
    assert!(!dir.join("data").exists(), "nothing was created for an invalid config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_a_locked_store_and_a_corrupt_store_are_clear_errors() {
    let dir = temp_dir("cli-run");
    let path = write_config(&dir, VILLAGE);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let data = dir.join("data").display().to_string();
    let o = waterworks(&["run", "--config", &path, "--data-dir", &data, "--listen", &busy_addr]);
    assert_clean_failure(&o, 1, &[&format!("cannot listen on {busy_addr}"), "in use"]);

    // A store held by a running server is refused, naming the file.
    let server = start_in(VILLAGE, dir.join("held")).await;
    let held = dir.join("held").display().to_string();
    let o = waterworks(&["run", "--config", &path, "--data-dir", &held, "--listen", "127.0.0.1:0"]);
    assert_clean_failure(&o, 1, &["waterworks.redb", "locked by another running process"]);
    server.app.shutdown().await;

    // A file that is not a store at all.
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("waterworks.redb"), vec![0x42u8; 8192]).unwrap();
    let o = waterworks(&[
        "run",
        "--config",
        &path,
        "--data-dir",
        &corrupt.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_clean_failure(&o, 1, &["cannot start: store", "waterworks.redb", "cannot be opened"]);
    // An unusable data directory.
    let o = waterworks(&[
        "run",
        "--config",
        &path,
        "--data-dir",
        "/proc/waterworks-cannot-be-here",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_clean_failure(&o, 1, &["cannot create data directory /proc/waterworks-cannot-be-here"]);
}

#[test]
fn simulate_rejects_a_bad_fault_flag_naming_it() {
    let dir = temp_dir("cli-sim");
    let path = write_config(&dir, &VILLAGE.replace("127.0.0.1:0", "127.0.0.1:1"));
    let o = waterworks(&["simulate", "--config", &path, "--fault", "east-c1=explode"]);
    assert_clean_failure(&o, 2, &["--fault east-c1=explode"]);
    let o = waterworks(&["simulate", "--config", &path, "--fault", "nosuch=silent"]);
    assert_clean_failure(&o, 2, &["no device \"nosuch\""]);
}

#[test]
fn run_sim_control_needs_the_simulator_and_loopback() {
    let dir = temp_dir("cli-sim-control");
    let without_simulator = VILLAGE
        .replace("[simulator]\nenabled = true", "[simulator]\nenabled = false")
        .replace("127.0.0.1:0", "127.0.0.1:1");
    let path = write_config(&dir, &without_simulator);
    let data = dir.join("data").display().to_string();
    let o = waterworks(&["run", "--config", &path, "--data-dir", &data, "--sim-control", "127.0.0.1:0"]);
    assert_clean_failure(&o, 2, &["--sim-control 127.0.0.1:0", "does not enable the simulator", &path]);
    // The demo simulates everything, but the API never leaves loopback.
    let o = waterworks(&["run", "--data-dir", &data, "--sim-control", "0.0.0.0:9090"]);
    assert_clean_failure(&o, 2, &["--sim-control 0.0.0.0:9090", "loopback only"]);
    let o = waterworks(&["simulate", "--config", &path, "--control", "0.0.0.0:9090"]);
    assert_clean_failure(&o, 2, &["--control 0.0.0.0:9090", "loopback only"]);
}

/// Runs the server with `extra` arguments and stdout and stderr piped (as under systemd, whose journal is no
/// terminal), against devices that refuse every connection so that warnings come at once; returns the stdout
/// and stderr lines once the server said it runs and a poll failure was logged (or after 20 s), then kills
/// the server.
fn run_piped_until_a_poll_fails(tag: &str, extra: &[&str]) -> (Vec<String>, Vec<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    let dir = temp_dir(tag);
    let refusing = VILLAGE
        .replace("[simulator]\nenabled = true", "[simulator]\nenabled = false")
        .replace("address = \"127.0.0.1:0\"", "address = \"127.0.0.1:1\"");
    let path = write_config(&dir, &refusing);
    let data = dir.join("data").display().to_string();
    let mut args = vec!["run", "--config", &path, "--data-dir", &data, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_waterworks"))
        .args(&args)
        .env("RUST_LOG", "info")
        .env("WATERWORKS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run waterworks");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for (is_err, stream) in [(false, stdout), (true, stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send((is_err, line)).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let done = |out: &[String], err: &[String]| {
        out.iter().any(|l| l.contains("Waterworks is running.")) && err.iter().any(|l| l.contains("Poll failed."))
    };
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((true, line)) => err.push(line),
            Ok((false, line)) => out.push(line),
            Err(_) => break,
        }
        if done(&out, &err) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(done(&out, &err), "no start and poll failure within 20 s:\n{}\n{}", out.join("\n"), err.join("\n"));
    (out, err)
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let (out, lines) = run_piped_until_a_poll_fails("cli-log-text", &[]);
    for text in out.iter().chain(&lines) {
        assert!(!text.contains("\x1b["), "an ANSI escape in piped output: {text:?}");
    }
    assert!(lines.iter().any(|l| l.contains(" WARN ") && l.contains("Poll failed.")), "{lines:#?}");
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let (out, lines) = run_piped_until_a_poll_fails("cli-log-json", &["--log-format", "json"]);
    assert!(out.iter().all(|l| !l.contains("\x1b[")), "{out:?}");
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap_or("")), "{line}");
        assert!(v["fields"]["message"].is_string(), "no fields.message: {line}");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.len() >= 20 && t.contains('T')), "no timestamp: {line}");
        assert!(v["target"].is_string(), "{line}");
    }
    let failed = lines.iter().find(|l| l.contains("Poll failed.")).unwrap();
    let v: serde_json::Value = serde_json::from_str(failed).unwrap();
    assert_eq!(v["level"], "WARN", "{failed}");
    assert!(v["fields"]["device"].is_string() && v["fields"]["error"].is_string(), "the event's fields: {failed}");
    // A bad value is refused by the argument parser with exit 2, naming the accepted ones.
    let o = waterworks(&["validate", "--config", "x.toml", "--log-format", "yaml"]);
    assert_clean_failure(&o, 2, &["--log-format", "text", "json"]);
}
