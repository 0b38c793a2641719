-- Outbound provisioning (see crates/store/src/ops/outbox.rs).

-- Transactional outbox: one row per change to a directory resource, inserted in the
-- transaction of the change. Consumers claim rows and delete them in the transaction
-- that records the per-target work, so a change whose transaction commits late is
-- never skipped (there is no "last seen" cursor).
CREATE TABLE sync_outbox (
    seq           {{serial_pk}},
    directory_id  TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    change        TEXT NOT NULL,
    display       TEXT,
    leaver        BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Where an outbound trust provisions to. oauth is non-secret JSON; oauth_secret is an
-- envelope (AAD sync-target/TRUST_ID). mapping is the fedkey_sync::Mapping JSON.
CREATE TABLE sync_targets (
    trust_id             TEXT PRIMARY KEY REFERENCES trusts(id) ON DELETE CASCADE,
    directory_id         TEXT NOT NULL,
    base_url             TEXT NOT NULL,
    oauth                TEXT,
    oauth_secret         {{blob}},
    mapping              TEXT NOT NULL,
    max_attempts         BIGINT NOT NULL,
    concurrency          BIGINT NOT NULL,
    timeout_seconds      BIGINT NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    circuit_open_until   BIGINT,
    last_error           TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    updated_by           TEXT NOT NULL
);
CREATE INDEX sync_targets_directory ON sync_targets (directory_id);

-- Per (target, resource) work: the latest desired generation (coalesced), delivery
-- state, lease, the remote id, and for leavers the deprovisioning confirmation.
CREATE TABLE sync_work (
    trust_id         TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    resource_type    TEXT NOT NULL,
    resource_id      TEXT NOT NULL,
    directory_id     TEXT NOT NULL,
    display          TEXT,
    generation       BIGINT NOT NULL,
    done_generation  BIGINT NOT NULL,
    deleted          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    remote_id        TEXT,
    remote_active    BIGINT,
    leaver_since     BIGINT,
    deprovisioned_at BIGINT,
    delivered_at     BIGINT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (trust_id, resource_type, resource_id)
);
CREATE INDEX sync_work_due ON sync_work (trust_id, status, next_attempt_at);
CREATE INDEX sync_work_leavers ON sync_work (directory_id, leaver_since);
