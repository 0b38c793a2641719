//! Checking and coercing the values an operation carries against the attribute's type.

use serde_json::{Map, Value};

use super::{bad, clip, get_ci};
use crate::error::{ScimError, ScimType};
use crate::profile::Profile;
use crate::schema::{AttrType, AttributeDef, Mutability};

/// Refuses a value for `def` that takes a departure `profile` does not allow: a string
/// where a boolean belongs, or a bare value where a complex one does. The rest of the
/// checking is [`coerce_value`]'s, which accepts both forms.
pub(super) fn check_departures(profile: &Profile, def: &AttributeDef, v: &Value) -> Result<(), ScimError> {
    if profile.string_booleans && profile.manager_forms {
        return Ok(());
    }
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| check_departures(profile, def, i)),
        Value::Object(m) if def.ty == AttrType::Complex => m
            .iter()
            .filter_map(|(k, sv)| def.sub_attribute(k).map(|sub| (sub, sv)))
            .try_for_each(|(sub, sv)| check_departures(profile, sub, sv)),
        Value::String(_) if def.ty == AttrType::Boolean && !profile.string_booleans => Err(bad(
            ScimType::InvalidValue,
            format!("{} takes a JSON boolean, not a string; {}", def.name, profile.refusal("entra")),
        )),
        Value::String(_) | Value::Number(_) | Value::Bool(_)
            if def.ty == AttrType::Complex && def.sub_attribute("value").is_some() && !profile.manager_forms =>
        {
            Err(bad(
                ScimType::InvalidValue,
                format!(
                    "{} takes an object such as {{\"value\": …}}, not {}; {}",
                    def.name,
                    json_kind(v),
                    profile.refusal("entra")
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// A value for `def`, multi-valued or not; null stays null.
pub(super) fn coerce_value(def: &'static AttributeDef, v: &Value) -> Result<Value, ScimError> {
    if v.is_null() {
        Ok(Value::Null)
    } else if def.multi_valued {
        Ok(Value::Array(coerce_multi(def, v)?))
    } else {
        coerce_single(def, single(def, v)?)
    }
}

/// The values of a multi-valued attribute: an array, or one bare value. Nulls and empty
/// complex values are dropped.
pub(super) fn coerce_multi(def: &'static AttributeDef, v: &Value) -> Result<Vec<Value>, ScimError> {
    let items: &[Value] = match v {
        Value::Null => &[],
        Value::Array(a) => a,
        one => std::slice::from_ref(one),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter().filter(|i| !i.is_null()) {
        let c = coerce_single(def, item)?;
        if !is_empty_value(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// A single-valued attribute's value: a one-element array stands for its element.
pub(super) fn single<'v>(def: &AttributeDef, v: &'v Value) -> Result<&'v Value, ScimError> {
    match v {
        Value::Array(a) if a.len() == 1 => Ok(&a[0]),
        Value::Array(_) => Err(bad(ScimType::InvalidValue, format!("{} takes a single value, not an array", def.name))),
        other => Ok(other),
    }
}

/// One value of `def`'s type (one element, for a multi-valued attribute).
pub(super) fn coerce_single(def: &'static AttributeDef, v: &Value) -> Result<Value, ScimError> {
    let wrong =
        |expected: &str| bad(ScimType::InvalidValue, format!("{} takes {expected}, not {}", def.name, json_kind(v)));
    match def.ty {
        AttrType::Complex => {
            let mut m = coerce_complex(def, v)?;
            m.retain(|_, v| !v.is_null());
            Ok(Value::Object(m))
        }
        AttrType::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("a boolean")),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
            _ => Err(wrong("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => Ok(v.clone()),
            _ => Err(wrong("a number")),
        },
        AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary => match v {
            // No value, as on create and replace (resource::normalize).
            Value::String(s) if s.is_empty() => Ok(Value::Null),
            Value::String(_) => Ok(v.clone()),
            _ => Err(wrong("a string")),
        },
    }
}

/// The sub-attributes of a complex value, by canonical name, nulls kept (for replace).
/// A bare value means `{"value": …}` when the attribute has a `value` sub-attribute.
pub(super) fn coerce_complex(def: &'static AttributeDef, v: &Value) -> Result<Map<String, Value>, ScimError> {
    match v {
        Value::Object(m) if def.sub_attributes.is_empty() => Ok(m.clone()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, sv) in m {
                let Some(sub) = def.sub_attribute(k) else {
                    return Err(bad(
                        ScimType::InvalidValue,
                        format!("{} has no sub-attribute {:?}", def.name, clip(k)),
                    ));
                };
                // Read-only parts of a writable value (`manager.displayName`) are the
                // server's to set: ignored, as on PUT.
                if sub.mutability == Mutability::ReadOnly && def.mutability != Mutability::ReadOnly {
                    continue;
                }
                out.insert(sub.name.to_owned(), coerce_value(sub, sv)?);
            }
            Ok(out)
        }
        Value::String(_) | Value::Number(_) | Value::Bool(_) => match def.sub_attribute("value") {
            Some(value_def) => {
                let mut out = Map::new();
                out.insert(value_def.name.to_owned(), coerce_single(value_def, v)?);
                Ok(out)
            }
            None => Err(bad(ScimType::InvalidValue, format!("{} takes an object, not {}", def.name, json_kind(v)))),
        },
        Value::Null => Ok(Map::new()),
        Value::Array(_) => Err(bad(ScimType::InvalidValue, format!("{} takes an object, not an array", def.name))),
    }
}

/// Whether an element matches a value given to remove: on every sub-attribute given.
pub(super) fn matches_template(attr: &AttributeDef, elem: &Value, tpl: &Value) -> bool {
    match (tpl, elem) {
        (Value::Object(t), Value::Object(e)) if attr.ty == AttrType::Complex => {
            !t.is_empty()
                && t.iter().all(|(k, tv)| {
                    get_ci(e, k).is_some_and(|ev| match attr.sub_attribute(k) {
                        Some(sub) => values_equal(sub, ev, tv),
                        None => ev == tv,
                    })
                })
        }
        _ => values_equal(attr, elem, tpl),
    }
}

pub(super) fn values_equal(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if is_text(def) => text_eq(x, y, def.case_exact),
        _ => a == b,
    }
}

pub(super) fn is_text(def: &AttributeDef) -> bool {
    matches!(def.ty, AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary)
}

pub(super) fn text_eq(a: &str, b: &str, case_exact: bool) -> bool {
    if case_exact {
        a == b
    } else if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

pub(super) fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(Value::is_null),
        _ => false,
    }
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
