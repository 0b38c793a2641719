//! The admin API contract (`/api/v1`): the request and response bodies of every endpoint
//! and the error codes, shared by the server (which sends them) and the CLI (which reads
//! them). The OpenAPI document (`GET /api/v1/openapi.json`, `docs/openapi.json`) is
//! generated from these types, so the three cannot drift apart.
//!
//! Conventions of the wire format, kept from the first version of the API:
//! - times are RFC 3339 strings (`2026-11-28T00:00:00Z`), `null` when unset;
//! - a trust is named `directory/trust` where one string names it (`"trust": "acme/crm"`);
//! - objects the server stores as documents (rotation policies, connector specs, health
//!   reports…) are passed through as JSON objects.

pub mod audit;
pub mod directories;
pub mod error;
pub mod events;
pub mod health;
pub mod keys;
pub mod leaks;
pub mod oauth;
pub mod rotation;
pub mod sync;
pub mod tokens;
pub mod trusts;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};

/// The path parameters that name a directory.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DirectoryPath {
    /// Directory name.
    pub d: String,
}

/// The path parameters that name a trust.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TrustPath {
    /// Directory name.
    pub d: String,
    /// Trust name.
    pub t: String,
}
