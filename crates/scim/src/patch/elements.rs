//! Writing values: multi-valued elements, complex merges, tidying and the primary rule.

use serde_json::{Map, Value};

use super::coerce::{is_empty_value, matches_template, values_equal};
use super::parse::OpKind;
use super::{canonicalize_key, get_ci, immutable};
use crate::error::ScimError;
use crate::schema::{AttributeDef, Mutability};

pub(super) fn take_elements(container: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match container.remove(name) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => vec![other],
    }
}

/// Stores the values of a multi-valued attribute (none: the attribute goes), keeping at
/// most one primary: the last of those this operation `written` that is primary, else the
/// last primary.
pub(super) fn put_elements(
    container: &mut Map<String, Value>,
    attr: &AttributeDef,
    mut elems: Vec<Value>,
    written: &[usize],
) {
    if attr.sub_attribute("primary").is_some() {
        fix_primary(&mut elems, written);
    }
    if !elems.is_empty() {
        container.insert(attr.name.to_owned(), Value::Array(elems));
    }
}

pub(super) fn hit_indices(hits: &[bool]) -> Vec<usize> {
    hits.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i).collect()
}

/// Appends the values not already present: RFC 7644 §3.5.2.1 makes adding a value the
/// attribute already holds change nothing. A value is present when a stored one equals it
/// on every sub-attribute it gives (so `{"value": id}` is a member already listed with its
/// `type` and `display`), under the sub-attribute's case rule.
/// Values given together are compared with each other exactly (equal JSON), as before.
pub(super) fn add_absent(attr: &AttributeDef, elems: &mut Vec<Value>, new: Vec<Value>) {
    let stored = elems.len();
    for v in new {
        if !elems[..stored].iter().any(|e| matches_template(attr, e, &v)) && !elems[stored..].contains(&v) {
            elems.push(v);
        }
    }
}

pub(super) fn append_unique(elems: &mut Vec<Value>, new: Vec<Value>) {
    for v in new {
        if !elems.contains(&v) {
            elems.push(v);
        }
    }
}

/// The object at `name`, created (or replacing a non-object) if need be.
pub(super) fn object_entry<'m>(
    container: &'m mut Map<String, Value>,
    name: &str,
) -> Result<&'m mut Map<String, Value>, ScimError> {
    let slot = container.entry(name.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or_else(|| ScimError::new(500, None, format!("could not make {name} an object")))
}

pub(super) fn set_simple(container: &mut Map<String, Value>, attr: &AttributeDef, v: Value) -> Result<(), ScimError> {
    if v.is_null() {
        return remove_attr(container, attr);
    }
    if attr.mutability == Mutability::Immutable
        && let Some(old) = container.get(attr.name).filter(|o| !o.is_null())
        && *old != v
    {
        return Err(immutable(attr.name));
    }
    container.insert(attr.name.to_owned(), v);
    Ok(())
}

pub(super) fn remove_attr(container: &mut Map<String, Value>, attr: &AttributeDef) -> Result<(), ScimError> {
    if attr.mutability == Mutability::Immutable && container.get(attr.name).is_some_and(|v| !is_empty_value(v)) {
        return Err(immutable(attr.name));
    }
    container.remove(attr.name);
    Ok(())
}

/// `attr.sub` without a filter: that sub-attribute of a single complex value, or of every
/// value of a multi-valued attribute (creating one if there is none). Null removes.
pub(super) fn write_sub(
    container: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    sub: &'static AttributeDef,
    v: Value,
) -> Result<(), ScimError> {
    if attr.multi_valued {
        let mut elems = take_elements(container, attr.name);
        let written: Vec<usize> = (0..elems.len().max(1)).collect();
        if elems.is_empty() {
            if !v.is_null() {
                let mut m = Map::new();
                m.insert(sub.name.to_owned(), v);
                elems.push(Value::Object(m));
            }
        } else {
            for e in &mut elems {
                if let Some(m) = e.as_object_mut() {
                    write_one_sub(m, sub, v.clone())?;
                }
            }
        }
        put_elements(container, attr, elems, &written);
        Ok(())
    } else {
        write_one_sub(object_entry(container, attr.name)?, sub, v)
    }
}

pub(super) fn write_one_sub(obj: &mut Map<String, Value>, sub: &AttributeDef, v: Value) -> Result<(), ScimError> {
    if v.is_null() { remove_sub(obj, sub) } else { set_sub(obj, sub, v) }
}

pub(super) fn set_sub(obj: &mut Map<String, Value>, sub: &AttributeDef, v: Value) -> Result<(), ScimError> {
    canonicalize_key(obj, sub.name);
    if sub.mutability == Mutability::Immutable
        && let Some(old) = obj.get(sub.name).filter(|o| !o.is_null())
        && *old != v
    {
        return Err(immutable(sub.name));
    }
    obj.insert(sub.name.to_owned(), v);
    Ok(())
}

pub(super) fn remove_sub(obj: &mut Map<String, Value>, sub: &AttributeDef) -> Result<(), ScimError> {
    canonicalize_key(obj, sub.name);
    if sub.mutability == Mutability::Immutable && obj.get(sub.name).is_some_and(|v| !v.is_null()) {
        return Err(immutable(sub.name));
    }
    obj.remove(sub.name);
    Ok(())
}

/// Merges sub-attributes into a complex value. Replace removes sub-attributes given as
/// null; add ignores them. For a single complex attribute with a `value` sub-attribute, a
/// different `value` starts a fresh complex value (a new manager keeps nothing of the old).
pub(super) fn merge(
    obj: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    incoming: Map<String, Value>,
    kind: OpKind,
) -> Result<(), ScimError> {
    if !attr.multi_valued
        && let Some(value_def) = attr.sub_attribute("value")
        && let Some(new) = incoming.get(value_def.name).filter(|v| !v.is_null())
    {
        canonicalize_key(obj, value_def.name);
        if obj.get(value_def.name).is_some_and(|old| !old.is_null() && !values_equal(value_def, old, new)) {
            for sub in attr.sub_attributes {
                remove_sub(obj, sub)?;
            }
            obj.clear();
        }
    }
    for (k, v) in incoming {
        match attr.sub_attribute(&k) {
            Some(sub) if v.is_null() => {
                if kind == OpKind::Replace {
                    remove_sub(obj, sub)?;
                }
            }
            Some(sub) => set_sub(obj, sub, v)?,
            // Opaque complex attributes (`meta`): keys as given.
            None if v.is_null() => {
                if kind == OpKind::Replace {
                    obj.remove(&k);
                }
            }
            None => {
                obj.insert(k, v);
            }
        }
    }
    Ok(())
}

/// Replaces a matched value whole; immutable sub-attributes it holds must stay as they are.
pub(super) fn replace_element(old: &mut Value, attr: &AttributeDef, new: Value) -> Result<(), ScimError> {
    if let Value::Object(o) = &*old {
        for sub in attr.sub_attributes.iter().filter(|s| s.mutability == Mutability::Immutable) {
            if let Some(ov) = get_ci(o, sub.name).filter(|v| !v.is_null())
                && new.get(sub.name) != Some(ov)
            {
                return Err(immutable(sub.name));
            }
        }
    }
    *old = new;
    Ok(())
}

/// Removes nulls and empty containers left at `name`, and the attribute if nothing is left.
pub(super) fn tidy(container: &mut Map<String, Value>, name: &str) {
    if let Some(v) = container.remove(name)
        && let Some(v) = tidied(v)
    {
        container.insert(name.to_owned(), v);
    }
}

pub(super) fn tidied(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) => {
            let a: Vec<Value> = a.into_iter().filter_map(tidied).collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        Value::Object(m) => {
            let m: Map<String, Value> = m.into_iter().filter_map(|(k, v)| tidied(v).map(|v| (k, v))).collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        other => Some(other),
    }
}

pub(super) fn fix_primary(elems: &mut [Value], written: &[usize]) {
    let is_primary = |v: &Value| v.get("primary") == Some(&Value::Bool(true));
    let primaries: Vec<usize> = (0..elems.len()).filter(|&i| is_primary(&elems[i])).collect();
    if primaries.len() < 2 {
        return;
    }
    let keep = primaries.iter().rev().find(|i| written.contains(i)).or(primaries.last()).copied();
    for i in primaries {
        if Some(i) != keep
            && let Some(m) = elems[i].as_object_mut()
        {
            m.insert("primary".into(), Value::Bool(false));
        }
    }
}
