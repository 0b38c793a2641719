//! Errors: every failed admin request answers `{"error": {"code", "message"}}`. The code
//! is stable and machine-readable; the message is for people and may change.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code the admin API sends. The wire form is the snake_case name
/// (`invalid_value`); a code, once published, keeps its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request could not be read: malformed JSON, unknown field, bad query string.
    InvalidRequest,
    /// Well-formed input that names something invalid (a bad name, scope, duration…).
    InvalidValue,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is over the endpoint's size limit.
    PayloadTooLarge,
    /// Missing, malformed, unknown, expired or revoked token.
    Unauthorized,
    /// The token's role may not do this.
    Forbidden,
    /// No such endpoint, directory, trust, key version, link…
    NotFound,
    /// The endpoint exists but not with this method.
    MethodNotAllowed,
    /// It already exists.
    Conflict,
    /// Not possible in the current state (e.g. resuming an active trust).
    InvalidState,
    /// The directory still holds trusts, users, groups or targets (retry with `force`).
    DirectoryNotEmpty,
    /// The version is the trust's last usable key (retry with `force`).
    LastUsableKey,
    /// An `If-Match`-style precondition did not hold.
    PreconditionFailed,
    /// A wrapped link past its expiry.
    LinkExpired,
    /// A wrapped link that was already used.
    LinkUsed,
    /// Too many requests from this source; retry after `Retry-After`.
    RateLimited,
    /// The provisioning target failed while reconciling.
    TargetFailed,
    /// A subsystem this request needs is not running (watchers, provisioning).
    Unavailable,
    /// The database is unavailable; nothing was done.
    DatabaseUnavailable,
    /// The audit log could not record the request, so it was not performed.
    AuditUnavailable,
    /// An internal error; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidValue,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::InvalidState,
        ErrorCode::DirectoryNotEmpty,
        ErrorCode::LastUsableKey,
        ErrorCode::PreconditionFailed,
        ErrorCode::LinkExpired,
        ErrorCode::LinkUsed,
        ErrorCode::RateLimited,
        ErrorCode::TargetFailed,
        ErrorCode::Unavailable,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::AuditUnavailable,
        ErrorCode::Internal,
    ];

    /// The wire form, e.g. `"invalid_value"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::DirectoryNotEmpty => "directory_not_empty",
            ErrorCode::LastUsableKey => "last_usable_key",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::LinkExpired => "link_expired",
            ErrorCode::LinkUsed => "link_used",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TargetFailed => "target_failed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of a wire string, `None` for a code this build does not know.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Kept as a string when reading, so a client still shows the message of a code
    /// that a newer server added.
    #[schema(value_type = ErrorCode)]
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_the_serde_form_and_round_trips() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::json!(c.as_str())), "{c:?}");
            assert_eq!(ErrorCode::from_wire(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
    }
}
