//! Errors of the SSF endpoints. SSF 1.0 signals errors by status code only; the body adds
//! an OAuth-style `{"error", "error_description"}` (RFC 6749 §5.2 shape) so a receiver's
//! operator can read what was wrong. Internal details are logged, not sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct SsfError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl SsfError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> SsfError {
        SsfError { status, code, description: description.into() }
    }

    pub fn invalid(description: impl Into<String>) -> SsfError {
        SsfError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// No such stream for this receiver: also the answer for another receiver's stream, so
    /// that stream ids of other receivers are not confirmed.
    pub fn no_stream() -> SsfError {
        SsfError::new(StatusCode::NOT_FOUND, "not_found", "no event stream with this stream_id for this receiver")
    }

    pub fn internal(detail: impl std::fmt::Display) -> SsfError {
        tracing::error!(error = %detail, "internal error in SSF request");
        SsfError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error; see the server log")
    }
}

impl IntoResponse for SsfError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self.status {
            StatusCode::UNAUTHORIZED => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"fedkey-ssf\""));
            }
            // Per-source and per-trust rates refill within a second.
            StatusCode::TOO_MANY_REQUESTS if !h.contains_key(header::RETRY_AFTER) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for SsfError {
    fn from(e: StoreError) -> SsfError {
        match e {
            StoreError::NotFound(_) => SsfError::no_stream(),
            StoreError::Conflict(what) => {
                SsfError::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists"))
            }
            StoreError::Invalid(m) | StoreError::InvalidState(m) => SsfError::invalid(m),
            e @ StoreError::AuditUnavailable(_) => {
                tracing::error!(error = ?e, "audit unavailable; SSF request refused");
                SsfError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the audit log could not record this request, so it was not performed",
                )
            }
            e if e.is_unavailable() => {
                tracing::error!(error = ?e, "database unavailable; SSF request refused");
                SsfError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the database is unavailable; the request was not performed, retry later",
                )
            }
            e => SsfError::internal(format!("{e:?}")),
        }
    }
}

/// A refusal of the SCIM authentication path (the receiver authenticates like a SCIM
/// client of the directory) in SSF words.
impl From<crate::scim::ScimResponse> for SsfError {
    fn from(r: crate::scim::ScimResponse) -> SsfError {
        let status = StatusCode::from_u16(r.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match status {
            StatusCode::UNAUTHORIZED => "invalid_token",
            StatusCode::FORBIDDEN => "access_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::TOO_MANY_REQUESTS => "slow_down",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            s if s.is_client_error() => "invalid_request",
            _ => "server_error",
        };
        SsfError::new(status, code, r.0.detail)
    }
}
