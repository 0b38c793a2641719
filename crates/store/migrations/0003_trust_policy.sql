-- Per-trust least-privilege policy (see crates/store/src/policy.rs).
-- privileged_groups: glob patterns over group displayName, newline-separated.
-- allowed_sources: CIDRs allowed to use the trust's keys, newline-separated; '' = any.
-- rate_limit: requests per second per trust; 0 = unlimited.
ALTER TABLE trusts ADD COLUMN privileged_groups TEXT NOT NULL DEFAULT '';
ALTER TABLE trusts ADD COLUMN allowed_sources TEXT NOT NULL DEFAULT '';
ALTER TABLE trusts ADD COLUMN rate_limit BIGINT NOT NULL DEFAULT 0;
