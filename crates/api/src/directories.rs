//! Directories: `/directories`, `/directories/{d}` and the bulk import.

use fedkey_core::PasswordPolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `POST /directories`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDirectory {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Directory {
    pub name: String,
    pub id: String,
    pub created_at: Option<String>,
    pub created_by: String,
    /// What the SCIM service does with a `password` a client sends: `fingerprint` (keep
    /// only a keyed fingerprint; the default), `ignore` (drop it) or `refuse` (400).
    #[schema(value_type = String)]
    pub password_policy: PasswordPolicy,
}

/// `PUT /directories/{d}/settings`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySettings {
    /// `fingerprint`, `ignore` or `refuse`.
    #[schema(value_type = String)]
    pub password_policy: PasswordPolicy,
}

/// `GET /directories`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectoryList {
    pub directories: Vec<Directory>,
}

/// What a directory holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DirectoryContents {
    pub trusts: i64,
    pub users: i64,
    pub groups: i64,
    pub targets: i64,
}

/// `GET /directories/{d}`: the directory and the counts of what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectoryDetail {
    #[serde(flatten)]
    pub directory: Directory,
    #[serde(flatten)]
    pub contents: DirectoryContents,
}

/// `DELETE /directories/{d}`: what was deleted with it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectoryDeleted {
    pub directory: String,
    pub deleted: DirectoryContents,
}

/// `?force=true`: what a refusal that protects the operator (a 409 with its own code)
/// lets through.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    #[serde(default)]
    pub force: bool,
}

/// `POST /directories/{d}/import`: SCIM users and groups, one row per resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub rows: Vec<ImportRow>,
    /// Decide every row (created, updated, unchanged, error) without writing.
    #[serde(default)]
    pub dry_run: bool,
    /// Dry run only: `userName`s and `externalId`s of users the same dry run would create,
    /// which group members may name although they are not stored.
    #[serde(default)]
    pub planned: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The row's line in the caller's file, echoed in its result.
    pub line: u64,
    /// `User` or `Group`; otherwise taken from the resource's `schemas`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The SCIM resource.
    #[schema(value_type = Object)]
    pub resource: Value,
}

/// The answer to an import: counts and one result per row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportSummary {
    pub dry_run: bool,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub failed: u64,
    pub results: Vec<ImportRowResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportRowResult {
    pub line: u64,
    /// `created`, `updated`, `unchanged` or `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
