//! Provisioning: a trust's SCIM target, the directory's sync status and dead letters,
//! and reconciliation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `PUT …/target`: where and how a directory is provisioned to the trust's application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    /// The application's SCIM base URL (before `/Users`).
    pub url: String,
    /// Attribute mapping (see docs/provisioning.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub mapping: Option<Value>,
    /// Overrides the mapping's `leaver`: `deactivate`, `delete` or `keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub leaver: Option<Value>,
    /// Overrides the mapping's `orphans` (what reconciliation does with unknown accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub orphans: Option<Value>,
    /// OAuth2 client credentials instead of the trust's app-issued key as bearer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthRequest>,
    /// Lab opt-in: plain http to a host that is not loopback (URL and token URL).
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i64>,
    /// SCIM `/Bulk` use: `"auto"` (default: when the target supports it, as many
    /// operations per request as it allows), `"off"`, or the most operations per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkSetting>,
    /// Limit for each request to the target, e.g. `30s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Scheduled reconciliation, e.g. `24h` (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile_every: Option<String>,
    /// Scheduled runs only report the drift.
    #[serde(default)]
    pub reconcile_dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuthRequest {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BulkSetting {
    /// `auto` or `off`.
    Word(String),
    /// The most operations per request.
    Max(i64),
}

/// `GET`/`PUT …/target`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetEnvelope {
    pub trust: String,
    /// The stored target (`null` on a GET when there is none).
    pub target: Option<SyncTarget>,
}

/// A trust's provisioning target as stored; never its credentials.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncTarget {
    /// `directory/trust`.
    #[serde(rename = "ref")]
    pub trust_ref: String,
    pub base_url: String,
    pub allow_http: bool,
    /// `bearer` (the trust's app-issued key) or `oauth2`.
    pub auth: String,
    /// `token_url`, `client_id` and `scope` of OAuth2 client credentials.
    #[schema(value_type = Option<Object>)]
    pub oauth: Option<Value>,
    #[schema(value_type = Object)]
    pub mapping: Value,
    pub max_attempts: i64,
    pub concurrency: i64,
    pub timeout_seconds: i64,
    /// Operations per SCIM `/Bulk` request: `null` as many as the target allows, 0 never.
    pub bulk_max_operations: Option<i64>,
    pub consecutive_failures: i64,
    pub circuit_open_until: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub updated_by: String,
    pub active: bool,
    pub reconcile_every_seconds: Option<i64>,
    pub reconcile_dry_run: bool,
    pub next_reconcile_at: Option<String>,
    pub last_reconcile: Option<ReconcileRun>,
}

/// The last scheduled reconciliation of a target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileRun {
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `succeeded`, `incomplete` or `failed`.
    pub outcome: String,
    /// `null` while running or after a failure.
    pub counts: Option<ReconcileRunCounts>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ReconcileRunCounts {
    #[serde(default)]
    pub dry_run: bool,
    /// Actions planned, by kind (`create`, `update`, `deactivate`…).
    #[serde(default)]
    pub planned: BTreeMap<String, u64>,
    /// Actions done, by kind.
    #[serde(default)]
    pub applied: BTreeMap<String, u64>,
    #[serde(default)]
    pub orphans_reported: u64,
    #[serde(default)]
    pub problems: u64,
    #[serde(default)]
    pub remote_users: u64,
    #[serde(default)]
    pub remote_groups: u64,
}

/// `GET /directories/{d}/sync/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    pub directory: String,
    pub now: String,
    /// Changes waiting in the outbox, all directories.
    pub outbox: i64,
    pub targets: Vec<TargetStatus>,
    pub deprovisioning: Deprovisioning,
    /// Accounts of leavers that are not yet confirmed gone.
    pub still_active: Vec<StillActive>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetStatus {
    pub trust: String,
    pub url: String,
    pub active: bool,
    pub pending: u64,
    pub done: u64,
    pub dead_letters: u64,
    /// `closed`, `failing` or `open`.
    pub circuit: String,
    pub circuit_open_until: Option<String>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
    pub reconcile_every_seconds: Option<i64>,
    pub reconcile_dry_run: bool,
    pub next_reconcile_at: Option<String>,
    pub last_reconcile: Option<ReconcileRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deprovisioning {
    pub complete: u64,
    pub incomplete: u64,
    pub users: Vec<Leaver>,
}

/// A user who left (deactivated or deleted), and where their accounts stand.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Leaver {
    pub user_id: String,
    pub user: Option<String>,
    pub deleted: bool,
    pub since: Option<String>,
    pub complete: bool,
    pub completed_at: Option<String>,
    pub seconds_to_full_deprovisioning: Option<i64>,
    pub targets: Vec<LeaverTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaverTarget {
    pub trust: String,
    /// `confirmed`, `failed` or `pending`.
    pub state: String,
    pub confirmed_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dead_letter: bool,
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StillActive {
    pub user_id: String,
    pub user: Option<String>,
    pub trust: String,
    pub remote_id: Option<String>,
    pub state: String,
}

/// `GET /directories/{d}/sync/dead-letters`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterList {
    pub directory: String,
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Vec<Value>,
}

/// `POST …/dead-letters/retry` and `…/discard`: which dead letters (none: all).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersRetried {
    pub directory: String,
    pub retried: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersDiscarded {
    pub directory: String,
    pub discarded: u64,
}

/// `POST …/reconcile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileEnvelope {
    pub reconcile: ReconcileReport,
}

/// The plan of a reconciliation and, unless a dry run, what was done
/// (see docs/provisioning.md#reconciliation).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileReport {
    pub trust: String,
    pub dry_run: bool,
    /// What is done with accounts at the target that the directory does not have.
    pub orphan_policy: String,
    pub counts: ReconcileCounts,
    pub actions: Vec<ReconcileAction>,
    pub orphans: Vec<ReconcileOrphan>,
    pub problems: Vec<ReconcileProblem>,
    /// The delivery of the queued changes (not on a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<ReconcileDelivery>,
}

impl ReconcileReport {
    /// A problem, or an action that was not done.
    pub fn incomplete(&self) -> bool {
        !self.problems.is_empty() || self.actions.iter().any(|a| a.outcome.as_deref().is_some_and(|o| o != "done"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileCounts {
    pub directory_users: u64,
    pub directory_groups: u64,
    pub remote_users: u64,
    pub remote_groups: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileAction {
    /// `create`, `update`, `deactivate`, `delete`, `relink`…
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub display: Option<String>,
    pub remote_id: Option<String>,
    /// What differs, attribute by attribute.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// `done` or why not (not on a dry run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileOrphan {
    pub resource_type: String,
    pub remote_id: String,
    pub display: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileProblem {
    pub resource_type: String,
    pub resource_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReconcileDelivery {
    pub fanned_out: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_letters: u64,
    pub circuits_open: u64,
}
