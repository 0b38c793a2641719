-- OAuth 2.0 client settings of a trust (its directory's authorization server): the JWKS
-- its private_key_jwt assertions are verified against (NULL: the trust's watched material)
-- and the lifetime of the access tokens issued to it.
CREATE TABLE oauth_clients (
    trust_id        TEXT PRIMARY KEY REFERENCES trusts(id) ON DELETE CASCADE,
    jwks            TEXT,
    token_ttl_secs  BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    updated_by      TEXT NOT NULL
);
