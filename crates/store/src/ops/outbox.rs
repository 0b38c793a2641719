//! Outbound provisioning persistence: the transactional outbox, the per-target
//! configuration, and the per-(target, resource) work the dispatcher delivers.
//!
//! - Every SCIM write inserts `sync_outbox` rows in its own transaction
//!   ([`Store::outbox_insert`], called from `crate::scim`), so nothing changes in a
//!   directory without the engine learning about it.
//! - [`Store::fan_out`] claims outbox rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite
//!   has one writer) and, in the same transaction, upserts one `sync_work` row per
//!   (target, resource) and deletes the outbox rows. There is no "last seen" cursor, so a
//!   transaction that commits late is never skipped. Repeated changes coalesce: a work row
//!   holds the latest generation; the desired state is read from the directory at
//!   delivery time.
//! - [`Store::claim_sync_work`] leases due work rows (at most `concurrency` in flight per
//!   target, across nodes); [`Store::finish_sync_work`] and [`Store::fail_sync_work`]
//!   record the outcome with its audit record, only while the caller still holds the lease.

use std::collections::HashMap;
use std::time::Duration;

use fedkey_audit::Outcome;
use fedkey_core::{Timestamp, TrustRef};
use fedkey_crypto::Secret;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use super::{Actor, Store, opt_ts};
use crate::StoreError;
use crate::db::Tx;

/// Largest mapping document accepted.
pub const MAX_MAPPING_DOC: usize = 64 * 1024;
/// How long a node that found a target's slots all taken by others is left its share.
const STARVED_FOR: Duration = Duration::from_secs(5);

/// Most operations fedkey puts in one `/Bulk` request to a target, whatever it allows.
pub const MAX_BULK_OPERATIONS: i64 = 1000;

/// What happened to a resource, as recorded in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Delete,
    /// A group it belongs to (or, for a group, one of its members) changed.
    Membership,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Delete => "delete",
            Change::Membership => "membership",
        }
    }
}

/// What a write did, for the security-event pipeline (see `ops::events`): stored with its
/// outbox row. Membership-only rows carry none.
#[derive(Debug, Clone, Default)]
pub struct WriteEvents {
    /// `create`, `patch`, `put`, `delete`, `activate`, `deactivate`, `credential:…`.
    pub kinds: Vec<String>,
    /// Names of the attributes the write changed.
    pub attributes: Vec<String>,
    pub external_id: Option<String>,
    /// The resource's version after the write (before it, for a delete).
    pub version: Option<i64>,
}

/// OAuth2 client credentials settings of a target (the secret is stored apart, sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OAuthSettings {
    pub token_url: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A target as configured (never the OAuth2 secret; only whether there is one).
#[derive(Debug, Clone, Serialize)]
pub struct SyncTarget {
    #[serde(skip)]
    pub trust_id: String,
    #[serde(skip)]
    pub directory_id: String,
    #[serde(rename = "ref")]
    pub trust: TrustRef,
    pub base_url: String,
    /// Lab opt-in: plain http to a host that is not loopback (base URL and token URL).
    pub allow_http: bool,
    /// `bearer` (the trust's app-issued key) or `oauth2`.
    pub auth: &'static str,
    pub oauth: Option<OAuthSettings>,
    pub mapping: Value,
    pub max_attempts: i64,
    pub concurrency: i64,
    /// Limit for each request to the target, in seconds.
    pub timeout_seconds: i64,
    /// Operations per SCIM `/Bulk` request: `None` = as many as the target allows,
    /// `Some(0)` = never use `/Bulk`.
    pub bulk_max_operations: Option<i64>,
    pub consecutive_failures: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub circuit_open_until: Option<Timestamp>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub updated_at: Timestamp,
    pub updated_by: String,
    /// Whether the trust is active (a suspended trust's target receives nothing).
    pub active: bool,
    /// Scheduled reconciliation: seconds between runs (`None`: off).
    pub reconcile_every_seconds: Option<i64>,
    /// Scheduled runs only report the drift.
    pub reconcile_dry_run: bool,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub next_reconcile_at: Option<Timestamp>,
    /// The latest scheduled run.
    pub last_reconcile: Option<super::reconcile_schedule::ReconcileRun>,
}

/// A target configuration to store. The caller validates the mapping.
pub struct NewSyncTarget {
    pub base_url: String,
    /// Lab opt-in: plain http to a host that is not loopback. Checked by the caller.
    pub allow_http: bool,
    pub oauth: Option<(OAuthSettings, Secret)>,
    pub mapping: Value,
    pub max_attempts: i64,
    pub concurrency: i64,
    pub timeout_seconds: i64,
    /// Operations per `/Bulk` request (`None`: the target's limit, `Some(0)`: no `/Bulk`).
    pub bulk_max_operations: Option<i64>,
    /// Scheduled reconciliation (`None`: off).
    pub reconcile: Option<super::reconcile_schedule::ReconcileSchedule>,
    /// Whether a user's delivery depends on their group memberships (the mapping's
    /// `users_follow_groups`); when not, membership changes queue no user work here.
    pub users_follow_groups: bool,
}

/// One (target, resource) work row.
#[derive(Debug, Clone, Serialize)]
pub struct SyncWork {
    #[serde(skip)]
    pub trust_id: String,
    /// `DIRECTORY/TRUST`.
    pub trust: String,
    #[serde(skip)]
    pub trust_name: String,
    pub resource_type: String,
    pub resource_id: String,
    #[serde(skip)]
    pub directory_id: String,
    pub display: Option<String>,
    pub generation: i64,
    pub deleted: bool,
    /// `pending`, `done`, `dead` (a dead letter) or `discarded`.
    pub status: String,
    pub attempts: i64,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339")]
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
    pub remote_active: Option<bool>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub leaver_since: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub deprovisioned_at: Option<Timestamp>,
    #[serde(serialize_with = "fedkey_core::clock::rfc3339_opt")]
    pub delivered_at: Option<Timestamp>,
    /// The lease this row was claimed under (rows of one request share it).
    #[serde(skip)]
    pub lease: Option<String>,
}

/// The result of one successful delivery.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    pub remote_id: Option<String>,
    /// Whether the account is active at the target (`None`: absent or not a user).
    pub remote_active: Option<bool>,
    /// The delivery removed or deactivated an account (a leaver, or out of scope).
    pub deprovisioned: bool,
    /// What was done, for the audit record (never attribute values).
    pub summary: Value,
    /// Groups of the same target to deliver again (a member's account appeared, went
    /// away or changed activity), queued in the transaction that records the delivery.
    pub requeue_groups: Vec<String>,
}

/// Which dead letters an operator acts on.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    pub trust: Option<String>,
    pub resource_id: Option<String>,
}

const WORK_COLUMNS: &str = "w.trust_id, t.name AS trust_name, d.name AS directory_name, w.resource_type, w.resource_id, \
    w.directory_id, w.display, w.generation, w.deleted, w.status, w.attempts, w.next_attempt_at, w.last_error, \
    w.remote_id, w.remote_active, w.leaver_since, w.deprovisioned_at, w.delivered_at, w.lease_owner";
const WORK_FROM: &str = "sync_work w JOIN trusts t ON t.id = w.trust_id JOIN directories d ON d.id = t.directory_id";

pub(super) const TARGET_SELECT: &str = "SELECT s.trust_id, s.directory_id, d.name AS directory_name, t.name AS trust_name, t.status AS trust_status, \
    s.base_url, s.allow_http, s.oauth, s.oauth_secret IS NOT NULL AS has_secret, s.mapping, s.max_attempts, s.concurrency, s.timeout_seconds, \
    s.bulk_max_operations, s.consecutive_failures, s.circuit_open_until, s.last_error, s.created_at, s.updated_at, s.updated_by, \
    s.reconcile_every, s.reconcile_dry_run, s.next_reconcile_at, s.last_reconcile_started_at, \
    s.last_reconcile_finished_at, s.last_reconcile_outcome, s.last_reconcile_counts, s.last_reconcile_error \
    FROM sync_targets s JOIN trusts t ON t.id = s.trust_id JOIN directories d ON d.id = t.directory_id";

fn target_aad(trust_id: &str) -> Vec<u8> {
    format!("sync-target/{trust_id}").into_bytes()
}

pub(super) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

const OUTBOX_INSERT: &str =
    "INSERT INTO sync_outbox (directory_id, resource_type, resource_id, change, display, leaver, created_at";
/// The `leaver` column of a row that does not change whether the user is a leaver.
const NO_LEAVER_CHANGE: i64 = -1;
/// How often a transaction PostgreSQL aborted to break a deadlock is run in all.
const TRANSIENT_ATTEMPTS: u32 = 5;
/// Member ids bound per statement (well under every backend's parameter limit).
const MEMBERSHIP_CHUNK: usize = 200;

impl Store {
    // ----- outbox -----

    /// Records a change in the outbox, inside the change's transaction. `leaver`:
    /// `Some(true)` when the user is now inactive or deleted, `Some(false)` when active,
    /// `None` when unknown (membership changes leave the leaver state as it is).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn outbox_insert(
        &self,
        tx: &mut Tx,
        directory_id: &str,
        resource_type: &str,
        resource_id: &str,
        change: Change,
        display: Option<&str>,
        leaver: Option<bool>,
        events: &WriteEvents,
    ) -> Result<(), StoreError> {
        let flag: i64 = match leaver {
            None => NO_LEAVER_CHANGE,
            Some(false) => 0,
            Some(true) => 1,
        };
        let sql = format!(
            "{OUTBOX_INSERT}, events, attributes, external_id, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(directory_id.to_owned())
            .bind(resource_type.to_owned())
            .bind(resource_id.to_owned())
            .bind(change.as_str())
            .bind(display.map(str::to_owned))
            .bind(flag)
            .bind(self.now().0)
            .bind(json!(events.kinds).to_string())
            .bind(json!(events.attributes).to_string())
            .bind(events.external_id.clone())
            .bind(events.version)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Membership outbox rows for the resources of the directory among `ids` (ids outside
    /// it are skipped), one statement per chunk instead of a lookup and an insert each:
    /// an IdP adding 50 members to a group in one PATCH is common.
    pub(crate) async fn outbox_insert_memberships(
        &self,
        tx: &mut Tx,
        directory_id: &str,
        ids: &[&String],
    ) -> Result<(), StoreError> {
        let now = self.now().0;
        for chunk in ids.chunks(MEMBERSHIP_CHUNK) {
            let sql = format!(
                "{OUTBOX_INSERT}) SELECT r.directory_id, r.resource_type, r.id, $2, NULL, {NO_LEAVER_CHANGE}, $3 \
                 FROM scim_resources r WHERE r.directory_id = $1 AND r.id IN ({}) ORDER BY r.id",
                (0..chunk.len()).map(|i| format!("${}", i + 4)).collect::<Vec<_>>().join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(directory_id.to_owned())
                .bind(Change::Membership.as_str())
                .bind(now);
            for id in chunk {
                q = q.bind((*id).clone());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Membership outbox rows for everything related to `id` (the groups it is in and, for
    /// a group, its members), in one statement; before a delete removes the memberships.
    pub(crate) async fn outbox_insert_related(
        &self,
        tx: &mut Tx,
        directory_id: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "{OUTBOX_INSERT}) SELECT $1, related.kind, related.rid, $3, NULL, {NO_LEAVER_CHANGE}, $4 FROM ( \
             SELECT group_id AS rid, 'Group' AS kind FROM scim_members WHERE directory_id = $1 AND member_id = $2 \
             UNION SELECT member_id AS rid, member_type AS kind FROM scim_members WHERE directory_id = $1 AND group_id = $2 \
             ) AS related ORDER BY related.rid"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(directory_id.to_owned())
            .bind(id.to_owned())
            .bind(Change::Membership.as_str())
            .bind(self.now().0)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Outbox rows not yet fanned out (all directories).
    pub async fn outbox_len(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sync_outbox").fetch_one(self.db.pool()).await?;
        Ok(row.try_get("n")?)
    }

    /// Claims up to `limit` outbox rows, turns them into per-target work and deletes them,
    /// all in one transaction. Returns the number of outbox rows consumed.
    pub async fn fan_out(&self, limit: i64) -> Result<usize, StoreError> {
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT seq, directory_id, resource_type, resource_id, change, display, leaver, events, attributes, \
             external_id, version, created_at FROM sync_outbox ORDER BY seq LIMIT $1{}",
            self.db.backend.skip_locked()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Per directory: its targets, and whether their user deliveries follow groups.
        let mut targets: std::collections::HashMap<String, Vec<(String, bool)>> = std::collections::HashMap::new();
        let mut work: Vec<WorkChange> = Vec::new();
        let mut streams = HashMap::new();
        for row in &rows {
            let dir: String = row.try_get("directory_id")?;
            if let Some(change) = outbox_change(row)? {
                self.queue_change_events(&mut tx, &mut streams, &dir, row.try_get("seq")?, &change).await?;
            }
            if !targets.contains_key(&dir) {
                let ts = sqlx::query("SELECT trust_id, users_follow_groups FROM sync_targets WHERE directory_id = $1")
                    .bind(dir.clone())
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((r.try_get::<String, _>("trust_id")?, r.try_get::<i64, _>("users_follow_groups")? != 0))
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                targets.insert(dir.clone(), ts);
            }
            let change: String = row.try_get("change")?;
            let resource_type: String = row.try_get("resource_type")?;
            // A user's memberships reach a target through its groups' deliveries; the user
            // itself only needs sending again where the mapping reads them.
            let membership_only = change == Change::Membership.as_str() && resource_type == "User";
            for (trust_id, follows) in targets.get(&dir).map(Vec::as_slice).unwrap_or_default() {
                if membership_only && !follows {
                    continue;
                }
                work.push(WorkChange {
                    trust_id: trust_id.clone(),
                    resource_type: resource_type.clone(),
                    resource_id: row.try_get("resource_id")?,
                    directory_id: dir.clone(),
                    display: row.try_get("display")?,
                    deleted: if change == "delete" { 1 } else { 0 },
                    leaver: row.try_get("leaver")?,
                });
            }
        }
        // Work rows are locked in one global order (users first, as in `finish_sync_work`,
        // which bumps a user's groups after the user): two nodes fanning out at once wait
        // for each other instead of deadlocking. The sort is stable, so the changes to one
        // resource keep their outbox order.
        work.sort_by(|a, b| {
            b.resource_type
                .cmp(&a.resource_type)
                .then_with(|| (&a.trust_id, &a.resource_id).cmp(&(&b.trust_id, &b.resource_id)))
        });
        for c in work {
            upsert_work(
                &mut tx,
                &c.trust_id,
                &c.resource_type,
                &c.resource_id,
                &c.directory_id,
                c.display,
                c.deleted,
                c.leaver,
                now,
            )
            .await?;
        }
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            sqlx::query("DELETE FROM sync_outbox WHERE seq = $1").bind(seq).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    // ----- targets -----

    /// Creates or replaces the target of an outbound trust. The first configuration
    /// queues every existing resource of the directory for delivery (the initial load).
    pub async fn set_sync_target(
        &self,
        actor: &Actor,
        r: &TrustRef,
        t: NewSyncTarget,
    ) -> Result<SyncTarget, StoreError> {
        let trust = self.trust(r).await?;
        if trust.direction != fedkey_core::Direction::Outbound {
            return Err(StoreError::Invalid(format!(
                "{r} is an inbound trust; only outbound trusts provision to an application"
            )));
        }
        let mapping_text = t.mapping.to_string();
        if mapping_text.len() > MAX_MAPPING_DOC {
            return Err(StoreError::Invalid(format!("the mapping must be at most {MAX_MAPPING_DOC} bytes")));
        }
        if !(1..=100).contains(&t.max_attempts) {
            return Err(StoreError::Invalid("max_attempts must be between 1 and 100".into()));
        }
        if !(1..=64).contains(&t.concurrency) {
            return Err(StoreError::Invalid("concurrency must be between 1 and 64".into()));
        }
        if !(1..=600).contains(&t.timeout_seconds) {
            return Err(StoreError::Invalid("timeout must be between 1s and 600s".into()));
        }
        if t.bulk_max_operations.is_some_and(|n| !(0..=MAX_BULK_OPERATIONS).contains(&n)) {
            return Err(StoreError::Invalid(format!(
                "bulk operations must be between 0 (off) and {MAX_BULK_OPERATIONS}"
            )));
        }
        if let Some(r) = &t.reconcile {
            r.validate()?;
        }
        let every = t.reconcile.as_ref().map(|r| r.every_seconds);
        let (oauth, secret) = match &t.oauth {
            Some((o, s)) => (
                Some(serde_json::to_string(o).map_err(|e| StoreError::Invalid(e.to_string()))?),
                Some(self.keyring()?.seal(&target_aad(&trust.id), s.expose().as_bytes())?),
            ),
            None => (None, None),
        };
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        let existed = sqlx::query("SELECT trust_id FROM sync_targets WHERE trust_id = $1")
            .bind(trust.id.clone())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO sync_targets (trust_id, directory_id, base_url, oauth, oauth_secret, mapping, max_attempts, concurrency, \
             timeout_seconds, consecutive_failures, circuit_open_until, last_error, created_at, updated_at, updated_by, \
             reconcile_every, reconcile_dry_run, next_reconcile_at, bulk_max_operations, users_follow_groups, allow_http) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11, 0, NULL, NULL, $9, $9, $10, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (trust_id) DO UPDATE SET base_url = excluded.base_url, oauth = excluded.oauth, \
             oauth_secret = excluded.oauth_secret, mapping = excluded.mapping, max_attempts = excluded.max_attempts, \
             concurrency = excluded.concurrency, timeout_seconds = excluded.timeout_seconds, consecutive_failures = 0, circuit_open_until = NULL, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by, \
             reconcile_every = excluded.reconcile_every, reconcile_dry_run = excluded.reconcile_dry_run, \
             bulk_max_operations = excluded.bulk_max_operations, users_follow_groups = excluded.users_follow_groups, \
             allow_http = excluded.allow_http, \
             next_reconcile_at = CASE WHEN excluded.reconcile_every IS NULL THEN NULL \
               WHEN sync_targets.reconcile_every = excluded.reconcile_every AND sync_targets.next_reconcile_at IS NOT NULL \
               THEN sync_targets.next_reconcile_at ELSE excluded.next_reconcile_at END",
        )
        .bind(trust.id.clone())
        .bind(trust.directory_id.clone())
        .bind(t.base_url.clone())
        .bind(oauth)
        .bind(secret)
        .bind(mapping_text)
        .bind(t.max_attempts)
        .bind(t.concurrency)
        .bind(now)
        .bind(actor.id.clone())
        .bind(t.timeout_seconds)
        .bind(every)
        .bind(i64::from(t.reconcile.as_ref().is_some_and(|r| r.dry_run)))
        // The first run is one interval away (an unchanged interval keeps its due time).
        .bind(every.map(|e| now.saturating_add(e.saturating_mul(1_000_000))))
        .bind(t.bulk_max_operations)
        .bind(i64::from(t.users_follow_groups))
        .bind(i64::from(t.allow_http))
        .execute(&mut *tx)
        .await?;
        // A changed mapping or URL can change what every resource should look like: queue
        // them all (the initial load on first configuration).
        let rows = sqlx::query(
            "SELECT id, resource_type, name_key, body FROM scim_resources WHERE directory_id = $1 ORDER BY created_at, id",
        )
        .bind(trust.directory_id.clone())
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let body: Value = serde_json::from_str(&row.try_get::<String, _>("body")?).unwrap_or(Value::Null);
            let rt: String = row.try_get("resource_type")?;
            let (display, leaver) = describe(&rt, &body);
            upsert_work(
                &mut tx,
                &trust.id,
                &rt,
                &row.try_get::<String, _>("id")?,
                &trust.directory_id,
                display,
                0,
                leaver.map_or(-1, i64::from),
                now,
            )
            .await?;
        }
        let ev =
            self.event(actor, "sync.target.set", Outcome::Success).directory(&r.directory).trust(&r.trust).details(
                json!({
                    "base_url": t.base_url, "allow_http": t.allow_http, "auth": if t.oauth.is_some() { "oauth2" } else { "bearer" },
                    "mapping": t.mapping, "max_attempts": t.max_attempts, "concurrency": t.concurrency,
                "timeout_seconds": t.timeout_seconds, "bulk_max_operations": t.bulk_max_operations,
                    "reconcile_every_seconds": every,
                    "reconcile_dry_run": t.reconcile.as_ref().is_some_and(|r| r.dry_run),
                    "replaced": existed, "queued": rows.len(),
                }),
            );
        self.commit_with(tx, actor, ev).await?;
        self.sync_target(r).await?.ok_or_else(|| StoreError::NotFound(format!("target of {r}")))
    }

    pub async fn sync_target(&self, r: &TrustRef) -> Result<Option<SyncTarget>, StoreError> {
        let trust = self.trust(r).await?;
        let sql = format!("{TARGET_SELECT} WHERE s.trust_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust.id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(target_from_row).transpose()
    }

    /// Every configured target, in a stable order.
    pub async fn sync_targets(&self, directory: Option<&str>) -> Result<Vec<SyncTarget>, StoreError> {
        let rows = match directory {
            Some(d) => {
                let sql = format!("{TARGET_SELECT} WHERE d.name = $1 ORDER BY d.name, t.name");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(d.to_owned()).fetch_all(self.db.pool()).await?
            }
            None => {
                let sql = format!("{TARGET_SELECT} ORDER BY d.name, t.name");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?
            }
        };
        rows.iter().map(target_from_row).collect()
    }

    /// The OAuth2 client secret of a target, decrypted for use; audited first.
    pub async fn sync_target_secret(&self, actor: &Actor, t: &SyncTarget) -> Result<Option<Secret>, StoreError> {
        let row = sqlx::query("SELECT oauth_secret FROM sync_targets WHERE trust_id = $1")
            .bind(t.trust_id.clone())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("target of {}", t.trust)))?;
        let Some(envelope) = row.try_get::<Option<Vec<u8>>, _>("oauth_secret")? else {
            return Ok(None);
        };
        self.audit
            .record(
                self.event(actor, "sync.target.secret.read", Outcome::Success)
                    .directory(&t.trust.directory)
                    .trust(&t.trust.trust),
                None,
            )
            .await?;
        let plain = self.keyring()?.open(&target_aad(&t.trust_id), &envelope)?;
        let text =
            String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Corrupt("sync_targets.oauth_secret".into()))?;
        Ok(Some(Secret::new(text)))
    }

    /// Circuit-breaker bookkeeping: a success closes the circuit; a failure counts, and
    /// `open_until` (when given) stops deliveries to the target until then.
    pub async fn sync_target_outcome(
        &self,
        trust_id: &str,
        error: Option<&str>,
        open_until: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let q = match error {
            None => sqlx::query(
                "UPDATE sync_targets SET consecutive_failures = 0, circuit_open_until = NULL, last_error = NULL WHERE trust_id = $1",
            )
            .bind(trust_id.to_owned()),
            Some(e) => sqlx::query(
                "UPDATE sync_targets SET consecutive_failures = consecutive_failures + 1, \
                 circuit_open_until = COALESCE($1, circuit_open_until), last_error = $2 WHERE trust_id = $3",
            )
            .bind(open_until.map(|t| t.0))
            .bind(clip(e, 500))
            .bind(trust_id.to_owned()),
        };
        q.execute(self.db.pool()).await?;
        Ok(())
    }

    // ----- work -----

    /// Leases due work rows of a target for `owner` until `now + ttl`, one row per lease,
    /// keeping at most `concurrency` rows of the target in flight across all nodes.
    /// Users come before groups (a group's members must exist at the target first).
    pub async fn claim_sync_work(
        &self,
        trust_id: &str,
        owner: &str,
        concurrency: i64,
        ttl: Duration,
    ) -> Result<Vec<SyncWork>, StoreError> {
        self.claim_sync_slots(trust_id, owner, concurrency, 1, ttl).await
    }

    /// Leases due work rows of a target in *slots*: a slot is what one request carries,
    /// up to `per_slot` users (a `/Bulk` request) or one group. At most `slots` slots of
    /// the target are in flight across all nodes, so `slots` bounds the requests a target
    /// gets at once whichever node sends them. Rows of one slot share their lease
    /// ([`SyncWork::lease`]); users come before groups.
    pub async fn claim_sync_slots(
        &self,
        trust_id: &str,
        owner: &str,
        slots: i64,
        per_slot: i64,
        ttl: Duration,
    ) -> Result<Vec<SyncWork>, StoreError> {
        let now = self.now();
        let until = now.saturating_add(ttl).0;
        let per_slot = per_slot.max(1);
        let mut tx = self.db.begin().await?;
        // Claims of one target take turns across nodes (the target's row is locked), so each
        // counts the leases the other just took and together they stay within `slots`
        // (SQLite's single writer already serialises them). The row also says whether
        // another node waits for work: then this one keeps to half of the slots.
        let lock = if self.db.backend == crate::Backend::Postgres { " FOR UPDATE" } else { "" };
        let target = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT starved_node, starved_until FROM sync_targets WHERE trust_id = $1{lock}"
        )))
        .bind(trust_id.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let another_waits = match &target {
            Some(r) => {
                let node: Option<String> = r.try_get("starved_node")?;
                let until: Option<i64> = r.try_get("starved_until")?;
                node.is_some_and(|n| n != owner) && until.is_some_and(|u| u > now.0)
            }
            None => false,
        };
        // Slots in flight: all, and this node's (leases named `owner#…`).
        let counts = sqlx::query(
            "SELECT COUNT(DISTINCT lease_owner) AS n, \
             COUNT(DISTINCT CASE WHEN SUBSTR(lease_owner, 1, CAST($3 AS INTEGER)) = $4 THEN lease_owner END) AS mine \
             FROM sync_work WHERE trust_id = $1 AND status = 'pending' AND lease_expires_at > $2",
        )
        .bind(trust_id.to_owned())
        .bind(now.0)
        .bind(i64::try_from(owner.chars().count() + 1).unwrap_or(i64::MAX))
        .bind(format!("{owner}#"))
        .fetch_one(&mut *tx)
        .await?;
        let (in_flight, mine): (i64, i64) = (counts.try_get("n")?, counts.try_get("mine")?);
        let mut room = slots - in_flight;
        if another_waits {
            room = room.min((slots + 1) / 2 - mine);
        }
        if room <= 0 {
            if in_flight > mine {
                // Taken by other nodes: ask them to leave this one its share.
                sqlx::query("UPDATE sync_targets SET starved_node = $1, starved_until = $2 WHERE trust_id = $3")
                    .bind(owner.to_owned())
                    .bind(now.saturating_add(STARVED_FOR).0)
                    .bind(trust_id.to_owned())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT resource_type, resource_id FROM sync_work WHERE trust_id = $1 AND status = 'pending' \
             AND next_attempt_at <= $2 AND (lease_expires_at IS NULL OR lease_expires_at <= $2) \
             ORDER BY resource_type DESC, CASE WHEN deleted = 1 OR leaver_since IS NOT NULL THEN 0 ELSE 1 END, \
             next_attempt_at, resource_id LIMIT $3{}",
            self.db.backend.skip_locked()
        );
        let keys = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(trust_id.to_owned())
            .bind(now.0)
            .bind(room.saturating_mul(per_slot))
            .fetch_all(&mut *tx)
            .await?;
        // Users fill slots of `per_slot`; each other resource takes a slot of its own.
        let mut leases: Vec<(String, i64)> = Vec::new();
        let mut out = Vec::with_capacity(keys.len());
        for k in &keys {
            let rt: String = k.try_get("resource_type")?;
            let id: String = k.try_get("resource_id")?;
            let joins = rt == "User"
                && leases.last().is_some_and(|(_, n)| *n < per_slot)
                && out.last().is_some_and(|w: &SyncWork| w.resource_type == "User");
            if !joins {
                if leases.len() as i64 >= room {
                    break;
                }
                leases.push((new_lease(owner)?, 0));
            }
            let Some((lease, n)) = leases.last_mut() else { break };
            *n += 1;
            sqlx::query(
                "UPDATE sync_work SET lease_owner = $1, lease_expires_at = $2 WHERE trust_id = $3 AND resource_type = $4 AND resource_id = $5",
            )
            .bind(lease.clone())
            .bind(until)
            .bind(trust_id.to_owned())
            .bind(rt.clone())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            let sql = format!(
                "SELECT {WORK_COLUMNS} FROM {WORK_FROM} WHERE w.trust_id = $1 AND w.resource_type = $2 AND w.resource_id = $3"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(trust_id.to_owned())
                .bind(rt)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(work_from_row(&row)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records a successful delivery of generation `w.generation` (audited as
    /// `sync.deliver`). The row stays pending when a newer change arrived meanwhile.
    /// Returns false (and changes nothing) when `owner` no longer holds the lease.
    pub async fn finish_sync_work(
        &self,
        actor: &Actor,
        w: &SyncWork,
        owner: &str,
        d: &Delivered,
    ) -> Result<bool, StoreError> {
        Ok(self.finish_sync_many(actor, owner, &[(w, d)]).await?.first().copied().unwrap_or(false))
    }

    /// [`finish_sync_work`](Self::finish_sync_work) for many rows in one transaction (a
    /// `/Bulk` request's worth): one commit and one multi-row audit append for all. One
    /// result per row, in order.
    pub async fn finish_sync_many(
        &self,
        actor: &Actor,
        owner: &str,
        done: &[(&SyncWork, &Delivered)],
    ) -> Result<Vec<bool>, StoreError> {
        // Read before taking the write lock: a second pool connection wanted while holding it
        // can deadlock against writers that hold every other connection (SQLite).
        let mut directories: HashMap<&str, String> = HashMap::new();
        for (w, _) in done {
            if !directories.contains_key(w.directory_id.as_str()) {
                directories.insert(&w.directory_id, self.directory_name_of(&w.directory_id).await?);
            }
        }
        let mut attempt = 1;
        loop {
            match self.finish_sync_once(actor, owner, done, &directories).await {
                // Two nodes finishing work at once can deadlock on PostgreSQL (the group rows
                // that delivered members requeue); the loser's transaction is rolled back.
                Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS => {
                    tracing::warn!(
                        attempt,
                        "finishing delivered work conflicted with another transaction; trying again"
                    );
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn finish_sync_once(
        &self,
        actor: &Actor,
        owner: &str,
        done: &[(&SyncWork, &Delivered)],
        directories: &HashMap<&str, String>,
    ) -> Result<Vec<bool>, StoreError> {
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(done.len());
        // Groups whose delivered members changed them, bumped after every finished row and
        // in one order (trust, id), as `fan_out` locks rows: two nodes finishing batches
        // that share groups must not take those row locks in opposite orders.
        let mut requeue: Vec<(String, String)> = Vec::new();
        for (w, d) in done {
            let Some(lease) = held_lease(w, owner) else {
                out.push(false);
                continue;
            };
            let n = sqlx::query(
                "UPDATE sync_work SET status = CASE WHEN generation = $1 THEN 'done' ELSE 'pending' END, \
                 done_generation = $1, attempts = 0, next_attempt_at = $2, lease_owner = NULL, lease_expires_at = NULL, \
                 last_error = NULL, remote_id = $3, remote_active = $4, delivered_at = $2, updated_at = $2, \
                 leaver_since = CASE WHEN $5 = 1 THEN COALESCE(leaver_since, $2) ELSE leaver_since END, \
                 deprovisioned_at = CASE WHEN $5 = 1 THEN COALESCE(deprovisioned_at, $2) ELSE deprovisioned_at END \
                 WHERE trust_id = $6 AND resource_type = $7 AND resource_id = $8 AND lease_owner = $9",
            )
            .bind(w.generation)
            .bind(now)
            .bind(d.remote_id.clone())
            .bind(d.remote_active.map(i64::from))
            .bind(i64::from(d.deprovisioned))
            .bind(w.trust_id.clone())
            .bind(w.resource_type.clone())
            .bind(w.resource_id.clone())
            .bind(lease.to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            out.push(n > 0);
            if n == 0 {
                continue;
            }
            requeue.extend(d.requeue_groups.iter().map(|g| (w.trust_id.clone(), g.clone())));
            let directory = directories.get(w.directory_id.as_str()).cloned().unwrap_or_default();
            events.push(
                self.event(actor, "sync.deliver", Outcome::Success).directory(directory).trust(&w.trust_name).details(
                    json!({
                        "resource_type": w.resource_type, "id": w.resource_id, "generation": w.generation,
                        "remote_id": d.remote_id, "deprovisioned": d.deprovisioned, "did": d.summary,
                    }),
                ),
            );
        }
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(out);
        }
        requeue.sort();
        requeue.dedup();
        for chunk in requeue.chunk_by(|a, b| a.0 == b.0) {
            let ids: Vec<String> = chunk.iter().map(|(_, g)| g.clone()).collect();
            requeue_in(&mut tx, &chunk[0].0, "Group", &ids, now).await?;
        }
        self.commit_with_events(tx, actor, events).await?;
        Ok(out)
    }

    /// Records a failed delivery: retried at `retry_at`, or a dead letter when `None`
    /// (audited as `sync.dead_letter`; a retry as `sync.retry`). Returns false when the
    /// lease was lost.
    pub async fn fail_sync_work(
        &self,
        actor: &Actor,
        w: &SyncWork,
        owner: &str,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let Some(lease) = held_lease(w, owner) else { return Ok(false) };
        let now = self.now().0;
        let error = clip(error, 1000);
        // Before the write lock, as in `finish_sync_work`.
        let directory = self.directory_name_of(&w.directory_id).await?;
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE sync_work SET status = $1, attempts = attempts + 1, next_attempt_at = $2, lease_owner = NULL, \
             lease_expires_at = NULL, last_error = $3, updated_at = $4 \
             WHERE trust_id = $5 AND resource_type = $6 AND resource_id = $7 AND lease_owner = $8",
        )
        .bind(if retry_at.is_some() { "pending" } else { "dead" })
        .bind(retry_at.map_or(now, |t| t.0))
        .bind(error.clone())
        .bind(now)
        .bind(w.trust_id.clone())
        .bind(w.resource_type.clone())
        .bind(w.resource_id.clone())
        .bind(lease.to_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let (action, outcome) =
            if retry_at.is_some() { ("sync.retry", Outcome::Failure) } else { ("sync.dead_letter", Outcome::Failure) };
        let ev = self.event(actor, action, outcome).directory(directory).trust(&w.trust_name).details(json!({
            "resource_type": w.resource_type, "id": w.resource_id, "attempt": w.attempts + 1,
            "error": error, "retry_at": retry_at.map(|t| t.to_rfc3339()),
        }));
        self.commit_with(tx, actor, ev).await?;
        Ok(true)
    }

    /// Gives a lease back without recording an attempt (the target's circuit is open).
    pub async fn release_sync_work(&self, w: &SyncWork, owner: &str, at: Timestamp) -> Result<(), StoreError> {
        let Some(lease) = held_lease(w, owner) else { return Ok(()) };
        sqlx::query(
            "UPDATE sync_work SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = $1 \
             WHERE trust_id = $2 AND resource_type = $3 AND resource_id = $4 AND lease_owner = $5",
        )
        .bind(at.0)
        .bind(w.trust_id.clone())
        .bind(w.resource_type.clone())
        .bind(w.resource_id.clone())
        .bind(lease.to_owned())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Queues resources again for one target (e.g. the groups of a user who just got a
    /// remote id, so their memberships can now be sent).
    pub async fn requeue_sync_work(
        &self,
        trust_id: &str,
        resource_type: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        requeue_in(&mut tx, trust_id, resource_type, ids, self.now().0).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The remote ids (and activity) at one target of the resources `ids` (directory ids),
    /// by directory id; resources without an account there are absent.
    pub async fn sync_remote_ids(
        &self,
        trust_id: &str,
        resource_type: &str,
        ids: &[String],
    ) -> Result<HashMap<String, RemoteRef>, StoreError> {
        let mut out = HashMap::new();
        // Primary-key lookups, a chunk at a time (a group delivery reads only its members).
        for chunk in ids.chunks(500) {
            let list = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT resource_id, remote_id, remote_active, status FROM sync_work WHERE trust_id = $1 \
                 AND resource_type = $2 AND resource_id IN ({list}) AND remote_id IS NOT NULL AND deleted = 0"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(trust_id.to_owned()).bind(resource_type.to_owned());
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in &q.fetch_all(self.db.pool()).await? {
                let active: Option<i64> = r.try_get("remote_active")?;
                let status: String = r.try_get("status")?;
                let remote = RemoteRef {
                    id: r.try_get("remote_id")?,
                    active: active.map(|a| a != 0),
                    settled: status == "done",
                };
                out.insert(r.try_get("resource_id")?, remote);
            }
        }
        Ok(out)
    }

    /// Work rows of a directory, optionally only those with `status`.
    pub async fn sync_work_of(&self, directory: &str, status: Option<&str>) -> Result<Vec<SyncWork>, StoreError> {
        let dir = self.directory(directory).await?;
        let mut sql = format!("SELECT {WORK_COLUMNS} FROM {WORK_FROM} WHERE w.directory_id = $1");
        if status.is_some() {
            sql.push_str(" AND w.status = $2");
        }
        sql.push_str(" ORDER BY t.name, w.resource_type DESC, w.display, w.resource_id");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(dir.id);
        if let Some(s) = status {
            q = q.bind(s.to_owned());
        }
        q.fetch_all(self.db.pool()).await?.iter().map(work_from_row).collect()
    }

    /// Work rows of leavers (users deactivated or deleted in the directory, or
    /// deprovisioned for leaving a mapping's scope).
    pub async fn sync_leavers(&self, directory: &str) -> Result<Vec<SyncWork>, StoreError> {
        let dir = self.directory(directory).await?;
        let sql = format!(
            "SELECT {WORK_COLUMNS} FROM {WORK_FROM} WHERE w.directory_id = $1 AND w.resource_type = 'User' \
             AND w.leaver_since IS NOT NULL ORDER BY w.leaver_since, w.resource_id, t.name"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dir.id)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(work_from_row)
            .collect()
    }

    /// Dead letters back to pending (attempts reset), audited as `sync.dead_letter.retry`.
    pub async fn retry_dead_letters(
        &self,
        actor: &Actor,
        directory: &str,
        f: &DeadLetterFilter,
    ) -> Result<u64, StoreError> {
        self.act_on_dead_letters(actor, directory, f, "pending", "sync.dead_letter.retry").await
    }

    /// Dead letters dropped (status `discarded`), audited as `sync.dead_letter.discard`.
    pub async fn discard_dead_letters(
        &self,
        actor: &Actor,
        directory: &str,
        f: &DeadLetterFilter,
    ) -> Result<u64, StoreError> {
        self.act_on_dead_letters(actor, directory, f, "discarded", "sync.dead_letter.discard").await
    }

    async fn act_on_dead_letters(
        &self,
        actor: &Actor,
        directory: &str,
        f: &DeadLetterFilter,
        to: &str,
        action: &str,
    ) -> Result<u64, StoreError> {
        let dir = self.directory(directory).await?;
        let trust_id = match &f.trust {
            Some(t) => Some(self.trust(&TrustRef { directory: directory.to_owned(), trust: t.clone() }).await?.id),
            None => None,
        };
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE sync_work SET status = $1, attempts = 0, next_attempt_at = $2, updated_at = $2 \
             WHERE directory_id = $3 AND status = 'dead' AND ($4 IS NULL OR trust_id = $4) AND ($5 IS NULL OR resource_id = $5)",
        )
        .bind(to.to_owned())
        .bind(now)
        .bind(dir.id)
        .bind(trust_id)
        .bind(f.resource_id.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut ev = self
            .event(actor, action, Outcome::Success)
            .directory(directory)
            .details(json!({"count": n, "resource_id": f.resource_id}));
        if let Some(t) = &f.trust {
            ev = ev.trust(t);
        }
        self.commit_with(tx, actor, ev).await?;
        Ok(n)
    }

    // ----- reconciliation -----

    /// Queues (target, resource) work rows for delivery now, for a reconciliation: each
    /// item is `(resource_type, resource_id, details)`. A row that exists (done, dead,
    /// discarded, pending in backoff, or a deleted resource's row) is revived with its
    /// attempts reset; a missing one is created. One `sync.reconcile.queue` audit record
    /// per item (its `details`), all in one transaction: every row is queued, or none.
    pub async fn reconcile_queue(
        &self,
        actor: &Actor,
        t: &SyncTarget,
        items: &[(String, String, Value)],
    ) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let now = self.now().0;
        let mut tx = self.db.begin().await?;
        let mut events = Vec::with_capacity(items.len());
        for (rt, id, details) in items {
            let n = sqlx::query(
                "UPDATE sync_work SET generation = generation + 1, status = 'pending', next_attempt_at = $1, \
                 attempts = 0, updated_at = $1 WHERE trust_id = $2 AND resource_type = $3 AND resource_id = $4",
            )
            .bind(now)
            .bind(t.trust_id.clone())
            .bind(rt.clone())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                upsert_work(&mut tx, &t.trust_id, rt, id, &t.directory_id, None, 0, -1, now).await?;
            }
            events.push(
                self.event(actor, "sync.reconcile.queue", Outcome::Success)
                    .directory(t.trust.directory.clone())
                    .trust(t.trust.trust.clone())
                    .details(details.clone()),
            );
        }
        crate::audit::append_in_tx(&mut tx, &self.db, events)
            .await
            .map_err(|e| StoreError::AuditUnavailable(Box::new(e)))?;
        tx.commit().await.map_err(|e| StoreError::AuditUnavailable(Box::new(e.into())))?;
        Ok(items.len())
    }

    /// An audit record of a reconciliation step that changes nothing in the database (the
    /// plan summary, an orphan deactivated at the target).
    pub async fn reconcile_audit(
        &self,
        actor: &Actor,
        t: &SyncTarget,
        action: &str,
        ok: bool,
        details: Value,
    ) -> Result<(), StoreError> {
        let ev = self
            .event(actor, action, if ok { Outcome::Success } else { Outcome::Failure })
            .directory(t.trust.directory.clone())
            .trust(t.trust.trust.clone())
            .details(details);
        self.audit.record(ev, None).await.map(|_| ())
    }

    async fn directory_name_of(&self, directory_id: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT name FROM directories WHERE id = $1")
            .bind(directory_id.to_owned())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("directory {directory_id}")))?;
        Ok(row.try_get("name")?)
    }
}

/// `userName`/`displayName` and, for users, whether they are a leaver (inactive).
pub(crate) fn describe(resource_type: &str, body: &Value) -> (Option<String>, Option<bool>) {
    if resource_type == "User" {
        let name = body.get("userName").and_then(Value::as_str).map(str::to_owned);
        let inactive = matches!(body.get("active"), Some(Value::Bool(false)));
        (name, Some(inactive))
    } else {
        (body.get("displayName").and_then(Value::as_str).map(str::to_owned), None)
    }
}

/// The change an outbox row describes for the event pipeline (`None`: it has no events).
fn outbox_change(row: &AnyRow) -> Result<Option<super::events::OutboxChange>, StoreError> {
    let Some(kinds) = row.try_get::<Option<String>, _>("events")? else {
        return Ok(None);
    };
    let corrupt = |c: &str| StoreError::Corrupt(format!("sync_outbox.{c}"));
    let attributes: Option<String> = row.try_get("attributes")?;
    Ok(Some(super::events::OutboxChange {
        resource_type: row.try_get("resource_type")?,
        resource_id: row.try_get("resource_id")?,
        kinds: serde_json::from_str(&kinds).map_err(|_| corrupt("events"))?,
        attributes: match attributes {
            Some(a) => serde_json::from_str(&a).map_err(|_| corrupt("attributes"))?,
            None => Vec::new(),
        },
        display: row.try_get("display")?,
        external_id: row.try_get("external_id")?,
        version: row.try_get("version")?,
        at: row.try_get("created_at")?,
    }))
}

/// One outbox change for one target, before it is folded into the work row.
struct WorkChange {
    trust_id: String,
    resource_type: String,
    resource_id: String,
    directory_id: String,
    display: Option<String>,
    deleted: i64,
    leaver: i64,
}

/// Creates or bumps the work row of (target, resource). A new change revives a done,
/// dead or discarded row at once; a pending row keeps its backoff. `leaver` is -1
/// (unchanged), 0 (active: clears the deprovisioning record) or 1 (leaver since now,
/// unless already).
#[allow(clippy::too_many_arguments)]
async fn upsert_work(
    tx: &mut Tx,
    trust_id: &str,
    resource_type: &str,
    resource_id: &str,
    directory_id: &str,
    display: Option<String>,
    deleted: i64,
    leaver: i64,
    now: i64,
) -> Result<(), StoreError> {
    let leaver = if deleted == 1 && resource_type == "User" { 1 } else { leaver };
    sqlx::query(
        "INSERT INTO sync_work (trust_id, resource_type, resource_id, directory_id, display, generation, done_generation, \
         deleted, status, attempts, next_attempt_at, leaver_since, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, 0, $6, 'pending', 0, $7, CASE WHEN $8 = 1 THEN $7 ELSE NULL END, $7) \
         ON CONFLICT (trust_id, resource_type, resource_id) DO UPDATE SET \
         generation = sync_work.generation + 1, \
         display = COALESCE(excluded.display, sync_work.display), \
         deleted = CASE WHEN excluded.deleted = 1 THEN 1 ELSE sync_work.deleted END, \
         next_attempt_at = CASE WHEN sync_work.status = 'pending' THEN sync_work.next_attempt_at ELSE excluded.next_attempt_at END, \
         attempts = CASE WHEN sync_work.status = 'pending' THEN sync_work.attempts ELSE 0 END, \
         status = 'pending', \
         leaver_since = CASE WHEN $8 = 0 THEN NULL WHEN $8 = 1 THEN COALESCE(sync_work.leaver_since, $7) ELSE sync_work.leaver_since END, \
         deprovisioned_at = CASE WHEN $8 = 0 THEN NULL ELSE sync_work.deprovisioned_at END, \
         updated_at = excluded.updated_at",
    )
    .bind(trust_id.to_owned())
    .bind(resource_type.to_owned())
    .bind(resource_id.to_owned())
    .bind(directory_id.to_owned())
    .bind(display)
    .bind(deleted)
    .bind(now)
    .bind(leaver)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Bumps the work rows of `ids` (one target) so they are delivered again; rows in backoff
/// keep their schedule.
async fn requeue_in(
    tx: &mut Tx,
    trust_id: &str,
    resource_type: &str,
    ids: &[String],
    now: i64,
) -> Result<(), StoreError> {
    // In id order, the order in which `fan_out` locks rows.
    let mut ids: Vec<&String> = ids.iter().collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        sqlx::query(
            "UPDATE sync_work SET generation = generation + 1, status = 'pending', \
             next_attempt_at = CASE WHEN status = 'pending' THEN next_attempt_at ELSE $1 END, \
             attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END, updated_at = $1 \
             WHERE trust_id = $2 AND resource_type = $3 AND resource_id = $4 AND deleted = 0",
        )
        .bind(now)
        .bind(trust_id.to_owned())
        .bind(resource_type.to_owned())
        .bind(id.clone())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Where a resource is at one target, as far as fedkey knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    pub id: String,
    pub active: Option<bool>,
    /// Its latest change was delivered (nothing pending or dead).
    pub settled: bool,
}

/// A fresh lease name: the node's name and a random slot id, so leases of one slot are
/// counted once and those of two slots (or two claims) twice.
fn new_lease(owner: &str) -> Result<String, StoreError> {
    let r = fedkey_crypto::random::bytes::<8>().map_err(|_| StoreError::Crypto("no randomness".into()))?;
    Ok(format!("{owner}#{:016x}", u64::from_le_bytes(*r)))
}

/// The lease of `w` when `owner` (a node name) took it.
fn held_lease<'a>(w: &'a SyncWork, owner: &str) -> Option<&'a str> {
    w.lease.as_deref().filter(|l| l.strip_prefix(owner).is_some_and(|rest| rest.starts_with('#')))
}

pub(super) fn target_from_row(r: &AnyRow) -> Result<SyncTarget, StoreError> {
    let oauth: Option<String> = r.try_get("oauth")?;
    let oauth = match oauth {
        Some(t) => Some(serde_json::from_str(&t).map_err(|_| StoreError::Corrupt("sync_targets.oauth".into()))?),
        None => None,
    };
    let mapping: String = r.try_get("mapping")?;
    let has_secret: bool = match r.try_get::<bool, _>("has_secret") {
        Ok(b) => b,
        Err(_) => r.try_get::<i64, _>("has_secret")? != 0,
    };
    let status: String = r.try_get("trust_status")?;
    Ok(SyncTarget {
        trust_id: r.try_get("trust_id")?,
        directory_id: r.try_get("directory_id")?,
        trust: TrustRef { directory: r.try_get("directory_name")?, trust: r.try_get("trust_name")? },
        base_url: r.try_get("base_url")?,
        allow_http: r.try_get::<i64, _>("allow_http")? != 0,
        auth: if has_secret { "oauth2" } else { "bearer" },
        oauth,
        mapping: serde_json::from_str(&mapping).map_err(|_| StoreError::Corrupt("sync_targets.mapping".into()))?,
        max_attempts: r.try_get("max_attempts")?,
        concurrency: r.try_get("concurrency")?,
        timeout_seconds: r.try_get("timeout_seconds")?,
        bulk_max_operations: r.try_get("bulk_max_operations")?,
        consecutive_failures: r.try_get("consecutive_failures")?,
        circuit_open_until: opt_ts(r.try_get("circuit_open_until")?),
        last_error: r.try_get("last_error")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
        updated_by: r.try_get("updated_by")?,
        active: status == "active",
        reconcile_every_seconds: r.try_get("reconcile_every")?,
        reconcile_dry_run: r.try_get::<i64, _>("reconcile_dry_run")? != 0,
        next_reconcile_at: opt_ts(r.try_get("next_reconcile_at")?),
        last_reconcile: super::reconcile_schedule::run_from_row(r)?,
    })
}

fn work_from_row(r: &AnyRow) -> Result<SyncWork, StoreError> {
    let deleted: i64 = r.try_get("deleted")?;
    let active: Option<i64> = r.try_get("remote_active")?;
    let dir: String = r.try_get("directory_name")?;
    let trust: String = r.try_get("trust_name")?;
    Ok(SyncWork {
        trust_id: r.try_get("trust_id")?,
        trust: format!("{dir}/{trust}"),
        trust_name: trust,
        resource_type: r.try_get("resource_type")?,
        resource_id: r.try_get("resource_id")?,
        directory_id: r.try_get("directory_id")?,
        display: r.try_get("display")?,
        generation: r.try_get("generation")?,
        deleted: deleted != 0,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: Timestamp(r.try_get("next_attempt_at")?),
        last_error: r.try_get("last_error")?,
        remote_id: r.try_get("remote_id")?,
        remote_active: active.map(|a| a != 0),
        leaver_since: opt_ts(r.try_get("leaver_since")?),
        deprovisioned_at: opt_ts(r.try_get("deprovisioned_at")?),
        delivered_at: opt_ts(r.try_get("delivered_at")?),
        lease: r.try_get("lease_owner")?,
    })
}
