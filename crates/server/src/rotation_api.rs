//! Admin API of the rotation engine: policies, connectors, rotations, health, and the
//! single-use wrapped-link retrieval endpoint.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use fedkey_core::RotationKind;
use fedkey_core::rotation::RotationPolicy;
use fedkey_crypto::Secret;
use fedkey_rotation::alert::AlertKind;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::UnwrapRefusal;
use fedkey_store::{Actor, Rotation};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::AppState;
use crate::admin::{Admin, Need, Target, parse_duration, trust_ref};
use crate::error::ApiError;
use crate::extract::ApiJson;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/directories/{d}/trusts/{t}/rotation", get(show_rotation))
        .route("/directories/{d}/trusts/{t}/rotation/policy", get(get_policy).put(put_policy))
        .route("/directories/{d}/trusts/{t}/rotation/start", post(start_rotation))
        .route("/directories/{d}/trusts/{t}/rotation/retry", post(retry_rotation))
        .route("/directories/{d}/trusts/{t}/rotation/cancel", post(cancel_rotation))
        .route("/directories/{d}/trusts/{t}/connectors", get(list_connectors).post(add_connector))
        .route("/directories/{d}/trusts/{t}/connectors/{name}", delete(remove_connector))
        .route("/directories/{d}/trusts/{t}/material", get(show_material))
        .route("/directories/{d}/trusts/{t}/material/source", axum::routing::put(set_source).delete(remove_source))
        .route("/directories/{d}/trusts/{t}/material/approve", post(approve_material))
        .route("/directories/{d}/trusts/{t}/material/reject", post(reject_material))
        .route("/health", get(health))
        .route("/health/trusts", get(trust_health))
}

/// The retrieval endpoint of wrapped links, outside `/api/v1`: whoever holds the link
/// holds the key, no admin token involved.
pub fn unwrap_routes() -> Router<AppState> {
    Router::new().route("/unwrap/{token}", get(describe_unwrap).post(unwrap))
}

fn rotation_json(r: &Rotation) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["ref"] = json!(r.trust_ref().to_string());
    v
}

async fn show_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "rotation.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let history = st.rotations(&r, 10).await?;
        let active = history.iter().find(|x| x.is_active()).map(rotation_json);
        Ok(json!({
            "trust": r.to_string(),
            "policy": st.rotation_policy(&r).await?,
            "active": active,
            "history": history.iter().map(rotation_json).collect::<Vec<_>>(),
            "connectors": st.list_connectors(&r).await?,
        }))
    })
    .await
}

async fn get_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "rotation.policy.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        Ok(json!({"trust": r.to_string(), "policy": st.rotation_policy(&r).await?}))
    })
    .await
}

/// Sets the policy. Fields left out keep their current value (or the default).
async fn put_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<serde_json::Map<String, Value>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let row = a
        .change(st, Need::Operate, "rotation.policy.set", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(patch) = body?;
            let base = st.rotation_policy(&r).await?.map(|p| p.policy).unwrap_or_default();
            let mut merged = serde_json::to_value(base).map_err(|e| ApiError::bad_request(e.to_string()))?;
            for (k, v) in patch {
                merged[k] = v;
            }
            let policy: RotationPolicy =
                serde_json::from_value(merged).map_err(|e| ApiError::invalid_value(format!("rotation policy: {e}")))?;
            Ok(st.set_rotation_policy(&a.actor(), &r, policy).await?)
        })
        .await?;
    Ok(Json(json!({"trust": format!("{d}/{t}"), "policy": row})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// `manual` (default) or `emergency` (old versions revoked at once).
    #[serde(default)]
    kind: Option<RotationKind>,
    #[serde(default)]
    overlap: Option<String>,
}

async fn start_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.start", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: StartBody = crate::extract::optional_json(body)?;
            let kind = b.kind.unwrap_or(RotationKind::Manual);
            if !matches!(kind, RotationKind::Manual | RotationKind::Emergency) {
                return Err(ApiError::invalid_value("kind: manual or emergency"));
            }
            let overlap = b.overlap.as_deref().map(|o| parse_duration("overlap", o)).transpose()?;
            if let Some(o) = overlap {
                fedkey_core::rotation::check_overlap(o).map_err(ApiError::invalid_value)?;
            }
            Ok(st.start_rotation(&a.actor(), &r, kind, overlap).await?)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"rotation": rotation_json(&rot)}))))
}

async fn retry_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.retry", Target::trust(&d, &t), async {
            Ok(st.retry_rotation(&a.actor(), &trust_ref(&d, &t)?).await?)
        })
        .await?;
    Ok(Json(json!({"rotation": rotation_json(&rot)})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.cancel", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: CancelBody = crate::extract::optional_json(body)?;
            let reason = b.reason.unwrap_or_else(|| "canceled by an operator".into());
            if reason.len() > 500 {
                return Err(ApiError::invalid_value("reason: at most 500 bytes"));
            }
            Ok(st.cancel_rotation(&a.actor(), &r, &reason).await?)
        })
        .await?;
    Ok(Json(json!({"rotation": rotation_json(&rot)})))
}

async fn list_connectors(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "connector.list", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        Ok(json!({"trust": r.to_string(), "connectors": st.list_connectors(&r).await?}))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddConnector {
    name: String,
    /// Non-secret settings, with `kind`.
    spec: Value,
    /// The secret part (API token, client secret…), with the same `kind`. Sealed at rest.
    #[serde(default)]
    credentials: Option<Zeroizing<String>>,
}

/// Connectors decide where keys go, so only admins configure them.
async fn add_connector(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<AddConnector>, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let st = &s.store;
    let row = a
        .change(st, Need::Administer, "connector.create", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let creds = b.credentials.map(|c| Secret::new(c.to_string()));
            let (kind, spec) = fedkey_rotation::wiring::check(
                &b.spec,
                creds.as_ref(),
                &s.egress,
                s.engine.as_ref().and_then(|e| e.delivery_root()),
            )
            .map_err(ApiError::invalid_value)?;
            Ok(st.add_connector(&a.actor(), &r, &b.name, &kind, spec, creds).await?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"connector": row}))))
}

async fn remove_connector(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t, name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "connector.delete", Target::trust(&d, &t), async {
        Ok(st.remove_connector(&a.actor(), &trust_ref(&d, &t)?, &name).await?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole health model (trusts, sync targets, connectors, outbox, audit log): what
/// `fedkey doctor` prints. Any admin role (auditors included) may read it.
async fn health(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "health.read", Target::default(), async {
        let report = fedkey_rotation::health::check(st).await?;
        serde_json::to_value(report).map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await
}

async fn trust_health(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "health.trusts", Target::default(), async {
        let report = fedkey_rotation::health::check(st).await?;
        serde_json::to_value(report).map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await
}

// ---- trust material ----

async fn show_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "material.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let source = st.trust_sources().await?.into_iter().find(|x| x.trust == r);
        Ok(json!({
            "trust": r.to_string(),
            "source": source,
            "versions": st.material_versions(&r, 20).await?,
        }))
    })
    .await
}

/// Where the peer publishes its keys, and whether its JWTs authenticate: admin only.
async fn set_source(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let src = a
        .change(st, Need::Administer, "material.source.set", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(v) = body?;
            let cfg = fedkey_rotation::SourceConfig::parse(&v, &s.egress).map_err(ApiError::invalid_value)?;
            let trust = st.trust(&r).await?;
            if cfg.jwt.is_some() && trust.direction != fedkey_core::Direction::Inbound {
                return Err(ApiError::invalid_value("jwt: only inbound trusts accept assertions"));
            }
            let normalised = serde_json::to_value(&cfg).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(st.set_trust_source(&a.actor(), &r, normalised).await?)
        })
        .await?;
    if let Some(w) = &s.watchers {
        w.sync_sources().await?;
    }
    Ok(Json(json!({"source": src})))
}

async fn remove_source(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "material.source.delete", Target::trust(&d, &t), async {
        Ok(st.remove_trust_source(&a.actor(), &trust_ref(&d, &t)?).await?)
    })
    .await?;
    if let Some(w) = &s.watchers {
        w.sync_sources().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn approve_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    decide(a, s, d, t, true).await
}

async fn reject_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    decide(a, s, d, t, false).await
}

/// Accepting keys that share nothing with the trusted ones is a trust decision: admin only.
async fn decide(a: Admin, s: AppState, d: String, t: String, approve: bool) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let action = if approve { "material.approve" } else { "material.reject" };
    let v = a
        .change(st, Need::Administer, action, Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let Some(w) = &s.watchers else {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "watchers are not running"));
            };
            Ok(if approve { w.approve(&a.actor(), &r).await? } else { w.reject(&a.actor(), &r).await? })
        })
        .await?;
    Ok(Json(json!({"trust": format!("{d}/{t}"), "version": v})))
}

// ---- wrapped links ----

/// A GET never reveals the key: chat tools and mail scanners fetch links to preview
/// them, which would burn a single-use link.
async fn describe_unwrap() -> Json<Value> {
    Json(json!({
        "message": "This is a single-use fedkey key link. POST to this URL to reveal the key; it works once.",
    }))
}

async fn unwrap(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    meta: Option<axum::Extension<RequestMeta>>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let meta = meta.map(|m| m.0).unwrap_or_default();
    let actor = Actor {
        id: "wrapped-link".into(),
        role: None,
        source: meta.source.clone().or_else(|| Some(peer.ip().to_string())),
        request_id: meta.request_id.clone(),
        token_id: None,
    };
    if token.len() > 200 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such link"));
    }
    match s.store.unwrap_key(&actor, &token).await? {
        Ok((r, version, key)) => Ok(Json(json!({"trust": r.to_string(), "version": version, "key": key.expose()}))),
        Err(UnwrapRefusal::Unknown) => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such link")),
        Err(UnwrapRefusal::Expired { .. }) => {
            Err(ApiError::new(StatusCode::GONE, "link_expired", "this link has expired; ask for a new one"))
        }
        Err(UnwrapRefusal::Reused { trust, version, used_at }) => {
            if let Some(engine) = &s.engine {
                engine
                    .alerts()
                    .raise(
                        AlertKind::WrappedLinkReused,
                        json!({"trust": trust.to_string(), "version": version, "first_used_at": used_at.to_rfc3339(),
                               "source": actor.source}),
                    )
                    .await;
            }
            Err(ApiError::new(
                StatusCode::GONE,
                "link_used",
                "this link was already used; if that was not you, the key may be compromised: rotate it now",
            ))
        }
    }
}
