//! Admin API of outbound provisioning: per-trust targets, the deprovisioning status of a
//! directory, dead letters, reconciliation, and the test-only dispatcher tick.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fedkey_api::sync::{
    BulkSetting, DeadLetterFilter, DeadLetterList, DeadLettersDiscarded, DeadLettersRetried, Deprovisioning, Leaver,
    LeaverTarget, ReconcileEnvelope, ReconcileRequest, StillActive, SyncStatus, TargetEnvelope, TargetRequest,
    TargetStatus,
};
use fedkey_crypto::Secret;
use fedkey_egress::UrlRules;
use fedkey_store::ops::{
    MAX_RECONCILE_EVERY, MIN_RECONCILE_EVERY, NewSyncTarget, OAuthSettings, ReconcileSchedule, SyncWork,
};
use fedkey_sync::ReconcileError;
use fedkey_sync::mapping::Mapping;
use fedkey_sync::{ScimClient, TargetConfig};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, doc, trust_ref, ts, typed};
use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;
use fedkey_api::{DirectoryPath, TrustPath};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_target, put_target))
        .routes(routes!(status))
        .routes(routes!(dead_letters))
        .routes(routes!(retry_dead_letters))
        .routes(routes!(discard_dead_letters))
        .routes(routes!(reconcile))
}

/// `bulk` as stored: `None` = auto, `Some(0)` = off, `Some(n)` = at most n per request.
fn bulk_setting(b: Option<&BulkSetting>) -> Result<Option<i64>, ApiError> {
    match b {
        None => Ok(None),
        Some(BulkSetting::Word(w)) if w.eq_ignore_ascii_case("auto") => Ok(None),
        Some(BulkSetting::Word(w)) if w.eq_ignore_ascii_case("off") => Ok(Some(0)),
        Some(BulkSetting::Word(_)) => {
            Err(ApiError::bad_request("bulk must be \"auto\", \"off\" or a number of operations"))
        }
        Some(BulkSetting::Max(n)) => Ok(Some(*n)),
    }
}

/// `reconcile_every` (and its dry-run flag) as stored; absent: off.
fn reconcile_schedule(every: Option<&str>, dry_run: bool) -> Result<Option<ReconcileSchedule>, ApiError> {
    let Some(every) = every else {
        if dry_run {
            return Err(ApiError::invalid_value("reconcile_dry_run needs reconcile_every (how often to run)"));
        }
        return Ok(None);
    };
    let d = crate::admin::parse_duration("reconcile_every", every)?;
    if d < MIN_RECONCILE_EVERY || d > MAX_RECONCILE_EVERY {
        return Err(ApiError::invalid_value(format!(
            "reconcile_every: {every:?} is out of range: between {} and {} (each run reads the whole target)",
            humantime::format_duration(MIN_RECONCILE_EVERY),
            humantime::format_duration(MAX_RECONCILE_EVERY),
        )));
    }
    Ok(Some(ReconcileSchedule { every_seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), dry_run }))
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/target", tag = "sync", params(TrustPath), responses((status = 200, body = TargetEnvelope)))]
async fn get_target(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<TargetEnvelope>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "sync.target.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        Ok(TargetEnvelope { trust: r.to_string(), target: st.sync_target(&r).await?.as_ref().map(typed).transpose()? })
    })
    .await
}

#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/target", tag = "sync", params(TrustPath), request_body = TargetRequest, responses((status = 200, body = TargetEnvelope)))]
async fn put_target(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<TargetRequest>, ApiError>,
) -> Result<Json<TargetEnvelope>, ApiError> {
    let st = &s.store;
    let row = a
        .change(st, Need::Administer, "sync.target.set", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let mut mapping: Mapping = match b.mapping {
                Some(v) => serde_json::from_value(v).map_err(|e| ApiError::invalid_value(format!("mapping: {e}")))?,
                None => Mapping::default(),
            };
            if let Some(l) = b.leaver {
                mapping.leaver = override_field("leaver", l)?;
            }
            if let Some(o) = b.orphans {
                mapping.orphans = override_field("orphans", o)?;
            }
            mapping.validate().map_err(|e| ApiError::invalid_value(e.to_string()))?;
            let url = b.url.trim().to_owned();
            let rules = UrlRules { allow_http: b.allow_http };
            // The client checks the URL exactly as deliveries will, egress policy included.
            let probe = TargetConfig {
                allow_http: b.allow_http,
                ..TargetConfig::bearer(url.clone(), Secret::new("probe".into()))
            };
            ScimClient::new(probe, s.egress.clone(), st.clock.clone())
                .map_err(|e| ApiError::invalid_value(format!("url: {e}")))?;
            let oauth = match b.oauth {
                Some(o) => {
                    if o.client_secret.is_empty() || o.client_id.trim().is_empty() {
                        return Err(ApiError::invalid_value("oauth: client_id and client_secret are required"));
                    }
                    let tu = o.token_url.trim();
                    if tu.contains(char::is_whitespace) {
                        return Err(ApiError::invalid_value("oauth.token_url must be an http(s) URL"));
                    }
                    s.egress
                        .check_url(tu, rules)
                        .map_err(|e| ApiError::invalid_value(format!("oauth.token_url: {e}")))?;
                    Some((
                        OAuthSettings { token_url: o.token_url, client_id: o.client_id, scope: o.scope },
                        Secret::new(o.client_secret),
                    ))
                }
                None => None,
            };
            let users_follow_groups = mapping.users_follow_groups();
            let mapping = serde_json::to_value(&mapping).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let timeout = match &b.timeout {
                Some(t) => crate::admin::parse_duration("timeout", t)?.as_secs(),
                None => 30,
            };
            let reconcile = reconcile_schedule(b.reconcile_every.as_deref(), b.reconcile_dry_run)?;
            let t = NewSyncTarget {
                reconcile,
                bulk_max_operations: bulk_setting(b.bulk.as_ref())?,
                timeout_seconds: i64::try_from(timeout).unwrap_or(i64::MAX),
                base_url: url,
                allow_http: b.allow_http,
                oauth,
                mapping,
                max_attempts: b.max_attempts.unwrap_or(10),
                concurrency: b.concurrency.unwrap_or(4),
                users_follow_groups,
            };
            Ok(st.set_sync_target(&a.actor(), &r, t).await?)
        })
        .await?;
    Ok(Json(TargetEnvelope { trust: format!("{d}/{t}"), target: Some(typed(&row)?) }))
}

/// A mapping setting given beside the mapping (`leaver`, `orphans`): a malformed one is a
/// malformed body, as when it was part of the body's own type.
fn override_field<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid request body: {field}: {e}")))
}

/// Per target: `confirmed` once the application confirmed the deactivation or deletion,
/// `failed` when the last attempt failed (retrying, or a dead letter), else `pending`.
fn deprovision_state(w: &SyncWork) -> &'static str {
    if w.deprovisioned_at.is_some() {
        "confirmed"
    } else if w.status == "dead" || w.last_error.is_some() {
        "failed"
    } else {
        "pending"
    }
}

#[utoipa::path(get, path = "/directories/{d}/sync/status", tag = "sync", params(DirectoryPath), responses((status = 200, body = SyncStatus)))]
async fn status(a: Admin, State(s): State<AppState>, Path(d): Path<String>) -> Result<Json<SyncStatus>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "sync.status", Target::dir(&d), async {
        st.directory(&d).await?;
        let now = st.now();
        let targets = st.sync_targets(Some(&d)).await?;
        let work = st.sync_work_of(&d, None).await?;
        let mut target_rows = Vec::new();
        for t in &targets {
            let r = t.trust.to_string();
            let mine: Vec<&SyncWork> = work.iter().filter(|w| w.trust == r).collect();
            let count = |st: &str| mine.iter().filter(|w| w.status == st).count() as u64;
            let circuit = match t.circuit_open_until {
                Some(u) if u > now => "open",
                _ if t.consecutive_failures > 0 => "failing",
                _ => "closed",
            };
            target_rows.push(TargetStatus {
                pending: count("pending"),
                done: count("done"),
                dead_letters: count("dead"),
                trust: r,
                url: t.base_url.clone(),
                active: t.active,
                circuit: circuit.into(),
                circuit_open_until: ts(t.circuit_open_until),
                consecutive_failures: t.consecutive_failures,
                last_error: t.last_error.clone(),
                reconcile_every_seconds: t.reconcile_every_seconds,
                reconcile_dry_run: t.reconcile_dry_run,
                next_reconcile_at: ts(t.next_reconcile_at),
                last_reconcile: t.last_reconcile.as_ref().map(typed).transpose()?,
            });
        }
        // Leavers, per user, per target.
        // Rows come ordered by leaver_since; a user's rows share the key of their first.
        let mut first_seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        let mut users: BTreeMap<(i64, String), Vec<SyncWork>> = BTreeMap::new();
        for w in st.sync_leavers(&d).await? {
            let since = *first_seen.entry(w.resource_id.clone()).or_insert(w.leaver_since.map_or(0, |t| t.0));
            users.entry((since, w.resource_id.clone())).or_default().push(w);
        }
        let mut leavers = Vec::new();
        let mut still_active = Vec::new();
        let (mut complete_n, mut incomplete_n) = (0, 0);
        for ((_, id), rows) in &users {
            let since = rows.iter().filter_map(|w| w.leaver_since).min();
            let display = rows.iter().find_map(|w| w.display.clone());
            let complete = rows.iter().all(|w| w.deprovisioned_at.is_some());
            let completed_at = if complete { rows.iter().filter_map(|w| w.deprovisioned_at).max() } else { None };
            let took = match (since, completed_at) {
                (Some(a), Some(b)) => Some((b.0 - a.0).max(0) / 1_000_000),
                _ => None,
            };
            if complete {
                complete_n += 1;
            } else {
                incomplete_n += 1;
            }
            let per_target: Vec<LeaverTarget> = rows
                .iter()
                .map(|w| {
                    if w.deprovisioned_at.is_none() {
                        still_active.push(StillActive {
                            user_id: id.clone(),
                            user: display.clone(),
                            trust: w.trust.clone(),
                            remote_id: w.remote_id.clone(),
                            state: deprovision_state(w).into(),
                        });
                    }
                    LeaverTarget {
                        trust: w.trust.clone(),
                        state: deprovision_state(w).into(),
                        confirmed_at: ts(w.deprovisioned_at),
                        attempts: w.attempts,
                        last_error: w.last_error.clone(),
                        dead_letter: w.status == "dead",
                        next_attempt_at: if w.deprovisioned_at.is_none() { ts(Some(w.next_attempt_at)) } else { None },
                    }
                })
                .collect();
            leavers.push(Leaver {
                user_id: id.clone(),
                user: display,
                deleted: rows.iter().any(|w| w.deleted),
                since: ts(since),
                complete,
                completed_at: ts(completed_at),
                seconds_to_full_deprovisioning: took,
                targets: per_target,
            });
        }
        Ok(SyncStatus {
            directory: d.clone(),
            now: now.to_rfc3339(),
            outbox: st.outbox_len().await?,
            targets: target_rows,
            deprovisioning: Deprovisioning { complete: complete_n, incomplete: incomplete_n, users: leavers },
            still_active,
        })
    })
    .await
}

#[utoipa::path(get, path = "/directories/{d}/sync/dead-letters", tag = "sync", params(DirectoryPath), responses((status = 200, body = DeadLetterList)))]
async fn dead_letters(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "sync.dead_letter.list", Target::dir(&d), async {
        let rows = st.sync_work_of(&d, Some("dead")).await?;
        Ok(DeadLetterList { directory: d.clone(), dead_letters: rows.iter().map(doc).collect::<Result<_, _>>()? })
    })
    .await
}

#[utoipa::path(post, path = "/directories/{d}/sync/dead-letters/retry", tag = "sync", params(DirectoryPath), request_body = DeadLetterFilter, responses((status = 200, body = DeadLettersRetried)))]
async fn retry_dead_letters(
    a: Admin,
    s: State<AppState>,
    d: Path<String>,
    body: Result<ApiJson<DeadLetterFilter>, ApiError>,
) -> Result<Json<DeadLettersRetried>, ApiError> {
    let (directory, retried) = act_on_dead_letters(a, s, d, body, true).await?;
    Ok(Json(DeadLettersRetried { directory, retried }))
}

#[utoipa::path(post, path = "/directories/{d}/sync/dead-letters/discard", tag = "sync", params(DirectoryPath), request_body = DeadLetterFilter, responses((status = 200, body = DeadLettersDiscarded)))]
async fn discard_dead_letters(
    a: Admin,
    s: State<AppState>,
    d: Path<String>,
    body: Result<ApiJson<DeadLetterFilter>, ApiError>,
) -> Result<Json<DeadLettersDiscarded>, ApiError> {
    let (directory, discarded) = act_on_dead_letters(a, s, d, body, false).await?;
    Ok(Json(DeadLettersDiscarded { directory, discarded }))
}

async fn act_on_dead_letters(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    body: Result<ApiJson<DeadLetterFilter>, ApiError>,
    retry: bool,
) -> Result<(String, u64), ApiError> {
    let st = &s.store;
    let action = if retry { "sync.dead_letter.retry" } else { "sync.dead_letter.discard" };
    let n = a
        .change(st, Need::Operate, action, Target::dir(&d), async {
            let ApiJson(b) = body?;
            if let Some(t) = &b.trust {
                trust_ref(&d, t)?;
            }
            let f = fedkey_store::ops::DeadLetterFilter { trust: b.trust, resource_id: b.resource_id };
            let n = if retry {
                st.retry_dead_letters(&a.actor(), &d, &f).await?
            } else {
                st.discard_dead_letters(&a.actor(), &d, &f).await?
            };
            Ok(n)
        })
        .await?;
    Ok((d, n))
}

/// Compares the trust's target with the directory and repairs the drift (`dry_run`: only
/// the plan). Audited by the reconciliation itself (`sync.reconcile.*`).
#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/reconcile", tag = "sync", params(TrustPath), request_body = ReconcileRequest, responses((status = 200, body = ReconcileEnvelope)))]
async fn reconcile(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<ReconcileRequest>, ApiError>,
) -> Result<Json<ReconcileEnvelope>, ApiError> {
    let st = &s.store;
    let Some(sync) = &s.sync else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "provisioning is not running",
        ));
    };
    let report = a
        .change(st, Need::Operate, "sync.reconcile", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            sync.reconcile(&a.actor(), &r, b.dry_run).await.map_err(|e| match e {
                ReconcileError::NoTarget(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string()),
                ReconcileError::Target(_) => {
                    ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::TargetFailed, e.to_string())
                }
                ReconcileError::Suspended(_) => {
                    ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidState, e.to_string())
                }
                ReconcileError::Store(e) => e.into(),
            })
        })
        .await?;
    Ok(Json(ReconcileEnvelope { reconcile: typed(&report)? }))
}
