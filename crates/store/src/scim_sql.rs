//! SCIM filter → SQL, for both backends.
//!
//! Contract used by the server:
//! - [`translate`]`(backend, rt, filter)` → a `SqlFragment` condition over the row alias `r`
//!   of `scim_resources`, binds numbered from `$1`; errors are those of
//!   [`fedkey_scim::eval::compile`] (400 `invalidFilter`), so a filter is rejected exactly
//!   when the in-memory evaluator rejects it.
//! - [`order_by`]`(backend, rt, path)` → a `sortBy` expression (errors as
//!   [`fedkey_scim::eval::sort_value`]: 400 `invalidValue`).
//! - [`case_folded`]`(rt, body)` → the query document stored as `scim_resources.body_ci`.
//!
//! The reference semantics are [`fedkey_scim::eval`]: for every filter, the rows a
//! translated filter selects are the resources for which `eval::compile(rt, f)?.matches(json)`
//! holds, where `json` is the resource as the server presents it (body, `id`,
//! `externalId`, `meta`, `members`/`groups`). The store's integration tests check this on
//! random data and filters, on both backends.
//!
//! # The query document (`body_ci`)
//!
//! SQL cannot reproduce the evaluator's rules on the raw body portably: SQLite's `lower()`
//! is ASCII-only and PostgreSQL's depends on the locale; keys are matched
//! case-insensitively; `null`s are absent; a scalar stands for a one-element array and an
//! array under a single-valued attribute is matched element by element; `pr` looks into
//! nested objects; `"True"` is a boolean. So the rules are applied once, in Rust, when a
//! resource is written, producing a normalised document that SQL can compare naively:
//!
//! - every registry attribute the body has (found as the evaluator finds it: exact key,
//!   else ASCII-case-insensitively; extension attributes under their schema URN) is stored
//!   under its canonical name as an **array** of its non-null values, keeping only values
//!   of the attribute's type: strings (Unicode lower-cased when `caseExact` is false — the
//!   same folding as the evaluator), booleans (`"True"`/`"false"` strings converted),
//!   numbers, and objects for complex attributes, each normalised the same way for its
//!   sub-attributes;
//! - `"#p"` holds the paths that are *present* (RFC 7644 `pr`, computed by the evaluator's
//!   rule, so values dropped above for their type still count), at the top level keyed
//!   `attr`, `attr.sub` or `urn:…:attr[.sub]`, and inside each complex element keyed by
//!   sub-attribute;
//! - `"#s"` holds the `sortBy` key of every path (the primary element's value, else the
//!   first's, folded as for comparison), so ordering needs no array walking;
//! - `"#d"` holds the folded `display` this resource shows as a member or group of others.
//!
//! Attributes served from elsewhere are not in the document: `id`, `externalId` and
//! `meta.*` come from columns, `members`/`groups` from `scim_members`, and `password`
//! (`returned: never`) is never matched. A NUL character (which PostgreSQL's `jsonb` and
//! `text` cannot hold) is stored, and bound, as U+FFFD.
//!
//! # Indexed `eq`
//!
//! `id eq` → `r.id`, `externalId eq` → `r.external_id`, `userName eq` (User) /
//! `displayName eq` (Group) → `r.name_key`, `emails[.value] eq` and `emails[value eq …]` →
//! `scim_values`, `members eq` / `groups eq` → `scim_members`. Where the key is only a
//! narrowing (`name_key`, `scim_values`), the exact query-document test is ANDed, and the
//! narrowing is added only where the comparison must hold (not under `not`). **Writers must
//! compute `name_key` and the `emails.value` keys with [`fold`]**, or those rows are not
//! found. Side tables are reached with correlated `EXISTS`: PostgreSQL turns it into an
//! index-driven semi-join; SQLite probes the covering index once per row of the
//! directory and type, parsing no JSON. (A correlated `IN` would let SQLite drive from the
//! index only with `ANALYZE` statistics, and is re-evaluated per row otherwise — minutes
//! on large directories — so it is not used.)
//!
//! # Known differences from the presented resource
//!
//! The store does not know the server's base URL, so `meta.location` and the `$ref` of
//! members and groups are treated as absent (`pr` is false, comparisons never match). A
//! user's `groups[].type` is `"direct"`. Member and group ids are compared as stored; ids
//! are lower-case UUIDs, so this agrees with the case-insensitive `members.value`.
//! `sortBy` on `userName`/`displayName` orders by `name_key` (see above); on `members` /
//! `groups` by the first membership in the order the store loads them (`ORDER BY` id in
//! the database's collation, as `scim_list` presents them).
//!
//! On PostgreSQL the document is `TEXT` cast to `jsonb` where read (the `Any` driver cannot
//! bind `jsonb`); string comparisons and ordering use `COLLATE "C"` (code point order, as
//! the evaluator), whatever the database's collation.

use fedkey_core::Timestamp;
use fedkey_scim::ScimError;
use fedkey_scim::eval;
use fedkey_scim::eval::{EXTERNAL_ID, ID, META, SCHEMAS};
use fedkey_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use fedkey_scim::json::{as_bool, is_present, lookup, parse_bool, push_values, representative};
use fedkey_scim::schema::{self, AttrType, AttributeDef, ResourceTypeDef, Returned, Uniqueness};
use serde_json::{Map, Value, json};

use crate::Backend;
use crate::db::Substring;
use crate::scim::{SqlFragment, SqlValue};

/// Keys of the query document that are not attribute names (which cannot start with `#`).
const PRESENT: &str = "#p";
const SORT: &str = "#s";
const DISPLAY: &str = "#d";
/// Where a group's body keeps the `display` a client sent for each member (by member id);
/// the query document keeps them folded under the same key.
pub const MEMBER_DISPLAY: &str = "$memberDisplay";

const TRUE: &str = "(1=1)";
const FALSE: &str = "(1=0)";

/// The case folding of the evaluator (Unicode lower-case, character by character, no
/// locale). Writers must compute `name_key` and the indexed `emails.value` keys with it:
/// the `eq` fast paths look them up by `fold(literal)`. (`str::to_lowercase` differs: it
/// turns a word-final `Σ` into `ς`, where this gives `σ` as the evaluator does.)
pub fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// A string as stored in the query document or bound: folded if asked, NUL replaced.
fn text_key(s: &str, fold_case: bool) -> String {
    let s = if fold_case { fold(s) } else { s.to_owned() };
    if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s }
}

fn folds(def: &AttributeDef) -> bool {
    def.ty == AttrType::String && !def.case_exact
}

/// Where the values of a top-level attribute live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The query document, under the extension URN if any.
    Doc(Option<&'static str>),
    Id,
    ExternalId,
    Meta,
    /// A group's members (`scim_members` by `group_id`).
    Members,
    /// The groups a resource belongs to (`scim_members` by `member_id`).
    Groups,
    /// Never returned (`password`): never matches.
    Hidden,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    src: Source,
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
}

fn doc_source(rt: &ResourceTypeDef, container: Option<&'static str>, attr: &AttributeDef) -> Source {
    let core = container.is_none();
    if attr.returned == Returned::Never {
        Source::Hidden
    } else if core && rt.schema.eq_ignore_ascii_case(schema::GROUP) && attr.name == "members" {
        Source::Members
    } else if core && rt.schema.eq_ignore_ascii_case(schema::USER) && attr.name == "groups" {
        Source::Groups
    } else {
        Source::Doc(container)
    }
}

/// Resolves a path as the evaluator does: the registry, then the common attributes
/// (bare or under the core schema URN).
fn locate(rt: &ResourceTypeDef, path: &AttrPath) -> Option<Loc> {
    if let Some(r) = rt.resolve(path) {
        let container = (!r.schema.id.eq_ignore_ascii_case(rt.schema)).then_some(r.schema.id);
        return Some(Loc { src: doc_source(rt, container, r.attribute), attr: r.attribute, sub: r.sub });
    }
    if !path.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(rt.schema)) {
        return None;
    }
    let (src, attr) =
        [(Source::Id, &ID), (Source::ExternalId, &EXTERNAL_ID), (Source::Doc(None), &SCHEMAS), (Source::Meta, &META)]
            .into_iter()
            .find(|(_, a)| a.name.eq_ignore_ascii_case(&path.name))?;
    let sub = match &path.sub {
        None => None,
        Some(s) => Some(attr.sub_attribute(s)?),
    };
    Some(Loc { src, attr, sub })
}

/// `attr`, `attr.sub`, `urn:…:attr[.sub]`: keys of `#p` and `#s`.
fn path_key(container: Option<&str>, attr: &str, sub: Option<&str>) -> String {
    let mut k = match container {
        Some(urn) => format!("{urn}:{attr}"),
        None => attr.to_owned(),
    };
    if let Some(s) = sub {
        k.push('.');
        k.push_str(s);
    }
    k
}

// ---------------------------------------------------------------------------------------
// The query document.

/// The query document stored as `body_ci` for a resource of type `rt` (see the module
/// documentation): the body's attributes normalised, case-insensitive strings lower-cased
/// with the evaluator's folding, plus presence flags, sort keys and the display name.
pub fn case_folded(rt: &ResourceTypeDef, body: &Value) -> Value {
    let mut root = Map::new();
    let mut present = Map::new();
    let mut sort = Map::new();
    for sch in rt.schemas() {
        let container = (!sch.id.eq_ignore_ascii_case(rt.schema)).then_some(sch.id);
        let base = match container {
            None => Some(body),
            Some(urn) => lookup(body, urn),
        };
        let mut attrs: Vec<&'static AttributeDef> = sch.attributes.iter().collect();
        if container.is_none() {
            attrs.push(&SCHEMAS);
        }
        let mut obj = Map::new();
        for attr in attrs {
            if doc_source(rt, container, attr) != Source::Doc(container) {
                continue;
            }
            let mut values = Vec::new();
            push_values(base.and_then(|b| lookup(b, attr.name)), &mut values);
            if values.iter().any(|v| is_present(v)) {
                present.insert(path_key(container, attr.name, None), Value::Bool(true));
            }
            let normalised: Vec<Value> = values.iter().filter_map(|v| normalise(attr, v)).collect();
            if !normalised.is_empty() {
                obj.insert(attr.name.to_owned(), Value::Array(normalised));
            }
            for sub in attr.sub_attributes {
                let mut sub_values = Vec::new();
                for v in &values {
                    push_values(lookup(v, sub.name), &mut sub_values);
                }
                if sub_values.iter().any(|v| is_present(v)) {
                    present.insert(path_key(container, attr.name, Some(sub.name)), Value::Bool(true));
                }
            }
            for sub in std::iter::once(None).chain(attr.sub_attributes.iter().map(Some)) {
                let path = AttrPath {
                    uri: container.map(str::to_owned),
                    name: attr.name.to_owned(),
                    sub: sub.map(|s| s.name.to_owned()),
                };
                if let Ok((def, v)) = eval::sort_value(rt, body, &path)
                    && let Some(key) = sort_key(def, v)
                {
                    sort.insert(path_key(container, attr.name, sub.map(|s| s.name)), key);
                }
            }
        }
        match container {
            None => root.extend(obj),
            Some(urn) if !obj.is_empty() => {
                root.insert(urn.to_owned(), Value::Object(obj));
            }
            Some(_) => {}
        }
    }
    if !present.is_empty() {
        root.insert(PRESENT.to_owned(), Value::Object(present));
    }
    if !sort.is_empty() {
        root.insert(SORT.to_owned(), Value::Object(sort));
    }
    // What the store shows as `display` of this resource in memberships (see scim.rs).
    let display_attr = if rt.schema.eq_ignore_ascii_case(schema::USER) { "userName" } else { "displayName" };
    if let Some(d) = body.get(display_attr).and_then(Value::as_str) {
        root.insert(DISPLAY.to_owned(), Value::String(text_key(d, true)));
    }
    if let Some(Value::Object(sent)) = body.get(MEMBER_DISPLAY) {
        let folded: Map<String, Value> = sent
            .iter()
            .filter_map(|(id, d)| d.as_str().map(|d| (id.clone(), Value::String(text_key(d, true)))))
            .collect();
        root.insert(MEMBER_DISPLAY.to_owned(), Value::Object(folded));
    }
    Value::Object(root)
}

/// One value of `def`, as the query document stores it; `None` for a value of another
/// type (which no comparison matches).
fn normalise(def: &AttributeDef, v: &Value) -> Option<Value> {
    match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            v.as_str().map(|s| Value::String(text_key(s, folds(def))))
        }
        AttrType::Boolean => as_bool(v).map(Value::Bool),
        AttrType::Integer | AttrType::Decimal => v.is_number().then(|| v.clone()),
        // No registry attribute outside `meta` is a dateTime; microseconds if one appears.
        AttrType::DateTime => v.as_str().and_then(Timestamp::parse_rfc3339).map(|t| Value::from(t.0)),
        AttrType::Complex => {
            if !v.is_object() {
                return None;
            }
            let mut out = Map::new();
            let mut present = Map::new();
            for sub in def.sub_attributes {
                let mut values = Vec::new();
                push_values(lookup(v, sub.name), &mut values);
                if values.iter().any(|v| is_present(v)) {
                    present.insert(sub.name.to_owned(), Value::Bool(true));
                }
                let normalised: Vec<Value> = values.iter().filter_map(|v| normalise(sub, v)).collect();
                if !normalised.is_empty() {
                    out.insert(sub.name.to_owned(), Value::Array(normalised));
                }
            }
            if !present.is_empty() {
                out.insert(PRESENT.to_owned(), Value::Object(present));
            }
            Some(Value::Object(out))
        }
    }
}

/// The evaluator's sort key (`eval::compare_values`) as a JSON scalar that SQL orders the
/// same way; `None` sorts last.
fn sort_key(def: &AttributeDef, v: &Value) -> Option<Value> {
    let v = representative(v);
    match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            v.as_str().map(|s| Value::String(text_key(s, folds(def))))
        }
        AttrType::Boolean => as_bool(v).map(Value::Bool),
        AttrType::Integer | AttrType::Decimal => v.is_number().then(|| v.clone()),
        AttrType::DateTime => v.as_str().and_then(Timestamp::parse_rfc3339).map(|t| Value::from(t.0)),
        AttrType::Complex => match def.sub_attribute("value") {
            Some(sub) => sort_key(sub, lookup(v, sub.name)?),
            // Nothing to order by: every present value ties.
            None => is_present(v).then_some(Value::Bool(false)),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Filters.

/// Translates `filter` into a condition over `r` (see the module documentation).
/// Stands for the directory being listed in a translated fragment: the caller binds it as
/// `$1` (see `scim::renumber`), so an uncorrelated subquery can still seek by directory.
pub const LISTED_DIRECTORY: &str = "$0";

pub fn translate(backend: Backend, rt: &ResourceTypeDef, filter: &Filter) -> Result<SqlFragment, ScimError> {
    eval::compile(rt, filter)?;
    let mut b = Builder { backend, rt, binds: Vec::new(), aliases: 0 };
    let sql = b.node(&Ctx::Root, filter, true)?;
    Ok(SqlFragment { sql, binds: b.binds, pins_id: pins_id(filter) })
}

/// Whether every match of `filter` has one given id: `id eq "…"`, alone or and-ed with
/// anything (Entra ID checks a membership with `id eq "…" and members eq "…"`).
fn pins_id(filter: &Filter) -> bool {
    match filter {
        Filter::And(a, b) => pins_id(a) || pins_id(b),
        Filter::Compare(p, CompareOp::Eq, CompValue::Str(_)) => p.name.eq_ignore_ascii_case(ID.name) && p.sub.is_none(),
        _ => false,
    }
}

/// What a comparison tests each value against (mirrors the evaluator's `Test`). Text
/// literals are already folded when the attribute is case-insensitive; the stored side
/// is folded in the query document.
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
        literal: serde_json::Number,
    },
    /// Microseconds: `floor` of the literal, and whether the literal is exactly that.
    Date {
        op: CompareOp,
        floor: i64,
        exact: bool,
    },
    Never,
}

fn literal_text(v: &CompValue) -> Option<String> {
    match v {
        CompValue::Str(s) => Some(s.clone()),
        CompValue::Num(n) => Some(n.to_string()),
        CompValue::Bool(b) => Some(b.to_string()),
        CompValue::Null => None,
    }
}

fn build_test(rt: &ResourceTypeDef, def: &AttributeDef, op: CompareOp, value: &CompValue) -> Test {
    match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::Complex => {
            let fold_case = folds(def);
            let literal = literal_text(value).unwrap_or_default();
            Test::Text { op, literal: text_key(&literal, fold_case), fold: fold_case }
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
            CompValue::Str(s) => {
                date_literal(rt, s).map_or(Test::Never, |(floor, exact)| Test::Date { op, floor, exact })
            }
            _ => Test::Never,
        },
    }
}

/// The microsecond floor of an RFC 3339 literal and whether it is exact. Stored times
/// are whole microseconds; a literal may carry nanoseconds, leap seconds or an offset, so
/// its position relative to the truncated value is asked of the evaluator itself.
fn date_literal(rt: &ResourceTypeDef, s: &str) -> Option<(i64, bool)> {
    let t = Timestamp::parse_rfc3339(s)?.0;
    let stored = json!({"meta": {"created": Timestamp(t).to_rfc3339()}});
    let holds = |op| {
        let path = AttrPath { uri: None, name: "meta".into(), sub: Some("created".into()) };
        eval::compile(rt, &Filter::Compare(path, op, CompValue::Str(s.to_owned()))).is_ok_and(|f| f.matches(&stored))
    };
    if holds(CompareOp::Eq) {
        Some((t, true))
    } else if holds(CompareOp::Lt) {
        Some((t, false))
    } else {
        // Before 1970 the truncation went up.
        Some((t - 1, false))
    }
}

/// The filter context: the resource, or one element inside a value path.
#[derive(Debug, Clone)]
enum Ctx {
    Root,
    Elem(Elem),
}

#[derive(Debug, Clone)]
enum Elem {
    /// An object of a query-document array; `expr` is its JSON in SQL.
    Doc { expr: String, parent: &'static AttributeDef },
    /// A `scim_members` row, as a member (`groups: false`) or as a group.
    Member { alias: String, groups: bool, parent: &'static AttributeDef },
    /// The resource's `meta` (columns).
    Meta,
}

impl Elem {
    fn parent(&self) -> &'static AttributeDef {
        match self {
            Elem::Doc { parent, .. } | Elem::Member { parent, .. } => parent,
            Elem::Meta => &META,
        }
    }
}

/// The values a path names.
#[derive(Debug, Clone)]
enum Target {
    Root(Loc),
    Elem(Elem, &'static AttributeDef),
}

impl Target {
    fn def(&self) -> &'static AttributeDef {
        match self {
            Target::Root(l) => l.sub.unwrap_or(l.attr),
            Target::Elem(_, d) => d,
        }
    }
}

/// A single value in SQL: an expression (possibly NULL), or a constant known in Rust.
enum Scalar {
    Expr { sql: String, nullable: bool, present: String },
    Const(Option<String>),
}

struct Builder<'a> {
    backend: Backend,
    rt: &'a ResourceTypeDef,
    binds: Vec<SqlValue>,
    aliases: usize,
}

fn internal(what: impl std::fmt::Display) -> ScimError {
    ScimError::new(500, None, format!("filter translation: {what}"))
}

impl Builder<'_> {
    fn bind(&mut self, v: SqlValue) -> String {
        self.binds.push(v);
        format!("${}", self.binds.len())
    }

    fn bind_text(&mut self, s: &str) -> String {
        self.bind(SqlValue::Text(text_key(s, false)))
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The query document of `r`.
    fn root(&self) -> String {
        self.backend.json_doc("r.body_ci")
    }

    /// `base` navigated by `keys`: a JSON path (SQLite) or a `->` chain (PostgreSQL).
    /// Keys are registry names, URNs and the `#` keys; anything else is refused rather
    /// than embedded.
    fn nav(&self, base: &str, keys: &[&str]) -> Result<String, ScimError> {
        for k in keys {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || "_-$:.#".contains(c)) {
                return Err(internal(format!("unexpected key {k:?}")));
            }
        }
        Ok(self.backend.json_path(base, keys))
    }

    /// A FROM item over the array at `keys`, with the SQL of one value: strings as text,
    /// booleans as 1/0 (SQLite) or 'true'/'false' (PostgreSQL), objects as JSON.
    fn each(&self, base: &str, keys: &[&str], alias: &str, objects: bool) -> Result<(String, String), ScimError> {
        let at = self.nav(base, keys)?;
        Ok(self.backend.json_elements(&at, alias, objects))
    }

    /// Whether the presence flag at `keys` is set.
    fn flag(&self, base: &str, keys: &[&str]) -> Result<String, ScimError> {
        let at = self.nav(base, keys)?;
        Ok(self.backend.json_is_set(&at))
    }

    fn node(&mut self, ctx: &Ctx, f: &Filter, positive: bool) -> Result<String, ScimError> {
        Ok(match f {
            Filter::And(a, b) => format!("({} AND {})", self.node(ctx, a, positive)?, self.node(ctx, b, positive)?),
            Filter::Or(a, b) => format!("({} OR {})", self.node(ctx, a, positive)?, self.node(ctx, b, positive)?),
            Filter::Not(a) => format!("(NOT {})", self.node(ctx, a, !positive)?),
            Filter::Present(p) => {
                let t = self.target(ctx, p)?;
                self.present(&t)?
            }
            Filter::Compare(p, op, v) => self.compare(ctx, p, *op, v, positive)?,
            Filter::ValuePath(p, inner) => self.value_path(ctx, p, inner, positive)?,
        })
    }

    fn target(&self, ctx: &Ctx, path: &AttrPath) -> Result<Target, ScimError> {
        match ctx {
            Ctx::Root => locate(self.rt, path).map(Target::Root),
            Ctx::Elem(el) => match (&path.uri, &path.sub) {
                (None, None) => el.parent().sub_attribute(&path.name).map(|d| Target::Elem(el.clone(), d)),
                _ => None,
            },
        }
        .ok_or_else(|| internal(format!("unresolved path {path}")))
    }

    fn compare(
        &mut self,
        ctx: &Ctx,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
        positive: bool,
    ) -> Result<String, ScimError> {
        let mut t = self.target(ctx, path)?;
        if let CompValue::Null = value {
            let p = self.present(&t)?;
            return match op {
                CompareOp::Eq => Ok(format!("(NOT {p})")),
                CompareOp::Ne => Ok(p),
                _ => Err(internal("null with an ordering operator")),
            };
        }
        if t.def().ty == AttrType::Complex {
            // A complex attribute compared as a whole compares its `value`.
            match &mut t {
                Target::Root(loc) if loc.sub.is_none() => {
                    loc.sub = Some(loc.attr.sub_attribute("value").ok_or_else(|| internal("no value"))?);
                }
                _ => return Err(internal("complex comparison")),
            }
        }
        let (negate, op) = match op {
            CompareOp::Ne => (true, CompareOp::Eq),
            op => (false, op),
        };
        let test = build_test(self.rt, t.def(), op, value);
        let mut sql = self.any(&t, &test)?;
        // Index narrowing, only where the comparison must hold for the row to match.
        if op == CompareOp::Eq
            && positive != negate
            && let (Target::Root(loc), Some(lit)) = (&t, literal_text(value))
        {
            if is_name_attr(loc) {
                let key = self.bind_text(&fold(&lit));
                sql = format!("(r.name_key = {key} AND {sql})");
            } else if is_emails(self.rt, loc) && loc.sub.is_some_and(|s| s.name == "value") {
                sql = format!("({} AND {sql})", self.emails_index(&lit));
            } else if matches!(loc.src, Source::Members | Source::Groups)
                && loc.sub.is_some_and(|s| s.name == "value")
                && let Test::Text { literal, .. } = &test
            {
                // The literal as the exact test compares it (folded or not).
                sql = format!("({} AND {sql})", self.members_index(loc.src == Source::Groups, literal));
            }
        }
        Ok(if negate { format!("(NOT {sql})") } else { sql })
    }

    fn value_path(&mut self, ctx: &Ctx, path: &AttrPath, inner: &Filter, positive: bool) -> Result<String, ScimError> {
        let Target::Root(loc) = self.target(ctx, path)? else {
            return Err(internal("nested value path"));
        };
        if loc.sub.is_some() || loc.attr.ty != AttrType::Complex {
            return Err(internal("value path on a non-complex attribute"));
        }
        Ok(match loc.src {
            Source::Doc(container) => {
                let e = self.alias("e");
                let keys = doc_keys(container, loc.attr.name);
                let (from, elem) = self.each(&self.root(), &keys, &e, true)?;
                let cond = self.node(&Ctx::Elem(Elem::Doc { expr: elem, parent: loc.attr }), inner, positive)?;
                let mut sql = format!("EXISTS (SELECT 1 FROM {from} WHERE {cond})");
                if positive && is_emails(self.rt, &loc) {
                    let mut required = Vec::new();
                    required_value_eqs(inner, &mut required);
                    for lit in required {
                        sql = format!("({} AND {sql})", self.emails_index(&lit));
                    }
                }
                sql
            }
            Source::Members | Source::Groups => {
                let groups = loc.src == Source::Groups;
                let m = self.alias("m");
                let rows = member_rows(&m, groups);
                let el = Elem::Member { alias: m.clone(), groups, parent: loc.attr };
                let cond = self.node(&Ctx::Elem(el), inner, positive)?;
                format!("EXISTS (SELECT 1 FROM scim_members {m} WHERE {rows} AND {cond})")
            }
            // Every presented resource has exactly one `meta`.
            Source::Meta => self.node(&Ctx::Elem(Elem::Meta), inner, positive)?,
            Source::Hidden => FALSE.to_owned(),
            Source::Id | Source::ExternalId => return Err(internal("value path on a simple attribute")),
        })
    }

    /// `scim_values` holds the folded `emails.value`s: a necessary condition an index
    /// answers, ANDed with the exact one. Uncorrelated, so both planners start from the
    /// `(attr, value_key)` index and look the few candidates up by primary key instead of
    /// probing once per row of the directory; the outer `r.directory_id` keeps directories apart.
    fn emails_index(&mut self, literal: &str) -> String {
        let v = self.alias("v");
        let key = self.bind_text(&fold(literal));
        format!(
            "r.id IN (SELECT {v}.resource_id FROM scim_values {v} WHERE {v}.attr = 'emails.value' AND {v}.value_key = {key})"
        )
    }

    /// `members eq` / `groups eq` the same way: the resources on the other side of the
    /// memberships of `literal`, from the primary key or the member-side index, ANDed with the
    /// exact (correlated) test, which also keeps directories apart.
    fn members_index(&mut self, groups: bool, literal: &str) -> String {
        let m = self.alias("n");
        let key = self.bind_text(literal);
        let (mine, other) = if groups { ("member_id", "group_id") } else { ("group_id", "member_id") };
        format!(
            "r.id IN (SELECT {m}.{mine} FROM scim_members {m} WHERE {m}.directory_id = {LISTED_DIRECTORY} AND {m}.{other} = {key})"
        )
    }

    fn present(&mut self, t: &Target) -> Result<String, ScimError> {
        match t {
            Target::Root(loc) => match loc.src {
                Source::Doc(c) => {
                    self.flag(&self.root(), &[PRESENT, &path_key(c, loc.attr.name, loc.sub.map(|s| s.name))])
                }
                Source::Id => Ok(TRUE.to_owned()),
                Source::ExternalId => Ok("(r.external_id IS NOT NULL AND r.external_id <> '')".to_owned()),
                Source::Meta => match loc.sub {
                    None => Ok(TRUE.to_owned()),
                    Some(sub) => Ok(scalar_present(&self.meta_scalar(sub))),
                },
                Source::Members | Source::Groups => {
                    let groups = loc.src == Source::Groups;
                    let m = self.alias("m");
                    let rows = member_rows(&m, groups);
                    let cond = match loc.sub {
                        None => TRUE.to_owned(),
                        Some(sub) => {
                            let sc = self.member_scalar(&m, groups, sub);
                            scalar_present(&sc)
                        }
                    };
                    Ok(format!("EXISTS (SELECT 1 FROM scim_members {m} WHERE {rows} AND {cond})"))
                }
                Source::Hidden => Ok(FALSE.to_owned()),
            },
            Target::Elem(el, sub) => match el {
                Elem::Doc { expr, .. } => self.flag(expr, &[PRESENT, sub.name]),
                Elem::Member { alias, groups, .. } => Ok(scalar_present(&self.member_scalar(alias, *groups, sub))),
                Elem::Meta => Ok(scalar_present(&self.meta_scalar(sub))),
            },
        }
    }

    /// Some value of `t` passes `test`.
    fn any(&mut self, t: &Target, test: &Test) -> Result<String, ScimError> {
        if let Test::Never = test {
            return Ok(FALSE.to_owned());
        }
        match t {
            Target::Root(loc) => match loc.src {
                Source::Doc(container) => {
                    let keys = doc_keys(container, loc.attr.name);
                    let s = self.alias("s");
                    let (from, val) = match loc.sub {
                        None => self.each(&self.root(), &keys, &s, false)?,
                        Some(sub) => {
                            let e = self.alias("e");
                            let (outer, elem) = self.each(&self.root(), &keys, &e, true)?;
                            let (inner, val) = self.each(&elem, &[sub.name], &s, false)?;
                            (format!("{outer}, {inner}"), val)
                        }
                    };
                    let cond = self.test_sql(&val, test);
                    Ok(format!("EXISTS (SELECT 1 FROM {from} WHERE {cond})"))
                }
                Source::Id => {
                    Ok(self
                        .scalar_test(&Scalar::Expr { sql: "r.id".into(), nullable: false, present: TRUE.into() }, test))
                }
                Source::ExternalId => {
                    let sc = Scalar::Expr { sql: "r.external_id".into(), nullable: true, present: String::new() };
                    Ok(self.scalar_test(&sc, test))
                }
                Source::Meta => {
                    let sub = loc.sub.ok_or_else(|| internal("meta compared as a whole"))?;
                    let sc = self.meta_scalar(sub);
                    Ok(self.scalar_test(&sc, test))
                }
                Source::Members | Source::Groups => {
                    let groups = loc.src == Source::Groups;
                    let sub = loc.sub.ok_or_else(|| internal("members compared as a whole"))?;
                    let m = self.alias("m");
                    let rows = member_rows(&m, groups);
                    let sc = self.member_scalar(&m, groups, sub);
                    let cond = self.scalar_test(&sc, test);
                    Ok(format!("EXISTS (SELECT 1 FROM scim_members {m} WHERE {rows} AND {cond})"))
                }
                Source::Hidden => Ok(FALSE.to_owned()),
            },
            Target::Elem(el, sub) => match el {
                Elem::Doc { expr, .. } => {
                    let s = self.alias("s");
                    let (from, val) = self.each(expr, &[sub.name], &s, false)?;
                    let cond = self.test_sql(&val, test);
                    Ok(format!("EXISTS (SELECT 1 FROM {from} WHERE {cond})"))
                }
                Elem::Member { alias, groups, .. } => {
                    let sc = self.member_scalar(alias, *groups, sub);
                    Ok(self.scalar_test(&sc, test))
                }
                Elem::Meta => {
                    let sc = self.meta_scalar(sub);
                    Ok(self.scalar_test(&sc, test))
                }
            },
        }
    }

    fn meta_scalar(&self, sub: &AttributeDef) -> Scalar {
        let column = |sql: &str| Scalar::Expr { sql: sql.to_owned(), nullable: false, present: TRUE.to_owned() };
        match sub.name {
            "created" => column("r.created_at"),
            "lastModified" => column("r.updated_at"),
            "version" => column(VERSION_SQL),
            "resourceType" => Scalar::Const(Some(self.rt.name.to_owned())),
            // `location` needs the server's base URL, which the store does not know.
            _ => Scalar::Const(None),
        }
    }

    fn member_scalar(&self, m: &str, groups: bool, sub: &AttributeDef) -> Scalar {
        let fixed = |sql: String| Scalar::Expr { sql, nullable: false, present: TRUE.to_owned() };
        match sub.name {
            "value" => fixed(format!("{m}.{}", if groups { "group_id" } else { "member_id" })),
            "type" if groups => fixed("'direct'".to_owned()),
            // Folded: `type` is case-insensitive.
            "type" => fixed(format!(
                "(CASE {m}.member_type WHEN 'User' THEN 'user' WHEN 'Group' THEN 'group' ELSE {m}.member_type END)"
            )),
            "display" => {
                let sql = self.display_sql(m, groups);
                Scalar::Expr { present: format!("({sql} IS NOT NULL AND {sql} <> '')"), sql, nullable: true }
            }
            // `$ref` needs the server's base URL.
            _ => Scalar::Const(None),
        }
    }

    /// The folded display name of the other side of membership row `m`.
    fn display_sql(&self, m: &str, groups: bool) -> String {
        let other = if groups { "group_id" } else { "member_id" };
        let d = format!("d_{m}");
        let value = self.backend.json_text(&format!("{d}.body_ci"), DISPLAY);
        let own = format!(
            "(SELECT {value} FROM scim_resources {d} WHERE {d}.directory_id = {m}.directory_id AND {d}.id = {m}.{other})"
        );
        if groups {
            return own;
        }
        // A group's member shows the display the client sent for it, if any (as presented).
        let sent = self.backend.json_text_at_key("r.body_ci", MEMBER_DISPLAY, &format!("{m}.member_id"));
        format!("COALESCE({sent}, {own})")
    }

    fn scalar_test(&mut self, sc: &Scalar, test: &Test) -> String {
        match sc {
            Scalar::Const(None) => FALSE.to_owned(),
            Scalar::Const(Some(v)) => (if const_holds(v, test) { TRUE } else { FALSE }).to_owned(),
            Scalar::Expr { sql, nullable, .. } => {
                let cond = self.test_sql(sql, test);
                if *nullable { format!("({sql} IS NOT NULL AND {cond})") } else { cond }
            }
        }
    }

    /// `test` on the non-null SQL value `val`.
    fn test_sql(&mut self, val: &str, test: &Test) -> String {
        let backend = self.backend;
        match test {
            Test::Text { op, literal, .. } => {
                let p = self.bind_text(literal);
                match op {
                    CompareOp::Eq => format!("({val} = {p})"),
                    CompareOp::Co => backend.substring_test(Substring::Contains, val, &p),
                    CompareOp::Sw => backend.substring_test(Substring::StartsWith, val, &p),
                    CompareOp::Ew => backend.substring_test(Substring::EndsWith, val, &p),
                    op => backend.text_order_test(val, sql_op(*op), &p),
                }
            }
            Test::Bool(b) => backend.json_bool_test(val, *b),
            // A number's text never holds a NUL, so it binds as `bind_text` would.
            Test::Num { op, literal } => backend.json_number_test(val, sql_op(*op), literal, &mut |v| self.bind(v)),
            Test::Date { op, floor, exact } => {
                let val = backend.json_integer(val);
                let (op, holds) = match (exact, op) {
                    (true, op) => (*op, true),
                    // Between `floor` and `floor + 1`: never equal.
                    (false, CompareOp::Eq) => (CompareOp::Eq, false),
                    (false, CompareOp::Gt | CompareOp::Ge) => (CompareOp::Gt, true),
                    (false, _) => (CompareOp::Le, true),
                };
                if !holds {
                    return FALSE.to_owned();
                }
                let p = self.bind(SqlValue::Int(*floor));
                format!("({val} {} {p})", sql_op(op))
            }
            Test::Never => FALSE.to_owned(),
        }
    }
}

const VERSION_SQL: &str = "('W/\"' || CAST(r.version AS TEXT) || '\"')";

fn sql_op(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Ne => "<>",
        CompareOp::Eq | CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "=",
    }
}

fn scalar_present(sc: &Scalar) -> String {
    match sc {
        Scalar::Expr { present, .. } => present.clone(),
        Scalar::Const(v) => (if v.as_deref().is_some_and(|s| !s.is_empty()) { TRUE } else { FALSE }).to_owned(),
    }
}

/// `test` on a constant string value.
fn const_holds(v: &str, test: &Test) -> bool {
    match test {
        Test::Text { op, literal, fold } => {
            let s = text_key(v, *fold);
            let (s, lit) = (s.as_str(), literal.as_str());
            match op {
                CompareOp::Eq => s == lit,
                CompareOp::Co => s.contains(lit),
                CompareOp::Sw => s.starts_with(lit),
                CompareOp::Ew => s.ends_with(lit),
                CompareOp::Gt => s > lit,
                CompareOp::Ge => s >= lit,
                CompareOp::Lt => s < lit,
                CompareOp::Le => s <= lit,
                CompareOp::Ne => s != lit,
            }
        }
        Test::Bool(b) => parse_bool(v) == Some(*b),
        Test::Num { .. } | Test::Date { .. } | Test::Never => false,
    }
}

fn doc_keys(container: Option<&'static str>, attr: &'static str) -> Vec<&'static str> {
    container.into_iter().chain(std::iter::once(attr)).collect()
}

fn member_rows(m: &str, groups: bool) -> String {
    let me = if groups { "member_id" } else { "group_id" };
    format!("{m}.directory_id = r.directory_id AND {m}.{me} = r.id")
}

/// `userName` of a User, `displayName` of a Group: kept lower-cased in `name_key`.
fn is_name_attr(loc: &Loc) -> bool {
    loc.src == Source::Doc(None)
        && loc.sub.is_none()
        && loc.attr.uniqueness == Uniqueness::Server
        && loc.attr.ty == AttrType::String
}

fn is_emails(rt: &ResourceTypeDef, loc: &Loc) -> bool {
    rt.schema.eq_ignore_ascii_case(schema::USER) && loc.src == Source::Doc(None) && loc.attr.name == "emails"
}

/// Literals of `value eq …` that every match of a value filter must satisfy.
fn required_value_eqs(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::And(a, b) => {
            required_value_eqs(a, out);
            required_value_eqs(b, out);
        }
        Filter::Compare(p, CompareOp::Eq, v)
            if p.uri.is_none() && p.sub.is_none() && p.name.eq_ignore_ascii_case("value") =>
        {
            out.extend(literal_text(v));
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Ordering.

/// The `sortBy` expression for `path`, ordering as [`eval::compare_values`] does:
/// ascending puts missing values last (descending, first). Ties need the caller's `r.id`.
pub fn order_by(backend: Backend, rt: &ResourceTypeDef, path: &AttrPath) -> Result<SqlFragment, ScimError> {
    let (def, _) = eval::sort_value(rt, &Value::Null, path)?;
    let loc = locate(rt, path).ok_or_else(|| internal(format!("unresolved path {path}")))?;
    // Strings in code point order; NULL (missing) greater than any value.
    let text = |sql: String, nullable: bool| backend.sort_text(&sql, nullable);
    // Every resource of the list has the same value (or none).
    let constant = || "r.resource_type".to_owned();
    let sql = match loc.src {
        Source::Doc(_) if is_name_attr(&loc) => text("r.name_key".into(), false),
        Source::Doc(container) => {
            let key = path_key(container, loc.attr.name, loc.sub.map(|s| s.name));
            let numeric = matches!(key_type(def), AttrType::Integer | AttrType::Decimal | AttrType::DateTime);
            backend.json_sort_key("r.body_ci", SORT, check_key(&key)?, numeric)
        }
        Source::Id => text("r.id".into(), false),
        Source::ExternalId => text("r.external_id".into(), true),
        Source::Meta => match loc.sub.map(|s| s.name) {
            Some("created") => "r.created_at".into(),
            Some("lastModified") => "r.updated_at".into(),
            Some("version") => text(VERSION_SQL.into(), false),
            _ => constant(),
        },
        Source::Members | Source::Groups => {
            let groups = loc.src == Source::Groups;
            let b = Builder { backend, rt, binds: Vec::new(), aliases: 0 };
            let sub = match loc.sub {
                Some(sub) => sub,
                None => loc.attr.sub_attribute("value").ok_or_else(|| internal("no value"))?,
            };
            match b.member_scalar("m", groups, sub) {
                Scalar::Expr { sql, .. } => {
                    let rows = member_rows("m", groups);
                    // The first in the order the store lists memberships (no primary).
                    let order = if groups { "m.group_id" } else { "m.member_id" };
                    text(format!("(SELECT {sql} FROM scim_members m WHERE {rows} ORDER BY {order} LIMIT 1)"), true)
                }
                Scalar::Const(_) => constant(),
            }
        }
        Source::Hidden => constant(),
    };
    Ok(SqlFragment { sql, binds: Vec::new(), pins_id: false })
}

/// The type of the keys `def` sorts by.
fn key_type(def: &AttributeDef) -> AttrType {
    match (def.ty, def.sub_attribute("value")) {
        (AttrType::Complex, Some(v)) => v.ty,
        (AttrType::Complex, None) => AttrType::Boolean,
        (ty, _) => ty,
    }
}

fn check_key(k: &str) -> Result<&str, ScimError> {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-$:.#".contains(c)) {
        Ok(k)
    } else {
        Err(internal(format!("unexpected key {k:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_scim::ScimType;
    use fedkey_scim::filter::parse;
    use fedkey_scim::schema::{ENTERPRISE_USER, resource_type};

    fn user_rt() -> &'static ResourceTypeDef {
        resource_type("User").unwrap()
    }

    #[test]
    fn query_document_normalises_as_the_evaluator_reads() {
        let body = json!({
            "USERNAME": "ÉLODIE@Example.com",
            "title": null,
            "Emails": [{"Value": "A@X.example", "type": "Work", "primary": "True"}, null, "loose@x"],
            "active": "False",
            "nickName": ["a", 5, {"x": ""}],
            "name": {"givenName": "", "familyName": "Ö"},
            "password": "secret",
            "Urn:Ietf:Params:Scim:Schemas:Extension:Enterprise:2.0:User": {"Department": "R&D\u{0}x"},
            "x509Certificates": [{"value": "MIIabc"}],
        });
        let d = case_folded(user_rt(), &body);
        assert_eq!(d["userName"], json!(["élodie@example.com"]));
        assert!(d.get("title").is_none());
        assert_eq!(
            d["emails"],
            json!([{"value": ["a@x.example"], "type": ["work"], "primary": [true], "#p": {"value": true, "type": true, "primary": true}}])
        );
        assert_eq!(d["active"], json!([false]));
        assert_eq!(d["nickName"], json!(["a"]));
        assert_eq!(d["x509Certificates"][0]["value"], json!(["MIIabc"]), "binary is case-exact");
        assert_eq!(d[ENTERPRISE_USER]["department"], json!(["r&d\u{FFFD}x"]));
        assert!(d.get("password").is_none() && d["#p"].get("password").is_none());
        let p = &d["#p"];
        for present in ["userName", "emails", "emails.value", "active", "nickName", "name", "name.familyName"] {
            assert_eq!(p[present], true, "{present}");
        }
        for absent in ["title", "name.givenName", "emails.display", "roles"] {
            assert!(p.get(absent).is_none(), "{absent}");
        }
        assert_eq!(p[format!("{ENTERPRISE_USER}:department")], true);
        let s = &d["#s"];
        assert_eq!(s["emails.value"], "a@x.example");
        assert_eq!(s["emails"], "a@x.example");
        assert_eq!(s["name"], false);
        assert_eq!(s["active"], false);
        // `display` reads the exact key only, as the store's membership loader does.
        assert!(d.get("#d").is_none());
        assert_eq!(case_folded(user_rt(), &json!({"userName": "Bob"}))["#d"], "bob");
    }

    #[test]
    fn translation_errors_are_the_evaluators() {
        for f in [r#"nickname2 eq "x""#, "active gt true", r#"meta.lastModified gt "2011""#, r#"name eq "x""#] {
            let f = parse(f).unwrap();
            let want = eval::compile(user_rt(), &f).unwrap_err();
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let got = translate(backend, user_rt(), &f).unwrap_err();
                assert_eq!((got.scim_type, &got.detail), (want.scim_type, &want.detail));
            }
        }
        let bad = AttrPath { uri: None, name: "bogus".into(), sub: None };
        assert_eq!(order_by(Backend::Sqlite, user_rt(), &bad).unwrap_err().scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn literals_are_bound_never_embedded() {
        let f = parse(r#"title eq "x' OR 1=1 --" or emails[value co "%_\\"] or userName eq "Robert'); DROP""#).unwrap();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let frag = translate(backend, user_rt(), &f).unwrap();
            assert!(
                !frag.sql.contains("OR 1=1") && !frag.sql.contains("DROP") && !frag.sql.contains('%'),
                "{}",
                frag.sql
            );
            assert!(frag.binds.contains(&SqlValue::Text("x' or 1=1 --".into())), "{:?}", frag.binds);
        }
    }

    #[test]
    fn date_literals_know_their_microsecond() {
        let rt = user_rt();
        assert_eq!(date_literal(rt, "1970-01-01T00:00:01Z"), Some((1_000_000, true)));
        assert_eq!(date_literal(rt, "1970-01-01T00:00:01.0000005Z"), Some((1_000_000, false)));
        assert_eq!(date_literal(rt, "1970-01-01T02:00:01.000001+02:00"), Some((1_000_001, true)));
        assert_eq!(date_literal(rt, "1969-12-31T23:59:59.9999995Z"), Some((-1, false)));
    }
}
