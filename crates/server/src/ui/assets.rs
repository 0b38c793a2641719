//! The console's two static files, compiled into the binary: no CDN, no build step.

use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

pub const CSS: &str = include_str!("../../assets/console.css");
pub const JS: &str = include_str!("../../assets/console.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Versioned with the binary: an hour of caching is safe across an upgrade.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    resp
}

pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}
