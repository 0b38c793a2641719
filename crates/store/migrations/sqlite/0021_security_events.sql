-- Security events (RFC 8417 SETs): RFC 9967 SCIM events and OpenID SSF streams, fed by the
-- transactional outbox. See crates/store/src/ops/events.rs for what each column holds.

-- What a write did, for the event pipeline: a JSON array of kinds (create, patch, put,
-- delete, activate, deactivate, credential:password:CHANGE, credential:x509:CHANGE with
-- CHANGE create/update/delete); NULL for membership-only rows. attributes: a JSON array of
-- the attribute names the write changed (RFC 9967 "notice" payloads). external_id and
-- version describe the resource as the write left it (a deleted one is gone by delivery).
ALTER TABLE sync_outbox ADD COLUMN events TEXT;
ALTER TABLE sync_outbox ADD COLUMN attributes TEXT;
ALTER TABLE sync_outbox ADD COLUMN external_id TEXT;
ALTER TABLE sync_outbox ADD COLUMN version BIGINT;

-- A receiver of one directory's events. authorization_header is a sealed envelope (AAD
-- event-stream/ID) of the Authorization header value a push sends; poll_secret_hash the
-- SHA-256 of the bearer secret a scim poll receiver presents.
CREATE TABLE event_streams (
    id                   TEXT PRIMARY KEY,
    directory_id         TEXT NOT NULL REFERENCES directories(id),
    kind                 TEXT NOT NULL,
    receiver_trust_id    TEXT REFERENCES trusts(id) ON DELETE CASCADE,
    delivery             TEXT NOT NULL,
    endpoint_url         TEXT,
    allow_http           BIGINT NOT NULL,
    authorization_header BLOB,
    poll_secret_hash     BLOB,
    audience             TEXT NOT NULL,
    events_requested     TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_reason        TEXT,
    description          TEXT,
    consecutive_failures BIGINT NOT NULL,
    last_error           TEXT,
    last_delivered_at    BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    updated_by           TEXT NOT NULL
);
CREATE INDEX event_streams_directory ON event_streams (directory_id, kind);
CREATE INDEX event_streams_receiver ON event_streams (receiver_trust_id);

-- One SET to deliver to one stream, until acknowledged (poll), accepted (push, 202) or
-- refused for good. created_at is the SET's iat.
CREATE TABLE security_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id        TEXT NOT NULL REFERENCES event_streams(id) ON DELETE CASCADE,
    jti              TEXT NOT NULL UNIQUE,
    event_type       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    txn              TEXT,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX security_events_stream ON security_events (stream_id, seq);
CREATE INDEX security_events_due ON security_events (next_attempt_at);
