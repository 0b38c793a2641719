//! The HTTP plumbing every remote connector shares: URL policy, timeouts, and turning a
//! non-success response into a classified, redacted [`ConnectorError`].

use std::time::{Duration, UNIX_EPOCH};

use fedkey_core::clock::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use crate::error::{ConnectorError, Redactor};
use crate::kind::ConnectorKind;

/// Default per-call timeout (connect + response + body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client suited to the connectors: no redirects (a 307/308 would re-send the key or a
/// credential to wherever the peer points), and an identifying user agent. Callers may bring
/// their own client; this is the recommended one.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fedkey-connectors/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Parses a peer base URL and enforces TLS: plain `http` is accepted only for loopback
/// hosts (local fakes in tests, a sidecar OpenBao agent).
pub fn parse_base_url(kind: ConnectorKind, field: &str, raw: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(raw).map_err(|e| ConnectorError::config(kind, format!("{field} is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConnectorError::config(kind, format!("{field} must not carry credentials")));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConnectorError::config(
                kind,
                format!("{field} must use https (plain http is allowed only for 127.0.0.1, ::1 and localhost)"),
            ));
        }
        other => return Err(ConnectorError::config(kind, format!("{field} has unsupported scheme {other:?}"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConnectorError::config(kind, format!("{field} has no host")));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    // `host_str` is the parsed, normalised host: IPv6 in brackets, IPv4 in dotted form.
    matches!(url.host_str(), Some(h) if h == "127.0.0.1" || h == "[::1]" || h.eq_ignore_ascii_case("localhost"))
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
    req: RequestBuilder,
    timeout: Duration,
    redactor: &Redactor<'_>,
) -> Result<Response, ConnectorError> {
    req.timeout(timeout).send().await.map_err(|e| transport_error(kind, &e, timeout, redactor))
}

/// Reads a response body, bounded by the same timeout as the request.
pub async fn body_text(
    kind: ConnectorKind,
    resp: Response,
    timeout: Duration,
    redactor: &Redactor<'_>,
) -> Result<String, ConnectorError> {
    resp.text().await.map_err(|e| transport_error(kind, &e, timeout, redactor))
}

fn transport_error(
    kind: ConnectorKind,
    e: &reqwest::Error,
    timeout: Duration,
    redactor: &Redactor<'_>,
) -> ConnectorError {
    if e.is_timeout() {
        return ConnectorError::Timeout { kind, timeout };
    }
    // reqwest's Display names the URL only; the source chain says what actually failed.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ConnectorError::Network { kind, detail: redactor.clean(&detail) }
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
    if let Some(v) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            let at_us = at.duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_micros()).ok())?;
            return Some(until(at_us, now));
        }
    }
    let reset = headers.get("x-rate-limit-reset")?.to_str().ok()?.trim().parse::<i64>().ok()?;
    Some(until(reset.saturating_mul(1_000_000), now))
}

fn until(at_us: i64, now: Timestamp) -> Duration {
    let delta = at_us.saturating_sub(now.micros());
    Duration::from_micros(u64::try_from(delta).unwrap_or(0))
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
    use reqwest::header::HeaderValue;

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
        assert!(parse_base_url(k, "org_url", "https://acme.okta.com").is_ok());
        assert!(parse_base_url(k, "org_url", "http://127.0.0.1:8080").is_ok());
        assert!(parse_base_url(k, "org_url", "http://[::1]:8080").is_ok());
        assert!(parse_base_url(k, "org_url", "http://localhost:1").is_ok());
        let e = parse_base_url(k, "org_url", "http://acme.okta.com").unwrap_err();
        assert!(matches!(e, ConnectorError::Config { .. }) && e.to_string().contains("https"), "{e}");
        assert!(parse_base_url(k, "org_url", "http://127.0.0.2").is_err());
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
