//! The SCIM PATCH engine (RFC 7644 §3.5.2).
//!
//! [`parse_request`] reads a PatchOp body into [`PatchOp`]s; [`apply`] applies them in
//! order to a resource held as JSON, all or nothing, and names the attributes that
//! changed. The resource layout is the stored one: core-schema attributes at the top level
//! under their canonical names, extension attributes in an object under the extension's
//! URN (listed in `schemas` while that object is not empty), and the common attributes
//! `id`, `externalId`, `meta` and `schemas`.
//!
//! Departures from the RFC that real clients need are taken only when the trust's
//! compatibility [`Profile`] allows them (`generic` allows none): capitalised `op` values,
//! string booleans, an unmatched-filter replace that adds, remove with a `value`, and the
//! enterprise `manager` forms (an extension attribute without its URN, a bare value for a
//! complex one). Under the RFC those are 400s with the scimType the RFC names.
//!
//! Choices where the RFC is silent, and the departures where a profile allows them:
//! - attribute names and sub-attribute names are case-insensitive; names are stored in
//!   the registry's casing. `op` values are lowercase (any case: profile).
//! - A request needs an `Operations` array of at least one operation; its `schemas` may be
//!   missing or wrong. An empty `path` is no path.
//! - Values are checked against the attribute's type: `"True"`/`"False"` (any case) are
//!   booleans (profile), a bare value for a complex attribute with a `value`
//!   sub-attribute means `{"value": …}` (Entra's `manager`; profile), a one-element array
//!   for a single-valued attribute is its element, nulls inside objects are dropped,
//!   read-only sub-attributes inside a value (`manager.displayName`) are ignored, and an
//!   extension-level value's own `schemas` key is ignored. Unknown attributes are errors:
//!   `invalidPath` for keys and paths, `invalidValue` for sub-attributes inside a value.
//! - add on a multi-valued attribute appends values that are not already present (a stored
//!   value equal on every sub-attribute given): adding what is there changes nothing. add
//!   or replace on a single complex attribute merges sub-attributes (replace: a null
//!   sub-attribute removes it), except that a new `value` different from the stored
//!   one (a new `manager`) replaces the whole complex value.
//! - replace with a value filter that matches nothing is 400 `noTarget` (RFC 7644
//!   §3.5.2.3). add, and replace where the profile allows it, adds a value: with a trailing
//!   sub-attribute (`emails[type eq "work"].value`) the new value is built from the
//!   filter's `eq` terms joined by `and` (400 `noTarget` if the filter is anything else);
//!   without one the given value is appended. Matching values are replaced whole (replace)
//!   or merged into (add).
//! - `attr.sub` without a filter on a multi-valued attribute addresses that sub-attribute
//!   of every value (creating one value when there is none).
//! - remove with a `value` (profile; otherwise 400 `invalidSyntax`) on a multi-valued
//!   attribute removes the values that match one of the given ones on every sub-attribute
//!   given (Entra's member removal); a `value` on a single-valued attribute is ignored.
//!   Removing what is absent succeeds and changes nothing.
//! - replace with null (or an empty array) removes. An empty string is no value, as on
//!   create and replace: it removes too. Removing a required attribute (`userName`) is
//!   400 `mutability` (RFC 7644 §3.5.2.2); replacing it by nothing is 400 `invalidValue`.
//! - Read-only targets (`id`, `meta`, `groups`, read-only sub-attributes) may be written
//!   only when the write changes nothing (Okta echoes `id`); otherwise 400 `mutability`.
//!   `schemas` may not be a path (it follows the extensions present); as a key in a value
//!   it is ignored.
//! - Immutable sub-attributes (`members.value`) may be set on a new value or where
//!   unassigned, never changed or removed on an existing value; whole values holding them
//!   may still be added and removed.
//! - After each operation at most one value of a multi-valued attribute is primary: the
//!   last of the values that operation wrote which is primary (so a retried operation
//!   gives the same result), else the last primary value.
//! - The changed-attribute list is a diff of the resource before and after: sorted, core
//!   and common attributes by name, extension attributes as `urn:…:name`; `schemas` is
//!   not listed (it follows the extension attributes).

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use crate::profile::Profile;
use crate::schema::{self, AttrType, AttributeDef, Mutability, ResourceTypeDef, Returned, Uniqueness};

/// URN of a PatchOp request body.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Longest `path` accepted, in bytes.
pub const MAX_PATH_LEN: usize = filter::MAX_FILTER_LEN + 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }

    /// An `op` value, case-insensitively.
    pub fn parse(s: &str) -> Option<OpKind> {
        [OpKind::Add, OpKind::Remove, OpKind::Replace].into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// An `op` value as `profile` reads it: lowercase only, unless it allows capitals.
    fn parse_as(s: &str, profile: &Profile) -> Result<OpKind, ScimError> {
        let kind = OpKind::parse(s).ok_or_else(|| {
            bad(ScimType::InvalidSyntax, format!("unknown op {:?} (expected add, remove or replace)", clip(s)))
        })?;
        if kind.as_str() != s && !profile.capitalised_ops {
            return Err(bad(
                ScimType::InvalidSyntax,
                format!("op {:?} must be lowercase, {:?}: {}", clip(s), kind.as_str(), profile.refusal("entra")),
            ));
        }
        Ok(kind)
    }
}

/// The `path` of an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    /// A whole schema by its URN (`urn:…:extension:enterprise:2.0:User`), in the registry's
    /// spelling; its value is an object of that schema's attributes.
    Schema(String),
    /// `[URN:]attr[.sub]`, `[URN:]attr[filter]` or `[URN:]attr[filter].sub`: `attr.sub` is
    /// the sub-attribute, after the filter when there is one.
    Attribute { attr: AttrPath, filter: Option<Filter> },
}

impl PatchPath {
    /// Parses a path; 400 `invalidPath` if malformed, `invalidFilter` if the value filter is.
    pub fn parse(input: &str) -> Result<PatchPath, ScimError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(bad(ScimType::InvalidPath, "the path is empty"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(bad(ScimType::InvalidPath, format!("the path is longer than {MAX_PATH_LEN} bytes")));
        }
        let Some(open) = s.find('[') else {
            if let Some(sch) = schema::schema(s) {
                return Ok(PatchPath::Schema(sch.id.to_owned()));
            }
            return Ok(PatchPath::Attribute { attr: parse_attr_path(s, input)?, filter: None });
        };
        let close = closing_bracket(s, open).ok_or_else(|| invalid_path(input, "'[' without a matching ']'"))?;
        let mut attr = parse_attr_path(&s[..open], input)?;
        if attr.sub.is_some() {
            return Err(invalid_path(input, "a value filter must follow an attribute, not a sub-attribute"));
        }
        let filter = filter::parse(&s[open + 1..close])
            .map_err(|e| bad(ScimType::InvalidFilter, format!("bad value filter in path {:?}: {e}", clip(input))))?;
        let rest = &s[close + 1..];
        if !rest.is_empty() {
            match rest.strip_prefix('.') {
                Some(sub) if is_attr_name(sub) => attr.sub = Some(sub.to_owned()),
                _ => return Err(invalid_path(input, "only '.subAttribute' may follow a value filter")),
            }
        }
        Ok(PatchPath::Attribute { attr, filter: Some(filter) })
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Schema(id) => f.write_str(id),
            PatchPath::Attribute { attr, filter: None } => write!(f, "{attr}"),
            PatchPath::Attribute { attr, filter: Some(flt) } => {
                if let Some(u) = &attr.uri {
                    write!(f, "{u}:")?;
                }
                write!(f, "{}[{flt}]", attr.name)?;
                if let Some(s) = &attr.sub {
                    write!(f, ".{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body (RFC 7644 §3.5.2). The body must be an object with an
/// `Operations` array (key case-insensitive) of one or more operations, each with an `op`
/// (`add`, `remove`, `replace`, case-insensitive), an optional string `path` and, for add
/// and replace, a `value`; anything else is 400 `invalidSyntax`. A missing or unexpected
/// `schemas` is tolerated. Paths are parsed here (`invalidPath`, `invalidFilter`) and
/// resolved against the schema by [`apply`], which also rejects a remove without a path.
pub fn parse_request(body: &Value, profile: &Profile) -> Result<Vec<PatchOp>, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, "a PatchOp body must be a JSON object"));
    };
    let ops = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" is empty")),
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"Operations\" must be an array")),
        None => return Err(bad(ScimType::InvalidSyntax, "a PatchOp body needs an \"Operations\" array")),
    };
    ops.iter()
        .enumerate()
        .map(|(i, raw)| {
            parse_operation(raw, profile).map_err(|mut e| {
                e.detail = format!("operation {}: {}", i + 1, e.detail);
                e
            })
        })
        .collect()
}

fn parse_operation(raw: &Value, profile: &Profile) -> Result<PatchOp, ScimError> {
    let Some(obj) = raw.as_object() else {
        return Err(bad(ScimType::InvalidSyntax, "an operation must be a JSON object"));
    };
    let op = match get_ci(obj, "op") {
        Some(Value::String(s)) => OpKind::parse_as(s, profile)?,
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"op\" must be a string")),
        None => return Err(bad(ScimType::InvalidSyntax, "an operation needs an \"op\"")),
    };
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(PatchPath::parse(s)?),
        Some(_) => return Err(bad(ScimType::InvalidSyntax, "\"path\" must be a string")),
    };
    let value = get_ci(obj, "value").cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(bad(ScimType::InvalidSyntax, format!("{} needs a \"value\"", op.as_str())));
    }
    if op == OpKind::Remove && value.as_ref().is_some_and(|v| !v.is_null()) && !profile.remove_with_value {
        return Err(bad(
            ScimType::InvalidSyntax,
            format!(
                "remove takes no \"value\"; select values with a filter, e.g. members[value eq \"id\"]: {}",
                profile.refusal("entra")
            ),
        ));
    }
    Ok(PatchOp { op, path, value })
}

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
    let mut engine = Engine { rt, profile: *profile, touched: Vec::new() };
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

// ---------------------------------------------------------------------------------------
// Path parsing

/// `[URN ":"] name ["." sub]`: the URN is everything up to the last ':' (URNs hold dots,
/// as in `2.0`, so the sub-attribute is split from the last segment only).
fn parse_attr_path(s: &str, whole: &str) -> Result<AttrPath, ScimError> {
    let (uri, local) = match s.rfind(':') {
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    };
    if let Some(u) = uri
        && (u.is_empty() || u.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '[' | ']')))
    {
        return Err(invalid_path(whole, "malformed schema URN"));
    }
    let (name, sub) = match local.split_once('.') {
        Some((n, sub)) => (n, Some(sub)),
        None => (local, None),
    };
    if !is_attr_name(name) || sub.is_some_and(|x| !is_attr_name(x)) {
        return Err(invalid_path(whole, "malformed attribute path"));
    }
    Ok(AttrPath { uri: uri.map(str::to_owned), name: name.to_owned(), sub: sub.map(str::to_owned) })
}

/// Index of the ']' closing the '[' at `open`, skipping quoted strings.
fn closing_bracket(s: &str, open: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let (mut depth, mut in_string, mut i) = (0usize, false, open + 1);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'[' if !in_string => depth += 1,
            b']' if !in_string => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus `$ref`.
fn is_attr_name(s: &str) -> bool {
    s == "$ref"
        || (s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

// ---------------------------------------------------------------------------------------
// Resolution

const fn common_attr(name: &'static str, ty: AttrType, mutability: Mutability) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        multi_valued: false,
        description: "",
        required: false,
        case_exact: true,
        mutability,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
    }
}

static ID: AttributeDef = common_attr("id", AttrType::String, Mutability::ReadOnly);
static EXTERNAL_ID: AttributeDef = common_attr("externalId", AttrType::String, Mutability::ReadWrite);
/// Opaque: no sub-attributes are declared, so any object passes the value check and the
/// read-only rule decides.
static META: AttributeDef = common_attr("meta", AttrType::Complex, Mutability::ReadOnly);

fn common_attribute(name: &str) -> Option<&'static AttributeDef> {
    [&ID, &EXTERNAL_ID, &META].into_iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Where an attribute lives in the resource.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Core,
    Extension(&'static str),
}

/// A path resolved against the registry.
struct Target<'f> {
    loc: Loc,
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
    filter: Option<&'f Filter>,
}

struct Engine<'r> {
    rt: &'r ResourceTypeDef,
    profile: Profile,
    /// Extensions written to, whose presence in `schemas` is settled at the end.
    touched: Vec<&'static str>,
}

impl Engine<'_> {
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

    fn resolve<'f>(&self, attr: &AttrPath, filter: Option<&'f Filter>) -> Result<Target<'f>, ScimError> {
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
        if let Some(f) = filter {
            if !def.multi_valued && def.ty != AttrType::Complex {
                return Err(bad(
                    ScimType::InvalidPath,
                    format!("{} is single-valued and not complex: it takes no value filter", def.name),
                ));
            }
            validate_filter(def, f)?;
        }
        Ok(Target { loc, attr: def, sub, filter })
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
    if let Some(f) = t.filter {
        return filtered(container, t, f, OpKind::Add, value);
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
    if let Some(f) = t.filter {
        if !profile.unmatched_replace_adds && !any_match(container, t.attr, f) {
            // RFC 7644 §3.5.2.3.
            return Err(bad(
                ScimType::NoTarget,
                format!("the value filter [{f}] matched no value of {}; {}", t.attr.name, profile.refusal("entra")),
            ));
        }
        return filtered(container, t, f, OpKind::Replace, value);
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
    if let Some(f) = t.filter {
        return filtered(container, t, f, OpKind::Remove, value);
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

/// Whether a value filter matches any stored value of `attr`.
fn any_match(container: &Map<String, Value>, attr: &'static AttributeDef, f: &Filter) -> bool {
    match container.get(attr.name) {
        Some(Value::Array(elems)) => elems.iter().any(|e| matches(attr, e, f)),
        None | Some(Value::Null) => false,
        Some(one) => matches(attr, one, f),
    }
}

/// `attr[filter]` and `attr[filter].sub`. A single complex attribute is treated as a list
/// of at most one value.
fn filtered(
    container: &mut Map<String, Value>,
    t: &Target<'_>,
    f: &Filter,
    kind: OpKind,
    value: &Value,
) -> Result<(), ScimError> {
    let attr = t.attr;
    let mut elems = if attr.multi_valued {
        take_elements(container, attr.name)
    } else {
        container.remove(attr.name).filter(|v| !v.is_null()).into_iter().collect()
    };
    let hits: Vec<bool> = elems.iter().map(|e| matches(attr, e, f)).collect();
    let any_hit = hits.contains(&true);
    // The values this operation writes, for the primary rule.
    let mut written: Vec<usize> = Vec::new();
    match (kind, t.sub) {
        (OpKind::Remove, None) => {
            let mut it = hits.iter();
            elems.retain(|_| !it.next().copied().unwrap_or(false));
        }
        (OpKind::Add | OpKind::Replace, _) if !any_hit => {
            if let Some(new) = new_element(attr, t.sub, f, value)? {
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
            let Some(Field::Sub(d)) = element_field(attr, p) else { return false };
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
// Writing values

fn take_elements(container: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    match container.remove(name) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => vec![other],
    }
}

/// Stores the values of a multi-valued attribute (none: the attribute goes), keeping at
/// most one primary: the last of those this operation `written` that is primary, else the
/// last primary.
fn put_elements(container: &mut Map<String, Value>, attr: &AttributeDef, mut elems: Vec<Value>, written: &[usize]) {
    if attr.sub_attribute("primary").is_some() {
        fix_primary(&mut elems, written);
    }
    if !elems.is_empty() {
        container.insert(attr.name.to_owned(), Value::Array(elems));
    }
}

fn hit_indices(hits: &[bool]) -> Vec<usize> {
    hits.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i).collect()
}

/// Appends the values not already present: RFC 7644 §3.5.2.1 makes adding a value the
/// attribute already holds change nothing. A value is present when a stored one equals it
/// on every sub-attribute it gives (so `{"value": id}` is a member already listed with its
/// `type` and `display`), under the sub-attribute's case rule.
/// Values given together are compared with each other exactly (equal JSON), as before.
fn add_absent(attr: &AttributeDef, elems: &mut Vec<Value>, new: Vec<Value>) {
    let stored = elems.len();
    for v in new {
        if !elems[..stored].iter().any(|e| matches_template(attr, e, &v)) && !elems[stored..].contains(&v) {
            elems.push(v);
        }
    }
}

fn append_unique(elems: &mut Vec<Value>, new: Vec<Value>) {
    for v in new {
        if !elems.contains(&v) {
            elems.push(v);
        }
    }
}

/// The object at `name`, created (or replacing a non-object) if need be.
fn object_entry<'m>(
    container: &'m mut Map<String, Value>,
    name: &str,
) -> Result<&'m mut Map<String, Value>, ScimError> {
    let slot = container.entry(name.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or_else(|| ScimError::new(500, None, format!("could not make {name} an object")))
}

fn set_simple(container: &mut Map<String, Value>, attr: &AttributeDef, v: Value) -> Result<(), ScimError> {
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

fn remove_attr(container: &mut Map<String, Value>, attr: &AttributeDef) -> Result<(), ScimError> {
    if attr.mutability == Mutability::Immutable && container.get(attr.name).is_some_and(|v| !is_empty_value(v)) {
        return Err(immutable(attr.name));
    }
    container.remove(attr.name);
    Ok(())
}

/// `attr.sub` without a filter: that sub-attribute of a single complex value, or of every
/// value of a multi-valued attribute (creating one if there is none). Null removes.
fn write_sub(
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

fn write_one_sub(obj: &mut Map<String, Value>, sub: &AttributeDef, v: Value) -> Result<(), ScimError> {
    if v.is_null() { remove_sub(obj, sub) } else { set_sub(obj, sub, v) }
}

fn set_sub(obj: &mut Map<String, Value>, sub: &AttributeDef, v: Value) -> Result<(), ScimError> {
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

fn remove_sub(obj: &mut Map<String, Value>, sub: &AttributeDef) -> Result<(), ScimError> {
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
fn merge(
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
fn replace_element(old: &mut Value, attr: &AttributeDef, new: Value) -> Result<(), ScimError> {
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
fn tidy(container: &mut Map<String, Value>, name: &str) {
    if let Some(v) = container.remove(name)
        && let Some(v) = tidied(v)
    {
        container.insert(name.to_owned(), v);
    }
}

fn tidied(v: Value) -> Option<Value> {
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

fn fix_primary(elems: &mut [Value], written: &[usize]) {
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

// ---------------------------------------------------------------------------------------
// Value checking

/// Refuses a value for `def` that takes a departure `profile` does not allow: a string
/// where a boolean belongs, or a bare value where a complex one does. The rest of the
/// checking is [`coerce_value`]'s, which accepts both forms.
fn check_departures(profile: &Profile, def: &AttributeDef, v: &Value) -> Result<(), ScimError> {
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
fn coerce_value(def: &'static AttributeDef, v: &Value) -> Result<Value, ScimError> {
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
fn coerce_multi(def: &'static AttributeDef, v: &Value) -> Result<Vec<Value>, ScimError> {
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
fn single<'v>(def: &AttributeDef, v: &'v Value) -> Result<&'v Value, ScimError> {
    match v {
        Value::Array(a) if a.len() == 1 => Ok(&a[0]),
        Value::Array(_) => Err(bad(ScimType::InvalidValue, format!("{} takes a single value, not an array", def.name))),
        other => Ok(other),
    }
}

/// One value of `def`'s type (one element, for a multi-valued attribute).
fn coerce_single(def: &'static AttributeDef, v: &Value) -> Result<Value, ScimError> {
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
fn coerce_complex(def: &'static AttributeDef, v: &Value) -> Result<Map<String, Value>, ScimError> {
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
fn matches_template(attr: &AttributeDef, elem: &Value, tpl: &Value) -> bool {
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

fn values_equal(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if is_text(def) => text_eq(x, y, def.case_exact),
        _ => a == b,
    }
}

fn is_text(def: &AttributeDef) -> bool {
    matches!(def.ty, AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary)
}

fn text_eq(a: &str, b: &str, case_exact: bool) -> bool {
    if case_exact {
        a == b
    } else if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(Value::is_null),
        _ => false,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------
// Value filters

/// What a path inside a value filter names.
enum Field {
    /// A sub-attribute of a complex value.
    Sub(&'static AttributeDef),
    /// `value` of a multi-valued attribute of simple values: the element itself.
    Whole(&'static AttributeDef),
}

fn element_field(attr: &'static AttributeDef, p: &AttrPath) -> Option<Field> {
    if p.uri.is_some() || p.sub.is_some() {
        return None;
    }
    if attr.ty == AttrType::Complex {
        attr.sub_attribute(&p.name).map(Field::Sub)
    } else {
        p.name.eq_ignore_ascii_case("value").then_some(Field::Whole(attr))
    }
}

fn validate_filter(attr: &'static AttributeDef, f: &Filter) -> Result<(), ScimError> {
    let unknown =
        |p: &AttrPath| bad(ScimType::InvalidFilter, format!("{} has no sub-attribute {p} to filter on", attr.name));
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate_filter(attr, a)?;
            validate_filter(attr, b)
        }
        Filter::Not(a) => validate_filter(attr, a),
        Filter::Present(p) => element_field(attr, p).map(|_| ()).ok_or_else(|| unknown(p)),
        Filter::Compare(p, op, v) => {
            let def = match element_field(attr, p).ok_or_else(|| unknown(p))? {
                Field::Sub(d) | Field::Whole(d) => d,
            };
            let ok = match (def.ty, v) {
                (_, CompValue::Null) => matches!(op, CompareOp::Eq | CompareOp::Ne),
                (AttrType::Boolean, CompValue::Bool(_)) => matches!(op, CompareOp::Eq | CompareOp::Ne),
                (AttrType::Boolean, CompValue::Str(s)) => {
                    matches!(op, CompareOp::Eq | CompareOp::Ne)
                        && (s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"))
                }
                (AttrType::Boolean, _) => false,
                (AttrType::Integer | AttrType::Decimal, CompValue::Num(_)) => {
                    !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
                }
                (AttrType::Integer | AttrType::Decimal | AttrType::Complex, _) => false,
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(bad(
                    ScimType::InvalidFilter,
                    format!("cannot compare {} ({p}) with {} {v}", attr.name, op.as_str()),
                ))
            }
        }
        Filter::ValuePath(p, _) => {
            Err(bad(ScimType::InvalidFilter, format!("a value filter cannot nest another ({p}[…])")))
        }
    }
}

/// Whether one value of `attr` matches a (validated) value filter.
fn matches(attr: &'static AttributeDef, elem: &Value, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => matches(attr, elem, a) && matches(attr, elem, b),
        Filter::Or(a, b) => matches(attr, elem, a) || matches(attr, elem, b),
        Filter::Not(a) => !matches(attr, elem, a),
        Filter::Present(p) => {
            field_value(attr, elem, p).is_some_and(|(_, v)| !is_empty_value(v) && v.as_str() != Some(""))
        }
        Filter::Compare(p, op, cv) => match field_value(attr, elem, p) {
            Some((def, v)) if !v.is_null() => compare(def, v, *op, cv),
            _ => {
                matches!((op, cv), (CompareOp::Eq, CompValue::Null))
                    || (*op == CompareOp::Ne && !matches!(cv, CompValue::Null))
            }
        },
        Filter::ValuePath(..) => false,
    }
}

fn field_value<'e>(
    attr: &'static AttributeDef,
    elem: &'e Value,
    p: &AttrPath,
) -> Option<(&'static AttributeDef, &'e Value)> {
    match element_field(attr, p)? {
        Field::Sub(d) => elem.as_object().and_then(|m| get_ci(m, d.name)).map(|v| (d, v)),
        Field::Whole(d) => Some((d, elem)),
    }
}

fn compare(def: &AttributeDef, actual: &Value, op: CompareOp, cv: &CompValue) -> bool {
    use std::cmp::Ordering;
    if matches!(cv, CompValue::Null) {
        return op == CompareOp::Ne;
    }
    let ordering: Option<Ordering> = match def.ty {
        AttrType::Boolean => {
            let want = match cv {
                CompValue::Bool(b) => Some(*b),
                CompValue::Str(s) => Some(s.eq_ignore_ascii_case("true")),
                _ => None,
            };
            let have = match actual {
                Value::Bool(b) => Some(*b),
                Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
                _ => None,
            };
            return match (have, want) {
                (Some(h), Some(w)) => (op == CompareOp::Eq) == (h == w),
                _ => op == CompareOp::Ne,
            };
        }
        AttrType::Integer | AttrType::Decimal => {
            let want = match cv {
                CompValue::Num(n) => n.as_f64(),
                _ => None,
            };
            actual.as_f64().zip(want).and_then(|(a, w)| a.partial_cmp(&w))
        }
        _ => {
            let want = match cv {
                CompValue::Str(s) => s.clone(),
                CompValue::Num(n) => n.to_string(),
                CompValue::Bool(b) => b.to_string(),
                CompValue::Null => String::new(),
            };
            let have = match actual {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return op == CompareOp::Ne,
            };
            let (have, want) = if def.case_exact { (have, want) } else { (have.to_lowercase(), want.to_lowercase()) };
            match op {
                CompareOp::Co => return have.contains(&want),
                CompareOp::Sw => return have.starts_with(&want),
                CompareOp::Ew => return have.ends_with(&want),
                _ => Some(have.cmp(&want)),
            }
        }
    };
    let Some(o) = ordering else { return op == CompareOp::Ne };
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

// ---------------------------------------------------------------------------------------
// Reporting and small helpers

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

fn get_ci<'m>(m: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    m.get(key).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn has_key_ci(m: &Map<String, Value>, key: &str) -> bool {
    get_ci(m, key).is_some()
}

/// Renames a key stored in another casing to `canonical`.
fn canonicalize_key(m: &mut Map<String, Value>, canonical: &str) {
    if m.contains_key(canonical) {
        return;
    }
    if let Some(k) = m.keys().find(|k| k.eq_ignore_ascii_case(canonical)).cloned()
        && let Some(v) = m.remove(&k)
    {
        m.insert(canonical.to_owned(), v);
    }
}

fn bad(t: ScimType, detail: impl Into<String>) -> ScimError {
    ScimError::new(400, Some(t), detail)
}

fn invalid_path(path: &str, why: &str) -> ScimError {
    bad(ScimType::InvalidPath, format!("{why}: {:?}", clip(path)))
}

fn read_only(name: &str) -> ScimError {
    bad(ScimType::Mutability, format!("{name} is read-only"))
}

fn read_only_target(t: &Target<'_>) -> ScimError {
    match t.sub.filter(|s| s.mutability == Mutability::ReadOnly) {
        Some(s) => bad(ScimType::Mutability, format!("{}.{} is read-only", t.attr.name, s.name)),
        None => read_only(t.attr.name),
    }
}

fn immutable(name: &str) -> ScimError {
    bad(ScimType::Mutability, format!("{name} is immutable: it can be set once, not changed or removed"))
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ENTERPRISE_USER, GROUP, USER, resource_type};
    use proptest::prelude::*;
    use serde_json::json;

    /// The profile of the tests written for Entra's and Okta's shapes (the widest).
    const E: &Profile = &Profile::ENTRA;
    const RFC: &Profile = &Profile::RFC;

    const MANAGER_ID: &str = "26118915-6090-4610-87e4-49d8ca9f808d";
    const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
    const MANDY: &str = "902c246b-6245-4190-8e05-00816be7344a";

    fn user() -> Value {
        json!({
            "schemas": [USER],
            "id": BABS,
            "externalId": "701984",
            "userName": "bjensen@example.com",
            "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [{"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}],
            "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "version": "W/\"3694e05e9dff590\""}
        })
    }

    fn enterprise_user() -> Value {
        let mut u = user();
        u["schemas"] = json!([USER, ENTERPRISE_USER]);
        u[ENTERPRISE_USER] = json!({
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": MANAGER_ID, "$ref": format!("../Users/{MANAGER_ID}"), "displayName": "John Smith"}
        });
        u
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [
                {"value": BABS, "$ref": format!("https://example.com/v2/Users/{BABS}"), "display": "Babs Jensen"},
                {"value": MANDY, "$ref": format!("https://example.com/v2/Users/{MANDY}"), "display": "Mandy Pepperidge"}
            ],
            "meta": {"resourceType": "Group"}
        })
    }

    /// Applies a full request body under a profile.
    fn run_body_as(p: &Profile, rt: &str, res: &mut Value, body: &Value) -> Result<Vec<String>, ScimError> {
        let ops = parse_request(body, p)?;
        apply(resource_type(rt).unwrap(), res, &ops, p)
    }

    fn run_as(p: &Profile, rt: &str, res: &mut Value, ops: Value) -> Result<Vec<String>, ScimError> {
        run_body_as(p, rt, res, &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops}))
    }

    fn run(rt: &str, res: &mut Value, ops: Value) -> Result<Vec<String>, ScimError> {
        run_as(E, rt, res, ops)
    }

    fn ok_as(p: &Profile, rt: &str, res: &mut Value, ops: Value) -> Vec<String> {
        run_as(p, rt, res, ops).unwrap_or_else(|e| panic!("{}", e.detail))
    }

    fn ok(rt: &str, res: &mut Value, ops: Value) -> Vec<String> {
        ok_as(E, rt, res, ops)
    }

    fn ok_body(rt: &str, res: &mut Value, body: &str) -> Vec<String> {
        ok_body_as(E, rt, res, body)
    }

    fn ok_body_as(p: &Profile, rt: &str, res: &mut Value, body: &str) -> Vec<String> {
        let body: Value = serde_json::from_str(body).unwrap();
        run_body_as(p, rt, res, &body).unwrap_or_else(|e| panic!("{}", e.detail))
    }

    /// Found by the `patch` fuzz harness: PATCH stored `""` where create and replace read
    /// no value, so `replace userName ""` left a user without a usable userName.
    #[test]
    fn an_empty_string_is_no_value_as_on_create() {
        let mut res = user();
        let before = res.clone();
        let e = run("User", &mut res, json!([{"op": "replace", "path": "userName", "value": ""}])).unwrap_err();
        assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidValue)), "{}", e.detail);
        assert_eq!(res, before);
        ok("User", &mut res, json!([{"op": "replace", "path": "displayName", "value": ""}]));
        assert!(res.get("displayName").is_none(), "{res}");
        ok("User", &mut res, json!([{"op": "add", "path": "name.givenName", "value": [""]}]));
        assert!(res["name"].get("givenName").is_none(), "{res}");
        ok("User", &mut res, json!([{"op": "add", "path": "emails", "value": [{"value": "", "type": "other"}]}]));
        assert!(!res["emails"].as_array().unwrap().iter().any(|e| e.get("value") == Some(&json!(""))), "{res}");
        let stored: Map<String, Value> = res
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !["id", "meta", "schemas"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(crate::resource::normalize(resource_type("User").unwrap(), &res).unwrap(), Value::Object(stored));
    }

    /// Runs a PATCH that must fail; checks the resource is byte-identical and returns the
    /// error type.
    fn fail(rt: &str, res: &Value, ops: Value) -> ScimType {
        fail_as(E, rt, res, ops)
    }

    fn fail_as(p: &Profile, rt: &str, res: &Value, ops: Value) -> ScimType {
        let mut copy = res.clone();
        let before = copy.to_string();
        let e = run_as(p, rt, &mut copy, ops).expect_err("the PATCH should fail");
        assert_eq!(copy.to_string(), before, "a failed PATCH must leave the resource as it was");
        assert_eq!(e.status_code(), 400, "{}", e.detail);
        e.scim_type.unwrap()
    }

    fn schemas_of(res: &Value) -> Vec<&str> {
        res["schemas"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
    }

    fn ext(attr: &str) -> String {
        format!("{ENTERPRISE_USER}:{attr}")
    }

    // --- parsing -------------------------------------------------------------------------

    #[test]
    fn parse_request_is_case_insensitive_and_tolerates_schemas() {
        let ops = parse_request(
            &json!({"operations": [
                {"op": "Add", "path": "emails", "value": []},
                {"OP": "replace", "value": {"active": false}},
                {"op": "REMOVE", "path": "  "},
                {"op": "remove", "path": null},
            ]}),
            E,
        )
        .unwrap();
        assert_eq!(
            ops.iter().map(|o| o.op).collect::<Vec<_>>(),
            [OpKind::Add, OpKind::Replace, OpKind::Remove, OpKind::Remove]
        );
        assert!(matches!(&ops[0].path, Some(PatchPath::Attribute { attr, filter: None }) if attr.name == "emails"));
        assert!(ops[1].path.is_none() && ops[2].path.is_none() && ops[3].path.is_none());
        assert_eq!(ops[1].value, Some(json!({"active": false})));
        let ops = parse_request(&json!({"schemas": ["urn:wrong"], "Operations": [{"op": "remove", "path": "x"}]}), E)
            .unwrap();
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn parse_request_rejects_malformed_bodies() {
        for (body, want) in [
            (json!([]), ScimType::InvalidSyntax),
            (json!({"schemas": [PATCH_OP_SCHEMA]}), ScimType::InvalidSyntax),
            (json!({"Operations": {"op": "add"}}), ScimType::InvalidSyntax),
            (json!({"Operations": []}), ScimType::InvalidSyntax),
            (json!({"Operations": ["add"]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"path": "title", "value": "x"}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": "delete", "path": "title"}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": 1, "path": "title"}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": "remove", "path": 7}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": "add", "path": "title"}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": "replace"}]}), ScimType::InvalidSyntax),
            (json!({"Operations": [{"op": "remove", "path": "a.b.c"}]}), ScimType::InvalidPath),
            (json!({"Operations": [{"op": "remove", "path": "emails[type xx \"w\"]"}]}), ScimType::InvalidFilter),
        ] {
            let e = parse_request(&body, E).expect_err(&body.to_string());
            assert_eq!(e.scim_type, Some(want), "{body}: {}", e.detail);
            assert_eq!(e.status_code(), 400);
        }
        let e = parse_request(&json!({"Operations": [{"op": "add", "path": "x", "value": 1}, {"op": "nope"}]}), E)
            .unwrap_err();
        assert!(e.detail.starts_with("operation 2:"), "{}", e.detail);
    }

    #[test]
    fn paths_parse_into_attribute_filter_and_sub() {
        let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
        let PatchPath::Attribute { attr, filter: Some(f) } = &p else { panic!("{p:?}") };
        assert_eq!((attr.uri.as_deref(), attr.name.as_str(), attr.sub.as_deref()), (None, "emails", Some("value")));
        assert_eq!(f.to_string(), r#"type eq "work""#);
        assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

        let p = PatchPath::parse(&format!("{ENTERPRISE_USER}:manager.value")).unwrap();
        let PatchPath::Attribute { attr, filter: None } = &p else { panic!("{p:?}") };
        assert_eq!(
            (attr.uri.as_deref(), attr.name.as_str(), attr.sub.as_deref()),
            (Some(ENTERPRISE_USER), "manager", Some("value"))
        );
        assert_eq!(p.to_string(), format!("{ENTERPRISE_USER}:manager.value"));

        assert_eq!(
            PatchPath::parse(&ENTERPRISE_USER.to_lowercase()).unwrap(),
            PatchPath::Schema(ENTERPRISE_USER.to_owned())
        );
        // A ']' inside a quoted value does not close the filter.
        let p = PatchPath::parse(r#"members[value eq "a]b"]"#).unwrap();
        let PatchPath::Attribute { filter: Some(f), .. } = &p else { panic!("{p:?}") };
        assert_eq!(f.to_string(), r#"value eq "a]b""#);

        for (bad_path, want) in [
            ("", ScimType::InvalidPath),
            ("1abc", ScimType::InvalidPath),
            ("name.givenName.x", ScimType::InvalidPath),
            (r#"emails.value[type eq "x"]"#, ScimType::InvalidPath),
            (r#"emails[type eq "x""#, ScimType::InvalidPath),
            (r#"emails[type eq "x"]value"#, ScimType::InvalidPath),
            (r#"emails[type eq "x"].1"#, ScimType::InvalidPath),
            (":userName", ScimType::InvalidPath),
            ("urn:x:", ScimType::InvalidPath),
            ("emails[type eq]", ScimType::InvalidFilter),
        ] {
            let e = PatchPath::parse(bad_path).expect_err(bad_path);
            assert_eq!(e.scim_type, Some(want), "{bad_path:?}: {}", e.detail);
        }
        assert!(PatchPath::parse(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    // --- Entra ID, bodies verbatim from scim-interop.md -----------------------------------

    #[test]
    fn entra_replace_active_with_a_string_boolean() {
        let mut u = user();
        let changed = ok_body(
            "User",
            &mut u,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#,
        );
        assert_eq!(u["active"], json!(false));
        assert_eq!(changed, ["active"]);
    }

    const ENTRA_UPDATE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
 {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
 {"op":"Replace","path":"addresses[type eq \"work\"].formatted","value":"18/2111"},
 {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Retail"}]}"#;

    #[test]
    fn entra_update_replaces_matches_and_adds_where_nothing_matches() {
        let mut u = user();
        let changed = ok_body("User", &mut u, ENTRA_UPDATE);
        // The work email existed: its value is replaced in place, the rest kept.
        assert_eq!(
            u["emails"],
            json!([
                {"value": "updatedEmail@microsoft.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ])
        );
        assert_eq!(
            u["name"],
            json!({"formatted": "Ms. Barbara J Jensen, III", "familyName": "updatedFamilyName", "givenName": "Barbara"})
        );
        // No work address: one is added, built from the filter.
        assert_eq!(
            u["addresses"],
            json!([
                {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"},
                {"type": "work", "formatted": "18/2111"}
            ])
        );
        assert_eq!(u[ENTERPRISE_USER], json!({"department": "Retail"}));
        assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
        assert_eq!(changed, ["addresses", "emails", "name", &ext("department")]);
    }

    #[test]
    fn entra_replace_of_a_missing_work_email_adds_it() {
        let mut u = user();
        u["emails"] = json!([{"value": "babs@jensen.org", "type": "home"}]);
        ok_body("User", &mut u, ENTRA_UPDATE);
        assert_eq!(
            u["emails"],
            json!([{"value": "babs@jensen.org", "type": "home"}, {"type": "work", "value": "updatedEmail@microsoft.com"}])
        );
        // Without any emails at all.
        let mut u = user();
        u.as_object_mut().unwrap().remove("emails");
        ok_body("User", &mut u, ENTRA_UPDATE);
        assert_eq!(u["emails"], json!([{"type": "work", "value": "updatedEmail@microsoft.com"}]));
    }

    #[test]
    fn entra_no_path_replace_with_dotted_and_urn_keys() {
        let mut u = user();
        let changed = ok_body(
            "User",
            &mut u,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}"#,
        );
        assert_eq!(u["displayName"], "Bjfe");
        assert_eq!(
            u["name"],
            json!({"formatted": "Ms. Barbara J Jensen, III", "givenName": "Kkom", "familyName": "Unua"})
        );
        assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "Aklq"}));
        assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
        assert_eq!(changed, ["displayName", "name", &ext("employeeNumber")]);
    }

    #[test]
    fn entra_manager_as_a_bare_string() {
        let mut u = user();
        let changed = ok_body(
            "User",
            &mut u,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"}]}"#,
        );
        assert_eq!(u[ENTERPRISE_USER], json!({"manager": {"value": "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"}}));
        assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
        assert_eq!(changed, [ext("manager")]);

        // A new manager replaces the old one whole: the old displayName and $ref go.
        let mut u = enterprise_user();
        ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": "m2"}]));
        assert_eq!(u[ENTERPRISE_USER]["manager"], json!({"value": "m2"}));
        // The same manager again merges: what was stored stays.
        let mut u = enterprise_user();
        let before = u.clone();
        let changed = ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": {"value": MANAGER_ID}}]));
        assert_eq!(u, before);
        assert!(changed.is_empty());
    }

    #[test]
    fn entra_adds_members_dropping_null_sub_attributes() {
        let mut g = group();
        let changed = ok_body(
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Add","path":"members","value":[{"$ref":null,"value":"f648f8d5ea4e4cd38e9c"}]}]}"#,
        );
        let members = g["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[2], json!({"value": "f648f8d5ea4e4cd38e9c"}));
        assert_eq!(changed, ["members"]);
        // Entra retries: the same body again adds no second copy.
        let changed = ok(
            "Group",
            &mut g,
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]}]),
        );
        assert_eq!(g["members"].as_array().unwrap().len(), 3);
        assert!(changed.is_empty());
    }

    #[test]
    fn entra_remove_with_a_value_array_removes_only_those_members() {
        let mut g = group();
        g["members"].as_array_mut().unwrap().push(json!({"value": "u1091"}));
        let changed = ok_body(
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"Remove","path":"members","value":[{"value":"u1091"}]}]}"#,
        );
        assert_eq!(g["members"], group()["members"]);
        assert_eq!(changed, ["members"]);
        // Values match case-insensitively (members.value is not caseExact), and only the
        // listed ones go even when several are listed.
        let mut g = group();
        ok(
            "Group",
            &mut g,
            json!([{"op": "remove", "path": "members", "value": [{"value": BABS.to_uppercase()}, {"value": "nobody"}]}]),
        );
        assert_eq!(g["members"].as_array().unwrap().len(), 1);
        assert_eq!(g["members"][0]["value"], MANDY);
        // Listing every member removes them all, and the group survives.
        ok("Group", &mut g, json!([{"op": "remove", "path": "members", "value": [{"value": MANDY}]}]));
        assert!(g.get("members").is_none());
        assert_eq!(g["displayName"], "Tour Guides");
    }

    #[test]
    fn entra_remove_member_by_value_filter() {
        let mut g = group();
        g["members"].as_array_mut().unwrap().push(json!({"value": "7f4bc1a3-285e-48ae-8202-5accb43efb0e"}));
        let changed = ok_body(
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"remove","path":"members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]}"#,
        );
        assert_eq!(g["members"], group()["members"]);
        assert_eq!(changed, ["members"]);
    }

    #[test]
    fn entra_short_manager_paths() {
        // A filter that does not match the manager removes nothing.
        let mut u = enterprise_user();
        let changed = ok("User", &mut u, json!([{"op": "remove", "path": "manager[value eq \"someone-else\"]"}]));
        assert!(changed.is_empty());
        assert_eq!(u, enterprise_user());
        // One that matches removes it.
        ok("User", &mut u, json!([{"op": "remove", "path": format!("manager[value eq \"{MANAGER_ID}\"]")}]));
        assert!(u[ENTERPRISE_USER].get("manager").is_none());
        assert_eq!(u[ENTERPRISE_USER]["department"], "Tour Operations");
        // The short path `manager`; the last extension attribute going takes the
        // extension and its URN with it.
        let mut u = enterprise_user();
        let changed = ok(
            "User",
            &mut u,
            json!([{"op": "Remove", "path": "manager"}, {"op": "remove", "path": "department"}, {"op": "remove", "path": "employeeNumber"}]),
        );
        assert!(u.get(ENTERPRISE_USER).is_none());
        assert_eq!(schemas_of(&u), [USER]);
        assert_eq!(changed, [ext("department"), ext("employeeNumber"), ext("manager")]);
    }

    #[test]
    fn entra_roles_with_string_booleans() {
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": "roles", "value": [
                {"primary": "False", "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}
            ]}]),
        );
        assert_eq!(
            u["roles"],
            json!([{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}])
        );
    }

    // --- Okta, bodies verbatim from scim-interop.md ---------------------------------------

    #[test]
    fn okta_no_path_replace_active() {
        let mut u = user();
        let changed = ok_body_as(
            &Profile::OKTA,
            "User",
            &mut u,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#,
        );
        assert_eq!(u["active"], json!(false));
        assert_eq!(changed, ["active"]);
    }

    #[test]
    fn okta_no_path_replace_carrying_the_own_id() {
        let mut g = group();
        g["id"] = json!("abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        let changed = ok_body_as(
            &Profile::OKTA,
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"replace","value":{"id":"abf4dd94-a4c0-4f67-89c9-76b03340cb9b","displayName":"Test SCIMv2"}}]}"#,
        );
        assert_eq!(g["displayName"], "Test SCIMv2");
        assert_eq!(g["id"], "abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        assert_eq!(changed, ["displayName"]);
        // Another id is a mutability error, and nothing is applied.
        let t = fail_as(
            &Profile::OKTA,
            "Group",
            &g,
            json!([{"op": "replace", "value": {"id": "other", "displayName": "Changed"}}]),
        );
        assert_eq!(t, ScimType::Mutability);
    }

    #[test]
    fn okta_remove_then_add_members() {
        let mut g = group();
        g["members"].as_array_mut().unwrap().push(json!({"value": "89bb1940-b905-4575-9e7f-6f887cfb368e"}));
        let changed = ok_body_as(
            &Profile::OKTA,
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
 {"op":"remove","path":"members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
 {"op":"add","path":"members","value":[{"value":"23a35c27-23d3-4c03-b4c5-6443c09e7173","display":"test.user@okta.local"}]}]}"#,
        );
        let values: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
        assert_eq!(values, [BABS, MANDY, "23a35c27-23d3-4c03-b4c5-6443c09e7173"]);
        assert_eq!(g["members"][2]["display"], "test.user@okta.local");
        assert_eq!(changed, ["members"]);
    }

    #[test]
    fn okta_replace_members_with_nothing_empties_the_group() {
        let mut g = group();
        let changed = ok_body_as(
            &Profile::OKTA,
            "Group",
            &mut g,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[]}]}"#,
        );
        assert!(g.get("members").is_none());
        assert_eq!(changed, ["members"]);
    }

    #[test]
    fn okta_password_change_is_stored_as_given() {
        let mut u = user();
        let changed =
            ok_as(&Profile::OKTA, "User", &mut u, json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}]));
        assert_eq!(u["password"], "t1meMa$heen");
        assert_eq!(changed, ["password"]);
    }

    // --- RFC 7644 §3.5.2 examples ----------------------------------------------------------

    #[test]
    fn rfc_add_member() {
        let mut g = group();
        ok_as(
            RFC,
            "Group",
            &mut g,
            json!([{"op": "add", "path": "members", "value": [{
                "display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223...", "value": "2819c223-7f76-453a-919d-413861904646x"
            }]}]),
        );
        assert_eq!(g["members"].as_array().unwrap().len(), 3);
        assert_eq!(g["members"][2]["$ref"], "https://example.com/v2/Users/2819c223...");
    }

    #[test]
    fn rfc_add_without_path() {
        let mut u = user();
        let changed = ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "add", "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "barbara@example.org", "type": "other"}],
                "nickName": "Babs"
            }}]),
        );
        // The home email was there already: only the new one is appended.
        assert_eq!(
            u["emails"],
            json!([
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"},
                {"value": "barbara@example.org", "type": "other"}
            ])
        );
        assert_eq!(u["nickName"], "Babs");
        assert_eq!(changed, ["emails", "nickName"]);
    }

    #[test]
    fn rfc_remove_all_members() {
        let mut g = group();
        ok_as(RFC, "Group", &mut g, json!([{"op": "remove", "path": "members"}]));
        assert!(g.get("members").is_none());
        assert_eq!(g["displayName"], "Tour Guides");
    }

    #[test]
    fn rfc_remove_by_value_filters() {
        let mut g = group();
        ok_as(RFC, "Group", &mut g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]));
        assert_eq!(g["members"].as_array().unwrap().len(), 1);
        assert_eq!(g["members"][0]["value"], MANDY);

        let mut u = user();
        ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"EXAMPLE.com\"]"}]),
        );
        assert_eq!(u["emails"], json!([{"value": "babs@jensen.org", "type": "home"}]));
    }

    #[test]
    fn rfc_replace_all_members_by_remove_then_add() {
        let mut g = group();
        ok_as(
            RFC,
            "Group",
            &mut g,
            json!([
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}, {"display": "Tom", "value": "c2"}]}
            ]),
        );
        assert_eq!(
            g["members"],
            json!([{"display": "James Smith", "value": "08e1d05d"}, {"display": "Tom", "value": "c2"}])
        );
    }

    #[test]
    fn rfc_replace_members() {
        let mut g = group();
        ok_as(
            RFC,
            "Group",
            &mut g,
            json!([{"op": "replace", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}]),
        );
        assert_eq!(g["members"], json!([{"display": "James Smith", "value": "08e1d05d"}]));
    }

    #[test]
    fn rfc_replace_a_value_by_filter() {
        let mut u = user();
        u["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood"}));
        ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {
                "type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood", "region": "CA",
                "postalCode": "91608", "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": true
            }}]),
        );
        assert_eq!(u["addresses"][0], user()["addresses"][0]);
        assert_eq!(u["addresses"][1]["streetAddress"], "911 Universal City Plaza");
        assert_eq!(u["addresses"][1]["primary"], true);
        assert_eq!(u["addresses"][1]["postalCode"], "91608");
        assert_eq!(u["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn rfc_replace_a_sub_attribute_by_filter() {
        let mut u = user();
        ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "replace", "path": "addresses[type eq \"home\"].streetAddress", "value": "1010 Broadway Ave"}]),
        );
        assert_eq!(
            u["addresses"],
            json!([{"type": "home", "streetAddress": "1010 Broadway Ave", "locality": "Hollywood"}])
        );
    }

    #[test]
    fn rfc_replace_without_path() {
        let mut u = user();
        ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "replace", "value": {
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "other"}],
                "nickName": "Babs"
            }}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "other"}])
        );
        assert_eq!(u["nickName"], "Babs");
    }

    // --- semantics -------------------------------------------------------------------------

    #[test]
    fn add_appends_bare_values_and_skips_duplicates() {
        let mut u = user();
        let changed = ok(
            "User",
            &mut u,
            json!([
                {"op": "add", "path": "emails", "value": {"value": "bjensen@example.com", "type": "work", "primary": true}},
                {"op": "add", "path": "emails", "value": [{"value": "x@example.com"}, {"value": "x@example.com"}]}
            ]),
        );
        assert_eq!(u["emails"].as_array().unwrap().len(), 3);
        assert_eq!(u["emails"][2], json!({"value": "x@example.com"}));
        assert_eq!(changed, ["emails"]);
        // A bare string for a complex multi-valued attribute is its value.
        ok("User", &mut u, json!([{"op": "add", "path": "phoneNumbers", "value": "555-555-5555"}]));
        assert_eq!(u["phoneNumbers"], json!([{"value": "555-555-5555"}]));
    }

    #[test]
    fn complex_values_merge_and_null_removes_on_replace() {
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs", "formatted": null, "middleName": "Jane"}}]),
        );
        assert_eq!(u["name"], json!({"familyName": "Jensen", "givenName": "Babs", "middleName": "Jane"}));
        // add ignores nulls.
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": "name", "value": {"familyName": null, "honorificSuffix": "III"}}]),
        );
        assert_eq!(
            u["name"],
            json!({"familyName": "Jensen", "givenName": "Babs", "middleName": "Jane", "honorificSuffix": "III"})
        );
    }

    #[test]
    fn null_means_absent() {
        let mut u = user();
        let changed = ok("User", &mut u, json!([{"op": "add", "value": {"title": null, "nickName": "B"}}]));
        assert!(u.get("title").is_none());
        assert_eq!(changed, ["nickName"]);
        ok("User", &mut u, json!([{"op": "replace", "path": "nickName", "value": null}]));
        assert!(u.get("nickName").is_none());
        ok("User", &mut u, json!([{"op": "replace", "value": {"displayName": null}}]));
        assert!(u.get("displayName").is_none());
        ok("User", &mut u, json!([{"op": "replace", "path": "name.formatted", "value": null}]));
        assert!(u["name"].get("formatted").is_none());
        ok("User", &mut u, json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": null}]));
        assert_eq!(u["emails"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn single_element_arrays_for_single_values() {
        let mut u = user();
        ok("User", &mut u, json!([{"op": "replace", "path": "displayName", "value": ["Babs"]}]));
        assert_eq!(u["displayName"], "Babs");
        assert_eq!(
            fail("User", &u, json!([{"op": "replace", "path": "displayName", "value": ["a", "b"]}])),
            ScimType::InvalidValue
        );
    }

    #[test]
    fn add_with_a_filter_merges_into_matches() {
        let mut u = user();
        ok("User", &mut u, json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]));
        assert_eq!(u["emails"][1], json!({"value": "babs@jensen.org", "type": "home", "display": "Home"}));
        // No match: the value is appended as given.
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": "emails[type eq \"other\"]", "value": {"value": "o@example.com", "type": "other"}}]),
        );
        assert_eq!(u["emails"][2], json!({"value": "o@example.com", "type": "other"}));
    }

    #[test]
    fn sub_attribute_without_filter_on_a_multi_valued_attribute() {
        let mut u = user();
        ok("User", &mut u, json!([{"op": "remove", "path": "emails.type"}]));
        assert_eq!(
            u["emails"],
            json!([{"value": "bjensen@example.com", "primary": true}, {"value": "babs@jensen.org"}])
        );
        ok("User", &mut u, json!([{"op": "replace", "path": "emails.display", "value": "E"}]));
        assert!(u["emails"].as_array().unwrap().iter().all(|e| e["display"] == "E"));
        ok("User", &mut u, json!([{"op": "add", "path": "ims.value", "value": "babs-im"}]));
        assert_eq!(u["ims"], json!([{"value": "babs-im"}]));
    }

    #[test]
    fn value_filters_evaluate_operators_and_case() {
        let cases = [
            (r#"emails[value co "JENSEN"]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
            (r#"emails[value sw "babs"]"#, vec!["babs@jensen.org"]),
            (r#"emails[value ew ".ORG"]"#, vec!["babs@jensen.org"]),
            (r#"emails[type ne "work"]"#, vec!["babs@jensen.org"]),
            (r#"emails[primary pr]"#, vec!["bjensen@example.com"]),
            (r#"emails[primary eq true]"#, vec!["bjensen@example.com"]),
            (r#"emails[primary eq "True"]"#, vec!["bjensen@example.com"]),
            (r#"emails[not (primary eq true)]"#, vec!["babs@jensen.org"]),
            (r#"emails[type eq "home" or type eq "work"]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
            (r#"emails[value gt "bb"]"#, vec!["bjensen@example.com"]),
            (r#"emails[display eq null]"#, vec!["bjensen@example.com", "babs@jensen.org"]),
            (r#"emails[type eq "WORK" and primary eq false]"#, vec![]),
        ];
        for (path, removed) in cases {
            let mut u = user();
            ok("User", &mut u, json!([{"op": "remove", "path": path}]));
            let left: Vec<&str> = u
                .get("emails")
                .and_then(Value::as_array)
                .map_or(vec![], |a| a.iter().map(|e| e["value"].as_str().unwrap()).collect());
            let expect: Vec<&str> =
                ["bjensen@example.com", "babs@jensen.org"].into_iter().filter(|v| !removed.contains(v)).collect();
            assert_eq!(left, expect, "{path}");
        }
    }

    #[test]
    fn one_primary_at_most() {
        // A new primary value demotes the old one.
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "primary": true}]}]),
        );
        let prim: Vec<&Value> = u["emails"].as_array().unwrap().iter().map(|e| &e["primary"]).collect();
        assert_eq!(prim, [&json!(false), &Value::Null, &json!(true)]);
        // Setting primary on an existing value through a filter.
        let mut u = user();
        ok("User", &mut u, json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "true"}]));
        assert_eq!(u["emails"][0]["primary"], false);
        assert_eq!(u["emails"][1]["primary"], true);
        // Two primaries in one value: the last wins.
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "replace", "path": "emails", "value": [
                {"value": "a@example.com", "primary": true}, {"value": "b@example.com", "primary": true}
            ]}]),
        );
        assert_eq!(
            u["emails"],
            json!([{"value": "a@example.com", "primary": false}, {"value": "b@example.com", "primary": true}])
        );
    }

    #[test]
    fn a_retried_primary_write_settles_on_the_same_value() {
        // Found by `operations_are_idempotent`: one operation making two values primary.
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": "emails", "value": {"value": "b@x.org", "type": "home", "primary": "True"}}]),
        );
        let op = json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]);
        let primaries = |u: &Value| -> Vec<String> {
            u["emails"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["primary"] == true)
                .map(|e| e["value"].to_string())
                .collect()
        };
        ok("User", &mut u, op.clone());
        // Both home values were written primary; the last of them wins.
        assert_eq!(primaries(&u), ["\"b@x.org\""]);
        let once = u.clone();
        let changed = ok("User", &mut u, op);
        assert_eq!(u, once);
        assert!(changed.is_empty());
    }

    #[test]
    fn extension_lifecycle_keeps_schemas_in_step() {
        let mut u = user();
        ok(
            "User",
            &mut u,
            json!([{"op": "add", "path": ENTERPRISE_USER, "value": {
                "schemas": [ENTERPRISE_USER], "employeeNumber": "42", "costCenter": "CC"
            }}]),
        );
        assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "42", "costCenter": "CC"}));
        assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
        // Replace on the extension replaces the attributes given, leaves the others.
        let changed = ok(
            "User",
            &mut u,
            json!([{"op": "replace", "path": ENTERPRISE_USER, "value": {"schemas": [ENTERPRISE_USER], "costCenter": "DD"}}]),
        );
        assert_eq!(u[ENTERPRISE_USER], json!({"employeeNumber": "42", "costCenter": "DD"}));
        assert_eq!(changed, [ext("costCenter")]);
        // A no-path value keyed by the URN.
        ok("User", &mut u, json!([{"op": "add", "value": {ENTERPRISE_USER: {"division": "Div"}}}]));
        assert_eq!(u[ENTERPRISE_USER]["division"], "Div");
        // Removing the whole extension.
        let changed = ok("User", &mut u, json!([{"op": "remove", "path": ENTERPRISE_USER}]));
        assert!(u.get(ENTERPRISE_USER).is_none());
        assert_eq!(schemas_of(&u), [USER]);
        assert_eq!(changed, [ext("costCenter"), ext("division"), ext("employeeNumber")]);
        // Removing an extension attribute that is not there changes nothing.
        let changed = ok("User", &mut u, json!([{"op": "remove", "path": ext("department")}]));
        assert!(changed.is_empty());
        assert_eq!(u, {
            let mut x = user();
            x["schemas"] = json!([USER]);
            x
        });
        // A resource without `schemas` gets one when an extension appears.
        let mut bare = json!({"id": "1", "userName": "x"});
        ok("User", &mut bare, json!([{"op": "add", "path": "department", "value": "D"}]));
        assert_eq!(bare["schemas"], json!([USER, ENTERPRISE_USER]));
    }

    #[test]
    fn names_and_ops_are_case_insensitive_and_stored_canonically() {
        let mut u = user();
        let changed = ok(
            "User",
            &mut u,
            json!([
                {"op": "REPLACE", "path": "USERNAME", "value": "babs"},
                {"op": "Add", "path": "Name.GivenName", "value": "B"},
                {"op": "replace", "path": "EMAILS[TYPE eq \"work\"].VALUE", "value": "w@example.com"},
                {"op": "add", "path": ENTERPRISE_USER.to_uppercase() + ":DEPARTMENT", "value": "D"},
                {"op": "add", "value": {"NICKNAME": "nick", "PhoneNumbers": [{"VALUE": "555", "Type": "work"}]}}
            ]),
        );
        assert_eq!(u["userName"], "babs");
        assert_eq!(u["name"]["givenName"], "B");
        assert_eq!(u["emails"][0]["value"], "w@example.com");
        assert_eq!(u[ENTERPRISE_USER], json!({"department": "D"}));
        assert_eq!(u["nickName"], "nick");
        assert_eq!(u["phoneNumbers"], json!([{"value": "555", "type": "work"}]));
        assert_eq!(schemas_of(&u), [USER, ENTERPRISE_USER]);
        for k in ["USERNAME", "NICKNAME", "PhoneNumbers"] {
            assert!(u.get(k).is_none(), "{k}");
        }
        assert_eq!(changed, ["emails", "name", "nickName", "phoneNumbers", &ext("department"), "userName"]);
        // A stored key in another casing is found and renamed.
        let mut odd = json!({"id": "1", "username": "x", "schemas": [USER]});
        ok("User", &mut odd, json!([{"op": "replace", "path": "userName", "value": "y"}]));
        assert_eq!(odd, json!({"id": "1", "userName": "y", "schemas": [USER]}));
    }

    #[test]
    fn a_failing_operation_undoes_the_earlier_ones() {
        let u = enterprise_user();
        let mut copy = u.clone();
        let e = run(
            "User",
            &mut copy,
            json!([
                {"op": "replace", "path": "displayName", "value": "changed"},
                {"op": "remove", "path": "department"},
                {"op": "replace", "path": "active", "value": "yes"}
            ]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.starts_with("operation 3:"), "{}", e.detail);
        assert_eq!(copy.to_string(), u.to_string());
    }

    #[test]
    fn errors_carry_the_right_scim_type() {
        let u = enterprise_user();
        let g = group();
        for (rt, res, ops, want) in [
            ("User", &u, json!([{"op": "add", "path": "bogus", "value": "x"}]), ScimType::InvalidPath),
            ("User", &u, json!([{"op": "remove", "path": "name.bogus"}]), ScimType::InvalidPath),
            ("User", &u, json!([{"op": "remove", "path": "bogus[value eq \"x\"]"}]), ScimType::InvalidPath),
            (
                "User",
                &u,
                json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": "y"}]),
                ScimType::InvalidPath,
            ),
            ("User", &u, json!([{"op": "replace", "value": {"bogus": 1}}]), ScimType::InvalidPath),
            (
                "User",
                &u,
                json!([{"op": "add", "path": format!("{GROUP}:members"), "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (
                "Group",
                &g,
                json!([{"op": "add", "path": ENTERPRISE_USER, "value": {"department": "x"}}]),
                ScimType::InvalidPath,
            ),
            ("Group", &g, json!([{"op": "add", "path": "department", "value": "x"}]), ScimType::InvalidPath),
            ("User", &u, json!([{"op": "remove", "path": USER}]), ScimType::InvalidPath),
            ("User", &u, json!([{"op": "remove", "path": "emails[bogus eq \"x\"]"}]), ScimType::InvalidFilter),
            ("User", &u, json!([{"op": "remove", "path": "emails[primary co \"t\"]"}]), ScimType::InvalidFilter),
            (
                "User",
                &u,
                json!([{"op": "remove", "path": "emails[type eq \"w\" and emails[type pr]]"}]),
                ScimType::InvalidFilter,
            ),
            (
                "User",
                &u,
                json!([{"op": "replace", "path": "meta", "value": {"resourceType": "Group"}}]),
                ScimType::Mutability,
            ),
            ("User", &u, json!([{"op": "remove", "path": "meta.created"}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "replace", "path": "id", "value": "other"}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "remove", "path": "id"}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "add", "path": "groups", "value": [{"value": "g1"}]}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "add", "path": "schemas", "value": [ENTERPRISE_USER]}]), ScimType::Mutability),
            (
                "User",
                &u,
                json!([{"op": "replace", "path": "manager.displayName", "value": "Boss"}]),
                ScimType::Mutability,
            ),
            ("User", &u, json!([{"op": "replace", "path": "active", "value": "yes"}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "replace", "path": "active", "value": 1}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "replace", "path": "userName", "value": {"a": 1}}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "replace", "path": "name", "value": "Babs"}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "add", "path": "emails", "value": [{"bogus": 1}]}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "add", "path": "emails", "value": [[{"value": "x"}]]}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "add", "path": ENTERPRISE_USER, "value": "x"}]), ScimType::InvalidValue),
            ("User", &u, json!([{"op": "remove", "path": "userName"}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "replace", "value": {"userName": null}}]), ScimType::InvalidValue),
            ("Group", &g, json!([{"op": "remove", "path": "displayName"}]), ScimType::Mutability),
            ("User", &u, json!([{"op": "remove"}]), ScimType::NoTarget),
            (
                "User",
                &u,
                json!([{"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "v"}]),
                ScimType::NoTarget,
            ),
            ("User", &u, json!([{"op": "add", "value": "x"}]), ScimType::InvalidSyntax),
            ("User", &u, json!([{"op": "replace", "value": [{"userName": "x"}]}]), ScimType::InvalidSyntax),
        ] {
            assert_eq!(fail(rt, res, ops.clone()), want, "{ops}");
        }
    }

    #[test]
    fn read_only_writes_that_change_nothing_are_accepted() {
        let mut u = user();
        let before = u.clone();
        let changed = ok(
            "User",
            &mut u,
            json!([
                {"op": "replace", "value": {"id": BABS, "groups": [], "schemas": ["urn:whatever"], "meta": {"resourceType": "User"}}},
                {"op": "replace", "path": "id", "value": BABS}
            ]),
        );
        assert!(changed.is_empty());
        assert_eq!(u, before);
        // Read-only parts of a writable value are ignored, not stored.
        let mut u = user();
        ok("User", &mut u, json!([{"op": "add", "path": "manager", "value": {"value": "m", "displayName": "Boss"}}]));
        assert_eq!(u[ENTERPRISE_USER]["manager"], json!({"value": "m"}));
    }

    #[test]
    fn immutable_member_parts_are_set_once() {
        let g = group();
        assert_eq!(
            fail(
                "Group",
                &g,
                json!([{"op": "replace", "path": format!("members[value eq \"{BABS}\"].display"), "value": "Other"}])
            ),
            ScimType::Mutability
        );
        assert_eq!(
            fail("Group", &g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"].value")}])),
            ScimType::Mutability
        );
        assert_eq!(
            fail(
                "Group",
                &g,
                json!([{"op": "replace", "path": format!("members[value eq \"{BABS}\"]"), "value": {"value": "someone-else"}}])
            ),
            ScimType::Mutability
        );
        // Unassigned, `type` may be set on every member; once set, not changed.
        let mut typed = group();
        ok("Group", &mut typed, json!([{"op": "replace", "path": "members.type", "value": "User"}]));
        assert!(typed["members"].as_array().unwrap().iter().all(|m| m["type"] == "User"));
        assert_eq!(
            fail("Group", &typed, json!([{"op": "replace", "path": "members.type", "value": "Group"}])),
            ScimType::Mutability
        );
        // The same value again is no change; an unassigned part may be set.
        let mut g = group();
        g["members"].as_array_mut().unwrap().push(json!({"value": "u3"}));
        ok(
            "Group",
            &mut g,
            json!([
                {"op": "replace", "path": format!("members[value eq \"{BABS}\"].display"), "value": "Babs Jensen"},
                {"op": "add", "path": "members[value eq \"u3\"].display", "value": "User Three"}
            ]),
        );
        assert_eq!(g["members"][0], group()["members"][0]);
        assert_eq!(g["members"][2], json!({"value": "u3", "display": "User Three"}));
        // Whole members still come and go.
        ok(
            "Group",
            &mut g,
            json!([{"op": "remove", "path": "members[value eq \"u3\"]"}, {"op": "add", "path": "members", "value": {"value": "u4", "type": "User"}}]),
        );
        assert_eq!(g["members"][2], json!({"value": "u4", "type": "User"}));
    }

    #[test]
    fn removing_what_is_absent_succeeds_and_changes_nothing() {
        let mut u = user();
        let before = u.to_string();
        for path in [
            "nickName",
            "emails[type eq \"other\"]",
            "phoneNumbers",
            "phoneNumbers[type eq \"work\"].value",
            "name.middleName",
            "x509Certificates.value",
            "manager",
            ENTERPRISE_USER,
        ] {
            let changed = ok("User", &mut u, json!([{"op": "remove", "path": path}]));
            assert!(changed.is_empty(), "{path}");
            assert_eq!(u.to_string(), before, "{path}");
        }
    }

    // --- RFC 7644's SHALLs under `generic`, and the profiles' departures ------------------

    const PROFILES: [&Profile; 3] = [RFC, &Profile::OKTA, E];

    /// The three cases where fedkey used to depart from a SHALL for every client.
    #[test]
    fn generic_keeps_the_three_shalls() {
        // §3.5.2.1: adding a member the group has changes nothing (the stored member
        // carries `$ref` and `display`, the request only `value`), under every profile.
        for p in PROFILES {
            let mut g = group();
            let before = g.clone();
            let changed =
                ok_as(p, "Group", &mut g, json!([{"op": "add", "path": "members", "value": [{"value": BABS}]}]));
            assert_eq!((changed, &g), (vec![], &before), "{}", p.name);
        }
        // §3.5.2.3: a replace whose value filter matches nothing is 400 noTarget…
        let fax = json!([{"op": "replace", "path": "emails[type eq \"fax\"].value", "value": "+1 555"}]);
        assert_eq!(fail_as(RFC, "User", &user(), fax.clone()), ScimType::NoTarget);
        assert_eq!(fail_as(&Profile::OKTA, "User", &user(), fax.clone()), ScimType::NoTarget);
        // …with or without a sub-attribute, and on a single complex attribute too.
        let whole =
            json!([{"op": "replace", "path": "emails[type eq \"fax\"]", "value": {"value": "f@x", "type": "fax"}}]);
        assert_eq!(fail_as(RFC, "User", &user(), whole), ScimType::NoTarget);
        let boss =
            json!([{"op": "replace", "path": format!("{}[value eq \"nobody\"].value", ext("manager")), "value": "x"}]);
        assert_eq!(fail_as(RFC, "User", &enterprise_user(), boss), ScimType::NoTarget);
        // A filter that matches is still replaced, under the RFC.
        let mut u = user();
        ok_as(
            RFC,
            "User",
            &mut u,
            json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "b@j.org"}]),
        );
        assert_eq!(u["emails"][1]["value"], "b@j.org");
        // Under Entra's profile the unmatched replace adds the value the filter describes.
        let mut u = user();
        assert_eq!(ok_as(E, "User", &mut u, fax), ["emails"]);
        assert_eq!(u["emails"][2], json!({"type": "fax", "value": "+1 555"}));
        // §3.5.2.2: removing a required attribute is 400 mutability, under every profile.
        for p in PROFILES {
            assert_eq!(
                fail_as(p, "User", &user(), json!([{"op": "remove", "path": "userName"}])),
                ScimType::Mutability
            );
            assert_eq!(
                fail_as(p, "Group", &group(), json!([{"op": "remove", "path": "displayName"}])),
                ScimType::Mutability
            );
        }
    }

    /// §3.5.2: a PATCH that changes nothing reports no change (so no write, no new
    /// version): an identical add, a replace with the same value, a remove of what is
    /// absent without a filter.
    #[test]
    fn no_op_operations_change_nothing_under_every_profile() {
        let cases: Vec<(&str, Value, Value)> = vec![
            ("Group", group(), json!([{"op": "add", "path": "members", "value": [{"value": MANDY}, {"value": BABS}]}])),
            (
                "Group",
                group(),
                json!([{"op": "add", "path": "members", "value": [{"value": BABS, "display": "Babs Jensen"}]}]),
            ),
            ("Group", group(), json!([{"op": "replace", "path": "displayName", "value": "Tour Guides"}])),
            (
                "User",
                user(),
                json!([{"op": "add", "path": "emails", "value": [{"value": "BJensen@example.com", "type": "work"}]}]),
            ),
            (
                "User",
                user(),
                json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]}]),
            ),
            ("User", user(), json!([{"op": "replace", "path": "active", "value": true}])),
            ("User", user(), json!([{"op": "replace", "path": "name.givenName", "value": "Barbara"}])),
            (
                "User",
                user(),
                json!([{"op": "replace", "value": {"displayName": "Babs Jensen", "name": {"familyName": "Jensen"}}}]),
            ),
            ("User", user(), json!([{"op": "replace", "path": "emails", "value": user()["emails"].clone()}])),
            ("User", user(), json!([{"op": "remove", "path": "title"}])),
            ("User", user(), json!([{"op": "remove", "path": "phoneNumbers"}])),
            ("User", user(), json!([{"op": "remove", "path": "name.middleName"}])),
            ("User", user(), json!([{"op": "remove", "path": ext("department")}])),
            ("User", enterprise_user(), json!([{"op": "add", "path": ext("manager"), "value": {"value": MANAGER_ID}}])),
        ];
        for p in PROFILES {
            for (rt, start, ops) in &cases {
                let mut res = start.clone();
                let changed = ok_as(p, rt, &mut res, ops.clone());
                assert!(changed.is_empty(), "{} {ops}: {changed:?}", p.name);
                assert_eq!(&res, start, "{} {ops}", p.name);
            }
        }
        // The same operations on a resource without those values do change it.
        let mut g = group();
        g["members"] = json!([{"value": BABS}]);
        assert_eq!(ok_as(RFC, "Group", &mut g, cases[0].2.clone()), ["members"]);
        assert_eq!(g["members"].as_array().unwrap().len(), 2);
    }

    /// Each departure: refused under `generic` and `okta` with the RFC's scimType, taken
    /// under `entra`.
    #[test]
    fn each_departure_is_taken_only_where_the_profile_allows_it() {
        let member_remove = json!([{"op": "remove", "path": "members", "value": [{"value": BABS}]}]);
        let cases: Vec<(&str, Value, Value, ScimType)> = vec![
            // Capitalised ops.
            ("User", user(), json!([{"op": "Replace", "path": "displayName", "value": "B"}]), ScimType::InvalidSyntax),
            ("User", user(), json!([{"op": "ADD", "path": "title", "value": "Boss"}]), ScimType::InvalidSyntax),
            // String booleans, at a path, inside a value, inside a no-path value.
            ("User", user(), json!([{"op": "replace", "path": "active", "value": "False"}]), ScimType::InvalidValue),
            (
                "User",
                user(),
                json!([{"op": "add", "path": "roles", "value": [{"value": "Member", "primary": "false"}]}]),
                ScimType::InvalidValue,
            ),
            ("User", user(), json!([{"op": "replace", "value": {"active": "false"}}]), ScimType::InvalidValue),
            // Remove with a value.
            ("Group", group(), member_remove.clone(), ScimType::InvalidSyntax),
            // The manager forms: no URN, and a bare value.
            (
                "User",
                enterprise_user(),
                json!([{"op": "add", "path": "manager", "value": {"value": MANDY}}]),
                ScimType::InvalidPath,
            ),
            (
                "User",
                enterprise_user(),
                json!([{"op": "remove", "path": format!("manager[value eq \"{MANAGER_ID}\"]")}]),
                ScimType::InvalidPath,
            ),
            ("User", user(), json!([{"op": "replace", "value": {"employeeNumber": "42"}}]), ScimType::InvalidPath),
            ("User", user(), json!([{"op": "add", "path": ext("manager"), "value": MANDY}]), ScimType::InvalidValue),
        ];
        for (rt, start, ops, want) in &cases {
            for p in [RFC, &Profile::OKTA] {
                assert_eq!(fail_as(p, rt, start, ops.clone()), *want, "{} {ops}", p.name);
                let mut copy = start.clone();
                let e = run_as(p, rt, &mut copy, ops.clone()).unwrap_err();
                assert!(e.detail.contains("the entra profile allows it"), "{}", e.detail);
            }
            let mut res = start.clone();
            assert!(!ok_as(E, rt, &mut res, ops.clone()).is_empty(), "entra {ops}");
        }
        // Entra's member removal removes only the members named.
        let mut g = group();
        ok_as(E, "Group", &mut g, member_remove);
        assert_eq!(g["members"].as_array().unwrap().iter().map(|m| &m["value"]).collect::<Vec<_>>(), [MANDY]);
        // The strict forms of the same requests pass everywhere.
        for p in PROFILES {
            let mut g = group();
            ok_as(p, "Group", &mut g, json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]));
            assert_eq!(g["members"].as_array().unwrap().len(), 1);
            let mut u = enterprise_user();
            ok_as(
                p,
                "User",
                &mut u,
                json!([
                    {"op": "replace", "path": "active", "value": false},
                    {"op": "add", "path": ext("manager"), "value": {"value": MANDY}},
                    {"op": "remove", "path": "emails[type eq \"home\"]"}
                ]),
            );
            assert_eq!((&u["active"], &u[ENTERPRISE_USER]["manager"]["value"]), (&json!(false), &json!(MANDY)));
        }
    }

    #[test]
    fn a_resource_that_is_not_an_object_is_an_internal_error() {
        let mut v = json!([1]);
        let e = apply(resource_type("User").unwrap(), &mut v, &[], E).unwrap_err();
        assert_eq!(e.status_code(), 500);
        assert_eq!(v, json!([1]));
    }

    // --- properties ------------------------------------------------------------------------

    fn user_ops() -> Vec<Value> {
        vec![
            json!({"op": "add", "path": "emails", "value": [{"value": "a@x.org", "type": "work", "primary": true}]}),
            json!({"op": "add", "path": "emails", "value": {"value": "b@x.org", "type": "home", "primary": "True"}}),
            json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.org"}),
            json!({"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}),
            json!({"op": "remove", "path": "emails[type eq \"home\"]"}),
            json!({"op": "remove", "path": "emails", "value": [{"value": "A@X.org"}]}),
            json!({"op": "replace", "path": "emails", "value": []}),
            json!({"op": "Replace", "path": "active", "value": "False"}),
            json!({"op": "replace", "path": "active", "value": "maybe"}),
            json!({"op": "add", "path": ext("department"), "value": "Retail"}),
            json!({"op": "remove", "path": ext("department")}),
            json!({"op": "add", "path": ext("manager"), "value": "m1"}),
            json!({"op": "add", "path": "manager", "value": {"value": "m2", "displayName": "x"}}),
            json!({"op": "remove", "path": "manager"}),
            json!({"op": "remove", "path": "manager[value eq \"m1\"]"}),
            json!({"op": "replace", "value": {"name.givenName": "K", ext("employeeNumber"): "7"}}),
            json!({"op": "replace", "path": ENTERPRISE_USER, "value": {"schemas": [ENTERPRISE_USER], "costCenter": "c"}}),
            json!({"op": "remove", "path": ENTERPRISE_USER}),
            json!({"op": "replace", "path": "meta", "value": {"resourceType": "Group"}}),
            json!({"op": "replace", "path": "id", "value": "other"}),
            json!({"op": "replace", "value": {"id": BABS}}),
            json!({"op": "remove", "path": "nickName"}),
            json!({"op": "add", "path": "nickName", "value": "Babs"}),
            json!({"op": "remove", "path": "userName"}),
            json!({"op": "add", "path": "bogus", "value": "x"}),
            json!({"op": "remove"}),
            json!({"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555"}),
            json!({"op": "replace", "path": "name", "value": {"familyName": "F", "givenName": null}}),
            json!({"op": "remove", "path": "name.familyName"}),
            json!({"op": "add", "value": {"emails": [{"value": "c@x.org", "primary": true}], "title": "T"}}),
            json!({"op": "replace", "path": "addresses[type eq \"work\"]", "value": {"type": "work", "locality": "L", "primary": true}}),
            json!({"op": "remove", "path": "emails.primary"}),
        ]
    }

    fn group_ops() -> Vec<Value> {
        vec![
            json!({"op": "add", "path": "members", "value": [{"$ref": null, "value": "u1"}]}),
            json!({"op": "add", "path": "members", "value": [{"value": "u2", "display": "Two"}]}),
            json!({"op": "remove", "path": "members", "value": [{"value": "U1"}]}),
            json!({"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}),
            json!({"op": "remove", "path": "members"}),
            json!({"op": "replace", "path": "members", "value": []}),
            json!({"op": "replace", "path": "members[value eq \"u2\"].display", "value": "Deux"}),
            json!({"op": "replace", "value": {"id": "e9e30dba-f08f-4109-8486-d5c6a331660a", "displayName": "G"}}),
            json!({"op": "replace", "value": {"id": "nope"}}),
            json!({"op": "add", "path": "department", "value": "x"}),
            json!({"op": "remove", "path": "displayName"}),
            json!({"op": "replace", "path": "externalId", "value": "ext-1"}),
        ]
    }

    /// What must hold of any resource a successful PATCH leaves.
    fn check_invariants(rt: &ResourceTypeDef, res: &Value) -> Result<(), TestCaseError> {
        let obj = res.as_object().unwrap();
        for (k, v) in obj {
            prop_assert!(tidied(v.clone()).as_ref() == Some(v), "{} holds nulls or empty values: {}", k, v);
            if let Value::Array(a) = v {
                let primaries = a.iter().filter(|e| e.get("primary") == Some(&json!(true))).count();
                prop_assert!(primaries <= 1, "{} has {} primary values", k, primaries);
            }
        }
        for (id, _) in rt.extensions {
            let present = obj.get(*id).is_some();
            let listed = obj["schemas"].as_array().unwrap().iter().any(|s| s == id);
            prop_assert_eq!(present, listed, "{} present {} listed {}", id, present, listed);
        }
        let required = if rt.id == "User" { "userName" } else { "displayName" };
        prop_assert!(obj.contains_key(required), "{} is gone", required);
        prop_assert!(obj.contains_key("id") && obj.contains_key("meta"));
        Ok(())
    }

    fn run_sequence(
        p: &Profile,
        rt_name: &str,
        start: Value,
        pool: &[Value],
        picks: &[usize],
    ) -> Result<(), TestCaseError> {
        let rt = resource_type(rt_name).unwrap();
        let mut res = start;
        for chunk in picks.chunks(3) {
            let ops: Vec<Value> = chunk.iter().map(|&i| pool[i % pool.len()].clone()).collect();
            let before = res.to_string();
            let before_value = res.clone();
            let outcome = parse_request(&json!({"Operations": ops}), p).and_then(|ops| apply(rt, &mut res, &ops, p));
            match outcome {
                Err(e) => {
                    prop_assert_eq!(res.to_string(), before, "failed with {:?} yet changed the resource", e.detail);
                    prop_assert_eq!(e.status_code(), 400);
                    prop_assert!(e.scim_type.is_some());
                }
                Ok(changed) => {
                    check_invariants(rt, &res)?;
                    let mut sorted = changed.clone();
                    sorted.sort();
                    sorted.dedup();
                    prop_assert_eq!(&sorted, &changed);
                    prop_assert_eq!(changed.is_empty(), res == before_value, "changed {:?}", changed);
                    for name in &changed {
                        let (b, a) = match name.strip_prefix(&format!("{ENTERPRISE_USER}:")) {
                            Some(inner) => (&before_value[ENTERPRISE_USER][inner], &res[ENTERPRISE_USER][inner]),
                            None => (&before_value[name.as_str()], &res[name.as_str()]),
                        };
                        prop_assert_ne!(b, a, "{} listed as changed", name);
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn user_sequences_fail_atomically_and_keep_invariants(picks in prop::collection::vec(0usize..1000, 1..12), ext in any::<bool>(), strict in any::<bool>()) {
            let start = if ext { enterprise_user() } else { user() };
            run_sequence(if strict { RFC } else { E }, "User", start, &user_ops(), &picks)?;
        }

        #[test]
        fn group_sequences_fail_atomically_and_keep_invariants(picks in prop::collection::vec(0usize..1000, 1..12), strict in any::<bool>()) {
            run_sequence(if strict { RFC } else { E }, "Group", group(), &group_ops(), &picks)?;
        }

        /// Clients retry: applying an operation a second time changes nothing more.
        #[test]
        fn operations_are_idempotent(prefix in prop::collection::vec(0usize..1000, 0..6), pick in 0usize..1000) {
            let pool = user_ops();
            let rt = resource_type("User").unwrap();
            let mut res = enterprise_user();
            for &i in &prefix {
                let ops = parse_request(&json!({"Operations": [pool[i % pool.len()].clone()]}), E).unwrap();
                let _ = apply(rt, &mut res, &ops, E);
            }
            let ops = parse_request(&json!({"Operations": [pool[pick % pool.len()].clone()]}), E).unwrap();
            if apply(rt, &mut res, &ops, E).is_ok() {
                let once = res.clone();
                let again = apply(rt, &mut res, &ops, E);
                prop_assert!(again.is_ok(), "{:?}", again.err().map(|e| e.detail));
                prop_assert_eq!(&res, &once, "{}", pool[pick % pool.len()]);
                prop_assert!(again.unwrap_or_default().is_empty());
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in arb_json(), ext in any::<bool>()) {
            let mut res = if ext { enterprise_user() } else { user() };
            let before = res.to_string();
            if let Ok(ops) = parse_request(&body, E)
                && apply(resource_type("User").unwrap(), &mut res, &ops, E).is_err()
            {
                prop_assert_eq!(res.to_string(), before);
            }
        }
    }

    /// JSON made of PATCH-ish pieces: real keys, paths and values mixed with junk.
    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "op",
            "path",
            "value",
            "Operations",
            "schemas",
            "userName",
            "emails",
            "name.givenName",
            "active",
            "members",
            "value",
            "type",
            "primary",
            "display",
            "$ref",
            "id",
            "meta",
            "manager",
            ENTERPRISE_USER,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "bogus",
        ]);
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "add",
                "Remove",
                "REPLACE",
                "emails",
                "emails[type eq \"work\"].value",
                "members[value eq \"x\"]",
                "name",
                "manager",
                "active",
                "True",
                "work",
                "x",
                "",
                "emails[",
                "urn:x:y",
                ENTERPRISE_USER,
                "addresses[type eq \"work\"]",
                "userName",
                "id",
                "meta.created",
                "emails[primary eq true].type",
            ])
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        scalar.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }
}
