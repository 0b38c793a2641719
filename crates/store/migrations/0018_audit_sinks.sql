-- Audit streaming: one row per configured sink. `seq` is the last record the sink
-- acknowledged; the streamer sends the records after it, in order, then moves it. A lease
-- lets one node at a time stream a sink.
CREATE TABLE audit_sink_cursors (
    sink TEXT PRIMARY KEY,
    seq {{integer}} NOT NULL DEFAULT 0,
    delivered_at {{integer}},
    last_error TEXT,
    last_error_at {{integer}},
    failures {{integer}} NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until {{integer}}
);
