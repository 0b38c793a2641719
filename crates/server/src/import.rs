//! `POST /api/v1/directories/{d}/import`: a batch of SCIM Users and Groups upserted into
//! a directory by an admin (`fedkey import` sends files through it).
//!
//! - Each row is validated and normalised like a SCIM write and policy-checked
//!   ([`import_create`], [`upsert_core`]), and written with its audit record and its outbox
//!   events. A bad row gets its error and changes nothing; the other rows proceed.
//! - Rows that create a user nothing else in the batch or the directory touches ([`fresh`])
//!   are written together: one transaction per run of such rows, one `scim.create` record
//!   each. Every other row is its own transaction, in file order. If the shared
//!   transaction meets a conflict (a concurrent writer took a userName meanwhile) it is
//!   rolled back and its rows go row by row, so the outcome per row is what the
//!   row-by-row import gives.
//! - Upsert: a User matches by `externalId`, then `userName` (case-insensitive); a Group by
//!   `externalId`, then `displayName`. A match is replaced like a PUT, unless nothing would
//!   change (`unchanged`: nothing written, no outbox event), so an import can be re-run.
//! - Group members may name users by id, `externalId` or `userName` (in that order), and
//!   groups by id; they are resolved to ids in this directory. An unknown member fails
//!   the row, naming it. A dry run writes no users, so the caller may list the users it
//!   would create (`planned`) for its groups to name.
//! - Admin role only: an import changes identities that fan out to every target.

mod fresh;

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fedkey_api::directories::{ImportRequest, ImportRow, ImportRowResult, ImportSummary};
use fedkey_audit::Outcome;
use fedkey_scim::ScimError;
use fedkey_scim::resource::normalize;
use fedkey_scim::schema;
use fedkey_store::scim::{ResourceKey, ResourceWrite, StoredResource};
use fedkey_store::scim_sql::fold;
use fedkey_store::{Directory, StoreError};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{Admin, Need, Target};
use crate::error::{ApiError, ErrorCode};
use crate::scim::resources::{Upsert, import_create, upsert_core};
use crate::scim::{Ctx, SCIM_BODY_LIMIT, ScimResponse};
use fedkey_api::DirectoryPath;

/// Most rows in one request.
pub const MAX_ROWS: usize = 500;
/// Largest import request body.
pub const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Largest resource in a row: what one SCIM request may carry.
pub const MAX_ROW_BYTES: usize = SCIM_BODY_LIMIT;
/// Row errors kept in the request's audit record (the response has them all).
const AUDITED_ERRORS: usize = 20;

pub fn routes() -> OpenApiRouter<AppState> {
    crate::body_limit::limit(OpenApiRouter::new().routes(routes!(import)), IMPORT_BODY_LIMIT)
}

/// What became of one row.
struct RowResult {
    status: &'static str,
    resource_type: Option<&'static str>,
    id: Option<String>,
    error: Option<String>,
}

impl RowResult {
    fn error(resource_type: Option<&'static str>, e: impl Into<String>) -> RowResult {
        RowResult { status: "error", resource_type, id: None, error: Some(e.into()) }
    }
}

/// A failure that stops the batch (the store or the audit log cannot write): the rows
/// after it are not attempted.
struct Fatal(ApiError);

#[utoipa::path(post, path = "/directories/{d}/import", tag = "directories", params(DirectoryPath), request_body = ImportRequest, responses((status = 200, body = ImportSummary)))]
async fn import(
    a: Admin,
    State(s): State<AppState>,
    Path(d): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportSummary>, ApiError> {
    let st = &s.store;
    let target = Target::dir(&d);
    let v = a
        .change(st, Need::Administer, "directory.import", target.clone(), async {
            let b = parse_body(body)?;
            let dir = st.directory(&d).await?;
            let planned: HashSet<String> = b.planned.iter().map(|p| fold(p)).collect();
            let base = crate::scim::base_url(s.scheme, &dir.name, &headers);
            let ctx = Ctx::admin(&dir, a.actor(), base);
            let mut run = Run {
                s: &s,
                ctx: &ctx,
                dir: &dir,
                dry_run: b.dry_run,
                planned: &planned,
                results: std::iter::repeat_with(|| None).take(b.rows.len()).collect(),
                pending: Vec::new(),
                fatal: None,
            };
            match fresh::fresh_users(&s, &dir, &b.rows).await {
                Ok(fresh) => {
                    for (i, (row, fresh)) in b.rows.iter().zip(fresh).enumerate() {
                        run.row(i, row, fresh).await;
                    }
                    run.flush().await;
                }
                Err(e) => run.fatal = Some(ApiError::from(e)),
            }
            let fatal = run.fatal.take();
            let results: Vec<(u64, RowResult)> = b
                .rows
                .iter()
                .zip(run.results)
                .map(|(row, r)| {
                    let not_attempted = || {
                        let why = fatal.as_ref().map_or("", |e| e.message.as_str());
                        RowResult::error(None, format!("not attempted: {why}"))
                    };
                    (row.line, r.unwrap_or_else(not_attempted))
                })
                .collect();
            Ok((summarize(&results, b.dry_run), fatal))
        })
        .await?;
    let (summary, fatal) = v;
    // One record for the request: counts and the first errors (the writes have their own).
    let failed = summary.failed;
    let errors: Vec<Value> = summary
        .results
        .iter()
        .filter(|r| r.status == "error")
        .take(AUDITED_ERRORS)
        .map(|e| json!({"line": e.line, "error": e.error}))
        .collect();
    let details = json!({
        "dry_run": summary.dry_run, "created": summary.created, "updated": summary.updated,
        "unchanged": summary.unchanged, "failed": failed, "errors": errors,
    });
    let outcome = if failed == 0 { Outcome::Success } else { Outcome::Failure };
    a.record(st, "directory.import", outcome, &target, details).await?;
    if let Some(e) = fatal
        && e.status == StatusCode::SERVICE_UNAVAILABLE
    {
        // The audit log is down: say so rather than a partial 200.
        return Err(e);
    }
    Ok(Json(summary))
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<ImportRequest, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                format!("import request body exceeds {IMPORT_BODY_LIMIT} bytes; send smaller batches"),
            )
        } else {
            ApiError::new(r.status(), ErrorCode::InvalidRequest, r.body_text())
        }
    })?;
    let b: ImportRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("invalid import body (expected {{\"rows\": [{{\"line\", \"resource\"}}]}}): {e}"))
    })?;
    if b.rows.is_empty() {
        return Err(ApiError::invalid_value("rows: at least one row is required"));
    }
    if !b.dry_run && !b.planned.is_empty() {
        return Err(ApiError::invalid_value("planned: only with dry_run"));
    }
    if b.rows.len() > MAX_ROWS {
        return Err(ApiError::invalid_value(format!(
            "rows: at most {MAX_ROWS} rows per request, got {}",
            b.rows.len()
        )));
    }
    Ok(b)
}

fn summarize(results: &[(u64, RowResult)], dry_run: bool) -> ImportSummary {
    let count = |st: &str| results.iter().filter(|(_, r)| r.status == st).count() as u64;
    let rows = results
        .iter()
        .map(|(line, r)| ImportRowResult {
            line: *line,
            status: r.status.into(),
            resource_type: r.resource_type.map(Into::into),
            id: r.id.clone(),
            error: r.error.clone(),
        })
        .collect();
    ImportSummary {
        dry_run,
        created: count("created"),
        updated: count("updated"),
        unchanged: count("unchanged"),
        failed: count("error"),
        results: rows,
    }
}

/// One request's rows on their way: results by row index (`None`: not attempted), the
/// fresh users waiting to be written together, and the failure that stopped the batch.
struct Run<'a> {
    s: &'a AppState,
    ctx: &'a Ctx,
    dir: &'a Directory,
    dry_run: bool,
    planned: &'a HashSet<String>,
    results: Vec<Option<RowResult>>,
    pending: Vec<(usize, &'a ImportRow, ResourceWrite)>,
    fatal: Option<ApiError>,
}

impl<'a> Run<'a> {
    /// Row `i`: a fresh user (its normalised body) is checked and queued; any other row
    /// first writes the queue (file order), then goes row by row.
    async fn row(&mut self, i: usize, row: &'a ImportRow, fresh: Option<Value>) {
        if self.fatal.is_some() {
            return;
        }
        if let Some(body) = fresh {
            match import_create(self.s, self.ctx, "User", body).await {
                Ok(_) if self.dry_run => {
                    self.results[i] =
                        Some(RowResult { status: "created", resource_type: Some("User"), id: None, error: None })
                }
                Ok(w) => self.pending.push((i, row, w)),
                Err(ScimResponse(e)) => self.done(i, row_error(Some("User"), e)),
            }
            return;
        }
        self.flush().await;
        self.one(i, row).await;
    }

    /// Row `i` on its own: validated, resolved and upserted in its own transaction.
    async fn one(&mut self, i: usize, row: &ImportRow) {
        if self.fatal.is_some() {
            return;
        }
        let r = import_row(self.s, self.ctx, self.dir, row, self.dry_run, self.planned).await;
        self.done(i, r);
    }

    fn done(&mut self, i: usize, r: Result<RowResult, Fatal>) {
        self.results[i] = Some(match r {
            Ok(r) => r,
            Err(Fatal(e)) => {
                let r = RowResult::error(None, e.message.clone());
                self.fatal = Some(e);
                r
            }
        });
    }

    /// Writes the queued fresh users in one transaction. A conflict or a refused row
    /// (another writer took a key since the batch was checked) rolls it back, and the
    /// rows go one by one; a store or audit failure fails them all and stops the batch.
    async fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() || self.fatal.is_some() {
            return;
        }
        if let Err(ScimResponse(e)) = self.ctx.audited().await {
            let Err(Fatal(e)) = row_error(None, e) else { return self.one_by_one(pending).await };
            return self.fail_all(&pending, e);
        }
        let writes: Vec<ResourceWrite> = pending.iter().map(|(_, _, w)| w.clone()).collect();
        match self.s.store.scim_create_many(&self.ctx.actor, self.dir, &writes).await {
            Ok(ids) => {
                for ((i, _, _), id) in pending.iter().zip(ids) {
                    let r = RowResult { status: "created", resource_type: Some("User"), id: Some(id), error: None };
                    self.results[*i] = Some(r);
                }
            }
            Err(StoreError::Conflict(_) | StoreError::Invalid(_)) => self.one_by_one(pending).await,
            Err(e) => self.fail_all(&pending, ApiError::from(e)),
        }
    }

    async fn one_by_one(&mut self, pending: Vec<(usize, &'a ImportRow, ResourceWrite)>) {
        for (i, row, _) in pending {
            self.one(i, row).await;
        }
    }

    /// Nothing of `pending` was written: each row says why, and the batch stops.
    fn fail_all(&mut self, pending: &[(usize, &ImportRow, ResourceWrite)], e: ApiError) {
        for (i, _, _) in pending {
            self.results[*i] = Some(RowResult::error(Some("User"), e.message.clone()));
        }
        self.fatal = Some(e);
    }
}

/// Validates, resolves and upserts one row. A row's own problem is its error; a store
/// or audit failure is [`Fatal`].
async fn import_row(
    s: &AppState,
    ctx: &Ctx,
    dir: &Directory,
    row: &ImportRow,
    dry_run: bool,
    planned: &HashSet<String>,
) -> Result<RowResult, Fatal> {
    let rt_name = match row_type(row) {
        Ok(t) => t,
        Err(e) => return Ok(RowResult::error(None, e)),
    };
    let rt_of = Some(rt_name);
    let size = serde_json::to_vec(&row.resource).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_ROW_BYTES {
        return Ok(RowResult::error(rt_of, format!("the resource is larger than {MAX_ROW_BYTES} bytes")));
    }
    let Some(rt) = schema::resource_type(rt_name) else {
        return Ok(RowResult::error(rt_of, format!("unknown resource type {rt_name}")));
    };
    let mut body = match normalize(rt, &row.resource) {
        Ok(b) => b,
        Err(e) => return Ok(RowResult::error(rt_of, e.detail)),
    };
    if rt_name == "Group"
        && let Err(e) = resolve_members(s, dir, &mut body, planned).await?
    {
        return Ok(RowResult::error(rt_of, e));
    }
    let existing = match find_existing(s, dir, rt_name, &body).await? {
        Ok(r) => r,
        Err(e) => return Ok(RowResult::error(rt_of, e)),
    };
    match upsert_core(s, ctx, rt_name, body, existing.as_ref(), dry_run).await {
        Ok((u, id)) => {
            let status = match u {
                Upsert::Created => "created",
                Upsert::Updated => "updated",
                Upsert::Unchanged => "unchanged",
            };
            Ok(RowResult { status, resource_type: rt_of, id, error: None })
        }
        Err(ScimResponse(e)) => row_error(rt_of, e),
    }
}

/// A SCIM refusal of the row (4xx) is the row's error; anything else stops the batch.
fn row_error(rt: Option<&'static str>, e: ScimError) -> Result<RowResult, Fatal> {
    match e.status_code() {
        400..=499 => Ok(RowResult::error(rt, e.detail)),
        503 => Err(Fatal(ApiError::audit_unavailable())),
        _ => Err(Fatal(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e.detail))),
    }
}

fn fatal(e: StoreError) -> Fatal {
    Fatal(ApiError::from(e))
}

/// `User` or `Group`, from the row's `type` or else the resource's `schemas`.
fn row_type(row: &ImportRow) -> Result<&'static str, String> {
    if let Some(t) = &row.kind {
        return match schema::resource_type(t.trim()) {
            Some(def) if def.id == "Group" => Ok("Group"),
            Some(_) => Ok("User"),
            None => Err(format!("type {:?} is neither User nor Group", t.chars().take(40).collect::<String>())),
        };
    }
    let schemas: Vec<&str> =
        row.resource.get("schemas").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if schemas.iter().any(|u| u.eq_ignore_ascii_case(schema::GROUP)) {
        Ok("Group")
    } else if schemas.iter().any(|u| u.eq_ignore_ascii_case(schema::USER)) {
        Ok("User")
    } else {
        Err("the resource names neither the User nor the Group schema in `schemas`, and the row has no type".into())
    }
}

/// Resources of a type in the directory with a key (two at most: enough to tell one from many).
async fn lookup(
    s: &AppState,
    dir: &Directory,
    rt: &str,
    key: ResourceKey<'_>,
) -> Result<Vec<StoredResource>, StoreError> {
    s.store.scim_find(&dir.id, rt, key, 2).await
}

/// The resource a row updates: by `externalId`, then by name. `Err` for an ambiguous
/// `externalId` (it is not unique in SCIM).
async fn find_existing(
    s: &AppState,
    dir: &Directory,
    rt: &str,
    body: &Value,
) -> Result<Result<Option<StoredResource>, String>, Fatal> {
    if let Some(x) = body.get("externalId").and_then(Value::as_str) {
        let found = lookup(s, dir, rt, ResourceKey::ExternalId(x)).await.map_err(fatal)?;
        match found.len() {
            0 => {}
            1 => return Ok(Ok(found.into_iter().next())),
            _ => return Ok(Err(format!("externalId {:?} matches more than one {rt}", clip(x)))),
        }
    }
    let name_attr = if rt == "Group" { "displayName" } else { "userName" };
    let Some(name) = body.get(name_attr).and_then(Value::as_str) else { return Ok(Ok(None)) };
    let key = fold(name);
    let found = lookup(s, dir, rt, ResourceKey::Name(&key)).await.map_err(fatal)?;
    Ok(Ok(found.into_iter().next()))
}

/// Replaces each member's `value` by the id it names in this directory.
/// `planned` (dry runs): references to users the dry run would create, kept as they are.
async fn resolve_members(
    s: &AppState,
    dir: &Directory,
    body: &mut Value,
    planned: &HashSet<String>,
) -> Result<Result<(), String>, Fatal> {
    let Some(Value::Array(members)) = body.get_mut("members") else { return Ok(Ok(())) };
    for m in members.iter_mut() {
        let Some(v) = m.get("value").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(Err("each member needs a value".into()));
        };
        match resolve(s, dir, &v).await.map_err(fatal)? {
            Some(id) => m["value"] = Value::String(id),
            None if planned.contains(&fold(&v)) => {}
            None => {
                return Ok(Err(format!(
                    "member {:?} is not the id, externalId or userName of a user (nor the id of a group) in directory {}",
                    clip(&v),
                    dir.name
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// A member reference as an id: a user or group id, a user's `externalId` (when it names
/// exactly one user), or a `userName`.
async fn resolve(s: &AppState, dir: &Directory, v: &str) -> Result<Option<String>, StoreError> {
    for rt in ["User", "Group"] {
        match s.store.scim_get(&dir.id, rt, v).await {
            Ok(r) => return Ok(Some(r.id)),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let by_ext = lookup(s, dir, "User", ResourceKey::ExternalId(v)).await?;
    if by_ext.len() == 1 {
        return Ok(by_ext.into_iter().next().map(|r| r.id));
    }
    let by_name = lookup(s, dir, "User", ResourceKey::Name(&fold(v))).await?;
    Ok(by_name.into_iter().next().map(|r| r.id))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
