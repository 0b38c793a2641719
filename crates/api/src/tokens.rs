//! Admin tokens.

use fedkey_core::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Lifetime, e.g. `90d`; none: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// A token's metadata (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminToken {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub created_at: Option<String>,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// The answer to `POST /tokens`: the metadata and the secret, shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token_info: AdminToken,
    pub token: String,
}

/// `GET /tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<AdminToken>,
}

/// The path parameter that names a token.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    pub name: String,
}
