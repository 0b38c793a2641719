//! HTTP details shared by the SCIM client and the token request: bounded body reads and
//! error classification (through [`fedkey_egress`]), and SCIM Error bodies.

use std::time::Duration;

use fedkey_egress::EgressError;
use serde_json::Value;

use crate::error::{ClientError, Scrubber};

/// Largest response body read from a target. A SCIM page of 100 users is far below it;
/// anything larger is a misbehaving peer, not data to buffer.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// `Retry-After`: the one parser, in [`fedkey_egress::retry_after`].
pub use fedkey_egress::retry_after::parse as parse_retry_after;

pub(crate) fn egress_error(e: EgressError, scrub: &Scrubber<'_>) -> ClientError {
    match e {
        EgressError::Timeout(_) => ClientError::Timeout,
        EgressError::Refused(message) => ClientError::Refused { message: scrub.clean(&message) },
        EgressError::TooLarge(limit) => ClientError::TooLarge { limit },
        EgressError::Network(message) => ClientError::Network { message: scrub.clean(&message) },
        EgressError::Setup(message) => ClientError::Config { message: scrub.clean(&message) },
    }
}

/// Reads the whole body, refusing more than [`MAX_RESPONSE_BYTES`].
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    timeout: Duration,
    scrub: &Scrubber<'_>,
) -> Result<Vec<u8>, ClientError> {
    fedkey_egress::read_capped(resp, MAX_RESPONSE_BYTES, timeout).await.map_err(|e| egress_error(e, scrub))
}

/// Whether a `Content-Type` is one of the JSON media types SCIM peers send.
pub(crate) fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(fedkey_scim::SCIM_MEDIA_TYPE) || essence.eq_ignore_ascii_case("application/json")
}

/// `scimType` and `detail` of a SCIM Error body (RFC 7644 §3.12), tolerating bodies that
/// are not one (an HTML error page gives an empty detail).
pub(crate) fn error_details(body: &[u8], scrub: &Scrubber<'_>) -> (Option<String>, String) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, String::new());
    };
    let get = |k: &str| fedkey_scim::json::lookup(&v, k).and_then(Value::as_str).map(|s| scrub.clean(s));
    (get("scimType").filter(|s| !s.is_empty()), get("detail").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_error_bodies() {
        assert!(is_json_media_type("application/scim+json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/html"));
        let scrub = crate::error::scrubber().with("sekrit-token");
        let body = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"dup sekrit-token"}"#;
        assert_eq!(error_details(body, &scrub), (Some("uniqueness".into()), "dup [redacted]".into()));
        assert_eq!(error_details(b"<html>", &scrub), (None, String::new()));
    }
}
