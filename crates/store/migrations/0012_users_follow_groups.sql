-- Whether a target's user deliveries depend on the user's group memberships (scope
-- groups, role rules, or a scope filter or user rule reading `groups`). When they do not, a
-- membership change queues no work for the user at that target (the group's delivery
-- carries it). Targets set before this migration keep queueing it until set again.
ALTER TABLE sync_targets ADD COLUMN users_follow_groups BIGINT NOT NULL DEFAULT 1;
