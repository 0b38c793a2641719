-- Notifications already sent, for de-duplication across restarts and nodes: one row per
-- event key (what the event is about) with the state it was sent in and when.
CREATE TABLE notifications_sent (
    event_key TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    sent_at   BIGINT NOT NULL
);
