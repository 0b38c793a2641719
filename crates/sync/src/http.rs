//! HTTP details shared by the SCIM client and the token request: bounded body reads,
//! transport-error classification, `Retry-After` and SCIM Error bodies.

use std::time::{Duration, UNIX_EPOCH};

use fedkey_core::clock::Timestamp;
use serde_json::Value;

use crate::error::{ClientError, Scrubber};

/// Largest response body read from a target. A SCIM page of 100 users is far below it;
/// anything larger is a misbehaving peer, not data to buffer.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

pub(crate) fn transport_error(e: &reqwest::Error, scrub: &Scrubber<'_>) -> ClientError {
    if e.is_timeout() {
        return ClientError::Timeout;
    }
    if e.is_builder() {
        return ClientError::Config { message: scrub.clean(&error_chain(e)) };
    }
    ClientError::Network { message: scrub.clean(&error_chain(e)) }
}

/// The error and its causes ("error sending request …: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Reads the whole body, refusing more than [`MAX_RESPONSE_BYTES`].
pub(crate) async fn read_capped(mut resp: reqwest::Response, scrub: &Scrubber<'_>) -> Result<Vec<u8>, ClientError> {
    let too_large =
        || ClientError::Protocol { message: format!("the response body exceeds {MAX_RESPONSE_BYTES} bytes") };
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e, scrub))? {
        if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, relative to `now`.
/// A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_us = i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_micros()).ok()?;
    let delta = at_us.saturating_sub(now.micros()).max(0);
    Some(Duration::from_micros(u64::try_from(delta).unwrap_or(0)))
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
    fn retry_after_seconds_and_dates() {
        let now = Timestamp(1_700_000_000_000_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn media_types_and_error_bodies() {
        assert!(is_json_media_type("application/scim+json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/html"));
        let scrub = Scrubber::new().with("sekrit-token");
        let body = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"dup sekrit-token"}"#;
        assert_eq!(error_details(body, &scrub), (Some("uniqueness".into()), "dup [redacted]".into()));
        assert_eq!(error_details(b"<html>", &scrub), (None, String::new()));
    }
}
