//! RFC 8936 poll delivery for RFC 9967 receivers: `POST /events/{directory}/{stream}`,
//! authenticated by the stream's own bearer secret (issued by an admin, shown once; it
//! reads that one stream's SETs and nothing else). The body acknowledges SETs (`ack`),
//! reports refused ones (`setErrs`), and asks for up to `maxEvents` more; the answer is
//! `{"sets": {jti: SET}, "moreAvailable": bool}`. `returnImmediately: false` (the RFC's
//! default) waits up to [`LONG_POLL`] for a first SET.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_store::StoreError;
use fedkey_store::ops::{Delivery, EventStream, StreamKind};
use serde_json::{Map, Value, json};

use super::set;
use crate::AppState;

/// Longest wait of a long poll.
pub const LONG_POLL: Duration = Duration::from_secs(5);
/// How often a long poll looks again.
const LONG_POLL_STEP: Duration = Duration::from_millis(250);
/// SETs returned when the request names no `maxEvents`.
const DEFAULT_MAX: usize = 100;
/// Longest `jti` accepted in `ack`/`setErrs`.
const MAX_JTI: usize = 256;

/// An RFC 8936 poll request, checked.
#[derive(Debug, Default, PartialEq)]
pub struct PollRequest {
    pub max_events: usize,
    pub return_immediately: bool,
    pub ack: Vec<String>,
    /// `(jti, err, description)`.
    pub errors: Vec<(String, String, String)>,
}

/// A poll refused: RFC 8935/8936 error JSON with its status.
#[derive(Debug)]
pub struct PollError {
    pub status: StatusCode,
    pub err: &'static str,
    pub description: String,
}

impl PollError {
    fn bad(description: impl Into<String>) -> PollError {
        PollError { status: StatusCode::BAD_REQUEST, err: "invalid_request", description: description.into() }
    }
}

impl IntoResponse for PollError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"err": self.err, "description": self.description}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<StoreError> for PollError {
    fn from(e: StoreError) -> PollError {
        match e {
            StoreError::Invalid(m) => PollError::bad(m),
            StoreError::NotFound(_) => {
                PollError { status: StatusCode::NOT_FOUND, err: "not_found", description: "no such stream".into() }
            }
            other => {
                tracing::error!(error = %other, "security event poll failed");
                PollError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    err: "unavailable",
                    description: "the event queue is unavailable; try again".into(),
                }
            }
        }
    }
}

/// Parses an RFC 8936 §2.4 request body; every refusal says what is wrong.
pub fn parse_request(body: &[u8]) -> Result<PollRequest, PollError> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| PollError::bad(format!("the body is not JSON: {e}")))?
    };
    let Value::Object(o) = v else { return Err(PollError::bad("the body must be a JSON object")) };
    let mut r = PollRequest { max_events: DEFAULT_MAX, return_immediately: false, ..Default::default() };
    for (k, v) in &o {
        match k.as_str() {
            "maxEvents" => {
                let n = v.as_u64().ok_or_else(|| PollError::bad("maxEvents must be a non-negative integer"))?;
                r.max_events = usize::try_from(n).unwrap_or(usize::MAX).min(fedkey_store::ops::events::MAX_POLL_ITEMS);
            }
            "returnImmediately" => {
                r.return_immediately =
                    v.as_bool().ok_or_else(|| PollError::bad("returnImmediately must be a boolean"))?;
            }
            "ack" => {
                let a = v.as_array().ok_or_else(|| PollError::bad("ack must be an array of jti strings"))?;
                for j in a {
                    r.ack.push(jti(j, "ack")?);
                }
            }
            "setErrs" => {
                let m = v.as_object().ok_or_else(|| PollError::bad("setErrs must be an object keyed by jti"))?;
                for (j, e) in m {
                    let j = jti(&Value::String(j.clone()), "setErrs")?;
                    let field = |name: &str| e.get(name).and_then(Value::as_str).map(str::to_owned);
                    let err =
                        field("err").ok_or_else(|| PollError::bad(format!("setErrs.{j}.err must be a string")))?;
                    r.errors.push((j, err, field("description").unwrap_or_default()));
                }
            }
            other => {
                return Err(PollError::bad(format!(
                    "unknown member {:?} (expected maxEvents, returnImmediately, ack, setErrs)",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    if r.ack.len() + r.errors.len() > fedkey_store::ops::events::MAX_POLL_ITEMS {
        return Err(PollError::bad(format!(
            "at most {} acknowledgements and errors per request",
            fedkey_store::ops::events::MAX_POLL_ITEMS
        )));
    }
    Ok(r)
}

fn jti(v: &Value, field: &str) -> Result<String, PollError> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= MAX_JTI && !s.chars().any(char::is_control) => Ok(s.to_owned()),
        _ => Err(PollError::bad(format!("{field}: a jti must be a string of 1 to {MAX_JTI} printable characters"))),
    }
}

/// Serves one poll of stream `s` (already authenticated): acknowledgements and errors,
/// then the SETs, signed now. Shared with the SSF poll endpoint.
pub async fn poll_core(state: &AppState, s: &EventStream, req: &PollRequest) -> Result<Value, PollError> {
    let key = state.store.install.oauth_signing.as_ref().ok_or_else(|| PollError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        err: "unavailable",
        description: "no signing key for security events".into(),
    })?;
    let mut waited = Duration::ZERO;
    let (mut events, mut more) = state.store.poll_stream_events(&s.id, req.max_events, &req.ack, &req.errors).await?;
    while events.is_empty() && !req.return_immediately && req.max_events > 0 && waited < LONG_POLL {
        tokio::time::sleep(LONG_POLL_STEP).await;
        waited += LONG_POLL_STEP;
        (events, more) = state.store.poll_stream_events(&s.id, req.max_events, &[], &[]).await?;
    }
    let sets: Map<String, Value> = events
        .iter()
        .map(|e| (e.jti.clone(), Value::String(set::sign(key, &set::claims(&state.public_url, s, e)))))
        .collect();
    Ok(json!({"sets": sets, "moreAvailable": more}))
}

/// `POST /events/{directory}/{stream}`.
pub async fn poll(
    State(state): State<AppState>,
    Path((directory, stream)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PollError> {
    let unauthorized = || PollError {
        status: StatusCode::UNAUTHORIZED,
        err: "authentication_failed",
        description: "a valid poll secret is required".into(),
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(unauthorized)?;
    // The same answer for an unknown stream and a wrong secret: no stream ids are revealed.
    let s = match state.store.event_stream(&stream).await? {
        Some(s) if s.directory == directory && s.kind == StreamKind::Scim && s.delivery == Delivery::Poll => s,
        _ => return Err(unauthorized()),
    };
    if !state.store.event_stream_poll_secret_matches(&s.id, presented.trim()).await? {
        return Err(unauthorized());
    }
    let req = parse_request(&body)?;
    let v = poll_core(&state, &s, &req).await?;
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_hostile_ones_get_readable_refusals() {
        let r = parse_request(br#"{"ack":["a","b"],"setErrs":{"c":{"err":"jwtAud","description":"x"}},"maxEvents":5,"returnImmediately":true}"#).unwrap();
        assert_eq!(
            r,
            PollRequest {
                max_events: 5,
                return_immediately: true,
                ack: vec!["a".into(), "b".into()],
                errors: vec![("c".into(), "jwtAud".into(), "x".into())],
            }
        );
        assert_eq!(parse_request(b"").unwrap().max_events, DEFAULT_MAX);
        assert_eq!(parse_request(br#"{"maxEvents": 999999999999}"#).unwrap().max_events, 1000);
        for (body, says) in [
            (&b"[1]"[..], "JSON object"),
            (b"{", "not JSON"),
            (br#"{"maxEvents":-1}"#, "maxEvents"),
            (br#"{"ack":"a"}"#, "ack must be an array"),
            (br#"{"ack":[1]}"#, "jti"),
            (br#"{"ack":[""]}"#, "jti"),
            (br#"{"setErrs":{"a":{}}}"#, "setErrs.a.err"),
            (br#"{"returnImmediately":"yes"}"#, "boolean"),
            (br#"{"sets":{}}"#, "unknown member"),
        ] {
            let e = parse_request(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.description.contains(says), "{}: {}", String::from_utf8_lossy(body), e.description);
        }
        let many = format!(r#"{{"ack":[{}]}}"#, vec!["\"j\""; 1001].join(","));
        assert!(parse_request(many.as_bytes()).unwrap_err().description.contains("at most"));
    }
}
