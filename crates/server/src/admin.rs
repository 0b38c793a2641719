//! The admin API under `/api/v1`, authenticated by admin tokens with a role. Every
//! request is audited: changes inside their own transaction, reads and denials through
//! the group committer — and a request whose record cannot be written is refused.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{StatusCode, request::Parts};
use axum::response::IntoResponse;
use axum::{Json, Router};
use fedkey_api::audit::{AuditBroken, AuditIntact, AuditPage, AuditQuery, AuditVerification};
use fedkey_api::directories::{
    CreateDirectory, Directory, DirectoryContents, DirectoryDeleted, DirectoryDetail, DirectoryList, ForceQuery,
};
use fedkey_api::keys::{KeyList, KeyVersion, RevokeKeyResponse, RotateKeyRequest, RotateKeyResponse, WrappedLink};
use fedkey_api::tokens::{AdminToken, CreateToken, TokenCreated, TokenList};
use fedkey_api::trusts::{
    CreateTrust, ScopesRequest, Trust, TrustCreated, TrustDetail, TrustEnvelope, TrustList, TrustPolicyRequest,
};
use fedkey_audit::Outcome;
use fedkey_core::{PeerKind, Timestamp, TrustRef, TrustStatus};
use fedkey_crypto::Secret;
use fedkey_store::audit::AuditFilter;
use fedkey_store::audit::Touch;
use fedkey_store::auth::{AdminPrincipal, RequestMeta};
use fedkey_store::ops::{NewTrust, RotateKey};
use fedkey_store::{Actor, Store, TrustPolicy};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use fedkey_api::{DirectoryPath, TrustPath, keys::KeyVersionPath, tokens::TokenPath};

/// Every documented admin route (paths relative to `/api/v1`): the one table that both
/// the router and the OpenAPI document ([`crate::openapi`]) are built from.
pub fn documented() -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(list_directories, create_directory))
        .routes(routes!(get_directory, delete_directory))
        .routes(routes!(list_trusts, create_trust))
        .routes(routes!(get_trust, delete_trust))
        .routes(routes!(suspend_trust))
        .routes(routes!(resume_trust))
        .routes(routes!(set_policy))
        .routes(routes!(set_scopes))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_all_trusts))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit_page))
        .routes(routes!(audit_verify))
        .routes(routes!(crate::openapi::serve))
        .merge(crate::audit_api::routes())
        .merge(crate::events_api::routes())
        .merge(crate::oauth_api::routes())
        .merge(crate::rotation_api::routes())
        .merge(crate::sync_api::routes());
    crate::body_limit::limit(routes, crate::ADMIN_BODY_LIMIT)
        // Import has its own, larger limit.
        .merge(crate::import::routes())
        .merge(crate::leaks::routes())
}

pub fn router() -> Router<AppState> {
    let (routes, _) = documented().split_for_parts();
    // The test hooks are not part of the API: they are in test builds only, undocumented.
    #[cfg(feature = "test-hooks")]
    let routes = routes.merge(
        crate::body_limit::limit(crate::test_hooks::routes().into(), crate::ADMIN_BODY_LIMIT).split_for_parts().0,
    );
    routes.fallback(crate::error::not_found).method_not_allowed_fallback(crate::error::method_not_allowed)
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
    pub(crate) async fn read<T>(
        &self,
        store: &Store,
        need: Need,
        action: &str,
        target: Target,
        op: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Json<T>, ApiError> {
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

/// A time as the API sends it: RFC 3339, or `null`.
pub(crate) fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

/// A stored document (rotation, connector, material version…) as the JSON object the
/// API passes through.
pub(crate) fn doc(x: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(x).map_err(ApiError::internal)
}

/// A stored or computed object in its `fedkey-api` form: the two share the wire shape, and
/// a mismatch is a bug of this server (answered as `internal`, logged).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(x: &impl Serialize) -> Result<T, ApiError> {
    serde_json::from_value(doc(x)?).map_err(ApiError::internal)
}

fn key_dto(k: &fedkey_store::KeyVersion, now: Timestamp) -> KeyVersion {
    KeyVersion {
        version: k.version,
        state: k.state_at(now),
        scopes: k.scopes.to_vec(),
        created_at: ts(Some(k.created_at)),
        created_by: k.created_by.clone(),
        activated_at: ts(k.activated_at),
        expires_at: ts(k.expires_at),
        revoked_at: ts(k.revoked_at),
        last_used_at: ts(k.last_used_at),
    }
}

fn keys_dto(keys: &[fedkey_store::KeyVersion], now: Timestamp) -> Vec<KeyVersion> {
    keys.iter().map(|k| key_dto(k, now)).collect()
}

pub(crate) fn trust_dto(t: &fedkey_store::Trust) -> Trust {
    Trust {
        directory: t.directory.clone(),
        name: t.name.clone(),
        trust_ref: format!("{}/{}", t.directory, t.name),
        direction: t.direction,
        peer_kind: t.peer_kind,
        status: t.status,
        scopes: t.scopes.to_vec(),
        description: t.description.clone(),
        created_at: ts(Some(t.created_at)),
        created_by: t.created_by.clone(),
        updated_at: ts(Some(t.updated_at)),
        privileged_groups: t.policy.privileged_groups.clone(),
        allowed_sources: t.policy.sources(),
        rate_limit: t.policy.rate_limit,
        leak_policy: t.leak_policy(),
        pending_auth: t.pending_auth,
    }
}

/// The answer of every change to one trust.
pub(crate) fn trust_envelope(t: &fedkey_store::Trust) -> Json<TrustEnvelope> {
    Json(TrustEnvelope { trust: trust_dto(t) })
}

fn dir_dto(d: &fedkey_store::Directory) -> Directory {
    Directory {
        name: d.name.clone(),
        id: d.id.clone(),
        created_at: ts(Some(d.created_at)),
        created_by: d.created_by.clone(),
    }
}

fn contents_dto(c: &fedkey_store::ops::DirectoryContents) -> DirectoryContents {
    DirectoryContents { trusts: c.trusts, users: c.users, groups: c.groups, targets: c.targets }
}

/// Durations as `24h`, `90m`, `0s`, `1d 12h`.
pub(crate) fn parse_duration(field: &str, s: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(s.trim())
        .map_err(|_| ApiError::invalid_value(format!("{field}: {s:?} is not a duration (e.g. 24h, 90m, 0s)")))
}

// ---- directories ----

#[utoipa::path(post, path = "/directories", tag = "directories", request_body = CreateDirectory, responses((status = 201, body = Directory)))]
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
    Ok((StatusCode::CREATED, Json(dir_dto(&d))))
}

#[utoipa::path(get, path = "/directories", tag = "directories", responses((status = 200, body = DirectoryList)))]
async fn list_directories(a: Admin, State(s): State<AppState>) -> Result<Json<DirectoryList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "directory.list", Target::default(), async {
        let ds = st.list_directories().await?;
        Ok(DirectoryList { directories: ds.iter().map(dir_dto).collect() })
    })
    .await
}

/// A directory and what it holds (counts of trusts, users, groups, targets).
#[utoipa::path(get, path = "/directories/{d}", tag = "directories", params(DirectoryPath), responses((status = 200, body = DirectoryDetail)))]
async fn get_directory(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
) -> Result<Json<DirectoryDetail>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "directory.show", Target::dir(&d), async {
        let (dir, contents) = st.directory_contents(&d).await?;
        Ok(DirectoryDetail { directory: dir_dto(&dir), contents: contents_dto(&contents) })
    })
    .await
}

/// Deletes a directory: 409 `directory_not_empty` while it holds anything, unless
/// `?force=true`. Answers what was deleted.
#[utoipa::path(delete, path = "/directories/{d}", tag = "directories", params(DirectoryPath, ForceQuery), responses((status = 200, body = DirectoryDeleted)))]
async fn delete_directory(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DirectoryDeleted>, ApiError> {
    let st = &s.store;
    let deleted = a
        .change(st, Need::Administer, "directory.delete", Target::dir(&d), async {
            let force = force_query(q)?;
            Ok(st.delete_directory(&a.actor(), &d, force).await?)
        })
        .await?;
    Ok(Json(DirectoryDeleted { directory: d, deleted: contents_dto(&deleted) }))
}

// ---- trusts ----

#[utoipa::path(post, path = "/directories/{d}/trusts", tag = "trusts", params(DirectoryPath), request_body = CreateTrust, responses((status = 201, body = TrustCreated)))]
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
                outbound_key: b.key.map(Secret::new),
            };
            Ok(st.create_trust_with_policy(&a.actor(), new, policy).await?)
        })
        .await?;
    // The key is shown exactly once: only its hash is kept.
    let body = TrustCreated {
        trust: trust_dto(&trust),
        key_version: key_dto(&kv, st.now()),
        key: key.map(|k| k.expose().to_string()),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/directories/{d}/trusts", tag = "trusts", params(DirectoryPath), responses((status = 200, body = TrustList)))]
async fn list_trusts(a: Admin, State(s): State<AppState>, Path(d): Path<String>) -> Result<Json<TrustList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.list", Target::dir(&d), async {
        let ts = st.list_trusts(Some(&d)).await?;
        Ok(TrustList { trusts: ts.iter().map(trust_dto).collect() })
    })
    .await
}

#[utoipa::path(get, path = "/trusts", tag = "trusts", responses((status = 200, body = TrustList)))]
async fn list_all_trusts(a: Admin, State(s): State<AppState>) -> Result<Json<TrustList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.list", Target::default(), async {
        let ts = st.list_trusts(None).await?;
        Ok(TrustList { trusts: ts.iter().map(trust_dto).collect() })
    })
    .await
}

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}", tag = "trusts", params(TrustPath), responses((status = 200, body = TrustDetail)))]
async fn get_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<TrustDetail>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "trust.show", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let trust = st.trust(&r).await?;
        let keys = st.list_keys(&r).await?;
        Ok(TrustDetail { trust: trust_dto(&trust), keys: keys_dto(&keys, st.now()) })
    })
    .await
}

#[utoipa::path(delete, path = "/directories/{d}/trusts/{t}", tag = "trusts", params(TrustPath), responses((status = 204, description = "deleted")))]
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

async fn set_status(
    a: Admin,
    s: AppState,
    d: String,
    t: String,
    status: TrustStatus,
) -> Result<Json<TrustEnvelope>, ApiError> {
    let st = &s.store;
    let action = if status == TrustStatus::Active { "trust.resume" } else { "trust.suspend" };
    let trust = a
        .change(st, Need::Operate, action, Target::trust(&d, &t), async {
            Ok(st.set_trust_status(&a.actor(), &trust_ref(&d, &t)?, status).await?)
        })
        .await?;
    Ok(trust_envelope(&trust))
}

/// Widens or narrows what a trust's keys may do, so it needs the admin role.
#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/policy", tag = "trusts", params(TrustPath), request_body = TrustPolicyRequest, responses((status = 200, body = TrustEnvelope)))]
async fn set_policy(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<TrustPolicyRequest>, ApiError>,
) -> Result<Json<TrustEnvelope>, ApiError> {
    let st = &s.store;
    let trust = a
        .change(st, Need::Administer, "trust.policy", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let ApiJson(b) = body?;
            let policy = TrustPolicy::parse(&b.privileged_groups, &b.allowed_sources, b.rate_limit)?;
            Ok(st.set_trust_policy(&a.actor(), &r, policy).await?)
        })
        .await?;
    Ok(trust_envelope(&trust))
}

/// Widens or narrows what a trust's keys may do: admin only, like the policy.
#[utoipa::path(put, path = "/directories/{d}/trusts/{t}/scopes", tag = "trusts", params(TrustPath), request_body = ScopesRequest, responses((status = 200, body = TrustEnvelope)))]
async fn set_scopes(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<ApiJson<ScopesRequest>, ApiError>,
) -> Result<Json<TrustEnvelope>, ApiError> {
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
    Ok(trust_envelope(&trust))
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/suspend", tag = "trusts", params(TrustPath), responses((status = 200, body = TrustEnvelope)))]
async fn suspend_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<TrustEnvelope>, ApiError> {
    set_status(a, s, d, t, TrustStatus::Suspended).await
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/resume", tag = "trusts", params(TrustPath), responses((status = 200, body = TrustEnvelope)))]
async fn resume_trust(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<TrustEnvelope>, ApiError> {
    set_status(a, s, d, t, TrustStatus::Active).await
}

// ---- keys ----

#[utoipa::path(get, path = "/directories/{d}/trusts/{t}/keys", tag = "keys", params(TrustPath), responses((status = 200, body = KeyList)))]
async fn list_keys(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
) -> Result<Json<KeyList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Read, "key.list", Target::trust(&d, &t), async {
        let r = trust_ref(&d, &t)?;
        let keys = st.list_keys(&r).await?;
        Ok(KeyList { trust: r.to_string(), keys: keys_dto(&keys, st.now()) })
    })
    .await
}

#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/keys/rotate", tag = "keys", params(TrustPath), request_body(content = RotateKeyRequest, description = "optional"), responses((status = 200, body = RotateKeyResponse)))]
async fn rotate_key(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t)): Path<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<RotateKeyResponse>, ApiError> {
    let st = &s.store;
    let (kv, key, wrap) = a
        .change(st, Need::Operate, "key.rotate", Target::trust(&d, &t), async {
            let r = trust_ref(&d, &t)?;
            let b: RotateKeyRequest = crate::extract::optional_json(body)?;
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
            let req = RotateKey { overlap, outbound_key: b.key.map(Secret::new) };
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
    let mut out = RotateKeyResponse {
        trust: format!("{d}/{t}"),
        key_version: key_dto(&kv, st.now()),
        key: None,
        wrapped_link: None,
    };
    match (wrap, key) {
        (Some(w), _) => {
            out.wrapped_link = Some(WrappedLink {
                url: format!("{}/unwrap/{}", s.public_url.trim_end_matches('/'), w.token.expose()),
                expires_at: w.expires_at.to_rfc3339(),
                single_use: true,
            });
        }
        (None, Some(k)) => out.key = Some(k.expose().to_string()),
        (None, None) => {}
    }
    Ok(Json(out))
}

fn force_query(q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>) -> Result<bool, ApiError> {
    q.map(|Query(q)| q.force).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Refuses to revoke the last usable version without `?force=true` (409 `last_usable_key`);
/// an expired version is left as it is (200, `"unchanged": true`).
#[utoipa::path(post, path = "/directories/{d}/trusts/{t}/keys/{v}/revoke", tag = "keys", params(KeyVersionPath, ForceQuery), responses((status = 200, body = RevokeKeyResponse)))]
async fn revoke_key(
    a: Admin,
    State(s): State<AppState>,
    Path((d, t, v)): Path<(String, String, String)>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RevokeKeyResponse>, ApiError> {
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
    Ok(Json(RevokeKeyResponse { trust: format!("{d}/{t}"), key_version: key_dto(&kv, st.now()), unchanged }))
}

// ---- admin tokens ----

fn token_dto(t: &fedkey_store::AdminToken) -> AdminToken {
    AdminToken {
        name: t.name.clone(),
        role: t.role,
        created_at: ts(Some(t.created_at)),
        created_by: t.created_by.clone(),
        expires_at: ts(t.expires_at),
        revoked_at: ts(t.revoked_at),
        last_used_at: ts(t.last_used_at),
    }
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = CreateToken, responses((status = 201, body = TokenCreated)))]
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
    let body = TokenCreated { token_info: token_dto(&t), token: secret.expose().to_string() };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Admin credentials are listed to admins only, even as metadata.
#[utoipa::path(get, path = "/tokens", tag = "tokens", responses((status = 200, body = TokenList)))]
async fn list_tokens(a: Admin, State(s): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Administer, "token.list", Target::default(), async {
        let ts = st.list_admin_tokens().await?;
        Ok(TokenList { tokens: ts.iter().map(token_dto).collect() })
    })
    .await
}

#[utoipa::path(post, path = "/tokens/{name}/revoke", tag = "tokens", params(TokenPath), responses((status = 200, body = AdminToken)))]
async fn revoke_token(
    a: Admin,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AdminToken>, ApiError> {
    let st = &s.store;
    let t = a
        .change(st, Need::Administer, "token.revoke", Target::default(), async {
            Ok(st.revoke_admin_token(&a.actor(), &name).await?)
        })
        .await?;
    Ok(Json(token_dto(&t)))
}

// ---- audit ----

pub(crate) fn parse_time(field: &str, s: &Option<String>) -> Result<Option<Timestamp>, ApiError> {
    s.as_deref()
        .map(|v| {
            Timestamp::parse_rfc3339(v).ok_or_else(|| {
                ApiError::invalid_value(format!("{field}: expected RFC 3339 time, e.g. 2026-11-28T00:00:00Z"))
            })
        })
        .transpose()
}

#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
async fn audit_page(
    a: Admin,
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
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
        let records = records.iter().map(|r| typed(&r.to_json())).collect::<Result<_, _>>()?;
        Ok(AuditPage { records, next_after: next })
    })
    .await
}

#[utoipa::path(get, path = "/audit/verify", tag = "audit", responses((status = 200, body = AuditVerification)))]
async fn audit_verify(a: Admin, State(s): State<AppState>) -> Result<Json<AuditVerification>, ApiError> {
    let st = &s.store;
    a.read(st, Need::Audit, "audit.verify", Target::default(), async {
        Ok(match fedkey_store::audit::verify(&st.db, &st.install.id, &st.install.public_key).await? {
            Ok(rep) => AuditVerification::Intact(AuditIntact {
                ok: true,
                records: rep.records,
                checkpoints: rep.checkpoints as u64,
                head: hex::encode(rep.head_hash),
                origin: st.install.id.clone(),
                public_key: hex::encode(st.install.public_key),
            }),
            Err(e) => AuditVerification::Broken(AuditBroken { ok: false, seq: e.seq, error: e.to_string() }),
        })
    })
    .await
}
