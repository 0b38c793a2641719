//! The smallest PATCH that makes a target's resource agree with what the mapping wants.
//!
//! Only the attributes the mapping manages are compared ([`ManagedAttr`]); everything else
//! the target holds (its own attributes, `id`, `meta`, `schemas`) is left alone. Values are
//! compared the way the schema says: strings case-insensitively unless `caseExact`,
//! multi-valued attributes as unordered collections, `"True"` as `true`, `null`/empty as
//! absent, read-only sub-attributes and a `$ref` we did not send ignored, and
//! `primary: false` the same as no `primary`; in the values of a multi-valued attribute,
//! sub-attributes only the target holds are ignored. Operations:
//! - a simple single-valued attribute that differs: `replace` with its path (`add` when the
//!   target lacks it);
//! - a single-valued complex attribute (`name`, `manager`): one operation per differing
//!   sub-attribute (`name.givenName`), so the target's merge semantics cannot keep a stale
//!   sub-attribute;
//! - a multi-valued attribute that differs: `replace` of the whole attribute;
//! - a managed attribute now absent: `remove`.

use fedkey_scim::ScimError;
use fedkey_scim::eval;
use fedkey_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use fedkey_scim::json::lookup;
use fedkey_scim::patch::{OpKind, PATCH_OP_SCHEMA, PatchOp, PatchPath};
use fedkey_scim::resource::normalize_value;
use fedkey_scim::schema::{AttrType, AttributeDef, ResourceTypeDef};
use serde_json::{Map, Value, json};

/// One attribute (or sub-attribute of a single-valued complex attribute) the mapping owns.
#[derive(Debug, Clone, Copy)]
pub struct ManagedAttr {
    /// The extension URN holding the attribute; `None` for the core schema.
    pub extension: Option<&'static str>,
    pub attribute: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl PartialEq for ManagedAttr {
    fn eq(&self, other: &Self) -> bool {
        self.extension == other.extension
            && self.attribute.name == other.attribute.name
            && self.sub.map(|s| s.name) == other.sub.map(|s| s.name)
    }
}

impl ManagedAttr {
    /// Resolves `[URN:]attr[.sub]` (or `externalId`) against `rt`; `None` if unknown.
    pub fn resolve(rt: &ResourceTypeDef, path: &str) -> Option<ManagedAttr> {
        if path.eq_ignore_ascii_case("externalId") {
            return Some(ManagedAttr::external_id());
        }
        let p = fedkey_scim::resource::parse_attr_path(path).ok()?;
        if p.name.is_empty() {
            return None;
        }
        let r = rt.resolve(&p)?;
        let extension = (r.schema.id != rt.schema).then_some(r.schema.id);
        Some(ManagedAttr { extension, attribute: r.attribute, sub: r.sub })
    }

    pub fn external_id() -> ManagedAttr {
        ManagedAttr { extension: None, attribute: &eval::EXTERNAL_ID, sub: None }
    }

    /// The PATCH path naming this attribute.
    pub fn path(&self) -> PatchPath {
        PatchPath::Attribute {
            attr: AttrPath {
                uri: self.extension.map(str::to_owned),
                name: self.attribute.name.to_owned(),
                sub: self.sub.map(|s| s.name.to_owned()),
            },
            filter: None,
        }
    }

    fn def(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attribute)
    }

    fn with_sub(&self, sub: &'static AttributeDef) -> ManagedAttr {
        ManagedAttr { sub: Some(sub), ..*self }
    }

    /// The value at this attribute in a resource in wire layout.
    fn get<'v>(&self, resource: &'v Value) -> Option<&'v Value> {
        let container = match self.extension {
            Some(urn) => lookup(resource, urn)?,
            None => resource,
        };
        let v = lookup(container, self.attribute.name)?;
        match self.sub {
            Some(sub) => lookup(v, sub.name),
            None => Some(v),
        }
    }
}

/// PATCH operations that make `remote`'s managed User attributes equal to `desired`'s.
pub fn user_patch(remote: &Value, desired: &Value, managed: &[ManagedAttr]) -> Vec<PatchOp> {
    resource_patch(remote, desired, managed)
}

/// Same for a Group's own attributes (`displayName`, `externalId`); members are
/// reconciled separately by [`group_members_patch`].
pub fn group_patch(remote: &Value, desired: &Value, managed: &[ManagedAttr]) -> Vec<PatchOp> {
    resource_patch(remote, desired, managed)
}

/// PATCH operations for any resource type (the managed attributes carry their
/// definitions); see the module documentation.
pub fn resource_patch(remote: &Value, desired: &Value, managed: &[ManagedAttr]) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    let mut seen: Vec<ManagedAttr> = Vec::new();
    for m in managed {
        if seen.contains(m) {
            continue;
        }
        seen.push(*m);
        diff_attr(m, remote, desired, &mut ops);
    }
    ops
}

fn diff_attr(m: &ManagedAttr, remote: &Value, desired: &Value, ops: &mut Vec<PatchOp>) {
    let def = m.def();
    let d = m.get(desired).and_then(|v| canonical(def, v));
    let r = m.get(remote).and_then(|v| canonical(def, v));
    match (d, r) {
        (None, None) => {}
        (None, Some(_)) => ops.push(PatchOp { op: OpKind::Remove, path: Some(m.path()), value: None }),
        (Some(d), None) => ops.push(PatchOp { op: OpKind::Add, path: Some(m.path()), value: Some(d) }),
        (Some(d), Some(r)) if same(def, &d, &r) => {}
        (Some(d), Some(r)) => {
            if m.sub.is_none() && def.ty == AttrType::Complex && !def.multi_valued {
                diff_sub_attributes(m, &d, &r, ops);
            } else {
                ops.push(PatchOp { op: OpKind::Replace, path: Some(m.path()), value: Some(d) });
            }
        }
    }
}

/// One operation per differing sub-attribute of a single-valued complex attribute.
fn diff_sub_attributes(m: &ManagedAttr, d: &Value, r: &Value, ops: &mut Vec<PatchOp>) {
    for sub in m.attribute.sub_attributes {
        let (ds, rs) = (lookup(d, sub.name), lookup(r, sub.name));
        if ds.is_none() && sub.name == "$ref" {
            continue;
        }
        if same_opt(sub, ds, rs) {
            continue;
        }
        let at = m.with_sub(sub);
        ops.push(match (ds, rs) {
            (None, _) => PatchOp { op: OpKind::Remove, path: Some(at.path()), value: None },
            (Some(v), None) => PatchOp { op: OpKind::Add, path: Some(at.path()), value: Some(v.clone()) },
            (Some(v), Some(_)) => PatchOp { op: OpKind::Replace, path: Some(at.path()), value: Some(v.clone()) },
        });
    }
}

/// The value in canonical form (registry names, booleans, no nulls or read-only
/// sub-attributes, no `primary: false`); `None` when absent. A value the schema does not
/// accept is kept as it is, so it compares unequal to any valid one.
fn canonical(def: &AttributeDef, v: &Value) -> Option<Value> {
    let mut v = match normalize_value(def, v) {
        Ok(v) => v?,
        Err(_) => return Some(v.clone()),
    };
    let drop_false_primary = |o: &mut Map<String, Value>| {
        if o.get("primary") == Some(&Value::Bool(false)) {
            o.remove("primary");
        }
    };
    match &mut v {
        Value::Array(items) => {
            items.iter_mut().filter_map(Value::as_object_mut).for_each(drop_false_primary);
            // Repeated values mean nothing (and `add` would not repeat them).
            let mut unique: Vec<Value> = Vec::with_capacity(items.len());
            for item in items.drain(..) {
                if !unique.iter().any(|u| same_single(def, u, &item)) {
                    unique.push(item);
                }
            }
            *items = unique;
        }
        Value::Object(o) => drop_false_primary(o),
        _ => {}
    }
    Some(v)
}

fn same_opt(def: &AttributeDef, a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.and_then(|v| canonical(def, v));
    let b = b.and_then(|v| canonical(def, v));
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same(def, &a, &b),
        _ => false,
    }
}

/// Whether the desired canonical value `a` equals the remote one `b`.
fn same(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    if def.multi_valued
        && let (Value::Array(xs), Value::Array(ys)) = (a, b)
    {
        if xs.len() != ys.len() {
            return false;
        }
        // The most specific desired values pick their partner first, so a bare `{value}`
        // cannot take the remote value a fuller one needs.
        let mut order: Vec<&Value> = xs.iter().collect();
        order.sort_by_key(|x| std::cmp::Reverse(x.as_object().map_or(0, Map::len)));
        let mut used = vec![false; ys.len()];
        return order.into_iter().all(|x| {
            let hit = ys.iter().enumerate().find(|(i, y)| !used[*i] && same_element(def, x, y));
            match hit {
                Some((i, _)) => {
                    used[i] = true;
                    true
                }
                None => false,
            }
        });
    }
    same_single(def, a, b)
}

/// A desired element `x` of a multi-valued complex attribute against a remote one `y`.
/// Sub-attributes only the target has (a `display` or `type` it fills in) are not a
/// difference: the only way to drop them would be to replace the whole attribute on every
/// run, for ever.
fn same_element(def: &AttributeDef, x: &Value, y: &Value) -> bool {
    match (def.ty, x, y) {
        (AttrType::Complex, Value::Object(xo), Value::Object(yo)) => {
            let trimmed: Map<String, Value> =
                yo.iter().filter(|(k, _)| xo.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            same_single(def, x, &Value::Object(trimmed))
        }
        _ => same_single(def, x, y),
    }
}

/// Equality of one value (one element of a multi-valued attribute).
fn same_single(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    match (def.ty, a, b) {
        (AttrType::Complex, Value::Object(x), Value::Object(y)) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            keys.into_iter().all(|k| {
                let (xv, yv) = (x.get(k), y.get(k));
                // A `$ref` the target computed is not a difference.
                if k == "$ref" && (xv.is_none() || yv.is_none()) {
                    return true;
                }
                match def.sub_attribute(k) {
                    Some(sub) => match (xv, yv) {
                        (Some(xv), Some(yv)) => same_single(sub, xv, yv),
                        _ => false,
                    },
                    None => xv == yv,
                }
            })
        }
        (AttrType::String, Value::String(x), Value::String(y)) if !def.case_exact => {
            x.to_lowercase() == y.to_lowercase()
        }
        (AttrType::Decimal | AttrType::Integer, Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The operation of the `deactivate` leaver policy: `active` set to false.
pub fn deactivate() -> PatchOp {
    PatchOp {
        op: OpKind::Replace,
        path: Some(PatchPath::Attribute {
            attr: AttrPath { uri: None, name: "active".into(), sub: None },
            filter: None,
        }),
        value: Some(Value::Bool(false)),
    }
}

/// For targets without PATCH: the whole body to `PUT`, i.e. `remote` with `ops` applied by
/// the SCIM PATCH engine (so attributes the mapping does not manage are kept) and without
/// `meta`. Fails only if the remote resource does not fit the schema where `ops` write.
pub fn replacement_body(rt: &ResourceTypeDef, remote: &Value, ops: &[PatchOp]) -> Result<Value, ScimError> {
    let mut body = remote.clone();
    if !ops.is_empty() {
        // fedkey's own operations: RFC 7644 requests, read as such.
        fedkey_scim::patch::apply(rt, &mut body, ops, &fedkey_scim::Profile::RFC)?;
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("meta");
    }
    Ok(body)
}

/// Membership changes: one `remove` per member to drop, with the path
/// `members[value eq "id"]` (the form every target accepts), then one `add` carrying all
/// new members. Ids compare exactly; duplicates are ignored.
pub fn group_members_patch(remote_member_ids: &[String], desired_member_ids: &[String]) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    let mut removed: Vec<&str> = Vec::new();
    for id in remote_member_ids {
        if !desired_member_ids.contains(id) && !removed.contains(&id.as_str()) {
            removed.push(id);
            let filter = Filter::Compare(
                AttrPath { uri: None, name: "value".into(), sub: None },
                CompareOp::Eq,
                CompValue::Str(id.clone()),
            );
            ops.push(PatchOp {
                op: OpKind::Remove,
                path: Some(PatchPath::Attribute {
                    attr: AttrPath { uri: None, name: "members".into(), sub: None },
                    filter: Some(filter),
                }),
                value: None,
            });
        }
    }
    let mut added: Vec<&str> = Vec::new();
    for id in desired_member_ids {
        if !remote_member_ids.contains(id) && !added.contains(&id.as_str()) {
            added.push(id);
        }
    }
    if !added.is_empty() {
        ops.push(PatchOp {
            op: OpKind::Add,
            path: Some(PatchPath::Attribute {
                attr: AttrPath { uri: None, name: "members".into(), sub: None },
                filter: None,
            }),
            value: Some(Value::Array(added.into_iter().map(|id| json!({"value": id})).collect())),
        });
    }
    ops
}

/// One operation as RFC 7644 PatchOp JSON, with a lowercase `op`.
pub fn op_json(op: &PatchOp) -> Value {
    let mut o = Map::new();
    o.insert("op".into(), Value::String(op.op.as_str().to_owned()));
    if let Some(p) = &op.path {
        o.insert("path".into(), Value::String(p.to_string()));
    }
    if let Some(v) = &op.value {
        o.insert("value".into(), v.clone());
    }
    Value::Object(o)
}

/// A whole PatchOp request body.
pub fn patch_request(ops: &[PatchOp]) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops.iter().map(op_json).collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_scim::patch;
    use fedkey_scim::schema::{self, ENTERPRISE_USER};
    use proptest::prelude::*;

    fn managed(paths: &[&str]) -> Vec<ManagedAttr> {
        paths.iter().map(|p| ManagedAttr::resolve(&schema::RESOURCE_TYPES[0], p).unwrap()).collect()
    }

    fn ops_json(ops: &[PatchOp]) -> Value {
        Value::Array(ops.iter().map(op_json).collect())
    }

    #[test]
    fn equal_resources_need_no_operations() {
        let desired = json!({"schemas": [schema::USER, ENTERPRISE_USER], "externalId": "d1", "userName": "Alice@X.com",
            "active": true, "name": {"givenName": "Alice"},
            "emails": [{"value": "a@x.com", "type": "work", "primary": true}, {"value": "b@x.com", "type": "home"}],
            ENTERPRISE_USER: {"manager": {"value": "m1"}, "department": "R&D"}});
        // The target's own view: other order, other case where caseExact is false, its own
        // attributes and read-only/computed sub-attributes.
        let remote = json!({"schemas": [ENTERPRISE_USER, schema::USER], "id": "t-9", "meta": {"version": "W/\"1\""},
            "externalId": "d1", "userName": "alice@x.com", "active": "True", "nickName": "theirs",
            "name": {"givenName": "alice"},
            "emails": [{"value": "b@x.com", "type": "home", "primary": false}, {"value": "A@X.COM", "type": "Work", "primary": true}],
            ENTERPRISE_USER: {"manager": {"value": "m1", "$ref": "https://t/Users/m1", "displayName": "Boss"}, "department": "r&d"}});
        let m = managed(&[
            "externalId",
            "userName",
            "active",
            "name",
            "emails",
            &format!("{ENTERPRISE_USER}:manager"),
            &format!("{ENTERPRISE_USER}:department"),
            "title",
        ]);
        assert_eq!(user_patch(&remote, &desired, &m), vec![]);
        // A target that decorates multi-valued values (Entra's roles) is not a difference;
        // a value the target lacks or has in addition is.
        let m = managed(&["roles"]);
        let desired = json!({"roles": [{"value": "admin"}]});
        let decorated =
            json!({"roles": [{"value": "Admin", "display": "Admin", "type": "WindowsAzureActiveDirectoryRole"}]});
        assert_eq!(user_patch(&decorated, &desired, &m), vec![]);
        let m = managed(&["emails"]);
        let want = json!({"emails": [{"value": "a@x"}, {"value": "a@x", "type": "work"}]});
        let have = json!({"emails": [{"value": "a@x", "type": "work"}, {"value": "a@x"}]});
        assert_eq!(user_patch(&have, &want, &m), vec![]);
        let m = managed(&["roles"]);
        let extra = json!({"roles": [{"value": "admin"}, {"value": "owner"}]});
        assert_eq!(
            ops_json(&user_patch(&extra, &desired, &m)),
            json!([{"op": "replace", "path": "roles", "value": [{"value": "admin"}]}])
        );
    }

    #[test]
    fn changes_become_minimal_operations() {
        let remote = json!({"id": "t1", "externalId": "ABC", "userName": "bob", "title": "Dev", "nickName": "keep",
            "name": {"givenName": "Bob", "middleName": "J", "familyName": "Smith"},
            "emails": [{"value": "b@x.com", "type": "work"}]});
        let desired = json!({"externalId": "abc", "userName": "bob", "displayName": "Bob Smith",
            "name": {"givenName": "Robert", "familyName": "Smith"},
            "emails": [{"value": "b@x.com", "type": "work"}, {"value": "b@home.com", "type": "home"}],
            ENTERPRISE_USER: {"department": "Ops"}});
        let m = managed(&[
            "externalId",
            "userName",
            "title",
            "displayName",
            "name",
            "emails",
            &format!("{ENTERPRISE_USER}:department"),
        ]);
        let ops = user_patch(&remote, &desired, &m);
        assert_eq!(
            ops_json(&ops),
            json!([
                {"op": "replace", "path": "externalId", "value": "abc"},
                {"op": "remove", "path": "title"},
                {"op": "add", "path": "displayName", "value": "Bob Smith"},
                {"op": "replace", "path": "name.givenName", "value": "Robert"},
                {"op": "remove", "path": "name.middleName"},
                {"op": "replace", "path": "emails", "value": [{"value": "b@x.com", "type": "work"}, {"value": "b@home.com", "type": "home"}]},
                {"op": "add", "path": format!("{ENTERPRISE_USER}:department"), "value": "Ops"},
            ])
        );
        // Applying them with the SCIM PATCH engine gives the desired managed attributes
        // and keeps the target's own `nickName`.
        let mut after = remote.clone();
        patch::apply(&schema::RESOURCE_TYPES[0], &mut after, &ops, &fedkey_scim::Profile::RFC).unwrap();
        assert_eq!(user_patch(&after, &desired, &m), vec![]);
        assert_eq!(after["nickName"], "keep");
        assert_eq!(after["name"], json!({"givenName": "Robert", "familyName": "Smith"}));
    }

    #[test]
    fn a_sub_attribute_rule_compares_only_that_sub_attribute() {
        let remote = json!({"name": {"givenName": "Al", "familyName": "Theirs"}});
        let desired = json!({"name": {"givenName": "Alan"}});
        let ops = user_patch(&remote, &desired, &managed(&["name.givenName"]));
        assert_eq!(ops_json(&ops), json!([{"op": "replace", "path": "name.givenName", "value": "Alan"}]));
    }

    #[test]
    fn member_changes_are_removals_by_filter_and_one_add() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ops = group_members_patch(&s(&["u1", "u2", "we\"ird", "u2"]), &s(&["u2", "u3", "u4", "u3"]));
        assert_eq!(
            patch_request(&ops),
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "remove", "path": "members[value eq \"we\\\"ird\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u3"}, {"value": "u4"}]},
            ]})
        );
        assert!(group_members_patch(&s(&["a", "b"]), &s(&["b", "a"])).is_empty());
        // The serialised body parses back and applies to a group.
        let parsed = patch::parse_request(&patch_request(&ops), &fedkey_scim::Profile::RFC).unwrap();
        let mut g = json!({"displayName": "G", "members": [{"value": "u1"}, {"value": "u2"}, {"value": "we\"ird"}]});
        patch::apply(&schema::RESOURCE_TYPES[1], &mut g, &parsed, &fedkey_scim::Profile::RFC).unwrap();
        let ids: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
        assert_eq!(ids, ["u2", "u3", "u4"]);
    }

    fn opt<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        prop_oneof![Just(None), s.prop_map(Some)]
    }

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "A", "b", "Bob", "bob", "c d", "x"]).prop_map(str::to_owned)
    }

    prop_compose! {
        fn email()(value in word(), ty in opt(prop::sample::select(vec!["work", "home", "Work"]))) -> Value {
            let mut e = json!({"value": format!("{value}@x.com")});
            if let Some(t) = ty { e["type"] = json!(t); }
            e
        }
    }

    prop_compose! {
        fn user()(
            user_name in word(), display in opt(word()), title in opt(word()), active in opt(any::<bool>()),
            given in opt(word()), family in opt(word()), emails in prop::collection::vec(email(), 0..3),
            primary in any::<bool>(), dept in opt(word()), mgr in opt(word()), ext in opt(word()), nick in opt(word()),
        ) -> Value {
            let mut u = json!({"userName": user_name});
            let mut put = |k: &str, v: Option<Value>| if let Some(v) = v { u[k] = v; };
            put("displayName", display.map(Value::from));
            put("title", title.map(Value::from));
            put("active", active.map(Value::from));
            put("externalId", ext.map(Value::from));
            put("nickName", nick.map(Value::from));
            let mut name = Map::new();
            if let Some(g) = given { name.insert("givenName".into(), g.into()); }
            if let Some(f) = family { name.insert("familyName".into(), f.into()); }
            if !name.is_empty() { u["name"] = Value::Object(name); }
            let mut emails = emails;
            if primary && let Some(first) = emails.first_mut() { first["primary"] = json!(true); }
            if !emails.is_empty() { u["emails"] = Value::Array(emails); }
            let mut ent = Map::new();
            if let Some(d) = dept { ent.insert("department".into(), d.into()); }
            if let Some(m) = mgr { ent.insert("manager".into(), json!({"value": m})); }
            if !ent.is_empty() { u[ENTERPRISE_USER] = Value::Object(ent); }
            u
        }
    }

    proptest! {
        /// Applying the diff with the SCIM PATCH engine makes the managed attributes
        /// equal (a second diff is empty) and leaves the unmanaged ones alone.
        #[test]
        fn applying_the_diff_reaches_the_desired_state(remote in user(), desired in user()) {
            let m = managed(&["externalId", "userName", "displayName", "title", "active", "name", "emails",
                &format!("{ENTERPRISE_USER}:department"), &format!("{ENTERPRISE_USER}:manager")]);
            let ops = user_patch(&remote, &desired, &m);
            let body = patch_request(&ops);
            let mut after = remote.clone();
            if !ops.is_empty() {
                let parsed = patch::parse_request(&body, &fedkey_scim::Profile::RFC).unwrap();
                prop_assert_eq!(&parsed, &ops);
                patch::apply(&schema::RESOURCE_TYPES[0], &mut after, &parsed, &fedkey_scim::Profile::RFC).unwrap();
            }
            prop_assert_eq!(user_patch(&after, &desired, &m), vec![]);
            prop_assert_eq!(after.get("nickName"), remote.get("nickName"));
            if remote == desired {
                prop_assert!(ops.is_empty());
            }
        }
    }
}
