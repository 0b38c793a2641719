//! The rotation engine. One engine runs in every fedkey node; a database lease makes
//! sure only one node drives a given rotation at a time. Each rotation moves through
//! persisted steps — create → set (deliver) → test (validate) → finish (promote) — so a
//! crash or restart resumes where it stopped, and a failed step leaves the current
//! version untouched, retries with backoff and raises an alert.

pub mod alert;
mod drive;
pub mod engine;
pub mod health;
pub mod watch;
pub mod wiring;

/// Whether this build has the test hooks (the `test-hooks` feature): the engine's failpoints.
pub const TEST_HOOKS: bool = cfg!(feature = "test-hooks");

pub use alert::{AlertKind, Alerter};
pub use engine::{Engine, EngineConfig, TickReport};
pub use health::{Finding, HealthReport, Severity};
pub use watch::{SourceConfig, Watchers};
