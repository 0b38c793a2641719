//! Admin API errors: a stable machine-readable `code`, a readable `message`, the
//! request id to quote in a support request. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fedkey_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// Well-formed input that names something invalid (a bad name, scope, duration…).
    pub fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing, malformed, unknown, expired or revoked token")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A request body over `limit` bytes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body exceeds {limit} bytes"))
    }

    pub fn audit_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log could not record this request, so it was not performed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp =
            (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"fedkey\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
            }
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists"))
            }
            StoreError::Domain(d @ fedkey_core::DomainError::InvalidTransition { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "invalid_state", d.to_string())
            }
            StoreError::Domain(d) => ApiError::invalid_value(d.to_string()),
            StoreError::Invalid(m) => ApiError::invalid_value(m),
            StoreError::InvalidState(m) => ApiError::new(StatusCode::CONFLICT, "invalid_state", m),
            StoreError::Refused { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            StoreError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m)
            }
            e @ StoreError::AuditUnavailable(_) => {
                tracing::error!(error = ?e, "audit unavailable; request refused");
                ApiError::audit_unavailable()
            }
            e if e.is_unavailable() => {
                tracing::error!(error = ?e, "database unavailable; request refused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; the request was not performed, retry later",
                )
            }
            e => {
                tracing::error!(error = ?e, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
            }
        }
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not support that method")
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
