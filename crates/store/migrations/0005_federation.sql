-- Trust material watchers and federated (JWT) authentication (see ops/material.rs).

-- Where a trust's peer publishes its signing keys, and how its JWTs are checked.
-- config is JSON: {"discovery_url"|"jwks_url"|"saml_metadata_url", "jwt": {...}}.
CREATE TABLE trust_sources (
    trust_id   TEXT PRIMARY KEY REFERENCES trusts(id) ON DELETE CASCADE,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Versions of fetched trust material. status: current | pending (held for approval) |
-- superseded | rejected | expired. At most one current and one pending per trust.
CREATE TABLE trust_material (
    trust_id   TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    status     TEXT NOT NULL,
    digest     TEXT NOT NULL,
    material   TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT,
    decided_at BIGINT,
    decided_by TEXT,
    PRIMARY KEY (trust_id, version)
);
CREATE INDEX trust_material_status ON trust_material (trust_id, status);

-- JWT ids already accepted, until the token expires: a replayed assertion is refused.
CREATE TABLE jwt_replay (
    trust_id   TEXT NOT NULL,
    jti_hash   {{blob}} NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (trust_id, jti_hash)
);
CREATE INDEX jwt_replay_expiry ON jwt_replay (expires_at);
