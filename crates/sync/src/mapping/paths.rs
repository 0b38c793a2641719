//! Paths in mapping rules, parsed once with the `scim` crate's PATCH path grammar and
//! resolved against the schema registry: where a rule writes ([`Slot`]) and where it
//! reads ([`SourcePath`]).

use fedkey_scim::eval::{self, CompiledFilter};
use fedkey_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use fedkey_scim::json::{lookup, representative};
use fedkey_scim::patch::PatchPath;
use fedkey_scim::resource::normalize_value;
use fedkey_scim::schema::{AttrType, AttributeDef, Mutability, ResourceTypeDef};
use serde_json::{Map, Value, json};

use crate::diff::ManagedAttr;

type Def = &'static AttributeDef;

/// Where a rule writes in the target resource.
#[derive(Debug)]
pub(super) enum Slot {
    /// A whole attribute: `title`, `emails`, `name`, `urn:…:department`.
    Whole { ext: Option<&'static str>, def: Def },
    /// A sub-attribute of a single-valued complex attribute: `name.givenName`.
    Sub { ext: Option<&'static str>, def: Def, sub: Def },
    /// One value of a multi-valued complex attribute, picked (or created) by `eq` terms:
    /// `emails[type eq "work"].value`, `phoneNumbers[type eq "mobile"]`.
    Element { ext: Option<&'static str>, def: Def, selector: Vec<(Def, Value)>, sub: Option<Def> },
}

/// Splits `[URN:]attr[filter][.sub]` and resolves `attr` in `rt`: extension URN (if not
/// core), attribute, optional sub-attribute and value filter.
fn resolve(rt: &ResourceTypeDef, text: &str, allow_common: bool) -> Result<Resolved, String> {
    let (attr, filter) = match PatchPath::parse(text) {
        Ok(PatchPath::Attribute { attr, filter }) => (attr, filter),
        Ok(PatchPath::Schema(_)) => return Err("a whole schema is not an attribute".into()),
        Err(e) => return Err(e.detail),
    };
    let core = attr.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(rt.schema));
    let common =
        [&eval::ID, &eval::EXTERNAL_ID, &eval::META].into_iter().find(|c| c.name.eq_ignore_ascii_case(&attr.name));
    let (ext, def) = match common.filter(|_| core) {
        Some(_) if !allow_common => return Err(format!("{} is set by fedkey, not by rules", attr.name)),
        Some(def) => (None, def),
        None => {
            let r = rt
                .resolve(&AttrPath { uri: attr.uri.clone(), name: attr.name.clone(), sub: None })
                .ok_or_else(|| format!("{} resources have no attribute {}", rt.name, attr.name))?;
            ((r.schema.id != rt.schema).then_some(r.schema.id), r.attribute)
        }
    };
    let sub = match &attr.sub {
        Some(s) => Some(def.sub_attribute(s).ok_or_else(|| format!("{} has no sub-attribute {s}", def.name))?),
        None => None,
    };
    if filter.is_some() && !(def.multi_valued && def.ty == AttrType::Complex) {
        return Err(format!("{} is not a multi-valued complex attribute: it takes no value filter", def.name));
    }
    Ok(Resolved { ext, def, sub, filter })
}

struct Resolved {
    ext: Option<&'static str>,
    def: Def,
    sub: Option<Def>,
    filter: Option<Filter>,
}

impl Slot {
    pub(super) fn parse(rt: &ResourceTypeDef, text: &str) -> Result<Slot, String> {
        let Resolved { ext, def, sub, filter } = resolve(rt, text, false)?;
        if def.name == "password" {
            return Err("passwords are never provisioned".into());
        }
        if def.name == "members" && ext.is_none() {
            return Err("members are reconciled from group membership, not by rules".into());
        }
        if def.mutability == Mutability::ReadOnly || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly) {
            return Err("read-only at the target".into());
        }
        match (filter, sub) {
            (Some(f), sub) => {
                let mut selector = Vec::new();
                eq_terms(def, &f, &mut selector)?;
                Ok(Slot::Element { ext, def, selector, sub })
            }
            (None, Some(sub)) if def.multi_valued => Err(format!(
                "{}.{} does not say which value to write; use {}[type eq \"…\"].{}",
                def.name, sub.name, def.name, sub.name
            )),
            (None, Some(sub)) => Ok(Slot::Sub { ext, def, sub }),
            (None, None) => Ok(Slot::Whole { ext, def }),
        }
    }

    fn parts(&self) -> (Option<&'static str>, Def) {
        match self {
            Slot::Whole { ext, def } | Slot::Sub { ext, def, .. } | Slot::Element { ext, def, .. } => (*ext, def),
        }
    }

    pub(super) fn attribute_name(&self) -> &'static str {
        self.parts().1.name
    }

    pub(super) fn extension(&self) -> Option<&'static str> {
        self.parts().0
    }

    /// Whether two rules would write the same place.
    pub(super) fn overlaps(&self, other: &Slot) -> bool {
        if self.parts().0 != other.parts().0 || self.parts().1.name != other.parts().1.name {
            return false;
        }
        match (self, other) {
            (Slot::Sub { sub: a, .. }, Slot::Sub { sub: b, .. }) => a.name == b.name,
            (Slot::Element { selector: sa, sub: a, .. }, Slot::Element { selector: sb, sub: b, .. }) => {
                same_selector(sa, sb) && (a.is_none() || b.is_none() || a.map(|x| x.name) == b.map(|x| x.name))
            }
            _ => true,
        }
    }

    pub(super) fn managed(&self) -> ManagedAttr {
        match self {
            Slot::Sub { ext, def, sub } => ManagedAttr { extension: *ext, attribute: def, sub: Some(sub) },
            Slot::Whole { ext, def } | Slot::Element { ext, def, .. } => {
                ManagedAttr { extension: *ext, attribute: def, sub: None }
            }
        }
    }

    /// Whether `v` is a valid value for this place (type, sub-attributes).
    pub(super) fn check(&self, v: &Value) -> Result<(), String> {
        let def = match self {
            Slot::Whole { def, .. } | Slot::Element { def, sub: None, .. } => def,
            Slot::Sub { sub, .. } | Slot::Element { sub: Some(sub), .. } => sub,
        };
        normalize_value(def, v).map(|_| ()).map_err(|e| e.detail)
    }

    /// Writes `v` into `body` (wire layout).
    pub(super) fn put(&self, body: &mut Map<String, Value>, v: Value) {
        let (ext, def) = self.parts();
        let container = match ext {
            None => body,
            Some(urn) => match object_at(body, urn) {
                Some(c) => c,
                None => return,
            },
        };
        match self {
            Slot::Whole { .. } => {
                container.insert(def.name.to_owned(), v);
            }
            Slot::Sub { sub, .. } => {
                if let Some(o) = object_at(container, def.name) {
                    o.insert(sub.name.to_owned(), v);
                }
            }
            Slot::Element { selector, sub, .. } => {
                let slot = container.entry(def.name.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                let Value::Array(items) = slot else { return };
                let pos = items.iter().position(|e| selector.iter().all(|(k, val)| e.get(k.name) == Some(val)));
                let pos = match pos {
                    Some(p) => p,
                    None => {
                        let fresh: Map<String, Value> =
                            selector.iter().map(|(k, val)| (k.name.to_owned(), val.clone())).collect();
                        items.push(Value::Object(fresh));
                        items.len() - 1
                    }
                };
                let Some(Value::Object(elem)) = items.get_mut(pos) else { return };
                match (sub, v) {
                    (Some(sub), v) => {
                        elem.insert(sub.name.to_owned(), v);
                    }
                    (None, Value::Object(fields)) => elem.extend(fields),
                    (None, bare) => {
                        elem.insert("value".into(), bare);
                    }
                }
            }
        }
    }
}

/// The object under `key`, created (or replacing a non-object) when needed; always `Some`.
fn object_at<'m>(m: &'m mut Map<String, Value>, key: &str) -> Option<&'m mut Map<String, Value>> {
    let slot = m.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

fn same_selector(a: &[(Def, Value)], b: &[(Def, Value)]) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k.name == k2.name && v == v2))
}

/// The `sub eq literal` terms of a selector joined by `and`.
fn eq_terms(def: Def, f: &Filter, out: &mut Vec<(Def, Value)>) -> Result<(), String> {
    match f {
        Filter::And(a, b) => {
            eq_terms(def, a, out)?;
            eq_terms(def, b, out)
        }
        Filter::Compare(p, CompareOp::Eq, v) if p.uri.is_none() && p.sub.is_none() => {
            let sub =
                def.sub_attribute(&p.name).ok_or_else(|| format!("{} has no sub-attribute {}", def.name, p.name))?;
            let value = match v {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Null => return Err("a target selector cannot compare with null".into()),
            };
            out.push((sub, value));
            Ok(())
        }
        _ => Err("a target selector may only join 'sub eq value' terms with 'and'".into()),
    }
}

/// Where a rule reads in the directory resource.
pub(super) struct SourcePath {
    pub(super) text: String,
    ext: Option<&'static str>,
    def: Def,
    sub: Option<Def>,
    filter: Option<CompiledFilter>,
}

impl SourcePath {
    pub(super) fn parse(rt: &ResourceTypeDef, text: &str) -> Result<SourcePath, String> {
        let Resolved { ext, def, sub, filter } = resolve(rt, text, true)?;
        if def.name == "password" {
            return Err("passwords are never read".into());
        }
        let filter = match filter {
            None => None,
            Some(f) => {
                let whole = Filter::ValuePath(
                    AttrPath { uri: ext.map(str::to_owned), name: def.name.to_owned(), sub: None },
                    Box::new(f),
                );
                Some(eval::compile(rt, &whole).map_err(|e| e.detail)?)
            }
        };
        Ok(SourcePath { text: text.to_owned(), ext, def, sub, filter })
    }

    /// The value at this path, `None` when absent. With a filter, the first matching
    /// value; a sub-attribute of a multi-valued attribute without one, of its primary
    /// (else first) value.
    pub(super) fn read(&self, from: &Value) -> Option<Value> {
        let container = match self.ext {
            Some(urn) => lookup(from, urn)?,
            None => from,
        };
        let v = lookup(container, self.def.name).filter(|v| !v.is_null())?;
        let elem = match &self.filter {
            Some(f) => {
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                items.into_iter().find(|e| f.matches(&self.wrap(e)))?
            }
            None if self.sub.is_some() => representative(v),
            None => v,
        };
        match self.sub {
            Some(s) => lookup(elem, s.name).filter(|v| !v.is_null()).cloned(),
            None => Some(elem.clone()),
        }
    }

    /// A resource holding only `elem` as the attribute's value, for the value filter.
    fn wrap(&self, elem: &Value) -> Value {
        let inner = json!({ self.def.name: [elem] });
        match self.ext {
            Some(urn) => json!({ urn: inner }),
            None => inner,
        }
    }
}
