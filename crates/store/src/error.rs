use fedkey_core::DomainError;
use thiserror::Error;

/// Errors of the store layer. `Display` is safe for callers except for `Database`,
/// whose text the server logs and replaces with a generic message.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The request is valid but the object is not in a state that allows it.
    #[error("{0}")]
    InvalidState(String),
    /// A version precondition (`If-Match`) did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A request the domain rules refuse (e.g. supplying a key for an inbound trust).
    #[error("{0}")]
    Invalid(String),
    #[error("the audit log could not record this operation, so it was not performed")]
    AuditUnavailable(#[source] Box<StoreError>),
    #[error("configuration: {0}")]
    Config(String),
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("corrupt data in {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Unique-constraint violations become conflicts named by the caller.
    pub(crate) fn conflict_or(self, what: impl Into<String>) -> StoreError {
        match &self {
            StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                StoreError::Conflict(what.into())
            }
            _ => self,
        }
    }

    /// PostgreSQL aborted the transaction to break a deadlock (or a serialization
    /// conflict) with another one: running it again is safe and normally succeeds.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("40P01" | "40001")))
    }
}

impl From<fedkey_crypto::EnvelopeError> for StoreError {
    fn from(e: fedkey_crypto::EnvelopeError) -> Self {
        StoreError::Crypto(e.to_string())
    }
}
