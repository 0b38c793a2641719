-- fedkey foundation schema ({{dialect}}). Timestamps are integer microseconds since the epoch.
CREATE TABLE directories (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE trusts (
    id           TEXT PRIMARY KEY,
    directory_id TEXT NOT NULL REFERENCES directories(id),
    name         TEXT NOT NULL,
    direction    TEXT NOT NULL,
    peer_kind    TEXT NOT NULL,
    status       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (directory_id, name)
);

CREATE TABLE key_versions (
    trust_id     TEXT NOT NULL REFERENCES trusts(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    state        TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    verifier     {{blob}} UNIQUE,
    envelope     {{blob}},
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    activated_at BIGINT,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    PRIMARY KEY (trust_id, version)
);

CREATE TABLE admin_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    verifier     {{blob}} NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE install (
    name  TEXT PRIMARY KEY,
    value {{blob}} NOT NULL
);

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    ts          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    directory   TEXT,
    trust       TEXT,
    key_version BIGINT,
    source      TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    prev_hash   {{blob}} NOT NULL,
    hash        {{blob}} NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_directory ON audit_log (directory, seq);

-- Append-only: the application never updates or deletes audit rows.
-- @sqlite
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
-- @postgres
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
-- @end

CREATE TABLE audit_head (
    id   {{integer}} PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash {{blob}} NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, {{zero_bytes_32}});

CREATE TABLE audit_checkpoints (
    size      BIGINT PRIMARY KEY,
    head_hash {{blob}} NOT NULL,
    ts        BIGINT NOT NULL,
    signature {{blob}} NOT NULL
);
-- @sqlite
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
-- @postgres
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_checkpoints is append-only'; END; $$;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
-- @end
