//! The PATCH engine: operations with paths built from the grammar (attributes, value
//! filters, sub-attributes, extension URNs) and values of every shape, plus mutated seed
//! bodies, applied to a User, an enterprise User and a Group. A failed request leaves
//! the resource as it was; a successful one leaves a resource that normalises to itself
//! (it would validate as a replace body) and still has its required attribute.

use fedkey_scim::Profile;
use fedkey_scim::patch::{apply, parse_request};
use fedkey_scim::resource::normalize;
use fedkey_scim::schema::{ENTERPRISE_USER, resource_type};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::check;

const DICT: &[&str] = &[
    "\"op\":\"add\",",
    "\"op\":\"Replace\",",
    "\"op\":\"remove\",",
    "\"path\":\"emails[type eq \\\"work\\\"].value\",",
    "\"path\":\"members[value eq \\\"u1\\\"]\",",
    "\"path\":\"name.givenName\",",
    "\"value\":",
    "[{\"value\":\"x\",\"primary\":true}]",
    "{\"active\":false}",
    "\"True\"",
    "null",
    "[",
    "]",
    "{",
    "}",
    ",",
];

const PATHS: &[&str] = &[
    "",
    "userName",
    "displayName",
    "active",
    "title",
    "externalId",
    "name",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.primary",
    "members",
    "members.value",
    "phoneNumbers",
    "addresses",
    "addresses.locality",
    "manager",
    "id",
    "meta",
    "schemas",
    "groups",
    "bogus",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:ietf:params:scim:schemas:core:2.0:User:name.formatted",
];

const FILTERS: &[&str] = &[
    "type eq \"work\"",
    "value eq \"u1\"",
    "primary eq true",
    "value co \"@\"",
    "not (type pr)",
    "type eq \"work\" or value sw \"b\"",
    "display pr and value ne \"u2\"",
    "bogus eq 1",
];

fn path() -> impl Strategy<Value = String> {
    let plain = prop::sample::select(PATHS).prop_map(str::to_owned);
    let filtered = (
        prop::sample::select(vec!["emails", "members", "addresses", "phoneNumbers", "name"]),
        prop::sample::select(FILTERS),
        prop::option::of(prop::sample::select(vec!["value", "type", "primary", "display", "bogus"])),
    )
        .prop_map(|(a, f, sub)| match sub {
            Some(s) => format!("{a}[{f}].{s}"),
            None => format!("{a}[{f}]"),
        });
    prop_oneof![2 => plain, 1 => filtered, 1 => fedkey_fuzz::tokens(PATHS, 3)]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        Just(json!("True")),
        Just(json!(7)),
        prop::sample::select(vec!["u1", "u2", "work", "home", "x@example.com", ""]).prop_map(|s| json!(s)),
    ];
    let key = prop::sample::select(vec![
        "value",
        "type",
        "primary",
        "display",
        "givenName",
        "active",
        "userName",
        "emails",
        "members",
        "manager",
        ENTERPRISE_USER,
        "department",
        "id",
        "schemas",
    ]);
    leaf.prop_recursive(3, 20, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn operation() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec!["add", "replace", "remove", "Add", "REPLACE", "delete"]);
    (op, prop::option::of(path()), prop::option::of(value())).prop_map(|(op, path, value)| {
        let mut o = json!({"op": op});
        if let Some(p) = path {
            o["path"] = json!(p);
        }
        if let Some(v) = value {
            o["value"] = v;
        }
        o
    })
}

fn body() -> impl Strategy<Value = Value> {
    let structured = prop::collection::vec(operation(), 1..5)
        .prop_map(|ops| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}));
    let mutated = fedkey_fuzz::mutated_corpus(fedkey_fuzz::corpus("patch").unwrap(), DICT)
        .prop_map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null));
    prop_oneof![3 => structured, 1 => mutated]
}

/// The starting resources, in the stored layout the engine works on.
fn resources() -> Vec<(&'static str, Value)> {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "externalId": "701984",
        "userName": "bjensen@example.com", "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "meta": {"resourceType": "User"}
    });
    let mut enterprise = user.clone();
    enterprise["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER]);
    enterprise[ENTERPRISE_USER] = json!({"department": "Tours", "manager": {"value": "m1"}});
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1", "displayName": "Tour Guides",
        "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}], "meta": {"resourceType": "Group"}
    });
    vec![("User", user), ("User", enterprise), ("Group", group)]
}

/// `v` without the attributes normalisation drops (server-managed or derived).
fn without_managed(v: &Value) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    for k in ["id", "meta", "schemas"] {
        m.remove(k);
    }
    Value::Object(m)
}

#[test]
fn fuzz_patch_engine() {
    let start = resources();
    check("patch", (0..start.len(), body()), |(which, body)| {
        let (rt_name, original) = &start[which];
        let rt = resource_type(rt_name).unwrap();
        // Under the strict profile and the widest one (which accepts the most requests).
        for profile in [Profile::RFC, Profile::ENTRA] {
            let Ok(ops) = parse_request(&body, &profile) else { continue };
            let mut res = original.clone();
            match apply(rt, &mut res, &ops, &profile) {
                Err(e) => {
                    prop_assert_eq!(&res, original, "failed ({}) yet changed the resource", e.detail);
                    prop_assert!(e.status_code() == 400, "status {}", e.status);
                }
                Ok(_) => {
                    let required = if *rt_name == "User" { "userName" } else { "displayName" };
                    prop_assert!(res.get(required).is_some(), "{} is gone: {}", required, res);
                    let compared = without_managed(&res);
                    let normal = normalize(rt, &compared);
                    prop_assert!(
                        normal.is_ok(),
                        "result does not validate ({:?}): {}",
                        normal.err().map(|e| e.detail),
                        res
                    );
                    prop_assert_eq!(normal.ok(), Some(compared), "result is not in normal form");
                }
            }
        }
        Ok(())
    });
}
