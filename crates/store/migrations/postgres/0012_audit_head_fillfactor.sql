-- Every audited write updates the one row of audit_head, leaving a dead row version. With
-- the default fillfactor PostgreSQL prunes a page's dead versions only once the page is
-- nearly full; under a long write load they piled up (1,445 after 85,000 seeded users), each
-- lookup of the head walked them, and writes slowed about 4x. At fillfactor 10 the page is
-- pruned as soon as its free space drops below 90 %, after a handful of updates, so the
-- updates stay on the page (HOT) and the chain stays short. Autovacuum also visits this
-- one-row table after every 1,000 dead versions instead of waiting for a fraction of its size.
ALTER TABLE audit_head SET (
    fillfactor = 10,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);
