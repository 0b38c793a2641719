//! How a call to a target failed, classified for the dispatcher: what to retry, when, and
//! what needs a human. Messages carry the target's own `detail` (clipped) but never a
//! credential: every text that may echo one passes through the redactor.

use std::time::Duration;

/// Longest `detail` kept from a target's error body, in characters.
const MAX_DETAIL_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// 409: usually `scimType: uniqueness` (the resource exists already).
    #[error("conflict at the target (409{}): {detail}", type_suffix(scim_type))]
    Conflict { scim_type: Option<String>, detail: String },
    /// 404: the resource (or the endpoint) does not exist.
    #[error("not found at the target (404): {detail}")]
    NotFound { detail: String },
    /// 412: the `If-Match` version is stale; read the resource again.
    #[error("precondition failed at the target (412): {detail}")]
    PreconditionFailed { detail: String },
    /// 429, with the `Retry-After` delay when the target gave a readable one.
    #[error("rate limited by the target (429){}", delay_suffix(retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx other than 501; 503 may carry `Retry-After` too.
    #[error("the target is unavailable ({status}){}: {detail}", delay_suffix(retry_after))]
    Unavailable { status: u16, retry_after: Option<Duration>, detail: String },
    /// No complete answer within the configured timeout.
    #[error("the target did not answer in time")]
    Timeout,
    /// Connection refused or reset, DNS, TLS.
    #[error("network error talking to the target: {message}")]
    Network { message: String },
    /// The egress policy refused the URL, an address or a redirect: nothing was sent there.
    #[error("refused by the egress policy: {message}")]
    Refused { message: String },
    /// The answer is larger than [`crate::MAX_RESPONSE_BYTES`]; it was not parsed.
    #[error("the target's answer exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// 401: the key (or OAuth2 client) is not accepted.
    #[error("the target rejected our credentials (401): {detail}")]
    Unauthorized { detail: String },
    /// 403: the credentials lack a permission.
    #[error("the target refused the operation (403): {detail}")]
    Forbidden { detail: String },
    /// Any other 4xx (400 invalidValue, 400 invalidFilter, 405, 413, …) and 501.
    #[error("the target rejected the request ({status}{}): {detail}", type_suffix(scim_type))]
    Rejected { status: u16, scim_type: Option<String>, detail: String },
    /// The answer could not be understood: not JSON, a wrong shape, too large, a 3xx.
    #[error("unexpected answer from the target: {message}")]
    Protocol { message: String },
    /// A lookup that must find at most one resource found several.
    #[error("{count} resources at the target match {filter}")]
    Ambiguous { filter: String, count: usize },
    /// The target configuration itself is unusable (bad base URL, bad header value).
    #[error("invalid target configuration: {message}")]
    Config { message: String },
}

fn type_suffix(t: &Option<String>) -> String {
    t.as_deref().map(|t| format!(", {t}")).unwrap_or_default()
}

fn delay_suffix(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default()
}

impl ClientError {
    /// Whether the same request may succeed later without anyone changing anything.
    /// Conflicts, 404s and 412s are not "retryable" here: the dispatcher resolves them
    /// (adopt the existing resource, recreate, re-read) rather than repeating the call.
    pub fn retryable(&self) -> bool {
        // A 412 means the account changed while we worked on it: the next attempt reads
        // it again.
        matches!(
            self,
            ClientError::RateLimited { .. }
                | ClientError::PreconditionFailed { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Timeout
                | ClientError::Network { .. }
        )
    }

    /// The delay the target asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::RateLimited { retry_after } | ClientError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status behind the error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Conflict { .. } => Some(409),
            ClientError::NotFound { .. } => Some(404),
            ClientError::PreconditionFailed { .. } => Some(412),
            ClientError::RateLimited { .. } => Some(429),
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Forbidden { .. } => Some(403),
            ClientError::Unavailable { status, .. } | ClientError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Classifies an error status. `detail` and `scim_type` come from the SCIM Error body
    /// (already scrubbed), `retry_after` from the header.
    pub(crate) fn from_status(
        status: u16,
        scim_type: Option<String>,
        detail: String,
        retry_after: Option<Duration>,
    ) -> ClientError {
        match status {
            401 => ClientError::Unauthorized { detail },
            403 => ClientError::Forbidden { detail },
            404 => ClientError::NotFound { detail },
            409 => ClientError::Conflict { scim_type, detail },
            412 => ClientError::PreconditionFailed { detail },
            429 => ClientError::RateLimited { retry_after },
            // Not Implemented is an answer, not an outage: retrying cannot help.
            501 => ClientError::Rejected { status, scim_type, detail },
            500..=599 => ClientError::Unavailable { status, retry_after, detail },
            400..=499 => ClientError::Rejected { status, scim_type, detail },
            _ => ClientError::Protocol { message: format!("unexpected HTTP status {status}") },
        }
    }
}

/// Removes credentials from text that may echo them (a target's error detail, a transport
/// error) and clips it to [`MAX_DETAIL_CHARS`].
pub(crate) type Scrubber<'a> = fedkey_egress::Redactor<'a>;

/// A redactor with the clip length of target errors.
pub(crate) fn scrubber<'a>() -> Scrubber<'a> {
    fedkey_egress::Redactor::new().limit(MAX_DETAIL_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_retryability() {
        let e = ClientError::from_status(409, Some("uniqueness".into()), "exists".into(), None);
        assert_eq!(e, ClientError::Conflict { scim_type: Some("uniqueness".into()), detail: "exists".into() });
        assert!(!e.retryable());
        assert_eq!(e.to_string(), "conflict at the target (409, uniqueness): exists");
        let e = ClientError::from_status(429, None, String::new(), Some(Duration::from_secs(7)));
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = ClientError::from_status(503, None, "down".into(), Some(Duration::from_secs(3)));
        assert!(e.retryable() && e.retry_after() == Some(Duration::from_secs(3)));
        assert!(!ClientError::from_status(501, None, String::new(), None).retryable());
        let e = ClientError::from_status(400, Some("invalidValue".into()), "bad".into(), None);
        assert!(matches!(e, ClientError::Rejected { status: 400, .. }) && !e.retryable());
        assert_eq!(ClientError::from_status(422, None, String::new(), None).status(), Some(422));
        assert!(matches!(ClientError::from_status(302, None, String::new(), None), ClientError::Protocol { .. }));
        assert!(ClientError::Timeout.retryable() && ClientError::Timeout.retry_after().is_none());
        assert!(!ClientError::Unauthorized { detail: String::new() }.retryable());
    }

    #[test]
    fn scrubber_redacts_and_clips() {
        let s = scrubber().with("fk_secret_key").with("ab");
        assert_eq!(s.clean("bad token fk_secret_key here, ab"), "bad token [redacted] here, ab");
        let long = "x".repeat(2000);
        assert_eq!(s.clean(&long).chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
