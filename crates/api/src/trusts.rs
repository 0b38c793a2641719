//! Trusts: create, list, show, delete, suspend/resume, policy, scopes, leak settings.

use fedkey_core::{Direction, LeakPolicy, PeerKind, PendingAuth, TrustStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keys::KeyVersion;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Trust {
    pub directory: String,
    pub name: String,
    /// `directory/name`.
    #[serde(rename = "ref")]
    pub trust_ref: String,
    /// `inbound` or `outbound`.
    #[schema(value_type = String)]
    pub direction: Direction,
    #[schema(value_type = String)]
    pub peer_kind: PeerKind,
    /// `active` or `suspended`.
    #[schema(value_type = String)]
    pub status: TrustStatus,
    pub scopes: Vec<String>,
    pub description: Option<String>,
    pub created_at: Option<String>,
    pub created_by: String,
    pub updated_at: Option<String>,
    pub privileged_groups: Vec<String>,
    pub allowed_sources: Vec<String>,
    /// Requests a minute; 0: no limit.
    pub rate_limit: i64,
    /// `report`, `revoke` or `rotate`.
    #[schema(value_type = String)]
    pub leak_policy: LeakPolicy,
    /// `staged` or `delivered`.
    #[schema(value_type = String)]
    pub pending_auth: PendingAuth,
}

/// `POST /directories/{d}/trusts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrust {
    pub name: String,
    #[schema(value_type = String)]
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub peer_kind: Option<PeerKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The app-issued key of an outbound trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub privileged_groups: Vec<String>,
    #[serde(default)]
    pub allowed_sources: Vec<String>,
    #[serde(default)]
    pub rate_limit: i64,
}

/// The answer to a trust's creation: its first key version, and for an inbound trust
/// the key itself, shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustCreated {
    pub trust: Trust,
    pub key_version: KeyVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `GET /trusts`, `GET /directories/{d}/trusts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustList {
    pub trusts: Vec<Trust>,
}

/// `GET /directories/{d}/trusts/{t}`: the trust and its key versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustDetail {
    pub trust: Trust,
    pub keys: Vec<KeyVersion>,
}

/// The answer of the changes to a trust (suspend, resume, policy, scopes, leak settings).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrustEnvelope {
    pub trust: Trust,
}

/// `PUT …/policy`: replaces the whole policy; omitted fields are cleared.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyRequest {
    #[serde(default)]
    pub privileged_groups: Vec<String>,
    #[serde(default)]
    pub allowed_sources: Vec<String>,
    #[serde(default)]
    pub rate_limit: i64,
}

/// `PUT …/scopes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopesRequest {
    pub scopes: Vec<String>,
}

/// `PUT …/leak-settings`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakSettingsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub leak_policy: Option<LeakPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub pending_auth: Option<PendingAuth>,
}
