//! The HTTP plumbing every remote connector shares: URL policy, timeouts, size caps (all
//! through [`fedkey_egress::Egress`]), and turning a non-success response into a classified,
//! redacted [`ConnectorError`].

use std::time::Duration;

use fedkey_core::clock::Timestamp;
use fedkey_egress::{Egress, EgressError, Redactor, UrlRules};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::error::ConnectorError;
use crate::kind::ConnectorKind;

/// Default per-call timeout (connect + response + body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body a connector reads from a peer: its answers are small JSON
/// documents; anything larger is refused, not parsed.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Parses a peer base URL under the egress policy: https (plain http only for loopback
/// hosts: local fakes in tests, a sidecar OpenBao agent), no credentials, no denied address.
pub fn parse_base_url(kind: ConnectorKind, field: &str, raw: &str, egress: &Egress) -> Result<Url, ConnectorError> {
    egress.check_url(raw, UrlRules::HTTPS_ONLY).map_err(|e| ConnectorError::config(kind, format!("{field}: {e}")))
}

/// A request to a peer URL (checked again by the egress policy).
pub fn request(
    kind: ConnectorKind,
    egress: &Egress,
    method: Method,
    url: &Url,
) -> Result<RequestBuilder, ConnectorError> {
    egress.request(method, url, UrlRules::HTTPS_ONLY).map_err(|e| egress_error(kind, e, &Redactor::new()))
}

/// Joins path segments onto a base URL, percent-encoding each segment (ids come from
/// configuration and must not be able to add path components or a query).
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    url
}

/// Sends a request with the connector's timeout and maps transport failures.
pub async fn send(
    kind: ConnectorKind,
    egress: &Egress,
    req: RequestBuilder,
    timeout: Duration,
    redactor: &Redactor<'_>,
) -> Result<Response, ConnectorError> {
    egress.send(req, timeout).await.map_err(|e| egress_error(kind, e, redactor))
}

/// Reads a response body, bounded by the same timeout as the request and by
/// [`MAX_RESPONSE_BYTES`].
pub async fn body_text(
    kind: ConnectorKind,
    resp: Response,
    timeout: Duration,
    redactor: &Redactor<'_>,
) -> Result<String, ConnectorError> {
    fedkey_egress::read_text(resp, MAX_RESPONSE_BYTES, timeout).await.map_err(|e| egress_error(kind, e, redactor))
}

pub(crate) fn egress_error(kind: ConnectorKind, e: EgressError, redactor: &Redactor<'_>) -> ConnectorError {
    match e {
        EgressError::Timeout(timeout) => ConnectorError::Timeout { kind, timeout },
        EgressError::Refused(detail) => ConnectorError::Refused { kind, detail: redactor.clean(&detail) },
        EgressError::TooLarge(limit) => ConnectorError::TooLarge { kind, limit },
        EgressError::Network(detail) | EgressError::Setup(detail) => {
            ConnectorError::Network { kind, detail: redactor.clean(&detail) }
        }
    }
}

/// Classifies a non-success response. `now` turns an HTTP-date `Retry-After` into a delay.
pub async fn error_from_response(
    kind: ConnectorKind,
    resp: Response,
    timeout: Duration,
    now: Timestamp,
    redactor: &Redactor<'_>,
) -> ConnectorError {
    let status = resp.status();
    let headers = resp.headers().clone();
    // An unreadable body still leaves the status to classify on.
    let body = body_text(kind, resp, timeout, redactor).await.unwrap_or_default();
    classify(kind, status, &headers, &body, now, redactor)
}

pub fn classify(
    kind: ConnectorKind,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    now: Timestamp,
    redactor: &Redactor<'_>,
) -> ConnectorError {
    let (code, message) = peer_error(body);
    let detail = redactor.clean(&match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => String::new(),
    });
    let code_u16 = status.as_u16();
    match code_u16 {
        401 => ConnectorError::Unauthorized { kind, detail },
        403 => ConnectorError::Forbidden { kind, detail },
        429 => ConnectorError::RateLimited { kind, retry_after: retry_after(headers, now), detail },
        500..=599 => {
            ConnectorError::Unavailable { kind, status: code_u16, retry_after: retry_after(headers, now), detail }
        }
        400..=499 => ConnectorError::Rejected {
            kind,
            status: code_u16,
            code: code.map(|c| redactor.clean(&c)),
            message: redactor.clean(message.as_deref().unwrap_or("")),
        },
        _ => ConnectorError::Protocol { kind, status: code_u16, detail: format!("unexpected status; {detail}") },
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date; failing that, Okta's
/// `X-Rate-Limit-Reset` (Unix seconds at which the window resets).
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    if let Some(d) = fedkey_egress::retry_after::from_headers(headers, now) {
        return Some(d);
    }
    let reset = headers.get("x-rate-limit-reset")?.to_str().ok()?.trim().parse::<i64>().ok()?;
    Some(fedkey_egress::retry_after::until(reset.saturating_mul(1_000_000), now))
}

/// Extracts an error code and message from the body shapes fedkey's peers document:
/// Graph `{"error":{"code","message"}}`, OAuth2 `{"error","error_description"}`,
/// Okta `{"errorCode","errorSummary"}`, OpenBao/Vault `{"errors":[…]}`; else the raw text.
pub fn peer_error(body: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        let t = body.trim();
        return (None, (!t.is_empty()).then(|| t.to_owned()));
    };
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if let Some(e) = v.get("error") {
        if e.is_object() {
            return (e.get("code").and_then(s), e.get("message").and_then(s));
        }
        if let Some(code) = s(e) {
            return (Some(code), v.get("error_description").and_then(s));
        }
    }
    if v.get("errorCode").is_some() || v.get("errorSummary").is_some() {
        return (v.get("errorCode").and_then(s), v.get("errorSummary").and_then(s));
    }
    if let Some(list) = v.get("errors").and_then(|e| e.as_array()) {
        let joined: Vec<String> = list.iter().filter_map(s).collect();
        return (None, (!joined.is_empty()).then(|| joined.join("; ")));
    }
    (None, Some(body.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use std::time::UNIX_EPOCH;

    const NOW: Timestamp = Timestamp(1_784_000_000_000_000);

    #[test]
    fn retry_after_seconds_and_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(120)));

        let at = UNIX_EPOCH + Duration::from_secs(1_784_000_030);
        h.insert(RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap());
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(30)));

        // A date in the past means "now".
        let past = UNIX_EPOCH + Duration::from_secs(1_783_999_000);
        h.insert(RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(past)).unwrap());
        assert_eq!(retry_after(&h, NOW), Some(Duration::ZERO));

        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, NOW), None);
    }

    #[test]
    fn okta_rate_limit_reset_is_a_fallback() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-reset", HeaderValue::from_static("1784000045"));
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(45)));
    }

    #[test]
    fn peer_error_shapes() {
        let graph = r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}"#;
        assert_eq!(
            peer_error(graph),
            (Some("Authorization_RequestDenied".into()), Some("Insufficient privileges".into()))
        );
        let oauth = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret"}"#;
        assert_eq!(peer_error(oauth).0.as_deref(), Some("invalid_client"));
        let okta = r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided","errorCauses":[]}"#;
        assert_eq!(peer_error(okta), (Some("E0000011".into()), Some("Invalid token provided".into())));
        let bao = r#"{"errors":["permission denied"]}"#;
        assert_eq!(peer_error(bao), (None, Some("permission denied".into())));
        assert_eq!(peer_error("  "), (None, None));
    }

    #[test]
    fn url_policy() {
        let k = ConnectorKind::Okta;
        let egress = Egress::strict().unwrap();
        let parse_base_url = |k, f, raw| parse_base_url(k, f, raw, &egress);
        assert!(parse_base_url(k, "org_url", "https://acme.okta.com").is_ok());
        assert!(parse_base_url(k, "org_url", "http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url(k, "org_url", "http://[::1]:8080").is_ok());
        assert!(parse_base_url(k, "org_url", "http://localhost:1").is_ok());
        let e = parse_base_url(k, "org_url", "http://acme.okta.com").unwrap_err();
        assert!(matches!(e, ConnectorError::Config { .. }) && e.to_string().contains("https"), "{e}");
        assert!(parse_base_url(k, "org_url", "http://127.0.0.2").is_ok(), "all of 127.0.0.0/8 is loopback");
        assert!(parse_base_url(k, "org_url", "https://169.254.169.254").is_err());
        assert!(parse_base_url(k, "org_url", "ftp://127.0.0.1").is_err());
        assert!(parse_base_url(k, "org_url", "https://user:pw@acme.okta.com").is_err());
        assert!(parse_base_url(k, "org_url", "not a url").is_err());
    }

    #[test]
    fn join_encodes_segments() {
        let base = Url::parse("https://graph.example/").unwrap();
        let u = join(&base, &["v1.0", "servicePrincipals", "a/b?c"]);
        assert_eq!(u.as_str(), "https://graph.example/v1.0/servicePrincipals/a%2Fb%3Fc");
    }
}
