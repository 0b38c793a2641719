//! The SCIM filter parser: grammar-token soup and mutated real filters. Whatever parses
//! prints back to the same tree, stays within the term limit, and compiles and evaluates
//! against both resource types without a panic.

use fedkey_scim::eval;
use fedkey_scim::filter::{Filter, MAX_FILTER_LEN, MAX_TERMS, parse};
use fedkey_scim::schema::resource_type;
use proptest::prelude::*;
use serde_json::json;

use super::{check, mutated_text};

pub const DICT: &[&str] = &[
    "userName",
    "emails",
    "emails.value",
    "name.givenName",
    "members",
    "members.value",
    "meta.lastModified",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:x:",
    "id",
    "active",
    "externalId",
    " eq ",
    " ne ",
    " co ",
    " sw ",
    " ew ",
    " gt ",
    " ge ",
    " lt ",
    " le ",
    " pr",
    " and ",
    " or ",
    "not ",
    "not(",
    "(",
    ")",
    "[",
    "]",
    ".",
    "\"work\"",
    "\"\\\"\"",
    "\"\\u00e9\\ud83d\\ude00\"",
    "\"",
    "\\",
    "true",
    "false",
    "null",
    "1",
    "-2.5e3",
    "1e999",
    " ",
    "type eq \"work\"",
    "jyoung",
    "2026-01-01T00:00:00Z",
];

/// Leaves of the tree: comparisons and presence tests.
fn terms(f: &Filter) -> usize {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => terms(a) + terms(b),
        Filter::Not(x) | Filter::ValuePath(_, x) => terms(x),
        Filter::Present(_) | Filter::Compare(..) => 1,
    }
}

fn input() -> impl Strategy<Value = String> {
    prop_oneof![fedkey_fuzz::tokens(DICT, 40), mutated_text("filter", DICT), "\\PC{0,120}"]
}

#[test]
fn fuzz_filter_parser() {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": "bjensen",
        "active": true, "emails": [{"value": "b@example.com", "type": "work", "primary": true}],
        "name": {"givenName": "Barbara"}, "meta": {"lastModified": "2026-01-01T00:00:00Z"}
    });
    let group = json!({"id": "g1", "displayName": "G", "members": [{"value": "u1"}]});
    let resources = [(resource_type("User").unwrap(), user), (resource_type("Group").unwrap(), group)];
    check("filter", input(), |text| {
        let Ok(f) = parse(&text) else { return Ok(()) };
        prop_assert!(terms(&f) <= MAX_TERMS, "{} terms", terms(&f));
        let printed = f.to_string();
        if printed.len() <= MAX_FILTER_LEN {
            prop_assert_eq!(parse(&printed), Ok(f.clone()), "printed as {}", printed);
        }
        for (rt, resource) in &resources {
            if let Ok(compiled) = eval::compile(rt, &f) {
                let _ = compiled.matches(resource);
            }
            let _ = eval::matches(rt, resource, &f);
        }
        Ok(())
    });
}
