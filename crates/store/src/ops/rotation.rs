//! Persistence of the rotation engine: policies, connectors, rotations and their steps.
//!
//! Every step is one transaction with its audit record, so a crash leaves a rotation at
//! a step boundary and the engine resumes from there. The staged key of an inbound
//! rotation is kept envelope-encrypted in its `key_versions` row until the rotation ends,
//! so a crash between creating and delivering it loses nothing.

use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::rotation::{self, RotationPolicy};
use fedkey_core::{Direction, KeyState, RotationKind, RotationStep, Timestamp, TrustRef};
use fedkey_crypto::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use super::keys::{NewVersion, key_aad, transitions_json};
use super::{Actor, Store, new_id, opt_ts};
use crate::{KeyVersion, StoreError, Trust};

/// A trust's rotation policy as stored, with the scheduler's next due time.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    #[serde(flatten)]
    pub policy: RotationPolicy,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub next_rotation_at: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// A configured connector. The credentials stay encrypted; only their presence shows.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorRow {
    pub id: String,
    #[serde(skip)]
    pub trust_id: String,
    pub name: String,
    pub kind: String,
    pub spec: Value,
    pub has_credentials: bool,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub created_at: Timestamp,
    pub created_by: String,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_success_at: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub last_failure_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub id: String,
    #[serde(skip)]
    pub trust_id: String,
    pub directory: String,
    pub trust: String,
    pub version: i64,
    pub kind: RotationKind,
    pub step: RotationStep,
    #[serde(rename = "overlap_seconds", serialize_with = "ser_secs")]
    pub overlap: Duration,
    pub attempts: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub started_at: Timestamp,
    pub started_by: String,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub finished_at: Option<Timestamp>,
    pub deliveries: Vec<DeliveryRow>,
}

impl Rotation {
    pub fn trust_ref(&self) -> TrustRef {
        TrustRef { directory: self.directory.clone(), trust: self.trust.clone() }
    }

    pub fn is_active(&self) -> bool {
        self.finished_at.is_none()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub connector_id: String,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub delivered_at: Timestamp,
    pub receipt: String,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

const ROTATION_SELECT: &str = "SELECT r.id, r.trust_id, d.name AS directory, t.name AS trust, r.version, r.kind, r.step, \
    r.overlap_seconds, r.attempts, r.next_attempt_at, r.last_error, r.started_at, r.started_by, r.updated_at, \
    r.finished_at FROM rotations r JOIN trusts t ON t.id = r.trust_id JOIN directories d ON d.id = t.directory_id";

pub(crate) const CONNECTOR_SELECT: &str = "SELECT id, trust_id, name, kind, spec, CASE WHEN credentials IS NULL THEN 0 ELSE 1 END AS has_credentials, \
    created_at, created_by, last_success_at, last_failure_at, last_error FROM connectors";

pub(crate) const POLICY_SELECT: &str = "SELECT period_seconds, overlap_seconds, validation, validation_timeout_seconds, \
    finish_on_first_use, warn_before_seconds, rotate_on_material_change, enabled, next_rotation_at, updated_at, \
    updated_by, schedule FROM rotation_policies";

/// Binds a connector's credentials envelope to its row.
fn connector_aad(trust_id: &str, id: &str) -> Vec<u8> {
    format!("connector/{trust_id}/{id}").into_bytes()
}

/// Largest connector spec or credentials document accepted.
pub const MAX_CONNECTOR_DOC: usize = 16 * 1024;

impl Store {
    // ----- policy -----

    /// Sets (creates or replaces) a trust's rotation policy. Only inbound trusts rotate:
    /// an outbound trust's key is issued by the application.
    pub async fn set_rotation_policy(
        &self,
        actor: &Actor,
        r: &TrustRef,
        policy: RotationPolicy,
    ) -> Result<PolicyRow, StoreError> {
        policy.validate()?;
        let trust = self.inbound_trust(r).await?;
        let before = self.rotation_policy(r).await?;
        let now = self.now();
        let keys = self.list_keys(r).await?;
        let activated = keys
            .iter()
            .filter(|k| k.state_at(now) == KeyState::Current)
            .filter_map(|k| k.activated_at.or(Some(k.created_at)))
            .max()
            .unwrap_or(now);
        let next = policy.next_rotation(activated, now);
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM rotation_policies WHERE trust_id = $1")
            .bind(trust.id.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO rotation_policies (trust_id, period_seconds, overlap_seconds, validation, \
             validation_timeout_seconds, finish_on_first_use, warn_before_seconds, rotate_on_material_change, enabled, \
             next_rotation_at, updated_at, updated_by, schedule) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(trust.id.clone())
        .bind(secs(policy.period))
        .bind(secs(policy.overlap))
        .bind(policy.validation.as_str())
        .bind(secs(policy.validation_timeout))
        .bind(i64::from(policy.finish_on_first_use))
        .bind(secs(policy.warn_before))
        .bind(i64::from(policy.rotate_on_material_change))
        .bind(i64::from(policy.enabled))
        .bind(next.map(|t| t.0))
        .bind(now.0)
        .bind(actor.id.clone())
        .bind(policy.schedule.clone())
        .execute(&mut *tx)
        .await?;
        let row = PolicyRow { policy, next_rotation_at: next, updated_at: now, updated_by: actor.id.clone() };
        let ev = self
            .event(actor, "rotation.policy.set", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"before": before.map(|b| b.policy), "after": row.policy}));
        self.commit_with(tx, actor, ev).await?;
        Ok(row)
    }

    pub async fn rotation_policy(&self, r: &TrustRef) -> Result<Option<PolicyRow>, StoreError> {
        let trust = self.trust(r).await?;
        let sql = format!("{POLICY_SELECT} WHERE trust_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust.id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    /// Trusts whose scheduled rotation is due and that have no rotation in progress.
    pub async fn due_schedules(&self, limit: i64) -> Result<Vec<TrustRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.name AS directory, t.name AS trust FROM rotation_policies p \
             JOIN trusts t ON t.id = p.trust_id JOIN directories d ON d.id = t.directory_id \
             WHERE p.enabled = 1 AND p.next_rotation_at IS NOT NULL AND p.next_rotation_at <= $1 \
             AND t.status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM rotations r WHERE r.trust_id = p.trust_id AND r.finished_at IS NULL) \
             ORDER BY p.next_rotation_at LIMIT $2",
        )
        .bind(self.now().0)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| Ok(TrustRef { directory: row.try_get("directory")?, trust: row.try_get("trust")? }))
            .collect()
    }

    // ----- connectors -----

    /// Adds a connector to a trust. `spec` is validated by the caller (the engine knows
    /// the kinds); credentials are sealed here and never returned.
    pub async fn add_connector(
        &self,
        actor: &Actor,
        r: &TrustRef,
        name: &str,
        kind: &str,
        spec: Value,
        credentials: Option<Secret>,
    ) -> Result<ConnectorRow, StoreError> {
        fedkey_core::names::validate(name)?;
        let trust = self.inbound_trust(r).await?;
        let spec_text = spec.to_string();
        if spec_text.len() > MAX_CONNECTOR_DOC
            || credentials.as_ref().is_some_and(|c| c.expose().len() > MAX_CONNECTOR_DOC)
        {
            return Err(StoreError::Invalid(format!("connector documents must be at most {MAX_CONNECTOR_DOC} bytes")));
        }
        let id = new_id();
        let envelope = match &credentials {
            Some(c) => Some(self.keyring()?.seal(&connector_aad(&trust.id, &id), c.expose().as_bytes())?),
            None => None,
        };
        let now = self.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO connectors (id, trust_id, name, kind, spec, credentials, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.clone())
        .bind(trust.id.clone())
        .bind(name.to_owned())
        .bind(kind.to_owned())
        .bind(spec_text)
        .bind(envelope)
        .bind(now.0)
        .bind(actor.id.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_or(format!("connector {name} of {r}")))?;
        let ev = self
            .event(actor, "connector.create", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"name": name, "kind": kind, "spec": spec, "credentials": credentials.is_some()}));
        self.commit_with(tx, actor, ev).await?;
        Ok(ConnectorRow {
            id,
            trust_id: trust.id,
            name: name.to_owned(),
            kind: kind.to_owned(),
            spec,
            has_credentials: credentials.is_some(),
            created_at: now,
            created_by: actor.id.clone(),
            last_success_at: None,
            last_failure_at: None,
            last_error: None,
        })
    }

    pub async fn list_connectors(&self, r: &TrustRef) -> Result<Vec<ConnectorRow>, StoreError> {
        let trust = self.trust(r).await?;
        let sql = format!("{CONNECTOR_SELECT} WHERE trust_id = $1 ORDER BY created_at, name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust.id).fetch_all(self.db.pool()).await?;
        rows.iter().map(connector_from_row).collect()
    }

    pub async fn remove_connector(&self, actor: &Actor, r: &TrustRef, name: &str) -> Result<(), StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let n = sqlx::query("DELETE FROM connectors WHERE trust_id = $1 AND name = $2")
            .bind(trust.id)
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("connector {name} of {r}")));
        }
        let ev = self
            .event(actor, "connector.delete", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"name": name}));
        self.commit_with(tx, actor, ev).await
    }

    /// Decrypts a connector's credentials for use; the access is audited first.
    pub async fn connector_credentials(&self, actor: &Actor, c: &ConnectorRow) -> Result<Option<Secret>, StoreError> {
        let row = sqlx::query("SELECT credentials FROM connectors WHERE id = $1")
            .bind(c.id.clone())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connector {}", c.name)))?;
        let Some(envelope) = row.try_get::<Option<Vec<u8>>, _>("credentials")? else {
            return Ok(None);
        };
        let (directory, trust) = self.trust_names(&c.trust_id).await?;
        self.audit
            .record(
                self.event(actor, "connector.credentials.read", Outcome::Success)
                    .directory(directory)
                    .trust(trust)
                    .details(json!({"connector": c.name})),
                None,
            )
            .await?;
        let plain = self.keyring()?.open(&connector_aad(&c.trust_id, &c.id), &envelope)?;
        let text =
            String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt("connectors.credentials".into()))?;
        Ok(Some(Secret::new(text)))
    }

    /// Notes a connector call's outcome for health reporting (the step's audit record
    /// carries the details).
    pub async fn connector_outcome(&self, id: &str, error: Option<&str>) -> Result<(), StoreError> {
        let now = self.now().0;
        let q = match error {
            None => sqlx::query("UPDATE connectors SET last_success_at = $1, last_error = NULL WHERE id = $2")
                .bind(now)
                .bind(id.to_owned()),
            Some(e) => sqlx::query("UPDATE connectors SET last_failure_at = $1, last_error = $2 WHERE id = $3")
                .bind(now)
                .bind(truncate(e, 500))
                .bind(id.to_owned()),
        };
        q.execute(self.db.pool()).await?;
        Ok(())
    }

    // ----- rotations -----

    /// Step `create`: a new version, staged for delivery (pending, or current at once in
    /// an emergency, which also revokes every older version). Fails with a conflict if a
    /// rotation of this trust is already in progress, except in an emergency: that always
    /// wins, cancelling the rotation in progress (whose staged version it revokes with the
    /// others).
    pub async fn start_rotation(
        &self,
        actor: &Actor,
        r: &TrustRef,
        kind: RotationKind,
        overlap: Option<Duration>,
    ) -> Result<Rotation, StoreError> {
        let trust = self.inbound_trust(r).await?;
        let policy = self.rotation_policy(r).await?;
        let overlap = match kind {
            RotationKind::Emergency => Duration::ZERO,
            _ => overlap.or(policy.as_ref().map(|p| p.policy.overlap)).unwrap_or(Duration::from_secs(24 * 3600)),
        };
        fedkey_core::rotation::check_overlap(overlap).map_err(|m| StoreError::Invalid(m.into()))?;
        let mut tx = self.db.begin().await?;
        let now = self.now();
        let versions = self.versions_in_tx(&mut tx, &trust.id).await?;
        let mut superseded = Value::Null;
        if let Some(active) = self.active_rotation_in_tx(&mut tx, &trust.id).await? {
            if kind != RotationKind::Emergency {
                return Err(StoreError::InvalidState(format!(
                    "a rotation of {r} is already in progress (version {}, step {}); retry or cancel it first",
                    active.0, active.1
                )));
            }
            superseded = self.supersede_in_tx(&mut tx, &trust.id, active, now).await?;
        }
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let mut material = self.new_material(&trust, version, None)?;
        let plaintext = material.plaintext.take().ok_or_else(|| StoreError::Crypto("no key generated".into()))?;
        material.envelope = Some(self.keyring()?.seal(&key_aad(&trust.id, version), plaintext.expose().as_bytes())?);
        let (state, transitions) = match kind {
            RotationKind::Emergency => {
                let views: Vec<_> = versions.iter().map(KeyVersion::view).collect();
                (KeyState::Current, rotation::plan_emergency(&views, now))
            }
            _ => (KeyState::Pending, Vec::new()),
        };
        for t in &transitions {
            self.apply_transition(&mut tx, &trust.id, t, now).await?;
        }
        self.insert_version(&mut tx, &trust, NewVersion { version, state, material: &material, actor }, now).await?;
        let id = new_id();
        sqlx::query(
            "INSERT INTO rotations (id, trust_id, version, kind, step, overlap_seconds, attempts, next_attempt_at, \
             started_at, started_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $8, $7)",
        )
        .bind(id.clone())
        .bind(trust.id.clone())
        .bind(version)
        .bind(kind.as_str())
        .bind(RotationStep::Set.as_str())
        .bind(secs(overlap))
        .bind(now.0)
        .bind(actor.id.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_or(format!("a rotation of {r} in progress")))?;
        if let Some(p) = &policy {
            let next = p.policy.next_rotation(now, now).map(|t| t.0);
            sqlx::query("UPDATE rotation_policies SET next_rotation_at = $1 WHERE trust_id = $2")
                .bind(next)
                .bind(trust.id.clone())
                .execute(&mut *tx)
                .await?;
        }
        let ev = self
            .event(actor, "rotation.start", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .key_version(version)
            .details(json!({
                "rotation": id, "kind": kind, "overlap_seconds": overlap.as_secs(),
                "new": {"version": version, "state": state, "fingerprint": material.fingerprint},
                "transitions": transitions_json(&transitions), "superseded": superseded,
            }));
        self.commit_auth_change(tx, actor, ev).await?;
        metrics::counter!("fedkey_rotations_started_total", "kind" => kind.as_str()).increment(1);
        self.rotation_by_id(&id).await
    }

    /// The rotation in progress, or else the most recent one.
    pub async fn latest_rotation(&self, r: &TrustRef) -> Result<Option<Rotation>, StoreError> {
        Ok(self.rotations(r, 1).await?.into_iter().next())
    }

    /// A trust's rotations, newest first.
    pub async fn rotations(&self, r: &TrustRef, limit: i64) -> Result<Vec<Rotation>, StoreError> {
        let trust = self.trust(r).await?;
        let sql = format!(
            "{ROTATION_SELECT} WHERE r.trust_id = $1 ORDER BY (r.finished_at IS NULL) DESC, r.started_at DESC, r.version DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust.id).bind(limit).fetch_all(self.db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.with_deliveries(rotation_from_row(row)?).await?);
        }
        Ok(out)
    }

    pub async fn rotation_by_id(&self, id: &str) -> Result<Rotation, StoreError> {
        let sql = format!("{ROTATION_SELECT} WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rotation {id}")))?;
        self.with_deliveries(rotation_from_row(&row)?).await
    }

    /// Rotations in progress whose next attempt is due.
    pub async fn due_rotations(&self, limit: i64) -> Result<Vec<Rotation>, StoreError> {
        let sql = format!(
            "{ROTATION_SELECT} WHERE r.finished_at IS NULL AND r.next_attempt_at <= $1 ORDER BY r.next_attempt_at LIMIT $2"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(self.now().0).bind(limit).fetch_all(self.db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.with_deliveries(rotation_from_row(row)?).await?);
        }
        Ok(out)
    }

    /// Every rotation in progress (for health reports).
    pub async fn active_rotations(&self) -> Result<Vec<Rotation>, StoreError> {
        let sql = format!("{ROTATION_SELECT} WHERE r.finished_at IS NULL ORDER BY r.started_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        rows.iter().map(rotation_from_row).collect()
    }

    /// The staged key of a rotation, decrypted for delivery. Audited before release.
    pub async fn staged_key(&self, actor: &Actor, rot: &Rotation) -> Result<Secret, StoreError> {
        let row = sqlx::query("SELECT envelope FROM key_versions WHERE trust_id = $1 AND version = $2")
            .bind(rot.trust_id.clone())
            .bind(rot.version)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("key version {} of {}", rot.version, rot.trust_ref())))?;
        let envelope: Option<Vec<u8>> = row.try_get("envelope")?;
        let envelope = envelope.ok_or_else(|| {
            StoreError::InvalidState(format!("the staged key of {} version {} is gone", rot.trust_ref(), rot.version))
        })?;
        self.audit
            .record(
                self.event(actor, "key.read", Outcome::Success)
                    .directory(&rot.directory)
                    .trust(&rot.trust)
                    .key_version(rot.version)
                    .details(json!({"rotation": rot.id, "purpose": "delivery"})),
                None,
            )
            .await?;
        let plain = self.keyring()?.open(&key_aad(&rot.trust_id, rot.version), &envelope)?;
        let key = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt("key_versions.envelope".into()))?;
        Ok(Secret::new(key))
    }

    /// Records that a connector delivered the staged version. Idempotent.
    pub async fn record_delivery(
        &self,
        actor: &Actor,
        rot: &Rotation,
        connector: &ConnectorRow,
        receipt: &str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let done = sqlx::query("SELECT 1 AS x FROM rotation_deliveries WHERE rotation_id = $1 AND connector_id = $2")
            .bind(rot.id.clone())
            .bind(connector.id.clone())
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO rotation_deliveries (rotation_id, connector_id, delivered_at, receipt) VALUES ($1, $2, $3, $4)",
        )
        .bind(rot.id.clone())
        .bind(connector.id.clone())
        .bind(now.0)
        .bind(truncate(receipt, 500))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE connectors SET last_success_at = $1, last_error = NULL WHERE id = $2")
            .bind(now.0)
            .bind(connector.id.clone())
            .execute(&mut *tx)
            .await?;
        let ev = self
            .event(actor, "rotation.deliver", Outcome::Success)
            .directory(&rot.directory)
            .trust(&rot.trust)
            .key_version(rot.version)
            .details(
                json!({"rotation": rot.id, "connector": connector.name, "kind": connector.kind, "receipt": receipt}),
            );
        self.commit_with(tx, actor, ev).await
    }

    /// Moves a rotation from `from` to `to` (a no-op error if another node got there first).
    pub async fn advance_rotation(
        &self,
        actor: &Actor,
        rot: &Rotation,
        from: RotationStep,
        to: RotationStep,
        details: Value,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE rotations SET step = $1, attempts = 0, last_error = NULL, next_attempt_at = $2, updated_at = $2 \
             WHERE id = $3 AND step = $4 AND finished_at IS NULL",
        )
        .bind(to.as_str())
        .bind(now.0)
        .bind(rot.id.clone())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::InvalidState(format!("rotation {} is no longer at step {from}", rot.id)));
        }
        let ev = self
            .event(actor, "rotation.step", Outcome::Success)
            .directory(&rot.directory)
            .trust(&rot.trust)
            .key_version(rot.version)
            .details(json!({"rotation": rot.id, "from": from, "to": to, "result": details}));
        // Leaving `set` means every connector confirmed the staged version, which a trust may
        // wait for before that version authenticates.
        self.commit_auth_change(tx, actor, ev).await?;
        Ok(())
    }

    /// Records a failed attempt of the current step; the current version is untouched.
    /// Returns the attempt count.
    pub async fn fail_rotation_step(
        &self,
        actor: &Actor,
        rot: &Rotation,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<i64, StoreError> {
        let now = self.now();
        let error = truncate(error, 500);
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE rotations SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, updated_at = $3 \
             WHERE id = $4 AND finished_at IS NULL",
        )
        .bind(error.clone())
        .bind(retry_at.0)
        .bind(now.0)
        .bind(rot.id.clone())
        .execute(&mut *tx)
        .await?;
        let attempts = rot.attempts + 1;
        let ev = self
            .event(actor, "rotation.step_failed", Outcome::Failure)
            .directory(&rot.directory)
            .trust(&rot.trust)
            .key_version(rot.version)
            .details(json!({
                "rotation": rot.id, "step": rot.step, "attempt": attempts, "error": error,
                "retry_at": retry_at.to_rfc3339(),
            }));
        self.commit_with(tx, actor, ev).await?;
        metrics::counter!("fedkey_rotation_step_failures_total", "step" => rot.step.as_str()).increment(1);
        metrics::counter!("fedkey_rotations_total", "result" => "failed").increment(1);
        Ok(attempts)
    }

    /// Postpones the next attempt without counting a failure (waiting for the peer).
    pub async fn postpone_rotation(&self, rot: &Rotation, until: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE rotations SET next_attempt_at = $1 WHERE id = $2 AND finished_at IS NULL")
            .bind(until.0)
            .bind(rot.id.clone())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Step `finish`: the staged version becomes current, the old one previous for the
    /// overlap (or retired now when `retire_now`), older versions expire; the staged
    /// plaintext is erased.
    pub async fn finish_rotation(&self, actor: &Actor, rot: &Rotation, retire_now: bool) -> Result<(), StoreError> {
        let overlap = if retire_now { Duration::ZERO } else { rot.overlap };
        let mut tx = self.db.begin().await?;
        let now = self.now();
        let versions = self.versions_in_tx(&mut tx, &rot.trust_id).await?;
        let views: Vec<_> = versions.iter().map(KeyVersion::view).collect();
        let transitions = rotation::plan_finish(&views, rot.version, overlap, now);
        for t in &transitions {
            self.apply_transition(&mut tx, &rot.trust_id, t, now).await?;
        }
        sqlx::query(
            "UPDATE key_versions SET envelope = NULL, activated_at = COALESCE(activated_at, $1) \
             WHERE trust_id = $2 AND version = $3",
        )
        .bind(now.0)
        .bind(rot.trust_id.clone())
        .bind(rot.version)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE rotations SET step = 'done', finished_at = $1, updated_at = $1, last_error = NULL \
             WHERE id = $2 AND finished_at IS NULL",
        )
        .bind(now.0)
        .bind(rot.id.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::InvalidState(format!("rotation {} already ended", rot.id)));
        }
        let ev = self
            .event(actor, "rotation.finish", Outcome::Success)
            .directory(&rot.directory)
            .trust(&rot.trust)
            .key_version(rot.version)
            .details(json!({
                "rotation": rot.id, "overlap_seconds": overlap.as_secs(), "retired_on_first_use": retire_now,
                "transitions": transitions_json(&transitions),
            }));
        self.commit_auth_change(tx, actor, ev).await?;
        metrics::counter!("fedkey_rotations_finished_total", "kind" => rot.kind.as_str()).increment(1);
        metrics::counter!("fedkey_rotations_total", "result" => "succeeded").increment(1);
        Ok(())
    }

    /// Cancels the rotation in progress: its staged version is revoked (an emergency
    /// version, already current, stays current) and its plaintext erased.
    pub async fn cancel_rotation(&self, actor: &Actor, r: &TrustRef, reason: &str) -> Result<Rotation, StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let now = self.now();
        let versions = self.versions_in_tx(&mut tx, &trust.id).await?;
        let (_, _, id) = self
            .active_rotation_in_tx(&mut tx, &trust.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("a rotation in progress for {r}")))?;
        let rot = self.rotation_by_id(&id).await?;
        let mut transitions = Vec::new();
        if let Some(v) = versions.iter().find(|v| v.version == rot.version && v.state == KeyState::Pending) {
            let t = fedkey_core::lifecycle::plan_revoke(&v.view(), now)?;
            self.apply_transition(&mut tx, &trust.id, &t, now).await?;
            transitions.push(t);
        }
        sqlx::query("UPDATE key_versions SET envelope = NULL WHERE trust_id = $1 AND version = $2")
            .bind(trust.id.clone())
            .bind(rot.version)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE rotations SET step = 'canceled', finished_at = $1, updated_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(now.0)
        .bind(truncate(reason, 500))
        .bind(id.clone())
        .execute(&mut *tx)
        .await?;
        let ev = self
            .event(actor, "rotation.cancel", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .key_version(rot.version)
            .details(json!({"rotation": id, "step": rot.step, "reason": reason, "transitions": transitions_json(&transitions)}));
        self.commit_auth_change(tx, actor, ev).await?;
        metrics::counter!("fedkey_rotations_total", "result" => "cancelled").increment(1);
        self.rotation_by_id(&id).await
    }

    /// Makes the rotation in progress due now (after an operator fixed the cause).
    pub async fn retry_rotation(&self, actor: &Actor, r: &TrustRef) -> Result<Rotation, StoreError> {
        let trust = self.trust(r).await?;
        let mut tx = self.db.begin().await?;
        let (_, _, id) = self
            .active_rotation_in_tx(&mut tx, &trust.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("a rotation in progress for {r}")))?;
        sqlx::query("UPDATE rotations SET next_attempt_at = $1 WHERE id = $2")
            .bind(self.now().0)
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        let ev = self
            .event(actor, "rotation.retry", Outcome::Success)
            .directory(&r.directory)
            .trust(&r.trust)
            .details(json!({"rotation": id}));
        self.commit_with(tx, actor, ev).await?;
        self.rotation_by_id(&id).await
    }

    // ----- leases -----

    /// Takes or renews the lease `name` for `owner` until `now + ttl`. Returns false
    /// while another owner holds an unexpired lease. Works the same on both backends.
    pub async fn acquire_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.now();
        let n = sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at <= $4",
        )
        .bind(name.to_owned())
        .bind(owner.to_owned())
        .bind(now.saturating_add(ttl).0)
        .bind(now.0)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name.to_owned())
            .bind(owner.to_owned())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    // ----- helpers -----

    /// Ends the rotation in progress `(version, step, id)` because an emergency rotation
    /// replaces it: marked canceled, its staged plaintext erased. Its version is revoked by
    /// the emergency's own plan. Returns what the audit record says about it.
    async fn supersede_in_tx(
        &self,
        tx: &mut crate::db::Tx,
        trust_id: &str,
        (version, step, id): (i64, String, String),
        now: Timestamp,
    ) -> Result<Value, StoreError> {
        sqlx::query("UPDATE key_versions SET envelope = NULL WHERE trust_id = $1 AND version = $2")
            .bind(trust_id.to_owned())
            .bind(version)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE rotations SET step = 'canceled', finished_at = $1, updated_at = $1, last_error = $2 WHERE id = $3",
        )
        .bind(now.0)
        .bind("superseded by an emergency rotation")
        .bind(id.clone())
        .execute(&mut **tx)
        .await?;
        Ok(json!({"rotation": id, "version": version, "step": step}))
    }

    async fn inbound_trust(&self, r: &TrustRef) -> Result<Trust, StoreError> {
        let trust = self.trust(r).await?;
        if trust.direction != Direction::Inbound {
            return Err(StoreError::Invalid(format!(
                "{r} is an outbound trust: its key is issued by the application; rotate it with `fedkey key rotate` and the new key"
            )));
        }
        Ok(trust)
    }

    /// (version, step, id) of the unfinished rotation of a trust, read inside `tx` after
    /// the trust row is locked.
    async fn active_rotation_in_tx(
        &self,
        tx: &mut crate::db::Tx,
        trust_id: &str,
    ) -> Result<Option<(i64, String, String)>, StoreError> {
        let row = sqlx::query("SELECT id, version, step FROM rotations WHERE trust_id = $1 AND finished_at IS NULL")
            .bind(trust_id.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| Ok((r.try_get("version")?, r.try_get("step")?, r.try_get("id")?))).transpose()
    }

    async fn with_deliveries(&self, mut rot: Rotation) -> Result<Rotation, StoreError> {
        let rows = sqlx::query(
            "SELECT connector_id, delivered_at, receipt FROM rotation_deliveries WHERE rotation_id = $1 ORDER BY delivered_at",
        )
        .bind(rot.id.clone())
        .fetch_all(self.db.pool())
        .await?;
        rot.deliveries = rows
            .iter()
            .map(|r| {
                Ok(DeliveryRow {
                    connector_id: r.try_get("connector_id")?,
                    delivered_at: Timestamp(r.try_get("delivered_at")?),
                    receipt: r.try_get("receipt")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(rot)
    }

    async fn trust_names(&self, trust_id: &str) -> Result<(String, String), StoreError> {
        let row = sqlx::query(
            "SELECT d.name AS directory, t.name AS trust FROM trusts t JOIN directories d ON d.id = t.directory_id WHERE t.id = $1",
        )
        .bind(trust_id.to_owned())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trust {trust_id}")))?;
        Ok((row.try_get("directory")?, row.try_get("trust")?))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn dur(v: i64) -> Duration {
    Duration::from_secs(u64::try_from(v).unwrap_or(0))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

pub(crate) fn policy_from_row(r: &AnyRow) -> Result<PolicyRow, StoreError> {
    let validation: String = r.try_get("validation")?;
    Ok(PolicyRow {
        policy: RotationPolicy {
            period: dur(r.try_get("period_seconds")?),
            overlap: dur(r.try_get("overlap_seconds")?),
            validation: validation.parse().map_err(|_| StoreError::Corrupt("rotation_policies.validation".into()))?,
            validation_timeout: dur(r.try_get("validation_timeout_seconds")?),
            finish_on_first_use: r.try_get::<i64, _>("finish_on_first_use")? != 0,
            warn_before: dur(r.try_get("warn_before_seconds")?),
            rotate_on_material_change: r.try_get::<i64, _>("rotate_on_material_change")? != 0,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            schedule: r.try_get("schedule")?,
        },
        next_rotation_at: opt_ts(r.try_get("next_rotation_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
        updated_by: r.try_get("updated_by")?,
    })
}

pub(crate) fn connector_from_row(r: &AnyRow) -> Result<ConnectorRow, StoreError> {
    let spec: String = r.try_get("spec")?;
    Ok(ConnectorRow {
        id: r.try_get("id")?,
        trust_id: r.try_get("trust_id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        spec: serde_json::from_str(&spec).map_err(|_| StoreError::Corrupt("connectors.spec".into()))?,
        has_credentials: r.try_get::<i64, _>("has_credentials")? != 0,
        created_at: Timestamp(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        last_success_at: opt_ts(r.try_get("last_success_at")?),
        last_failure_at: opt_ts(r.try_get("last_failure_at")?),
        last_error: r.try_get("last_error")?,
    })
}

fn rotation_from_row(r: &AnyRow) -> Result<Rotation, StoreError> {
    let corrupt = |c: &str| StoreError::Corrupt(format!("rotations.{c}"));
    let kind: String = r.try_get("kind")?;
    let step: String = r.try_get("step")?;
    Ok(Rotation {
        id: r.try_get("id")?,
        trust_id: r.try_get("trust_id")?,
        directory: r.try_get("directory")?,
        trust: r.try_get("trust")?,
        version: r.try_get("version")?,
        kind: kind.parse().map_err(|_| corrupt("kind"))?,
        step: step.parse().map_err(|_| corrupt("step"))?,
        overlap: dur(r.try_get("overlap_seconds")?),
        attempts: r.try_get("attempts")?,
        next_attempt_at: Timestamp(r.try_get("next_attempt_at")?),
        last_error: r.try_get("last_error")?,
        started_at: Timestamp(r.try_get("started_at")?),
        started_by: r.try_get("started_by")?,
        updated_at: Timestamp(r.try_get("updated_at")?),
        finished_at: opt_ts(r.try_get("finished_at")?),
        deliveries: Vec::new(),
    })
}
