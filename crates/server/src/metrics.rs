//! Prometheus metrics. Labels are route templates and status codes only: never a path
//! with user data, never a token.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

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
