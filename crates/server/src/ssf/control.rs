//! Stream status (SSF 1.0 §8.1.2) and verification (§8.1.4).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_store::ops::events::{EventStream, StreamStatus};
use serde_json::{Value, json};

use super::receiver::Receiver;
use super::streams::{StreamQuery, json_body, no_store, owned, query_stream_id};
use super::{MIN_VERIFICATION_INTERVAL, SsfError, events};
use crate::AppState;

/// Longest status `reason` accepted.
const MAX_REASON: usize = 256;
/// Longest verification `state` accepted.
const MAX_STATE: usize = 1024;

fn status_body(st: &EventStream) -> Value {
    let mut v = json!({"stream_id": st.id, "status": st.status.as_str()});
    if let Some(r) = &st.status_reason {
        v["reason"] = json!(r);
    }
    v
}

/// `GET {issuer}/status?stream_id=…`.
pub async fn read_status(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, SsfError> {
    let id = query_stream_id(q)?.ok_or_else(|| SsfError::invalid("stream_id is required"))?;
    let st = owned(&s, &r, &id).await?;
    Ok(no_store(StatusCode::OK, status_body(&st)))
}

/// `POST {issuer}/status` `{stream_id, status, reason?}`: enabled, paused (events are held)
/// or disabled (events are dropped, queued ones included).
pub async fn update_status(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    body: Bytes,
) -> Result<Response, SsfError> {
    let body = json_body(&body)?;
    let id = super::config::stream_id(&body)?;
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .and_then(StreamStatus::parse)
        .ok_or_else(|| SsfError::invalid("status is required: enabled, paused or disabled"))?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.len() <= MAX_REASON && !t.chars().any(char::is_control) => Some(t.as_str()),
        Some(_) => {
            return Err(SsfError::invalid(format!(
                "reason must be a string of at most {MAX_REASON} bytes without control characters"
            )));
        }
    };
    owned(&s, &r, &id).await?;
    let st = s.store.set_event_stream_status(&r.actor, &id, status, reason).await?;
    Ok(no_store(StatusCode::OK, status_body(&st)))
}

/// `POST {issuer}/verify` `{stream_id, state?}`: queues a verification SET (`sub_id` the
/// stream, `state` echoed) for the stream's delivery method; 204 once it is queued, 429
/// within `min_verification_interval` of the previous request on any node.
pub async fn verify(
    State(s): State<AppState>,
    r: Receiver,
    Path(_directory): Path<String>,
    body: Bytes,
) -> Result<Response, SsfError> {
    let body = json_body(&body)?;
    let id = super::config::stream_id(&body)?;
    let state = match body.get("state") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.len() <= MAX_STATE => Some(t.clone()),
        Some(_) => return Err(SsfError::invalid(format!("state must be a string of at most {MAX_STATE} bytes"))),
    };
    let st = owned(&s, &r, &id).await?;
    if st.status == StreamStatus::Disabled {
        return Err(SsfError::invalid(
            "the stream is disabled and transmits nothing; enable it (POST to the status endpoint) first",
        ));
    }
    if !s.store.take_verification_slot(&id, MIN_VERIFICATION_INTERVAL).await? {
        let mut resp = SsfError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            format!(
                "a verification was requested less than min_verification_interval ({} s) ago",
                MIN_VERIFICATION_INTERVAL.as_secs()
            ),
        )
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(MIN_VERIFICATION_INTERVAL.as_secs()));
        return Ok(resp);
    }
    let payload = match &state {
        Some(t) => json!({"state": t}),
        None => json!({}),
    };
    let subject = json!({"format": "opaque", "id": id});
    let jti = s.store.enqueue_stream_event(&id, events::VERIFICATION, subject, payload).await?;
    s.store
        .record(
            &r.actor,
            "ssf.verify",
            fedkey_audit::Outcome::Success,
            json!({"directory": st.directory, "stream": id, "jti": jti}),
        )
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
