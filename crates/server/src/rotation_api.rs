//! Admin API of the rotation engine: policies, connectors, rotations, health, and the
//! single-use wrapped-link retrieval endpoint.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fedkey_api::rotation::{
    AddConnector, CancelRotation, ConnectorEnvelope, ConnectorList, HealthReport, MaterialDecision, MaterialOverview,
    MaterialSourceEnvelope, MaterialSourceRequest, RotationEnvelope, RotationOverview, RotationPolicyEnvelope,
    RotationPolicyPatch, StartRotation, UnwrapNotice, UnwrappedKey,
};
use fedkey_core::RotationKind;
use fedkey_core::rotation::RotationPolicy;
use fedkey_crypto::Secret;
use fedkey_rotation::alert::AlertKind;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::UnwrapRefusal;
use fedkey_store::{Actor, Rotation};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target, doc, parse_duration, trust_ref, typed};
use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;
use fedkey_api::{TrustPath, rotation::ConnectorPath};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show_rotation))
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(start_rotation))
        .routes(routes!(retry_rotation))
        .routes(routes!(cancel_rotation))
        .routes(routes!(list_connectors, add_connector))
        .routes(routes!(remove_connector))
        .routes(routes!(show_material))
        .routes(routes!(set_source, remove_source))
        .routes(routes!(approve_material))
        .routes(routes!(reject_material))
        .routes(routes!(health))
        .routes(routes!(trust_health))
}

/// The retrieval endpoint of wrapped links, outside `/api/v1`: whoever holds the link
/// holds the key, no admin token involved.
pub fn unwrap_routes() -> Router<AppState> {
    Router::new().route("/unwrap/{token}", get(describe_unwrap).post(unwrap))
}

/// A rotation as stored, with the `ref` of its trust.
fn rotation_doc(r: &Rotation) -> Result<Value, ApiError> {
    let mut v = doc(r)?;
    v["ref"] = json!(r.trust_ref().to_string());
    Ok(v)
}

fn rotation_envelope(r: &Rotation) -> Result<Json<RotationEnvelope>, ApiError> {
    Ok(Json(RotationEnvelope { rotation: rotation_doc(r)? }))
}

fn docs<T: serde::Serialize>(xs: &[T]) -> Result<Vec<Value>, ApiError> {
    xs.iter().map(doc).collect()
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/rotation", tag = "rotation", params(TrustPath), responses((status = 200, body = RotationOverview)))]
async fn show_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<RotationOverview>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "rotation.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let history = st.rotations(&r, 10).await?;
        let active = history.iter().find(|x| x.is_active()).map(rotation_doc).transpose()?;
        Ok(RotationOverview {
            trust: r.to_string(),
            policy: st.rotation_policy(&r).await?.as_ref().map(doc).transpose()?,
            active,
            history: history.iter().map(rotation_doc).collect::<Result<_, _>>()?,
            connectors: docs(&st.list_connectors(&r).await?)?,
        })
    })
    .await
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/rotation/policy", tag = "rotation", params(TrustPath), responses((status = 200, body = RotationPolicyEnvelope)))]
async fn get_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<RotationPolicyEnvelope>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "rotation.policy.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        Ok(RotationPolicyEnvelope {
            trust: r.to_string(),
            policy: st.rotation_policy(&r).await?.as_ref().map(doc).transpose()?,
        })
    })
    .await
}

/// Sets the policy. Fields left out keep their current value (or the default).
#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/rotation/policy", tag = "rotation", params(TrustPath), request_body = RotationPolicyPatch, responses((status = 200, body = RotationPolicyEnvelope)))]
async fn put_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<RotationPolicyPatch>, ApiError>,
) -> Result<Json<RotationPolicyEnvelope>, ApiError> {
    let st = &s.store;
    let row = a
        .change(st, Need::Operate, "rotation.policy.set", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(RotationPolicyPatch(patch)) = body?;
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
    Ok(Json(RotationPolicyEnvelope { trust: format!("{d}/{t}"), policy: Some(doc(&row)?) }))
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/rotation/start", tag = "rotation", params(TrustPath), request_body(content = StartRotation, description = "optional"), responses((status = 202, body = RotationEnvelope)))]
async fn start_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<RotationEnvelope>), ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.start", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: StartRotation = crate::extract::optional_json(body)?;
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
    Ok((StatusCode::ACCEPTED, rotation_envelope(&rot)?))
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/rotation/retry", tag = "rotation", params(TrustPath), responses((status = 200, body = RotationEnvelope)))]
async fn retry_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<RotationEnvelope>, ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.retry", Target::trust(&d, &t), async {
            Ok(st.retry_rotation(&a.actor(), &trust_ref(&d, &t)?).await?)
        })
        .await?;
    rotation_envelope(&rot)
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/rotation/cancel", tag = "rotation", params(TrustPath), request_body(content = CancelRotation, description = "optional"), responses((status = 200, body = RotationEnvelope)))]
async fn cancel_rotation(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RotationEnvelope>, ApiError> {
    let st = &s.store;
    let rot = a
        .change(st, Need::Operate, "rotation.cancel", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: CancelRotation = crate::extract::optional_json(body)?;
            let reason = b.reason.unwrap_or_else(|| "canceled by an operator".into());
            if reason.len() > 500 {
                return Err(ApiError::invalid_value("reason: at most 500 bytes"));
            }
            Ok(st.cancel_rotation(&a.actor(), &r, &reason).await?)
        })
        .await?;
    rotation_envelope(&rot)
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/connectors", tag = "connectors", params(TrustPath), responses((status = 200, body = ConnectorList)))]
async fn list_connectors(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<ConnectorList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "connector.list", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        Ok(ConnectorList { trust: r.to_string(), connectors: docs(&st.list_connectors(&r).await?)? })
    })
    .await
}

/// Connectors decide where keys go, so only admins configure them.
#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/connectors", tag = "connectors", params(TrustPath), request_body = AddConnector, responses((status = 201, body = ConnectorEnvelope)))]
async fn add_connector(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<AddConnector>, ApiError>,
) -> Result<(StatusCode, Json<ConnectorEnvelope>), ApiError> {
    let st = &s.store;
    let row = a
        .change(st, Need::Administer, "connector.create", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let creds = b.credentials.map(Secret::new);
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
    Ok((StatusCode::CREATED, Json(ConnectorEnvelope { connector: doc(&row)? })))
}

#[utoipa::path(delete, path = "/directories/{d}/trusts/{t}/connectors/{name}", tag = "connectors", params(ConnectorPath), responses((status = 204, description = "removed")))]
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
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = HealthReport)))]
async fn health(a: Admin, State(s): State<AppState>) -> Result<Json<HealthReport>, ApiError> {
    health_report(a, s, "health.read").await
}

#[utoipa::path(get, path = "/health/trusts", tag = "health", responses((status = 200, body = HealthReport)))]
async fn trust_health(a: Admin, State(s): State<AppState>) -> Result<Json<HealthReport>, ApiError> {
    health_report(a, s, "health.trusts").await
}

async fn health_report(a: Admin, s: AppState, action: &str) -> Result<Json<HealthReport>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, action, Target::default(), async {
        typed::<HealthReport>(&fedkey_rotation::health::check(st).await?)
    })
    .await
}

// ---- trust material ----

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/material", tag = "material", params(TrustPath), responses((status = 200, body = MaterialOverview)))]
async fn show_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<MaterialOverview>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "material.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let source = st.trust_sources().await?.into_iter().find(|x| x.trust == r);
        Ok(MaterialOverview {
            trust: r.to_string(),
            source: source.as_ref().map(typed).transpose()?,
            versions: docs(&st.material_versions(&r, 20).await?)?,
        })
    })
    .await
}

/// Where the peer publishes its keys, and whether its JWTs authenticate: admin only.
#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/material/source", tag = "material", params(TrustPath), request_body = MaterialSourceRequest, responses((status = 200, body = MaterialSourceEnvelope)))]
async fn set_source(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<MaterialSourceRequest>, ApiError>,
) -> Result<Json<MaterialSourceEnvelope>, ApiError> {
    let st = &s.store;
    let src = a
        .change(st, Need::Administer, "material.source.set", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(MaterialSourceRequest(v)) = body?;
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
    Ok(Json(MaterialSourceEnvelope { source: typed(&src)? }))
}

#[utoipa::path(delete, path = "/directories/{d}/trusts/{t}/material/source", tag = "material", params(TrustPath), responses((status = 204, description = "removed")))]
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

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/material/approve", tag = "material", params(TrustPath), responses((status = 200, body = MaterialDecision)))]
async fn approve_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<MaterialDecision>, ApiError> {
    decide(a, s, d, t, true).await
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/material/reject", tag = "material", params(TrustPath), responses((status = 200, body = MaterialDecision)))]
async fn reject_material(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<MaterialDecision>, ApiError> {
    decide(a, s, d, t, false).await
}

/// Accepting keys that share nothing with the trusted ones is a trust decision: admin only.
async fn decide(
    a: Admin,
    s: AppState,
    d: String,
    t: String,
    approve: bool,
) -> Result<Json<MaterialDecision>, ApiError> {
    let st = &s.store;
    let action = if approve { "material.approve" } else { "material.reject" };
    let v = a
        .change(st, Need::Administer, action, Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let Some(w) = &s.watchers else {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "watchers are not running",
                ));
            };
            Ok(if approve { w.approve(&a.actor(), &r).await? } else { w.reject(&a.actor(), &r).await? })
        })
        .await?;
    Ok(Json(MaterialDecision { trust: format!("{d}/{t}"), version: doc(&v)? }))
}

// ---- wrapped links ----

/// A GET never reveals the key: chat tools and mail scanners fetch links to preview
/// them, which would burn a single-use link.
async fn describe_unwrap() -> Json<UnwrapNotice> {
    Json(UnwrapNotice {
        message: "This is a single-use fedkey key link. POST to this URL to reveal the key; it works once.".into(),
    })
}

async fn unwrap(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    meta: Option<axum::Extension<RequestMeta>>,
    Path(token): Path<String>,
) -> Result<Json<UnwrappedKey>, ApiError> {
    let meta = meta.map(|m| m.0).unwrap_or_default();
    let actor = Actor {
        id: "wrapped-link".into(),
        role: None,
        source: meta.source.clone().or_else(|| Some(peer.ip().to_string())),
        request_id: meta.request_id.clone(),
        token_id: None,
    };
    if token.len() > 200 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such link"));
    }
    match s.store.unwrap_key(&actor, &token).await? {
        Ok((r, version, key)) => {
            Ok(Json(UnwrappedKey { trust: r.to_string(), version, key: key.expose().to_string() }))
        }
        Err(UnwrapRefusal::Unknown) => Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such link")),
        Err(UnwrapRefusal::Expired { .. }) => {
            Err(ApiError::new(StatusCode::GONE, ErrorCode::LinkExpired, "this link has expired; ask for a new one"))
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
                ErrorCode::LinkUsed,
                "this link was already used; if that was not you, the key may be compromised: rotate it now",
            ))
        }
    }
}
