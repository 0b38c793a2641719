-- OpenID SSF: when a receiver last asked for a verification event on a stream, so that
-- min_verification_interval holds across every node (a node's memory would not). One row
-- per stream that was ever verified; it goes with the stream.
CREATE TABLE ssf_verifications (
    stream_id    TEXT PRIMARY KEY REFERENCES event_streams(id) ON DELETE CASCADE,
    requested_at BIGINT NOT NULL
);
