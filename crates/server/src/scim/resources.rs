//! Users and Groups: create (POST), read (GET), replace (PUT), patch (PATCH) and delete
//! (DELETE) of one resource.
//!
//! - Bodies are normalised against the schema ([`fedkey_scim::resource::normalize`]);
//!   read-only attributes are ignored, so Okta's PUT of a whole fetched object works.
//! - `password` is write-only: it is replaced by the install's keyed fingerprint before
//!   it is stored and never returned. A PUT without `password` keeps the stored one.
//! - `If-Match` (PUT, PATCH, DELETE) must name the current version (412 otherwise);
//!   `If-None-Match` on GET answers 304 when it names the current version.
//! - PATCH reads, applies the operations in memory and writes back conditionally on the
//!   version it read, retrying a lost race when the client sent no `If-Match`.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedkey_audit::Outcome;
use fedkey_core::Scope;
use fedkey_scim::filter::AttrPath;
use fedkey_scim::resource::{normalize, parse_attr_list, schemas_of};
use fedkey_scim::schema::{self, ResourceTypeDef};
use fedkey_scim::{Profile, ScimError, ScimType, patch};
use fedkey_store::scim::{Known, ResourceWrite, StoredResource};
use fedkey_store::{Directory, StoreError};
use serde_json::{Map, Value, json};

use super::body::{IfMatch, ScimBody, etag, if_match, if_none_match};
use super::present::{MEMBER_DISPLAY, resource_response};
use super::{Ctx, ScimResponse, store_error};
use crate::AppState;

type Result<T> = std::result::Result<T, ScimResponse>;

/// The type's definition and its read and write scopes.
pub fn kind(rt: &str) -> (&'static ResourceTypeDef, Scope, Scope) {
    match schema::resource_type(rt) {
        Some(def) if def.id == "Group" => (def, Scope::GroupsRead, Scope::GroupsWrite),
        Some(def) => (def, Scope::UsersRead, Scope::UsersWrite),
        None => (&schema::RESOURCE_TYPES[0], Scope::UsersRead, Scope::UsersWrite),
    }
}

fn rt_static(rt: &ResourceTypeDef) -> &'static str {
    if rt.id == "Group" { "Group" } else { "User" }
}

/// `attributes` and `excludedAttributes` of a query string (names case-insensitive).
pub fn projection(q: &[(String, String)]) -> (Vec<AttrPath>, Vec<AttrPath>) {
    let mut attrs = Vec::new();
    let mut excluded = Vec::new();
    for (k, v) in q {
        if k.eq_ignore_ascii_case("attributes") {
            attrs.extend(parse_attr_list(v));
        } else if k.eq_ignore_ascii_case("excludedAttributes") {
            excluded.extend(parse_attr_list(v));
        }
    }
    (attrs, excluded)
}

type QueryList = std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn query_list(q: QueryList) -> Vec<(String, String)> {
    q.map(|Query(v)| v).unwrap_or_default()
}

/// The directory a write goes to, once the request's authentication record is durable
/// (every write core calls this right before its store write).
async fn directory_to_write(s: &AppState, ctx: &Ctx) -> Result<Directory> {
    ctx.audited().await?;
    Ok(s.store.directory(&ctx.principal.directory).await?)
}

fn not_found(rt: &ResourceTypeDef, id: &str) -> ScimResponse {
    ScimResponse(ScimError::new(404, None, format!("{} {:?} not found", rt.id, super::discovery::clip(id))))
}

/// Fetches a resource; 404 with a detail when absent.
async fn fetch(s: &AppState, ctx: &Ctx, rt: &ResourceTypeDef, id: &str) -> Result<StoredResource> {
    match s.store.scim_get(&ctx.principal.directory_id, rt.id, id).await {
        Ok(r) => Ok(r),
        Err(StoreError::NotFound(_)) => Err(not_found(rt, id)),
        Err(e) => Err(e.into()),
    }
}

/// Turns a body in the stored layout into what the store writes. `previous` is the
/// stored resource for a replace or patch.
fn prepare(
    s: &AppState,
    rt: &ResourceTypeDef,
    mut body: Value,
    previous: Option<&StoredResource>,
) -> std::result::Result<ResourceWrite, ScimError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(ScimError::new(400, Some(ScimType::InvalidSyntax), "a resource must be a JSON object"));
    };
    for k in ["id", "meta", "schemas", "groups"] {
        obj.remove(k);
    }
    let mut members = None;
    if rt.id == "Group" {
        let mut ids: Vec<String> = Vec::new();
        let mut displays = Map::new();
        obj.remove(MEMBER_DISPLAY);
        if let Some(Value::Array(items)) = obj.remove("members") {
            for m in items {
                let v = m.get("value").and_then(Value::as_str).map(str::to_owned);
                match v {
                    Some(v) => {
                        if let Some(d) = m.get("display").and_then(Value::as_str) {
                            displays.insert(v.clone(), Value::String(d.to_owned()));
                        }
                        if !ids.contains(&v) {
                            ids.push(v);
                        }
                    }
                    None => {
                        return Err(ScimError::new(400, Some(ScimType::InvalidValue), "each member needs a value"));
                    }
                }
            }
        }
        if !displays.is_empty() {
            obj.insert(MEMBER_DISPLAY.into(), Value::Object(displays));
        }
        members = Some(ids);
    }
    // Write-only password: store only its keyed fingerprint.
    let prev_pw = previous.and_then(|p| p.body.get("password")).and_then(Value::as_str).map(str::to_owned);
    match obj.get("password").cloned() {
        Some(Value::String(pw)) if prev_pw.as_deref() != Some(pw.as_str()) => {
            obj.insert("password".into(), Value::String(s.store.install.fingerprint(pw.as_bytes())));
        }
        Some(Value::String(_)) | None => {}
        Some(_) => {
            obj.remove("password");
        }
    }
    let name_attr = if rt.id == "Group" { "displayName" } else { "userName" };
    let name = obj
        .get(name_attr)
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScimError::new(400, Some(ScimType::InvalidValue), format!("{name_attr} is required")))?;
    if name.contains('\0') {
        return Err(ScimError::new(
            400,
            Some(ScimType::InvalidValue),
            format!("{name_attr} must not contain NUL characters"),
        ));
    }
    // The same folding the filter translator uses, so `eq` lookups find the key.
    let name_key = fedkey_store::scim_sql::fold(name);
    check_indexed(name_attr, &name_key)?;
    let external_id = obj.get("externalId").and_then(Value::as_str).map(str::to_owned);
    if let Some(x) = &external_id {
        if x.contains('\0') {
            return Err(ScimError::new(
                400,
                Some(ScimType::InvalidValue),
                "externalId must not contain NUL characters",
            ));
        }
        check_indexed("externalId", x)?;
    }
    let indexed = indexed_values(&body)?;
    let changed = match previous {
        None => attribute_names(rt, &body),
        Some(p) => {
            let mut c = diff(rt, &p.body, &body);
            let old: Vec<&str> = p.members.iter().map(|m| m.value.as_str()).collect();
            if let Some(new) = &members
                && (new.len() != old.len() || new.iter().any(|m| !old.contains(&m.as_str())))
            {
                c.push("members".into());
                c.sort();
            }
            c
        }
    };
    let mut changed = changed;
    if previous.is_none() && members.as_ref().is_some_and(|m| !m.is_empty()) {
        changed.push("members".into());
        changed.sort();
    }
    Ok(ResourceWrite {
        resource_type: rt_static(rt),
        name_key,
        external_id,
        body,
        members,
        indexed,
        changed,
        known: None,
    })
}

/// The resource a replace read, for [`ResourceWrite::known`]: the store then writes only
/// what differs from it and answers without reading it back. A body whose indexed values
/// no longer pass the checks gives none (the store rewrites them all).
fn known(current: StoredResource) -> Option<Known> {
    Some(Known { indexed: indexed_values(&current.body).ok()?, resource: current })
}

/// The values of a body (stored layout) the store indexes: its `emails.value`s, folded.
fn indexed_values(body: &Value) -> std::result::Result<Vec<(String, String)>, ScimError> {
    let mut indexed = Vec::new();
    if let Some(Value::Array(emails)) = body.get("emails") {
        let mut seen = BTreeSet::new();
        for e in emails {
            if let Some(v) = e.get("value").and_then(Value::as_str) {
                let v = fedkey_store::scim_sql::fold(v).replace('\0', "\u{FFFD}");
                check_indexed("emails.value", &v)?;
                if seen.insert(v.clone()) {
                    indexed.push(("emails.value".to_owned(), v));
                }
            }
        }
    }
    Ok(indexed)
}

/// Longest value, in bytes after case folding, of an attribute the store indexes
/// (`userName`, `displayName`, `externalId`, `emails.value`): database indexes cannot
/// hold arbitrarily long keys (PostgreSQL refuses B-tree entries over about 2.7 kB).
pub const MAX_INDEXED_LEN: usize = 1024;

fn check_indexed(attr: &str, key: &str) -> std::result::Result<(), ScimError> {
    if key.len() > MAX_INDEXED_LEN {
        return Err(ScimError::new(
            400,
            Some(ScimType::InvalidValue),
            format!("{attr} is longer than {MAX_INDEXED_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Attribute names present in a stored body (extension attributes as `URN:name`).
fn attribute_names(rt: &ResourceTypeDef, body: &Value) -> Vec<String> {
    diff(rt, &Value::Object(Map::new()), body)
}

/// The attributes whose values differ between two stored bodies.
fn diff(rt: &ResourceTypeDef, a: &Value, b: &Value) -> Vec<String> {
    let empty = Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let mut out = BTreeSet::new();
    let is_ext = |k: &str| rt.extensions.iter().any(|(u, _)| *u == k);
    for k in a.keys().chain(b.keys()) {
        if is_ext(k) {
            let (ea, eb) = (
                a.get(k).and_then(Value::as_object).unwrap_or(&empty),
                b.get(k).and_then(Value::as_object).unwrap_or(&empty),
            );
            for n in ea.keys().chain(eb.keys()) {
                if ea.get(n) != eb.get(n) {
                    out.insert(format!("{k}:{n}"));
                }
            }
        } else if a.get(k) != b.get(k) {
            out.insert(if k == MEMBER_DISPLAY { "members".to_owned() } else { k.clone() });
        }
    }
    out.into_iter().collect()
}

// ---------------------------------------------------------------- handlers

// The cores of create, replace, patch and delete, shared by the single-resource handlers
// and `/Bulk`: each checks the write scope, runs one store transaction (audited by the
// store) and returns the type's definition and the stored result.

/// POST: creates a resource of type `rt_name` from a SCIM body.
pub async fn create_core(
    s: &AppState,
    ctx: &Ctx,
    rt_name: &str,
    body: &Value,
) -> Result<(&'static ResourceTypeDef, StoredResource)> {
    let (rt, _, write) = kind(rt_name);
    ctx.require(s, write, &format!("create a {}", rt.id)).await?;
    let normalized = normalize(rt, body)?;
    let w = prepare(s, rt, normalized, None)?;
    super::policy::check_group_write(s, ctx, None, &w).await?;
    let dir = directory_to_write(s, ctx).await?;
    let r = s.store.scim_create(&ctx.actor, &dir, w).await?;
    Ok((rt, r))
}

/// PUT: replaces resource `id` if its version is one `pre` allows.
pub async fn replace_core(
    s: &AppState,
    ctx: &Ctx,
    rt_name: &str,
    id: &str,
    pre: &IfMatch,
    body: &Value,
) -> Result<(&'static ResourceTypeDef, StoredResource)> {
    let (rt, _, write) = kind(rt_name);
    ctx.require(s, write, &format!("replace a {}", rt.id)).await?;
    let mut normalized = normalize(rt, body)?;
    let current = fetch(s, ctx, rt, id).await?;
    let Some(expected) = pre.expect(current.version) else {
        return Err(precondition(rt, &current));
    };
    // A replace without a password keeps the stored one (write-only, clients cannot echo it).
    if normalized.get("password").is_none()
        && let (Some(pw), Some(obj)) = (current.body.get("password"), normalized.as_object_mut())
    {
        obj.insert("password".into(), pw.clone());
    }
    let mut w = prepare(s, rt, normalized, Some(&current))?;
    super::policy::check_group_write(s, ctx, Some(&current), &w).await?;
    let dir = directory_to_write(s, ctx).await?;
    let version = expected.unwrap_or(current.version);
    w.known = known(current);
    match s.store.scim_replace(&ctx.actor, &dir, id, Some(version), w).await {
        Ok(r) => Ok((rt, r)),
        Err(StoreError::NotFound(_)) => Err(not_found(rt, id)),
        Err(e) => Err(e.into()),
    }
}

/// PATCH: applies a PatchOp body to resource `id` if its version is one `pre` allows
/// (without a condition a lost race is retried), under the compatibility profile of the
/// trust's peer kind. A PATCH that changes nothing writes nothing (RFC 7644 §3.5.2.1: no
/// new version, no new `lastModified`, no outbox entry) and answers the resource as it is;
/// its access record is written like any request's.
pub async fn patch_core(
    s: &AppState,
    ctx: &Ctx,
    rt_name: &str,
    id: &str,
    pre: &IfMatch,
    body: &Value,
) -> Result<(&'static ResourceTypeDef, StoredResource)> {
    let (rt, _, write) = kind(rt_name);
    ctx.require(s, write, &format!("modify a {}", rt.id)).await?;
    let profile = Profile::named(ctx.principal.peer_kind.as_str());
    let ops = patch::parse_request(body, &profile)?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = fetch(s, ctx, rt, id).await?;
        if pre.expect(current.version).is_none() {
            return Err(precondition(rt, &current));
        }
        let mut doc = patch_document(rt, &current);
        if patch::apply(rt, &mut doc, &ops, &profile)?.is_empty() {
            return Ok((rt, current));
        }
        // What is stored may still be the same (a member given without the `display` or
        // `type` the engine saw): `prepare` compares what would be written.
        let mut w = prepare(s, rt, doc, Some(&current))?;
        if w.changed.is_empty() {
            return Ok((rt, current));
        }
        super::policy::check_group_write(s, ctx, Some(&current), &w).await?;
        let version = current.version;
        w.known = known(current);
        let dir = directory_to_write(s, ctx).await?;
        match s.store.scim_patch(&ctx.actor, &dir, id, Some(version), w).await {
            Ok(r) => return Ok((rt, r)),
            // Lost a race with another write (clients send concurrent membership PATCHes to one
            // group). Writers take turns in order, so each round lets at least one through:
            // the bound only stops a pathological pile-up.
            Err(StoreError::PreconditionFailed(_)) if pre.is_any() && attempts < MAX_PATCH_ATTEMPTS => continue,
            Err(StoreError::NotFound(_)) => return Err(not_found(rt, id)),
            Err(e) => return Err(ScimResponse(store_error(e))),
        }
    }
}

/// How often a PATCH without `If-Match` re-reads and re-applies after losing a race.
const MAX_PATCH_ATTEMPTS: u32 = 64;

/// DELETE: deletes resource `id` if its version is one `pre` allows.
pub async fn delete_core(
    s: &AppState,
    ctx: &Ctx,
    rt_name: &str,
    id: &str,
    pre: &IfMatch,
) -> Result<&'static ResourceTypeDef> {
    let (rt, _, write) = kind(rt_name);
    ctx.require(s, write, &format!("delete a {}", rt.id)).await?;
    // A cheap read first: clients re-delete deleted resources many times.
    let current = fetch(s, ctx, rt, id).await?;
    let Some(expected) = pre.expect(current.version) else {
        return Err(precondition(rt, &current));
    };
    let dir = directory_to_write(s, ctx).await?;
    match s.store.scim_delete(&ctx.actor, &dir, rt_static(rt), id, expected).await {
        Ok(()) => Ok(rt),
        Err(StoreError::NotFound(_)) => Err(not_found(rt, id)),
        Err(e) => Err(e.into()),
    }
}

/// What an import row did to the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// The import's write: creates a resource from a normalised body, or replaces `existing`
/// (the match the caller found) exactly like a PUT — a missing password keeps the stored
/// one — unless nothing would change, when nothing is written (no outbox event). With
/// `dry_run` it only decides. Returns the resource's id (none for a dry-run create).
pub(crate) async fn upsert_core(
    s: &AppState,
    ctx: &Ctx,
    rt_name: &str,
    mut normalized: Value,
    existing: Option<&StoredResource>,
    dry_run: bool,
) -> Result<(Upsert, Option<String>)> {
    let (rt, _, write) = kind(rt_name);
    ctx.require(s, write, &format!("import a {}", rt.id)).await?;
    let Some(current) = existing else {
        let w = prepare(s, rt, normalized, None)?;
        super::policy::check_group_write(s, ctx, None, &w).await?;
        if dry_run {
            return Ok((Upsert::Created, None));
        }
        let dir = directory_to_write(s, ctx).await?;
        let r = s.store.scim_create(&ctx.actor, &dir, w).await?;
        return Ok((Upsert::Created, Some(r.id)));
    };
    if normalized.get("password").is_none()
        && let (Some(pw), Some(obj)) = (current.body.get("password"), normalized.as_object_mut())
    {
        obj.insert("password".into(), pw.clone());
    }
    let mut w = prepare(s, rt, normalized, Some(current))?;
    if w.changed.is_empty() {
        return Ok((Upsert::Unchanged, Some(current.id.clone())));
    }
    super::policy::check_group_write(s, ctx, Some(current), &w).await?;
    if dry_run {
        return Ok((Upsert::Updated, Some(current.id.clone())));
    }
    let dir = directory_to_write(s, ctx).await?;
    w.known = known(current.clone());
    match s.store.scim_replace(&ctx.actor, &dir, &current.id, Some(current.version), w).await {
        Ok(r) => Ok((Upsert::Updated, Some(r.id))),
        Err(StoreError::NotFound(_)) => Err(not_found(rt, &current.id)),
        Err(e) => Err(e.into()),
    }
}

/// Audits a write the service refused for what was sent (400, 404, 409, 412), with the
/// trust and key version that sent it. Authorization refusals (403) are audited where
/// they happen; successes inside the write's own transaction.
pub(crate) async fn audit_refusal<T>(
    s: &AppState,
    ctx: &Ctx,
    action: &str,
    rt_name: &str,
    id: Option<&str>,
    result: Result<T>,
) -> Result<T> {
    if let Err(ScimResponse(e)) = &result
        && matches!(e.status.as_str(), "400" | "404" | "409" | "412")
    {
        let detail: String = e.detail.chars().take(300).collect();
        let ev = s
            .store
            .event(&ctx.actor, action, Outcome::Failure)
            .directory(&ctx.principal.directory)
            .trust(&ctx.principal.trust)
            .key_version(ctx.principal.version)
            .details(json!({
                "resource_type": rt_name, "id": id.map(super::discovery::clip), "status": e.status,
                "scimType": e.scim_type, "detail": detail,
            }));
        s.store.audit.record(ev, None).await.map_err(|e| ScimResponse(super::store_error(e)))?;
    }
    result
}

async fn create(s: AppState, ctx: Ctx, rt_name: &str, body: Value, q: Vec<(String, String)>) -> Result<Response> {
    let result = create_core(&s, &ctx, rt_name, &body).await;
    let (rt, r) = audit_refusal(&s, &ctx, "scim.create", rt_name, None, result).await?;
    let (attrs, excluded) = projection(&q);
    Ok(resource_response(StatusCode::CREATED, rt, &ctx.base, &r, &attrs, &excluded))
}

async fn read(
    s: AppState,
    ctx: Ctx,
    rt_name: &str,
    id: &str,
    h: &HeaderMap,
    q: Vec<(String, String)>,
) -> Result<Response> {
    let (rt, read, _) = kind(rt_name);
    ctx.require(&s, read, &format!("read {}s", rt.id)).await?;
    let r = fetch(&s, &ctx, rt, id).await?;
    if if_none_match(h, r.version) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag(r.version)) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return Ok(resp);
    }
    let (attrs, excluded) = projection(&q);
    Ok(resource_response(StatusCode::OK, rt, &ctx.base, &r, &attrs, &excluded))
}

async fn replace(
    s: AppState,
    ctx: Ctx,
    rt_name: &str,
    id: &str,
    h: &HeaderMap,
    body: Value,
    q: Vec<(String, String)>,
) -> Result<Response> {
    let result = replace_core(&s, &ctx, rt_name, id, &if_match(h), &body).await;
    let (rt, r) = audit_refusal(&s, &ctx, "scim.replace", rt_name, Some(id), result).await?;
    let (attrs, excluded) = projection(&q);
    Ok(resource_response(StatusCode::OK, rt, &ctx.base, &r, &attrs, &excluded))
}

fn precondition(rt: &ResourceTypeDef, current: &StoredResource) -> ScimResponse {
    ScimResponse(ScimError::new(
        412,
        None,
        format!("precondition failed: {} {} is at version {}", rt.id, current.id, etag(current.version)),
    ))
}

/// The resource as the PATCH engine sees it: the stored body plus `id`, `schemas` and
/// (for groups) `members`.
fn patch_document(rt: &ResourceTypeDef, r: &StoredResource) -> Value {
    let mut doc = match &r.body {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    doc.insert("id".into(), Value::String(r.id.clone()));
    doc.insert("schemas".into(), Value::Array(schemas_of(rt, &r.body)));
    let displays = doc.remove(MEMBER_DISPLAY);
    if rt.id == "Group" && !r.members.is_empty() {
        let members = r
            .members
            .iter()
            .map(|m| match displays.as_ref().and_then(|d| d.get(&m.value)) {
                Some(d) => json!({"value": m.value, "type": m.kind, "display": d}),
                None => json!({"value": m.value, "type": m.kind}),
            })
            .collect();
        doc.insert("members".into(), Value::Array(members));
    }
    Value::Object(doc)
}

async fn patch_resource(
    s: AppState,
    ctx: Ctx,
    rt_name: &str,
    id: &str,
    h: &HeaderMap,
    body: Value,
    q: Vec<(String, String)>,
) -> Result<Response> {
    let result = patch_core(&s, &ctx, rt_name, id, &if_match(h), &body).await;
    let (rt, r) = audit_refusal(&s, &ctx, "scim.patch", rt_name, Some(id), result).await?;
    let (attrs, excluded) = projection(&q);
    Ok(resource_response(StatusCode::OK, rt, &ctx.base, &r, &attrs, &excluded))
}

async fn delete(s: AppState, ctx: Ctx, rt_name: &str, id: &str, h: &HeaderMap) -> Result<Response> {
    let result = delete_core(&s, &ctx, rt_name, id, &if_match(h)).await;
    audit_refusal(&s, &ctx, "scim.delete", rt_name, Some(id), result).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------- routes

pub async fn create_user(State(s): State<AppState>, ctx: Ctx, q: QueryList, ScimBody(b): ScimBody) -> Result<Response> {
    create(s, ctx, "User", b, query_list(q)).await
}

pub async fn create_group(
    State(s): State<AppState>,
    ctx: Ctx,
    q: QueryList,
    ScimBody(b): ScimBody,
) -> Result<Response> {
    create(s, ctx, "Group", b, query_list(q)).await
}

pub async fn get_user(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
) -> Result<Response> {
    read(s, ctx, "User", &id, &h, query_list(q)).await
}

pub async fn get_group(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
) -> Result<Response> {
    read(s, ctx, "Group", &id, &h, query_list(q)).await
}

pub async fn replace_user(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
    ScimBody(b): ScimBody,
) -> Result<Response> {
    replace(s, ctx, "User", &id, &h, b, query_list(q)).await
}

pub async fn replace_group(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
    ScimBody(b): ScimBody,
) -> Result<Response> {
    replace(s, ctx, "Group", &id, &h, b, query_list(q)).await
}

pub async fn patch_user(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
    ScimBody(b): ScimBody,
) -> Result<Response> {
    patch_resource(s, ctx, "User", &id, &h, b, query_list(q)).await
}

pub async fn patch_group(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
    q: QueryList,
    ScimBody(b): ScimBody,
) -> Result<Response> {
    patch_resource(s, ctx, "Group", &id, &h, b, query_list(q)).await
}

pub async fn delete_user(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response> {
    delete(s, ctx, "User", &id, &h).await
}

pub async fn delete_group(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response> {
    delete(s, ctx, "Group", &id, &h).await
}
