//! The rotation engine: policies, rotations, connectors, trust material, health, and the
//! wrapped-link retrieval endpoint (outside `/api/v1`).

use fedkey_core::RotationKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET …/rotation`: the policy, the running rotation, the last ten, the connectors.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationOverview {
    pub trust: String,
    /// The stored policy row (`null`: none set, the defaults apply).
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub active: Option<Value>,
    /// Rotations, newest first, each with its steps and `ref`.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub connectors: Vec<Value>,
}

/// `GET`/`PUT …/rotation/policy`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationPolicyEnvelope {
    pub trust: String,
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Value>,
}

/// `PUT …/rotation/policy`: the fields to change (`every`, `overlap`, `cron`, …); the
/// others keep their current value or the default. See docs/rotation.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct RotationPolicyPatch(pub serde_json::Map<String, Value>);

/// `POST …/rotation/start` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRotation {
    /// `manual` (default) or `emergency` (old versions revoked at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub kind: Option<RotationKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
}

/// `POST …/rotation/cancel` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRotation {
    /// At most 500 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of start, retry and cancel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotationEnvelope {
    /// The rotation with its steps and `ref`.
    #[schema(value_type = Object)]
    pub rotation: Value,
}

/// `GET …/connectors`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectorList {
    pub trust: String,
    #[schema(value_type = Vec<Object>)]
    pub connectors: Vec<Value>,
}

/// `POST …/connectors`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddConnector {
    pub name: String,
    /// Non-secret settings, with `kind` (see docs/connectors.md).
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The secret part (API token, client secret…), with the same `kind`. Sealed at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectorEnvelope {
    #[schema(value_type = Object)]
    pub connector: Value,
}

/// The path parameters that name a connector.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConnectorPath {
    pub d: String,
    pub t: String,
    pub name: String,
}

/// `GET …/material`: where the peer publishes its keys, and the versions seen.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaterialOverview {
    pub trust: String,
    pub source: Option<MaterialSource>,
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<Value>,
}

/// `PUT …/material/source`: a JWKS URL or an OIDC issuer, and whether its JWTs
/// authenticate (see docs/trust-material.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct MaterialSourceRequest(pub Value);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaterialSourceEnvelope {
    pub source: MaterialSource,
}

/// Where a trust's peer publishes its keys, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaterialSource {
    /// `directory/trust`.
    pub trust: String,
    /// The normalised source settings (URLs, `jwt`…).
    #[schema(value_type = Object)]
    pub config: Value,
    pub updated_at: String,
    pub updated_by: String,
}

/// The answer of approve and reject.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaterialDecision {
    pub trust: String,
    /// The material version approved or rejected.
    #[schema(value_type = Object)]
    pub version: Value,
}

/// `GET /api/v1/health` and `/health/trusts`: the health model `fedkey doctor` prints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    pub generated_at: String,
    /// The worst severity found: `ok`, `info`, `warning` or `critical`.
    pub status: String,
    pub trusts_checked: u64,
    pub findings: Vec<HealthFinding>,
    /// Figures of each active trust.
    #[schema(value_type = Vec<Object>)]
    pub trusts: Vec<Value>,
    /// Each sync target's state.
    #[schema(value_type = Vec<Object>)]
    pub targets: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub connectors: Vec<Value>,
    #[schema(value_type = Object)]
    pub outbox: Value,
    #[schema(value_type = Object)]
    pub audit: Value,
}

/// Something the health check found, with what to do about it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthFinding {
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Stable machine-readable code.
    pub code: String,
    /// `trust`, `sync_target`, `connector` or `audit`.
    pub scope: String,
    /// The object by name: `directory/trust`, `directory/trust/connector`, `audit log`.
    pub object: String,
    /// The trust the object belongs to (empty for the audit log).
    pub trust: String,
    pub message: String,
    pub action: String,
}

/// `GET /unwrap/{token}`: a GET never reveals the key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnwrapNotice {
    pub message: String,
}

/// `POST /unwrap/{token}`: the key, once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnwrappedKey {
    pub trust: String,
    pub version: i64,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UnwrapPath {
    pub token: String,
}
