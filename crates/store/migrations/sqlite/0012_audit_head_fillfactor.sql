-- PostgreSQL only (audit_head's fillfactor): SQLite updates the row in place, with no dead
-- versions. Kept so both backends share one list of schema versions.
SELECT 1;
