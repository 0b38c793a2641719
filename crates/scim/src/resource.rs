//! Pure helpers between the wire and the store: input normalisation against the schema
//! (create and replace bodies), attribute-path parsing for `attributes`,
//! `excludedAttributes` and `sortBy`, and output projection.
//!
//! The stored layout is the one the PATCH engine works on: core attributes at the top
//! level under their canonical names, extension attributes in an object under the
//! extension's URN, plus `externalId`. Input rules (docs/scim-interop.md):
//! - attribute and sub-attribute names are case-insensitive and stored canonically;
//! - `null`, empty arrays and empty objects mean absent;
//! - `"True"`/`"False"` (any case) are booleans for boolean attributes;
//! - unknown schema URIs, unknown attributes and unknown sub-attributes are ignored;
//! - read-only attributes and sub-attributes (`id`, `meta`, `groups`,
//!   `manager.displayName`) and `schemas` are ignored (`schemas` follows the extensions
//!   present);
//! - a bare value for a complex attribute with a `value` sub-attribute means
//!   `{"value": …}` (Entra's `manager`); a bare value for a multi-valued attribute is a
//!   one-element array;
//! - a value of the wrong type is 400 `invalidValue`; so is a missing required
//!   attribute (`userName`, `displayName`).

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::AttrPath;
use crate::schema::{self, AttrType, AttributeDef, Mutability, ResourceTypeDef, SchemaDef};

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some(ScimType::InvalidValue), detail)
}

/// First `n` characters of client input, for error messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Normalises a create or replace body of resource type `rt` into the stored layout.
/// Errors are 400 `invalidSyntax` (not an object) or `invalidValue`.
pub fn normalize(rt: &ResourceTypeDef, input: &Value) -> Result<Value, ScimError> {
    let Some(obj) = input.as_object() else {
        return Err(ScimError::new(400, Some(ScimType::InvalidSyntax), "a resource must be a JSON object"));
    };
    let core = schema::schema(rt.schema).ok_or_else(|| ScimError::new(500, None, "unknown core schema"))?;
    let mut out = Map::new();
    // Extension objects first, so URN-qualified top-level keys can merge into them.
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
            continue;
        }
        if key.eq_ignore_ascii_case("externalId") {
            match value {
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => {
                    out.insert("externalId".into(), Value::String(s.clone()));
                }
                _ => return Err(invalid("externalId must be a string")),
            }
            continue;
        }
        if let Some(ext) = extension(rt, key) {
            match value {
                Value::Null => {}
                Value::Object(attrs) => {
                    for (name, v) in attrs {
                        put_attribute(&mut out, ext, false, name, v)?;
                    }
                }
                _ => return Err(invalid(format!("{} must be an object", ext.id))),
            }
            continue;
        }
        if core.attribute(key).is_some() {
            put_attribute(&mut out, core, true, key, value)?;
            continue;
        }
        // `urn:…:extension:enterprise:2.0:User:department`: an extension attribute
        // named with its URN at the top level.
        if let Some((urn, name)) = key.rsplit_once(':')
            && let Some(ext) = extension(rt, urn)
        {
            put_attribute(&mut out, ext, false, name, value)?;
        }
        // Anything else (unknown URIs, unknown attributes) is ignored.
    }
    for sch in rt.schemas() {
        let container = if sch.id == rt.schema { Some(&out) } else { out.get(sch.id).and_then(Value::as_object) };
        for a in sch.attributes.iter().filter(|a| a.required) {
            if container.and_then(|c| c.get(a.name)).is_none() {
                return Err(invalid(format!("{} is required", a.name)));
            }
        }
    }
    Ok(Value::Object(out))
}

/// The extension of `rt` whose URN is `key` (case-insensitive).
fn extension(rt: &ResourceTypeDef, key: &str) -> Option<&'static SchemaDef> {
    rt.extensions.iter().find(|(urn, _)| urn.eq_ignore_ascii_case(key)).and_then(|(urn, _)| schema::schema(urn))
}

/// Normalises one attribute of `sch` into `out`: at the top level for the core schema,
/// else in the extension's object.
fn put_attribute(
    out: &mut Map<String, Value>,
    sch: &'static SchemaDef,
    core: bool,
    name: &str,
    value: &Value,
) -> Result<(), ScimError> {
    let Some(def) = sch.attribute(name) else { return Ok(()) };
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let Some(v) = normalize_value(def, value)? else { return Ok(()) };
    if core {
        out.insert(def.name.to_owned(), v);
        return Ok(());
    }
    let slot = out.entry(sch.id.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(m) = slot {
        m.insert(def.name.to_owned(), v);
    }
    Ok(())
}

/// Normalises a value of `def`; `None` when it is absent (null, empty).
pub fn normalize_value(def: &AttributeDef, value: &Value) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Null => return Ok(None),
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalize_single(def, item)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    let value = match value {
        Value::Array(a) if a.len() == 1 => &a[0],
        Value::Array(a) if a.is_empty() => return Ok(None),
        Value::Array(_) => return Err(invalid(format!("{} is single-valued", def.name))),
        v => v,
    };
    normalize_single(def, value)
}

/// One value of `def`'s type (one element, for a multi-valued attribute).
fn normalize_single(def: &AttributeDef, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    match def.ty {
        AttrType::Complex => {
            let obj = match value {
                Value::Object(o) => o.clone(),
                bare if def.sub_attribute("value").is_some() && !bare.is_array() => {
                    let mut m = Map::new();
                    m.insert("value".into(), bare.clone());
                    m
                }
                _ => return Err(invalid(format!("{} must be an object", def.name))),
            };
            let mut out = Map::new();
            for (k, v) in &obj {
                let Some(sub) = def.sub_attribute(k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = normalize_value(sub, v)? {
                    out.insert(sub.name.to_owned(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        AttrType::Boolean => match value {
            Value::Bool(_) => Ok(Some(value.clone())),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => Err(invalid(format!("{} must be a boolean", def.name))),
        },
        AttrType::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(value.clone())),
            _ => Err(invalid(format!("{} must be an integer", def.name))),
        },
        AttrType::Decimal => match value {
            Value::Number(_) => Ok(Some(value.clone())),
            _ => Err(invalid(format!("{} must be a number", def.name))),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => match value {
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(_) => Ok(Some(value.clone())),
            _ => Err(invalid(format!("{} must be a string", def.name))),
        },
    }
}

/// Parses an attribute path as used by `attributes`, `excludedAttributes` and `sortBy`:
/// `[URN ":"] name ["." sub]`, or a bare schema URN (returned with an empty `name`).
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ScimError> {
    let s = input.trim();
    let bad = || invalid(format!("invalid attribute path {:?}", clip(input)));
    if s.is_empty() {
        return Err(bad());
    }
    if let Some(sch) = schema::schema(s) {
        return Ok(AttrPath { uri: Some(sch.id.to_owned()), name: String::new(), sub: None });
    }
    let (uri, rest) = match s.rsplit_once(':') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, s),
    };
    let (name, sub) = match rest.split_once('.') {
        Some((n, sub)) => (n, Some(sub)),
        None => (rest, None),
    };
    let ok = |n: &str| {
        let mut c = n.chars();
        (n == "$ref")
            || (c.next().is_some_and(|f| f.is_ascii_alphabetic())
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == '-'))
    };
    if !ok(name) || sub.is_some_and(|x| !ok(x)) {
        return Err(bad());
    }
    Ok(AttrPath { uri, name: name.to_owned(), sub: sub.map(str::to_owned) })
}

/// Parses a comma-separated attribute list; invalid entries are ignored.
pub fn parse_attr_list(input: &str) -> Vec<AttrPath> {
    input.split(',').filter(|s| !s.trim().is_empty()).filter_map(|s| parse_attr_path(s).ok()).collect()
}

/// Where a projected path lives in a presented resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    /// The extension URN holding the attribute, or `None` for the top level.
    container: Option<&'static str>,
    /// Canonical attribute name; empty for a whole extension.
    name: String,
    sub: Option<String>,
}

const COMMON: [&str; 4] = ["id", "externalId", "meta", "schemas"];

fn target(rt: &ResourceTypeDef, p: &AttrPath) -> Option<Target> {
    if p.name.is_empty() {
        let urn = p.uri.as_deref()?;
        let ext = extension(rt, urn)?;
        return Some(Target { container: Some(ext.id), name: String::new(), sub: None });
    }
    let core_uri = p.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(rt.schema));
    if core_uri && let Some(c) = COMMON.iter().find(|c| c.eq_ignore_ascii_case(&p.name)) {
        return Some(Target { container: None, name: (*c).to_owned(), sub: p.sub.clone() });
    }
    let r = rt.resolve(p)?;
    let container = (r.schema.id != rt.schema).then_some(r.schema.id);
    Some(Target { container, name: r.attribute.name.to_owned(), sub: r.sub.map(|s| s.name.to_owned()) })
}

/// A key of `obj` equal to `name` ignoring ASCII case.
fn key_ci(obj: &Map<String, Value>, name: &str) -> Option<String> {
    if obj.contains_key(name) {
        return Some(name.to_owned());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Applies `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) to a presented
/// resource. `id` and `schemas` are always returned. When `attributes` is non-empty it
/// wins and `excluded` is ignored.
pub fn project(rt: &ResourceTypeDef, resource: &Value, attributes: &[AttrPath], excluded: &[AttrPath]) -> Value {
    let Some(src) = resource.as_object() else { return resource.clone() };
    if !attributes.is_empty() {
        let mut out = Map::new();
        for k in ["schemas", "id"] {
            if let Some(v) = src.get(k) {
                out.insert(k.to_owned(), v.clone());
            }
        }
        let targets: Vec<Target> = attributes.iter().filter_map(|p| target(rt, p)).collect();
        for t in &targets {
            let (from, into) = match t.container {
                None => (Some(src), &mut out),
                Some(urn) => {
                    let from = src.get(urn).and_then(Value::as_object);
                    if from.is_none() {
                        continue;
                    }
                    let slot = out.entry(urn.to_owned()).or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(m) = slot else { continue };
                    (from, m)
                }
            };
            let Some(from) = from else { continue };
            if t.name.is_empty() {
                for (k, v) in from {
                    into.insert(k.clone(), v.clone());
                }
                continue;
            }
            let Some(key) = key_ci(from, &t.name) else { continue };
            let value = &from[&key];
            match &t.sub {
                None => {
                    into.insert(key, value.clone());
                }
                Some(sub) => select_sub(into, &key, value, sub),
            }
        }
        out.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()));
        return Value::Object(out);
    }
    let mut out = src.clone();
    for p in excluded {
        let Some(t) = target(rt, p) else { continue };
        if t.container.is_none() && (t.name == "id" || t.name == "schemas") {
            continue;
        }
        let holder = match t.container {
            None => Some(&mut out),
            Some(urn) if t.name.is_empty() => {
                out.remove(urn);
                continue;
            }
            Some(urn) => out.get_mut(urn).and_then(Value::as_object_mut),
        };
        let Some(holder) = holder else { continue };
        let Some(key) = key_ci(holder, &t.name) else { continue };
        match &t.sub {
            None => {
                holder.remove(&key);
            }
            Some(sub) => match holder.get_mut(&key) {
                Some(Value::Object(m)) => {
                    if let Some(k) = key_ci(m, sub) {
                        m.remove(&k);
                    }
                }
                Some(Value::Array(items)) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(k) = key_ci(item, sub) {
                            item.remove(&k);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    Value::Object(out)
}

/// Copies the sub-attribute `sub` of `value` (a complex value or an array of them) into
/// `into[key]`, merging with sub-attributes already selected.
fn select_sub(into: &mut Map<String, Value>, key: &str, value: &Value, sub: &str) {
    match value {
        Value::Object(m) => {
            let Some(sk) = key_ci(m, sub) else { return };
            let slot = into.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(dst) = slot {
                dst.insert(sk.clone(), m[&sk].clone());
            }
        }
        Value::Array(items) => {
            let slot = into
                .entry(key.to_owned())
                .or_insert_with(|| Value::Array(vec![Value::Object(Map::new()); items.len()]));
            let Value::Array(dst) = slot else { return };
            for (i, item) in items.iter().enumerate() {
                let (Some(m), Some(Value::Object(d))) = (item.as_object(), dst.get_mut(i)) else { continue };
                if let Some(sk) = key_ci(m, sub) {
                    d.insert(sk.clone(), m[&sk].clone());
                }
            }
            dst.retain(|v| !matches!(v, Value::Object(m) if m.is_empty()));
            if dst.is_empty() {
                into.remove(key);
            }
        }
        _ => {}
    }
}

/// The `schemas` of a stored body: the core schema and each extension whose object is
/// not empty.
pub fn schemas_of(rt: &ResourceTypeDef, body: &Value) -> Vec<Value> {
    let mut out = vec![Value::String(rt.schema.to_owned())];
    for (urn, _) in rt.extensions {
        if body.get(*urn).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            out.push(Value::String((*urn).to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER, resource_type};
    use serde_json::json;

    fn user() -> &'static ResourceTypeDef {
        resource_type("User").unwrap()
    }

    #[test]
    fn entra_create_body_is_normalised() {
        let body = json!({"schemas":[schema::USER, ENTERPRISE_USER],
            "externalId":"0a21","UserName":"Test_User@x.com","active":"True",
            "emails":[{"primary":true,"type":"work","Value":"a@x.com"}],
            "meta":{"resourceType":"User"}, "id": "client-chosen",
            "name":{"formatted":"g f","familyName":"f","givenName":"g"},
            "roles":[],"addresses":null,"phoneNumbers":null,"title":null,
            "groups":[{"value":"g1"}], "unknownThing": 3,
            "http://schemas.microsoft.com/x": {"a": 1},
            ENTERPRISE_USER: {"manager": "boss-id", "department": null},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42"});
        let n = normalize(user(), &body).unwrap();
        assert_eq!(
            n,
            json!({"externalId":"0a21","userName":"Test_User@x.com","active":true,
                "emails":[{"primary":true,"type":"work","value":"a@x.com"}],
                "name":{"formatted":"g f","familyName":"f","givenName":"g"},
                ENTERPRISE_USER: {"manager": {"value": "boss-id"}, "employeeNumber": "42"}})
        );
        assert_eq!(schemas_of(user(), &n).len(), 2);
    }

    #[test]
    fn required_and_types_are_checked() {
        let e = normalize(user(), &json!({"displayName": "x"})).unwrap_err();
        assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidValue)));
        let e = normalize(user(), &json!({"userName": "x", "active": "yes"})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let e = normalize(user(), &json!({"userName": 5})).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let g = resource_type("Group").unwrap();
        let n = normalize(g, &json!({"displayName": "G", "members": [{"value": "u1", "$ref": null, "display": "d"}]}))
            .unwrap();
        assert_eq!(n, json!({"displayName": "G", "members": [{"value": "u1", "display": "d"}]}));
    }

    #[test]
    fn projection_keeps_id_and_schemas() {
        let r = json!({"schemas": [schema::USER, ENTERPRISE_USER], "id": "1", "userName": "u",
            "name": {"givenName": "g", "familyName": "f"}, "emails": [{"value": "a", "type": "work"}],
            "meta": {"resourceType": "User"}, ENTERPRISE_USER: {"department": "d", "costCenter": "c"}});
        let a = parse_attr_list(
            "userName,name.givenName,emails.value,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        );
        assert_eq!(
            project(user(), &r, &a, &[]),
            json!({"schemas": [schema::USER, ENTERPRISE_USER], "id": "1", "userName": "u", "name": {"givenName": "g"},
                "emails": [{"value": "a"}], ENTERPRISE_USER: {"department": "d"}})
        );
        let x = parse_attr_list(
            "id,name,emails.type,meta,EnterpriseUser,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        );
        let p = project(user(), &r, &[], &x);
        assert_eq!(
            p,
            json!({"schemas": [schema::USER, ENTERPRISE_USER], "id": "1", "userName": "u", "emails": [{"value": "a"}]})
        );
    }
}
