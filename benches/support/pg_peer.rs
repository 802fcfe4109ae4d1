//! The peer of the `store_writer` benchmark (issue 7 §8): the same workload written into PostgreSQL, in the
//! same run, so the README shows a ratio and not only an absolute figure.
//!
//! A throwaway cluster is created in a temporary directory (`initdb`, as the `postgres` user when run as root,
//! since PostgreSQL refuses to run as root), listening only on a Unix socket there, with durability as
//! shipped: `fsync = on`, `synchronous_commit = on` (a commit returns after its WAL is flushed, as our
//! acknowledgement does). The load is driven by `pgbench` with a custom script, each client one connection:
//! - 1 reading per transaction: `INSERT … ON CONFLICT (meter, ts) DO UPDATE` (the same idempotent overwrite
//!   as our `readings` table), closed loop with as many clients as our submitters, or offered at a fixed rate
//!   with `pgbench -R`;
//! - N readings per transaction: one multi-row `INSERT … SELECT … FROM generate_series` (batched inserts).
//!
//! Latency per transaction comes from pgbench's per-transaction log (with `-R`, the schedule lag is added, so
//! it is measured from the scheduled instant as ours is). Bytes written: WAL bytes (`pg_stat_wal`) plus the
//! data pages written by checkpoints, the background writer and backends (`pg_stat_bgwriter`, after a forced
//! `CHECKPOINT`), 8 KiB each. Bytes on disk: `pg_total_relation_size('readings')` (table plus its index).
//!
//! Needs PostgreSQL's server binaries and pgbench (Debian: `postgresql`, installed by
//! `scripts/install-bench-deps.sh`); without them the peer is skipped and says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running throwaway cluster.
pub struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    server: Child,
    as_postgres: bool,
}

/// What one peer run measured.
pub struct PeerRun {
    pub readings: u64,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
    pub bytes_written: Option<u64>,
}

impl PeerRun {
    pub fn readings_per_s(&self) -> f64 {
        self.readings as f64 / self.seconds.max(1e-9)
    }
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1] as f64 / 1e3
    }
    pub fn kib_written_per_reading(&self) -> Option<f64> {
        self.bytes_written.map(|b| b as f64 / 1024.0 / self.readings.max(1) as f64)
    }
}

fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists() && b.join("pgbench").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Pg {
    /// Creates and starts a cluster under `base`; `Err` says why the peer cannot run here.
    pub fn start(base: &Path) -> Result<Pg, String> {
        let bin = find_bin()
            .ok_or("no PostgreSQL server binaries under /usr/lib/postgresql (run scripts/install-bench-deps.sh)")?;
        let dir = base.join(format!("ww-pg-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !ok.success() {
                return Err("chown to the postgres user failed (is the postgresql package installed?)".into());
            }
        }
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let mut pg = Pg {
            dir: dir.clone(),
            bin,
            port,
            server: Command::new("true").spawn().map_err(|e| e.to_string())?,
            as_postgres,
        };
        let data = dir.join("data");
        pg.run("initdb", &["-D", &data.display().to_string(), "-A", "trust", "-U", "postgres", "--no-sync"])?;
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nport = {port}\nmax_connections = 300\n\
             shared_buffers = 512MB\nfsync = on\nsynchronous_commit = on\nwal_level = minimal\nmax_wal_senders = 0\n\
             max_wal_size = 4GB\ncheckpoint_timeout = 30min\n",
            dir.display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).map_err(|e| e.to_string())?;
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).map_err(|e| e.to_string())?;
        pg.server = pg
            .command("postgres", &["-D", &data.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg.psql("SELECT 1").is_err() {
            if Instant::now() > deadline {
                return Err("the PostgreSQL server did not accept connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(pg)
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = if tool.starts_with('/') { PathBuf::from(tool) } else { self.bin.join(tool) };
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args).current_dir(&self.dir);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = self.command(tool, args).output().map_err(|e| format!("{tool}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{tool} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.dir.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    /// Runs SQL, returns the unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let mut args: Vec<String> = self.conn_args();
        args.extend(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let psql = if self.bin.join("psql").exists() { self.bin.join("psql") } else { PathBuf::from("/usr/bin/psql") };
        self.run(&psql.display().to_string(), &refs).map(|s| s.trim().to_owned())
    }

    /// A fresh `readings` table shaped like ours: `(meter, ts)` primary key, litres and status.
    pub fn reset_table(&self) -> Result<(), String> {
        self.psql(
            "DROP TABLE IF EXISTS readings; \
             CREATE TABLE readings (meter text NOT NULL, ts bigint NOT NULL, litres bigint NOT NULL, \
             status smallint NOT NULL, PRIMARY KEY (meter, ts))",
        )
        .map(|_| ())
    }

    fn written_bytes(&self) -> Result<u64, String> {
        let wal: u64 =
            self.psql("SELECT wal_bytes FROM pg_stat_wal")?.parse().map_err(|e| format!("wal_bytes: {e}"))?;
        let pages: u64 = self
            .psql("SELECT buffers_checkpoint + buffers_clean + buffers_backend FROM pg_stat_bgwriter")?
            .parse()
            .map_err(|e| format!("buffers: {e}"))?;
        Ok(wal + pages * 8192)
    }

    /// Drives `readings` readings, `per_tx` per transaction, with `clients` connections; `rate` offers that
    /// many readings per second (open loop) instead of a closed loop.
    pub fn drive(&self, readings: u64, per_tx: u64, clients: usize, rate: Option<u64>) -> Result<PeerRun, String> {
        self.reset_table()?;
        let script = self.dir.join(format!("insert-{per_tx}.sql"));
        let sql = if per_tx == 1 {
            "\\set i random(1, 1000000000000)\n\
             INSERT INTO readings VALUES ('M' || lpad((:i % 10000)::text, 5, '0'), :i, :i % 100000000, 0) \
             ON CONFLICT (meter, ts) DO UPDATE SET litres = EXCLUDED.litres, status = EXCLUDED.status;\n"
                .to_owned()
        } else {
            format!(
                "\\set i random(1, 1000000000000)\n\
                 INSERT INTO readings SELECT 'M' || lpad(((:i + g) % 10000)::text, 5, '0'), :i + g, (:i + g) % 100000000, 0 \
                 FROM generate_series(1, {per_tx}) AS g \
                 ON CONFLICT (meter, ts) DO UPDATE SET litres = EXCLUDED.litres, status = EXCLUDED.status;\n"
            )
        };
        std::fs::write(&script, sql).map_err(|e| e.to_string())?;
        if self.as_postgres {
            let _ = Command::new("chown").arg("postgres:postgres").arg(&script).status();
        }
        let transactions = readings / per_tx;
        let per_client = (transactions / clients as u64).max(1);
        let log_prefix = self.dir.join(format!("log-{per_tx}"));
        let mut args = self.conn_args();
        args.extend([
            "-n".into(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            "2".into(),
            "-t".into(),
            per_client.to_string(),
            "-f".into(),
            script.display().to_string(),
            "-l".into(),
            "--log-prefix".into(),
            log_prefix.display().to_string(),
        ]);
        if let Some(r) = rate {
            args.extend(["-R".into(), (r / per_tx).max(1).to_string()]);
        }
        args.push("postgres".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = self.written_bytes()?;
        let started = Instant::now();
        let out = self.run("pgbench", &refs)?;
        let wall = started.elapsed().as_secs_f64();
        self.psql("CHECKPOINT")?;
        let after = self.written_bytes()?;
        let done = per_client * clients as u64 * per_tx;
        // pgbench's own rate, without the time to open the connections (as ours excludes spawning submitters).
        let tps: Option<f64> = out.lines().find_map(|l| {
            l.strip_prefix("tps = ")
                .filter(|r| r.contains("without"))
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        });
        let seconds = tps.map_or(wall, |tps| (done / per_tx) as f64 / tps.max(1e-9));
        let mut latencies_us = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| e.to_string())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("log-{per_tx}")) {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
            for line in text.lines() {
                // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(t), lag) =
                    (f.get(2).and_then(|t| t.parse::<u64>().ok()), f.get(6).and_then(|l| l.parse::<u64>().ok()))
                else {
                    continue;
                };
                latencies_us.push(t + lag.unwrap_or(0));
            }
            let _ = std::fs::remove_file(entry.path());
        }
        latencies_us.sort_unstable();
        Ok(PeerRun { readings: done, seconds, latencies_us, bytes_written: after.checked_sub(before) })
    }

    /// A day of 15-minute readings for `meters` meters, then the table's bytes on disk (with its index) per stored reading.
    pub fn day_bytes_per_reading(&self, meters: u64, cycles: u64) -> Result<f64, String> {
        self.reset_table()?;
        let chunk = 2_000u64;
        for cycle in 0..cycles {
            let mut m = 0;
            while m < meters {
                let end = (m + chunk).min(meters);
                // Bytes on disk, not speed, are measured here: large statements.
                let sql = format!(
                    "INSERT INTO readings SELECT 'M' || lpad(g::text, 5, '0'), {ts}, g * 1000 + {cycle}, 0 \
                     FROM generate_series({m}, {}) AS g",
                    end - 1,
                    ts = 1_767_225_600_000i64 + cycle as i64 * 900_000
                );
                self.psql(&sql)?;
                m = end;
            }
        }
        self.psql("VACUUM ANALYZE readings")?;
        let size: f64 =
            self.psql("SELECT pg_total_relation_size('readings')")?.parse().map_err(|e| format!("size: {e}"))?;
        Ok(size / (meters * cycles) as f64)
    }

    pub fn version(&self) -> String {
        self.psql("SHOW server_version").unwrap_or_else(|_| "?".into())
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
