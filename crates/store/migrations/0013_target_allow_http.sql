-- Lab opt-in of a provisioning target: plain http to a host that is not loopback (the base
-- URL and the OAuth2 token URL). Off for every existing target.
ALTER TABLE sync_targets ADD COLUMN allow_http BIGINT NOT NULL DEFAULT 0;
