//! `POST /Bulk` (RFC 7644 §3.7): many create/replace/patch/delete operations on Users and
//! Groups in one request.
//!
//! - The key needs the `bulk` scope (403 otherwise, audited) and, per operation, the
//!   write scope of its resource type (a missing one fails only that operation, 403).
//! - At most [`MAX_OPERATIONS`] operations (413 `tooMany`) and [`MAX_PAYLOAD_SIZE`] bytes
//!   (413); both are advertised in `/ServiceProviderConfig`.
//! - Each operation runs through the same code as its single-resource endpoint
//!   (`resources::*_core`), so it is its own transaction, audited by the store.
//! - `bulkId:X` — any string of `data` equal to it, or the id in `path` — is the id the
//!   POST with `bulkId` X created. Operations run in request order, except that one
//!   referring to a not-yet-created bulkId waits until it is created (forward
//!   references). Operations on a reference cycle fail with 409 `invalidValue`, as do
//!   operations referring to a bulkId whose operation failed; a bulkId no POST of the
//!   request defines fails the operation with 400 `invalidValue`.
//! - `failOnErrors: N` stops processing at the Nth error; operations not processed are
//!   not reported. Results are reported in request order.
//! - A malformed request is 400 `invalidSyntax`; an operation with an unknown method,
//!   path or missing `data` fails alone with 400.

use std::collections::{BTreeSet, HashMap, HashSet};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use fedkey_core::Scope;
use fedkey_scim::{ScimError, ScimType};
use serde_json::{Map, Value, json};

use super::body::{IfMatch, ScimBody, etag, if_match};
use super::present::location;
use super::resources::{audit_refusal, create_core, delete_core, patch_core, replace_core};
use super::{Ctx, SCIM_BODY_LIMIT, ScimResponse, scim_json};
use crate::AppState;

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// Most operations in one bulk request.
pub const MAX_OPERATIONS: usize = 1000;
/// Largest bulk request body (the SCIM body limit).
pub const MAX_PAYLOAD_SIZE: usize = SCIM_BODY_LIMIT;

const BULK_ID_PREFIX: &str = "bulkId:";

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Method> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A well-formed operation.
struct Plan {
    method: Method,
    /// `User` or `Group`.
    resource_type: &'static str,
    /// The id in the path (possibly `bulkId:X`); `None` for POST.
    id: Option<String>,
    data: Value,
    /// The versions `version` allows (as `If-Match` would).
    expected: IfMatch,
}

/// One operation of the request.
struct Op {
    /// The method as reported back (normalised when known).
    method: Option<String>,
    bulk_id: Option<String>,
    plan: std::result::Result<Plan, ScimError>,
    /// bulkIds referenced by the path and data.
    deps: BTreeSet<String>,
}

fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some(scim_type), detail)
}

/// A member of a JSON object by case-insensitive name.
fn get_ci<'m>(m: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// The versions a `version` value allows, parsed as an `If-Match` header.
fn expected_version(v: &str) -> IfMatch {
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

/// Every `bulkId:X` string in `v` (as X).
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                out.insert(id.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        Value::Object(m) => m.values().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// Replaces every `bulkId:X` string of `v` by the id X created.
fn substitute(v: &mut Value, created: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix(BULK_ID_PREFIX).and_then(|b| created.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, created)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute(i, created)),
        _ => {}
    }
}

/// Parses one element of `Operations`; only a non-object fails the whole request.
fn parse_op(i: usize, raw: &Value) -> std::result::Result<Op, ScimError> {
    let Some(obj) = raw.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, format!("operation {}: must be a JSON object", i + 1)));
    };
    let method_raw = get_ci(obj, "method").and_then(Value::as_str);
    let method = method_raw.and_then(Method::parse);
    let bulk_id = get_ci(obj, "bulkId").and_then(Value::as_str).map(str::to_owned);
    let mut deps = BTreeSet::new();
    let plan = (|| {
        let method = method.ok_or_else(|| match method_raw {
            Some(m) => bad(
                ScimType::InvalidValue,
                format!("unsupported method {:?}: use POST, PUT, PATCH or DELETE", super::discovery::clip(m)),
            ),
            None => bad(ScimType::InvalidValue, "an operation needs a \"method\""),
        })?;
        match get_ci(obj, "bulkId") {
            None | Some(Value::Null) => {}
            Some(Value::String(b)) if !b.is_empty() => {}
            Some(_) => return Err(bad(ScimType::InvalidValue, "\"bulkId\" must be a non-empty string")),
        }
        let path = get_ci(obj, "path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(ScimType::InvalidPath, "an operation needs a \"path\""))?;
        let bad_path = || {
            bad(
                ScimType::InvalidPath,
                format!("unsupported path {:?} for {}", super::discovery::clip(path), method.as_str()),
            )
        };
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        let resource_type = match parts.next() {
            Some("Users") => "User",
            Some("Groups") => "Group",
            _ => return Err(bad_path()),
        };
        let id = parts.next().map(str::to_owned);
        if parts.next().is_some() || id.as_deref() == Some("") || (method == Method::Post) != id.is_none() {
            return Err(bad_path());
        }
        let expected = match get_ci(obj, "version") {
            None | Some(Value::Null) => IfMatch::Any,
            Some(Value::String(v)) => expected_version(v),
            Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"version\" must be a string")),
        };
        let data = match (method, get_ci(obj, "data")) {
            (Method::Delete, _) => Value::Null,
            (_, Some(d @ Value::Object(_))) => d.clone(),
            (_, Some(_)) => return Err(bad(ScimType::InvalidSyntax, "\"data\" must be a JSON object")),
            (_, None) => {
                return Err(bad(ScimType::InvalidSyntax, format!("{} needs \"data\"", method.as_str())));
            }
        };
        if let Some(id) = &id {
            collect_refs(&Value::String(id.clone()), &mut deps);
        }
        collect_refs(&data, &mut deps);
        Ok(Plan { method, resource_type, id, data, expected })
    })();
    let method = method.map(|m| m.as_str().to_owned()).or_else(|| method_raw.map(str::to_owned));
    Ok(Op { method, bulk_id, plan, deps })
}

/// The parsed request: `failOnErrors` and the operations.
fn parse_request(body: &Value) -> std::result::Result<(Option<usize>, Vec<Op>), ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, "a BulkRequest must be a JSON object"));
    };
    let schemas_ok = matches!(get_ci(obj, "schemas"), Some(Value::Array(s))
        if s.iter().any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST))));
    if !schemas_ok {
        return Err(bad(ScimType::InvalidSyntax, format!("\"schemas\" must contain {BULK_REQUEST}")));
    }
    let fail_on_errors = match get_ci(obj, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n >= 1) {
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => return Err(bad(ScimType::InvalidSyntax, "\"failOnErrors\" must be a positive integer")),
        },
    };
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) => ops,
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" must be an array")),
        None => return Err(bad(ScimType::InvalidSyntax, "a BulkRequest needs an \"Operations\" array")),
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            413,
            Some(ScimType::TooMany),
            format!("the bulk request has {} operations; maxOperations is {MAX_OPERATIONS}", ops.len()),
        ));
    }
    let ops = ops.iter().enumerate().map(|(i, raw)| parse_op(i, raw)).collect::<Result<Vec<_>, _>>()?;
    Ok((fail_on_errors, ops))
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
    let rt = plan.resource_type;
    let res = match (plan.method, id.as_deref()) {
        (Method::Post, _) => {
            let r = create_core(s, ctx, rt, &data).await;
            audit_refusal(s, ctx, "scim.create", rt, None, r).await.map(|(_, r)| (r, 201))
        }
        (Method::Put, Some(id)) => {
            let r = replace_core(s, ctx, rt, id, &plan.expected, &data).await;
            audit_refusal(s, ctx, "scim.replace", rt, Some(id), r).await.map(|(_, r)| (r, 200))
        }
        (Method::Patch, Some(id)) => {
            let r = patch_core(s, ctx, rt, id, &plan.expected, &data).await;
            audit_refusal(s, ctx, "scim.patch", rt, Some(id), r).await.map(|(_, r)| (r, 200))
        }
        (Method::Delete, Some(id)) => {
            let r = delete_core(s, ctx, rt, id, &plan.expected).await;
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

/// The pending operations that lie on a cycle of bulkId references among pending
/// operations.
fn on_cycle(ops: &[Op], pending: &[usize], owner: &HashMap<String, usize>) -> Vec<usize> {
    let is_pending: HashSet<usize> = pending.iter().copied().collect();
    let edges = |i: usize| -> Vec<usize> {
        ops.get(i)
            .map(|op| op.deps.iter().filter_map(|d| owner.get(d).copied()).filter(|j| is_pending.contains(j)).collect())
            .unwrap_or_default()
    };
    pending
        .iter()
        .copied()
        .filter(|&start| {
            // Is `start` reachable from its own successors?
            let mut seen = BTreeSet::new();
            let mut stack = edges(start);
            while let Some(j) = stack.pop() {
                if j == start {
                    return true;
                }
                if seen.insert(j) {
                    stack.extend(edges(j));
                }
            }
            false
        })
        .collect()
}

pub async fn bulk(
    State(s): State<AppState>,
    ctx: Ctx,
    body: std::result::Result<ScimBody, ScimResponse>,
) -> std::result::Result<Response, ScimResponse> {
    ctx.require(&s, Scope::Bulk, "use /Bulk").await?;
    let body = match body {
        Ok(ScimBody(b)) => b,
        Err(ScimResponse(e)) if e.status_code() == 413 => {
            return Err(ScimResponse(ScimError::new(
                413,
                None,
                format!("the size of the bulk operation exceeds the maxPayloadSize ({MAX_PAYLOAD_SIZE})"),
            )));
        }
        Err(e) => return Err(e),
    };
    let (fail_on_errors, ops) = parse_request(&body)?;

    // The POST that defines each bulkId (the first one, when repeated).
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut duplicate = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        if let (Some(b), Ok(Plan { method: Method::Post, .. })) = (&op.bulk_id, &op.plan) {
            if owner.contains_key(b) {
                duplicate.insert(i);
            } else {
                owner.insert(b.clone(), i);
            }
        }
    }

    let mut results: Vec<Option<Value>> = ops.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    let mut created: HashMap<String, String> = HashMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut errors = 0usize;
    let stop = |errors: usize| fail_on_errors.is_some_and(|n| errors >= n);

    'run: while !pending.is_empty() {
        // The first pending operation all of whose references are settled.
        let ready = pending.iter().position(|&i| {
            ops.get(i).is_some_and(|op| {
                op.plan.is_err()
                    || op.deps.iter().all(|d| created.contains_key(d) || failed.contains(d) || !owner.contains_key(d))
            })
        });
        let Some(pos) = ready else {
            // Everything left waits on something pending: fail the operations on cycles
            // (those depending on them fail next round, as their references failed).
            for i in on_cycle(&ops, &pending, &owner) {
                let Some(op) = ops.get(i) else { continue };
                let error = ScimError::new(
                    409,
                    Some(ScimType::InvalidValue),
                    "circular bulkId references: the operations referring to each other could not be ordered",
                );
                if let Some(b) = &op.bulk_id {
                    failed.insert(b.clone());
                }
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(op_result(op, Outcome::Failed { location: None, error }));
                }
                pending.retain(|&j| j != i);
                errors += 1;
                if stop(errors) {
                    break 'run;
                }
            }
            continue;
        };
        let i = pending.remove(pos);
        let Some(op) = ops.get(i) else { continue };
        let (outcome, new_id) = match &op.plan {
            Err(e) => (Outcome::Failed { location: None, error: e.clone() }, None),
            Ok(_) if duplicate.contains(&i) => {
                let error = bad(ScimType::InvalidValue, "another POST of this request already uses this bulkId");
                (Outcome::Failed { location: None, error }, None)
            }
            Ok(plan) => {
                let unknown = op.deps.iter().find(|d| !owner.contains_key(*d));
                let broken = op.deps.iter().find(|d| failed.contains(*d));
                match (unknown, broken) {
                    (Some(d), _) => {
                        let error = bad(
                            ScimType::InvalidValue,
                            format!(
                                "bulkId {:?} is not defined by any POST of this request",
                                super::discovery::clip(d)
                            ),
                        );
                        (Outcome::Failed { location: None, error }, None)
                    }
                    (None, Some(d)) => {
                        let error = ScimError::new(
                            409,
                            Some(ScimType::InvalidValue),
                            format!(
                                "bulkId {:?} cannot be resolved: the operation defining it failed",
                                super::discovery::clip(d)
                            ),
                        );
                        (Outcome::Failed { location: None, error }, None)
                    }
                    (None, None) => execute(&s, &ctx, plan, &created).await,
                }
            }
        };
        let is_error = matches!(outcome, Outcome::Failed { .. });
        if let Some(b) = &op.bulk_id
            && owner.get(b) == Some(&i)
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
            if stop(errors) {
                break;
            }
        }
    }

    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(scim_json(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})))
}
