//! What notifications need from the database: a de-duplication claim shared by every node,
//! and the key versions that expire soon.

use fedkey_core::Timestamp;
use sqlx::Row;

use super::Store;
use crate::StoreError;

/// A key version that stops working at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringKey {
    pub trust_id: String,
    /// `directory/trust`.
    pub trust: String,
    pub version: i64,
    pub expires_at: Timestamp,
}

impl Store {
    /// Whether writes, audit records included, are failing for a reason of the database
    /// (none has succeeded since the last failure).
    pub fn writes_failing(&self) -> bool {
        self.db.health.writes_failing()
    }

    /// Claims the sending of the notification `key` in `state`: true when none was sent
    /// for `key`, it was sent in another state, or it was sent before `resend_before`
    /// (`None`: never again in the same state). One conditional upsert, so of several
    /// nodes claiming the same notification exactly one wins.
    pub async fn claim_notification(
        &self,
        key: &str,
        state: &str,
        resend_before: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO notifications_sent (event_key, state, sent_at) VALUES ($1, $2, $3) \
             ON CONFLICT (event_key) DO UPDATE SET state = excluded.state, sent_at = excluded.sent_at \
             WHERE notifications_sent.state <> excluded.state OR notifications_sent.sent_at < $4",
        )
        .bind(key.to_owned())
        .bind(state.to_owned())
        .bind(self.now().0)
        .bind(resend_before.map_or(i64::MIN, |t| t.0))
        .execute(self.db.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Key versions still accepted that expire after now and at or before `until`.
    pub async fn expiring_keys(&self, until: Timestamp) -> Result<Vec<ExpiringKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.trust_id, k.version, k.expires_at, d.name AS directory, t.name AS trust FROM key_versions k \
             JOIN trusts t ON t.id = k.trust_id JOIN directories d ON d.id = t.directory_id \
             WHERE k.state IN ('previous', 'current') AND k.expires_at IS NOT NULL \
             AND k.expires_at > $1 AND k.expires_at <= $2 ORDER BY k.expires_at",
        )
        .bind(self.now().0)
        .bind(until.0)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let (d, t): (String, String) = (r.try_get("directory")?, r.try_get("trust")?);
                Ok(ExpiringKey {
                    trust_id: r.try_get("trust_id")?,
                    trust: format!("{d}/{t}"),
                    version: r.try_get("version")?,
                    expires_at: Timestamp(r.try_get("expires_at")?),
                })
            })
            .collect()
    }
}
