//! Stored resources as SCIM JSON: the body plus `id`, `schemas`, `meta` and the
//! memberships (`members` of a group, `groups` of a user). Write-only attributes
//! (`password`) are never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use fedkey_scim::filter::AttrPath;
use fedkey_scim::resource::{project, schemas_of};
use fedkey_scim::schema::{ResourceTypeDef, Returned};
use fedkey_store::scim::{MemberRef, StoredResource};
use serde_json::{Map, Value, json};

use super::body::etag;
use super::scim_json;

/// Key of a group's stored body holding the `display` a client gave each member (the
/// schema lets clients set it); members without one show the member's name.
pub use fedkey_store::scim_sql::MEMBER_DISPLAY;

/// The endpoint of a resource type (`Users`, `Groups`).
pub fn endpoint(resource_type: &str) -> &'static str {
    if resource_type == "Group" { "Groups" } else { "Users" }
}

pub fn location(base: &str, resource_type: &str, id: &str) -> String {
    format!("{base}/{}/{id}", endpoint(resource_type))
}

fn member_json(base: &str, m: &MemberRef, kind: &str) -> Value {
    let mut v = Map::new();
    v.insert("value".into(), Value::String(m.value.clone()));
    if let Some(d) = &m.display {
        v.insert("display".into(), Value::String(d.clone()));
    }
    v.insert("type".into(), Value::String(kind.to_owned()));
    v.insert("$ref".into(), Value::String(location(base, &m.kind, &m.value)));
    Value::Object(v)
}

/// The full SCIM representation of `r`.
pub fn present(rt: &ResourceTypeDef, base: &str, r: &StoredResource) -> Value {
    let mut out = Map::new();
    out.insert("schemas".into(), Value::Array(schemas_of(rt, &r.body)));
    out.insert("id".into(), Value::String(r.id.clone()));
    if let Value::Object(body) = &r.body {
        for (k, v) in body {
            out.insert(k.clone(), v.clone());
        }
    }
    // Write-only / never-returned attributes.
    for sch in rt.schemas() {
        for a in sch.attributes.iter().filter(|a| a.returned == Returned::Never) {
            if sch.id == rt.schema {
                out.remove(a.name);
            } else if let Some(Value::Object(m)) = out.get_mut(sch.id) {
                m.remove(a.name);
            }
        }
    }
    let displays = out.remove(MEMBER_DISPLAY);
    if rt.id == "Group" {
        if !r.members.is_empty() {
            let members = r
                .members
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    if let Some(d) = displays.as_ref().and_then(|d| d.get(&m.value)).and_then(Value::as_str) {
                        m.display = Some(d.to_owned());
                    }
                    member_json(base, &m, &m.kind)
                })
                .collect();
            out.insert("members".into(), Value::Array(members));
        }
    } else if !r.groups.is_empty() {
        let groups = r.groups.iter().map(|g| member_json(base, g, "direct")).collect();
        out.insert("groups".into(), Value::Array(groups));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": rt.id,
            "created": r.created_at.to_rfc3339(),
            "lastModified": r.updated_at.to_rfc3339(),
            "location": location(base, rt.id, &r.id),
            "version": etag(r.version),
        }),
    );
    Value::Object(out)
}

/// A single-resource response: the (projected) resource with `ETag`, and `Location`
/// for a create.
pub fn resource_response(
    status: StatusCode,
    rt: &ResourceTypeDef,
    base: &str,
    r: &StoredResource,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Response {
    let full = present(rt, base, r);
    let body =
        if attributes.is_empty() && excluded.is_empty() { full } else { project(rt, &full, attributes, excluded) };
    let mut resp = scim_json(status, &body);
    if let Ok(v) = HeaderValue::from_str(&etag(r.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&location(base, rt.id, &r.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
