//! A simulated HJ 212-2017 water-quality station: it connects to a monitoring centre (our [`super::Hj212Listener`]
//! or anything else that speaks HJ 212) and pushes real-time (`CN=2011`), minute (`2051`) and hour (`2061`) data
//! for its factors, one upload per interval, asking for a reply and checking the `9014` reply it gets.
//!
//! Values stay near each factor's nominal value (pH 7.2, turbidity 0.3 NTU, ammonia nitrogen 0.12 mg/L, …) with
//! noise from a seeded generator, so a run is reproducible apart from the timestamps, which follow the wall
//! clock in China Standard Time (UTC+8) as a real station's would.
//!
//! Faults are set at runtime through the handle ([`Hj212Sim::set_fault`]) and apply from the next upload:
//! `garbage` sends a line of junk instead of the frame, `bad_crc` sends the frame with a wrong CRC, `silent`
//! sends nothing (the connection stays open), and `values` forces factors to given values. A junk or bad-CRC
//! frame expects no reply. After a disconnect the station reconnects after [`Hj212SimSpec::reconnect_delay`].
//!
//! Deliberately simple: an upload without a reply in time is counted as unanswered and not sent again (a real
//! station resends up to its configured count), packets are never split, and commands from the centre are
//! ignored.

use crate::rng::SplitMix64 as Rng;
use drivers::calendar::Zone;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use drivers::hj212::{
    cn, decode, encode, factor, flag, frame_segment, st, Cp, FactorValue, Hj212Error, LineFramer, Packet, MAX_FRAME_LEN,
};

/// China Standard Time, the time zone of `DataTime` and `QN`.
const UTC_OFFSET_SECONDS: i64 = 8 * 3600;
/// Samples behind one minute or hour value (their mean, minimum and maximum are sent).
const SAMPLES_PER_PERIOD: usize = 6;

/// One factor the station measures.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorSpec {
    /// Factor code, e.g. `w01001`.
    pub code: String,
    /// The value the readings scatter around.
    pub nominal: f64,
    /// Largest deviation from `nominal` (absolute, same unit).
    pub noise: f64,
    /// Decimals sent.
    pub decimals: u8,
    /// Clamp at zero: concentrations and turbidity are never negative.
    pub non_negative: bool,
}

impl FactorSpec {
    pub fn new(code: &str, nominal: f64, noise: f64, decimals: u8) -> Self {
        FactorSpec { code: code.to_owned(), nominal, noise, decimals, non_negative: true }
    }
}

/// pH 7.2, dissolved oxygen 8 mg/L, water temperature 18 °C, conductivity 350 µS/cm, turbidity 0.3 NTU and
/// ammonia nitrogen 0.12 mg/L: a healthy drinking-water source.
pub fn default_factors() -> Vec<FactorSpec> {
    vec![
        FactorSpec::new(factor::PH, 7.2, 0.05, 2),
        FactorSpec::new(factor::DISSOLVED_OXYGEN, 8.0, 0.2, 2),
        FactorSpec::new(factor::WATER_TEMPERATURE, 18.0, 0.5, 1),
        FactorSpec::new(factor::CONDUCTIVITY, 350.0, 5.0, 1),
        FactorSpec::new(factor::TURBIDITY, 0.3, 0.03, 3),
        FactorSpec::new(factor::AMMONIA_NITROGEN, 0.12, 0.01, 3),
    ]
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Hj212SimSpec {
    /// The centre to connect to.
    pub server: SocketAddr,
    /// Station identifier (`MN`).
    pub mn: String,
    /// Access password (`PW`).
    pub pw: String,
    /// System code (`ST`), `21` (surface water quality) by default.
    pub st: String,
    pub factors: Vec<FactorSpec>,
    /// The uploads to send, in turn: any of `2011`, `2051`, `2061`.
    pub uploads: Vec<String>,
    /// Time between two uploads.
    pub interval: Duration,
    /// How long to wait for the reply to an upload (and for a connection).
    pub reply_timeout: Duration,
    /// Pause before reconnecting after a failed or lost connection.
    pub reconnect_delay: Duration,
    /// Set `Flag` bit A and wait for each reply.
    pub request_replies: bool,
    /// Seed of the value noise and the junk.
    pub seed: u64,
}

impl Hj212SimSpec {
    /// A station `mn` with the default factors, cycling 2011, 2051, 2061 every second, password `123456`.
    pub fn new(server: SocketAddr, mn: &str) -> Self {
        Hj212SimSpec {
            server,
            mn: mn.to_owned(),
            pw: "123456".to_owned(),
            st: st::SURFACE_WATER.to_owned(),
            factors: default_factors(),
            uploads: vec![cn::REALTIME_DATA.to_owned(), cn::MINUTE_DATA.to_owned(), cn::HOUR_DATA.to_owned()],
            interval: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(5),
            reconnect_delay: Duration::from_secs(1),
            request_replies: true,
            seed: 212,
        }
    }

    fn check(&self) -> Result<(), Hj212Error> {
        let invalid = |reason: String| Err(Hj212Error::InvalidConfig(format!("station {:?}: {reason}", self.mn)));
        if self.factors.is_empty() {
            return invalid("no factors".to_owned());
        }
        for f in &self.factors {
            if !(f.nominal.is_finite() && f.noise.is_finite() && f.noise >= 0.0) {
                return invalid(format!("factor {:?} needs a finite nominal value and noise >= 0", f.code));
            }
            if f.decimals > 6 {
                return invalid(format!("factor {:?}: at most 6 decimals", f.code));
            }
            if self.factors.iter().filter(|g| g.code == f.code).count() > 1 {
                return invalid(format!("factor {:?} is given twice", f.code));
            }
        }
        if self.uploads.is_empty() {
            return invalid("no uploads".to_owned());
        }
        if let Some(other) = self.uploads.iter().find(|u| !matches!(u.as_str(), "2011" | "2051" | "2061")) {
            return invalid(format!("upload {other:?} is not one of 2011, 2051, 2061"));
        }
        if self.interval.is_zero() || self.reply_timeout.is_zero() {
            return invalid("interval and reply_timeout must be longer than zero".to_owned());
        }
        // A sample packet must encode: this checks MN, PW, ST and the factor codes in one go.
        let mut rng = Rng::new(self.seed);
        for upload in &self.uploads {
            let mut packet = build_packet(self, upload, &mut rng, &BTreeMap::new(), 0);
            packet.qn = Some(QnClock::default().next(0));
            if let Err(e) = encode(&packet) {
                return invalid(e.to_string());
            }
        }
        Ok(())
    }
}

/// What the station does wrong. `Hj212Fault::default()` is a healthy station.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hj212Fault {
    /// Send a line of junk instead of each frame.
    pub garbage: bool,
    /// Send each frame with a wrong CRC.
    pub bad_crc: bool,
    /// Send nothing; keep the connection open.
    pub silent: bool,
    /// Force factors (by code) to a value.
    pub values: BTreeMap<String, f64>,
}

/// The station's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hj212SimStats {
    /// Connections opened.
    pub connects: u64,
    /// Good frames written.
    pub sent: u64,
    /// Good frames answered by a matching `9014` reply.
    pub acked: u64,
    /// Frames that asked for a reply and got none in time (or lost their connection first).
    pub unanswered: u64,
    /// Junk and bad-CRC frames written.
    pub faulty: u64,
    /// Lines from the centre that were not a valid reply to the upload waited on.
    pub bad_replies: u64,
}

#[derive(Debug)]
struct Shared {
    fault: Mutex<Hj212Fault>,
    stats: watch::Sender<Hj212SimStats>,
}

impl Shared {
    fn fault(&self) -> Hj212Fault {
        self.fault.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn count(&self, bump: impl FnOnce(&mut Hj212SimStats)) {
        self.stats.send_modify(bump);
    }
}

/// A cloneable handle on a running station's fault and counters, for a control API that also serves other
/// simulators. It does not keep the station running: once the [`Hj212Sim`] is shut down, faults set here change
/// nothing.
#[derive(Debug, Clone)]
pub struct Hj212SimHandle {
    shared: Arc<Shared>,
    codes: Arc<[String]>,
}

impl Hj212SimHandle {
    /// Replaces the fault; forced values must be finite and for factors the station has.
    pub fn set_fault(&self, fault: Hj212Fault) -> Result<(), Hj212Error> {
        for (code, value) in &fault.values {
            if !self.codes.contains(code) {
                return Err(Hj212Error::InvalidConfig(format!("the station has no factor {code:?} to force")));
            }
            if !value.is_finite() {
                return Err(Hj212Error::InvalidConfig(format!("forced value {value} for {code:?} is not finite")));
            }
        }
        tracing::info!(message = "station fault set", fault = ?fault);
        *self.shared.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
        Ok(())
    }

    pub fn fault(&self) -> Hj212Fault {
        self.shared.fault()
    }

    pub fn stats(&self) -> Hj212SimStats {
        self.shared.stats.borrow().clone()
    }
}

/// A running simulated station. Dropping it stops it too; [`Hj212Sim::shutdown`] also waits.
#[derive(Debug)]
pub struct Hj212Sim {
    handle: Hj212SimHandle,
    task: Option<JoinHandle<()>>,
}

impl Hj212Sim {
    /// Checks `spec` and starts the station; it connects on its first upload.
    pub async fn start(spec: Hj212SimSpec) -> Result<Hj212Sim, Hj212Error> {
        spec.check()?;
        let (stats, _) = watch::channel(Hj212SimStats::default());
        let shared = Arc::new(Shared { fault: Mutex::new(Hj212Fault::default()), stats });
        let codes = spec.factors.iter().map(|f| f.code.clone()).collect();
        let span = tracing::info_span!("hj212_station", mn = %spec.mn);
        let task = tokio::spawn(run(spec, Arc::clone(&shared)).instrument(span));
        Ok(Hj212Sim { handle: Hj212SimHandle { shared, codes }, task: Some(task) })
    }

    /// Replaces the fault; forced values must be finite and for factors the station has.
    pub fn set_fault(&self, fault: Hj212Fault) -> Result<(), Hj212Error> {
        self.handle.set_fault(fault)
    }

    pub fn fault(&self) -> Hj212Fault {
        self.handle.fault()
    }

    /// A handle for the fault-injection API (see [`Hj212SimHandle`]).
    pub fn handle(&self) -> Hj212SimHandle {
        self.handle.clone()
    }

    /// Good frames written so far.
    pub fn sent(&self) -> u64 {
        self.handle.shared.stats.borrow().sent
    }

    /// Good frames answered so far.
    pub fn acked(&self) -> u64 {
        self.handle.shared.stats.borrow().acked
    }

    pub fn stats(&self) -> Hj212SimStats {
        self.handle.stats()
    }

    /// A receiver that sees every change of the counters, to wait for one (`wait_for`).
    pub fn subscribe(&self) -> watch::Receiver<Hj212SimStats> {
        self.handle.shared.stats.subscribe()
    }

    /// Stops the station and closes its connection.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Hj212Sim {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// An open connection to the centre and what has been read from it but not yet looked at.
struct Link {
    stream: TcpStream,
    framer: LineFramer,
    pending: VecDeque<Result<Vec<u8>, Hj212Error>>,
}

/// How waiting for a reply ended.
enum ReplyOutcome {
    Acked,
    TimedOut,
    Closed,
}

/// The station's loop: one upload per tick, (re)connecting as needed.
async fn run(spec: Hj212SimSpec, shared: Arc<Shared>) {
    let mut rng = Rng::new(spec.seed);
    let mut qns = QnClock::default();
    let mut link: Option<Link> = None;
    let mut turn = 0usize;
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let fault = shared.fault();
        if fault.silent {
            continue;
        }
        let Some(conn) = connected(&spec, &shared, &mut link).await else {
            tokio::time::sleep(spec.reconnect_delay).await;
            continue;
        };
        let upload = spec.uploads.get(turn % spec.uploads.len()).map_or(cn::REALTIME_DATA, String::as_str);
        turn = turn.wrapping_add(1);
        let now_ms = unix_millis();
        let mut packet = build_packet(&spec, upload, &mut rng, &fault.values, now_ms / 1000);
        let qn = qns.next(now_ms);
        packet.qn = Some(qn.clone());
        let frame = match encode(&packet) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(message = "simulated upload not encodable", error = %error);
                continue;
            }
        };
        let (bytes, faulty) = if fault.garbage {
            (junk_line(&mut rng), true)
        } else if fault.bad_crc {
            (with_bad_crc(&frame), true)
        } else {
            (frame, false)
        };
        if let Err(error) = conn.stream.write_all(&bytes).await {
            tracing::info!(message = "station connection lost while sending", error = %error);
            link = None;
            continue;
        }
        if faulty {
            shared.count(|s| s.faulty += 1);
            continue;
        }
        shared.count(|s| s.sent += 1);
        if !spec.request_replies {
            continue;
        }
        match await_reply(conn, &qn, spec.reply_timeout, &shared).await {
            ReplyOutcome::Acked => shared.count(|s| s.acked += 1),
            ReplyOutcome::TimedOut => {
                tracing::info!(message = "no reply to upload", qn = %qn, cn = %upload);
                shared.count(|s| s.unanswered += 1);
            }
            ReplyOutcome::Closed => {
                tracing::info!(message = "station connection lost while waiting for a reply", qn = %qn);
                shared.count(|s| s.unanswered += 1);
                link = None;
            }
        }
    }
}

/// The open link, connecting first if there is none. `None` if connecting failed.
async fn connected<'a>(spec: &Hj212SimSpec, shared: &Shared, link: &'a mut Option<Link>) -> Option<&'a mut Link> {
    if link.is_none() {
        let attempt = tokio::time::timeout(spec.reply_timeout, TcpStream::connect(spec.server)).await;
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                shared.count(|s| s.connects += 1);
                tracing::info!(message = "station connected", server = %spec.server);
                *link = Some(Link { stream, framer: LineFramer::new(MAX_FRAME_LEN), pending: VecDeque::new() });
            }
            Ok(Err(error)) => {
                tracing::debug!(message = "station cannot connect", server = %spec.server, error = %error);
                return None;
            }
            Err(_) => {
                tracing::debug!(message = "station connect timed out", server = %spec.server);
                return None;
            }
        }
    }
    link.as_mut()
}

/// Reads until the `9014` reply with our `QN` arrives, the time is up, or the connection ends. Replies to
/// other `QN`s (late answers to earlier uploads) are skipped; anything else counts as a bad reply.
async fn await_reply(link: &mut Link, qn: &str, limit: Duration, shared: &Shared) -> ReplyOutcome {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        while let Some(item) = link.pending.pop_front() {
            let reply = item.and_then(|frame| decode(&frame));
            match reply {
                Ok(p) if p.cn == cn::DATA_RESPONSE && p.qn.as_deref() == Some(qn) && p.st == st::SYSTEM => {
                    return ReplyOutcome::Acked;
                }
                Ok(p) if p.cn == cn::DATA_RESPONSE && p.qn.as_deref() != Some(qn) => {
                    tracing::debug!(message = "late reply skipped", qn = ?p.qn);
                }
                Ok(p) => {
                    tracing::info!(message = "unexpected packet from the centre", cn = %p.cn, qn = ?p.qn);
                    shared.count(|s| s.bad_replies += 1);
                }
                Err(error) => {
                    tracing::info!(message = "bad reply from the centre", error = %error);
                    shared.count(|s| s.bad_replies += 1);
                }
            }
        }
        match tokio::time::timeout_at(deadline, link.stream.read(&mut buf)).await {
            Err(_) => return ReplyOutcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return ReplyOutcome::Closed,
            Ok(Ok(n)) => {
                let items = link.framer.feed(buf.get(..n).unwrap_or_default());
                link.pending.extend(items);
            }
        }
    }
}

/// The upload `cn` for the time `now` (Unix seconds), with values drawn from `rng` unless `forced`.
fn build_packet(spec: &Hj212SimSpec, cn: &str, rng: &mut Rng, forced: &BTreeMap<String, f64>, now: u64) -> Packet {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    // Minute and hour data describe the last period that has ended.
    let data_time = match cn {
        "2051" => now.div_euclid(60) * 60 - 60,
        "2061" => now.div_euclid(3600) * 3600 - 3600,
        _ => now,
    };
    let mut values = Vec::new();
    for f in &spec.factors {
        let forced = forced.get(&f.code).copied();
        let mut draw = || forced.unwrap_or_else(|| sample(f, rng));
        let text = |x: f64| format!("{:.*}", usize::from(f.decimals), x);
        if cn == cn::REALTIME_DATA {
            values.push(FactorValue::new(&f.code, "Rtd", &text(draw())));
        } else {
            let samples: Vec<f64> = (0..SAMPLES_PER_PERIOD).map(|_| draw()).collect();
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            values.push(FactorValue::new(&f.code, "Avg", &text(mean)));
            values.push(FactorValue::new(&f.code, "Min", &text(min)));
            values.push(FactorValue::new(&f.code, "Max", &text(max)));
        }
        values.push(FactorValue::new(&f.code, "Flag", "N"));
    }
    Packet {
        qn: None,
        st: spec.st.clone(),
        cn: cn.to_owned(),
        pw: Some(spec.pw.clone()),
        mn: spec.mn.clone(),
        flag: Some(if spec.request_replies { flag::V2017 | flag::REPLY } else { flag::V2017 }),
        pnum: None,
        pno: None,
        cp: Cp { data_time: Some(local_timestamp(data_time)), params: Vec::new(), values },
    }
}

/// One reading of `f`: nominal plus uniform noise, clamped at zero where negative makes no sense.
fn sample(f: &FactorSpec, rng: &mut Rng) -> f64 {
    let x = f.nominal + f.noise * (2.0 * rng.next_f64() - 1.0);
    if f.non_negative {
        x.max(0.0)
    } else {
        x
    }
}

/// A line of printable junk without `#`, ended by CR LF.
fn junk_line(rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(56);
    let mut line: Vec<u8> = (0..len)
        .map(|_| {
            let c = b' ' + u8::try_from(rng.below(95)).unwrap_or(0);
            if c == b'#' {
                b'*'
            } else {
                c
            }
        })
        .collect();
    line.extend_from_slice(b"\r\n");
    line
}

/// `frame` with its CRC digits replaced by a different, well-formed CRC.
fn with_bad_crc(frame: &[u8]) -> Vec<u8> {
    let data = frame.get(6..frame.len().saturating_sub(6)).unwrap_or_default();
    let mut bad = frame_segment(data);
    let crc_at = bad.len().saturating_sub(6);
    let good = bad.get(crc_at..crc_at + 4).and_then(|t| std::str::from_utf8(t).ok());
    let wrong = good.and_then(|t| u16::from_str_radix(t, 16).ok()).map_or(0, |c| c ^ 0x5A5A);
    let text = format!("{wrong:04X}");
    if let Some(slot) = bad.get_mut(crc_at..crc_at + 4) {
        slot.copy_from_slice(text.as_bytes());
    }
    bad
}

fn unix_millis() -> u64 {
    // A clock before 1970 is a broken host; the station then stamps the epoch.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Hands out `QN`s (`YYYYMMDDhhmmsszzz`, local time) that strictly increase, even within one millisecond.
#[derive(Debug, Default)]
struct QnClock {
    last_ms: u64,
}

impl QnClock {
    fn next(&mut self, now_ms: u64) -> String {
        let ms = now_ms.max(self.last_ms + 1);
        self.last_ms = ms;
        let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        format!("{}{:03}", local_timestamp(seconds), ms % 1000)
    }
}

/// Unix seconds as `YYYYMMDDhhmmss` in China Standard Time.
fn local_timestamp(unix_seconds: i64) -> String {
    let china = Zone::fixed_minutes((UTC_OFFSET_SECONDS / 60) as i32).unwrap_or_else(Zone::utc);
    let t = china.to_local(unix_seconds.saturating_mul(1000));
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_rejects_unknown_keys_and_fills_defaults() {
        let fault: Hj212Fault = serde_json::from_str(r#"{"values": {"w01001": 9.4}}"#).expect("valid fault");
        assert_eq!(fault, Hj212Fault { values: BTreeMap::from([("w01001".to_owned(), 9.4)]), ..Default::default() });
        assert!(serde_json::from_str::<Hj212Fault>(r#"{"bad_checksum": true}"#).is_err());
    }

    #[test]
    fn dates_in_china_standard_time() {
        assert_eq!(local_timestamp(0), "19700101080000");
        // 2024-02-29 15:59:59 UTC is 23:59:59 in Beijing; one second later it is 1 March there.
        assert_eq!(local_timestamp(1_709_222_399), "20240229235959");
        assert_eq!(local_timestamp(1_709_222_400), "20240301000000");
    }

    #[test]
    fn qns_increase_within_one_millisecond() {
        let mut clock = QnClock::default();
        let a = clock.next(1_709_222_400_123);
        let b = clock.next(1_709_222_400_123);
        assert_eq!(a, "20240301000000123");
        assert_eq!(b, "20240301000000124");
    }

    #[test]
    fn bad_crc_frames_differ_only_in_the_crc() {
        let spec = Hj212SimSpec::new(SocketAddr::from(([127, 0, 0, 1], 1)), "ST-1");
        let mut packet = build_packet(&spec, "2011", &mut Rng::new(1), &BTreeMap::new(), 1_709_222_400);
        packet.qn = Some("20240301000000000".to_owned());
        let good = encode(&packet).expect("sample packet encodes");
        let bad = with_bad_crc(&good);
        assert_eq!(good.len(), bad.len());
        assert_eq!(good.get(..good.len() - 6), bad.get(..bad.len() - 6));
        assert!(matches!(decode(&bad), Err(Hj212Error::CrcMismatch { .. })));
        assert!(decode(&junk_line(&mut Rng::new(3))).is_err());
    }
}
