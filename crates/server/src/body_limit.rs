//! Request body limits, one per group of routes. Extractors stop reading past the limit
//! (`DefaultBodyLimit`, 413 from the extractor), and a request that declares a longer
//! body in `Content-Length` is refused with 413 before anything reads or authenticates
//! it. Either way the response says `Connection: close` ([`crate::request`]) and the
//! connection closes with a bounded lingering drain ([`crate::conn`]), so a client still
//! sending its body reads the 413 instead of a connection reset.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use fedkey_scim::ScimError;

use crate::AppState;
use crate::error::ApiError;
use crate::scim::ScimResponse;

/// Limits the admin API routes of `routes` to `limit` bytes; 413 in the admin error shape.
pub fn admin(routes: Router<AppState>, limit: usize) -> Router<AppState> {
    routes.layer(DefaultBodyLimit::max(limit)).layer(from_fn_with_state(limit, refuse_admin))
}

/// Limits the SCIM routes of `routes` to `limit` bytes; 413 as a SCIM Error.
pub fn scim(routes: Router<AppState>, limit: usize) -> Router<AppState> {
    routes.layer(DefaultBodyLimit::max(limit)).layer(from_fn_with_state(limit, refuse_scim))
}

/// Whether the request declares a body longer than `limit`.
fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

async fn refuse_admin(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if declared_over(req.headers(), limit) {
        return ApiError::too_large(limit).into_response();
    }
    next.run(req).await
}

async fn refuse_scim(State(limit): State<usize>, req: Request, next: Next) -> Response {
    if declared_over(req.headers(), limit) {
        return ScimResponse(ScimError::new(413, None, format!("request body exceeds {limit} bytes"))).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn length(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_a_declared_length_over_the_limit_is_refused_early() {
        assert!(declared_over(&length("10485760"), 1024));
        assert!(!declared_over(&length("1024"), 1024));
        assert!(!declared_over(&HeaderMap::new(), 1024), "chunked bodies are left to the extractor's limit");
        // Unparseable lengths are hyper's to refuse (400); this check stays out of the way.
        assert!(!declared_over(&length("lots"), 1024));
    }
}
