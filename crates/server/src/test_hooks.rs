//! Test-only endpoints under `/api/v1/test/`, compiled only with the `test-hooks` feature
//! and answered only when the server runs with `--unsafe-test-clock`: move the clock
//! forward, and run one pass of the rotation engine, the trust-material watchers, the
//! provisioning dispatcher or the reconciliation scheduler now (with the test clock those
//! loops do not run on their own, so what a test observes is what it did).
//!
//! A build without the feature has none of these routes: they answer 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use fedkey_audit::Outcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::{Admin, Need, Target, parse_duration};
use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/test/clock", post(advance_clock))
        .route("/test/engine/tick", post(engine_tick))
        .route("/test/watchers/tick", post(watchers_tick))
        .route("/test/sync/tick", post(sync_tick))
        .route("/test/sync/reconcile-tick", post(reconcile_tick))
        .route("/test/events/tick", post(events_tick))
}

fn disabled(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} need --unsafe-test-clock"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    advance: String,
}

async fn advance_clock(
    a: Admin,
    State(s): State<AppState>,
    body: Result<ApiJson<AdvanceClock>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Some(clock) = &s.test_clock else { return Err(disabled("test clock changes")) };
    a.require(&s.store, Need::Administer, "test.clock", &Target::default()).await?;
    let ApiJson(b) = body?;
    let d = parse_duration("advance", &b.advance)?;
    s.store.record(&a.actor(), "test.clock.advance", Outcome::Success, json!({"advance_seconds": d.as_secs()})).await?;
    clock.advance(d);
    Ok(Json(json!({"now": s.store.now().to_rfc3339()})))
}

/// One rotation-engine pass now, so tests need not wait for the background loop.
async fn engine_tick(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (Some(_), Some(engine)) = (&s.test_clock, &s.engine) else { return Err(disabled("engine ticks")) };
    a.require(&s.store, Need::Administer, "test.engine.tick", &Target::default()).await?;
    let report = engine.tick().await?;
    Ok(Json(json!({"report": report})))
}

/// One trust-material watcher pass now.
async fn watchers_tick(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (Some(_), Some(w)) = (&s.test_clock, &s.watchers) else { return Err(disabled("watcher ticks")) };
    a.require(&s.store, Need::Administer, "test.watchers.tick", &Target::default()).await?;
    let report = w.tick().await?;
    Ok(Json(json!({"report": report})))
}

/// One provisioning-dispatcher pass now.
async fn sync_tick(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (Some(_), Some(sync)) = (&s.test_clock, &s.sync) else { return Err(disabled("sync ticks")) };
    a.require(&s.store, Need::Administer, "test.sync.tick", &Target::default()).await?;
    let report = sync.tick().await?;
    crate::metrics::invalidate().await;
    Ok(Json(json!({"report": report})))
}

/// Runs the scheduled reconciliations that are due now (the loop's pass, on demand).
async fn reconcile_tick(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (Some(_), Some(sched)) = (&s.test_clock, &s.reconcile_schedule) else {
        return Err(disabled("reconcile ticks"));
    };
    a.require(&s.store, Need::Administer, "test.sync.reconcile_tick", &Target::default()).await?;
    let runs = sched.tick().await?;
    Ok(Json(json!({"runs": runs})))
}

/// One security-event push pass now.
async fn events_tick(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (Some(_), Some(p)) = (&s.test_clock, &s.events) else { return Err(disabled("event push ticks")) };
    a.require(&s.store, Need::Administer, "test.events.tick", &Target::default()).await?;
    let report = p.tick().await?;
    Ok(Json(json!({"report": report})))
}
