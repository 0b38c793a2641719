//! The admin API under `/api/v1`, authenticated by admin tokens with a role. Every
//! request is audited: changes inside their own transaction, reads and denials through
//! the group committer — and a request whose record cannot be written is refused.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use fedkey_audit::Outcome;
use fedkey_core::{Direction, PeerKind, Role, Timestamp, TrustRef, TrustStatus};
use fedkey_crypto::Secret;
use fedkey_store::audit::AuditFilter;
use fedkey_store::audit::Touch;
use fedkey_store::auth::{AdminPrincipal, RequestMeta};
use fedkey_store::ops::{NewTrust, RotateKey};
use fedkey_store::{Actor, KeyVersion, Store, TrustPolicy};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;

pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/directories", get(list_directories).post(create_directory))
        .route("/directories/{d}", get(get_directory).delete(delete_directory))
        .route("/directories/{d}/trusts", get(list_trusts).post(create_trust))
        .route("/directories/{d}/trusts/{t}", get(get_trust).delete(delete_trust))
        .route("/directories/{d}/trusts/{t}/suspend", post(suspend_trust))
        .route("/directories/{d}/trusts/{t}/resume", post(resume_trust))
        .route("/directories/{d}/trusts/{t}/policy", axum::routing::put(set_policy))
        .route("/directories/{d}/trusts/{t}/scopes", axum::routing::put(set_scopes))
        .route("/directories/{d}/trusts/{t}/keys", get(list_keys))
        .route("/directories/{d}/trusts/{t}/keys/rotate", post(rotate_key))
        .route("/directories/{d}/trusts/{t}/keys/{v}/revoke", post(revoke_key))
        .route("/trusts", get(list_all_trusts))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{name}/revoke", post(revoke_token))
        .route("/audit", get(audit_page))
        .route("/audit/verify", get(audit_verify))
        .merge(crate::audit_api::routes())
        .merge(crate::rotation_api::routes())
        .merge(crate::sync_api::routes());
    #[cfg(feature = "test-hooks")]
    let routes = routes.merge(crate::test_hooks::routes());
    crate::body_limit::limit(routes, crate::ADMIN_BODY_LIMIT)
        // Import has its own, larger limit.
        .merge(crate::import::routes())
        .merge(crate::leaks::routes())
        .fallback(crate::error::not_found)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
}

/// What a role must be able to do for an endpoint.
#[derive(Clone, Copy)]
pub(crate) enum Need {
    Read,
    Operate,
    Administer,
    Audit,
}

/// What a request is about, for the audit record's directory and trust columns.
#[derive(Default, Clone)]
pub(crate) struct Target {
    directory: Option<String>,
    trust: Option<String>,
}

impl Target {
    pub(crate) fn dir(d: &str) -> Target {
        Target { directory: Some(cut(d)), trust: None }
    }
    pub(crate) fn trust(d: &str, t: &str) -> Target {
        Target { directory: Some(cut(d)), trust: Some(cut(t)) }
    }
}

/// Names from the request may be invalid and long; the audit keeps a bounded prefix.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// An authenticated admin request.
pub struct Admin {
    who: AdminPrincipal,
    meta: RequestMeta,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
        Admin::authenticate(&s.store, &parts.headers, meta).await
    }
}

impl Admin {
    /// Authenticates the bearer admin token of a request (a failure is audited).
    pub(crate) async fn authenticate(
        store: &Store,
        headers: &axum::http::HeaderMap,
        meta: RequestMeta,
    ) -> Result<Admin, ApiError> {
        match store.authenticate_admin(crate::scim::bearer(headers), &meta).await {
            Ok(Ok(who)) => Ok(Admin { who, meta }),
            Ok(Err(_)) => Err(ApiError::unauthorized()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor::token(&self.who, &self.meta)
    }

    fn allowed(&self, need: Need) -> bool {
        let r = self.who.role;
        match need {
            Need::Read => r.can_read(),
            Need::Operate => r.can_operate(),
            Need::Administer => r.can_administer(),
            Need::Audit => r.can_audit(),
        }
    }

    /// Records an outcome through the group committer (fail-closed), marking the token used.
    pub(crate) async fn record(
        &self,
        store: &Store,
        action: &str,
        outcome: Outcome,
        target: &Target,
        details: Value,
    ) -> Result<(), ApiError> {
        let mut ev = store.event(&self.actor(), action, outcome).details(details);
        ev.directory = target.directory.clone();
        ev.trust = target.trust.clone();
        store.audit.record(ev, Some(Touch::AdminToken { id: self.who.id.clone() })).await?;
        Ok(())
    }

    /// Checks the role first; a denial is audited before the 403 goes out.
    pub(crate) async fn require(
        &self,
        store: &Store,
        need: Need,
        action: &str,
        target: &Target,
    ) -> Result<(), ApiError> {
        if self.allowed(need) {
            return Ok(());
        }
        let r = self.who.role;
        self.record(store, action, Outcome::Denied, target, json!({"reason": "role", "role": r})).await?;
        Err(ApiError::forbidden(format!("role {r} may not {action}")))
    }

    /// A change: role check, then `op`. Success is audited inside the change's own
    /// transaction (by the store); a refused change is audited here as a failure.
    pub(crate) async fn change<T>(
        &self,
        store: &Store,
        need: Need,
        action: &str,
        target: Target,
        op: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.require(store, need, action, &target).await?;
        let result = op.await;
        if let Err(e) = &result
            && e.status != StatusCode::SERVICE_UNAVAILABLE
        {
            let d = json!({"code": e.code, "message": e.message, "status": e.status.as_u16()});
            self.record(store, action, Outcome::Failure, &target, d).await?;
        }
        result
    }

    /// A read: role check, then `op`, then its audit record (with outcome) — the
    /// response leaves only once that record is durable.
    pub(crate) async fn read(
        &self,
        store: &Store,
        need: Need,
        action: &str,
        target: Target,
        op: impl Future<Output = Result<Value, ApiError>>,
    ) -> Result<Json<Value>, ApiError> {
        self.require(store, need, action, &target).await?;
        let result = op.await;
        match &result {
            Ok(_) => self.record(store, action, Outcome::Success, &target, json!({})).await?,
            Err(e) => {
                let d = json!({"code": e.code, "status": e.status.as_u16()});
                self.record(store, action, Outcome::Failure, &target, d).await?
            }
        }
        result.map(Json)
    }
}

pub(crate) fn trust_ref(d: &str, t: &str) -> Result<TrustRef, ApiError> {
    format!("{d}/{t}").parse::<TrustRef>().map_err(|e| ApiError::invalid_value(e.to_string()))
}

pub(crate) fn ts(t: Option<Timestamp>) -> Value {
    t.map(|t| json!(t.to_rfc3339())).unwrap_or(Value::Null)
}

fn key_json(k: &KeyVersion, now: Timestamp) -> Value {
    json!({
        "version": k.version,
        "state": k.state_at(now),
        "scopes": k.scopes.to_vec(),
        "created_at": ts(Some(k.created_at)),
        "created_by": k.created_by,
        "activated_at": ts(k.activated_at),
        "expires_at": ts(k.expires_at),
        "revoked_at": ts(k.revoked_at),
        "last_used_at": ts(k.last_used_at),
    })
}

pub(crate) fn trust_json(t: &fedkey_store::Trust) -> Value {
    json!({
        "directory": t.directory,
        "name": t.name,
        "ref": format!("{}/{}", t.directory, t.name),
        "direction": t.direction,
        "peer_kind": t.peer_kind,
        "status": t.status,
        "scopes": t.scopes.to_vec(),
        "description": t.description,
        "created_at": ts(Some(t.created_at)),
        "created_by": t.created_by,
        "updated_at": ts(Some(t.updated_at)),
        "privileged_groups": t.policy.privileged_groups,
        "allowed_sources": t.policy.sources(),
        "rate_limit": t.policy.rate_limit,
        "leak_policy": t.leak_policy(),
        "pending_auth": t.pending_auth,
    })
}

fn dir_json(d: &fedkey_store::Directory) -> Value {
    json!({"name": d.name, "id": d.id, "created_at": ts(Some(d.created_at)), "created_by": d.created_by})
}

/// Durations as `24h`, `90m`, `0s`, `1d 12h`.
pub(crate) fn parse_duration(field: &str, s: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(s.trim())
        .map_err(|_| ApiError::invalid_value(format!("{field}: {s:?} is not a duration (e.g. 24h, 90m, 0s)")))
}

// ---- directories ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDirectory {
    name: String,
}

async fn create_directory(
    a: Admin,
    State(s): State<AppState>,
    body: Result<ApiJson<CreateDirectory>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let st = &s.store;
    let target = body.as_ref().map(|ApiJson(b)| Target::dir(&b.name)).unwrap_or_default();
    let d = a
        .change(st, Need::Administer, "directory.create", target, async {
            let ApiJson(b) = body?;
            Ok(st.create_directory(&a.actor(), &b.name).await?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(dir_json(&d))))
}

async fn list_directories(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "directory.list", Target::default(), async {
        let ds = st.list_directories().await?;
        Ok(json!({"directories": ds.iter().map(dir_json).collect::<Vec<_>>()}))
    })
    .await
}

/// A directory and what it holds (counts of trusts, users, groups, targets).
async fn get_directory(a: Admin, State(s): State<AppState>, Path(d): Path<String>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "directory.show", Target::dir(&d), async {
        let (dir, contents) = st.directory_contents(&d).await?;
        let mut v = dir_json(&dir);
        if let (Value::Object(o), Value::Object(c)) = (&mut v, json!(contents)) {
            o.extend(c);
        }
        Ok(v)
    })
    .await
}

/// Deletes a directory: 409 `directory_not_empty` while it holds anything, unless
/// `?force=true`. Answers what was deleted.
async fn delete_directory(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let deleted = a
        .change(st, Need::Administer, "directory.delete", Target::dir(&d), async {
            let force = force_query(q)?;
            Ok(st.delete_directory(&a.actor(), &d, force).await?)
        })
        .await?;
    Ok(Json(json!({"directory": d, "deleted": deleted})))
}

// ---- trusts ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTrust {
    name: String,
    direction: Direction,
    #[serde(default)]
    peer_kind: Option<PeerKind>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    /// The app-issued key of an outbound trust.
    #[serde(default)]
    key: Option<Zeroizing<String>>,
    #[serde(default)]
    privileged_groups: Vec<String>,
    #[serde(default)]
    allowed_sources: Vec<String>,
    #[serde(default)]
    rate_limit: i64,
}

async fn create_trust(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    body: Result<ApiJson<CreateTrust>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let st = &s.store;
    let target = match &body {
        Ok(ApiJson(b)) => Target::trust(&d, &b.name),
        Err(_) => Target::dir(&d),
    };
    let (trust, kv, key) = a
        .change(st, Need::Administer, "trust.create", target, async {
            let ApiJson(b) = body?;
            let scopes = match &b.scopes {
                Some(list) => {
                    Some(Store::parse_scopes(b.direction, list).map_err(|e| ApiError::invalid_value(e.to_string()))?)
                }
                None => None,
            };
            let policy = TrustPolicy::parse(&b.privileged_groups, &b.allowed_sources, b.rate_limit)?;
            let new = NewTrust {
                directory: d.clone(),
                name: b.name.clone(),
                direction: b.direction,
                peer_kind: b.peer_kind.unwrap_or(PeerKind::Generic),
                scopes,
                description: b.description.clone(),
                outbound_key: b.key.as_ref().map(|k| Secret::new(k.to_string())),
            };
            Ok(st.create_trust_with_policy(&a.actor(), new, policy).await?)
        })
        .await?;
    let mut body = json!({"trust": trust_json(&trust), "key_version": key_json(&kv, st.now())});
    if let Some(k) = key {
        // Shown exactly once: only the hash is kept.
        body["key"] = json!(k.expose());
    }
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list_trusts(a: Admin, State(s): State<AppState>, Path(d): Path<String>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.list", Target::dir(&d), async {
        let ts = st.list_trusts(Some(&d)).await?;
        Ok(json!({"trusts": ts.iter().map(trust_json).collect::<Vec<_>>()}))
    })
    .await
}

async fn list_all_trusts(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.list", Target::default(), async {
        let ts = st.list_trusts(None).await?;
        Ok(json!({"trusts": ts.iter().map(trust_json).collect::<Vec<_>>()}))
    })
    .await
}

async fn get_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let trust = st.trust(&r).await?;
        let keys = st.list_keys(&r).await?;
        let now = st.now();
        Ok(json!({"trust": trust_json(&trust), "keys": keys.iter().map(|k| key_json(k, now)).collect::<Vec<_>>()}))
    })
    .await
}

async fn delete_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let st = &s.store;
    a.change(st, Need::Administer, "trust.delete", Target::trust(&d, &t), async {
        Ok(st.delete_trust(&a.actor(), &trust_ref(&d, &t)?).await?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(a: Admin, s: AppState, d: String, t: String, status: TrustStatus) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let action = if status == TrustStatus::Active { "trust.resume" } else { "trust.suspend" };
    let trust = a
        .change(st, Need::Operate, action, Target::trust(&d, &t), async {
            Ok(st.set_trust_status(&a.actor(), &trust_ref(&d, &t)?, status).await?)
        })
        .await?;
    Ok(Json(json!({"trust": trust_json(&trust)})))
}

/// `PUT …/policy`: replaces the whole policy; omitted fields are cleared.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    privileged_groups: Vec<String>,
    #[serde(default)]
    allowed_sources: Vec<String>,
    #[serde(default)]
    rate_limit: i64,
}

/// Widens or narrows what a trust's keys may do, so it needs the admin role.
async fn set_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<PolicyBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let trust = a
        .change(st, Need::Administer, "trust.policy", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let policy = TrustPolicy::parse(&b.privileged_groups, &b.allowed_sources, b.rate_limit)?;
            Ok(st.set_trust_policy(&a.actor(), &r, policy).await?)
        })
        .await?;
    Ok(Json(json!({"trust": trust_json(&trust)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopesBody {
    scopes: Vec<String>,
}

/// Widens or narrows what a trust's keys may do: admin only, like the policy.
async fn set_scopes(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<ScopesBody>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let trust = a
        .change(st, Need::Administer, "trust.scopes", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let scopes =
                fedkey_core::ScopeSet::parse_list(&b.scopes).map_err(|e| ApiError::invalid_value(e.to_string()))?;
            Ok(st.set_trust_scopes(&a.actor(), &r, scopes).await?)
        })
        .await?;
    Ok(Json(json!({"trust": trust_json(&trust)})))
}

async fn suspend_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_status(a, s, d, t, TrustStatus::Suspended).await
}

async fn resume_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_status(a, s, d, t, TrustStatus::Active).await
}

// ---- keys ----

async fn list_keys(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "key.list", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let keys = st.list_keys(&r).await?;
        let now = st.now();
        Ok(json!({"trust": r.to_string(), "keys": keys.iter().map(|k| key_json(k, now)).collect::<Vec<_>>()}))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the old version keeps working; default 24h, `0s` for an emergency.
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    key: Option<Zeroizing<String>>,
    /// Return a single-use retrieval link valid this long instead of the key itself.
    #[serde(default)]
    wrap: Option<String>,
}

async fn rotate_key(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let (kv, key, wrap) = a
        .change(st, Need::Operate, "key.rotate", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: RotateBody = crate::extract::optional_json(body)?;
            let wrap = b.wrap.as_deref().map(|w| parse_duration("wrap", w)).transpose()?;
            if let Some(w) = wrap
                && (w.is_zero() || w > fedkey_store::ops::MAX_WRAP_TTL)
            {
                return Err(ApiError::invalid_value("wrap: between 1s and 7d"));
            }
            let overlap = match &b.overlap {
                Some(o) => parse_duration("overlap", o)?,
                None => Duration::from_secs(24 * 3600),
            };
            fedkey_core::rotation::check_overlap(overlap).map_err(ApiError::invalid_value)?;
            let req = RotateKey { overlap, outbound_key: b.key.map(|k| Secret::new(k.to_string())) };
            if wrap.is_some() && req.outbound_key.is_some() {
                return Err(ApiError::invalid_value(
                    "wrap: only fedkey-generated (inbound) keys are handed over through a link",
                ));
            }
            let (kv, key) = st.rotate_key(&a.actor(), &r, req).await?;
            // The key is sealed behind the link in the same request; its plaintext never leaves.
            let wrapped = match (wrap, key.as_ref()) {
                (Some(ttl), Some(k)) => Some(st.wrap_key(&a.actor(), &r, kv.version, k, ttl).await?),
                _ => None,
            };
            Ok((kv, key, wrapped))
        })
        .await?;
    let mut out = json!({"trust": format!("{d}/{t}"), "key_version": key_json(&kv, st.now())});
    match (wrap, key) {
        (Some(w), _) => {
            out["wrapped_link"] = json!({
                "url": format!("{}/unwrap/{}", s.public_url.trim_end_matches('/'), w.token.expose()),
                "expires_at": w.expires_at.to_rfc3339(),
                "single_use": true,
            });
        }
        (None, Some(k)) => out["key"] = json!(k.expose()),
        (None, None) => {}
    }
    Ok(Json(out))
}

/// `?force=true`: what a refusal to protect the operator (a 409 with its own code) lets through.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

fn force_query(q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>) -> Result<bool, ApiError> {
    q.map(|Query(q)| q.force).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Refuses to revoke the last usable version without `?force=true` (409 `last_usable_key`);
/// an expired version is left as it is (200, `"unchanged": true`).
async fn revoke_key(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t, v)): Path<(String, String, String)>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let kv = a
        .change(st, Need::Operate, "key.revoke", Target::trust(&d, &t), async {
            let force = force_query(q)?;
            let r = trust_ref(&d, &t)?;
            let v: i64 = v
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::invalid_value("version must be a positive integer"))?;
            Ok(st.revoke_version(&a.actor(), &r, v, force).await?)
        })
        .await?;
    let unchanged = kv.state == fedkey_core::KeyState::Expired;
    Ok(Json(json!({"trust": format!("{d}/{t}"), "key_version": key_json(&kv, st.now()), "unchanged": unchanged})))
}

// ---- admin tokens ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Role,
    #[serde(default)]
    ttl: Option<String>,
}

fn token_json(t: &fedkey_store::AdminToken) -> Value {
    json!({
        "name": t.name, "role": t.role, "created_at": ts(Some(t.created_at)), "created_by": t.created_by,
        "expires_at": ts(t.expires_at), "revoked_at": ts(t.revoked_at), "last_used_at": ts(t.last_used_at),
    })
}

async fn create_token(
    a: Admin,
    State(s): State<AppState>,
    body: Result<ApiJson<CreateToken>, ApiError>,
) -> Result<impl IntoResponse, ApiError> {
    let st = &s.store;
    let (t, secret) = a
        .change(st, Need::Administer, "token.create", Target::default(), async {
            let ApiJson(b) = body?;
            let ttl = b.ttl.as_deref().map(|t| parse_duration("ttl", t)).transpose()?;
            Ok(st.create_admin_token(&a.actor(), &b.name, b.role, ttl).await?)
        })
        .await?;
    let mut body = token_json(&t);
    body["token"] = json!(secret.expose());
    Ok((StatusCode::CREATED, Json(body)))
}

/// Admin credentials are listed to admins only, even as metadata.
async fn list_tokens(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Administer, "token.list", Target::default(), async {
        let ts = st.list_admin_tokens().await?;
        Ok(json!({"tokens": ts.iter().map(token_json).collect::<Vec<_>>()}))
    })
    .await
}

async fn revoke_token(a: Admin, State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    let t = a
        .change(st, Need::Administer, "token.revoke", Target::default(), async {
            Ok(st.revoke_admin_token(&a.actor(), &name).await?)
        })
        .await?;
    Ok(Json(token_json(&t)))
}

// ---- audit ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    directory: Option<String>,
    trust: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub(crate) fn parse_time(field: &str, s: &Option<String>) -> Result<Option<Timestamp>, ApiError> {
    s.as_deref()
        .map(|v| {
            Timestamp::parse_rfc3339(v).ok_or_else(|| {
                ApiError::invalid_value(format!("{field}: expected RFC 3339 time, e.g. 2026-11-28T00:00:00Z"))
            })
        })
        .transpose()
}

async fn audit_page(
    a: Admin,
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Audit, "audit.read", Target::default(), async {
        let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid_value("limit must be between 1 and 1000"));
        }
        let f = AuditFilter {
            since: parse_time("since", &q.since)?,
            until: parse_time("until", &q.until)?,
            directory: q.directory,
            trust: q.trust,
            actor: q.actor,
            action: q.action,
            after_seq: q.after,
            limit,
        };
        let records = fedkey_store::audit::query(&st.db, &f).await?;
        let next = (records.len() as i64 == limit).then(|| records.last().map(|r| r.seq)).flatten();
        Ok(json!({"records": records.iter().map(|r| r.to_json()).collect::<Vec<_>>(), "next_after": next}))
    })
    .await
}

async fn audit_verify(a: Admin, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Audit, "audit.verify", Target::default(), async {
        let pk = hex::encode(st.install.public_key);
        Ok(match fedkey_store::audit::verify(&st.db, &st.install.id, &st.install.public_key).await? {
            Ok(rep) => json!({"ok": true, "records": rep.records, "checkpoints": rep.checkpoints,
                "head": hex::encode(rep.head_hash), "origin": st.install.id, "public_key": pk}),
            Err(e) => json!({"ok": false, "seq": e.seq, "error": e.to_string()}),
        })
    })
    .await
}
