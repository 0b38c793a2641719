-- How many operations the dispatcher may put in one SCIM /Bulk request to a target:
-- NULL = as many as the target advertises (bulk.maxOperations, capped by fedkey), 0 = never
-- use /Bulk (one request per change), N = at most N (and at most what the target allows).
ALTER TABLE sync_targets ADD COLUMN bulk_max_operations BIGINT;
-- Fair sharing of a target's slots between nodes: a node that found every slot taken by
-- others records itself here for a few seconds, and the others then leave it half.
ALTER TABLE sync_targets ADD COLUMN starved_node TEXT;
ALTER TABLE sync_targets ADD COLUMN starved_until BIGINT;
