//! The hardened systemd unit (`systemd/waterworks.service`, issue 8 §3): the protections and resource limits
//! are present with the values the README documents, the only writable path is the data directory the server
//! is started with, and `systemd-analyze verify` (where installed) knows and accepts every directive. It does
//! not start the unit (that needs a systemd machine).

use std::process::Command;

const UNIT: &str = include_str!("../systemd/waterworks.service");

/// Every value given to `key` in the unit, in order.
fn values(key: &str) -> Vec<&'static str> {
    UNIT.lines().filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(str::trim).collect()
}

#[test]
fn the_unit_has_its_protections_and_limits() {
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateIPC", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryHigh", "768M"),
        ("MemoryMax", "1G"),
        ("MemorySwapMax", "0"),
        ("TasksMax", "512"),
        ("LimitNOFILE", "65536"),
        ("ReadWritePaths", "/var/lib/waterworks"),
    ] {
        assert_eq!(values(key), vec![want], "{key}");
    }
    // The one writable path is where the store lives.
    let exec = values("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0].contains("--data-dir /var/lib/waterworks"), "{}", exec[0]);
    assert_eq!(values("StateDirectory"), vec!["waterworks"]);
}

#[test]
fn systemd_accepts_every_directive() {
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze is not installed; only the directives were checked");
        return;
    }
    // The binary is not installed here: point the commands at one that exists, the rest unchanged.
    let dir = std::env::temp_dir().join(format!("ww-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("waterworks.service");
    std::fs::write(&path, UNIT.replace("/usr/local/bin/waterworks", "/bin/true")).unwrap();
    let out = Command::new(analyze).arg("verify").arg(&path).output().expect("run systemd-analyze");
    let complaints = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
}
