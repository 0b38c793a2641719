//! Prometheus metrics, served at `/metrics` (text format 0.0.4). Every series has `# HELP`
//! and `# TYPE`; latencies are histograms; every family is present from start-up, with its
//! bounded label sets at zero. Labels are route templates, status classes and fixed reason
//! lists — never a path with user data, never a token — except the per-trust and per-target
//! gauges, which carry the object's name and are capped at [`MAX_OBJECTS`] per family.
//! With `metrics_token` set, a scrape must present it as a bearer token (compared in
//! constant time); otherwise 401. docs/metrics.md lists every series.
//!
//! Three sources, one page:
//! - counters and histograms recorded through the `metrics` facade (cheap atomics after
//!   the first lookup), registered at start-up by [`handle`];
//! - SCIM request counts in static atomics (no lookup on the request path);
//! - gauges read from the health model ([`fedkey_rotation::health`]) at scrape time,
//!   computed at most once a second whatever the number of scrapers.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fedkey_rotation::health::HealthReport;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::error::ApiError;

mod catalog;
mod gauges;
mod request_series;

pub use catalog::{LATENCY_BUCKETS, MAX_OBJECTS};

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
    let ready = s.store.readiness().await.ready();
    metrics::gauge!("fedkey_ready").set(if ready { 1.0 } else { 0.0 });
    let report = health_snapshot(&s).await;
    let mut body = render();
    render_scim_requests(&mut body);
    gauges::render(&mut body, report.as_deref(), s.store.now());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

// ---------------------------------------------------------------- health snapshot

/// How long one health pass serves scrapes.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

type Snapshot = Option<(Instant, Option<Arc<HealthReport>>)>;

static SNAPSHOT: tokio::sync::Mutex<Snapshot> = tokio::sync::Mutex::const_new(None);

/// The health model, at most [`SNAPSHOT_TTL`] old; `None` when it could not be read (the
/// store-derived gauges are then absent and `fedkey_health_check_success` is 0).
async fn health_snapshot(s: &AppState) -> Option<Arc<HealthReport>> {
    let mut slot = SNAPSHOT.lock().await;
    if let Some((at, r)) = slot.as_ref()
        && at.elapsed() < SNAPSHOT_TTL
    {
        return r.clone();
    }
    let report = match fedkey_rotation::health::check(&s.store).await {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::warn!(error = %e, "the health model could not be read for /metrics");
            None
        }
    };
    *slot = Some((Instant::now(), report.clone()));
    report
}

/// Drops the cached health snapshot (the test hooks call it after driving a tick, so the
/// next scrape shows its effect at once).
pub async fn invalidate() {
    *SNAPSHOT.lock().await = None;
}

// ---------------------------------------------------------------- facade recorder

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (histogram buckets, descriptions, every bounded
/// label set at zero); later calls reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            if installed.is_some() {
                catalog::register();
            }
            installed
        })
        .as_ref()
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("fedkey_audit_batch_size".into()), catalog::SIZE_BUCKETS))
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("fedkey_db_group_commit_writers".into()), catalog::SIZE_BUCKETS)
        })
        // Only empty bucket lists fail, and these are constants.
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

pub fn observe_request(method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
    if route.is_some_and(|r| r.starts_with("/scim/")) {
        count_scim_request(method, status);
    }
    request_series::observe(method, route.unwrap_or("unmatched"), status, elapsed);
}

/// The facade's part of the page.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

// ---------------------------------------------------------------- SCIM request counts

const SCIM_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "other"];
const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

// Constants only to build the static array (each use is a fresh atomic).
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ROW: [AtomicU64; 4] = [ZERO; 4];
static SCIM_REQUESTS: [[AtomicU64; 4]; 6] = [ROW; 6];

fn count_scim_request(method: &str, status: u16) {
    let m = SCIM_METHODS.iter().position(|x| *x == method).unwrap_or(SCIM_METHODS.len() - 1);
    let c = usize::from(status.clamp(200, 599) / 100 - 2);
    if let Some(cell) = SCIM_REQUESTS.get(m).and_then(|row| row.get(c)) {
        cell.fetch_add(1, Ordering::Relaxed);
    }
}

fn render_scim_requests(out: &mut String) {
    gauges::header(out, "fedkey_scim_requests_total", "counter", "SCIM requests answered, by method and status class.");
    for (m, row) in SCIM_METHODS.iter().zip(&SCIM_REQUESTS) {
        for (c, cell) in STATUS_CLASSES.iter().zip(row) {
            let _ = writeln!(
                out,
                "fedkey_scim_requests_total{{method=\"{m}\",status=\"{c}\"}} {}",
                cell.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_counts_land_in_bounded_cells() {
        count_scim_request("GET", 200);
        count_scim_request("BREW", 418);
        count_scim_request("POST", 100);
        count_scim_request("PATCH", 999);
        let mut out = String::new();
        render_scim_requests(&mut out);
        assert!(out.contains("# TYPE fedkey_scim_requests_total counter"));
        assert_eq!(out.lines().filter(|l| l.starts_with("fedkey_scim_requests_total{")).count(), 24);
        assert!(SCIM_REQUESTS[0][0].load(Ordering::Relaxed) >= 1);
        assert!(SCIM_REQUESTS[5][2].load(Ordering::Relaxed) >= 1, "unknown methods count as other");
        assert!(SCIM_REQUESTS[1][0].load(Ordering::Relaxed) >= 1, "1xx counts with 2xx");
        assert!(SCIM_REQUESTS[3][3].load(Ordering::Relaxed) >= 1, "out-of-range counts as 5xx");
    }
}
