//! `/healthz` and `/readyz`, outside `/api/v1` and without authentication.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub database: String,
    /// `ok` or `not writable`.
    pub audit: String,
}
