//! Key versions: list, rotate, revoke.

use fedkey_core::KeyState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyVersion {
    pub version: i64,
    /// `pending`, `current`, `previous`, `expired` or `revoked`, at the time of the answer.
    #[schema(value_type = String)]
    pub state: KeyState,
    pub scopes: Vec<String>,
    pub created_at: Option<String>,
    pub created_by: String,
    pub activated_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// `GET …/keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// `directory/trust`.
    pub trust: String,
    pub keys: Vec<KeyVersion>,
}

/// `POST …/keys/rotate` (the body is optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old version keeps working; default `24h`, `0s` for an emergency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    /// The app-issued key of an outbound trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Return a single-use retrieval link valid this long instead of the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<String>,
}

/// The answer to a rotation: the new version, and its key (inbound trusts) either in
/// `key` or behind `wrapped_link`. The key is shown exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotateKeyResponse {
    pub trust: String,
    pub key_version: KeyVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_link: Option<WrappedLink>,
}

/// A single-use link that reveals a key once (`POST` to it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WrappedLink {
    pub url: String,
    pub expires_at: String,
    pub single_use: bool,
}

/// `POST …/keys/{v}/revoke`; an expired version is left as it is (`unchanged`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeKeyResponse {
    pub trust: String,
    pub key_version: KeyVersion,
    pub unchanged: bool,
}

/// The path parameters that name a key version.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyVersionPath {
    /// Directory name.
    pub d: String,
    /// Trust name.
    pub t: String,
    /// Version number (1, 2, …).
    pub v: String,
}
