use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::{Role, Timestamp, names};
use fedkey_crypto::Secret;
use fedkey_crypto::token::{self, TokenKind, Verifier};
use serde_json::json;
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, new_id, opt_ts};
use crate::{AdminToken, StoreError};

const TOKEN_SELECT: &str =
    "SELECT id, name, role, created_at, created_by, expires_at, revoked_at, last_used_at FROM admin_tokens";

impl Store {
    /// Creates an admin token; its plaintext is returned once and only its hash is kept.
    pub async fn create_admin_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        ttl: Option<Duration>,
    ) -> Result<(AdminToken, Secret), StoreError> {
        names::validate(name)?;
        let secret = token::generate(TokenKind::Admin).map_err(|e| StoreError::Crypto(e.to_string()))?;
        let now = self.now();
        let t = AdminToken {
            id: new_id(),
            name: name.to_owned(),
            role,
            created_at: now,
            created_by: actor.id.clone(),
            expires_at: ttl.map(|d| now.saturating_add(d)),
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO admin_tokens (id, name, role, verifier, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(t.id.clone())
            .bind(t.name.clone())
            .bind(role.as_str())
            .bind(Verifier::of(secret.expose()).0.to_vec())
            .bind(now.0)
            .bind(t.created_by.clone())
            .bind(t.expires_at.map(|x| x.0))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from(e).conflict_or(format!("admin token {name:?}")))?;
        let ev = self
            .event(actor, "token.create", Outcome::Success)
            .details(json!({"after": t, "fingerprint": self.install.fingerprint(secret.expose().as_bytes())}));
        self.commit_with(tx, actor, ev).await?;
        Ok((t, secret))
    }

    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        let sql = format!("{TOKEN_SELECT} ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn revoke_admin_token(&self, actor: &Actor, name: &str) -> Result<AdminToken, StoreError> {
        names::validate(name)?;
        let sql = format!("{TOKEN_SELECT} WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("admin token {name:?}")))?;
        let before = token_from_row(&row)?;
        if before.revoked_at.is_some() {
            return Err(StoreError::InvalidState(format!("admin token {name:?} is already revoked")));
        }
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE admin_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now.0)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        let ev = self.event(actor, "token.revoke", Outcome::Success).details(json!({"before": before}));
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(AdminToken { revoked_at: Some(now), ..before })
    }

    /// Creates a bootstrap admin token when no usable admin-role token exists (first
    /// start, or every admin token revoked or expired: whoever can run fedkey on its data
    /// can recover); `None` otherwise.
    pub async fn bootstrap_admin(&self) -> Result<Option<Secret>, StoreError> {
        let usable: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM admin_tokens WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(self.now().0)
        .fetch_one(self.db.pool())
        .await?
        .try_get("n")?;
        if usable > 0 {
            return Ok(None);
        }
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM admin_tokens").fetch_one(self.db.pool()).await?.try_get("n")?;
        let name = if total == 0 { "bootstrap".to_owned() } else { format!("bootstrap-{}", &super::new_id()[..8]) };
        match self.create_admin_token(&Actor::system("init"), &name, Role::Admin, None).await {
            Ok((_, s)) => Ok(Some(s)),
            // Another node bootstrapped at the same moment.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn token_from_row(r: &AnyRow) -> Result<AdminToken, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(AdminToken {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: role.parse().map_err(|_| StoreError::Corrupt("admin_tokens.role".into()))?,
        created_at: Timestamp(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        expires_at: opt_ts(r.try_get("expires_at")?),
        revoked_at: opt_ts(r.try_get("revoked_at")?),
        last_used_at: opt_ts(r.try_get("last_used_at")?),
    })
}
