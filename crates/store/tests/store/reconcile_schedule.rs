//! Scheduled reconciliation: due times, claims across nodes, run records (both backends).

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::{Clock, TrustStatus};
use fedkey_store::StoreError;
use fedkey_store::ops::{NewSyncTarget, ReconcileSchedule, RunOutcome};
use serde_json::json;

use super::{Kind, TestDb, actor, env_on, open_store, outbound, tref, verify};

const HOUR: Duration = Duration::from_secs(3600);

fn target(reconcile: Option<ReconcileSchedule>) -> NewSyncTarget {
    NewSyncTarget { reconcile, ..super::outbox::target() }
}

fn every(secs: i64, dry_run: bool) -> Option<ReconcileSchedule> {
    Some(ReconcileSchedule { every_seconds: secs, dry_run })
}

fn done(outcome: &'static str) -> RunOutcome {
    RunOutcome { outcome, counts: json!({"planned": {"create": 1}}), error: None, retry_at: None }
}

/// A due target is claimed by exactly one of two nodes; it is not due again until one
/// interval later; a run in progress keeps other nodes off; a failed run comes back at
/// its retry time; bad schedules are refused and change nothing.
pub async fn reconcile_schedule_claims_once(kind: Kind) {
    let e = env_on(TestDb::new(kind).await).await;
    let s = &e.store;
    let other = Arc::new(open_store(&e.t.url, e.keyring.clone(), &e.clock, Duration::from_secs(60)).await);
    let a = actor();
    let r = tref("acme", "app");
    s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, outbound("acme", "app", "app-key-1")).await.unwrap();
    s.create_trust(&a, outbound("acme", "quiet", "app-key-2")).await.unwrap();
    s.set_sync_target(&a, &tref("acme", "quiet"), target(None)).await.unwrap();

    // Out of range: refused, nothing stored.
    for bad in [0, 299, 91 * 24 * 3600, -5] {
        let err = s.set_sync_target(&a, &r, target(every(bad, false))).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(ref m) if m.contains("reconcile_every")), "{bad}: {err:?}");
    }
    assert!(s.sync_target(&r).await.unwrap().is_none());

    let t0 = e.clock.now();
    let t = s.set_sync_target(&a, &r, target(every(3600, true))).await.unwrap();
    assert_eq!((t.reconcile_every_seconds, t.reconcile_dry_run), (Some(3600), true));
    assert_eq!(t.next_reconcile_at, Some(t0.saturating_add(HOUR)), "first run one interval away");
    assert!(t.last_reconcile.is_none());
    let ttl = Duration::from_secs(600);
    assert!(s.claim_due_reconciliations("node-a", ttl).await.unwrap().is_empty(), "not due yet");

    // Re-setting the same interval keeps the due time; a different one restarts it.
    e.clock.advance(Duration::from_secs(1800));
    let t = s.set_sync_target(&a, &r, target(every(3600, false))).await.unwrap();
    assert_eq!(t.next_reconcile_at, Some(t0.saturating_add(HOUR)));
    assert!(!t.reconcile_dry_run);

    // Due: two nodes race; exactly one claims it.
    e.clock.advance(Duration::from_secs(1801));
    let (x, y) =
        tokio::join!(s.claim_due_reconciliations("node-a", ttl), other.claim_due_reconciliations("node-b", ttl));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "one node runs it: {x:?} {y:?}");
    let (owner, claimed, loser) = if x.len() == 1 { ("node-a", &x[0], "node-b") } else { ("node-b", &y[0], "node-a") };
    assert_eq!(claimed.trust.trust, "app", "only the scheduled target");
    let started = e.clock.now();
    let shown = s.sync_target(&r).await.unwrap().unwrap();
    assert_eq!(shown.next_reconcile_at, Some(started.saturating_add(HOUR)));
    let run = shown.last_reconcile.unwrap();
    assert_eq!((run.outcome.as_str(), run.started_at, run.finished_at), ("running", started, None));

    // Only the holder records the outcome.
    assert!(!s.finish_reconciliation(&claimed.trust_id, loser, &done("succeeded")).await.unwrap());
    e.clock.advance(Duration::from_secs(5));
    assert!(s.finish_reconciliation(&claimed.trust_id, owner, &done("succeeded")).await.unwrap());
    let run = s.sync_target(&r).await.unwrap().unwrap().last_reconcile.unwrap();
    assert_eq!((run.outcome.as_str(), run.finished_at), ("succeeded", Some(e.clock.now())));
    assert_eq!(run.counts["planned"]["create"], 1);

    // Next interval: a run that outlasts it keeps the other node off until its lease ends.
    e.clock.advance(HOUR);
    let first = s.claim_due_reconciliations("node-a", Duration::from_secs(2 * 3600)).await.unwrap();
    assert_eq!(first.len(), 1);
    e.clock.advance(HOUR + Duration::from_secs(1));
    assert!(other.claim_due_reconciliations("node-b", ttl).await.unwrap().is_empty(), "still running elsewhere");
    e.clock.advance(HOUR);
    let taken = other.claim_due_reconciliations("node-b", ttl).await.unwrap();
    assert_eq!(taken.len(), 1, "the lease of a node that died expired");
    assert!(!s.finish_reconciliation(&first[0].trust_id, "node-a", &done("succeeded")).await.unwrap());

    // A failure is recorded with its error and retried at its retry time, not an hour on.
    let retry = e.clock.now().saturating_add(Duration::from_secs(900));
    let failed = RunOutcome {
        outcome: "failed",
        counts: json!({"dry_run": false}),
        error: Some("cannot read the target: network error".into()),
        retry_at: Some(retry),
    };
    assert!(other.finish_reconciliation(&taken[0].trust_id, "node-b", &failed).await.unwrap());
    let t = s.sync_target(&r).await.unwrap().unwrap();
    assert_eq!(t.next_reconcile_at, Some(retry));
    let run = t.last_reconcile.unwrap();
    assert_eq!((run.outcome.as_str(), run.error.as_deref()), ("failed", Some("cannot read the target: network error")));
    e.clock.advance(Duration::from_secs(899));
    assert!(s.claim_due_reconciliations("node-a", ttl).await.unwrap().is_empty());
    e.clock.advance(Duration::from_secs(1));
    let again = s.claim_due_reconciliations("node-a", ttl).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(s.finish_reconciliation(&again[0].trust_id, "node-a", &done("succeeded")).await.unwrap());

    // A suspended trust's target waits; resumed, its overdue run is claimed.
    e.clock.advance(HOUR);
    s.set_trust_status(&a, &r, TrustStatus::Suspended).await.unwrap();
    assert!(s.claim_due_reconciliations("node-a", ttl).await.unwrap().is_empty());
    s.set_trust_status(&a, &r, TrustStatus::Active).await.unwrap();
    let resumed = s.claim_due_reconciliations("node-a", ttl).await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(s.finish_reconciliation(&resumed[0].trust_id, "node-a", &done("succeeded")).await.unwrap());

    // Off: nothing is due any more; the last run stays on record.
    let t = s.set_sync_target(&a, &r, target(None)).await.unwrap();
    assert_eq!((t.reconcile_every_seconds, t.next_reconcile_at), (None, None));
    assert!(t.last_reconcile.is_some());
    e.clock.advance(HOUR * 48);
    assert!(s.claim_due_reconciliations("node-a", ttl).await.unwrap().is_empty());
    verify(s).await.unwrap();
}
