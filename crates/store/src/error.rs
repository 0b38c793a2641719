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
    /// A request refused to protect the operator from its consequences; `code` is the
    /// stable reason (e.g. `last_usable_key`, `directory_not_empty`), and a flag such as
    /// `force` overrides it.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A version precondition (`If-Match`) did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A request the domain rules refuse (e.g. supplying a key for an inbound trust).
    #[error("{0}")]
    Invalid(String),
    /// A trust policy the rules refuse (a 400, like `Invalid`), with the part that failed.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
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
    /// A migration was applied to this database with other text than this binary carries:
    /// the schema is not the one the binary was built for, so it does not start on it.
    #[error(
        "migration {version:04} applied to this database differs from this binary's (recorded checksum {recorded}, \
         this binary's {expected}): the database was migrated by another build of fedkey. \
         Run the build that migrated it, or restore a backup taken before; do not edit schema_migrations"
    )]
    MigrationChanged { version: i64, recorded: String, expected: String },
    /// A migration source this binary carries cannot be rendered (a build defect).
    #[error(transparent)]
    MigrationSource(#[from] crate::migrate::MigrationSourceError),
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

    /// The database could not take the request now, for a reason of its own rather than
    /// the request's: the connection was lost, no connection came within the connect
    /// timeout, SQLite stayed locked past `busy_timeout`, the disk is full, a statement
    /// timed out, or the server is short of resources. Nothing was performed, and the
    /// same request may succeed later (a 503, not a 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => database_unavailable(e),
            StoreError::AuditUnavailable(_) => true,
            _ => false,
        }
    }

    /// PostgreSQL aborted the transaction to break a deadlock (or a serialization
    /// conflict) with another one: running it again is safe and normally succeeds.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("40P01" | "40001")))
    }
}

fn database_unavailable(e: &sqlx::Error) -> bool {
    if crate::db::is_connection_lost(e) || matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) {
        return true;
    }
    let sqlx::Error::Database(d) = e else { return false };
    let Some(code) = d.code() else { return false };
    match code.len() {
        // PostgreSQL's SQLSTATE: insufficient resources (disk full, out of memory, too many
        // connections), query canceled (statement_timeout), lock not available.
        5 => code.starts_with("53") || code == "57014" || code == "55P03",
        // SQLite's extended result code; the primary code is its low byte: BUSY, LOCKED,
        // IOERR, FULL.
        _ => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13)),
    }
}

impl From<fedkey_crypto::EnvelopeError> for StoreError {
    fn from(e: fedkey_crypto::EnvelopeError) -> Self {
        StoreError::Crypto(e.to_string())
    }
}
