//! Rows as the rest of fedkey sees them. None of these carries secret material.

use fedkey_core::{Direction, KeyState, PasswordPolicy, PeerKind, Role, ScopeSet, Timestamp, TrustStatus, lifecycle};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Directory {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub created_by: String,
    /// What the directory's SCIM service does with a `password` a client sends.
    pub password_policy: PasswordPolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trust {
    pub id: String,
    pub directory_id: String,
    pub directory: String,
    pub name: String,
    pub direction: Direction,
    pub peer_kind: PeerKind,
    pub status: TrustStatus,
    #[serde(serialize_with = "ser_scopes")]
    pub scopes: ScopeSet,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub updated_at: Timestamp,
    /// Privileged groups, source allow-list and rate limit.
    pub policy: crate::TrustPolicy,
    /// What a leak report of one of its keys does; `None` is [`LeakPolicy::default_for`] its
    /// direction (see [`Trust::leak_policy`]).
    pub leak_policy: Option<fedkey_core::LeakPolicy>,
    /// When a pending version starts to authenticate.
    pub pending_auth: fedkey_core::PendingAuth,
}

impl Trust {
    /// The leak policy in effect: the one set, or the default for the trust's direction.
    pub fn leak_policy(&self) -> fedkey_core::LeakPolicy {
        self.leak_policy.unwrap_or_else(|| fedkey_core::LeakPolicy::default_for(self.direction))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyVersion {
    pub trust_id: String,
    pub version: i64,
    /// The stored state; see [`KeyVersion::state_at`] for the state at a given time.
    pub state: KeyState,
    #[serde(serialize_with = "ser_scopes")]
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
    pub created_by: String,
    pub activated_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl KeyVersion {
    pub fn state_at(&self, now: Timestamp) -> KeyState {
        lifecycle::effective_state(self.state, self.expires_at, now)
    }

    pub fn view(&self) -> lifecycle::VersionView {
        lifecycle::VersionView { version: self.version, state: self.state, expires_at: self.expires_at }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub created_by: String,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

fn ser_scopes<S: serde::Serializer>(s: &ScopeSet, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_seq(s.to_vec())
}
