//! Admin API errors: a stable machine-readable `code`, a readable `message`, the
//! request id to quote in a support request. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use fedkey_api::ErrorCode;
use fedkey_api::{ErrorBody, ErrorDetail};
use fedkey_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// A failure this server should not have: logged in full, answered as `internal`.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error; see the server log")
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// Well-formed input that names something invalid (a bad name, scope, duration…).
    pub fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidValue, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing, malformed, unknown, expired or revoked token",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// A request body over `limit` bytes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    }

    pub fn audit_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AuditUnavailable,
            "the audit log could not record this request, so it was not performed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody { error: ErrorDetail { code: self.code.as_str().into(), message: self.message } }),
        )
            .into_response();
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
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
            }
            StoreError::Conflict(what) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, format!("{what} already exists"))
            }
            StoreError::Domain(d @ fedkey_core::DomainError::InvalidTransition { .. }) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidState, d.to_string())
            }
            StoreError::Domain(d) => ApiError::invalid_value(d.to_string()),
            StoreError::Invalid(m) => ApiError::invalid_value(m),
            StoreError::Policy(e) => ApiError::invalid_value(e.to_string()),
            StoreError::InvalidState(m) => ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidState, m),
            StoreError::Refused { code, message } => {
                // The store names its refusals by their wire code; one it adds without a
                // code here is still a conflict, and the log says which.
                let known = ErrorCode::from_wire(code);
                if known.is_none() {
                    tracing::warn!(code, "store refusal without an API error code");
                }
                ApiError::new(StatusCode::CONFLICT, known.unwrap_or(ErrorCode::Conflict), message)
            }
            StoreError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, ErrorCode::PreconditionFailed, m)
            }
            e @ StoreError::AuditUnavailable(_) => {
                tracing::error!(error = ?e, "audit unavailable; request refused");
                ApiError::audit_unavailable()
            }
            e if e.is_unavailable() => {
                tracing::error!(error = ?e, "database unavailable; request refused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable; the request was not performed, retry later",
                )
            }
            e => ApiError::internal(format_args!("{e:?}")),
        }
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this endpoint does not support that method",
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint")
}
