//! How an outbound call failed, classified so that callers decide between "fix the
//! configuration", "retry later" and "the peer misbehaves". Texts never carry a URL's
//! credentials or query, nor a secret (callers redact peer text with [`crate::Redactor`]).

use std::time::Duration;

use crate::policy::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The URL, a resolved address or a redirect is not allowed; nothing was sent there.
    #[error("refused by the egress policy: {0}")]
    Refused(String),
    /// No complete answer within the call's timeout.
    #[error("no answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The response body is larger than the call allows; it was not read further.
    #[error("the response body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Connection refused or reset, DNS, TLS.
    #[error("network error: {0}")]
    Network(String),
    /// The HTTP client could not be built (a bad root certificate).
    #[error("the HTTP client could not be set up: {0}")]
    Setup(String),
}

impl EgressError {
    /// Whether the same call may succeed later without anyone changing the configuration.
    pub fn retryable(&self) -> bool {
        matches!(self, EgressError::Timeout(_) | EgressError::Network(_))
    }

    /// Classifies a reqwest error: a [`Refusal`] anywhere in its causes (from the resolver or
    /// the redirect policy) is a refusal, then timeouts, then everything else is network.
    pub(crate) fn from_reqwest(e: reqwest::Error, timeout: Duration) -> EgressError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<Refusal>() {
                return EgressError::Refused(r.0.clone());
            }
            source = s.source();
        }
        if e.is_timeout() {
            return EgressError::Timeout(timeout);
        }
        EgressError::Network(chain(e))
    }
}

impl From<Refusal> for EgressError {
    fn from(r: Refusal) -> Self {
        EgressError::Refused(r.0)
    }
}

/// "error sending request: client error (Connect): tcp connect error: Connection refused",
/// without the URL reqwest would add.
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
