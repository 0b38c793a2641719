//! Per-request context: a request id (echoed as `X-Request-Id`) and the peer address,
//! both recorded in audit records.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::Response;
use fedkey_store::auth::RequestMeta;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let source = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let path = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let version = req.version();
    req.extensions_mut().insert(RequestMeta { source, request_id: Some(id.clone()) });
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    crate::metrics::observe_request(method.as_str(), path.as_deref(), status, started.elapsed());
    tracing::info!(request_id = %id, %method, route = path.as_deref().unwrap_or("-"), status, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    // The rest of a refused body is never read: say that the connection ends here
    // (HTTP/2 has no such header; a stream reset does it).
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && version <= Version::HTTP_11 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
