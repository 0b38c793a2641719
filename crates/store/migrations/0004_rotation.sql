-- Rotation engine, connectors, leases and wrapped links (see crates/store/src/ops/rotation.rs).

-- Per-trust rotation policy. next_rotation_at drives the scheduler.
CREATE TABLE rotation_policies (
    trust_id                   TEXT PRIMARY KEY REFERENCES trusts(id) ON DELETE CASCADE,
    period_seconds             BIGINT NOT NULL,
    overlap_seconds            BIGINT NOT NULL,
    validation                 TEXT NOT NULL,
    validation_timeout_seconds BIGINT NOT NULL,
    finish_on_first_use        BIGINT NOT NULL,
    warn_before_seconds        BIGINT NOT NULL,
    rotate_on_material_change  BIGINT NOT NULL,
    enabled                    BIGINT NOT NULL,
    next_rotation_at           BIGINT,
    updated_at                 BIGINT NOT NULL,
    updated_by                 TEXT NOT NULL,
    schedule                   TEXT
);
CREATE INDEX rotation_policies_due ON rotation_policies (next_rotation_at);

-- How a new key version reaches the peer. spec is non-secret JSON; credentials is an
-- envelope (AAD connector/TRUST_ID/ID).
CREATE TABLE connectors (
    id              TEXT PRIMARY KEY,
    trust_id        TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    spec            TEXT NOT NULL,
    credentials     {{blob}},
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    last_success_at BIGINT,
    last_failure_at BIGINT,
    last_error      TEXT,
    UNIQUE (trust_id, name)
);

-- One row per rotation; at most one unfinished per trust. The staged key of an inbound
-- rotation is kept as an envelope in key_versions.envelope until the rotation ends.
CREATE TABLE rotations (
    id              TEXT PRIMARY KEY,
    trust_id        TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    step            TEXT NOT NULL,
    overlap_seconds BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    started_at      BIGINT NOT NULL,
    started_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE UNIQUE INDEX rotations_one_active ON rotations (trust_id) WHERE finished_at IS NULL;
CREATE INDEX rotations_trust ON rotations (trust_id, started_at);

CREATE TABLE rotation_deliveries (
    rotation_id  TEXT NOT NULL REFERENCES rotations(id) ON DELETE CASCADE,
    connector_id TEXT NOT NULL,
    delivered_at BIGINT NOT NULL,
    receipt      TEXT NOT NULL,
    PRIMARY KEY (rotation_id, connector_id)
);

-- Named leases so only one node works on a given thing at a time.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Single-use retrieval links. Only the SHA-256 of the link token is stored; the key
-- envelope (AAD wrap/HASH_HEX) is erased at first use or expiry.
CREATE TABLE wrapped_links (
    token_hash {{blob}} PRIMARY KEY,
    trust_id   TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    envelope   {{blob}},
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_from  TEXT
);
