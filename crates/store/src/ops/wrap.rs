//! Wrapped links: a key handed over as a single-use retrieval token with a short TTL,
//! instead of its plaintext. Only the token's SHA-256 is stored; the key is sealed under
//! the master key until the first retrieval, which erases it. A second retrieval is
//! refused, audited as denied, and reported to the caller so it can raise an alert: the
//! link may have been intercepted.

use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::{Timestamp, TrustRef};
use fedkey_crypto::Secret;
use serde_json::json;
use sqlx::Row;

use super::{Actor, Store};
use crate::StoreError;

/// Longest TTL of a wrapped link.
pub const MAX_WRAP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct WrappedLink {
    /// The single-use token; shown once, to whoever requested the link.
    pub token: Secret,
    pub expires_at: Timestamp,
}

/// Why a retrieval was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapRefusal {
    Unknown,
    Expired {
        trust: TrustRef,
        version: i64,
    },
    /// Already used once: possible interception. The caller raises an alert.
    Reused {
        trust: TrustRef,
        version: i64,
        used_at: Timestamp,
    },
}

fn aad(hash: &[u8]) -> Vec<u8> {
    format!("wrap/{}", hex::encode(hash)).into_bytes()
}

fn token_hash(token: &str) -> [u8; 32] {
    fedkey_crypto::sha256(token.as_bytes())
}

impl Store {
    /// Seals `key` (version `version` of `r`) behind a new single-use token.
    pub async fn wrap_key(
        &self,
        actor: &Actor,
        r: &TrustRef,
        version: i64,
        key: &Secret,
        ttl: Duration,
    ) -> Result<WrappedLink, StoreError> {
        if ttl.is_zero() || ttl > MAX_WRAP_TTL {
            return Err(StoreError::Invalid("a wrapped link lives between 1s and 7 days".into()));
        }
        let trust = self.trust(r).await?;
        let raw = fedkey_crypto::random::bytes::<32>().map_err(|_| StoreError::Crypto("no randomness".into()))?;
        let token = Secret::new(format!("fkw_{}", hex::encode(*raw)));
        let hash = token_hash(token.expose());
        let envelope = self.keyring()?.seal(&aad(&hash), key.expose().as_bytes())?;
        let now = self.now();
        let expires_at = now.saturating_add(ttl);
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO wrapped_links (token_hash, trust_id, version, envelope, created_at, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash.to_vec())
        .bind(trust.id)
        .bind(version)
        .bind(envelope)
        .bind(now.0)
        .bind(actor.id.clone())
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        let ev = self
            .event(actor, "wrap.create", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .key_version(version)
            .details(json!({"link": self.install.fingerprint(token.expose().as_bytes()), "expires_at": expires_at.to_rfc3339()}));
        self.commit_with(tx, actor, ev).await?;
        Ok(WrappedLink { token, expires_at })
    }

    /// Reveals the key behind `token` once. Every attempt is audited.
    pub async fn unwrap_key(
        &self,
        actor: &Actor,
        token: &str,
    ) -> Result<Result<(TrustRef, i64, Secret), UnwrapRefusal>, StoreError> {
        let hash = token_hash(token);
        let link = self.install.fingerprint(token.as_bytes());
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT w.version, w.envelope, w.expires_at, w.used_at, d.name AS directory, t.name AS trust \
             FROM wrapped_links w JOIN trusts t ON t.id = w.trust_id JOIN directories d ON d.id = t.directory_id \
             WHERE w.token_hash = $1",
        )
        .bind(hash.to_vec())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            drop(tx);
            self.record(actor, "wrap.unwrap", Outcome::Failure, json!({"link": link, "reason": "unknown"})).await?;
            return Ok(Err(UnwrapRefusal::Unknown));
        };
        let r = TrustRef { directory: row.try_get("directory")?, trust: row.try_get("trust")? };
        let version: i64 = row.try_get("version")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let expires_at = Timestamp(row.try_get("expires_at")?);
        let envelope: Option<Vec<u8>> = row.try_get("envelope")?;
        let refusal = match (used_at, envelope) {
            (Some(u), _) => Some(UnwrapRefusal::Reused { trust: r.clone(), version, used_at: Timestamp(u) }),
            (None, _) if expires_at <= now => Some(UnwrapRefusal::Expired { trust: r.clone(), version }),
            (None, None) => Some(UnwrapRefusal::Expired { trust: r.clone(), version }),
            (None, Some(_)) => None,
        };
        if let Some(refusal) = refusal {
            drop(tx);
            let (action, reason) = match &refusal {
                UnwrapRefusal::Reused { .. } => ("wrap.reuse", "already used"),
                _ => ("wrap.unwrap", "expired"),
            };
            let ev = self
                .event(actor, action, Outcome::Denied)
                .directory(&r.directory)
                .trust(&r.trust)
                .key_version(version)
                .details(json!({"link": link, "reason": reason}));
            self.audit.record(ev, None).await?;
            return Ok(Err(refusal));
        }
        let envelope: Vec<u8> = row.try_get("envelope")?;
        // Guarded: of two concurrent retrievals only one updates the row.
        let n = sqlx::query(
            "UPDATE wrapped_links SET used_at = $1, used_from = $2, envelope = NULL WHERE token_hash = $3 AND used_at IS NULL",
        )
        .bind(now.0)
        .bind(actor.source.clone())
        .bind(hash.to_vec())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            // A concurrent retrieval won: this one is a reuse like any other.
            drop(tx);
            let ev = self
                .event(actor, "wrap.reuse", Outcome::Denied)
                .directory(&r.directory)
                .trust(&r.trust)
                .key_version(version)
                .details(json!({"link": link, "reason": "already used (concurrently)"}));
            self.audit.record(ev, None).await?;
            return Ok(Err(UnwrapRefusal::Reused { trust: r, version, used_at: now }));
        }
        let plain = self.keyring()?.open(&aad(&hash), &envelope)?;
        let key =
            String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt("wrapped_links.envelope".into()))?;
        let ev = self
            .event(actor, "wrap.unwrap", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .key_version(version)
            .details(json!({"link": link}));
        self.commit_with(tx, actor, ev).await?;
        Ok(Ok((r, version, Secret::new(key))))
    }

    /// Voids a link that could not be handed over (its key sealed behind it is erased).
    pub async fn discard_wrap(&self, token: &Secret) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE wrapped_links SET envelope = NULL, expires_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(self.now().0)
        .bind(token_hash(token.expose()).to_vec())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Erases the sealed keys of links that expired unused.
    pub async fn purge_expired_wraps(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE wrapped_links SET envelope = NULL WHERE envelope IS NOT NULL AND expires_at <= $1")
            .bind(self.now().0)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }
}
