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
//! - Value filters (`emails[type eq "work"]`) are compiled and run by the list-filter
//!   evaluator ([`crate::eval::compile_value_filter`]): a PATCH selects exactly the values
//!   a list filter `emails[type eq "work"]` matches on, with the same type, case and
//!   `dateTime` rules, and rejects exactly the filters it rejects.
//!
//! The engine runs in stages, one module each: `parse` reads the
//! body, `resolve` names each path's attribute and compiles its value filter, `apply`
//! performs the operations with the helpers of `elements` (writing values) and `coerce`
//! (checking them).

mod apply;
mod coerce;
mod elements;
mod parse;
mod resolve;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter;
use crate::schema::Mutability;
use resolve::Target;

pub use apply::apply;
pub use parse::{OpKind, PatchOp, PatchPath, parse_request};

/// URN of a PatchOp request body.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Longest `path` accepted, in bytes.
pub const MAX_PATH_LEN: usize = filter::MAX_FILTER_LEN + 1024;

// ---------------------------------------------------------------------------------------
// Small helpers shared by the stages

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
