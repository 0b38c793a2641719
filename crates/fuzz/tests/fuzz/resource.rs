//! Resource JSON: create/replace bodies built from the schema registry's own attribute
//! names (in any case, with wrong types mixed in) and mutated seed bodies. Normalising
//! never panics and is idempotent (the stored layout normalises to itself), and
//! projection keeps `id` and `schemas` and is idempotent.

use fedkey_scim::resource::{normalize, parse_attr_list, project, schemas_of};
use fedkey_scim::schema::{ENTERPRISE_USER, ResourceTypeDef, SCHEMAS, resource_type};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::check;

const DICT: &[&str] = &[
    "\"userName\":",
    "\"emails\":[{\"value\":\"a@b\",\"primary\":true}]",
    "\"members\":[{\"value\":\"x\"}]",
    "\"active\":\"True\"",
    "\"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\":{",
    "\"manager\":\"m\"",
    "null",
    "[]",
    "{}",
    ",",
    "\"",
    "1e400",
];

/// Every attribute and sub-attribute name of the registry, plus the common ones.
fn names() -> Vec<String> {
    let mut out = vec!["id".to_owned(), "meta".to_owned(), "schemas".to_owned(), "externalId".to_owned()];
    for s in &SCHEMAS {
        for a in s.attributes {
            out.push(a.name.to_owned());
            out.push(format!("{}:{}", s.id, a.name));
            out.extend(a.sub_attributes.iter().map(|sub| sub.name.to_owned()));
        }
    }
    out.push(ENTERPRISE_USER.to_owned());
    out
}

/// `s` with the case of some ASCII letters flipped.
fn recase(s: &str, mask: u64) -> String {
    s.chars().enumerate().map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect()
}

fn value(names: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        Just(json!("True")),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(1.5)),
        "[a-z@. ]{0,12}".prop_map(Value::String),
        Just(json!("2026-01-01T00:00:00Z")),
    ];
    let key = (prop::sample::select(names), any::<u64>()).prop_map(|(n, m)| recase(&n, m));
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = (bool, Value)> {
    let names = names();
    let key = (prop::sample::select(names.clone()), any::<u64>()).prop_map(|(n, m)| recase(&n, m));
    let structured = prop::collection::vec((key, value(names)), 0..10)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>()));
    let mutated = fedkey_fuzz::mutated_corpus(fedkey_fuzz::corpus("resource").unwrap(), DICT)
        .prop_map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null));
    (any::<bool>(), prop_oneof![structured, mutated])
}

fn attr_lists() -> impl Strategy<Value = (String, String)> {
    let one =
        (prop::sample::select(names()), any::<u64>(), prop::option::of("[a-z]{1,6}")).prop_map(
            |(n, m, sub)| match sub {
                Some(s) => format!("{}.{s}", recase(&n, m)),
                None => recase(&n, m),
            },
        );
    let list = prop::collection::vec(one, 0..4).prop_map(|v| v.join(","));
    (list.clone(), list)
}

fn presented(rt: &ResourceTypeDef, stored: &Value) -> Value {
    let mut p = stored.clone();
    p["id"] = json!("2819c223-7f76-453a-919d-413861904646");
    p["schemas"] = Value::Array(schemas_of(rt, stored));
    p["meta"] = json!({"resourceType": rt.id, "version": "W/\"1\""});
    p
}

#[test]
fn fuzz_resource_normalisation_and_projection() {
    check("resource", (body(), attr_lists()), |((group, input), (attrs, excluded))| {
        let rt = resource_type(if group { "Group" } else { "User" }).unwrap();
        let Ok(stored) = normalize(rt, &input) else { return Ok(()) };
        let again = normalize(rt, &stored).ok();
        prop_assert_eq!(again.as_ref(), Some(&stored), "not idempotent from {}", input);
        let full = presented(rt, &stored);
        let (attrs, excluded) = (parse_attr_list(&attrs), parse_attr_list(&excluded));
        let once = project(rt, &full, &attrs, &excluded);
        prop_assert_eq!(&once["id"], &full["id"]);
        prop_assert_eq!(&once["schemas"], &full["schemas"]);
        prop_assert_eq!(project(rt, &once, &attrs, &excluded), once.clone());
        Ok(())
    });
}
