//! `POST /Bulk` (RFC 7644 §3.7): many create/replace/patch/delete operations on Users and
//! Groups in one request. Parsing and planning (bulkId references, cycles, limits) are
//! [`fedkey_scim::bulk`]; this module executes the plan.
//!
//! - The key needs the `bulk` scope (403 otherwise, audited) and, per operation, the
//!   write scope of its resource type (a missing one fails only that operation, 403).
//! - At most [`MAX_OPERATIONS`] operations (413 `tooMany`), [`MAX_REFERENCES`](fedkey_scim::bulk::MAX_REFERENCES) bulkId
//!   references (413 `tooMany`) and [`MAX_PAYLOAD_SIZE`] bytes (413); the first and the
//!   last are advertised in `/ServiceProviderConfig`.
//! - The body is parsed and planned on the blocking pool: the work is linear, but a
//!   1 MiB request still costs milliseconds of CPU that must not stall the async
//!   workers (and `/healthz` with them).
//! - Each operation runs through the same code as its single-resource endpoint
//!   (`resources::*_core`), so it is its own transaction, audited by the store.
//! - Operations on a reference cycle fail with 409 `invalidValue`, as do operations
//!   referring to a bulkId whose operation failed; a bulkId no POST of the request
//!   defines fails the operation with 400 `invalidValue`.
//! - `failOnErrors: N` stops processing at the Nth error; operations not processed are
//!   not reported. Results are reported in request order.
//! - A malformed request is 400 `invalidSyntax`; an operation with an unknown method,
//!   path or missing `data` fails alone with 400.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use fedkey_core::Scope;
pub use fedkey_scim::bulk::MAX_OPERATIONS;
use fedkey_scim::bulk::{BULK_ID_PREFIX, BULK_RESPONSE, Method, Op, Plan, Request, Schedule, Step, substitute};
use fedkey_scim::{ScimError, ScimType};
use serde_json::{Map, Value, json};

use super::body::{IfMatch, ScimBytes, etag, if_match, json_object};
use super::present::location;
use super::resources::{audit_refusal, create_core, delete_core, patch_core, replace_core};
use super::{Ctx, SCIM_BODY_LIMIT, ScimResponse, scim_json};
use crate::AppState;

/// Largest bulk request body (the SCIM body limit).
pub const MAX_PAYLOAD_SIZE: usize = SCIM_BODY_LIMIT;

fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some(scim_type), detail)
}

/// The versions a `version` value allows, parsed as an `If-Match` header.
fn expected_version(v: Option<&str>) -> IfMatch {
    let Some(v) = v else { return IfMatch::Any };
    let mut h = HeaderMap::new();
    match HeaderValue::from_str(v) {
        Ok(hv) => {
            h.insert(header::IF_MATCH, hv);
            if_match(&h)
        }
        // Not a header value: matches no version (412).
        Err(_) => IfMatch::OneOf(Vec::new()),
    }
}

/// Parses and plans a request on the blocking pool.
async fn plan(bytes: Bytes) -> std::result::Result<(Request, Schedule), ScimResponse> {
    let planned = tokio::task::spawn_blocking(move || {
        let body = json_object(&bytes)?;
        let request = fedkey_scim::bulk::parse_request(&body).map_err(ScimResponse)?;
        let schedule = fedkey_scim::bulk::schedule(&request.ops);
        Ok((request, schedule))
    })
    .await;
    planned.unwrap_or_else(|_| Err(ScimResponse(ScimError::new(500, None, "the bulk request could not be planned"))))
}

/// What became of one operation.
enum Outcome {
    Done { location: String, version: Option<String>, status: u16 },
    Failed { location: Option<String>, error: ScimError },
}

fn op_result(op: &Op, outcome: Outcome) -> Value {
    let mut out = Map::new();
    if let Some(m) = &op.method {
        out.insert("method".into(), Value::String(m.clone()));
    }
    if let Some(b) = &op.bulk_id {
        out.insert("bulkId".into(), Value::String(b.clone()));
    }
    match outcome {
        Outcome::Done { location, version, status } => {
            out.insert("location".into(), Value::String(location));
            if let Some(v) = version {
                out.insert("version".into(), Value::String(v));
            }
            out.insert("status".into(), Value::String(status.to_string()));
        }
        Outcome::Failed { location, error } => {
            if let Some(l) = location {
                out.insert("location".into(), Value::String(l));
            }
            out.insert("status".into(), Value::String(error.status.clone()));
            out.insert("response".into(), serde_json::to_value(&error).unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// Runs one well-formed operation whose references are all resolved.
async fn execute(s: &AppState, ctx: &Ctx, plan: &Plan, created: &HashMap<String, String>) -> (Outcome, Option<String>) {
    let id = plan.id.as_ref().map(|id| match id.strip_prefix(BULK_ID_PREFIX).and_then(|b| created.get(b)) {
        Some(real) => real.clone(),
        None => id.clone(),
    });
    let loc = id.as_deref().map(|id| location(&ctx.base, plan.resource_type, id));
    let mut data = plan.data.clone();
    substitute(&mut data, created);
    let expected = expected_version(plan.version.as_deref());
    let rt = plan.resource_type;
    let res = match (plan.method, id.as_deref()) {
        (Method::Post, _) => {
            let r = create_core(s, ctx, rt, &data).await;
            audit_refusal(s, ctx, "scim.create", rt, None, r).await.map(|(_, r)| (r, 201))
        }
        (Method::Put, Some(id)) => {
            let r = replace_core(s, ctx, rt, id, &expected, &data).await;
            audit_refusal(s, ctx, "scim.replace", rt, Some(id), r).await.map(|(_, r)| (r, 200))
        }
        (Method::Patch, Some(id)) => {
            let r = patch_core(s, ctx, rt, id, &expected, &data).await;
            audit_refusal(s, ctx, "scim.patch", rt, Some(id), r).await.map(|(_, r)| (r, 200))
        }
        (Method::Delete, Some(id)) => {
            let r = delete_core(s, ctx, rt, id, &expected).await;
            return match audit_refusal(s, ctx, "scim.delete", rt, Some(id), r).await {
                Ok(_) => (Outcome::Done { location: loc.unwrap_or_default(), version: None, status: 204 }, None),
                Err(ScimResponse(error)) => (Outcome::Failed { location: loc, error }, None),
            };
        }
        (_, None) => Err(ScimResponse(bad(ScimType::InvalidPath, "this method needs a resource id in its path"))),
    };
    match res {
        Ok((r, status)) => (
            Outcome::Done { location: location(&ctx.base, rt, &r.id), version: Some(etag(r.version)), status },
            Some(r.id),
        ),
        Err(ScimResponse(error)) => (Outcome::Failed { location: loc, error }, None),
    }
}

pub async fn bulk(
    State(s): State<AppState>,
    ctx: Ctx,
    body: std::result::Result<ScimBytes, ScimResponse>,
) -> std::result::Result<Response, ScimResponse> {
    ctx.require(&s, Scope::Bulk, "use /Bulk").await?;
    let bytes = match body {
        Ok(ScimBytes(b)) => b,
        Err(ScimResponse(e)) if e.status_code() == 413 => {
            return Err(ScimResponse(ScimError::new(
                413,
                None,
                format!("the size of the bulk operation exceeds the maxPayloadSize ({MAX_PAYLOAD_SIZE})"),
            )));
        }
        Err(e) => return Err(e),
    };
    let (Request { fail_on_errors, ops }, schedule) = plan(bytes).await?;

    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut created: HashMap<String, String> = HashMap::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut errors = 0usize;
    for step in &schedule.steps {
        let (i, on_cycle) = match *step {
            Step::Run(i) => (i, false),
            Step::Cycle(i) => (i, true),
        };
        let Some(op) = ops.get(i) else { continue };
        let (outcome, new_id) = if on_cycle {
            let error = ScimError::new(
                409,
                Some(ScimType::InvalidValue),
                "circular bulkId references: the operations referring to each other could not be ordered",
            );
            (Outcome::Failed { location: None, error }, None)
        } else {
            run(&s, &ctx, op, schedule.duplicate.contains(&i), &schedule.owner, &created, &failed).await
        };
        let is_error = matches!(outcome, Outcome::Failed { .. });
        if let Some(b) = &op.bulk_id
            && schedule.owner.get(b) == Some(&i)
        {
            match &new_id {
                Some(id) => {
                    created.insert(b.clone(), id.clone());
                }
                None => {
                    failed.insert(b.clone());
                }
            }
        }
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(op_result(op, outcome));
        }
        if is_error {
            errors += 1;
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break;
            }
        }
    }

    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(scim_json(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})))
}

/// Processes an operation whose references are all settled: fails it if it is malformed,
/// repeats a bulkId, or refers to a bulkId that is undefined or failed; runs it otherwise.
async fn run(
    s: &AppState,
    ctx: &Ctx,
    op: &Op,
    duplicate: bool,
    owner: &HashMap<String, usize>,
    created: &HashMap<String, String>,
    failed: &HashSet<String>,
) -> (Outcome, Option<String>) {
    let plan = match &op.plan {
        Err(e) => return (Outcome::Failed { location: None, error: e.clone() }, None),
        Ok(plan) => plan,
    };
    if duplicate {
        let error = bad(ScimType::InvalidValue, "another POST of this request already uses this bulkId");
        return (Outcome::Failed { location: None, error }, None);
    }
    if let Some(d) = op.deps.iter().find(|d| !owner.contains_key(*d)) {
        let error = bad(
            ScimType::InvalidValue,
            format!("bulkId {:?} is not defined by any POST of this request", super::discovery::clip(d)),
        );
        return (Outcome::Failed { location: None, error }, None);
    }
    if let Some(d) = op.deps.iter().find(|d| failed.contains(*d)) {
        let error = ScimError::new(
            409,
            Some(ScimType::InvalidValue),
            format!("bulkId {:?} cannot be resolved: the operation defining it failed", super::discovery::clip(d)),
        );
        return (Outcome::Failed { location: None, error }, None);
    }
    execute(s, ctx, plan, created).await
}
