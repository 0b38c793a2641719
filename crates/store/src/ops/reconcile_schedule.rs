//! Scheduled reconciliation of targets: when each is due, which node runs it, and the
//! record of its latest run.
//!
//! A node **claims** a due run with one conditional `UPDATE` that moves
//! `next_reconcile_at` one interval forward and takes the run's lease, matching the due
//! time it read: of several nodes reading the same due target, exactly one updates the
//! row. The lease (`reconcile_lease_*`) keeps a run that outlasts its interval from
//! overlapping the next; a node that dies mid-run leaves it to expire.

use std::time::Duration;

use fedkey_core::Timestamp;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::outbox::{SyncTarget, TARGET_SELECT, clip, target_from_row};
use super::{Store, opt_ts};
use crate::StoreError;

/// Shortest interval between scheduled runs (a run reads the whole target).
pub const MIN_RECONCILE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Longest interval.
pub const MAX_RECONCILE_EVERY: Duration = Duration::from_secs(90 * 24 * 3600);

/// How often a target is reconciled on schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSchedule {
    pub every_seconds: i64,
    /// Scheduled runs only report the drift (for cautious operators).
    pub dry_run: bool,
}

impl ReconcileSchedule {
    pub fn validate(&self) -> Result<(), StoreError> {
        let (min, max) = (MIN_RECONCILE_EVERY.as_secs(), MAX_RECONCILE_EVERY.as_secs());
        if u64::try_from(self.every_seconds).map_or(true, |s| !(min..=max).contains(&s)) {
            return Err(StoreError::Invalid("reconcile_every must be between 5m and 90d".into()));
        }
        Ok(())
    }
}

/// The latest scheduled run of a target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReconcileRun {
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub started_at: Timestamp,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub finished_at: Option<Timestamp>,
    /// `running`, `succeeded`, `incomplete` (something left undone), `drift` (a dry run
    /// found something to do) or `failed`.
    pub outcome: String,
    /// Planned and applied actions per kind, orphans, problems (never values).
    pub counts: Value,
    pub error: Option<String>,
}

pub(super) fn run_from_row(r: &AnyRow) -> Result<Option<ReconcileRun>, StoreError> {
    let Some(started) = r.try_get::<Option<i64>, _>("last_reconcile_started_at")? else {
        return Ok(None);
    };
    let counts: Option<String> = r.try_get("last_reconcile_counts")?;
    let counts = match counts {
        Some(c) => {
            serde_json::from_str(&c).map_err(|_| StoreError::Corrupt("sync_targets.last_reconcile_counts".into()))?
        }
        None => Value::Null,
    };
    Ok(Some(ReconcileRun {
        started_at: Timestamp(started),
        finished_at: opt_ts(r.try_get("last_reconcile_finished_at")?),
        outcome: r.try_get::<Option<String>, _>("last_reconcile_outcome")?.unwrap_or_else(|| "running".into()),
        counts,
        error: r.try_get("last_reconcile_error")?,
    }))
}

/// How a finished run went.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// `succeeded`, `incomplete`, `drift` or `failed`.
    pub outcome: &'static str,
    pub counts: Value,
    pub error: Option<String>,
    /// Try again at this time when it is earlier than the next due time (a failed run).
    pub retry_at: Option<Timestamp>,
}

impl Store {
    /// Claims the scheduled reconciliations due now for `owner`, leased for `ttl`. Each
    /// due target is taken by one node only; targets of suspended trusts wait.
    pub async fn claim_due_reconciliations(&self, owner: &str, ttl: Duration) -> Result<Vec<SyncTarget>, StoreError> {
        let at = self.now();
        let (now, until) = (at.0, at.saturating_add(ttl).0);
        let due = sqlx::query(
            "SELECT s.trust_id, s.next_reconcile_at, s.reconcile_every FROM sync_targets s JOIN trusts t ON t.id = s.trust_id \
             WHERE s.reconcile_every IS NOT NULL AND s.next_reconcile_at <= $1 AND t.status = 'active' \
             AND (s.reconcile_lease_until IS NULL OR s.reconcile_lease_until <= $1) ORDER BY s.next_reconcile_at",
        )
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::new();
        for row in &due {
            let trust_id: String = row.try_get("trust_id")?;
            let was: i64 = row.try_get("next_reconcile_at")?;
            let every: i64 = row.try_get("reconcile_every")?;
            let next = now.saturating_add(every.saturating_mul(1_000_000));
            let n = sqlx::query(
                "UPDATE sync_targets SET next_reconcile_at = $1, reconcile_lease_owner = $2, reconcile_lease_until = $3, \
                 last_reconcile_started_at = $4, last_reconcile_finished_at = NULL, last_reconcile_outcome = 'running', \
                 last_reconcile_counts = NULL, last_reconcile_error = NULL \
                 WHERE trust_id = $5 AND next_reconcile_at = $6 \
                 AND (reconcile_lease_until IS NULL OR reconcile_lease_until <= $4)",
            )
            .bind(next)
            .bind(owner.to_owned())
            .bind(until)
            .bind(now)
            .bind(trust_id.clone())
            .bind(was)
            .execute(self.db.pool())
            .await?
            .rows_affected();
            if n == 1 {
                let sql = format!("{TARGET_SELECT} WHERE s.trust_id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust_id).fetch_one(self.db.pool()).await?;
                out.push(target_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Records how a claimed run ended and gives its lease back. Returns false (and
    /// changes nothing) when `owner` no longer holds the lease.
    pub async fn finish_reconciliation(&self, trust_id: &str, owner: &str, r: &RunOutcome) -> Result<bool, StoreError> {
        let retry = r.retry_at.map_or(i64::MAX, |t| t.0);
        let n = sqlx::query(
            "UPDATE sync_targets SET reconcile_lease_owner = NULL, reconcile_lease_until = NULL, \
             last_reconcile_finished_at = $1, last_reconcile_outcome = $2, last_reconcile_counts = $3, \
             last_reconcile_error = $4, \
             next_reconcile_at = CASE WHEN next_reconcile_at IS NOT NULL AND $5 < next_reconcile_at THEN $5 ELSE next_reconcile_at END \
             WHERE trust_id = $6 AND reconcile_lease_owner = $7",
        )
        .bind(self.now().0)
        .bind(r.outcome)
        .bind(r.counts.to_string())
        .bind(r.error.as_deref().map(|e| clip(e, 1000)))
        .bind(retry)
        .bind(trust_id.to_owned())
        .bind(owner.to_owned())
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
