//! What an outbound trust sends: which directory users are in scope, which attributes
//! the target gets and from where, and which application roles and groups follow from
//! directory group membership. Stored per outbound trust as JSON (serde, camelCase).
//!
//! ```json
//! {"scopeFilter": "active eq true", "scopeGroups": [{"name": "Engineering"}],
//!  "userAttributes": [
//!    {"target": "userName", "source": {"copy": "emails[type eq \"work\"].value"}, "transforms": ["lower"]},
//!    {"target": "name.formatted", "source": {"join": {"paths": ["name.givenName", "name.familyName"], "separator": " "}}},
//!    {"target": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter", "source": {"constant": "CC-1"}}],
//!  "roles": [{"group": {"id": "2819c223-7f76-453a-919d-413861904646"}, "assign": {"appRole": "admin"}},
//!            {"group": {"name": "Sales"}, "assign": {"appGroup": "crm-sales"}}],
//!  "leaver": "delete"}
//! ```
//!
//! Every pushed resource gets `externalId` = the directory's own id, which is how it is
//! found again at the target. A rule that cannot produce a valid value is an error naming
//! the resource and the rule; nothing is dropped silently.

mod paths;
mod selector;

use fedkey_scim::eval::{self, CompiledFilter};
use fedkey_scim::filter;
use fedkey_scim::json::{is_present, lookup};
use fedkey_scim::resource::{normalize, schemas_of};
use fedkey_scim::schema::{self, Mutability, ResourceTypeDef};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::diff::ManagedAttr;
use paths::{Slot, SourcePath};
pub use selector::GroupSelector;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mapping {
    /// A SCIM filter on the directory user; users that do not match are out of scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_filter: Option<String>,
    /// Directory groups (each by id or by displayName); when not empty, a user must be a
    /// member of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope_groups: Vec<GroupSelector>,
    /// Rules for User attributes; empty means [`default_user_rules`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_attributes: Vec<AttributeRule>,
    /// Rules for Group attributes; empty means copying `displayName`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_attributes: Vec<AttributeRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleRule>,
    #[serde(default)]
    pub leaver: LeaverPolicy,
    /// What reconciliation does with accounts at the target that fedkey does not know.
    #[serde(default, skip_serializing_if = "OrphanPolicy::is_report")]
    pub orphans: OrphanPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributeRule {
    /// SCIM path at the target: `title`, `name.givenName`, `emails[type eq "work"].value`,
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.
    pub target: String,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
    /// Used when the source gives nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// A path in the directory resource (same syntax as `target`, plus `id` and
    /// `externalId`). A filter picks the first matching value; `emails.value` without one
    /// reads the primary (else first) email.
    Copy(String),
    Constant(Value),
    /// The values at `paths` that are present, as text, joined by `separator`.
    Join {
        paths: Vec<String>,
        #[serde(default = "default_separator")]
        separator: String,
    },
}

fn default_separator() -> String {
    " ".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Transform {
    Lower,
    Upper,
    Trim,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRule {
    /// The one directory group (by id, or by displayName) whose members get `assign`.
    pub group: GroupSelector,
    pub assign: RoleAssignment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoleAssignment {
    /// Adds `{"value": role}` to the user's `roles`.
    AppRole(String),
    /// Membership of the target group with this displayName.
    AppGroup(String),
}

/// What happens at the target to a user who leaves the scope or the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeaverPolicy {
    /// PATCH `active` to false (reversible; the account stays readable).
    #[default]
    Deactivate,
    Delete,
}

/// What reconciliation does with an account at the target that matches no directory
/// resource (an "orphan": created at the application by someone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OrphanPolicy {
    /// List it in the reconciliation result; change nothing.
    #[default]
    Report,
    /// Deactivate it (PATCH `active` to false); never deleted.
    Deactivate,
}

impl OrphanPolicy {
    pub fn is_report(&self) -> bool {
        *self == OrphanPolicy::Report
    }
}

/// A directory group the user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Desired {
    /// The user must not exist (or must be inactive) at the target: apply the leaver policy.
    OutOfScope,
    /// The User the target should hold, in wire layout with `schemas` and `externalId`.
    User(Value),
}

/// The mapping configuration is unusable; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mapping: {}", problems.join("; "))]
pub struct InvalidMapping {
    pub problems: Vec<String>,
}

/// A resource could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{resource}: {rule}: {message}")]
pub struct MappingError {
    /// e.g. `user 2819c223 (bjensen@example.com)`.
    pub resource: String,
    /// e.g. `userAttributes[1] (target "title")`.
    pub rule: String,
    pub message: String,
}

/// Attributes the default user rules copy unchanged: every writable User and Enterprise
/// User attribute except `password` (never sent), `groups` (read-only; memberships go
/// through Groups), `roles` (from role rules) and `manager` (a directory id, meaningless at
/// the target).
pub fn default_user_rules() -> Vec<AttributeRule> {
    let mut rules = Vec::new();
    for sch in schema::RESOURCE_TYPES[0].schemas() {
        for a in sch.attributes {
            let skip =
                a.mutability == Mutability::ReadOnly || ["password", "groups", "roles", "manager"].contains(&a.name);
            if skip {
                continue;
            }
            let path = if sch.id == schema::USER { a.name.to_owned() } else { format!("{}:{}", sch.id, a.name) };
            rules.push(AttributeRule {
                target: path.clone(),
                source: Source::Copy(path),
                transforms: Vec::new(),
                default: None,
            });
        }
    }
    rules
}

fn default_group_rules() -> Vec<AttributeRule> {
    vec![AttributeRule {
        target: "displayName".into(),
        source: Source::Copy("displayName".into()),
        transforms: Vec::new(),
        default: None,
    }]
}

struct CompiledRule<'m> {
    label: String,
    slot: Slot,
    source: CompiledSource,
    rule: &'m AttributeRule,
}

enum CompiledSource {
    Copy(SourcePath),
    Constant(Value),
    Join(Vec<SourcePath>, String),
}

struct Compiled<'m> {
    scope: Option<CompiledFilter>,
    user_rules: Vec<CompiledRule<'m>>,
    group_rules: Vec<CompiledRule<'m>>,
}

fn user_rt() -> &'static ResourceTypeDef {
    &schema::RESOURCE_TYPES[0]
}

fn group_rt() -> &'static ResourceTypeDef {
    &schema::RESOURCE_TYPES[1]
}

impl Mapping {
    /// Checks the whole configuration; every problem is reported, with the rule it is in.
    pub fn validate(&self) -> Result<(), InvalidMapping> {
        self.compile(&default_user_rules(), &default_group_rules()).map(|_| ())
    }

    fn compile<'m>(
        &'m self,
        default_users: &'m [AttributeRule],
        default_groups: &'m [AttributeRule],
    ) -> Result<Compiled<'m>, InvalidMapping> {
        let mut problems = Vec::new();
        let scope = match &self.scope_filter {
            None => None,
            Some(text) => match filter::parse(text) {
                Ok(f) => match eval::compile(user_rt(), &f) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        problems.push(format!("scopeFilter: {}", e.detail));
                        None
                    }
                },
                Err(e) => {
                    problems.push(format!("scopeFilter: {e}"));
                    None
                }
            },
        };
        for (i, g) in self.scope_groups.iter().enumerate() {
            if let Err(e) = g.check() {
                problems.push(format!("scopeGroups[{i}]: {e}"));
            }
        }
        let has_app_roles = self.roles.iter().any(|r| matches!(r.assign, RoleAssignment::AppRole(_)));
        for (i, r) in self.roles.iter().enumerate() {
            let (what, v) = match &r.assign {
                RoleAssignment::AppRole(v) => ("appRole", v),
                RoleAssignment::AppGroup(v) => ("appGroup", v),
            };
            if let Err(e) = r.group.check() {
                problems.push(format!("roles[{i}].group: {e}"));
            }
            if v.trim().is_empty() {
                problems.push(format!("roles[{i}]: empty {what}"));
            }
        }
        let user_rules = if self.user_attributes.is_empty() { default_users } else { &self.user_attributes };
        let group_rules = if self.group_attributes.is_empty() { default_groups } else { &self.group_attributes };
        let user_rules = compile_rules("userAttributes", user_rt(), user_rules, has_app_roles, &mut problems);
        let group_rules = compile_rules("groupAttributes", group_rt(), group_rules, false, &mut problems);
        if problems.is_empty() {
            Ok(Compiled { scope, user_rules, group_rules })
        } else {
            Err(InvalidMapping { problems })
        }
    }

    /// Whether the User a target should hold can change when only the user's group
    /// memberships do: scope groups, role rules, or a scope filter or user rule that
    /// mentions `groups` (read conservatively: any mention counts). When it cannot, a
    /// membership change is not queued for the user; the group's delivery carries it.
    pub fn users_follow_groups(&self) -> bool {
        let mentions_groups = |p: &str| p.to_ascii_lowercase().contains("groups");
        !self.scope_groups.is_empty()
            || !self.roles.is_empty()
            || self.scope_filter.as_deref().is_some_and(mentions_groups)
            || self.user_attributes.iter().any(|r| match &r.source {
                Source::Copy(p) => mentions_groups(p),
                Source::Join { paths, .. } => paths.iter().any(|p| mentions_groups(p)),
                Source::Constant(_) => false,
            })
    }

    /// The User the target should hold for `user` (a directory user in wire layout), or
    /// [`Desired::OutOfScope`]. `member_of` lists the user's directory groups.
    pub fn desired_user(&self, user: &Value, member_of: &[GroupRef]) -> Result<Desired, MappingError> {
        let resource = describe("user", user, "userName");
        let defaults = (default_user_rules(), default_group_rules());
        let compiled = self.compile(&defaults.0, &defaults.1).map_err(|e| MappingError {
            resource: resource.clone(),
            rule: "mapping".into(),
            message: e.problems.join("; "),
        })?;
        if let Some(scope) = &compiled.scope
            && !scope.matches(user)
        {
            return Ok(Desired::OutOfScope);
        }
        if !self.scope_groups.is_empty() && !self.scope_groups.iter().any(|s| s.held_by(member_of)) {
            return Ok(Desired::OutOfScope);
        }
        let mut body = build(user_rt(), user, &compiled.user_rules, &resource)?;
        let mut roles: Vec<Value> = Vec::new();
        for r in &self.roles {
            if let RoleAssignment::AppRole(role) = &r.assign
                && r.group.held_by(member_of)
            {
                let v = json!({"value": role});
                if !roles.contains(&v) {
                    roles.push(v);
                }
            }
        }
        if !roles.is_empty()
            && let Some(o) = body.as_object_mut()
        {
            o.insert("roles".into(), Value::Array(roles));
        }
        finish(user_rt(), &body, &resource).map(Desired::User)
    }

    /// The Group the target should hold for a directory group (without `members`, which
    /// are reconciled with [`group_members_patch`](crate::diff::group_members_patch)).
    pub fn desired_group(&self, group: &Value) -> Result<Value, MappingError> {
        let resource = describe("group", group, "displayName");
        let defaults = (default_user_rules(), default_group_rules());
        let compiled = self.compile(&defaults.0, &defaults.1).map_err(|e| MappingError {
            resource: resource.clone(),
            rule: "mapping".into(),
            message: e.problems.join("; "),
        })?;
        let body = build(group_rt(), group, &compiled.group_rules, &resource)?;
        finish(group_rt(), &body, &resource)
    }

    /// Target group displayNames `member_of` earns through `appGroup` role rules, sorted.
    pub fn app_groups(&self, member_of: &[GroupRef]) -> Vec<String> {
        let mut out: Vec<String> = self
            .roles
            .iter()
            .filter_map(|r| match &r.assign {
                RoleAssignment::AppGroup(name) if r.group.held_by(member_of) => Some(name.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every target group displayName the role rules manage, sorted.
    pub fn managed_app_groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .roles
            .iter()
            .filter_map(|r| match &r.assign {
                RoleAssignment::AppGroup(name) => Some(name.clone()),
                RoleAssignment::AppRole(_) => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The User attributes this mapping owns at the target (for [`crate::diff::user_patch`]):
    /// every rule's target, `externalId`, and `roles` when there are `appRole` rules.
    pub fn managed_user_attributes(&self) -> Result<Vec<ManagedAttr>, InvalidMapping> {
        let defaults = (default_user_rules(), default_group_rules());
        let c = self.compile(&defaults.0, &defaults.1)?;
        let mut out = managed(&c.user_rules);
        if self.roles.iter().any(|r| matches!(r.assign, RoleAssignment::AppRole(_)))
            && let Some(m) = ManagedAttr::resolve(user_rt(), "roles")
        {
            out.push(m);
        }
        Ok(out)
    }

    /// The Group attributes this mapping owns (for [`crate::diff::group_patch`]).
    pub fn managed_group_attributes(&self) -> Result<Vec<ManagedAttr>, InvalidMapping> {
        let defaults = (default_user_rules(), default_group_rules());
        let c = self.compile(&defaults.0, &defaults.1)?;
        Ok(managed(&c.group_rules))
    }
}

fn managed(rules: &[CompiledRule<'_>]) -> Vec<ManagedAttr> {
    let mut out = vec![ManagedAttr::external_id()];
    for r in rules {
        let m = r.slot.managed();
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// `user 2819c223 (bjensen)`, for error messages.
fn describe(kind: &str, resource: &Value, name_attr: &str) -> String {
    let id = lookup(resource, "id").and_then(Value::as_str).unwrap_or("(no id)");
    match lookup(resource, name_attr).and_then(Value::as_str) {
        Some(n) => format!("{kind} {id} ({n})"),
        None => format!("{kind} {id}"),
    }
}

fn compile_rules<'m>(
    list: &str,
    rt: &'static ResourceTypeDef,
    rules: &'m [AttributeRule],
    roles_from_rules: bool,
    problems: &mut Vec<String>,
) -> Vec<CompiledRule<'m>> {
    let mut out: Vec<CompiledRule<'m>> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let label = format!("{list}[{i}] (target {:?})", rule.target);
        let before = problems.len();
        let slot = match Slot::parse(rt, &rule.target) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                None
            }
        };
        if let Some(s) = &slot {
            if roles_from_rules && s.attribute_name() == "roles" && s.extension().is_none() {
                problems.push(format!("{label}: roles are assigned by the role rules"));
            }
            if let Some(other) = out.iter().find(|o| o.slot.overlaps(s)) {
                problems.push(format!("{label}: overlaps {}", other.label));
            }
        }
        let mut source_path = |p: &str| match SourcePath::parse(rt, p) {
            Ok(sp) => Some(sp),
            Err(e) => {
                problems.push(format!("{label}: source {p:?}: {e}"));
                None
            }
        };
        let source = match &rule.source {
            Source::Copy(p) => source_path(p).map(CompiledSource::Copy),
            Source::Constant(v) => Some(CompiledSource::Constant(v.clone())),
            Source::Join { paths, separator } => {
                let parsed: Vec<Option<SourcePath>> = paths.iter().map(|p| source_path(p)).collect();
                parsed.into_iter().collect::<Option<Vec<_>>>().map(|ps| CompiledSource::Join(ps, separator.clone()))
            }
        };
        if matches!(&rule.source, Source::Join { paths, .. } if paths.is_empty()) {
            problems.push(format!("{label}: join needs at least one path"));
        }
        // Constants and defaults are checked against the target's type now, not per user.
        if let Some(s) = &slot {
            if let Source::Constant(v) = &rule.source
                && let Err(e) = transform(v, &rule.transforms).and_then(|v| s.check(&v))
            {
                problems.push(format!("{label}: constant: {e}"));
            }
            if let Some(d) = &rule.default
                && let Err(e) = transform(d, &rule.transforms).and_then(|v| s.check(&v))
            {
                problems.push(format!("{label}: default: {e}"));
            }
        }
        if problems.len() == before
            && let (Some(slot), Some(source)) = (slot, source)
        {
            out.push(CompiledRule { label, slot, source, rule });
        }
    }
    out
}

/// Runs the rules over `from` into a body in wire layout.
fn build(
    rt: &'static ResourceTypeDef,
    from: &Value,
    rules: &[CompiledRule<'_>],
    resource: &str,
) -> Result<Value, MappingError> {
    let err =
        |rule: &str, message: String| MappingError { resource: resource.to_owned(), rule: rule.to_owned(), message };
    let id = lookup(from, "id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err("externalId", "the directory resource has no id".into()))?;
    let mut body = Map::new();
    body.insert("schemas".into(), json!([rt.schema]));
    body.insert("externalId".into(), Value::String(id.to_owned()));
    for r in rules {
        let raw = match &r.source {
            CompiledSource::Copy(p) => p.read(from),
            CompiledSource::Constant(v) => Some(v.clone()),
            CompiledSource::Join(paths, sep) => {
                let mut parts = Vec::new();
                for p in paths {
                    match p.read(from) {
                        None => {}
                        Some(Value::String(s)) if s.is_empty() => {}
                        Some(Value::String(s)) => parts.push(s),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => parts.push(v.to_string()),
                        Some(_) => {
                            return Err(err(
                                &r.label,
                                format!("{} is not a simple value and cannot be joined", p.text),
                            ));
                        }
                    }
                }
                (!parts.is_empty()).then(|| Value::String(parts.join(sep)))
            }
        };
        let value = match raw.filter(is_present).or_else(|| r.rule.default.clone()) {
            Some(v) => v,
            None => continue,
        };
        let value = transform(&value, &r.rule.transforms).map_err(|m| err(&r.label, m))?;
        r.slot.check(&value).map_err(|m| err(&r.label, m))?;
        r.slot.put(&mut body, value);
    }
    Ok(Value::Object(body))
}

/// Final check of the whole body against the schema (required attributes such as
/// `userName`), in canonical form with `schemas` listing the extensions used.
fn finish(rt: &'static ResourceTypeDef, body: &Value, resource: &str) -> Result<Value, MappingError> {
    let mut n = normalize(rt, body).map_err(|e| MappingError {
        resource: resource.to_owned(),
        rule: "schema".into(),
        message: e.detail,
    })?;
    let schemas = schemas_of(rt, &n);
    if let Some(o) = n.as_object_mut() {
        o.insert("schemas".into(), Value::Array(schemas));
    }
    Ok(n)
}

fn transform(v: &Value, transforms: &[Transform]) -> Result<Value, String> {
    if transforms.is_empty() {
        return Ok(v.clone());
    }
    let apply = |s: &str| {
        transforms.iter().fold(s.to_owned(), |acc, t| match t {
            Transform::Lower => acc.to_lowercase(),
            Transform::Upper => acc.to_uppercase(),
            Transform::Trim => acc.trim().to_owned(),
        })
    };
    match v {
        Value::String(s) => Ok(Value::String(apply(s))),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(Value::String(apply(s))),
                _ => Err("transforms apply to text only".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Null => Ok(Value::Null),
        _ => Err("transforms apply to text only".to_owned()),
    }
}

#[cfg(test)]
mod tests;
