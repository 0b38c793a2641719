//! Persistence for fedkey: one store over SQLite (embedded default) and PostgreSQL
//! (multi-node), the domain operations that must commit together with their audit
//! records, the group-committing audit writer and the key authenticator.
//!
//! SQL is written once, with `$N` placeholders that both backends accept; the few
//! real dialect differences live in [`db::Backend`].

pub mod audit;
pub mod audit_sinks;
pub mod auth;
pub mod auth_failures;
pub mod db;
pub mod error;
pub mod install;
pub mod invalidate;
pub mod keyfile;
mod migrate;
pub mod model;
pub mod oauth;
pub mod ops;
pub mod policy;
mod ready;
pub mod scim;
pub mod scim_sql;

pub use db::{Backend, Db, DbOptions, Readiness};
pub use error::StoreError;
pub use migrate::{MigrationSourceError, SourceProblem, checksums as migration_checksums};
pub use model::*;
pub use ops::{Actor, ConnectorRow, DeliveryRow, PolicyRow, Rotation, Store};
pub use policy::TrustPolicy;
