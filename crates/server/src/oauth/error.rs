//! Token endpoint errors as RFC 6749 §5.2 defines them: a JSON body with `error` and
//! `error_description`, never cached. Internal causes are logged, not sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct OauthError {
    pub status: StatusCode,
    /// The RFC 6749 error code.
    pub error: &'static str,
    pub description: String,
    /// The client tried HTTP Basic authentication: a 401 must carry a Basic challenge.
    pub basic: bool,
}

impl OauthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OauthError {
        OauthError { status, error, description: description.into(), basic: false }
    }

    pub fn invalid_request(d: impl Into<String>) -> OauthError {
        OauthError::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    /// Client authentication failed. The description says which rule, never which secret.
    pub fn invalid_client(d: impl Into<String>, basic: bool) -> OauthError {
        OauthError { basic, ..OauthError::new(StatusCode::UNAUTHORIZED, "invalid_client", d) }
    }

    pub fn invalid_grant(d: impl Into<String>) -> OauthError {
        OauthError::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }

    pub fn unsupported_grant_type(d: impl Into<String>) -> OauthError {
        OauthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }

    pub fn invalid_scope(d: impl Into<String>) -> OauthError {
        OauthError::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }

    pub fn unavailable(d: impl Into<String>) -> OauthError {
        OauthError::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", d)
    }
}

impl From<StoreError> for OauthError {
    fn from(e: StoreError) -> OauthError {
        match e {
            StoreError::Invalid(m) => OauthError::invalid_request(m),
            StoreError::NotFound(what) => {
                OauthError::new(StatusCode::NOT_FOUND, "invalid_request", format!("{what} not found"))
            }
            e @ StoreError::AuditUnavailable(_) => {
                tracing::error!(error = ?e, "audit unavailable; token request refused");
                OauthError::unavailable("the audit log could not record this request; retry later")
            }
            e if e.is_unavailable() => {
                tracing::error!(error = ?e, "database unavailable; token request refused");
                OauthError::unavailable("the database is unavailable; retry later")
            }
            e => {
                tracing::error!(error = ?e, "internal error in token request");
                OauthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error; see the server log")
            }
        }
    }
}

impl IntoResponse for OauthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.status == StatusCode::UNAUTHORIZED && self.basic {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"fedkey-oauth\""));
        }
        resp
    }
}
