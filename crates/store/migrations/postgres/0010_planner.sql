-- Pages of an unfiltered list (`GET /Users?startIndex=…`, reconciliation) in their stable
-- order without sorting the directory for every page. (SQLite's migration 0010 also pins
-- planner statistics; PostgreSQL keeps its own, gathered by autovacuum.)
CREATE INDEX scim_resources_created ON scim_resources (directory_id, resource_type, created_at, id);
