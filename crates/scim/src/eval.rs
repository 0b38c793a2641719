//! In-memory evaluation of SCIM filters (RFC 7644 §3.4.2.2) against resources in their
//! JSON form, and the ordering `sortBy` uses (§3.4.2.3).
//!
//! A filter is first compiled against a resource type ([`compile`]): every path is
//! resolved through the schema registry (or the common attributes `id`, `externalId`,
//! `schemas` and `meta.*`), and every operator is checked against the attribute's type.
//! All errors come from this step, so whether a filter is rejected never depends on the
//! data it is run against; [`CompiledFilter::matches`] is then total and cannot fail.
//! PATCH value paths (`emails[type eq "work"]`) compile their brackets alone with
//! [`compile_value_filter`] and run them on one value at a time: the same code as the
//! brackets of a list filter, so the two cannot disagree.
//!
//! Rules, where the RFC leaves room:
//! - Strings compare by the attribute's `caseExact` (case folding is Unicode lower-case,
//!   no locale); references and binaries compare as exact strings; numbers numerically;
//!   `dateTime`s chronologically after RFC 3339 parsing (so `...T06:00:00+02:00` equals
//!   `...T04:00:00Z`). A `dateTime` literal that is not RFC 3339 is a 400.
//! - A literal of the wrong type is no match rather than an error (`active eq "yes"`),
//!   except that booleans accept the strings `"true"`/`"false"` in any case (Entra ID sends
//!   `"True"`) and string attributes accept unquoted numbers and booleans as their text
//!   (`employeeNumber eq 42` is `employeeNumber eq "42"`). Stored values of the wrong type
//!   never match a comparison (a stored `"True"` does count as boolean true).
//! - `co`/`sw`/`ew` apply to strings, references and binaries; on booleans, numbers and
//!   `dateTime`s they are a 400. `gt`/`ge`/`lt`/`le` on booleans and binaries are a 400.
//! - `ne` is exactly `not (eq)`: true when the attribute is absent, and on a multi-valued
//!   attribute true when no value equals. `eq null` is `not (pr)` and `ne null` is `pr`;
//!   any other operator with `null` is a 400.
//! - `pr`: the attribute has a value that is not null, not `""`, not an empty array and
//!   not an object without any present member (RFC 7644: "a non-empty node").
//! - A complex attribute compared without a sub-attribute (`emails co "x"`,
//!   `members eq "id"`, `manager eq "id"`) compares its `value` sub-attribute; a complex
//!   attribute without one (`name`, `meta`, `addresses`) is a 400.
//! - `attr[inner]` holds when some element (object) of `attr` satisfies `inner`; a
//!   single-valued complex `attr` is its only element. Paths inside the brackets name
//!   sub-attributes of `attr`, without a schema URI or a further `.sub`.
//! - Common attributes may be written bare or qualified with the core schema URN.
//!   `id`, `externalId` and `meta.version` are case-exact; `meta.resourceType` and
//!   `schemas` (URNs) are not; `meta.location` is a reference; `meta.created` and
//!   `meta.lastModified` are `dateTime`s.
//! - Object keys are looked up exactly first, then case-insensitively; `null` values and
//!   `null` array elements are treated as absent; a non-array value of a multi-valued
//!   attribute counts as a one-element array, and an array under a single-valued one is
//!   matched element by element.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{ScimError, ScimType};
use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::{as_bool, is_present, lookup, parse_bool, push_values, representative};
use crate::schema::{AttrType, AttributeDef, Mutability, ResourceTypeDef, Returned, Uniqueness};

/// Whether `resource` (a SCIM resource in its JSON form, as fedkey stores and returns it)
/// matches `filter`. Errors are 400 `invalidFilter`: an unknown attribute, or an operator
/// the attribute's type does not support. To run one filter over many resources, use
/// [`compile`] once and [`CompiledFilter::matches`] for each.
pub fn matches(rt: &ResourceTypeDef, resource: &Value, filter: &Filter) -> Result<bool, ScimError> {
    Ok(compile(rt, filter)?.matches(resource))
}

/// Resolves and type-checks `filter` against the resource type `rt`.
pub fn compile(rt: &ResourceTypeDef, filter: &Filter) -> Result<CompiledFilter, ScimError> {
    Ok(CompiledFilter { root: compile_node(Scope::Resource(rt), filter)? })
}

/// Resolves and type-checks the value filter of `attr[filter]` (as a PATCH path writes
/// it, `emails[type eq "work"]`): its paths name sub-attributes of the complex attribute
/// `attr`. The same compilation as the brackets of a list filter, so an element is
/// selected by PATCH exactly when `attr[filter]` would match a resource holding only that
/// element. Errors are 400 `invalidFilter`, as for list filters.
pub fn compile_value_filter(attr: &'static AttributeDef, filter: &Filter) -> Result<ValueFilter, ScimError> {
    if attr.ty != AttrType::Complex {
        return Err(not_complex(attr.name));
    }
    Ok(ValueFilter { root: compile_node(Scope::Element(attr), filter)? })
}

/// A filter resolved against a resource type, ready to run against resources.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    root: Node,
}

impl CompiledFilter {
    /// Whether `resource` matches. Never fails: malformed data simply does not match.
    pub fn matches(&self, resource: &Value) -> bool {
        self.root.eval(resource)
    }
}

/// A value filter resolved against its complex attribute, ready to run against that
/// attribute's values.
#[derive(Debug, Clone)]
pub struct ValueFilter {
    root: Node,
}

impl ValueFilter {
    /// Whether one value (element) of the attribute matches. Never fails; a value that is
    /// not an object never matches, as inside the brackets of a list filter.
    pub fn matches(&self, element: &Value) -> bool {
        element_matches(&self.root, element)
    }
}

/// Orders two values of the attribute `def` the way `sortBy` does (RFC 7644 §3.4.2.3),
/// ascending, with the same type and case rules as filtering:
/// - strings by Unicode code point, case-folded unless `caseExact`; references and
///   binaries exactly; numbers numerically; `dateTime`s chronologically; `false < true`;
/// - a multi-valued attribute (an array) sorts by its primary value, else its first;
///   a complex value by its `value` sub-attribute (all equal if it has none);
/// - absent values (`Value::Null`) and values that are not of the attribute's type sort
///   after all others, so reversing the order for `descending` puts them first, as the
///   RFC asks.
///
/// Values that compare `Equal` (e.g. `"Bob"` and `"bob"` when case-insensitive) need a
/// tie-breaker, such as `id`, for a stable page order.
pub fn compare_values(def: &AttributeDef, a: &Value, b: &Value) -> Ordering {
    match (sort_key(def, a), sort_key(def, b)) {
        (Some(x), Some(y)) => x.cmp_same(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The value `sortBy=path` orders `resource` by, with the definition to pass to
/// [`compare_values`]: for a multi-valued attribute the primary element, else the first;
/// `Value::Null` when absent. An unknown path is a 400 `invalidValue`.
pub fn sort_value<'r>(
    rt: &ResourceTypeDef,
    resource: &'r Value,
    path: &AttrPath,
) -> Result<(&'static AttributeDef, &'r Value), ScimError> {
    let (loc, sub) = locate(rt, path, ScimType::InvalidValue)?;
    let base = match loc.container {
        Some(urn) => lookup(resource, urn),
        None => Some(resource),
    };
    let mut value = base.and_then(|b| lookup(b, loc.attribute.name)).unwrap_or(&NULL);
    if loc.attribute.multi_valued || value.is_array() {
        value = representative(value);
    }
    Ok(match sub {
        Some(sub) => (sub, lookup(value, sub.name).map(representative).unwrap_or(&NULL)),
        None => (loc.attribute, value),
    })
}

static NULL: Value = Value::Null;

// ---------------------------------------------------------------------------------------
// Common attributes (RFC 7643 §3.1): not part of any schema document.

const fn common(name: &'static str, ty: AttrType, case_exact: bool, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        multi_valued: false,
        description,
        required: false,
        case_exact,
        mutability: Mutability::ReadOnly,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
    }
}

static META_SUBS: [AttributeDef; 5] = [
    common("resourceType", AttrType::String, false, "The name of the resource type of the resource."),
    common("created", AttrType::DateTime, false, "When the resource was added to the service provider."),
    common("lastModified", AttrType::DateTime, false, "When the resource was last modified."),
    AttributeDef {
        reference_types: &["uri"],
        ..common("location", AttrType::Reference, true, "The URI of the resource being returned.")
    },
    common("version", AttrType::String, true, "The version (ETag) of the resource."),
];

/// `id`, as the filter language sees it (read-only, case-exact).
pub static ID: AttributeDef = AttributeDef {
    uniqueness: Uniqueness::Server,
    ..common("id", AttrType::String, true, "A unique identifier for the resource, assigned by the service provider.")
};
/// `externalId` (case-exact).
pub static EXTERNAL_ID: AttributeDef = AttributeDef {
    mutability: Mutability::ReadWrite,
    ..common("externalId", AttrType::String, true, "An identifier for the resource as defined by the client.")
};
/// `schemas` (multi-valued URNs, case-insensitive).
pub static SCHEMAS: AttributeDef = AttributeDef {
    multi_valued: true,
    ..common("schemas", AttrType::String, false, "The URIs of the schemas the resource conforms to.")
};
/// `meta` and its sub-attributes.
pub static META: AttributeDef =
    AttributeDef { sub_attributes: &META_SUBS, ..common("meta", AttrType::Complex, false, "Resource metadata.") };

/// The common attributes (RFC 7643 §3.1), which no schema document lists; shared with the
/// SQL translator so both resolve them identically.
pub static COMMON: [&AttributeDef; 4] = [&ID, &EXTERNAL_ID, &SCHEMAS, &META];

// ---------------------------------------------------------------------------------------
// Path resolution.

/// A top-level attribute and where its value lives.
#[derive(Debug, Clone, Copy)]
struct Located {
    /// The extension URN key the attribute sits under; `None` for the core schema and
    /// the common attributes.
    container: Option<&'static str>,
    attribute: &'static AttributeDef,
}

fn locate(
    rt: &ResourceTypeDef,
    path: &AttrPath,
    scim_type: ScimType,
) -> Result<(Located, Option<&'static AttributeDef>), ScimError> {
    if let Some(r) = rt.resolve(path) {
        let container = (!r.schema.id.eq_ignore_ascii_case(rt.schema)).then_some(r.schema.id);
        return Ok((Located { container, attribute: r.attribute }, r.sub));
    }
    let core_or_bare = path.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(rt.schema));
    if core_or_bare && let Some(attribute) = COMMON.iter().copied().find(|a| a.name.eq_ignore_ascii_case(&path.name)) {
        let sub = match &path.sub {
            None => None,
            Some(s) => match attribute.sub_attribute(s) {
                Some(sub) => Some(sub),
                None => return Err(unknown_attribute(rt, path, scim_type)),
            },
        };
        return Ok((Located { container: None, attribute }, sub));
    }
    Err(unknown_attribute(rt, path, scim_type))
}

fn unknown_attribute(rt: &ResourceTypeDef, path: &AttrPath, scim_type: ScimType) -> ScimError {
    ScimError::new(400, Some(scim_type), format!("unknown attribute \"{path}\" for resource type {}", rt.name))
}

fn invalid(detail: String) -> ScimError {
    ScimError::new(400, Some(ScimType::InvalidFilter), detail)
}

fn not_complex(path: impl std::fmt::Display) -> ScimError {
    invalid(format!("\"{path}\" is not a complex attribute and cannot take a value filter"))
}

/// How to find an attribute's values in a context object (the resource, or one element
/// of a value path).
#[derive(Debug, Clone, Copy)]
struct Target {
    container: Option<&'static str>,
    attr: &'static str,
    sub: Option<&'static str>,
}

impl Target {
    /// Every value the path names, arrays flattened one level, nulls dropped.
    fn values<'v>(&self, ctx: &'v Value) -> Vec<&'v Value> {
        let base = match self.container {
            Some(urn) => lookup(ctx, urn),
            None => Some(ctx),
        };
        let mut top = Vec::new();
        push_values(base.and_then(|b| lookup(b, self.attr)), &mut top);
        match self.sub {
            None => top,
            Some(sub) => {
                let mut out = Vec::new();
                for v in top {
                    push_values(lookup(v, sub), &mut out);
                }
                out
            }
        }
    }
}

fn parse_date(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Unicode lower-case, borrowing when nothing changes.
fn fold(s: &str) -> Cow<'_, str> {
    if s.chars().any(|c| c.is_uppercase() || !c.is_ascii()) {
        Cow::Owned(s.chars().flat_map(char::to_lowercase).collect())
    } else {
        Cow::Borrowed(s)
    }
}

fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

// ---------------------------------------------------------------------------------------
// Compilation.

#[derive(Debug, Clone)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Present(Target),
    /// Some value of the target passes the test.
    Any(Target, Test),
    /// Some element (object) of the target satisfies the inner node.
    ValuePath(Target, Box<Node>),
}

/// A comparison with a single stored value. `op` is never `Ne` (compiled to `not eq`).
#[derive(Debug, Clone)]
enum Test {
    Text {
        op: CompareOp,
        literal: String,
        fold: bool,
    },
    Bool(bool),
    Num {
        op: CompareOp,
        literal: Number,
    },
    Date {
        op: CompareOp,
        literal: OffsetDateTime,
    },
    /// The literal cannot equal any value of the attribute's type.
    Never,
}

/// What the paths of a filter are relative to.
#[derive(Clone, Copy)]
enum Scope<'r> {
    /// A resource: paths name its attributes.
    Resource(&'r ResourceTypeDef),
    /// One value of a complex attribute (inside `attr[…]`): paths name its sub-attributes.
    Element(&'static AttributeDef),
}

fn compile_node(scope: Scope<'_>, filter: &Filter) -> Result<Node, ScimError> {
    Ok(match filter {
        Filter::And(a, b) => Node::And(Box::new(compile_node(scope, a)?), Box::new(compile_node(scope, b)?)),
        Filter::Or(a, b) => Node::Or(Box::new(compile_node(scope, a)?), Box::new(compile_node(scope, b)?)),
        Filter::Not(a) => Node::Not(Box::new(compile_node(scope, a)?)),
        Filter::Present(path) => Node::Present(target(scope, path)?.0),
        Filter::Compare(path, op, value) => {
            let (t, def) = target(scope, path)?;
            compare(path, t, def, *op, value)?
        }
        Filter::ValuePath(path, inner) => {
            let (t, def) = target(scope, path)?;
            if path.sub.is_some() || def.ty != AttrType::Complex || t.sub.is_some() {
                return Err(not_complex(path));
            }
            Node::ValuePath(t, Box::new(compile_node(Scope::Element(def), inner)?))
        }
    })
}

/// Where `path` lives and the definition it names.
fn target(scope: Scope<'_>, path: &AttrPath) -> Result<(Target, &'static AttributeDef), ScimError> {
    match scope {
        Scope::Resource(rt) => {
            let (loc, sub) = locate(rt, path, ScimType::InvalidFilter)?;
            let t = Target { container: loc.container, attr: loc.attribute.name, sub: sub.map(|s| s.name) };
            Ok((t, sub.unwrap_or(loc.attribute)))
        }
        Scope::Element(parent) => {
            let def = match (&path.uri, &path.sub) {
                (None, None) => parent.sub_attribute(&path.name),
                _ => None,
            };
            let def = def.ok_or_else(|| {
                invalid(format!("unknown sub-attribute \"{path}\" of \"{}\" in a value filter", parent.name))
            })?;
            Ok((Target { container: None, attr: def.name, sub: None }, def))
        }
    }
}

fn compare(
    path: &AttrPath,
    mut t: Target,
    mut def: &'static AttributeDef,
    op: CompareOp,
    value: &CompValue,
) -> Result<Node, ScimError> {
    if let CompValue::Null = value {
        return match op {
            CompareOp::Eq => Ok(Node::Not(Box::new(Node::Present(t)))),
            CompareOp::Ne => Ok(Node::Present(t)),
            _ => Err(invalid(format!("\"{path} {} null\": only eq and ne compare with null", op.as_str()))),
        };
    }
    if def.ty == AttrType::Complex {
        match (t.sub, def.sub_attribute("value")) {
            (None, Some(v)) => {
                t.sub = Some(v.name);
                def = v;
            }
            _ => {
                return Err(invalid(format!(
                    "\"{path}\" is complex; compare one of its sub-attributes (e.g. \"{path}.{}\")",
                    def.sub_attributes.first().map_or("value", |s| s.name)
                )));
            }
        }
    }
    let unsupported = match def.ty {
        AttrType::Boolean => !matches!(op, CompareOp::Eq | CompareOp::Ne),
        AttrType::Binary => matches!(op, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le),
        AttrType::Integer | AttrType::Decimal | AttrType::DateTime => {
            matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
        }
        AttrType::String | AttrType::Reference | AttrType::Complex => false,
    };
    if unsupported {
        return Err(invalid(format!(
            "operator \"{}\" does not apply to \"{path}\", which is of type {}",
            op.as_str(),
            AttrType::as_str(def.ty)
        )));
    }
    let (negate, op) = match op {
        CompareOp::Ne => (true, CompareOp::Eq),
        op => (false, op),
    };
    let test = match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::Complex => {
            let fold_case = def.ty == AttrType::String && !def.case_exact;
            let literal = match value {
                CompValue::Str(s) => s.clone(),
                CompValue::Num(n) => n.to_string(),
                CompValue::Bool(b) => b.to_string(),
                CompValue::Null => String::new(),
            };
            let literal = if fold_case { fold(&literal).into_owned() } else { literal };
            Test::Text { op, literal, fold: fold_case }
        }
        AttrType::Boolean => match value {
            CompValue::Bool(b) => Test::Bool(*b),
            CompValue::Str(s) => parse_bool(s).map_or(Test::Never, Test::Bool),
            CompValue::Num(_) | CompValue::Null => Test::Never,
        },
        AttrType::Integer | AttrType::Decimal => match value {
            CompValue::Num(n) => Test::Num { op, literal: n.clone() },
            _ => Test::Never,
        },
        AttrType::DateTime => match value {
            CompValue::Str(s) => match parse_date(s) {
                Some(literal) => Test::Date { op, literal },
                None => {
                    return Err(invalid(format!(
                        "\"{path}\" is a dateTime; {value} is not an RFC 3339 date-time (e.g. \"2011-05-13T04:42:34Z\")"
                    )));
                }
            },
            _ => Test::Never,
        },
    };
    let node = Node::Any(t, test);
    Ok(if negate { Node::Not(Box::new(node)) } else { node })
}

// ---------------------------------------------------------------------------------------
// Evaluation.

impl Node {
    fn eval(&self, ctx: &Value) -> bool {
        match self {
            Node::And(a, b) => a.eval(ctx) && b.eval(ctx),
            Node::Or(a, b) => a.eval(ctx) || b.eval(ctx),
            Node::Not(a) => !a.eval(ctx),
            Node::Present(t) => t.values(ctx).into_iter().any(is_present),
            Node::Any(t, test) => t.values(ctx).into_iter().any(|v| test.check(v)),
            Node::ValuePath(t, inner) => t.values(ctx).into_iter().any(|el| element_matches(inner, el)),
        }
    }
}

/// One value of a complex attribute against the node compiled for its brackets: shared by
/// list filters (`emails[…]`) and PATCH value paths, so both select the same values.
fn element_matches(inner: &Node, element: &Value) -> bool {
    element.is_object() && inner.eval(element)
}

/// Whether an ordering satisfies an ordering operator (`Eq`, `Gt`, `Ge`, `Lt`, `Le`).
fn ord_holds(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Ne | CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

impl Test {
    fn check(&self, v: &Value) -> bool {
        match self {
            Test::Text { op, literal, fold: fold_case } => {
                let Some(s) = v.as_str() else { return false };
                let s = if *fold_case { fold(s) } else { Cow::Borrowed(s) };
                let (s, lit) = (s.as_ref(), literal.as_str());
                match op {
                    CompareOp::Co => s.contains(lit),
                    CompareOp::Sw => s.starts_with(lit),
                    CompareOp::Ew => s.ends_with(lit),
                    op => ord_holds(*op, s.cmp(lit)),
                }
            }
            Test::Bool(b) => as_bool(v) == Some(*b),
            Test::Num { op, literal } => match v {
                Value::Number(n) => cmp_numbers(n, literal).is_some_and(|o| ord_holds(*op, o)),
                _ => false,
            },
            Test::Date { op, literal } => {
                v.as_str().and_then(parse_date).is_some_and(|d| ord_holds(*op, d.cmp(literal)))
            }
            Test::Never => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sorting.

enum SortKey<'a> {
    Text(Cow<'a, str>),
    Bool(bool),
    Num(&'a Number),
    Date(OffsetDateTime),
}

impl SortKey<'_> {
    fn cmp_same(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Num(a), SortKey::Num(b)) => cmp_numbers(a, b).unwrap_or(Ordering::Equal),
            (SortKey::Date(a), SortKey::Date(b)) => a.cmp(b),
            // One definition gives one kind of key.
            _ => Ordering::Equal,
        }
    }
}

fn sort_key<'a>(def: &AttributeDef, v: &'a Value) -> Option<SortKey<'a>> {
    let v = representative(v);
    match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            let s = v.as_str()?;
            let fold_case = def.ty == AttrType::String && !def.case_exact;
            Some(SortKey::Text(if fold_case { fold(s) } else { Cow::Borrowed(s) }))
        }
        AttrType::Boolean => as_bool(v).map(SortKey::Bool),
        AttrType::Integer | AttrType::Decimal => match v {
            Value::Number(n) => Some(SortKey::Num(n)),
            _ => None,
        },
        AttrType::DateTime => v.as_str().and_then(parse_date).map(SortKey::Date),
        AttrType::Complex => match def.sub_attribute("value") {
            Some(sub) => sort_key(sub, lookup(v, sub.name)?),
            // Nothing to order by: every present value ties.
            None => is_present(v).then_some(SortKey::Bool(false)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse;
    use crate::schema::{ENTERPRISE_USER, GROUP, USER, resource_type};
    use proptest::prelude::*;
    use serde_json::json;

    fn user_rt() -> &'static ResourceTypeDef {
        resource_type("User").unwrap()
    }

    fn group_rt() -> &'static ResourceTypeDef {
        resource_type("Group").unwrap()
    }

    fn run(rt: &ResourceTypeDef, resource: &Value, filter: &str) -> Result<bool, ScimError> {
        let f = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        matches(rt, resource, &f)
    }

    /// Asserts the outcome of each `(filter, expected)` pair.
    #[track_caller]
    fn check(rt: &ResourceTypeDef, resource: &Value, cases: &[(&str, bool)]) {
        for (filter, expected) in cases {
            match run(rt, resource, filter) {
                Ok(got) => assert_eq!(got, *expected, "{filter}"),
                Err(e) => panic!("{filter}: unexpected error {e:?}"),
            }
        }
    }

    /// Asserts a 400 invalidFilter whose detail contains `needle`.
    #[track_caller]
    fn rejected(rt: &ResourceTypeDef, resource: &Value, filter: &str, needle: &str) {
        let e = run(rt, resource, filter).expect_err(filter);
        assert_eq!(e.status_code(), 400, "{filter}");
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{filter}");
        assert!(e.detail.contains(needle), "{filter}: {:?} lacks {needle:?}", e.detail);
    }

    const UID: &str = "2819c223-7f76-453a-919d-413861904646";
    const MANAGER: &str = "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2";

    /// A User as Entra ID creates it and fedkey stores it.
    fn entra_user() -> Value {
        json!({
            "schemas": [USER, ENTERPRISE_USER],
            "id": UID,
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_00aa00aa@testuser.com",
            "active": true,
            "displayName": "Test User",
            "title": "",
            "preferredLanguage": null,
            "emails": [
                {"primary": true, "type": "work", "value": "Test_User_11bb11bb@testuser.com"},
                {"primary": false, "type": "home", "value": "test.user@home.example"}
            ],
            "phoneNumbers": [{"type": "mobile", "value": ""}],
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            "addresses": null,
            ENTERPRISE_USER: {
                "department": "Retail",
                "employeeNumber": "701984",
                "manager": {"value": MANAGER, "displayName": "The Boss"}
            },
            "meta": {
                "resourceType": "User",
                "created": "2010-01-23T04:56:22Z",
                "lastModified": "2011-05-13T04:42:34Z",
                "location": format!("https://fedkey.example/scim/v2/acme/Users/{UID}"),
                "version": "W/\"a330bc54f0671c9\""
            }
        })
    }

    /// A User as Okta PUTs it (deactivated, with a role and no extension).
    fn okta_user() -> Value {
        json!({
            "schemas": [USER],
            "id": "00u1ab2cd3",
            "externalId": "jyoung",
            "userName": "test.user@okta.local",
            "name": {"givenName": "Test", "familyName": "User"},
            "emails": [{"value": "test.user@okta.local", "type": "work"}, {"value": "tu@alt.example"}],
            "displayName": "Test User",
            "locale": "en-US",
            "active": "False",
            "groups": [],
            "roles": [{"primary": false, "type": "WindowsAzureActiveDirectoryRole", "value": "Member", "display": "Member"}],
            "meta": {"resourceType": "User", "created": "2024-02-29T23:59:59.5+01:00", "lastModified": "2024-03-01T10:00:00Z"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP],
            "id": "g-7f4bc1a3",
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Engineering",
            "members": [
                {"value": "u1", "display": "alice@x.example"},
                {"value": "U2", "$ref": "https://fedkey.example/scim/v2/acme/Users/U2", "type": "User"}
            ],
            "meta": {"resourceType": "Group", "lastModified": "2024-01-01T00:00:00Z"}
        })
    }

    #[test]
    fn every_operator_on_strings() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                (r#"userName eq "Test_User_00aa00aa@testuser.com""#, true),
                (r#"userName eq "Test_User_00aa00aa@testuser""#, false),
                (r#"userName ne "someone.else@testuser.com""#, true),
                (r#"userName ne "test_user_00AA00AA@TESTUSER.com""#, false),
                (r#"userName co "00AA00AA""#, true),
                (r#"userName co "00bb""#, false),
                (r#"userName sw "test_user""#, true),
                (r#"userName sw "user""#, false),
                (r#"userName ew "@TestUser.com""#, true),
                (r#"userName ew "@testuser""#, false),
                (r#"userName gt "test_user_00""#, true),
                (r#"userName gt "TEST_USER_00AA00AA@TESTUSER.COM""#, false),
                (r#"userName ge "TEST_USER_00AA00AA@TESTUSER.COM""#, true),
                (r#"userName ge "u""#, false),
                (r#"userName lt "u""#, true),
                (r#"userName lt "test_user_00aa00aa@testuser.com""#, false),
                (r#"userName le "test_user_00aa00aa@testuser.com""#, true),
                (r#"userName le "test""#, false),
                (r#"displayName co "" and userName sw """#, true),
            ],
        );
    }

    #[test]
    fn case_sensitivity_follows_the_attribute() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                // userName and displayName: caseExact false.
                (r#"userName eq "TEST_USER_00AA00AA@TESTUSER.COM""#, true),
                (r#"displayName eq "test user""#, true),
                (r#"emails.value eq "TEST_USER_11BB11BB@testuser.com""#, true),
                // id and externalId: caseExact true.
                (&format!("id eq \"{UID}\""), true),
                (&format!("id eq \"{}\"", UID.to_uppercase()), false),
                (r#"externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef""#, true),
                (r#"externalId eq "0A21F0F2-8D2A-4F8E-BF98-7363C4AED4EF""#, false),
                (r#"externalId sw "0A21""#, false),
                // Ordering folds case for userName, not for externalId ('0' < 'a' but 'A' < 'a').
                (r#"userName gt "TEST_USER_00AA00AA@TESTUSER.CO""#, true),
                (r#"externalId gt "0A21F0F2-8D2A-4F8E-BF98-7363C4AED4EF""#, true),
                (r#"externalId lt "0A21F0F2-8D2A-4F8E-BF98-7363C4AED4EF""#, false),
                // meta.version is exact, meta.resourceType is not, meta.location is a reference.
                (r#"meta.version eq "W/\"a330bc54f0671c9\"""#, true),
                (r#"meta.version eq "w/\"A330BC54F0671C9\"""#, false),
                (r#"meta.resourceType eq "user""#, true),
                (r#"meta.location ew "/Users/2819c223-7f76-453a-919d-413861904646""#, true),
                (r#"meta.location sw "HTTPS://""#, false),
            ],
        );
        // Okta's own test: the upper-cased userName finds the user.
        check(user_rt(), &okta_user(), &[(r#"userName eq "TEST.USER@OKTA.LOCAL""#, true)]);
        // Non-ASCII letters fold too.
        let u = json!({"userName": "ÉLODIE@Example.com"});
        check(user_rt(), &u, &[(r#"userName eq "élodie@example.COM""#, true), (r#"userName co "ÉLO""#, true)]);
    }

    #[test]
    fn booleans() {
        let (entra, okta) = (entra_user(), okta_user());
        check(
            user_rt(),
            &entra,
            &[
                ("active eq true", true),
                ("active eq false", false),
                ("active ne false", true),
                ("active ne true", false),
                // Entra sends booleans as strings.
                (r#"active eq "True""#, true),
                (r#"active eq "FALSE""#, false),
                // A literal of another type simply does not match.
                (r#"active eq "yes""#, false),
                (r#"active ne "yes""#, true),
                ("active eq 1", false),
                ("emails.primary eq true", true),
                ("emails[primary eq true and type eq \"work\"]", true),
                ("emails[primary eq true and type eq \"home\"]", false),
            ],
        );
        // A stored "False" (as Entra PATCHes it) is false.
        check(user_rt(), &okta, &[("active eq false", true), ("active eq true", false), ("active pr", true)]);
    }

    /// No registry attribute is numeric, so numbers go through the compiler directly with
    /// attribute definitions of their own.
    #[test]
    fn numbers() {
        static COUNT: AttributeDef = common("count", AttrType::Integer, false, "");
        static RATIO: AttributeDef =
            AttributeDef { multi_valued: true, ..common("ratio", AttrType::Decimal, false, "") };
        let run_num = |def: &'static AttributeDef, doc: &Value, op: CompareOp, v: CompValue| {
            let path = AttrPath { uri: None, name: def.name.into(), sub: None };
            let t = Target { container: None, attr: def.name, sub: None };
            compare(&path, t, def, op, &v).map(|n| n.eval(doc))
        };
        let n = |x: serde_json::Number| CompValue::Num(x);
        let doc = json!({"count": 42, "ratio": [0.5, 2.25], "big": u64::MAX});
        use CompareOp::*;
        for (op, lit, expected) in [
            (Eq, 42, true),
            (Eq, 41, false),
            (Ne, 41, true),
            (Ne, 42, false),
            (Gt, 41, true),
            (Gt, 42, false),
            (Ge, 42, true),
            (Ge, 43, false),
            (Lt, 43, true),
            (Lt, 42, false),
            (Le, 42, true),
            (Le, -1, false),
        ] {
            assert_eq!(run_num(&COUNT, &doc, op, n(lit.into())).unwrap(), expected, "count {} {lit}", op.as_str());
        }
        let dec = |s: &str| n(serde_json::from_str(s).unwrap());
        assert!(run_num(&COUNT, &doc, Eq, dec("42.0")).unwrap());
        assert!(run_num(&COUNT, &doc, Lt, dec("42.5")).unwrap());
        // Multi-valued: any value.
        assert!(run_num(&RATIO, &doc, Eq, dec("2.25")).unwrap());
        assert!(run_num(&RATIO, &doc, Gt, dec("2")).unwrap());
        assert!(!run_num(&RATIO, &doc, Gt, dec("2.25")).unwrap());
        assert!(run_num(&RATIO, &doc, Lt, dec("0.75")).unwrap());
        assert!(!run_num(&RATIO, &doc, Ne, dec("0.5")).unwrap());
        // Strings are not numbers; co/sw/ew are not numeric operators.
        assert!(!run_num(&COUNT, &doc, Eq, CompValue::Str("42".into())).unwrap());
        assert!(run_num(&COUNT, &json!({"count": "42"}), Eq, n(42.into())).is_ok_and(|m| !m));
        for op in [Co, Sw, Ew] {
            let e = run_num(&COUNT, &doc, op, n(4.into())).unwrap_err();
            assert!(e.detail.contains("integer"), "{}", e.detail);
        }
        // Large integers compare exactly.
        static BIG: AttributeDef = common("big", AttrType::Integer, false, "");
        assert!(run_num(&BIG, &doc, Eq, n(u64::MAX.into())).unwrap());
        assert!(!run_num(&BIG, &doc, Eq, n((u64::MAX - 1).into())).unwrap());
        assert!(run_num(&BIG, &doc, Gt, n(i64::MIN.into())).unwrap());
        // Unquoted numbers against string attributes are their text.
        check(user_rt(), &entra_user(), &[("employeeNumber eq 701984", true), ("employeeNumber eq 70198", false)]);
    }

    #[test]
    fn date_times_compare_chronologically() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, false),
                (r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, true),
                (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true),
                (r#"meta.lastModified ge "2011-05-13T04:42:34.001Z""#, false),
                (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, false),
                (r#"meta.lastModified lt "2012-01-01T00:00:00Z""#, true),
                (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true),
                (r#"meta.lastModified le "2011-05-13T04:42:33.999Z""#, false),
                (r#"meta.lastModified eq "2011-05-13T04:42:34Z""#, true),
                // Same instant, other offset and precision.
                (r#"meta.lastModified eq "2011-05-13T06:42:34.000+02:00""#, true),
                (r#"meta.lastModified ne "2011-05-13T06:42:34+02:00""#, false),
                (r#"meta.lastModified ne "2011-05-13T04:42:35Z""#, true),
                // Lexically smaller, chronologically later.
                (r#"meta.lastModified lt "2011-05-13T00:00:00-12:00""#, true),
                (r#"meta.created lt "2010-01-23T04:56:23Z" and meta.created gt "2010-01-23T04:56:21Z""#, true),
                (r#"meta[lastModified gt "2011-01-01T00:00:00Z" and resourceType eq "User"]"#, true),
                // A literal of another type: no match, no error.
                ("meta.lastModified eq 5", false),
                ("meta.lastModified eq true", false),
            ],
        );
        check(user_rt(), &okta_user(), &[(r#"meta.created eq "2024-02-29T22:59:59.5Z""#, true)]);
        // A stored value that is not a date never matches.
        let bad = json!({"meta": {"lastModified": "yesterday"}});
        check(
            user_rt(),
            &bad,
            &[
                (r#"meta.lastModified lt "2999-01-01T00:00:00Z""#, false),
                (r#"meta.lastModified gt "1970-01-01T00:00:00Z""#, false),
                ("meta.lastModified pr", true),
            ],
        );
        rejected(user_rt(), &u, r#"meta.lastModified gt "2011-05-13""#, "RFC 3339");
        rejected(user_rt(), &u, r#"meta.lastModified co "2011""#, "dateTime");
        rejected(user_rt(), &u, r#"meta.created sw "2010""#, "dateTime");
    }

    #[test]
    fn multi_valued_attributes_match_any_value() {
        let (u, o) = (entra_user(), okta_user());
        check(
            user_rt(),
            &u,
            &[
                (r#"emails.value eq "test.user@home.example""#, true),
                (r#"emails.value eq "Test_User_11bb11bb@testuser.com""#, true),
                (r#"emails.value eq "nobody@x.example""#, false),
                // A complex attribute without a sub-attribute compares `value`.
                (r#"emails co "@HOME.example""#, true),
                (r#"emails ew "testuser.com""#, true),
                (r#"emails eq "work""#, false),
                (r#"emails.type eq "home""#, true),
                // ne is "no value equals".
                (r#"emails.value ne "test.user@home.example""#, false),
                (r#"emails ne "nobody@x.example""#, true),
                // The RFC example, shape for shape.
                (r#"userName pr and (emails co "example.com" or emails.value co "example.org")"#, false),
                (r#"userName pr and (emails co "example.com" or emails.value co "home.example")"#, true),
                (r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#, true),
                (r#"schemas eq "urn:ietf:params:scim:schemas:core:2.0:Group""#, false),
            ],
        );
        check(
            user_rt(),
            &o,
            &[
                (r#"roles eq "member""#, true),
                (r#"roles[type eq "WindowsAzureActiveDirectoryRole" and display eq "Member"]"#, true),
                (r#"roles.primary eq true"#, false),
                (r#"emails.value eq "tu@alt.example""#, true),
                (r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#, false),
            ],
        );
    }

    #[test]
    fn value_paths_test_one_element_at_a_time() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                // Entra ID's form, parsed as emails[type eq "work" and value eq ...].
                (r#"emails[type eq "work"].value eq "Test_User_11bb11bb@testuser.com""#, true),
                (r#"emails[type eq "work"].value eq "test_user_11bb11bb@TESTUSER.com""#, true),
                // That address exists, but not on the work element.
                (r#"emails[type eq "work"].value eq "test.user@home.example""#, false),
                (r#"emails[type eq "home" and value co "@testuser.com"]"#, false),
                (r#"emails[type eq "work" and value co "@testuser.com"]"#, true),
                (r#"emails[type eq "home" or primary eq true]"#, true),
                (r#"emails[not (type eq "work")]"#, true),
                (r#"emails[type eq "other"]"#, false),
                (r#"emails[value pr]"#, true),
                (r#"phoneNumbers[value pr]"#, false),
                (r#"roles[value pr]"#, false),
                (r#"addresses[type eq "work"]"#, false),
                // Single-valued complex attributes take a value filter too.
                (r#"name[givenName eq "GIVENNAME" and familyName sw "family"]"#, true),
                (r#"name[givenName eq "x"]"#, false),
                (
                    &format!(
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq \"{MANAGER}\"]"
                    ),
                    true,
                ),
                (r#"manager[displayName co "boss"]"#, true),
            ],
        );
        // An element that is not an object satisfies nothing.
        let odd = json!({"emails": ["a@x.example", null, {"type": "work"}]});
        check(user_rt(), &odd, &[(r#"emails[not (type eq "home")]"#, true), (r#"emails[not (type pr)]"#, false)]);
    }

    #[test]
    fn groups_and_members() {
        let g = group();
        check(
            group_rt(),
            &g,
            &[
                (r#"members eq "u1""#, true),
                (r#"members eq "u2""#, true),
                (r#"members eq "u3""#, false),
                (r#"members[value eq "u1"]"#, true),
                (r#"members[value eq "u1" and type eq "User"]"#, false),
                (r#"members.$ref sw "https://fedkey.example/""#, true),
                (r#"members.display co "@x.example""#, true),
                // Entra's membership check.
                (r#"id eq "g-7f4bc1a3" and members eq "u1""#, true),
                (r#"id eq "g-7f4bc1a3" and members eq "u9""#, false),
                (r#"id eq "G-7F4BC1A3" and members eq "u1""#, false),
                (r#"displayName eq "engineering""#, true),
                (r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "Engineering""#, true),
                (r#"urn:ietf:params:scim:schemas:core:2.0:Group:id eq "g-7f4bc1a3""#, true),
                ("members pr", true),
                ("externalId eq 8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", true),
            ],
        );
        let empty = json!({"id": "g2", "displayName": "Empty", "members": []});
        check(group_rt(), &empty, &[("members pr", false), (r#"members eq "u1""#, false), ("members eq null", true)]);
        // Attributes of the other resource type are unknown.
        rejected(group_rt(), &g, r#"userName eq "x""#, "userName");
        rejected(user_rt(), &entra_user(), r#"members eq "x""#, "members");
    }

    #[test]
    fn unquoted_values_and_extension_attributes() {
        let mut o = okta_user();
        check(
            user_rt(),
            &o,
            &[("externalId eq jyoung", true), ("externalId eq JYOUNG", false), ("userName eq jyoung", false)],
        );
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                (r#"department eq "retail""#, true),
                (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Retail""#, true),
                (r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT eq "Retail""#, true),
                (r#"department eq "Sales""#, false),
                (&format!("manager eq \"{MANAGER}\""), true),
                (&format!("manager.value eq \"{MANAGER}\""), true),
                (
                    &format!(
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"{MANAGER}\""
                    ),
                    true,
                ),
                (r#"manager eq "someone-else""#, false),
                (r#"manager.displayName sw "the""#, true),
                ("costCenter pr", false),
                // The core URN does not reach extension attributes.
                (r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "Test""#, true),
            ],
        );
        rejected(user_rt(), &u, r#"urn:ietf:params:scim:schemas:core:2.0:User:department eq "Retail""#, "department");
        // An extension attribute is read under its URN only, whatever the key's case.
        o["department"] = json!("Retail");
        check(user_rt(), &o, &[(r#"department eq "Retail""#, false), ("department pr", false)]);
        o["Urn:Ietf:Params:Scim:Schemas:Extension:Enterprise:2.0:User"] = json!({"Department": "Retail"});
        check(user_rt(), &o, &[(r#"department eq "Retail""#, true)]);
    }

    #[test]
    fn presence() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                ("userName pr", true),
                ("title pr", false),
                ("title eq null", true),
                ("title ne null", false),
                ("preferredLanguage pr", false),
                ("nickName pr", false),
                ("roles pr", false),
                ("addresses pr", false),
                ("emails pr", true),
                ("emails.value pr", true),
                ("emails ne null", true),
                ("userName eq null", false),
                // An element with a type but an empty value is a present node.
                ("phoneNumbers pr", true),
                ("phoneNumbers.value pr", false),
                ("name pr", true),
                ("name.middleName pr", false),
                ("manager pr", true),
                ("meta.version pr", true),
                ("active pr", true),
                ("id pr and externalId pr and meta pr and schemas pr", true),
            ],
        );
        let blank = json!({"userName": "x", "name": {"givenName": "", "familyName": null}, "emails": [{}, null], "active": false});
        check(
            user_rt(),
            &blank,
            &[
                ("name pr", false),
                ("emails pr", false),
                ("active pr", true),
                ("id pr", false),
                ("meta.created pr", false),
            ],
        );
    }

    #[test]
    fn logical_operators() {
        let u = entra_user();
        check(
            user_rt(),
            &u,
            &[
                (r#"not (userName eq "x")"#, true),
                (r#"not (userName pr)"#, false),
                (r#"not (not (active eq true))"#, true),
                (r#"userName pr and title pr"#, false),
                (r#"title pr or userName pr"#, true),
                (r#"title pr or nickName pr"#, false),
                (r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#, true),
                (r#"not (emails[type eq "work"])"#, false),
                (r#"userName eq "x" or userName eq "y" or displayName eq "test user""#, true),
            ],
        );
    }

    #[test]
    fn keys_are_matched_case_insensitively() {
        let odd = json!({"USERNAME": "bob", "Emails": [{"Value": "b@x.example", "TYPE": "work"}], "META": {"LastModified": "2020-01-01T00:00:00Z"}});
        check(
            user_rt(),
            &odd,
            &[
                (r#"userName eq "Bob""#, true),
                (r#"emails[type eq "work"].value eq "b@x.example""#, true),
                (r#"meta.lastModified ge "2020-01-01T00:00:00Z""#, true),
            ],
        );
        // The exact key wins over a case variant.
        let both = json!({"userName": "exact", "username": "variant"});
        check(user_rt(), &both, &[(r#"userName eq "exact""#, true), (r#"userName eq "variant""#, false)]);
    }

    #[test]
    fn invalid_filters_are_400_invalid_filter() {
        let u = entra_user();
        let rt = user_rt();
        rejected(rt, &u, r#"nickname2 eq "x""#, "nickname2");
        rejected(rt, &u, r#"emails.nope pr"#, "emails.nope");
        rejected(rt, &u, r#"meta.etag pr"#, "meta.etag");
        rejected(rt, &u, r#"id.value eq "x""#, "id.value");
        rejected(rt, &u, r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "x""#, "displayName");
        rejected(rt, &u, r#"urn:example:other:id eq "x""#, "urn:example:other:id");
        rejected(rt, &u, r#"active co "t""#, "boolean");
        rejected(rt, &u, r#"active sw "t""#, "boolean");
        rejected(rt, &u, "active gt true", "boolean");
        rejected(rt, &u, "active le false", "boolean");
        rejected(rt, &u, r#"emails.primary ge true"#, "boolean");
        rejected(rt, &u, r#"x509Certificates.value gt "MII""#, "binary");
        rejected(rt, &u, r#"name eq "x""#, "complex");
        rejected(rt, &u, r#"meta co "x""#, "complex");
        rejected(rt, &u, r#"userName gt null"#, "null");
        rejected(rt, &u, r#"emails[foo eq "x"]"#, "foo");
        rejected(rt, &u, r#"emails[emails.value eq "x"]"#, "emails.value");
        rejected(rt, &u, r#"userName[value eq "x"]"#, "not a complex attribute");
        // Errors do not depend on evaluation order or on the data.
        rejected(rt, &u, r#"userName pr or active gt true"#, "boolean");
        rejected(rt, &json!({}), r#"userName pr or active gt true"#, "boolean");
        rejected(rt, &u, r#"title pr and nickname2 pr"#, "nickname2");
        rejected(rt, &u, r#"not (emails[type eq "work" and bogus pr])"#, "bogus");
        // Binary values allow the exact string operators.
        let cert = json!({"x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJ"}]});
        check(rt, &cert, &[(r#"x509Certificates.value sw "MII""#, true), (r#"x509Certificates sw "mii""#, false)]);
        // A hand-built value path on a sub-attribute is refused too.
        let f = Filter::ValuePath(
            AttrPath { uri: None, name: "emails".into(), sub: Some("value".into()) },
            Box::new(Filter::Present(AttrPath { uri: None, name: "type".into(), sub: None })),
        );
        assert_eq!(matches(rt, &u, &f).unwrap_err().scim_type, Some(ScimType::InvalidFilter));
    }

    #[test]
    fn malformed_resources_do_not_match() {
        let rt = user_rt();
        for doc in [
            json!(null),
            json!("userName"),
            json!([1, 2]),
            json!({"userName": 5, "emails": "a@b", "name": "x", "active": {"x": 1}, "meta": []}),
            json!({"emails": [[{"value": "a@b"}]], "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": "x"}),
        ] {
            check(
                rt,
                &doc,
                &[
                    (r#"userName eq "5""#, false),
                    (r#"emails[value eq "a@b"]"#, false),
                    (r#"name.givenName pr"#, false),
                    ("active eq true", false),
                    (r#"meta.lastModified gt "2000-01-01T00:00:00Z""#, false),
                    (r#"department pr"#, false),
                ],
            );
        }
        // A bare value under a multi-valued attribute is its single value.
        check(
            rt,
            &json!({"emails": {"value": "a@b", "type": "work"}}),
            &[(r#"emails[type eq "work"].value eq "a@b""#, true)],
        );
    }

    #[test]
    fn value_filters_run_against_one_value() {
        let f = |attr: &'static AttributeDef, src: &str| compile_value_filter(attr, &parse(src).unwrap());
        // dateTimes chronologically, across offsets and precisions.
        let created =
            f(&META, r#"created ge "2011-05-13T06:42:34+02:00" and created lt "2011-05-13T04:42:35Z""#).unwrap();
        assert!(created.matches(&json!({"created": "2011-05-13T04:42:34.000Z"})));
        assert!(!created.matches(&json!({"created": "2011-05-13T04:42:33Z"})));
        // Strings by the sub-attribute's caseExact; a value that is not an object never matches.
        let emails = crate::schema::schema(USER).unwrap().attribute("emails").unwrap();
        let work = f(emails, r#"type eq "WORK" and not (primary eq false)"#).unwrap();
        assert!(work.matches(&json!({"type": "work", "primary": "True"})));
        assert!(work.matches(&json!({"Type": "Work"})));
        assert!(!work.matches(&json!({"type": "work", "primary": false})));
        assert!(!work.matches(&json!("work")));
        let version = f(&META, r#"version eq "W/\"A\"""#).unwrap();
        assert!(!version.matches(&json!({"version": "W/\"a\""})), "meta.version is case-exact");
        // The same errors as inside the brackets of a list filter.
        for (attr, src, needle) in [
            (emails, r#"bogus eq "x""#, "unknown sub-attribute"),
            (emails, "primary co true", "does not apply"),
            (emails, r#"type[value eq "x"]"#, "not a complex attribute"),
            (&META, "created eq 3 or created gt \"yesterday\"", "not an RFC 3339 date-time"),
            (&ID, "value pr", "not a complex attribute"),
        ] {
            let e = f(attr, src).unwrap_err();
            assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidFilter)), "{src}");
            assert!(e.detail.contains(needle), "{src}: {}", e.detail);
            let whole = Filter::ValuePath(path(None, attr.name, None), Box::new(parse(src).unwrap()));
            assert_eq!(compile(user_rt(), &whole).err().map(|e| e.detail), Some(e.detail), "{src}");
        }
    }

    #[test]
    fn compiled_filters_run_over_many_resources() {
        let f = compile(user_rt(), &parse(r#"emails[type eq "work"] and active eq true"#).unwrap()).unwrap();
        let users = [entra_user(), okta_user(), json!({})];
        let hits: Vec<bool> = users.iter().map(|u| f.matches(u)).collect();
        assert_eq!(hits, [true, false, false]);
    }

    #[test]
    fn compare_values_orders_by_type_and_case() {
        let user = crate::schema::schema(USER).unwrap();
        let user_name = user.attribute("userName").unwrap();
        let active = user.attribute("active").unwrap();
        let emails = user.attribute("emails").unwrap();
        let (id, created) = (&ID, &META_SUBS[1]);
        use Ordering::*;
        assert_eq!(compare_values(user_name, &json!("alice"), &json!("Bob")), Less);
        assert_eq!(compare_values(user_name, &json!("BOB"), &json!("bob")), Equal);
        assert_eq!(compare_values(id, &json!("alice"), &json!("Bob")), Greater);
        assert_eq!(compare_values(id, &json!("BOB"), &json!("bob")), Less);
        assert_eq!(compare_values(active, &json!(false), &json!("True")), Less);
        assert_eq!(compare_values(created, &json!("2011-05-13T06:00:00+02:00"), &json!("2011-05-13T04:30:00Z")), Less);
        assert_eq!(compare_values(created, &json!("2011-05-13T06:00:00+02:00"), &json!("2011-05-13T04:00:00Z")), Equal);
        // Missing and mistyped values go last.
        assert_eq!(compare_values(user_name, &json!("zed"), &Value::Null), Less);
        assert_eq!(compare_values(user_name, &json!(7), &json!("aaron")), Greater);
        assert_eq!(compare_values(created, &json!("not a date"), &json!("1970-01-01T00:00:00Z")), Greater);
        assert_eq!(compare_values(user_name, &Value::Null, &Value::Null), Equal);
        // Multi-valued complex: the primary value, else the first.
        let a = json!([{"value": "z@x"}, {"value": "a@x", "primary": true}]);
        let b = json!([{"value": "m@x"}, {"value": "b@x"}]);
        assert_eq!(compare_values(emails, &a, &b), Less);
        assert_eq!(compare_values(emails, &b, &json!([])), Less);
        let numbers = common("n", AttrType::Decimal, false, "");
        assert_eq!(compare_values(&numbers, &json!(10), &json!(9.5)), Greater);
        assert_eq!(compare_values(&numbers, &json!([2, 1]), &json!(3)), Less);
    }

    #[test]
    fn sort_values_follow_the_rfc() {
        let rt = user_rt();
        let p = |s: &str| match parse(&format!("{s} pr")).unwrap() {
            Filter::Present(p) => p,
            other => panic!("{other:?}"),
        };
        let u = entra_user();
        let (def, v) = sort_value(rt, &u, &p("emails.value")).unwrap();
        assert_eq!((def.name, v), ("value", &json!("Test_User_11bb11bb@testuser.com")));
        let (def, v) = sort_value(rt, &u, &p("emails")).unwrap();
        assert_eq!((def.name, v["type"].as_str()), ("emails", Some("work")));
        let o = okta_user();
        // No primary: the first.
        assert_eq!(sort_value(rt, &o, &p("emails.value")).unwrap().1, &json!("test.user@okta.local"));
        assert_eq!(sort_value(rt, &u, &p("manager.displayName")).unwrap().1, &json!("The Boss"));
        assert_eq!(sort_value(rt, &u, &p("meta.lastModified")).unwrap().1, &json!("2011-05-13T04:42:34Z"));
        assert_eq!(sort_value(rt, &o, &p("title")).unwrap().1, &Value::Null);
        assert_eq!(sort_value(rt, &o, &p("roles.display")).unwrap().1, &json!("Member"));
        let e = sort_value(rt, &u, &p("bogus")).unwrap_err();
        assert_eq!((e.status_code(), e.scim_type), (400, Some(ScimType::InvalidValue)));

        let mut users = [
            json!({"id": "1", "userName": "carol"}),
            json!({"id": "2"}),
            json!({"id": "3", "userName": "Alice"}),
            json!({"id": "4", "userName": "bob"}),
        ];
        users.sort_by(|a, b| {
            let (def, x) = sort_value(rt, a, &p("userName")).unwrap();
            let (_, y) = sort_value(rt, b, &p("userName")).unwrap();
            compare_values(def, x, y)
        });
        let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["3", "4", "1", "2"]);
    }

    // --- properties ---------------------------------------------------------------------

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            prop::sample::select(vec!["", "work", "Work", "u1", "True", "x@y.example", "2011-05-13T04:42:34Z", "é"])
                .prop_map(Value::from),
            "\\PC{0,6}".prop_map(Value::from),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let keys =
            prop::sample::select(vec!["value", "type", "primary", "display", "givenName", "lastModified", "Value"]);
        arb_scalar().prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    fn arb_resource() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "id",
            "externalId",
            "userName",
            "USERNAME",
            "active",
            "title",
            "emails",
            "name",
            "members",
            "displayName",
            "meta",
            "schemas",
            "roles",
            ENTERPRISE_USER,
        ]);
        let random = prop::collection::btree_map(keys, arb_json(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
        // The fixtures, with one member possibly replaced by noise.
        let fixture =
            (prop::sample::select(vec![entra_user(), okta_user(), group()]), any::<prop::sample::Index>(), arb_json())
                .prop_map(|(mut doc, i, noise)| {
                    if let Some(obj) = doc.as_object_mut() {
                        let keys: Vec<String> = obj.keys().cloned().collect();
                        if i.index(4) == 0 {
                            obj.insert(i.get(&keys).clone(), noise);
                        }
                    }
                    doc
                });
        prop_oneof![2 => random, 1 => fixture]
    }

    fn path(uri: Option<&str>, name: &str, sub: Option<&str>) -> AttrPath {
        AttrPath { uri: uri.map(str::to_owned), name: name.into(), sub: sub.map(str::to_owned) }
    }

    /// Top-level paths of a resource type, mostly valid, and the complex attributes with
    /// the sub-attribute names a value filter on them may use.
    #[allow(clippy::type_complexity)]
    fn vocabulary(user: bool) -> (Vec<AttrPath>, Vec<(&'static str, Vec<&'static str>)>) {
        let mut paths = vec![
            path(None, "id", None),
            path(None, "externalId", None),
            path(None, "meta", Some("lastModified")),
            path(None, "meta", Some("resourceType")),
            path(None, "schemas", None),
            path(None, "displayName", None),
            path(None, "bogus", None),
        ];
        let mut complex = vec![("meta", vec!["lastModified", "resourceType", "version"])];
        if user {
            paths.extend([
                path(None, "userName", None),
                path(None, "title", None),
                path(None, "active", None),
                path(None, "emails", None),
                path(None, "emails", Some("value")),
                path(None, "emails", Some("primary")),
                path(None, "name", Some("givenName")),
                path(None, "x509Certificates", Some("value")),
                path(Some(ENTERPRISE_USER), "manager", None),
                path(None, "department", None),
                path(Some(USER), "id", None),
            ]);
            complex.extend([
                ("emails", vec!["value", "type", "primary", "display"]),
                ("name", vec!["givenName", "familyName"]),
                ("roles", vec!["value", "primary"]),
                ("manager", vec!["value", "displayName"]),
            ]);
        } else {
            paths.extend([
                path(None, "members", None),
                path(None, "members", Some("value")),
                path(None, "members", Some("display")),
                path(Some(GROUP), "displayName", None),
            ]);
            complex.push(("members", vec!["value", "display", "type", "$ref"]));
        }
        (paths, complex)
    }

    fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            4 => prop::sample::select(vec!["", "work", "WORK", "u1", "True", "x@y.example", "é", "Member"])
                .prop_map(|s| CompValue::Str(s.into())),
            2 => prop::sample::select(vec!["2011-05-13T04:42:34Z", "2024-01-01T00:00:00+02:00", "2011-05-13T04:42:34.5-07:00"])
                .prop_map(|s| CompValue::Str(s.into())),
            1 => (-3i64..3).prop_map(|n| CompValue::Num(n.into())),
            2 => any::<bool>().prop_map(CompValue::Bool),
            1 => Just(CompValue::Null),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        use CompareOp::*;
        prop::sample::select(vec![Eq, Eq, Eq, Ne, Ne, Co, Sw, Ew, Gt, Ge, Lt, Le])
    }

    fn arb_leaf(paths: Vec<AttrPath>) -> BoxedStrategy<Filter> {
        let paths = prop::sample::select(paths);
        prop_oneof![
            1 => paths.clone().prop_map(Filter::Present),
            3 => (paths, arb_op(), arb_value()).prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
        ]
        .boxed()
    }

    fn arb_tree(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
        leaf.prop_recursive(depth, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Filter::Not(Box::new(a))),
            ]
        })
        .boxed()
    }

    /// A resource type with a filter built from its vocabulary, value filters included.
    fn arb_case() -> impl Strategy<Value = (&'static ResourceTypeDef, Filter)> {
        any::<bool>().prop_flat_map(|user| {
            let rt = if user { user_rt() } else { group_rt() };
            let (paths, complex) = vocabulary(user);
            let value_path = prop::sample::select(complex).prop_flat_map(|(attr, subs)| {
                let subs = subs.into_iter().map(|s| path(None, s, None)).collect();
                arb_tree(arb_leaf(subs), 2)
                    .prop_map(move |inner| Filter::ValuePath(path(None, attr, None), Box::new(inner)))
            });
            let leaf = prop_oneof![3 => arb_leaf(paths), 1 => value_path].boxed();
            (Just(rt), arb_tree(leaf, 3))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn not_is_negation((rt, f) in arb_case(), r in arb_resource()) {
            let plain = matches(rt, &r, &f);
            let negated = matches(rt, &r, &Filter::Not(Box::new(f.clone())));
            match (plain, negated) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, !b, "{}", f),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{}: {:?} vs {:?}", f, a, b),
            }
        }

        #[test]
        fn errors_do_not_depend_on_the_data((rt, f) in arb_case(), a in arb_resource(), b in arb_resource()) {
            let on_a = matches(rt, &a, &f).map_err(|e| e.detail);
            prop_assert_eq!(on_a.is_err(), matches(rt, &b, &f).is_err(), "{}", f);
            prop_assert_eq!(on_a.err(), compile(rt, &f).err().map(|e| e.detail));
        }

        #[test]
        fn ne_is_not_eq((rt, f) in arb_case(), r in arb_resource()) {
            // Every `ne` in the filter against its `not (eq)` spelling.
            fn rewrite(f: &Filter) -> Filter {
                match f {
                    Filter::And(a, b) => Filter::And(Box::new(rewrite(a)), Box::new(rewrite(b))),
                    Filter::Or(a, b) => Filter::Or(Box::new(rewrite(a)), Box::new(rewrite(b))),
                    Filter::Not(a) => Filter::Not(Box::new(rewrite(a))),
                    Filter::ValuePath(p, a) => Filter::ValuePath(p.clone(), Box::new(rewrite(a))),
                    Filter::Compare(p, CompareOp::Ne, v) => {
                        Filter::Not(Box::new(Filter::Compare(p.clone(), CompareOp::Eq, v.clone())))
                    }
                    other => other.clone(),
                }
            }
            let rewritten = rewrite(&f);
            prop_assert_eq!(matches(rt, &r, &f).ok(), matches(rt, &r, &rewritten).ok(), "{}", f);
        }

        #[test]
        fn eq_null_is_not_present(user in any::<bool>(), i in any::<prop::sample::Index>(), r in arb_resource()) {
            let rt = if user { user_rt() } else { group_rt() };
            let paths = vocabulary(user).0;
            let p = i.get(&paths).clone();
            let eq_null = matches(rt, &r, &Filter::Compare(p.clone(), CompareOp::Eq, CompValue::Null));
            let ne_null = matches(rt, &r, &Filter::Compare(p.clone(), CompareOp::Ne, CompValue::Null));
            let pr = matches(rt, &r, &Filter::Present(p));
            prop_assert_eq!(eq_null.ok(), pr.as_ref().ok().map(|m| !m));
            prop_assert_eq!(ne_null.ok(), pr.ok());
        }

        #[test]
        fn printed_filters_evaluate_alike((rt, f) in arb_case(), r in arb_resource()) {
            let reparsed = parse(&f.to_string()).unwrap();
            prop_assert_eq!(matches(rt, &r, &f).ok(), matches(rt, &r, &reparsed).ok());
        }

        #[test]
        fn compare_values_is_antisymmetric(i in any::<prop::sample::Index>(), a in arb_json(), b in arb_json()) {
            let paths = vocabulary(true).0;
            if let Ok((loc, sub)) = locate(user_rt(), i.get(&paths), ScimType::InvalidValue) {
                let def = sub.unwrap_or(loc.attribute);
                prop_assert_eq!(compare_values(def, &a, &b), compare_values(def, &b, &a).reverse());
                prop_assert_eq!(compare_values(def, &a, &a), Ordering::Equal);
            }
        }

        #[test]
        fn sort_value_never_panics(i in any::<prop::sample::Index>(), r in arb_resource()) {
            let paths = vocabulary(true).0;
            if let Ok((def, v)) = sort_value(user_rt(), &r, i.get(&paths)) {
                let _ = compare_values(def, v, &r);
            }
        }
    }
}
