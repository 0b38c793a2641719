//! Master-key rotation: every DEK is re-wrapped under the active key, one row per
//! transaction, so the server keeps running (envelopes under either key open while the
//! keyring holds both).

use fedkey_audit::Outcome;
use fedkey_crypto::Keyring;
use serde_json::json;
use sqlx::Row;

use super::{Actor, Store};
use crate::StoreError;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RewrapReport {
    pub total: u64,
    pub rewrapped: u64,
    pub already_current: u64,
}

impl Store {
    /// Number of envelopes the store holds (for a progress bar's length).
    pub async fn envelope_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM key_versions WHERE envelope IS NOT NULL")
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0) + crate::install::Install::SEALED.len() as u64)
    }

    /// Re-wraps every envelope under `ring`'s active key. `progress` is called after each.
    pub async fn rewrap_all(
        &self,
        actor: &Actor,
        ring: &Keyring,
        mut progress: impl FnMut(u64),
    ) -> Result<RewrapReport, StoreError> {
        let mut rep = RewrapReport::default();
        for (name, _) in crate::install::Install::SEALED {
            let mut tx = self.db.begin().await?;
            let row = sqlx::query("SELECT value FROM install WHERE name = $1").bind(name).fetch_one(&mut *tx).await?;
            let env: Vec<u8> = row.try_get("value")?;
            rep.total += 1;
            match ring.rewrap(&env)? {
                Some(new) => {
                    sqlx::query("UPDATE install SET value = $1 WHERE name = $2")
                        .bind(new)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    rep.rewrapped += 1;
                }
                None => rep.already_current += 1,
            }
            progress(rep.total);
        }
        let rows = sqlx::query(
            "SELECT trust_id, version FROM key_versions WHERE envelope IS NOT NULL ORDER BY trust_id, version",
        )
        .fetch_all(self.db.pool())
        .await?;
        for r in rows {
            let trust_id: String = r.try_get("trust_id")?;
            let version: i64 = r.try_get("version")?;
            let mut tx = self.db.begin().await?;
            let row = sqlx::query("SELECT envelope FROM key_versions WHERE trust_id = $1 AND version = $2")
                .bind(trust_id.clone())
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            rep.total += 1;
            if let Some(env) = row.and_then(|row| row.try_get::<Option<Vec<u8>>, _>("envelope").ok().flatten()) {
                match ring.rewrap(&env)? {
                    Some(new) => {
                        sqlx::query("UPDATE key_versions SET envelope = $1 WHERE trust_id = $2 AND version = $3")
                            .bind(new)
                            .bind(trust_id)
                            .bind(version)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        rep.rewrapped += 1;
                    }
                    None => rep.already_current += 1,
                }
            }
            progress(rep.total);
        }
        self.record(
            actor,
            "master_key.rotate",
            Outcome::Success,
            json!({"active_kek": ring.active().id(), "report": rep}),
        )
        .await?;
        Ok(rep)
    }
}
