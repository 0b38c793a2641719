//! The document against the committed file, the OpenAPI 3.1 model, the route table and
//! docs/api.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::*;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

const REGENERATE: &str = "regenerate it with `FEDKEY_UPDATE_OPENAPI=1 cargo test -p fedkey-server --lib openapi` \
                          and commit docs/openapi.json";

fn committed() -> Value {
    let text = std::fs::read_to_string(repo_file("docs/openapi.json"))
        .unwrap_or_else(|e| panic!("docs/openapi.json: {e}; {REGENERATE}"));
    serde_json::from_str(&text).unwrap()
}

/// `(METHOD, path)` of every operation of a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn committed_document_is_the_generated_one() {
    let generated = document_json();
    let path = repo_file("docs/openapi.json");
    if std::env::var_os("FEDKEY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let at = line.map_or("in length".to_owned(), |n| format!("from line {}", n + 1));
        panic!(
            "docs/openapi.json differs from the document the server serves ({at}): if the API change is meant, {REGENERATE}"
        );
    }
}

#[test]
fn document_is_valid_openapi_3_1() {
    let spec = oas3::from_json(document_json()).expect("the document parses as OpenAPI");
    let version = spec.validate_version().expect("a supported OpenAPI version");
    assert_eq!((version.major, version.minor), (3, 1));
    let ops: Vec<_> = spec.operations().collect();
    assert!(ops.len() > 40, "only {} operations", ops.len());
    for (path, method, op) in &ops {
        let declared = op.responses.as_ref().map_or(0, |r| r.len());
        let resolved = op.responses(&spec);
        assert_eq!(resolved.len(), declared, "{method} {path}: a response does not resolve");
        assert!(resolved.keys().any(|k| k.starts_with('2')), "{method} {path}: no success response");
        assert!(resolved.contains_key("default"), "{method} {path}: no error response");
        // Every `{name}` of the path is a declared path parameter.
        let params: Vec<_> = op.parameters.iter().map(|p| p.resolve(&spec).unwrap()).collect();
        for name in path.split('/').filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}')) {
            assert!(
                params.iter().any(|p| p.name == name && p.location == oas3::spec::ParameterIn::Path),
                "{method} {path}: path parameter {name} is not declared"
            );
        }
    }
    // Every `$ref` points at something in the document.
    let doc: Value = serde_json::from_str(document_json()).unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 40, "suspiciously few $refs: {}", refs.len());
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
    // Every error code is in the schema, with its wire spelling.
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for c in ErrorCode::ALL {
        assert!(codes.as_array().unwrap().contains(&Value::from(c.as_str())), "{c} missing from ErrorCode");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The routes come from the table the router is built from ([`crate::admin::documented`]),
/// not from the document: each one must be in the committed file.
#[test]
fn every_admin_route_is_in_the_committed_document() {
    let routes = OpenApiRouter::<crate::AppState>::new().nest(PREFIX, crate::admin::documented());
    let (_, table) = routes.split_for_parts();
    let table = operations(&serde_json::to_value(&table).unwrap());
    assert!(table.contains(&("GET".into(), "/api/v1/directories".into())), "{table:?}");
    assert!(table.contains(&("POST".into(), "/api/v1/directories/{d}/import".into())), "{table:?}");
    let documented = operations(&committed());
    let missing: Vec<_> = table.difference(&documented).collect();
    assert!(missing.is_empty(), "routes missing from docs/openapi.json: {missing:?}; {REGENERATE}");
    let stale: Vec<_> = documented.difference(&table).collect();
    assert!(stale.is_empty(), "docs/openapi.json lists operations no route serves: {stale:?}; {REGENERATE}");
}

/// A route added beside the table (`.route(…)`) would be served but not documented: the
/// admin API modules register theirs through `routes!` only.
#[test]
fn admin_modules_register_routes_only_through_the_table() {
    for file in [
        "admin.rs",
        "events_api.rs",
        "oauth_api.rs",
        "rotation_api.rs",
        "sync_api.rs",
        "audit_api.rs",
        "import.rs",
        "leaks.rs",
    ] {
        let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap();
        for (n, line) in src.lines().enumerate() {
            // The wrapped-link retrieval endpoint is outside /api/v1, on purpose.
            if line.contains(".route(") && !line.contains("\"/unwrap/{token}\"") {
                panic!("src/{file}:{}: a route outside the documented table: {}", n + 1, line.trim());
            }
        }
    }
}

/// `(METHOD, path)` of the admin endpoint tables of docs/api.md: rows
/// `| GET | `/path…` | role | body | success |`, paths relative to `/api/v1`, optional query
/// (`[?force=true]`) dropped. Tables of other shapes (the public OAuth endpoints) are not
/// part of the admin API.
fn api_md_endpoints() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo_file("docs/api.md")).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 7 || !["GET", "POST", "PUT", "DELETE"].contains(&cells[1]) {
            continue;
        }
        let Some(path) = cells[2].strip_prefix('`').and_then(|p| p.split('`').next()) else { continue };
        if !path.starts_with('/') {
            continue;
        }
        let path = path.split('[').next().unwrap_or(path);
        out.insert((cells[1].to_owned(), format!("{PREFIX}{path}")));
    }
    out
}

#[test]
fn docs_api_md_lists_exactly_the_documented_operations() {
    let md = api_md_endpoints();
    let doc = operations(&serde_json::from_str(document_json()).unwrap());
    let undocumented: Vec<_> = doc.difference(&md).collect();
    assert!(undocumented.is_empty(), "operations of the OpenAPI document missing from docs/api.md: {undocumented:?}");
    // The test hooks exist only in test builds, so the document leaves them out.
    let unknown: Vec<_> = md.difference(&doc).filter(|(_, p)| !p.starts_with("/api/v1/test/")).collect();
    assert!(unknown.is_empty(), "endpoints of docs/api.md that the OpenAPI document does not have: {unknown:?}");
    assert!(md.len() > 40, "docs/api.md: only {} endpoints found; has the table format changed?", md.len());
}

#[test]
fn docs_api_md_lists_every_error_code() {
    let text = std::fs::read_to_string(repo_file("docs/api.md")).unwrap();
    for c in ErrorCode::ALL {
        assert!(text.contains(&format!("| `{c}` |")), "docs/api.md: error code {c} is not in the error table");
    }
}
