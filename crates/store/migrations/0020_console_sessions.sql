-- Operator console sessions (/ui). The cookie holds a random session id; only its SHA-256
-- is stored, so a database read does not hand out live sessions. Rows live in the database
-- (not in a node's memory) so any node of a cluster serves any signed-in operator. A
-- session ends with its admin token: the token's row is joined on every request.
CREATE TABLE console_sessions (
    id_hash {{blob}} PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES admin_tokens(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at {{integer}} NOT NULL,
    last_seen_at {{integer}} NOT NULL,
    expires_at {{integer}} NOT NULL
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
