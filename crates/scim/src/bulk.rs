//! SCIM Bulk (RFC 7644 §3.7) without I/O: parsing a BulkRequest into operations and
//! planning the order they run in. The server executes the plan.
//!
//! - `bulkId:X` — any string of `data` equal to it, or the id in `path` — refers to the
//!   resource the POST with `bulkId` X creates. Operations run in request order, except
//!   that one referring to a bulkId not created yet waits until it is (forward
//!   references). Operations on a reference cycle fail with 409 `invalidValue`.
//! - Planning is Kahn's topological sort with the lowest request index first, so its
//!   work grows with operations plus references (times log of the operations), never
//!   with their product; cycles are found once, by an iterative Tarjan pass over what is
//!   left when nothing is ready. Nothing recurses on the reference graph.
//! - At most [`MAX_OPERATIONS`] operations and [`MAX_REFERENCES`] `bulkId:` references
//!   per request (413 `tooMany`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::resource::clip;
use crate::{ScimError, ScimType};

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// Most operations in one bulk request.
pub const MAX_OPERATIONS: usize = 1000;
/// Most `bulkId:` references (strings in `data`, ids in `path`) in one bulk request.
/// Ten per operation at the largest request: a group POST naming every user created in
/// the same request fits many times over.
pub const MAX_REFERENCES: usize = 10_000;

pub const BULK_ID_PREFIX: &str = "bulkId:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
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

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A well-formed operation.
#[derive(Debug, Clone)]
pub struct Plan {
    pub method: Method,
    /// `User` or `Group`.
    pub resource_type: &'static str,
    /// The id in the path (possibly `bulkId:X`); `None` for POST.
    pub id: Option<String>,
    /// The body; `Null` for DELETE.
    pub data: Value,
    /// `version`, which acts as `If-Match`.
    pub version: Option<String>,
}

/// One operation of the request.
#[derive(Debug, Clone)]
pub struct Op {
    /// The method as reported back (normalised when known).
    pub method: Option<String>,
    pub bulk_id: Option<String>,
    pub plan: Result<Plan, ScimError>,
    /// bulkIds referenced by the path and data.
    pub deps: BTreeSet<String>,
}

/// A parsed BulkRequest.
#[derive(Debug, Clone)]
pub struct Request {
    /// `failOnErrors`: stop at this many failed operations.
    pub fail_on_errors: Option<usize>,
    pub ops: Vec<Op>,
}

fn bad(scim_type: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some(scim_type), detail)
}

fn too_many(detail: String) -> ScimError {
    ScimError::new(413, Some(ScimType::TooMany), detail)
}

/// A member of a JSON object by case-insensitive name.
fn get_ci<'m>(m: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Adds every `bulkId:X` string of `v` (as X) to `out`; returns how many there were.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) -> usize {
    let mut count = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                    count += 1;
                    if !out.contains(id) {
                        out.insert(id.to_owned());
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    count
}

/// Replaces every `bulkId:X` string of `v` by the id X created.
pub fn substitute(v: &mut Value, created: &HashMap<String, String>) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX).and_then(|b| created.get(b)) {
                    *s = id.clone();
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(m) => stack.extend(m.values_mut()),
            _ => {}
        }
    }
}

/// The resource type and id of a `path`; `None` if it is not one `method` takes.
fn parse_path(method: Method, path: &str) -> Option<(&'static str, Option<String>)> {
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    let resource_type = match parts.next() {
        Some("Users") => "User",
        Some("Groups") => "Group",
        _ => return None,
    };
    let id = parts.next().map(str::to_owned);
    if parts.next().is_some() || id.as_deref() == Some("") || (method == Method::Post) != id.is_none() {
        return None;
    }
    Some((resource_type, id))
}

/// Checks one operation object; `refs` counts its `bulkId:` references.
fn parse_plan(
    obj: &Map<String, Value>,
    method: Option<Method>,
    method_raw: Option<&str>,
    deps: &mut BTreeSet<String>,
    refs: &mut usize,
) -> Result<Plan, ScimError> {
    let method = method.ok_or_else(|| match method_raw {
        Some(m) => {
            bad(ScimType::InvalidValue, format!("unsupported method {:?}: use POST, PUT, PATCH or DELETE", clip(m)))
        }
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
    let (resource_type, id) = parse_path(method, path).ok_or_else(|| {
        bad(ScimType::InvalidPath, format!("unsupported path {:?} for {}", clip(path), method.as_str()))
    })?;
    let version = match get_ci(obj, "version") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"version\" must be a string")),
    };
    let data = match (method, get_ci(obj, "data")) {
        (Method::Delete, _) => Value::Null,
        (_, Some(d @ Value::Object(_))) => d.clone(),
        (_, Some(_)) => return Err(bad(ScimType::InvalidSyntax, "\"data\" must be a JSON object")),
        (_, None) => return Err(bad(ScimType::InvalidSyntax, format!("{} needs \"data\"", method.as_str()))),
    };
    if let Some(id) = &id {
        *refs += collect_refs(&Value::String(id.clone()), deps);
    }
    *refs += collect_refs(&data, deps);
    Ok(Plan { method, resource_type, id, data, version })
}

/// Parses one element of `Operations`; only a non-object fails the whole request.
fn parse_op(i: usize, raw: &Value, refs: &mut usize) -> Result<Op, ScimError> {
    let Some(obj) = raw.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, format!("operation {}: must be a JSON object", i + 1)));
    };
    let method_raw = get_ci(obj, "method").and_then(Value::as_str);
    let method = method_raw.and_then(Method::parse);
    let bulk_id = get_ci(obj, "bulkId").and_then(Value::as_str).map(str::to_owned);
    let mut deps = BTreeSet::new();
    let plan = parse_plan(obj, method, method_raw, &mut deps, refs);
    if plan.is_err() {
        deps.clear();
    }
    let method = method.map(|m| m.as_str().to_owned()).or_else(|| method_raw.map(str::to_owned));
    Ok(Op { method, bulk_id, plan, deps })
}

/// Parses a BulkRequest body. A malformed request, or one over a limit, fails whole;
/// a malformed operation fails alone (its `plan` is the error).
pub fn parse_request(body: &Value) -> Result<Request, ScimError> {
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
    let raw_ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) => ops,
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" must be an array")),
        None => return Err(bad(ScimType::InvalidSyntax, "a BulkRequest needs an \"Operations\" array")),
    };
    if raw_ops.len() > MAX_OPERATIONS {
        return Err(too_many(format!(
            "the bulk request has {} operations; maxOperations is {MAX_OPERATIONS}",
            raw_ops.len()
        )));
    }
    let mut refs = 0;
    let mut ops = Vec::with_capacity(raw_ops.len());
    for (i, raw) in raw_ops.iter().enumerate() {
        ops.push(parse_op(i, raw, &mut refs)?);
        if refs > MAX_REFERENCES {
            return Err(too_many(format!(
                "the bulk request has more than {MAX_REFERENCES} bulkId references; split it into smaller requests"
            )));
        }
    }
    Ok(Request { fail_on_errors, ops })
}

/// One step of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Process the operation: every operation it refers to has been processed.
    Run(usize),
    /// Fail the operation with 409: it lies on a cycle of bulkId references.
    Cycle(usize),
}

/// The order in which to process the operations of a request.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Every operation exactly once.
    pub steps: Vec<Step>,
    /// The POST that defines each bulkId (the first one, when repeated).
    pub owner: HashMap<String, usize>,
    /// POSTs repeating a bulkId an earlier POST defines.
    pub duplicate: HashSet<usize>,
    /// Elementary steps the planning took (nodes and edges visited), for tests that
    /// bound its cost.
    pub work: usize,
}

/// Plans the processing order: the lowest-index operation whose references are all
/// processed goes next; when none is, the operations on reference cycles fail (in
/// request order) and those waiting on them follow.
pub fn schedule(ops: &[Op]) -> Schedule {
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut duplicate = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if let (Some(b), Ok(Plan { method: Method::Post, .. })) = (&op.bulk_id, &op.plan) {
            if owner.contains_key(b) {
                duplicate.insert(i);
            } else {
                owner.insert(b.clone(), i);
            }
        }
    }
    let mut work = 0;
    // needs[i]: the operations i waits for; dependents[j]: those waiting for j.
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for (i, op) in ops.iter().enumerate() {
        if op.plan.is_err() {
            continue;
        }
        for d in &op.deps {
            work += 1;
            if let Some(&j) = owner.get(d) {
                needs[i].push(j);
                dependents[j].push(i);
            }
        }
    }
    let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut done = vec![false; ops.len()];
    let mut ready: BinaryHeap<Reverse<usize>> = (0..ops.len()).filter(|&i| waiting[i] == 0).map(Reverse).collect();
    let mut steps = Vec::with_capacity(ops.len());
    let mut release = |j: usize, done: &[bool], ready: &mut BinaryHeap<Reverse<usize>>, work: &mut usize| {
        for &k in &dependents[j] {
            *work += 1;
            waiting[k] -= 1;
            if waiting[k] == 0 && !done[k] {
                ready.push(Reverse(k));
            }
        }
    };
    while steps.len() < ops.len() {
        if let Some(Reverse(i)) = ready.pop() {
            work += 1;
            done[i] = true;
            steps.push(Step::Run(i));
            release(i, &done, &mut ready, &mut work);
            continue;
        }
        // Nothing is ready: everything left waits on something left.
        let cyclic = on_cycle(&needs, &done, &mut work);
        if cyclic.is_empty() {
            break; // unreachable: a stalled graph has a cycle
        }
        for &i in &cyclic {
            done[i] = true;
            steps.push(Step::Cycle(i));
        }
        for &i in &cyclic {
            release(i, &done, &mut ready, &mut work);
        }
    }
    Schedule { steps, owner, duplicate, work }
}

/// The operations not `done` that lie on a cycle of `needs` among those not done
/// (a strongly connected component of two or more, or one needing itself), in
/// request order. Tarjan's algorithm with an explicit stack.
fn on_cycle(needs: &[Vec<usize>], done: &[bool], work: &mut usize) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = needs.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut cyclic = Vec::new();
    // (node, how many of its edges have been followed)
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if done[root] || index[root] != UNSEEN {
            continue;
        }
        call.push((root, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(top) = call.last_mut() {
            *work += 1;
            let v = top.0;
            if let Some(&w) = needs[v].get(top.1) {
                top.1 += 1;
                if done[w] {
                    continue;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    *work += 1;
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || needs[v].contains(&v) {
                    cyclic.extend(component);
                }
            }
        }
    }
    cyclic.sort_unstable();
    cyclic
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(ops: Vec<Value>) -> Result<Request, ScimError> {
        parse_request(&json!({"schemas": [BULK_REQUEST], "Operations": ops}))
    }

    /// A group POST with `bulkId` `g{i}` whose members are the bulkIds `g{j}` of `refs`.
    fn group(i: usize, refs: impl IntoIterator<Item = usize>) -> Value {
        let members: Vec<Value> = refs.into_iter().map(|j| json!({"value": format!("bulkId:g{j}")})).collect();
        json!({"method": "POST", "path": "/Groups", "bulkId": format!("g{i}"),
               "data": {"displayName": format!("G{i}"), "members": members}})
    }

    fn plan_of(ops: Vec<Value>) -> Schedule {
        schedule(&request(ops).unwrap().ops)
    }

    #[test]
    fn request_order_except_forward_references() {
        let s = plan_of(vec![
            json!({"method": "PATCH", "path": "/Groups/bulkId:g2", "data": {"Operations": []}}),
            group(1, []),
            group(2, [1]),
            json!({"method": "DELETE", "path": "/Users/u1"}),
        ]);
        assert_eq!(s.steps, [Step::Run(1), Step::Run(2), Step::Run(0), Step::Run(3)]);
    }

    #[test]
    fn cycles_fail_in_request_order_then_their_dependents_run() {
        // a <-> b, c -> a, a self-reference, an independent user (the e2e shape).
        let s = plan_of(vec![
            group(0, [1]),
            group(1, [0]),
            group(2, [0]),
            group(3, [3]),
            json!({"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "erin"}}),
        ]);
        assert_eq!(s.steps, [Step::Run(4), Step::Cycle(0), Step::Cycle(1), Step::Cycle(3), Step::Run(2)]);
    }

    #[test]
    fn malformed_duplicate_and_undefined_references_do_not_wait() {
        let s = plan_of(vec![
            group(0, [9]),
            json!({"method": "BREW", "path": "/Groups", "data": {"x": "bulkId:g0"}}),
            group(0, [2]),
            group(2, []),
        ]);
        // 0 refers to an undefined bulkId; 1 is malformed; 2 repeats g0 and waits for g2.
        assert_eq!(s.steps, [Step::Run(0), Step::Run(1), Step::Run(3), Step::Run(2)]);
        assert_eq!(s.duplicate, HashSet::from([2]));
        assert_eq!(s.owner.get("g0"), Some(&0));
    }

    /// The planner's work is linear in operations plus references: the old scan restarted
    /// from the first pending operation after each step, and checked each operation on a
    /// cycle by a walk of the whole graph, quadratic in both shapes below.
    #[test]
    fn planning_work_is_linear_in_operations_and_references() {
        let n = MAX_OPERATIONS;
        let fan = 9;
        // A chain written backwards: each group waits for the next nine.
        let chain: Vec<Value> = (0..n).map(|i| group(i, (i + 1..=i + fan).filter(|&j| j < n))).collect();
        // A ring: each group refers to the next nine, wrapping around; all are on cycles.
        let ring: Vec<Value> = (0..n).map(|i| group(i, (i + 1..=i + fan).map(|j| j % n))).collect();
        for (name, ops, cyclic) in [("chain", chain, false), ("ring", ring, true)] {
            let req = request(ops).unwrap();
            let refs: usize = req.ops.iter().map(|o| o.deps.len()).sum();
            let s = schedule(&req.ops);
            assert_eq!(s.steps.len(), n, "{name}");
            let expected: Vec<Step> =
                if cyclic { (0..n).map(Step::Cycle).collect() } else { (0..n).rev().map(Step::Run).collect() };
            assert_eq!(s.steps, expected, "{name}");
            assert!(s.work <= 4 * (n + refs), "{name}: {} steps for {n} operations and {refs} references", s.work);
        }
    }

    #[test]
    fn too_many_references_is_413_too_many() {
        let per_op = MAX_REFERENCES / 100;
        let ops = |extra: usize| -> Vec<Value> {
            (0..100).map(|i| group(i, (0..per_op + usize::from(i < extra)).map(|_| 0))).collect()
        };
        assert!(request(ops(0)).is_ok());
        let Err(e) = request(ops(1)) else { panic!("{} references accepted", MAX_REFERENCES + 1) };
        assert_eq!(e.status_code(), 413);
        assert_eq!(e.scim_type, Some(ScimType::TooMany));
        assert!(e.detail.contains(&MAX_REFERENCES.to_string()), "{}", e.detail);
    }
}
