//! SCIM 2.0 protocol types with no I/O: error bodies and discovery documents.
//!
//! The full schema registry, filter language and PATCH engine arrive with the SCIM
//! service issue; this crate already owns the wire shapes the server emits today.

pub mod discovery;
pub mod error;
pub mod eval;
pub mod filter;
pub mod json;
pub mod patch;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};

/// Media type of SCIM bodies (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";
