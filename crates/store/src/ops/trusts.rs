use fedkey_audit::Outcome;
use fedkey_core::{
    Direction, KeyState, LeakPolicy, PeerKind, PendingAuth, ScopeSet, Timestamp, TrustRef, TrustStatus, names,
};
use fedkey_crypto::Secret;
use serde_json::json;
use sqlx::{Row, any::AnyRow};

use super::keys::NewVersion;
use super::{Actor, Store, new_id};
use crate::{KeyVersion, StoreError, Trust, TrustPolicy};

pub struct NewTrust {
    pub directory: String,
    pub name: String,
    pub direction: Direction,
    pub peer_kind: PeerKind,
    /// Defaults to [`ScopeSet::default_inbound`] for inbound trusts, empty for outbound.
    pub scopes: Option<ScopeSet>,
    pub description: Option<String>,
    /// The app-issued key of an outbound trust (required there, refused for inbound).
    pub outbound_key: Option<Secret>,
}

const TRUST_SELECT: &str = "SELECT t.id, t.directory_id, d.name AS directory, t.name, t.direction, t.peer_kind, t.status, \
    t.scopes, t.description, t.created_at, t.created_by, t.updated_at, t.privileged_groups, t.allowed_sources, \
    t.rate_limit, t.leak_policy, t.pending_auth FROM trusts t JOIN directories d ON d.id = t.directory_id";

impl Store {
    /// Creates a trust and its first key version (current). For an inbound trust the
    /// generated key is returned; it is never retrievable again.
    pub async fn create_trust(
        &self,
        actor: &Actor,
        n: NewTrust,
    ) -> Result<(Trust, KeyVersion, Option<Secret>), StoreError> {
        self.create_trust_with_policy(actor, n, TrustPolicy::default()).await
    }

    /// [`Store::create_trust`] with a policy (privileged groups, sources, rate limit),
    /// set in the same transaction and audit record.
    pub async fn create_trust_with_policy(
        &self,
        actor: &Actor,
        n: NewTrust,
        policy: TrustPolicy,
    ) -> Result<(Trust, KeyVersion, Option<Secret>), StoreError> {
        names::validate(&n.name)?;
        let dir = self.directory(&n.directory).await?;
        let scopes = n.scopes.unwrap_or_else(|| match n.direction {
            Direction::Inbound => ScopeSet::default_inbound(),
            Direction::Outbound => ScopeSet::default(),
        });
        scopes.check_direction(n.direction)?;
        check_policy_direction(&policy, n.direction)?;
        if let Some(d) = &n.description
            && d.len() > 1024
        {
            return Err(StoreError::Domain(fedkey_core::DomainError::InvalidName {
                name: "description".into(),
                reason: "must be at most 1024 bytes",
            }));
        }
        let now = self.now();
        let trust = Trust {
            id: new_id(),
            directory_id: dir.id.clone(),
            directory: dir.name.clone(),
            name: n.name.clone(),
            direction: n.direction,
            peer_kind: n.peer_kind,
            status: TrustStatus::Active,
            scopes: scopes.clone(),
            description: n.description,
            created_at: now,
            created_by: actor.id.clone(),
            updated_at: now,
            policy,
            leak_policy: None,
            pending_auth: PendingAuth::Staged,
        };
        let material = self.new_material(&trust, 1, n.outbound_key)?;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO trusts (id, directory_id, name, direction, peer_kind, status, scopes, description, created_at, created_by, updated_at, \
             privileged_groups, allowed_sources, rate_limit) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(trust.id.clone())
        .bind(trust.directory_id.clone())
        .bind(trust.name.clone())
        .bind(trust.direction.as_str())
        .bind(trust.peer_kind.as_str())
        .bind(trust.status.as_str())
        .bind(trust.scopes.to_string())
        .bind(trust.description.clone())
        .bind(now.0)
        .bind(trust.created_by.clone())
        .bind(now.0)
        .bind(trust.policy.stored_groups())
        .bind(trust.policy.stored_sources())
        .bind(trust.policy.rate_limit)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_or(format!("trust {}/{}", dir.name, n.name)))?;
        let kv = self
            .insert_version(
                &mut tx,
                &trust,
                NewVersion { version: 1, state: KeyState::Current, material: &material, actor },
                now,
            )
            .await?;
        let ev = self
            .event(actor, "trust.create", Outcome::Success)
            .directory(&trust.directory)
            .trust(&trust.name)
            .key_version(1)
            .details(
                json!({"after": trust, "key": {"version": 1, "state": "current", "fingerprint": material.fingerprint}}),
            );
        self.commit_auth_change(tx, actor, ev).await?;
        Ok((trust, kv, material.plaintext))
    }

    pub async fn list_trusts(&self, directory: Option<&str>) -> Result<Vec<Trust>, StoreError> {
        let rows = match directory {
            Some(d) => {
                let dir = self.directory(d).await?;
                let sql = format!("{TRUST_SELECT} WHERE t.directory_id = $1 ORDER BY t.name");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id).fetch_all(self.db.pool()).await?
            }
            None => {
                let sql = format!("{TRUST_SELECT} ORDER BY d.name, t.name");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?
            }
        };
        rows.iter().map(trust_from_row).collect()
    }

    pub async fn trust(&self, r: &TrustRef) -> Result<Trust, StoreError> {
        let sql = format!("{TRUST_SELECT} WHERE d.name = $1 AND t.name = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(r.directory.clone())
            .bind(r.trust.clone())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("trust {r}")))?;
        trust_from_row(&row)
    }

    /// Suspends or resumes a trust. A suspended trust's keys stop authenticating at once.
    pub async fn set_trust_status(
        &self,
        actor: &Actor,
        r: &TrustRef,
        status: TrustStatus,
    ) -> Result<Trust, StoreError> {
        let before = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let now = self.now();
        sqlx::query("UPDATE trusts SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now.0)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        let action = match status {
            TrustStatus::Active => "trust.resume",
            TrustStatus::Suspended => "trust.suspend",
        };
        let ev = self
            .event(actor, action, Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"before": {"status": before.status}, "after": {"status": status}}));
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(Trust { status, updated_at: now, ..before })
    }

    /// Replaces a trust's policy (privileged groups, source allow-list, rate limit).
    /// Takes effect for new requests at once on this node, within the auth-cache TTL on
    /// others.
    pub async fn set_trust_policy(
        &self,
        actor: &Actor,
        r: &TrustRef,
        policy: TrustPolicy,
    ) -> Result<Trust, StoreError> {
        let before = self.trust(r).await?;
        check_policy_direction(&policy, before.direction)?;
        let mut tx = self.db.begin().await?;
        let now = self.now();
        sqlx::query(
            "UPDATE trusts SET privileged_groups = $1, allowed_sources = $2, rate_limit = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(policy.stored_groups())
        .bind(policy.stored_sources())
        .bind(policy.rate_limit)
        .bind(now.0)
        .bind(before.id.clone())
        .execute(&mut *tx)
        .await?;
        let ev = self
            .event(actor, "trust.policy", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"before": before.policy, "after": policy}));
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(Trust { policy, updated_at: now, ..before })
    }

    /// Sets how a trust responds to a leak of one of its keys and when a pending version
    /// authenticates; a `None` leaves that setting as it is.
    pub async fn set_trust_leak_settings(
        &self,
        actor: &Actor,
        r: &TrustRef,
        leak_policy: Option<LeakPolicy>,
        pending_auth: Option<PendingAuth>,
    ) -> Result<Trust, StoreError> {
        let before = self.trust(r).await?;
        if before.direction == Direction::Outbound
            && (leak_policy.is_some_and(|p| p != LeakPolicy::Report) || pending_auth == Some(PendingAuth::Delivered))
        {
            return Err(StoreError::Invalid(
                "an outbound trust's key is issued by the application: its leak policy can only be report, and it has no pending versions".into(),
            ));
        }
        let after = Trust {
            leak_policy: leak_policy.or(before.leak_policy),
            pending_auth: pending_auth.unwrap_or(before.pending_auth),
            ..before.clone()
        };
        let mut tx = self.db.begin().await?;
        let now = self.now();
        sqlx::query("UPDATE trusts SET leak_policy = $1, pending_auth = $2, updated_at = $3 WHERE id = $4")
            .bind(after.leak_policy.map(|p| p.as_str().to_owned()))
            .bind(after.pending_auth.as_str())
            .bind(now.0)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        let ev =
            self.event(actor, "trust.leak_settings", Outcome::Success).directory(&r.directory).trust(&r.trust).details(
                json!({
                    "before": {"leak_policy": before.leak_policy(), "pending_auth": before.pending_auth},
                    "after": {"leak_policy": after.leak_policy(), "pending_auth": after.pending_auth},
                }),
            );
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(Trust { updated_at: now, ..after })
    }

    /// Changes what a trust's keys may do. Every version that can still authenticate
    /// gets the new scopes at once (they are read per version at authentication).
    pub async fn set_trust_scopes(&self, actor: &Actor, r: &TrustRef, scopes: ScopeSet) -> Result<Trust, StoreError> {
        let before = self.trust(r).await?;
        scopes.check_direction(before.direction)?;
        let mut tx = self.db.begin().await?;
        let now = self.now();
        sqlx::query("UPDATE trusts SET scopes = $1, updated_at = $2 WHERE id = $3")
            .bind(scopes.to_string())
            .bind(now.0)
            .bind(before.id.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE key_versions SET scopes = $1 WHERE trust_id = $2 AND state IN ('pending', 'current', 'previous')",
        )
        .bind(scopes.to_string())
        .bind(before.id.clone())
        .execute(&mut *tx)
        .await?;
        let ev = self
            .event(actor, "trust.scopes", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"before": before.scopes.to_vec(), "after": scopes.to_vec()}));
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(Trust { scopes, updated_at: now, ..before })
    }

    /// Deletes a trust and all its key versions; the audit log keeps their history.
    pub async fn delete_trust(&self, actor: &Actor, r: &TrustRef) -> Result<(), StoreError> {
        let before = self.trust(r).await?;
        let versions = self.list_keys(r).await?;
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM key_versions WHERE trust_id = $1").bind(before.id.clone()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM trusts WHERE id = $1").bind(before.id.clone()).execute(&mut *tx).await?;
        let now = self.now();
        let states: Vec<_> = versions.iter().map(|v| json!({"version": v.version, "state": v.state_at(now)})).collect();
        let ev = self
            .event(actor, "trust.delete", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"before": before, "versions": states}));
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(())
    }
}

/// A policy restricts what a peer may do *to* fedkey, so only inbound trusts carry one.
fn check_policy_direction(policy: &TrustPolicy, direction: Direction) -> Result<(), StoreError> {
    if direction == Direction::Outbound && *policy != TrustPolicy::default() {
        return Err(StoreError::Invalid("a policy applies only to inbound trusts".into()));
    }
    Ok(())
}

pub(crate) fn trust_from_row(r: &AnyRow) -> Result<Trust, StoreError> {
    let corrupt = |c: &str| StoreError::Corrupt(format!("trusts.{c}"));
    let direction: String = r.try_get("direction")?;
    let peer_kind: String = r.try_get("peer_kind")?;
    let status: String = r.try_get("status")?;
    let scopes: String = r.try_get("scopes")?;
    Ok(Trust {
        id: r.try_get("id")?,
        directory_id: r.try_get("directory_id")?,
        directory: r.try_get("directory")?,
        name: r.try_get("name")?,
        direction: direction.parse().map_err(|_| corrupt("direction"))?,
        peer_kind: peer_kind.parse().map_err(|_| corrupt("peer_kind"))?,
        status: status.parse().map_err(|_| corrupt("status"))?,
        scopes: ScopeSet::parse_stored(&scopes).map_err(|_| corrupt("scopes"))?,
        description: r.try_get("description")?,
        created_at: Timestamp(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
        policy: TrustPolicy::from_stored(
            &r.try_get::<String, _>("privileged_groups")?,
            &r.try_get::<String, _>("allowed_sources")?,
            r.try_get("rate_limit")?,
        )?,
        leak_policy: r
            .try_get::<Option<String>, _>("leak_policy")?
            .map(|p| p.parse())
            .transpose()
            .map_err(|_| corrupt("leak_policy"))?,
        pending_auth: r.try_get::<String, _>("pending_auth")?.parse().map_err(|_| corrupt("pending_auth"))?,
    })
}
