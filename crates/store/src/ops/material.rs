//! Persistence of trust material (the peer's published signing keys) and of federated
//! authentication state. The store keeps documents as JSON: parsing, validation and the
//! acceptance rule live in `fedkey-federation`; this layer versions, audits and serves them.

use fedkey_audit::Outcome;
use fedkey_core::{Timestamp, TrustRef};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, opt_ts};
use crate::StoreError;

/// Largest trust-source configuration accepted.
pub const MAX_SOURCE_CONFIG: usize = 16 * 1024;

/// A trust's material source, as configured.
#[derive(Debug, Clone, Serialize)]
pub struct TrustSource {
    #[serde(skip)]
    pub trust_id: String,
    pub trust: TrustRef,
    pub config: Value,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// One stored version of a trust's material.
#[derive(Debug, Clone, Serialize)]
pub struct MaterialVersion {
    pub version: i64,
    /// `current`, `pending`, `superseded`, `rejected` or `expired`.
    pub status: String,
    pub digest: String,
    pub material: Value,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub fetched_at: Timestamp,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub expires_at: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub decided_at: Option<Timestamp>,
    pub decided_by: Option<String>,
}

/// A newly fetched version to store.
pub struct NewMaterial<'a> {
    pub arrival: Arrival,
    pub digest: &'a str,
    pub material: &'a Value,
    pub fetched_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// What a new version is, on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Accepted automatically (shares a signing key with the current version, or first).
    Accepted,
    /// Held for approval (shares no signing key with the current version).
    Held,
}

const MATERIAL_SELECT: &str =
    "SELECT version, status, digest, material, fetched_at, expires_at, decided_at, decided_by FROM trust_material";

impl Store {
    /// Sets where a trust's peer publishes its keys (validated by the caller).
    pub async fn set_trust_source(
        &self,
        actor: &Actor,
        r: &TrustRef,
        config: Value,
    ) -> Result<TrustSource, StoreError> {
        let trust = self.trust(r).await?;
        let text = config.to_string();
        if text.len() > MAX_SOURCE_CONFIG {
            return Err(StoreError::Invalid(format!("a trust source is at most {MAX_SOURCE_CONFIG} bytes")));
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM trust_sources WHERE trust_id = $1").bind(trust.id.clone()).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO trust_sources (trust_id, config, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
            .bind(trust.id.clone())
            .bind(text)
            .bind(now.0)
            .bind(actor.id.clone())
            .execute(&mut *tx)
            .await?;
        let ev = self
            .event(actor, "material.source.set", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"config": config}));
        self.commit_with(tx, actor, ev).await?;
        Ok(TrustSource { trust_id: trust.id, trust: r.clone(), config, updated_at: now, updated_by: actor.id.clone() })
    }

    pub async fn remove_trust_source(&self, actor: &Actor, r: &TrustRef) -> Result<(), StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("DELETE FROM trust_sources WHERE trust_id = $1")
            .bind(trust.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("a trust material source for {r}")));
        }
        let ev = self.event(actor, "material.source.delete", Outcome::Success).directory(&r.directory).trust(&r.trust);
        self.commit_with(tx, actor, ev).await
    }

    /// Every configured source (the watchers load them at start-up and on change).
    pub async fn trust_sources(&self) -> Result<Vec<TrustSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.trust_id, d.name AS directory, t.name AS trust, s.config, s.updated_at, s.updated_by \
             FROM trust_sources s JOIN trusts t ON t.id = s.trust_id JOIN directories d ON d.id = t.directory_id \
             ORDER BY d.name, t.name",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let config: String = r.try_get("config")?;
                Ok(TrustSource {
                    trust_id: r.try_get("trust_id")?,
                    trust: TrustRef { directory: r.try_get("directory")?, trust: r.try_get("trust")? },
                    config: serde_json::from_str(&config)
                        .map_err(|_| StoreError::Corrupt("trust_sources.config".into()))?,
                    updated_at: Timestamp(r.try_get("updated_at")?),
                    updated_by: r.try_get("updated_by")?,
                })
            })
            .collect()
    }

    /// Stores a newly fetched version. Accepted: it becomes current (the old current is
    /// superseded). Held: it becomes the pending version (replacing an older pending one).
    pub async fn record_material(&self, actor: &Actor, r: &TrustRef, m: NewMaterial<'_>) -> Result<i64, StoreError> {
        let NewMaterial { arrival, digest, material, fetched_at, expires_at } = m;
        let trust = self.trust(r).await?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(self.db.backend.lock_trust()).bind(trust.id.clone()).fetch_optional(&mut *tx).await?;
        let version: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM trust_material WHERE trust_id = $1")
                .bind(trust.id.clone())
                .fetch_one(&mut *tx)
                .await?
                .try_get("v")?;
        let (status, retire, action) = match arrival {
            Arrival::Accepted => ("current", "current", "material.accept"),
            Arrival::Held => ("pending", "pending", "material.hold"),
        };
        let retired_status = if arrival == Arrival::Accepted { "superseded" } else { "rejected" };
        sqlx::query("UPDATE trust_material SET status = $1, decided_at = $2 WHERE trust_id = $3 AND status = $4")
            .bind(retired_status)
            .bind(now.0)
            .bind(trust.id.clone())
            .bind(retire)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO trust_material (trust_id, version, status, digest, material, fetched_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(trust.id.clone())
        .bind(version)
        .bind(status)
        .bind(digest.to_owned())
        .bind(material.to_string())
        .bind(fetched_at.0)
        .bind(expires_at.map(|t| t.0))
        .execute(&mut *tx)
        .await?;
        let outcome = if arrival == Arrival::Accepted { Outcome::Success } else { Outcome::Denied };
        let ev =
            self.event(actor, action, outcome).directory(&r.directory).trust(&r.trust).details(
                json!({"version": version, "digest": digest, "expires_at": expires_at.map(|t| t.to_rfc3339())}),
            );
        self.commit_with(tx, actor, ev).await?;
        Ok(version)
    }

    /// Records a refetch that found the same keys: the current version's refresh and expiry
    /// times move on. Not audited (routine), and a no-op if the digest is not current.
    pub async fn touch_material(
        &self,
        r: &TrustRef,
        digest: &str,
        material: &Value,
        expires_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let trust = self.trust(r).await?;
        sqlx::query(
            "UPDATE trust_material SET material = $1, expires_at = $2 WHERE trust_id = $3 AND status = 'current' AND digest = $4",
        )
        .bind(material.to_string())
        .bind(expires_at.map(|t| t.0))
        .bind(trust.id)
        .bind(digest.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Approves the pending version: it becomes current.
    pub async fn approve_material(&self, actor: &Actor, r: &TrustRef) -> Result<MaterialVersion, StoreError> {
        self.decide_material(actor, r, true).await
    }

    /// Rejects the pending version; the current one stays.
    pub async fn reject_material(&self, actor: &Actor, r: &TrustRef) -> Result<MaterialVersion, StoreError> {
        self.decide_material(actor, r, false).await
    }

    async fn decide_material(&self, actor: &Actor, r: &TrustRef, approve: bool) -> Result<MaterialVersion, StoreError> {
        let trust = self.trust(r).await?;
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(self.db.backend.lock_trust()).bind(trust.id.clone()).fetch_optional(&mut *tx).await?;
        let sql = format!("{MATERIAL_SELECT} WHERE trust_id = $1 AND status = 'pending'");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(trust.id.clone())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("trust material pending approval for {r}")))?;
        let mut v = material_from_row(&row)?;
        if approve {
            sqlx::query("UPDATE trust_material SET status = 'superseded', decided_at = $1 WHERE trust_id = $2 AND status = 'current'")
                .bind(now.0)
                .bind(trust.id.clone())
                .execute(&mut *tx)
                .await?;
        }
        let status = if approve { "current" } else { "rejected" };
        sqlx::query("UPDATE trust_material SET status = $1, decided_at = $2, decided_by = $3 WHERE trust_id = $4 AND version = $5")
            .bind(status)
            .bind(now.0)
            .bind(actor.id.clone())
            .bind(trust.id.clone())
            .bind(v.version)
            .execute(&mut *tx)
            .await?;
        let action = if approve { "material.approve" } else { "material.reject" };
        let ev = self
            .event(actor, action, Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"version": v.version, "digest": v.digest}));
        self.commit_with(tx, actor, ev).await?;
        v.status = status.to_owned();
        v.decided_at = Some(now);
        v.decided_by = Some(actor.id.clone());
        Ok(v)
    }

    /// Marks the current version expired (its hard expiry passed with no good refresh).
    pub async fn expire_material(&self, actor: &Actor, r: &TrustRef, reason: &str) -> Result<(), StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE trust_material SET status = 'expired', decided_at = $1 WHERE trust_id = $2 AND status = 'current'",
        )
        .bind(self.now().0)
        .bind(trust.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(());
        }
        let ev = self
            .event(actor, "material.expire", Outcome::Failure)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"reason": reason}));
        self.commit_with(tx, actor, ev).await
    }

    /// Recent versions of a trust's material, newest first.
    pub async fn material_versions(&self, r: &TrustRef, limit: i64) -> Result<Vec<MaterialVersion>, StoreError> {
        let trust = self.trust(r).await?;
        let sql = format!("{MATERIAL_SELECT} WHERE trust_id = $1 ORDER BY version DESC LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust.id).bind(limit).fetch_all(self.db.pool()).await?;
        rows.iter().map(material_from_row).collect()
    }

    /// Records a JWT id until `expires_at`. Returns false when it was already recorded
    /// (a replay). Expired entries are pruned as a side effect.
    pub async fn remember_jti(&self, trust_id: &str, jti: &str, expires_at: Timestamp) -> Result<bool, StoreError> {
        let now = self.now();
        sqlx::query("DELETE FROM jwt_replay WHERE expires_at < $1").bind(now.0).execute(self.db.pool()).await?;
        let hash = fedkey_crypto::sha256(jti.as_bytes()).to_vec();
        let n = sqlx::query(
            "INSERT INTO jwt_replay (trust_id, jti_hash, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(trust_id.to_owned())
        .bind(hash)
        .bind(expires_at.0)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

fn material_from_row(r: &AnyRow) -> Result<MaterialVersion, StoreError> {
    let material: String = r.try_get("material")?;
    Ok(MaterialVersion {
        version: r.try_get("version")?,
        status: r.try_get("status")?,
        digest: r.try_get("digest")?,
        material: serde_json::from_str(&material).map_err(|_| StoreError::Corrupt("trust_material.material".into()))?,
        fetched_at: Timestamp(r.try_get("fetched_at")?),
        expires_at: opt_ts(r.try_get("expires_at")?),
        decided_at: opt_ts(r.try_get("decided_at")?),
        decided_by: r.try_get("decided_by")?,
    })
}
