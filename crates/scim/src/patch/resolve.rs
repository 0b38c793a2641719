//! Resolving a path against the schema registry, and the values a value filter selects.

use serde_json::{Map, Value};

use super::apply::Engine;
use super::{bad, read_only};
use crate::error::{ScimError, ScimType};
use crate::eval::{self, ValueFilter};
use crate::filter::{AttrPath, Filter};
use crate::schema::{AttrType, AttributeDef, Mutability};

/// `meta` as PATCH sees it: opaque, with no sub-attributes declared, so any object passes
/// the value check and the read-only rule decides (Okta echoes `meta` back).
static META: AttributeDef = AttributeDef { sub_attributes: &[], ..eval::META };

/// The common attributes a path may name; `schemas` is refused before this is asked.
fn common_attribute(name: &str) -> Option<&'static AttributeDef> {
    [&eval::ID, &eval::EXTERNAL_ID, &META].into_iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Where an attribute lives in the resource.
#[derive(Debug, Clone, Copy)]
pub(super) enum Loc {
    Core,
    Extension(&'static str),
}

/// A path resolved against the registry.
pub(super) struct Target<'f> {
    pub(super) loc: Loc,
    pub(super) attr: &'static AttributeDef,
    pub(super) sub: Option<&'static AttributeDef>,
    pub(super) filter: Option<ValuePath<'f>>,
}

/// The value filter of `attr[filter]`, as written and as compiled by the list-filter
/// evaluator.
pub(super) struct ValuePath<'f> {
    /// For the values an unmatched add builds from its `eq` terms, and for messages.
    pub(super) filter: &'f Filter,
    pub(super) compiled: ValueFilter,
}

impl Engine<'_> {
    pub(super) fn resolve<'f>(&self, attr: &AttrPath, filter: Option<&'f Filter>) -> Result<Target<'f>, ScimError> {
        let rt = self.rt;
        let core = attr.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(rt.schema));
        if core && attr.name.eq_ignore_ascii_case("schemas") {
            return Err(bad(
                ScimType::Mutability,
                "\"schemas\" is maintained by the server: it lists the extensions whose attributes are present",
            ));
        }
        let (loc, def, sub) = match common_attribute(&attr.name).filter(|_| core) {
            Some(def) => {
                let sub = match &attr.sub {
                    None => None,
                    Some(s) => match def.sub_attribute(s) {
                        Some(d) => Some(d),
                        None if def.mutability == Mutability::ReadOnly => return Err(read_only(def.name)),
                        None => return Err(bad(ScimType::InvalidPath, format!("unknown attribute {attr}"))),
                    },
                };
                (Loc::Core, def, sub)
            }
            None => {
                let r = rt.resolve(attr).ok_or_else(|| {
                    bad(ScimType::InvalidPath, format!("{} resources have no attribute {attr}", rt.name))
                })?;
                let loc = if r.schema.id == rt.schema { Loc::Core } else { Loc::Extension(r.schema.id) };
                if attr.uri.is_none() && matches!(loc, Loc::Extension(_)) && !self.profile.manager_forms {
                    return Err(bad(
                        ScimType::InvalidPath,
                        format!(
                            "{} is an attribute of {}: name it {}:{}; {}",
                            r.attribute.name,
                            r.schema.id,
                            r.schema.id,
                            r.attribute.name,
                            self.profile.refusal("entra")
                        ),
                    ));
                }
                (loc, r.attribute, r.sub)
            }
        };
        if filter.is_some() && !def.multi_valued && def.ty != AttrType::Complex {
            return Err(bad(
                ScimType::InvalidPath,
                format!("{} is single-valued and not complex: it takes no value filter", def.name),
            ));
        }
        let filter = match filter {
            Some(f) => Some(ValuePath { filter: f, compiled: eval::compile_value_filter(def, f)? }),
            None => None,
        };
        Ok(Target { loc, attr: def, sub, filter })
    }
}

// ---------------------------------------------------------------------------------------
// Value filters: compiled by the list-filter evaluator, so `emails[type eq "work"]` in a
// PATCH path selects exactly the values `filter=emails[type eq "work"]` would match on.

/// Which of the stored values `vp` selects, one flag per value.
pub(super) fn selected(vp: &ValuePath<'_>, elems: &[Value]) -> Vec<bool> {
    elems.iter().map(|e| vp.compiled.matches(e)).collect()
}

/// Whether `vp` selects any stored value of `attr` (a single complex value counts as one).
pub(super) fn any_selected(container: &Map<String, Value>, attr: &AttributeDef, vp: &ValuePath<'_>) -> bool {
    match container.get(attr.name) {
        Some(Value::Array(elems)) => elems.iter().any(|e| vp.compiled.matches(e)),
        None | Some(Value::Null) => false,
        Some(one) => vp.compiled.matches(one),
    }
}

/// The sub-attribute a path inside a (compiled, hence valid) value filter names.
pub(super) fn filter_sub(attr: &AttributeDef, p: &AttrPath) -> Option<&'static AttributeDef> {
    if p.uri.is_some() || p.sub.is_some() { None } else { attr.sub_attribute(&p.name) }
}
