//! Request body limits, one per group of routes. Extractors stop reading past the limit
//! (`DefaultBodyLimit`). A request that declares a longer body in `Content-Length` gets
//! its body replaced by one that is already over the limit, so nothing of it is read and
//! the handler's extractor answers 413 in the endpoint's own words. Either way the 413
//! says `Connection: close` ([`crate::request`]) and the connection closes with a bounded
//! lingering drain ([`crate::conn`]), so a client still sending its body reads the 413
//! instead of a connection reset.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Limits the request bodies of the documented `routes` to `limit` bytes.
pub fn limit(routes: OpenApiRouter<AppState>, limit: usize) -> OpenApiRouter<AppState> {
    routes.layer(DefaultBodyLimit::max(limit)).layer(from_fn_with_state(limit, refuse_declared))
}

/// The same for routes outside the API document (the console).
pub fn limit_router(routes: axum::Router<AppState>, limit: usize) -> axum::Router<AppState> {
    routes.layer(DefaultBodyLimit::max(limit)).layer(from_fn_with_state(limit, refuse_declared))
}

async fn refuse_declared(State(limit): State<usize>, mut req: Request, next: Next) -> Response {
    refuse_declared_over(&mut req, limit);
    next.run(req).await
}

/// Replaces the body of a request that declares more than `limit` bytes with one already
/// over the limit (for routes that check this in a middleware of their own).
pub fn refuse_declared_over(req: &mut Request, limit: usize) {
    if declared_over(req.headers(), limit) {
        *req.body_mut() = over_limit();
    }
}

/// Whether the request declares a body longer than `limit`.
fn declared_over(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// A body whose first read fails with the length-limit error the extractors turn into 413.
fn over_limit() -> Body {
    Body::new(http_body_util::Limited::new(Body::from(" "), 0))
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use axum::extract::FromRequest;
    use axum::http::{HeaderValue, StatusCode};

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

    /// The replaced body is what the extractors report as 413, under a route's limit or not.
    #[tokio::test]
    async fn the_replacement_body_is_a_413_to_the_extractors() {
        use tower::{Layer, ServiceExt};
        let read = tower::service_fn(|req: Request| async move {
            Ok::<_, std::convert::Infallible>(Bytes::from_request(req, &()).await.map(|_| ()).map_err(|r| r.status()))
        });
        let plain = read.oneshot(Request::new(over_limit())).await.unwrap();
        assert_eq!(plain, Err(StatusCode::PAYLOAD_TOO_LARGE));
        let limited = DefaultBodyLimit::max(1024).layer(read).oneshot(Request::new(over_limit())).await.unwrap();
        assert_eq!(limited, Err(StatusCode::PAYLOAD_TOO_LARGE));
    }
}
