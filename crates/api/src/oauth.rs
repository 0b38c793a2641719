//! A trust's OAuth client settings: `/directories/{d}/trusts/{t}/oauth`. The trust is an
//! OAuth client of its directory's authorization server (docs/oauth.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The body of `PUT …/oauth`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OauthClientSettings {
    /// A JWKS of public keys that `private_key_jwt` assertions are verified against;
    /// `null` or absent: the trust's watched IdP material.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// Access-token lifetime, e.g. `10m` (1 min to 1 h); absent: the default.
    #[serde(default)]
    pub token_ttl: Option<String>,
}

/// A trust's OAuth client settings and the endpoints it uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OauthClient {
    /// The trust's name.
    pub client_id: String,
    pub issuer: String,
    pub token_endpoint: String,
    /// The registered JWKS, or `null`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// `registered` (the JWKS above) or `material` (the watched IdP JWKS).
    pub assertion_keys: String,
    pub token_ttl_secs: i64,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}
