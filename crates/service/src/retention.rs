//! Bounded storage: the serve process prunes audit events older than `audit_retention_days` and
//! finished tasks older than `task_retention_days` (acknowledged ones after a day), at start and
//! then every [`PRUNE_EVERY`], in batches of [`PRUNE_BATCH`] rows per transaction so writers never
//! wait long behind it. Unfinished tasks are never pruned. Flow-log records older than
//! `flow_log_retention_hours` go in the same passes (their per-client cap is kept at ingest).

use std::sync::Arc;
use std::time::Duration;

use palisade_store::{Database, Store, StoreResult, Tx, now_ms};

/// Rows one pruning transaction deletes at most.
pub const PRUNE_BATCH: u32 = 5_000;
/// How often the serve process prunes (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Days an acknowledged finished task is kept: its client has said it saw the outcome.
pub const ACKNOWLEDGED_TASK_DAYS: u32 = 1;

const DAY_MS: i64 = 86_400_000;

/// How long each kind of row is kept, in days; 0 keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub audit_days: u32,
    pub task_days: u32,
    /// Hours a flow-log record is kept (by the start of its minute); 0 keeps it until the
    /// client's cap pushes it out.
    pub flow_log_hours: u32,
}

/// Deletes the audit events older than `before_ms`, a batch per transaction; returns how many.
pub fn prune_audit(store: &Database, before_ms: i64) -> StoreResult<u64> {
    in_batches(store, |tx| tx.prune_audit(before_ms, PRUNE_BATCH))
}

/// Deletes the finished tasks that finished before `finished_before_ms` (or before
/// `acknowledged_before_ms`, if acknowledged), a batch per transaction; returns how many.
pub fn prune_tasks(store: &Database, finished_before_ms: i64, acknowledged_before_ms: i64) -> StoreResult<u64> {
    in_batches(store, |tx| tx.prune_tasks(finished_before_ms, acknowledged_before_ms, PRUNE_BATCH))
}

fn in_batches(store: &Database, batch: impl Fn(&mut dyn Tx) -> StoreResult<u64>) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let deleted = store.write(|tx| batch(tx))?;
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
    }
}

/// Deletes the flow-log records of minutes that started before `before_ms`, a batch per
/// transaction; returns how many.
pub fn prune_flow_logs(store: &Database, before_ms: i64) -> StoreResult<u64> {
    in_batches(store, |tx| tx.prune_flows(before_ms, PRUNE_BATCH))
}

/// One pass over flow-log records, as of `now`.
pub fn prune_flows(store: &Database, retention: Retention, now: i64) -> StoreResult<u64> {
    match retention.flow_log_hours {
        0 => Ok(0),
        hours => prune_flow_logs(store, now - i64::from(hours) * 3_600_000),
    }
}

/// One pass over both kinds of row, as of `now`.
pub fn prune(store: &Database, retention: Retention, now: i64) -> StoreResult<(u64, u64)> {
    let audit = match retention.audit_days {
        0 => 0,
        days => prune_audit(store, now - i64::from(days) * DAY_MS)?,
    };
    let tasks = match retention.task_days {
        0 => 0,
        days => {
            let acknowledged_days = days.min(ACKNOWLEDGED_TASK_DAYS);
            prune_tasks(store, now - i64::from(days) * DAY_MS, now - i64::from(acknowledged_days) * DAY_MS)?
        }
    };
    Ok((audit, tasks))
}

/// Prunes at start, then every [`PRUNE_EVERY`], until `shutdown` turns true.
pub async fn run(store: Arc<Database>, retention: Retention, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if retention.audit_days == 0 && retention.task_days == 0 && retention.flow_log_hours == 0 {
        return;
    }
    loop {
        let db = store.clone();
        match tokio::task::spawn_blocking(move || prune(&db, retention, now_ms())).await {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((audit_events, tasks))) => tracing::info!(audit_events, tasks, "pruned old audit events and finished tasks"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning old rows failed; retrying later"),
            Err(e) => tracing::error!(error = %e, "pruning old rows panicked"),
        }
        let db = store.clone();
        match tokio::task::spawn_blocking(move || prune_flows(&db, retention, now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(flow_records)) => tracing::info!(flow_records, "pruned old flow-log records"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning old flow-log records failed; retrying later"),
            Err(e) => tracing::error!(error = %e, "pruning old flow-log records panicked"),
        }
        let sender_gone = tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => false,
            changed = shutdown.changed() => changed.is_err(),
        };
        if sender_gone || *shutdown.borrow() {
            return;
        }
    }
}
