//! Aggregates read by the health model (`fedkey doctor`, `GET /api/v1/health`, `/metrics`):
//! per-target queue figures, the outbox, and the audit chain's head and last checkpoint.
//! A handful of aggregate queries per call; callers cache the result (see the server's
//! metrics), so nothing here runs per SCIM request.

use fedkey_core::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::Store;
use crate::StoreError;

/// Queue figures of one sync target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetQueue {
    #[serde(skip)]
    pub trust_id: String,
    /// Work rows waiting for delivery (due now or retrying later).
    pub pending: i64,
    /// Dead letters: rows that will not be retried until an operator acts.
    pub dead_letters: i64,
    /// When the oldest pending row was queued or last attempted.
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub oldest_pending_since: Option<Timestamp>,
    /// The last confirmed delivery to the target.
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_success_at: Option<Timestamp>,
}

/// The newest dead letter of a target: what failed and why.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterSample {
    pub resource_type: String,
    pub resource_id: String,
    pub display: Option<String>,
    pub error: Option<String>,
}

/// Changes written to the outbox and not yet fanned out to the targets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxQueue {
    pub pending: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub oldest_at: Option<Timestamp>,
}

/// The audit chain's head and its last signed checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct AuditState {
    pub head_seq: i64,
    pub head_hash: String,
    pub last_checkpoint_size: Option<i64>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_checkpoint_at: Option<Timestamp>,
}

fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

/// Every trust's key versions, connectors and rotation policy, by trust id: what the health
/// model needs of each trust, read in three statements instead of several per trust (the
/// console's overview renders it with a thousand trusts).
#[derive(Debug, Default)]
pub struct TrustFigures {
    /// Ordered by version.
    pub keys: std::collections::HashMap<String, Vec<crate::KeyVersion>>,
    pub connectors: std::collections::HashMap<String, Vec<super::ConnectorRow>>,
    pub policies: std::collections::HashMap<String, super::PolicyRow>,
}

impl Store {
    /// See [`TrustFigures`].
    pub async fn trust_figures(&self) -> Result<TrustFigures, StoreError> {
        let mut f = TrustFigures::default();
        let pool = self.db.pool();
        let sql = format!("{} ORDER BY trust_id, version", super::keys::KEY_SELECT);
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await? {
            let k = super::keys::key_from_row(&row)?;
            f.keys.entry(k.trust_id.clone()).or_default().push(k);
        }
        let sql = format!("{} ORDER BY trust_id, created_at, name", super::rotation::CONNECTOR_SELECT);
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await? {
            let c = super::rotation::connector_from_row(&row)?;
            f.connectors.entry(c.trust_id.clone()).or_default().push(c);
        }
        let sql = super::rotation::POLICY_SELECT.replacen("SELECT ", "SELECT trust_id, ", 1);
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await? {
            let trust_id: String = row.try_get("trust_id")?;
            f.policies.insert(trust_id, super::rotation::policy_from_row(&row)?);
        }
        Ok(f)
    }

    /// Queue figures of every target that has work rows (targets without rows have none).
    pub async fn target_queues(&self) -> Result<Vec<TargetQueue>, StoreError> {
        let rows = sqlx::query(
            "SELECT trust_id, \
             SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending, \
             SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead, \
             MIN(CASE WHEN status = 'pending' THEN updated_at END) AS oldest, \
             MAX(delivered_at) AS last_delivered \
             FROM sync_work GROUP BY trust_id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TargetQueue {
                    trust_id: r.try_get("trust_id")?,
                    pending: r.try_get::<Option<i64>, _>("pending")?.unwrap_or(0),
                    dead_letters: r.try_get::<Option<i64>, _>("dead")?.unwrap_or(0),
                    oldest_pending_since: opt_ts(r.try_get("oldest")?),
                    last_success_at: opt_ts(r.try_get("last_delivered")?),
                })
            })
            .collect()
    }

    /// The most recent dead letter of a target, if any.
    pub async fn latest_dead_letter(&self, trust_id: &str) -> Result<Option<DeadLetterSample>, StoreError> {
        let row = sqlx::query(
            "SELECT resource_type, resource_id, display, last_error FROM sync_work \
             WHERE trust_id = $1 AND status = 'dead' ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(trust_id.to_owned())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| {
            Ok(DeadLetterSample {
                resource_type: r.try_get("resource_type")?,
                resource_id: r.try_get("resource_id")?,
                display: r.try_get("display")?,
                error: r.try_get("last_error")?,
            })
        })
        .transpose()
    }

    pub async fn outbox_queue(&self) -> Result<OutboxQueue, StoreError> {
        let r = sqlx::query("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM sync_outbox")
            .fetch_one(self.db.pool())
            .await?;
        Ok(OutboxQueue { pending: r.try_get("n")?, oldest_at: opt_ts(r.try_get("oldest")?) })
    }

    pub async fn audit_state(&self) -> Result<AuditState, StoreError> {
        let (seq, hash) = crate::audit::head(&self.db).await?;
        let cp = sqlx::query("SELECT size, ts FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(self.db.pool())
            .await?;
        let (size, at) = match cp {
            Some(r) => (Some(r.try_get::<i64, _>("size")?), Some(Timestamp(r.try_get::<i64, _>("ts")?))),
            None => (None, None),
        };
        Ok(AuditState {
            head_seq: seq,
            head_hash: hex::encode(hash),
            last_checkpoint_size: size,
            last_checkpoint_at: at,
        })
    }
}
