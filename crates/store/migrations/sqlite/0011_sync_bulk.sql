-- How many operations the dispatcher may put in one SCIM /Bulk request to a target:
-- NULL = as many as the target advertises (bulk.maxOperations, capped by fedkey), 0 = never
-- use /Bulk (one request per change), N = at most N (and at most what the target allows).
ALTER TABLE sync_targets ADD COLUMN bulk_max_operations BIGINT;
