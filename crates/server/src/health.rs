//! `/healthz` (the process answers) and `/readyz` (the database and the audit log can be
//! written). `/metrics` is in [`crate::metrics`].

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use fedkey_audit::{Event, Outcome};
use serde_json::json;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Appends a probe record inside a transaction and rolls it back: this exercises the
/// real audit write path (locks, triggers, disk) without leaving anything behind.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let store = &s.store;
    let db = match store.db.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness: database");
            "unreachable".to_owned()
        }
    };
    let audit = match probe_audit(&s).await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness: audit log");
            "not writable".to_owned()
        }
    };
    let ready = db == "ok" && audit == "ok";
    metrics::gauge!("fedkey_ready").set(if ready { 1.0 } else { 0.0 });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({"status": if ready {"ready"} else {"not ready"}, "database": db, "audit": audit})))
}

async fn probe_audit(s: &AppState) -> Result<(), fedkey_store::StoreError> {
    let store = &s.store;
    let mut tx = store.db.begin().await?;
    let ev = Event::new(store.now(), "system:readyz", "readiness.probe", Outcome::Success);
    fedkey_store::audit::append_in_tx(&mut tx, &store.db, vec![ev]).await?;
    tx.rollback().await?;
    Ok(())
}
