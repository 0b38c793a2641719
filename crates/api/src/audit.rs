//! The audit log: pages, verification, export, sinks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// The filter of `GET /audit` (and, with its own extras, of the export).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    /// Records after this sequence number (the previous page's `next_after`).
    pub after: Option<i64>,
    /// 1 to 1000, default 100.
    pub limit: Option<i64>,
}

/// `GET /audit`: a page of records, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Where the next page starts; `null` on the last page.
    pub next_after: Option<i64>,
}

/// `GET /audit/verify`: the chain checked from the first record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AuditVerification {
    Intact(AuditIntact),
    Broken(AuditBroken),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditIntact {
    /// Always `true`.
    pub ok: bool,
    pub records: i64,
    pub checkpoints: u64,
    /// Hex hash of the last record.
    pub head: String,
    /// The installation id that signs the checkpoints.
    pub origin: String,
    /// Hex Ed25519 public key of the checkpoints.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditBroken {
    /// Always `false`.
    pub ok: bool,
    /// The first record that does not verify.
    pub seq: i64,
    pub error: String,
}

/// `GET /audit/export`: JSON lines or CSV, a page or a follow stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditExportQuery {
    /// `jsonl` (default) or `csv`.
    pub format: Option<String>,
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<i64>,
    /// Start this many records before the head.
    pub tail: Option<i64>,
    /// Keep the response open and stream new records.
    pub follow: Option<bool>,
}

/// `GET /audit/sinks`: the log's head and each sink's cursor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditSinks {
    pub head: i64,
    #[schema(value_type = Vec<Object>)]
    pub sinks: Vec<Value>,
}

/// One record of the audit log (see docs/audit.md), as `GET /audit` and the JSON-lines
/// export send it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub ts: String,
    /// `ts` in microseconds since the Unix epoch.
    pub ts_us: i64,
    pub actor: String,
    pub action: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub directory: Option<String>,
    pub trust: Option<String>,
    pub key_version: Option<i64>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    /// Hex SHA-256 of the previous record.
    pub prev_hash: String,
    /// Hex SHA-256 of this record.
    pub hash: String,
    /// What the action was about, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// The details as stored, when they are not JSON in canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_text: Option<String>,
}
