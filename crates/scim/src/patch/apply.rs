//! Applying resolved operations to a resource: the engine, the three operations on a
//! target, value-filtered targets and the changed-attribute report.

use serde_json::{Map, Value};

use super::coerce::{
    check_departures, coerce_complex, coerce_multi, coerce_single, coerce_value, is_empty_value, is_text,
    matches_template, single,
};
use super::elements::{
    add_absent, append_unique, hit_indices, merge, object_entry, put_elements, remove_attr, remove_sub,
    replace_element, set_simple, take_elements, tidied, tidy, write_one_sub, write_sub,
};
use super::parse::{OpKind, PatchOp, PatchPath};
use super::resolve::{Loc, Target, ValuePath, any_selected, filter_sub, selected};
use super::{bad, canonicalize_key, has_key_ci, immutable, read_only_target};
use crate::error::{ScimError, ScimType};
use crate::filter::{CompValue, CompareOp, Filter};
use crate::profile::Profile;
use crate::schema::{AttrType, AttributeDef, Mutability, ResourceTypeDef};

/// Applies `ops` in order to `resource`, a resource of type `rt` in the stored layout (see
/// the module documentation). All or nothing: on error `resource` is left as it was.
/// Returns the attributes whose value changed, sorted: core and common attributes by
/// name (`emails`, `name`, `externalId`), extension attributes as `URN:name`. An empty
/// list means the operations changed nothing (RFC 7644 §3.5.2.1: no new version).
/// `profile` says which departures from the RFC are accepted.
pub fn apply(
    rt: &ResourceTypeDef,
    resource: &mut Value,
    ops: &[PatchOp],
    profile: &Profile,
) -> Result<Vec<String>, ScimError> {
    let Some(original) = resource.as_object() else {
        return Err(ScimError::new(500, None, "the stored resource is not a JSON object"));
    };
    let mut work = original.clone();
    let mut engine = Engine::new(rt, *profile);
    for (i, op) in ops.iter().enumerate() {
        engine.apply_op(&mut work, op).map_err(|mut e| {
            e.detail = format!("operation {}: {}", i + 1, e.detail);
            e
        })?;
    }
    engine.finish_extensions(&mut work);
    let changed = changed_attributes(rt, original, &work);
    *resource = Value::Object(work);
    Ok(changed)
}

pub(super) struct Engine<'r> {
    pub(super) rt: &'r ResourceTypeDef,
    pub(super) profile: Profile,
    /// Extensions written to, whose presence in `schemas` is settled at the end.
    touched: Vec<&'static str>,
}

impl<'r> Engine<'r> {
    pub(super) fn new(rt: &'r ResourceTypeDef, profile: Profile) -> Self {
        Engine { rt, profile, touched: Vec::new() }
    }

    fn apply_op(&mut self, res: &mut Map<String, Value>, op: &PatchOp) -> Result<(), ScimError> {
        let value = op.value.as_ref().unwrap_or(&Value::Null);
        match &op.path {
            None if op.op == OpKind::Remove => Err(bad(ScimType::NoTarget, "remove needs a \"path\"")),
            None => {
                if !value.is_object() {
                    return Err(bad(
                        ScimType::InvalidSyntax,
                        format!("{} without a path needs an object of attributes as its value", op.op.as_str()),
                    ));
                }
                self.apply_object(res, op.op, value, None)
            }
            Some(PatchPath::Schema(id)) => self.apply_schema(res, op.op, id, value),
            Some(PatchPath::Attribute { attr, filter }) => {
                let target = self.resolve(attr, filter.as_ref())?;
                self.apply_target(res, op.op, &target, value)
            }
        }
    }

    /// A value object whose keys are paths (`userName`, `name.givenName`,
    /// `urn:…:User:employeeNumber`, an extension URN), relative to `scope` when given.
    fn apply_object(
        &mut self,
        res: &mut Map<String, Value>,
        kind: OpKind,
        value: &Value,
        scope: Option<&'static str>,
    ) -> Result<(), ScimError> {
        let Value::Object(obj) = value else {
            return Err(bad(ScimType::InvalidValue, "expected an object of attributes"));
        };
        for (key, v) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                continue;
            }
            match PatchPath::parse(key)? {
                PatchPath::Schema(id) => self.apply_schema(res, kind, &id, v)?,
                PatchPath::Attribute { mut attr, filter } => {
                    if attr.uri.is_none() {
                        attr.uri = scope.map(str::to_owned);
                    }
                    let target = self.resolve(&attr, filter.as_ref())?;
                    self.apply_target(res, kind, &target, v)?;
                }
            }
        }
        Ok(())
    }

    /// A whole schema as the target: the core schema means the resource itself, an
    /// extension its object.
    fn apply_schema(
        &mut self,
        res: &mut Map<String, Value>,
        kind: OpKind,
        id: &str,
        value: &Value,
    ) -> Result<(), ScimError> {
        let Some(sch) = self.rt.schemas().find(|s| s.id.eq_ignore_ascii_case(id)) else {
            return Err(bad(ScimType::InvalidPath, format!("{} resources have no schema {id}", self.rt.name)));
        };
        let core = sch.id == self.rt.schema;
        match kind {
            OpKind::Remove if core => {
                Err(bad(ScimType::InvalidPath, "the core schema cannot be removed; name an attribute"))
            }
            OpKind::Remove => {
                if has_key_ci(res, sch.id) {
                    self.touch(sch.id);
                    canonicalize_key(res, sch.id);
                    res.remove(sch.id);
                }
                Ok(())
            }
            _ if value.is_null() => {
                if kind == OpKind::Replace && !core && has_key_ci(res, sch.id) {
                    self.touch(sch.id);
                    canonicalize_key(res, sch.id);
                    res.remove(sch.id);
                }
                Ok(())
            }
            _ if !value.is_object() => {
                Err(bad(ScimType::InvalidValue, format!("the value for {} must be an object of attributes", sch.id)))
            }
            _ => self.apply_object(res, kind, value, (!core).then_some(sch.id)),
        }
    }

    fn touch(&mut self, id: &'static str) {
        if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    fn apply_target(
        &mut self,
        res: &mut Map<String, Value>,
        kind: OpKind,
        t: &Target<'_>,
        value: &Value,
    ) -> Result<(), ScimError> {
        check_departures(&self.profile, t.sub.unwrap_or(t.attr), value)?;
        let container = match t.loc {
            Loc::Core => res,
            Loc::Extension(id) => {
                if kind == OpKind::Remove && !has_key_ci(res, id) {
                    return Ok(());
                }
                self.touch(id);
                extension_mut(res, id)?
            }
        };
        let name = t.attr.name;
        canonicalize_key(container, name);
        let before = container.get(name).cloned();
        let result = match kind {
            OpKind::Add => op_add(container, t, value),
            OpKind::Replace => op_replace(container, t, value, &self.profile),
            OpKind::Remove => op_remove(container, t, value),
        };
        let read_only =
            t.attr.mutability == Mutability::ReadOnly || t.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
        if read_only {
            // Writing a read-only attribute is accepted only when it changes nothing.
            let after = container.get(name).cloned().and_then(tidied);
            let unchanged = result.is_ok() && after == before.clone().and_then(tidied);
            match before {
                Some(b) => container.insert(name.to_owned(), b),
                None => container.remove(name),
            };
            return if unchanged { Ok(()) } else { Err(read_only_target(t)) };
        }
        result?;
        tidy(container, name);
        if t.attr.required && before.is_some() && !container.contains_key(name) {
            // RFC 7644 §3.5.2.2: removing a required attribute is a mutability error; a
            // replace by nothing (null, "") is a value the attribute cannot take.
            let t = if kind == OpKind::Remove { ScimType::Mutability } else { ScimType::InvalidValue };
            return Err(bad(t, format!("{name} is required and cannot be removed")));
        }
        Ok(())
    }

    /// Drops emptied extensions and keeps `schemas` listing exactly the extensions present.
    fn finish_extensions(&self, res: &mut Map<String, Value>) {
        for &id in &self.touched {
            canonicalize_key(res, id);
            let present = match res.get(id) {
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Null) | None => false,
                Some(_) => true,
            };
            if !present {
                res.remove(id);
            }
            let core = self.rt.schema;
            match res.get_mut("schemas") {
                Some(Value::Array(list)) => {
                    let listed = list.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)));
                    if present && !listed {
                        list.push(Value::String(id.to_owned()));
                    } else if !present && listed {
                        list.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)));
                    }
                }
                None if present => {
                    res.insert("schemas".into(), Value::Array(vec![core.into(), id.into()]));
                }
                // Absent and not needed, or not an array (left as the store has it).
                _ => {}
            }
        }
    }
}

/// The extension's object, created if absent.
fn extension_mut<'m>(res: &'m mut Map<String, Value>, id: &str) -> Result<&'m mut Map<String, Value>, ScimError> {
    canonicalize_key(res, id);
    let slot = res.entry(id.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or_else(|| ScimError::new(500, None, format!("the stored {id} is not an object")))
}

// ---------------------------------------------------------------------------------------
// The three operations on a resolved target. Each leaves the attribute possibly untidy
// (nulls, empty containers); `apply_target` tidies it afterwards.

fn op_add(container: &mut Map<String, Value>, t: &Target<'_>, value: &Value) -> Result<(), ScimError> {
    if value.is_null() {
        return Ok(());
    }
    if let Some(vp) = &t.filter {
        return filtered(container, t, vp, OpKind::Add, value);
    }
    let attr = t.attr;
    match t.sub {
        Some(sub) => write_sub(container, attr, sub, coerce_value(sub, value)?),
        None if attr.multi_valued => {
            let new = coerce_multi(attr, value)?;
            let mut elems = take_elements(container, attr.name);
            let start = elems.len();
            add_absent(attr, &mut elems, new);
            let written: Vec<usize> = (start..elems.len()).collect();
            put_elements(container, attr, elems, &written);
            Ok(())
        }
        None if attr.ty == AttrType::Complex => {
            let incoming = coerce_complex(attr, single(attr, value)?)?;
            merge(object_entry(container, attr.name)?, attr, incoming, OpKind::Add)
        }
        None => {
            let v = coerce_value(attr, value)?;
            set_simple(container, attr, v)
        }
    }
}

fn op_replace(
    container: &mut Map<String, Value>,
    t: &Target<'_>,
    value: &Value,
    profile: &Profile,
) -> Result<(), ScimError> {
    if let Some(vp) = &t.filter {
        if !profile.unmatched_replace_adds && !any_selected(container, t.attr, vp) {
            // RFC 7644 §3.5.2.3.
            return Err(bad(
                ScimType::NoTarget,
                format!(
                    "the value filter [{}] matched no value of {}; {}",
                    vp.filter,
                    t.attr.name,
                    profile.refusal("entra")
                ),
            ));
        }
        return filtered(container, t, vp, OpKind::Replace, value);
    }
    let attr = t.attr;
    if let Some(sub) = t.sub {
        return write_sub(container, attr, sub, coerce_value(sub, value)?);
    }
    if value.is_null() {
        return remove_attr(container, attr);
    }
    if attr.multi_valued {
        let mut elems = Vec::new();
        append_unique(&mut elems, coerce_multi(attr, value)?);
        let old = take_elements(container, attr.name);
        if attr.mutability == Mutability::Immutable && !old.is_empty() && old != elems {
            return Err(immutable(attr.name));
        }
        let written: Vec<usize> = (0..elems.len()).collect();
        put_elements(container, attr, elems, &written);
        Ok(())
    } else if attr.ty == AttrType::Complex {
        let incoming = coerce_complex(attr, single(attr, value)?)?;
        merge(object_entry(container, attr.name)?, attr, incoming, OpKind::Replace)
    } else {
        let v = coerce_value(attr, value)?;
        set_simple(container, attr, v)
    }
}

fn op_remove(container: &mut Map<String, Value>, t: &Target<'_>, value: &Value) -> Result<(), ScimError> {
    if let Some(vp) = &t.filter {
        return filtered(container, t, vp, OpKind::Remove, value);
    }
    let attr = t.attr;
    match t.sub {
        Some(sub) => {
            if container.get(attr.name).is_none_or(Value::is_null) {
                return Ok(());
            }
            write_sub(container, attr, sub, Value::Null)
        }
        None if attr.multi_valued && !value.is_null() => {
            let templates = coerce_multi(attr, value)?;
            let mut elems = take_elements(container, attr.name);
            elems.retain(|e| !templates.iter().any(|tpl| matches_template(attr, e, tpl)));
            put_elements(container, attr, elems, &[]);
            Ok(())
        }
        None => remove_attr(container, attr),
    }
}

/// `attr[filter]` and `attr[filter].sub`. A single complex attribute is treated as a list
/// of at most one value.
fn filtered(
    container: &mut Map<String, Value>,
    t: &Target<'_>,
    vp: &ValuePath<'_>,
    kind: OpKind,
    value: &Value,
) -> Result<(), ScimError> {
    let attr = t.attr;
    let mut elems = if attr.multi_valued {
        take_elements(container, attr.name)
    } else {
        container.remove(attr.name).filter(|v| !v.is_null()).into_iter().collect()
    };
    let hits = selected(vp, &elems);
    let any_hit = hits.contains(&true);
    // The values this operation writes, for the primary rule.
    let mut written: Vec<usize> = Vec::new();
    match (kind, t.sub) {
        (OpKind::Remove, None) => {
            let mut it = hits.iter();
            elems.retain(|_| !it.next().copied().unwrap_or(false));
        }
        (OpKind::Add | OpKind::Replace, _) if !any_hit => {
            if let Some(new) = new_element(attr, t.sub, vp.filter, value)? {
                if attr.multi_valued {
                    let start = elems.len();
                    add_absent(attr, &mut elems, vec![new]);
                    written.extend(start..elems.len());
                } else {
                    elems = vec![new];
                }
            }
        }
        (OpKind::Remove, Some(sub)) => {
            for (e, _) in elems.iter_mut().zip(&hits).filter(|(_, h)| **h) {
                if let Some(m) = e.as_object_mut() {
                    remove_sub(m, sub)?;
                }
            }
        }
        (_, Some(sub)) => {
            let v = coerce_value(sub, value)?;
            if kind == OpKind::Add && v.is_null() {
                // Adding nothing.
            } else {
                written = hit_indices(&hits);
                for (e, _) in elems.iter_mut().zip(&hits).filter(|(_, h)| **h) {
                    if let Some(m) = e.as_object_mut() {
                        write_one_sub(m, sub, v.clone())?;
                    }
                }
            }
        }
        (OpKind::Replace, None) if value.is_null() => {
            let mut it = hits.iter();
            elems.retain(|_| !it.next().copied().unwrap_or(false));
        }
        (OpKind::Add, None) if attr.ty == AttrType::Complex => {
            let incoming = coerce_complex(attr, single(attr, value)?)?;
            written = hit_indices(&hits);
            for (e, _) in elems.iter_mut().zip(&hits).filter(|(_, h)| **h) {
                if let Some(m) = e.as_object_mut() {
                    merge(m, attr, incoming.clone(), OpKind::Add)?;
                }
            }
        }
        (_, None) => {
            let new = coerce_single(attr, single(attr, value)?)?;
            written = hit_indices(&hits);
            for (e, _) in elems.iter_mut().zip(&hits).filter(|(_, h)| **h) {
                replace_element(e, attr, new.clone())?;
            }
        }
    }
    if attr.multi_valued {
        put_elements(container, attr, elems, &written);
    } else if let Some(v) = elems.pop() {
        container.insert(attr.name.to_owned(), v);
    }
    Ok(())
}

/// The value to add when a value filter matched nothing: with a sub-attribute, one built
/// from the filter's `eq` terms plus that sub-attribute; without, the given value.
fn new_element(
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
    f: &Filter,
    value: &Value,
) -> Result<Option<Value>, ScimError> {
    match sub {
        Some(sub) => {
            let v = coerce_value(sub, value)?;
            if v.is_null() {
                return Ok(None);
            }
            let mut m = Map::new();
            if !equality_terms(attr, f, &mut m) {
                return Err(bad(
                    ScimType::NoTarget,
                    format!(
                        "the value filter [{f}] matched no value of {} and, not being eq terms joined by and, \
                         does not describe one to add",
                        attr.name
                    ),
                ));
            }
            m.insert(sub.name.to_owned(), v);
            Ok(Some(Value::Object(m)))
        }
        None if value.is_null() => Ok(None),
        None => {
            let v = coerce_single(attr, single(attr, value)?)?;
            Ok((!is_empty_value(&v)).then_some(v))
        }
    }
}

/// Collects `sub eq value` terms joined by `and`; false if the filter has anything else.
fn equality_terms(attr: &'static AttributeDef, f: &Filter, out: &mut Map<String, Value>) -> bool {
    match f {
        Filter::And(a, b) => equality_terms(attr, a, out) && equality_terms(attr, b, out),
        Filter::Compare(p, CompareOp::Eq, v) => {
            let Some(d) = filter_sub(attr, p) else { return false };
            let json = match v {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Num(n) if is_text(d) => Value::String(n.to_string()),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Bool(b) if is_text(d) => Value::String(b.to_string()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Null => return false,
            };
            match coerce_single(d, &json) {
                Ok(v) => {
                    out.insert(d.name.to_owned(), v);
                    true
                }
                Err(_) => false,
            }
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Reporting

fn changed_attributes(rt: &ResourceTypeDef, before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let empty = Map::new();
    let mut out = Vec::new();
    for key in before.keys().chain(after.keys()) {
        if key == "schemas" {
            continue;
        }
        if rt.extensions.iter().any(|(id, _)| *id == key.as_str()) {
            let b = before.get(key).and_then(Value::as_object).unwrap_or(&empty);
            let a = after.get(key).and_then(Value::as_object).unwrap_or(&empty);
            out.extend(b.keys().chain(a.keys()).filter(|k| b.get(*k) != a.get(*k)).map(|k| format!("{key}:{k}")));
        } else if before.get(key) != after.get(key) {
            out.push(key.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}
