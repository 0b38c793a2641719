//! The one error type of the crate, classified the way the rotation engine decides what to do
//! next (retry now, retry later, alert a human), and scrubbed of secrets.

use std::time::Duration;

use crate::kind::ConnectorKind;

/// Peer-provided text is cut to this many characters: enough to diagnose, too little to
/// turn an error message into a data channel.
pub const PEER_TEXT_LIMIT: usize = fedkey_egress::DEFAULT_LIMIT;

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{kind} connector: the peer rejected fedkey's credentials (HTTP 401){}", suffix(detail))]
    Unauthorized { kind: ConnectorKind, detail: String },

    #[error("{kind} connector: fedkey's credentials lack permission (HTTP 403){}", suffix(detail))]
    Forbidden { kind: ConnectorKind, detail: String },

    #[error("{kind} connector: rate limited (HTTP 429){}{}", retry_text(*retry_after), suffix(detail))]
    RateLimited { kind: ConnectorKind, retry_after: Option<Duration>, detail: String },

    /// 5xx. Graph also sends `Retry-After` with 503 when it sheds load, so it is kept here too.
    #[error("{kind} connector: the peer is unavailable (HTTP {status}){}{}", retry_text(*retry_after), suffix(detail))]
    Unavailable { kind: ConnectorKind, status: u16, retry_after: Option<Duration>, detail: String },

    #[error("{kind} connector: no answer within {timeout:?} (no HTTP status)")]
    Timeout { kind: ConnectorKind, timeout: Duration },

    #[error("{kind} connector: network error, no HTTP status: {detail}")]
    Network { kind: ConnectorKind, detail: String },

    /// The egress policy refused the URL, an address or a redirect; nothing was sent there.
    #[error("{kind} connector: refused by the egress policy: {detail}")]
    Refused { kind: ConnectorKind, detail: String },

    /// The peer's answer is larger than a connector reads.
    #[error("{kind} connector: the response body exceeds the limit of {limit} bytes")]
    TooLarge { kind: ConnectorKind, limit: usize },

    #[error("{kind} connector: the peer refused the request (HTTP {status}){}{}", code_text(code), suffix(message))]
    Rejected { kind: ConnectorKind, status: u16, code: Option<String>, message: String },

    #[error(
        "{kind} connector: check-and-set conflict, someone else wrote in between (HTTP {status}){}",
        suffix(detail)
    )]
    Conflict { kind: ConnectorKind, status: u16, detail: String },

    #[error("{kind} connector: validation failed: {detail}")]
    ValidationFailed { kind: ConnectorKind, detail: String },

    #[error("{kind} connector: unexpected response (HTTP {status}): {detail}")]
    Protocol { kind: ConnectorKind, status: u16, detail: String },

    #[error("{kind} connector: file system error: {detail}")]
    Io { kind: ConnectorKind, detail: String, retryable: bool },

    #[error("{kind} connector: invalid configuration: {detail}")]
    Config { kind: ConnectorKind, detail: String },
}

fn suffix(s: &str) -> String {
    if s.is_empty() { String::new() } else { format!(": {s}") }
}

fn code_text(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default()
}

fn retry_text(d: Option<Duration>) -> String {
    d.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default()
}

impl ConnectorError {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            ConnectorError::Unauthorized { kind, .. }
            | ConnectorError::Forbidden { kind, .. }
            | ConnectorError::RateLimited { kind, .. }
            | ConnectorError::Unavailable { kind, .. }
            | ConnectorError::Timeout { kind, .. }
            | ConnectorError::Network { kind, .. }
            | ConnectorError::Refused { kind, .. }
            | ConnectorError::TooLarge { kind, .. }
            | ConnectorError::Rejected { kind, .. }
            | ConnectorError::Conflict { kind, .. }
            | ConnectorError::ValidationFailed { kind, .. }
            | ConnectorError::Protocol { kind, .. }
            | ConnectorError::Io { kind, .. }
            | ConnectorError::Config { kind, .. } => *kind,
        }
    }

    /// Whether the same call may succeed later without a human changing anything. Validation
    /// failures are not: a peer that stores something else will not heal by itself (the engine
    /// handles propagation delay by scheduling its own test-step retries).
    pub fn retryable(&self) -> bool {
        match self {
            ConnectorError::RateLimited { .. }
            | ConnectorError::Unavailable { .. }
            | ConnectorError::Timeout { .. }
            | ConnectorError::Network { .. }
            | ConnectorError::Conflict { .. } => true,
            ConnectorError::Io { retryable, .. } => *retryable,
            ConnectorError::Unauthorized { .. }
            | ConnectorError::Forbidden { .. }
            | ConnectorError::Rejected { .. }
            | ConnectorError::ValidationFailed { .. }
            | ConnectorError::Protocol { .. }
            | ConnectorError::Refused { .. }
            | ConnectorError::TooLarge { .. }
            | ConnectorError::Config { .. } => false,
        }
    }

    /// The delay the peer asked for, if it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::RateLimited { retry_after, .. } | ConnectorError::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The HTTP status behind the error, when there was a response.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ConnectorError::Unauthorized { .. } => Some(401),
            ConnectorError::Forbidden { .. } => Some(403),
            ConnectorError::RateLimited { .. } => Some(429),
            ConnectorError::Unavailable { status, .. }
            | ConnectorError::Rejected { status, .. }
            | ConnectorError::Conflict { status, .. }
            | ConnectorError::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn config(kind: ConnectorKind, detail: impl Into<String>) -> Self {
        ConnectorError::Config { kind, detail: detail.into() }
    }
}

pub(crate) use fedkey_egress::Redactor;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_kind_and_status() {
        let e = ConnectorError::RateLimited {
            kind: ConnectorKind::Okta,
            retry_after: Some(Duration::from_secs(7)),
            detail: "E0000047".into(),
        };
        let msg = e.to_string();
        assert!(msg.starts_with("okta connector"), "{msg}");
        assert!(msg.contains("429") && msg.contains("7s"), "{msg}");
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = ConnectorError::Forbidden { kind: ConnectorKind::Entra, detail: String::new() };
        assert!(!e.retryable());
        assert_eq!(e.http_status(), Some(403));
    }
}
