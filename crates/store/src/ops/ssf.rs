//! State the OpenID SSF transmitter keeps beside the event streams (`ops/events.rs`): when
//! each stream was last verified, for `min_verification_interval` (table
//! `ssf_verifications`, migration 0022).

use std::time::Duration;

use crate::StoreError;
use crate::ops::Store;

impl Store {
    /// Takes the verification slot of `stream_id`: true, and the request time recorded, when
    /// no verification was requested in the last `min_interval`; false otherwise. One
    /// conditional upsert, so concurrent requests on any nodes get at most one slot.
    pub async fn take_verification_slot(&self, stream_id: &str, min_interval: Duration) -> Result<bool, StoreError> {
        let now = self.now();
        let done = sqlx::query(
            "INSERT INTO ssf_verifications (stream_id, requested_at) VALUES ($1, $2) \
             ON CONFLICT (stream_id) DO UPDATE SET requested_at = excluded.requested_at \
             WHERE ssf_verifications.requested_at <= $3",
        )
        .bind(stream_id.to_owned())
        .bind(now.0)
        .bind(now.saturating_sub(min_interval).0)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
