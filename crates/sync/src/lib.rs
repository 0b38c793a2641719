//! Outbound provisioning: fedkey pushes each directory to the applications it trusts
//! ("outbound trusts") over SCIM 2.0.
//!
//! - [`client::ScimClient`]: the I/O — discovery, create/get/find/list/patch/replace/delete
//!   against one target, with classified [`ClientError`]s;
//! - [`mapping::Mapping`]: which users are in scope and what the target should hold;
//! - [`diff`]: the minimal PATCH from what the target holds to what it should hold.
//!
//! - [`dispatch::Dispatcher`]: fans the store's transactional outbox out to the targets and
//!   delivers it (leases, retries with backoff, circuit breaker, dead letters).
//! - [`reconcile`]: compares a target with the directory and repairs the drift (or only
//!   plans it: dry run); [`schedule`] runs it on the targets' `reconcile_every`.

mod auth;
pub mod client;
pub mod diff;
pub mod discovery;
pub mod dispatch;
pub mod error;
mod http;
pub mod mapping;
pub mod reconcile;
pub mod schedule;
pub mod target;

pub use client::{ListPage, Remote, ResourceKind, ScimClient};
pub use discovery::Capabilities;
pub use dispatch::{Dispatcher, DispatcherConfig, TickReport, backoff};
pub use error::ClientError;
pub use http::{MAX_RESPONSE_BYTES, parse_retry_after};
pub use reconcile::{ReconcileError, ReconcileReport};
pub use schedule::{ScheduledRun, Scheduler, SchedulerConfig};
pub use target::{Auth, TargetConfig};
