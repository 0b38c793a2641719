use thiserror::Error;

/// Violations of domain rules. Every variant is safe to show to a caller: none
/// carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("unknown scope {0:?}")]
    UnknownScope(String),
    #[error("scope {0:?} is not allowed for {1} trusts")]
    ScopeNotAllowed(String, &'static str),
    #[error("unknown {kind} {value:?}; expected one of: {expected}")]
    UnknownVariant { kind: &'static str, value: String, expected: &'static str },
    #[error("invalid trust reference {0:?}: expected DIRECTORY/TRUST")]
    InvalidTrustRef(String),
    #[error("key version {version} is {state} and cannot be {action}")]
    InvalidTransition { version: i64, state: &'static str, action: &'static str },
}
