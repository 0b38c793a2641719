//! fedkey's domain: directories, trusts, key versions and their lifecycle, roles and
//! scopes, and the injected clock. No HTTP, no SQL.

pub mod clock;
pub mod cron;
pub mod error;
pub mod lifecycle;
pub mod model;
pub mod names;
pub mod rotation;
pub mod scope;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::DomainError;
pub use model::{
    Direction, KeyState, LeakPolicy, PasswordPolicy, PeerKind, PendingAuth, Role, RotationKind, RotationStep, TrustRef,
    TrustStatus, Validation,
};
pub use scope::{Scope, ScopeSet};
