//! Bulk request parsing and planning: requests built from a small pool of bulkIds (so
//! references, forward references, duplicates and cycles are frequent) and mutated seed
//! requests. The plan must equal that of the straightforward quadratic planner fedkey
//! used before (the oracle below), process each operation once and after everything it
//! refers to, and cost linear work.

use std::collections::{HashMap, HashSet};

use fedkey_scim::bulk::{BULK_REQUEST, Method, Op, Plan, Step, parse_request, schedule};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::check;

const DICT: &[&str] = &[
    "\"bulkId:a\"",
    "\"bulkId:b\"",
    "\"bulkId:\"",
    "\"bulkId\":\"a\",",
    "\"method\":\"POST\",",
    "\"method\":\"patch\",",
    "\"path\":\"/Groups\",",
    "\"path\":\"/Users/bulkId:a\",",
    "\"data\":{},",
    "\"version\":\"W/\\\"1\\\"\",",
    "\"failOnErrors\":1,",
    "{\"value\":\"bulkId:a\"},",
    "[",
    "]",
    "{",
    "}",
    ",",
    "null",
];

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// The old planner: after each step, the first pending operation whose references are
/// all processed; when there is none, every pending operation that can reach itself.
fn oracle(ops: &[Op]) -> Vec<Step> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let (Some(b), Ok(Plan { method: Method::Post, .. })) = (&op.bulk_id, &op.plan) {
            owner.entry(b.as_str()).or_insert(i);
        }
    }
    let needs = |i: usize| -> Vec<usize> {
        if ops[i].plan.is_err() {
            return Vec::new();
        }
        ops[i].deps.iter().filter_map(|d| owner.get(d.as_str()).copied()).collect()
    };
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    let mut done = HashSet::new();
    let mut steps = Vec::new();
    while !pending.is_empty() {
        if let Some(pos) = pending.iter().position(|&i| needs(i).iter().all(|j| done.contains(j))) {
            let i = pending.remove(pos);
            done.insert(i);
            steps.push(Step::Run(i));
            continue;
        }
        let cyclic: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&start| {
                let mut seen = HashSet::new();
                let mut stack: Vec<usize> = needs(start).into_iter().filter(|j| !done.contains(j)).collect();
                while let Some(j) = stack.pop() {
                    if j == start {
                        return true;
                    }
                    if seen.insert(j) {
                        stack.extend(needs(j).into_iter().filter(|k| !done.contains(k)));
                    }
                }
                false
            })
            .collect();
        if cyclic.is_empty() {
            break;
        }
        for &i in &cyclic {
            done.insert(i);
            steps.push(Step::Cycle(i));
        }
        pending.retain(|i| !cyclic.contains(i));
    }
    steps
}

fn operation() -> impl Strategy<Value = Value> {
    let id = prop::sample::select(IDS.to_vec());
    let method = prop::sample::select(vec!["POST", "POST", "PUT", "PATCH", "DELETE", "post", "GET"]);
    let refs = prop::collection::vec(id.clone(), 0..4);
    (method, prop::option::of(id.clone()), refs, prop::option::of(id), any::<bool>()).prop_map(
        |(method, bulk_id, refs, path_ref, users)| {
            let members: Vec<Value> = refs.iter().map(|r| json!({"value": format!("bulkId:{r}")})).collect();
            let kind = if users { "Users" } else { "Groups" };
            let path = match (method.eq_ignore_ascii_case("POST"), path_ref) {
                (true, _) => format!("/{kind}"),
                (false, Some(r)) => format!("/{kind}/bulkId:{r}"),
                (false, None) => format!("/{kind}/existing"),
            };
            let mut op = json!({"method": method, "path": path, "data": {"displayName": "x", "members": members}});
            if let Some(b) = bulk_id {
                op["bulkId"] = json!(b);
            }
            op
        },
    )
}

fn structured() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(operation(), 0..24)
        .prop_map(|ops| json!({"schemas": [BULK_REQUEST], "Operations": ops}).to_string().into_bytes())
}

fn request() -> impl Strategy<Value = Value> {
    let seeds = fedkey_fuzz::corpus("bulk").unwrap();
    prop_oneof![
        2 => structured(),
        1 => fedkey_fuzz::mutate(structured(), seeds.clone(), DICT),
        2 => fedkey_fuzz::mutated_corpus(seeds, DICT),
    ]
    .prop_map(|bytes: Vec<u8>| serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[test]
fn fuzz_bulk_planner() {
    check("bulk", request(), |body| {
        let Ok(req) = parse_request(&body) else { return Ok(()) };
        let n = req.ops.len();
        let s = schedule(&req.ops);
        let order: Vec<usize> = s
            .steps
            .iter()
            .map(|s| match *s {
                Step::Run(i) | Step::Cycle(i) => i,
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "each operation exactly once");
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        for step in &s.steps {
            if let Step::Run(i) = *step
                && req.ops[i].plan.is_ok()
            {
                for d in &req.ops[i].deps {
                    if let Some(&j) = s.owner.get(d) {
                        prop_assert!(position[&j] < position[&i], "{} ran before {} it needs", i, j);
                    }
                }
            }
        }
        let refs: usize = req.ops.iter().map(|o| o.deps.len()).sum();
        prop_assert!(s.work <= 4 * (n + refs), "{} steps for {} operations, {} references", s.work, n, refs);
        prop_assert_eq!(&s.steps, &oracle(&req.ops));
        Ok(())
    });
}
