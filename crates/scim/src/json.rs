//! How fedkey reads SCIM resources in their JSON form — shared by the in-memory evaluator
//! (`eval`) and the SQL translator (`fedkey_store::scim_sql`), so both apply exactly the
//! same rules: keys matched exactly then ignoring ASCII case, `null` as absent, a bare
//! value of a multi-valued attribute as a one-element array, `"True"`/`"false"` strings as
//! booleans.

use serde_json::Value;

static NULL: Value = Value::Null;

/// A member of an object: the exact key, else the first key equal ignoring ASCII case.
pub fn lookup<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

pub fn push_values<'v>(v: Option<&'v Value>, out: &mut Vec<&'v Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => out.extend(items.iter().filter(|i| !i.is_null())),
        Some(v) => out.push(v),
    }
}

/// RFC 7644 `pr`: a value that is not null, not empty, and (for complex values) has a
/// present member.
pub fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// The element of a multi-valued attribute that stands for it: the primary, else the
/// first. Non-arrays stand for themselves.
pub fn representative(v: &Value) -> &Value {
    match v {
        Value::Array(items) => items
            .iter()
            .find(|i| lookup(i, "primary").and_then(as_bool) == Some(true))
            .or_else(|| items.iter().find(|i| !i.is_null()))
            .unwrap_or(&NULL),
        v => v,
    }
}

/// A stored boolean, accepting the strings Entra ID sends.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}
