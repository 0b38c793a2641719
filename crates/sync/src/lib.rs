//! Outbound provisioning: fedkey pushes each directory to the applications it trusts
//! ("outbound trusts") over SCIM 2.0.
//!
//! - [`client::ScimClient`]: the I/O — discovery, create/get/find/list/patch/replace/delete
//!   against one target, with classified [`ClientError`]s;
//! - [`mapping::Mapping`]: which users are in scope and what the target should hold;
//! - [`diff`]: the minimal PATCH from what the target holds to what it should hold.
//!
//! The outbox dispatcher (retries, leases, reconciliation) builds on these.

mod auth;
pub mod client;
pub mod diff;
pub mod discovery;
pub mod error;
mod http;
pub mod mapping;
pub mod target;

pub use client::{ListPage, Remote, ResourceKind, ScimClient};
pub use discovery::Capabilities;
pub use error::ClientError;
pub use http::{MAX_RESPONSE_BYTES, parse_retry_after};
pub use target::{Auth, TargetConfig};
