//! Scheduled reconciliation: targets with `reconcile_every` are reconciled when due
//! (a dry run when the target says so), on one node only.
//!
//! Each pass claims the due targets in the store (a conditional UPDATE moving the due
//! time one interval forward, see `Store::claim_due_reconciliations`), runs
//! [`Dispatcher::reconcile`] for each, and records the outcome with its counts on the
//! target. A run that fails (the target is down, its mapping unusable) is recorded with
//! its error, audited as a failed `sync.reconcile`, and tried again after
//! [`SchedulerConfig::retry_after`] (or at the next due time, when that is sooner); it
//! never stops the loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fedkey_store::ops::{RunOutcome, SyncTarget};
use fedkey_store::{Actor, StoreError};
use serde::Serialize;
use serde_json::{Value, json};

use crate::dispatch::Dispatcher;
use crate::reconcile::{ReconcileError, ReconcileReport};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's lease owner name.
    pub node_id: String,
    /// How long a claimed run keeps other nodes off the target (longer than a run takes).
    pub lease_ttl: Duration,
    /// When a failed run is tried again (unless the next due time is sooner).
    pub retry_after: Duration,
}

impl SchedulerConfig {
    pub fn new(node_id: String) -> SchedulerConfig {
        SchedulerConfig { node_id, lease_ttl: Duration::from_secs(3600), retry_after: Duration::from_secs(15 * 60) }
    }
}

/// One scheduled run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledRun {
    /// `DIRECTORY/TRUST`.
    pub trust: String,
    pub dry_run: bool,
    /// `succeeded`, `incomplete` (a real run left something undone), `drift` (a dry run
    /// found something to do) or `failed`.
    pub outcome: &'static str,
    pub counts: Value,
    pub error: Option<String>,
}

pub struct Scheduler {
    dispatcher: Arc<Dispatcher>,
    cfg: SchedulerConfig,
    /// One pass at a time in this process (the loop and the test endpoint).
    running: tokio::sync::Mutex<()>,
}

fn actor() -> Actor {
    Actor::system("sync-schedule")
}

/// Planned and applied actions per kind, orphans and problems: what a run record keeps.
fn counts(r: &ReconcileReport) -> Value {
    let mut planned: BTreeMap<&str, usize> = BTreeMap::new();
    let mut applied: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &r.actions {
        *planned.entry(a.action).or_default() += 1;
        if a.outcome.as_deref() == Some("done") {
            *applied.entry(a.action).or_default() += 1;
        }
    }
    json!({
        "dry_run": r.dry_run, "planned": planned, "applied": applied,
        "orphans_reported": r.orphans.len(), "problems": r.problems.len(),
        "remote_users": r.counts.remote_users, "remote_groups": r.counts.remote_groups,
    })
}

/// Why a real run left something undone, in one line (the first few actions' outcomes).
fn undone(r: &ReconcileReport) -> Option<String> {
    let left: Vec<String> = r
        .actions
        .iter()
        .filter_map(|a| {
            let o = a.outcome.as_deref().filter(|o| *o != "done")?;
            Some(format!("{} {} {}: {o}", a.action, a.resource_type, a.display.as_deref().unwrap_or("?")))
        })
        .collect();
    let mut parts: Vec<String> = left.iter().take(3).cloned().collect();
    if left.len() > 3 {
        parts.push(format!("and {} more", left.len() - 3));
    }
    if !r.problems.is_empty() {
        parts.push(format!("{} resource(s) the mapping cannot produce", r.problems.len()));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

impl Scheduler {
    pub fn new(dispatcher: Arc<Dispatcher>, cfg: SchedulerConfig) -> Scheduler {
        Scheduler { dispatcher, cfg, running: tokio::sync::Mutex::new(()) }
    }

    /// Runs due reconciliations every `interval` until the task is dropped.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        loop {
            match self.tick().await {
                Ok(runs) => {
                    for r in runs {
                        tracing::info!(trust = %r.trust, outcome = r.outcome, counts = %r.counts, "scheduled reconciliation");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "scheduled reconciliation pass failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Claims the due targets and reconciles each; returns what each run did.
    pub async fn tick(&self) -> Result<Vec<ScheduledRun>, StoreError> {
        let _one = self.running.lock().await;
        let store = &self.dispatcher.store;
        let due = store.claim_due_reconciliations(&self.cfg.node_id, self.cfg.lease_ttl).await?;
        let mut out = Vec::with_capacity(due.len());
        for t in due {
            let run = self.run_one(&t).await;
            let rec = RunOutcome {
                outcome: run.outcome,
                counts: run.counts.clone(),
                error: run.error.clone(),
                retry_at: (run.outcome == "failed").then(|| store.now().saturating_add(self.cfg.retry_after)),
            };
            match store.finish_reconciliation(&t.trust_id, &self.cfg.node_id, &rec).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(trust = %t.trust, "reconciliation lease lost before the run was recorded"),
                Err(e) => tracing::warn!(trust = %t.trust, error = %e, "cannot record the scheduled reconciliation"),
            }
            out.push(run);
        }
        Ok(out)
    }

    async fn run_one(&self, t: &SyncTarget) -> ScheduledRun {
        let dry_run = t.reconcile_dry_run;
        let a = actor();
        match self.dispatcher.reconcile(&a, &t.trust, dry_run).await {
            Ok(r) => ScheduledRun {
                trust: t.trust.to_string(),
                dry_run,
                outcome: if r.incomplete() {
                    "incomplete"
                } else if dry_run && !r.actions.is_empty() {
                    "drift"
                } else {
                    "succeeded"
                },
                counts: counts(&r),
                error: undone(&r),
            },
            Err(e) => {
                let error = match &e {
                    ReconcileError::Store(s) => format!("fedkey could not read its database: {s}"),
                    other => other.to_string(),
                };
                tracing::warn!(trust = %t.trust, error = %error, "scheduled reconciliation failed");
                // The run ended before `reconcile` wrote its summary: audit the failure here.
                let details = json!({"scheduled": true, "dry_run": dry_run, "error": error});
                if let Err(e) = self.dispatcher.store.reconcile_audit(&a, t, "sync.reconcile", false, details).await {
                    tracing::warn!(trust = %t.trust, error = %e, "cannot audit the failed reconciliation");
                }
                ScheduledRun {
                    trust: t.trust.to_string(),
                    dry_run,
                    outcome: "failed",
                    counts: json!({"dry_run": dry_run}),
                    error: Some(error),
                }
            }
        }
    }
}
