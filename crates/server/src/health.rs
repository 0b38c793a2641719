//! `/healthz` (the process answers) and `/readyz` (the database answers and the audit log
//! can be written). `/metrics` is in [`crate::metrics`].

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use fedkey_api::health::{Liveness, Readiness};

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(Liveness { status: "ok".into() })
}

/// Ready when the database answers and writes go through (see `Store::readiness`: at most
/// one check a second, and no write while writes succeed).
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let r = s.store.readiness().await;
    let ready = r.ready();
    metrics::gauge!("fedkey_ready").set(if ready { 1.0 } else { 0.0 });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let database = if r.database { "ok" } else { "unreachable" };
    let audit = if r.writes { "ok" } else { "not writable" };
    let body = Readiness {
        status: if ready { "ready" } else { "not ready" }.into(),
        database: database.into(),
        audit: audit.into(),
    };
    (status, axum::Json(body))
}
