-- @sqlite
-- Plans that do not depend on how much data a database happens to hold.
--
-- Without statistics SQLite assumes that `directory_id = ? AND resource_type = ?` picks out
-- few rows, so a filter like `emails[...].value eq "x"` scanned the whole directory instead of
-- starting from the (attr, value_key) index (5 ms at 20,000 users, 0.02 ms with these), and
-- an ORDER BY could be satisfied by walking an entire index. Real ANALYZE output from a fresh
-- database would describe empty tables; these figures describe the shape instead: many
-- resources per directory, ids and names unique, few resources per email, few groups per
-- member. A later ANALYZE (or PRAGMA optimize) replaces them with measured ones.
ANALYZE sqlite_schema;

-- @end
-- Pages of an unfiltered list (`GET /Users?startIndex=…`, reconciliation) in their stable
-- @sqlite
-- order without sorting the directory for every page.
-- @postgres
-- order without sorting the directory for every page. (SQLite's migration 0010 also pins
-- planner statistics; PostgreSQL keeps its own, gathered by autovacuum.)
-- @end
CREATE INDEX scim_resources_created ON scim_resources (directory_id, resource_type, created_at, id);
-- @sqlite

DELETE FROM sqlite_stat1 WHERE tbl IN ('scim_resources', 'scim_members', 'scim_values');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('scim_resources', 'sqlite_autoindex_scim_resources_1', '1000000 100000 1'),
    ('scim_resources', 'sqlite_autoindex_scim_resources_2', '1000000 100000 50000 1'),
    ('scim_resources', 'scim_resources_external_id', '1000000 100000 50000 2'),
    ('scim_resources', 'scim_resources_created', '1000000 100000 50000 2 1'),
    ('scim_members', 'sqlite_autoindex_scim_members_1', '2000000 200000 20 1'),
    ('scim_members', 'scim_members_member', '2000000 200000 4 1 1'),
    ('scim_values', 'sqlite_autoindex_scim_values_1', '1000000 100000 100000 1 1'),
    ('scim_values', 'scim_values_resource', '1000000 100000 1'),
    ('scim_values', 'scim_values_key', '1000000 1000000 1');

-- Makes this connection load the figures above (others load them when they open).
ANALYZE sqlite_schema;
-- @end
