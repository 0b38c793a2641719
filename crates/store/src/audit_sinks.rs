//! Cursors of the audit streaming sinks (`audit_sink_cursors`, migration 0018).
//!
//! Delivery is at-least-once: the streamer reads the records after a sink's cursor, sends
//! them, and only then moves the cursor. A crash between the two sends those records again.
//!
//! One node at a time streams a sink: a **lease** (`lease_owner`, `lease_until`) is taken
//! and renewed with a conditional `UPDATE` (the owner's own, or one that has lapsed), and
//! the cursor moves only under the lease. A node that dies leaves its lease to lapse.

use std::time::Duration;

use fedkey_core::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Longest error text kept per sink.
const MAX_ERROR_LEN: usize = 500;

/// Where a sink stands: what the health model, the API and `fedkey audit sinks` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    /// The last record the sink acknowledged.
    pub cursor: i64,
    /// The last record in the log.
    pub head: i64,
    /// Records committed but not yet acknowledged by the sink (`head - cursor`).
    pub lag: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub delivered_at: Option<Timestamp>,
    /// The last failure, kept until the next successful send.
    pub last_error: Option<String>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_error_at: Option<Timestamp>,
    /// Sends failed in a row.
    pub failures: i64,
    /// The node streaming it, while its lease lasts.
    pub lease_owner: Option<String>,
}

impl Store {
    /// Takes or renews `sink`'s lease for `owner` and returns its cursor; `None` while
    /// another node holds it. Creates the sink's row on first use (cursor 0: the whole log).
    pub async fn audit_sink_claim(&self, sink: &str, owner: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO audit_sink_cursors (sink, seq, failures) VALUES ($1, 0, 0) ON CONFLICT (sink) DO NOTHING",
        )
        .bind(sink.to_owned())
        .execute(self.db.pool())
        .await?;
        let taken = sqlx::query(
            "UPDATE audit_sink_cursors SET lease_owner = $1, lease_until = $2 \
             WHERE sink = $3 AND (lease_owner = $1 OR lease_owner IS NULL OR lease_until IS NULL OR lease_until <= $4)",
        )
        .bind(owner.to_owned())
        .bind(now.saturating_add(ttl).0)
        .bind(sink.to_owned())
        .bind(now.0)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT seq FROM audit_sink_cursors WHERE sink = $1")
            .bind(sink.to_owned())
            .fetch_one(self.db.pool())
            .await?;
        Ok(Some(row.try_get("seq")?))
    }

    /// Moves `sink`'s cursor forward to `seq` once the sink acknowledged it, and clears its
    /// error. Only under `owner`'s lease; returns whether it moved.
    pub async fn audit_sink_advance(&self, sink: &str, owner: &str, seq: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE audit_sink_cursors SET seq = $1, delivered_at = $2, last_error = NULL, failures = 0 \
             WHERE sink = $3 AND lease_owner = $4 AND seq < $1",
        )
        .bind(seq)
        .bind(self.now().0)
        .bind(sink.to_owned())
        .bind(owner.to_owned())
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Notes a failed send (the cursor stays where it is).
    pub async fn audit_sink_failed(&self, sink: &str, owner: &str, error: &str) -> Result<(), StoreError> {
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        sqlx::query(
            "UPDATE audit_sink_cursors SET last_error = $1, last_error_at = $2, failures = failures + 1 \
             WHERE sink = $3 AND lease_owner = $4",
        )
        .bind(error)
        .bind(self.now().0)
        .bind(sink.to_owned())
        .bind(owner.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Gives up `owner`'s lease (a clean shutdown), so another node takes over at once.
    pub async fn audit_sink_release(&self, sink: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE audit_sink_cursors SET lease_owner = NULL, lease_until = NULL WHERE sink = $1 AND lease_owner = $2",
        )
        .bind(sink.to_owned())
        .bind(owner.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Every sink that has streamed, by name, with its lag behind the head of the log.
    pub async fn audit_sink_status(&self) -> Result<Vec<SinkStatus>, StoreError> {
        let (head, _) = crate::audit::head(&self.db).await?;
        let now = self.now().0;
        let rows = sqlx::query(
            "SELECT sink, seq, delivered_at, last_error, last_error_at, failures, lease_owner, lease_until \
             FROM audit_sink_cursors ORDER BY sink",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let cursor: i64 = r.try_get("seq")?;
                let lease_until: Option<i64> = r.try_get("lease_until")?;
                let owner: Option<String> = r.try_get("lease_owner")?;
                Ok(SinkStatus {
                    sink: r.try_get("sink")?,
                    cursor,
                    head,
                    lag: (head - cursor).max(0),
                    delivered_at: r.try_get::<Option<i64>, _>("delivered_at")?.map(Timestamp),
                    last_error: r.try_get("last_error")?,
                    last_error_at: r.try_get::<Option<i64>, _>("last_error_at")?.map(Timestamp),
                    failures: r.try_get("failures")?,
                    lease_owner: owner.filter(|_| lease_until.is_some_and(|u| u > now)),
                })
            })
            .collect()
    }
}
