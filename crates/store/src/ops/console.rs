//! Sessions of the operator console (`/ui`).
//!
//! A session is opened with an admin token and carries that token's identity and role. The
//! browser holds a random id (the cookie); the database holds its SHA-256, the token it
//! stands for, a CSRF token, and its idle and absolute deadlines. Every look-up joins the
//! admin token, so revoking or expiring the token ends its console sessions at once, on
//! every node. Opening and closing a session are audited with the change.

use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::{Role, Timestamp};
use fedkey_crypto::Secret;
use fedkey_crypto::token::Verifier;
use serde_json::json;
use sqlx::Row;

use crate::StoreError;
use crate::auth::{AdminPrincipal, RequestMeta};
use crate::ops::{Actor, Store};

/// A session ends after this long without a request.
pub const CONSOLE_IDLE: Duration = Duration::from_secs(3600);
/// A session ends this long after sign-in, however active.
pub const CONSOLE_ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// `last_seen_at` is written at most this often, so page views are not each a write.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A live console session.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub principal: AdminPrincipal,
    /// The per-session token every form carries back (compared in constant time).
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What opening a session hands the browser: the session id (the cookie's value, shown
/// once, kept only hashed) and when it ends at the latest.
pub struct OpenedSession {
    pub id: Secret,
    pub expires_at: Timestamp,
}

fn random_hex() -> Result<String, StoreError> {
    let b =
        fedkey_crypto::random::bytes::<32>().map_err(|_| StoreError::Crypto("system random source failed".into()))?;
    Ok(hex::encode(b.as_ref()))
}

impl Store {
    /// Opens a console session for an authenticated admin token; audited as
    /// `console.sign_in` in the same transaction.
    pub async fn open_console_session(
        &self,
        who: &AdminPrincipal,
        meta: &RequestMeta,
    ) -> Result<OpenedSession, StoreError> {
        let id = Secret::new(random_hex()?);
        let csrf = random_hex()?;
        let now = self.now();
        let expires_at = now.saturating_add(CONSOLE_ABSOLUTE);
        let actor = Actor::token(who, meta);
        let mut tx = self.db.begin().await?;
        // Sessions nobody came back to are swept here, so the table stays as small as the
        // number of live sessions.
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now.0)
            .bind(now.saturating_sub(CONSOLE_IDLE).0)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_id, csrf, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(Verifier::of(id.expose()).0.to_vec())
        .bind(who.id.clone())
        .bind(csrf)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        let ev = self.event(&actor, "console.sign_in", Outcome::Success).details(json!({
            "role": who.role,
            "expires_at": expires_at.to_rfc3339(),
            "idle_timeout_seconds": CONSOLE_IDLE.as_secs(),
        }));
        self.commit_with(tx, &actor, ev).await?;
        Ok(OpenedSession { id, expires_at })
    }

    /// The live session a cookie names: `None` when unknown, past its idle or absolute
    /// deadline, or when its admin token is revoked or expired (such a row is deleted).
    pub async fn console_session(&self, presented: &str) -> Result<Option<ConsoleSession>, StoreError> {
        // Session ids are 64 hex digits; anything else is not looked up.
        if presented.len() != 64 || !presented.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let v = Verifier::of(presented);
        let row = self
            .row_by_verifier(
                "SELECT s.id_hash AS verifier, s.csrf, s.created_at, s.last_seen_at, s.expires_at, \
                 t.id AS token_id, t.name, t.role, t.expires_at AS token_expires_at, t.revoked_at \
                 FROM console_sessions s JOIN admin_tokens t ON t.id = s.token_id WHERE s.id_hash = $1",
                &v,
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let now = self.now();
        let last_seen = Timestamp(row.try_get("last_seen_at")?);
        let expires_at = Timestamp(row.try_get("expires_at")?);
        let token_expired = row.try_get::<Option<i64>, _>("token_expires_at")?.is_some_and(|e| e <= now.0);
        let revoked = row.try_get::<Option<i64>, _>("revoked_at")?.is_some();
        if now >= expires_at || now >= last_seen.saturating_add(CONSOLE_IDLE) || token_expired || revoked {
            self.delete_console_session(&v).await?;
            return Ok(None);
        }
        if now >= last_seen.saturating_add(TOUCH_EVERY) {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now.0)
                .bind(v.0.to_vec())
                .execute(self.db.pool())
                .await?;
        }
        let role: String = row.try_get("role")?;
        Ok(Some(ConsoleSession {
            principal: AdminPrincipal {
                id: row.try_get("token_id")?,
                name: row.try_get("name")?,
                role: role.parse::<Role>().map_err(|_| StoreError::Corrupt("admin_tokens.role".into()))?,
            },
            csrf: row.try_get("csrf")?,
            created_at: Timestamp(row.try_get("created_at")?),
            expires_at,
        }))
    }

    /// Ends a session (sign-out): the row is deleted and `console.sign_out` recorded with
    /// it. Returns whether there was a session to end.
    pub async fn close_console_session(&self, presented: &str, actor: &Actor) -> Result<bool, StoreError> {
        let v = Verifier::of(presented);
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(v.0.to_vec())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let ev = self.event(actor, "console.sign_out", Outcome::Success);
        self.commit_with(tx, actor, ev).await?;
        Ok(true)
    }

    async fn delete_console_session(&self, v: &Verifier) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(v.0.to_vec())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
