//! The audit journal's API (issue 8 §4, R-F7, R-G4): recording entries for the HTTP layer (denials, throttled
//! and refused logins, Basic access), the server's start and clean stop with what the start finds (a crash of
//! the previous run, a changed configuration), and the journal's query.
//!
//! Entries other domains write in the same submission as their change (`Op::Audit`) stay theirs; this handle
//! never reaches into another domain's actors. Every text field is cut to its limit by the store, whoever
//! wrote it (`store::audit`); a cut here is counted (`input_too_long`) and logged, because the edges should
//! have refused the input first.

use std::sync::Arc;

use super::{blocking, ApiError, HandleParts};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::{AuditEntry, AuditFilter, AuditPage, AuditStore, Op, RunMarker, RunOp, StoreHandle};

/// Most entries one page returns.
pub const MAX_PAGE: usize = 500;
/// Most entries one query looks at (a filter that keeps few entries pages on from where it stopped).
pub const MAX_SCAN: usize = 20_000;

/// What the server knows about itself at start.
#[derive(Clone, Debug)]
pub struct StartInfo {
    /// The program's version.
    pub version: String,
    /// The configuration file (or `demo`).
    pub config: String,
    /// A hash of the configuration's text.
    pub config_hash: String,
}

/// What the start found, as audited.
#[derive(Clone, Debug, PartialEq)]
pub struct StartFindings {
    /// The previous run did not stop cleanly: its marker.
    pub crashed: Option<RunMarker>,
    /// The configuration's hash changed: the previous one (`None` on the first start).
    pub config_changed: Option<Option<String>>,
}

/// Recording and reading the audit journal. Cheap to clone.
#[derive(Clone)]
pub struct AuditApi {
    store: Arc<dyn AuditStore>,
    writer: StoreHandle,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl AuditApi {
    pub(super) fn new(parts: &HandleParts) -> AuditApi {
        AuditApi {
            store: parts.stores.audit.clone(),
            writer: parts.writer.clone(),
            clock: parts.clock.clone(),
            metrics: parts.metrics.clone(),
        }
    }

    fn entry(&self, actor: &str, action: &str, target: &str, detail: &str, ok: bool) -> AuditEntry {
        let entry = AuditEntry {
            ts: self.clock.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
            ok,
        };
        let (bounded, cut) = entry.bounded();
        if cut {
            Metrics::inc(&self.metrics.limits.input_too_long);
            tracing::warn!(message = "Audit entry cut to its limits.", action = %bounded.action, actor = %bounded.actor);
        }
        bounded
    }

    /// Records an entry durably (acknowledged after the commit).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        ok: bool,
    ) -> Result<(), ApiError> {
        let entry = self.entry(actor, action, target, detail, ok);
        self.writer.submit(vec![Op::Audit(entry)]).await?;
        Ok(())
    }

    /// Records an entry that may come in floods (a denial, a throttled or refused login): the same fact again
    /// within a minute is counted on its first entry instead of written again (`store::audit`).
    pub async fn record_repeatable(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        ok: bool,
    ) -> Result<(), ApiError> {
        let entry = self.entry(actor, action, target, detail, ok);
        self.writer.submit(vec![Op::AuditRepeatable(entry)]).await?;
        Ok(())
    }

    /// A page of the journal, newest first: at most `limit` (capped at [`MAX_PAGE`]) entries kept by `filter`.
    pub async fn query(&self, filter: AuditFilter, limit: usize) -> Result<AuditPage, ApiError> {
        let store = self.store.clone();
        let limit = limit.clamp(1, MAX_PAGE);
        blocking(move || store.audit_query(&filter, limit, MAX_SCAN)).await
    }

    /// Audits the start in one submission: a crash of the previous run (its marker is still there), a changed
    /// configuration (its hash differs from the last run's), and `server.start`; then marks this run as running.
    pub async fn server_started(&self, info: &StartInfo) -> Result<StartFindings, ApiError> {
        let crashed = self.store.run_marker()?;
        let previous_hash = self.store.config_hash()?;
        let mut ops = Vec::new();
        if let Some(m) = &crashed {
            tracing::warn!(message = "The previous run did not stop cleanly.", started = m.started.0, version = %m.version, pid = m.pid);
            let detail = format!(
                "the previous run (version {}, pid {}, started at {} ms) did not record a clean stop",
                m.version, m.pid, m.started.0
            );
            ops.push(Op::Audit(self.entry("system", "server.crash_detected", "server", &detail, false)));
        }
        let changed = previous_hash.as_deref() != Some(info.config_hash.as_str());
        if changed {
            let old = previous_hash.clone().unwrap_or_else(|| "none".into());
            tracing::info!(message = "Configuration changed since the last run.", old = %old, new = %info.config_hash);
            let detail = format!("old {old} new {}; config {}", info.config_hash, info.config);
            ops.push(Op::Audit(self.entry("system", "config.changed", &info.config, &detail, true)));
            ops.push(Op::Run(RunOp::ConfigHash(info.config_hash.clone())));
        }
        let detail = format!("version {}; config {}; pid {}", info.version, info.config, std::process::id());
        ops.push(Op::Audit(self.entry("system", "server.start", "server", &detail, true)));
        let marker = RunMarker { started: self.clock.now(), version: info.version.clone(), pid: std::process::id() };
        ops.push(Op::Run(RunOp::Started(marker)));
        self.writer.submit(ops).await?;
        Ok(StartFindings { crashed, config_changed: changed.then_some(previous_hash) })
    }

    /// Audits an orderly stop (`how`: the signal or the caller; `ok` false when the server stops because it
    /// failed) and clears the run marker, in one submission.
    pub async fn server_stopping(&self, how: &str, ok: bool) -> Result<(), ApiError> {
        let detail = if ok { format!("clean stop: {how}") } else { format!("stopped after a failure: {how}") };
        let entry = self.entry("system", "server.stop", "server", &detail, ok);
        self.writer.submit(vec![Op::Audit(entry), Op::Run(RunOp::Stopped)]).await?;
        Ok(())
    }
}
