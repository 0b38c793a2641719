//! The OAuth 2.0 side of a trust: its client settings (the JWKS of its `private_key_jwt`
//! assertions, the lifetime of its access tokens) and the per-request check of an access
//! token's subject, through the same cache and generation counter as provisioning keys so
//! that suspending the trust or revoking the key version stops its tokens as soon as it
//! stops the key.

use fedkey_audit::Outcome;
use fedkey_core::{Timestamp, TrustRef};
use fedkey_crypto::token::Verifier;
use serde_json::{Value, json};
use sqlx::Row;

use crate::StoreError;
use crate::auth::{KeyRecord, key_select};
use crate::ops::{Actor, Store};

/// How long a token subject's cached record is trusted: a suspension or revocation made
/// on another node reaches this one's tokens within this bound (or `auth_cache_ttl`, if
/// shorter). On the node that makes the change it applies at once (generation counter).
pub const TOKEN_SUBJECT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Access-token lifetime when a trust has no setting of its own.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 600;
/// Bounds of a configured lifetime: tokens are short-lived by design, and every one of
/// them is re-checked against the trust on each request anyway.
pub const TOKEN_TTL_RANGE_SECS: std::ops::RangeInclusive<i64> = 60..=3600;

/// A trust's OAuth client settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OauthClient {
    /// The registered JWKS (public keys only); `None`: the trust's watched material.
    pub jwks: Option<Value>,
    pub token_ttl_secs: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<String>,
}

impl Default for OauthClient {
    fn default() -> Self {
        OauthClient { jwks: None, token_ttl_secs: DEFAULT_TOKEN_TTL_SECS, updated_at: None, updated_by: None }
    }
}

/// The trust-only twin of `key_select!` for tokens issued on a `private_key_jwt`
/// assertion: no key version is involved (version 0, always "current"), only the trust.
const TRUST_SUBJECT_SELECT: &str = "SELECT t.id AS trust_id, t.scopes, CAST(0 AS BIGINT) AS version, \
    'current' AS state, CAST(NULL AS BIGINT) AS expires_at, t.name AS trust, t.direction, t.peer_kind, t.status, \
    t.privileged_groups, t.allowed_sources, t.rate_limit, t.pending_auth, d.id AS directory_id, \
    d.name AS directory, CAST(1 AS BIGINT) AS delivered \
    FROM trusts t JOIN directories d ON d.id = t.directory_id WHERE t.id = $1";

impl Store {
    /// The OAuth client settings of a trust (defaults when none were set).
    pub async fn oauth_client(&self, r: &TrustRef) -> Result<OauthClient, StoreError> {
        let trust = self.trust(r).await?;
        let row =
            sqlx::query("SELECT jwks, token_ttl_secs, updated_at, updated_by FROM oauth_clients WHERE trust_id = $1")
                .bind(trust.id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else { return Ok(OauthClient::default()) };
        let jwks = match row.try_get::<Option<String>, _>("jwks")? {
            Some(text) => {
                Some(serde_json::from_str(&text).map_err(|_| StoreError::Corrupt("oauth_clients.jwks".into()))?)
            }
            None => None,
        };
        Ok(OauthClient {
            jwks,
            token_ttl_secs: row.try_get("token_ttl_secs")?,
            updated_at: Some(Timestamp(row.try_get("updated_at")?)),
            updated_by: Some(row.try_get("updated_by")?),
        })
    }

    /// Sets a trust's OAuth client settings (audited `trust.oauth`). The JWKS must already
    /// be checked by the caller (public keys only); the lifetime must be in
    /// [`TOKEN_TTL_RANGE_SECS`].
    pub async fn set_oauth_client(
        &self,
        actor: &Actor,
        r: &TrustRef,
        jwks: Option<Value>,
        token_ttl_secs: i64,
    ) -> Result<OauthClient, StoreError> {
        if !TOKEN_TTL_RANGE_SECS.contains(&token_ttl_secs) {
            return Err(StoreError::Invalid(format!(
                "token_ttl: between {} s and {} s",
                TOKEN_TTL_RANGE_SECS.start(),
                TOKEN_TTL_RANGE_SECS.end()
            )));
        }
        let trust = self.trust(r).await?;
        let now = self.now();
        let stored = jwks.as_ref().map(Value::to_string);
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM oauth_clients WHERE trust_id = $1").bind(trust.id.clone()).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO oauth_clients (trust_id, jwks, token_ttl_secs, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(trust.id)
        .bind(stored)
        .bind(token_ttl_secs)
        .bind(now.0)
        .bind(actor.id.clone())
        .execute(&mut *tx)
        .await?;
        let keys = jwks.as_ref().and_then(|j| j["keys"].as_array()).map_or(0, Vec::len);
        let ev = self
            .event(actor, "trust.oauth", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"registered_keys": keys, "jwks": jwks.is_some(), "token_ttl_secs": token_ttl_secs}));
        self.commit_with(tx, actor, ev).await?;
        self.bump_generation();
        Ok(OauthClient { jwks, token_ttl_secs, updated_at: Some(now), updated_by: Some(actor.id.clone()) })
    }

    /// Removes a trust's OAuth client settings (back to the defaults); audited.
    pub async fn clear_oauth_client(&self, actor: &Actor, r: &TrustRef) -> Result<(), StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM oauth_clients WHERE trust_id = $1").bind(trust.id).execute(&mut *tx).await?;
        let ev = self.event(actor, "trust.oauth.clear", Outcome::Success).directory(&r.directory).trust(&r.trust);
        self.commit_with(tx, actor, ev).await?;
        self.bump_generation();
        Ok(())
    }

    /// What an access token's subject is now: the trust, and for a token obtained with a
    /// key version (`version` > 0) that version. `None` when the trust or version is gone.
    /// Cached like a presented key, so [`Store::check_key`] on the result reflects a
    /// suspension or revocation made on this node at once and on others within
    /// [`TOKEN_SUBJECT_MAX_AGE`].
    pub async fn resolve_token_subject(&self, trust_id: &str, version: i64) -> Result<Option<KeyRecord>, StoreError> {
        // Domain-separated from the verifiers of presented keys (SHA-256 of the key).
        let v = Verifier(fedkey_crypto::sha256(format!("oauth-subject\0{trust_id}\0{version}").as_bytes()));
        let generation = self.generation();
        if let Some(rec) = self.cached_key(&v, TOKEN_SUBJECT_MAX_AGE) {
            return Ok(Some(rec));
        }
        let row = if version == 0 {
            sqlx::query(TRUST_SUBJECT_SELECT).bind(trust_id.to_owned()).fetch_optional(self.db.pool()).await?
        } else {
            sqlx::query(concat!(key_select!(), " WHERE k.trust_id = $1 AND k.version = $2"))
                .bind(trust_id.to_owned())
                .bind(version)
                .fetch_optional(self.db.pool())
                .await?
        };
        let Some(row) = row else { return Ok(None) };
        let rec = self.key_record(&row, v).await?;
        self.cache_key(&v, &rec, generation);
        Ok(Some(rec))
    }
}
