//! Prometheus metrics, served at `/metrics`. Labels are route templates and status codes
//! only: never a path with user data, never a token. With `metrics_token` set, a scrape
//! must present it as a bearer token (compared in constant time); otherwise 401.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(want) = &s.metrics_token {
        // Hashes of equal length, so the comparison's time says nothing about the token.
        let given = crate::scim::bearer(&headers).map(|t| fedkey_crypto::sha256(t.as_bytes()));
        if !given.is_some_and(|g| fedkey_crypto::ct_eq(&g, want)) {
            return ApiError::unauthorized().into_response();
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response()
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|_| handle)
        })
        .as_ref()
}

pub fn observe_request(method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
    let route = route.unwrap_or("unmatched").to_owned();
    metrics::counter!("fedkey_http_requests_total", "method" => method.to_owned(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("fedkey_http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());
}

pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}
