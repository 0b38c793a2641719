-- Scheduled reconciliation of a target (see crates/store/src/ops/reconcile_schedule.rs).
-- reconcile_every: seconds between runs, NULL when off. next_reconcile_at: when the next
-- run is due; a node claims a run by moving it forward with a conditional UPDATE, so one
-- node runs it. The reconcile_lease_* pair marks a run in progress (a node that dies
-- leaves it to expire). last_reconcile_*: the latest scheduled run, its outcome
-- (running, succeeded, incomplete, failed), its counts (JSON) and its error.
ALTER TABLE sync_targets ADD COLUMN reconcile_every BIGINT;
ALTER TABLE sync_targets ADD COLUMN reconcile_dry_run BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_targets ADD COLUMN next_reconcile_at BIGINT;
ALTER TABLE sync_targets ADD COLUMN reconcile_lease_owner TEXT;
ALTER TABLE sync_targets ADD COLUMN reconcile_lease_until BIGINT;
ALTER TABLE sync_targets ADD COLUMN last_reconcile_started_at BIGINT;
ALTER TABLE sync_targets ADD COLUMN last_reconcile_finished_at BIGINT;
ALTER TABLE sync_targets ADD COLUMN last_reconcile_outcome TEXT;
ALTER TABLE sync_targets ADD COLUMN last_reconcile_counts TEXT;
ALTER TABLE sync_targets ADD COLUMN last_reconcile_error TEXT;
CREATE INDEX sync_targets_reconcile_due ON sync_targets (next_reconcile_at);
