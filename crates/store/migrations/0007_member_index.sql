-- A user's groups are read on every GET of the user. With only (directory_id, member_id)
-- SQLite's planner preferred the covering primary key and scanned every membership of the
-- directory (28.9 ms per lookup at 100,000 memberships); a covering index on the member
-- side makes it a point lookup (0.05 ms). PostgreSQL gets index-only scans from it too.
DROP INDEX scim_members_member;
CREATE INDEX scim_members_member ON scim_members (directory_id, member_id, group_id, member_type);
