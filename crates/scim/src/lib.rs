//! SCIM 2.0 protocol with no I/O: the schema registry, the filter language and its
//! evaluator, the PATCH engine, resource normalisation and projection, Bulk request
//! parsing and planning, error bodies and discovery documents.

pub mod bulk;
pub mod discovery;
pub mod error;
pub mod eval;
pub mod filter;
pub mod json;
pub mod patch;
pub mod profile;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};
pub use profile::Profile;

/// Media type of SCIM bodies (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";
