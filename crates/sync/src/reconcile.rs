//! Reconciliation of one outbound trust: page through the target's Users and Groups,
//! compare them with what the directory says the target should hold (through the trust's
//! [`Mapping`], the persisted local ↔ remote id map and `externalId` matching), and produce
//! a **plan**:
//!
//! - `create`: a directory resource in scope has no account at the target;
//! - `update`: an account's managed attributes differ (the minimal PATCH of
//!   [`diff`](crate::diff)), or a group's members differ;
//! - `deprovision`: a leaver (inactive, deleted or out of scope) still has an active
//!   account (or any account, with the `delete` leaver policy);
//! - `deactivate_orphan`: an active account fedkey does not know, with the mapping's
//!   `orphans: deactivate` policy (with `report`, the default, orphans are only listed).
//!
//! A dry run returns the plan and changes nothing. A real run queues the directory
//! users of the plan as work rows (one `sync.reconcile.queue` audit record each, in one
//! transaction), deactivates orphans (`sync.reconcile.orphan`) and runs a dispatcher pass;
//! then the same for the groups (so a group never names the stale remote id of an account
//! being re-created). The repairs go through the same idempotent delivery code as every
//! other change. Each run ends with a `sync.reconcile` summary record.

use std::collections::{HashMap, HashSet};

use fedkey_core::TrustRef;
use fedkey_scim::schema::{GROUP, USER};
use fedkey_store::ops::SyncTarget;
use fedkey_store::scim::{ListQuery, StoredResource};
use fedkey_store::{Actor, StoreError};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{Remote, ResourceKind, ScimClient};
use crate::diff;
use crate::discovery::Capabilities;
use crate::dispatch::{Dispatcher, TickReport, default_caps, member_ids, wire};
use crate::error::ClientError;
use crate::mapping::{Desired, GroupRef, LeaverPolicy, Mapping, OrphanPolicy};

/// Resources read per page, from the target and from the directory.
const PAGE: u64 = 100;
/// Upper bound on pages read from a target (a target whose `totalResults` lies cannot
/// keep us paging forever): 1,000,000 resources at 100 a page.
const MAX_PAGES: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0} has no provisioning target")]
    NoTarget(String),
    /// The target could not be read (or its mapping is unusable): nothing was changed.
    #[error("{0}")]
    Target(String),
    /// A real run on a suspended trust (its target receives nothing); a dry run still plans.
    #[error("{0} is suspended: its target receives nothing until the trust is resumed")]
    Suspended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlannedAction {
    /// `create`, `update`, `deprovision` or `deactivate_orphan`.
    pub action: &'static str,
    /// `User` or `Group`.
    pub resource_type: &'static str,
    /// The directory resource (none for an orphan).
    pub resource_id: Option<String>,
    /// userName / displayName.
    pub display: Option<String>,
    /// The account at the target, when there is one.
    pub remote_id: Option<String>,
    /// What differs: `patched` attribute paths, `members_add` / `members_remove` counts, the
    /// leaver policy. Never attribute values.
    pub detail: Value,
    /// After a real run: `done`, or what is left (`pending: …`, `dead: …`, `failed: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// An account at the target that matches no directory resource and was left alone.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Orphan {
    pub resource_type: &'static str,
    pub remote_id: String,
    pub display: Option<String>,
    pub active: Option<bool>,
}

/// A directory resource the mapping cannot produce (its delivery would fail the same way).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    pub resource_type: &'static str,
    pub resource_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub directory_users: usize,
    pub directory_groups: usize,
    pub remote_users: usize,
    pub remote_groups: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// `DIRECTORY/TRUST`.
    pub trust: String,
    pub dry_run: bool,
    pub orphan_policy: OrphanPolicy,
    pub counts: Counts,
    pub actions: Vec<PlannedAction>,
    pub orphans: Vec<Orphan>,
    pub problems: Vec<Problem>,
    /// The dispatcher pass that executed the plan (real runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<TickReport>,
}

impl ReconcileReport {
    /// Whether a real run left something not done (or the plan has problems).
    pub fn incomplete(&self) -> bool {
        !self.problems.is_empty() || self.actions.iter().any(|a| a.outcome.as_deref().is_some_and(|o| o != "done"))
    }
}

/// Remote accounts indexed the ways fedkey matches them.
struct Index<'a> {
    items: &'a [Remote],
    by_id: HashMap<&'a str, usize>,
    by_ext: HashMap<&'a str, usize>,
    by_name: HashMap<String, usize>,
    taken: HashSet<usize>,
}

impl<'a> Index<'a> {
    fn new(items: &'a [Remote], name_attr: &str) -> Index<'a> {
        let mut ix = Index {
            items,
            by_id: HashMap::new(),
            by_ext: HashMap::new(),
            by_name: HashMap::new(),
            taken: HashSet::new(),
        };
        for (i, r) in items.iter().enumerate() {
            ix.by_id.insert(r.id.as_str(), i);
            if let Some(e) = r.body.get("externalId").and_then(Value::as_str) {
                ix.by_ext.entry(e).or_insert(i);
            }
            if let Some(n) = r.body.get(name_attr).and_then(Value::as_str) {
                ix.by_name.entry(n.to_lowercase()).or_insert(i);
            }
        }
        ix
    }

    /// By remembered remote id, else `externalId` = directory id, else name (as the
    /// dispatcher's lookup does); an account is matched to one directory resource at most.
    fn find(&mut self, remembered: Option<&str>, dir_id: &str, name: Option<&str>) -> Option<usize> {
        let hit = remembered
            .and_then(|r| self.by_id.get(r).copied())
            .or_else(|| self.by_ext.get(dir_id).copied())
            .or_else(|| name.and_then(|n| self.by_name.get(&n.to_lowercase()).copied()))
            .filter(|i| !self.taken.contains(i))?;
        self.taken.insert(hit);
        Some(hit)
    }
}

/// What fedkey remembers of a target: remote ids by directory id, and the deleted
/// directory resources it provisioned (remote id → directory id).
#[derive(Default)]
struct Memory {
    users: HashMap<String, String>,
    groups: HashMap<String, String>,
    deleted_users: HashMap<String, String>,
    deleted_ids: HashSet<String>,
}

fn is_inactive(v: &Value) -> bool {
    matches!(v.get("active"), Some(Value::Bool(false)))
}

fn display(v: &Value, attr: &str) -> Option<String> {
    v.get(attr).and_then(Value::as_str).map(str::to_owned)
}

fn action(
    action: &'static str,
    resource_type: &'static str,
    resource_id: Option<&str>,
    display: Option<String>,
    remote_id: Option<&str>,
    detail: Value,
) -> PlannedAction {
    PlannedAction {
        action,
        resource_type,
        resource_id: resource_id.map(str::to_owned),
        display,
        remote_id: remote_id.map(str::to_owned),
        detail,
        outcome: None,
    }
}

fn paths(ops: &[fedkey_scim::patch::PatchOp]) -> Vec<String> {
    ops.iter().filter_map(|o| o.path.as_ref().map(|p| p.to_string())).collect()
}

/// Actions, orphans left alone, and resources the mapping cannot produce.
type Plan = (Vec<PlannedAction>, Vec<Orphan>, Vec<Problem>);

/// The plan for one target: pure, from what the directory holds, what the target holds
/// and what fedkey remembers.
#[allow(clippy::too_many_arguments)]
fn plan(
    m: &Mapping,
    caps: &Capabilities,
    users: &[StoredResource],
    groups: &[StoredResource],
    remote_users: &[Remote],
    remote_groups: &[Remote],
    mem: &Memory,
) -> Result<Plan, ReconcileError> {
    let bad = |e: crate::mapping::InvalidMapping| ReconcileError::Target(e.to_string());
    let managed_u = m.managed_user_attributes().map_err(bad)?;
    let managed_g = m.managed_group_attributes().map_err(bad)?;
    let mut actions = Vec::new();
    let mut orphans = Vec::new();
    let mut problems = Vec::new();
    let mut ru = Index::new(remote_users, "userName");
    let mut rg = Index::new(remote_groups, "displayName");
    // Directory user id → remote id of the account that should be active (for members).
    let mut active_remote: HashMap<&str, &str> = HashMap::new();

    for u in users {
        let refs: Vec<GroupRef> = u
            .groups
            .iter()
            .map(|g| GroupRef { id: g.value.clone(), display_name: g.display.clone().unwrap_or_default() })
            .collect();
        let desired = if is_inactive(&u.body) { Ok(Desired::OutOfScope) } else { m.desired_user(&wire(u), &refs) };
        let name = display(&u.body, "userName");
        let hit = ru.find(mem.users.get(&u.id).map(String::as_str), &u.id, name.as_deref());
        let remote = hit.map(|i| &ru.items[i]);
        match desired {
            Err(e) => {
                problems.push(Problem { resource_type: "User", resource_id: u.id.clone(), message: e.to_string() })
            }
            Ok(Desired::User(mut body)) => {
                caps.restrict(USER, &mut body);
                match remote {
                    None => actions.push(action("create", "User", Some(&u.id), name, None, json!({}))),
                    Some(r) => {
                        active_remote.insert(u.id.as_str(), r.id.as_str());
                        let ops = diff::user_patch(&r.body, &body, &managed_u);
                        if !ops.is_empty() {
                            actions.push(action(
                                "update",
                                "User",
                                Some(&u.id),
                                name,
                                Some(&r.id),
                                json!({"patched": paths(&ops)}),
                            ));
                        }
                    }
                }
            }
            Ok(Desired::OutOfScope) => {
                if let Some(r) = remote
                    && (m.leaver == LeaverPolicy::Delete || !is_inactive(&r.body))
                {
                    actions.push(action(
                        "deprovision",
                        "User",
                        Some(&u.id),
                        name,
                        Some(&r.id),
                        json!({"leaver": m.leaver}),
                    ));
                }
            }
        }
    }

    // Groups: match all first, so group members can be resolved.
    let mut matched_groups: Vec<(&StoredResource, Option<usize>, Option<Value>)> = Vec::new();
    for g in groups {
        let body = match m.desired_group(&wire(g)) {
            Ok(mut b) => {
                caps.restrict(GROUP, &mut b);
                Some(b)
            }
            Err(e) => {
                problems.push(Problem { resource_type: "Group", resource_id: g.id.clone(), message: e.to_string() });
                None
            }
        };
        let name = body.as_ref().and_then(|b| display(b, "displayName")).or_else(|| display(&g.body, "displayName"));
        let hit = rg.find(mem.groups.get(&g.id).map(String::as_str), &g.id, name.as_deref());
        matched_groups.push((g, hit, body));
    }
    let group_remote: HashMap<&str, &str> =
        matched_groups.iter().filter_map(|(g, hit, _)| hit.map(|i| (g.id.as_str(), rg.items[i].id.as_str()))).collect();
    for (g, hit, body) in &matched_groups {
        let Some(body) = body else { continue };
        let name = display(body, "displayName");
        let Some(i) = hit else {
            actions.push(action("create", "Group", Some(&g.id), name, None, json!({})));
            continue;
        };
        let r = &rg.items[*i];
        let ops = diff::group_patch(&r.body, body, &managed_g);
        let mut want: Vec<&str> = g
            .members
            .iter()
            .filter_map(|mm| {
                if mm.kind == "User" {
                    active_remote.get(mm.value.as_str()).copied()
                } else {
                    group_remote.get(mm.value.as_str()).copied()
                }
            })
            .collect();
        want.sort_unstable();
        want.dedup();
        let have = member_ids(&r.body);
        let add = want.iter().filter(|w| !have.iter().any(|h| h == **w)).count();
        let remove = have.iter().filter(|h| !want.contains(&h.as_str())).count();
        if !ops.is_empty() || add > 0 || remove > 0 {
            let mut detail = json!({});
            if !ops.is_empty() {
                detail["patched"] = json!(paths(&ops));
            }
            if add > 0 {
                detail["members_add"] = json!(add);
            }
            if remove > 0 {
                detail["members_remove"] = json!(remove);
            }
            actions.push(action("update", "Group", Some(&g.id), name, Some(&r.id), detail));
        }
    }

    // Accounts nobody matched: leavers fedkey provisioned (deleted from the directory), or orphans.
    for (i, r) in remote_users.iter().enumerate() {
        if ru.taken.contains(&i) {
            continue;
        }
        let name = display(&r.body, "userName");
        let ext = r.body.get("externalId").and_then(Value::as_str);
        let known = mem
            .deleted_users
            .get(&r.id)
            .cloned()
            .or_else(|| ext.filter(|e| mem.deleted_ids.contains(*e)).map(str::to_owned));
        if let Some(dir_id) = known {
            if m.leaver == LeaverPolicy::Delete || !is_inactive(&r.body) {
                actions.push(action(
                    "deprovision",
                    "User",
                    Some(&dir_id),
                    name,
                    Some(&r.id),
                    json!({"leaver": m.leaver, "deleted_from_directory": true}),
                ));
            }
            continue;
        }
        if m.orphans == OrphanPolicy::Deactivate && !is_inactive(&r.body) {
            actions.push(action("deactivate_orphan", "User", None, name, Some(&r.id), json!({})));
        } else {
            orphans.push(Orphan {
                resource_type: "User",
                remote_id: r.id.clone(),
                display: name,
                active: Some(!is_inactive(&r.body)),
            });
        }
    }
    let app_groups: Vec<String> = m.managed_app_groups().iter().map(|n| n.to_lowercase()).collect();
    for (i, r) in remote_groups.iter().enumerate() {
        let name = display(&r.body, "displayName");
        let ext = r.body.get("externalId").and_then(Value::as_str);
        if rg.taken.contains(&i)
            || name.as_ref().is_some_and(|n| app_groups.contains(&n.to_lowercase()))
            || ext.is_some_and(|e| mem.deleted_ids.contains(e))
        {
            continue;
        }
        // Groups are never deactivated or deleted by reconciliation: reported only.
        orphans.push(Orphan { resource_type: "Group", remote_id: r.id.clone(), display: name, active: None });
    }
    Ok((actions, orphans, problems))
}

async fn list_all(c: &ScimClient, kind: ResourceKind) -> Result<Vec<Remote>, ClientError> {
    let size = match c.capabilities().map(|c| c.filter.max_results) {
        Some(n) if n > 0 => n.min(PAGE),
        _ => PAGE,
    };
    let mut out = Vec::new();
    let mut start = 1;
    for _ in 0..MAX_PAGES {
        let page = c.list_page(kind, start, size).await?;
        let n = page.resources.len() as u64;
        out.extend(page.resources);
        start += n;
        if n == 0 || start > page.total_results {
            break;
        }
    }
    // A target that repeats a resource across pages must not make it two accounts.
    let mut seen = HashSet::new();
    out.retain(|r| seen.insert(r.id.clone()));
    Ok(out)
}

impl Dispatcher {
    async fn directory_all(&self, directory_id: &str, rt: &str) -> Result<Vec<StoredResource>, StoreError> {
        let mut out = Vec::new();
        let limit = i64::try_from(PAGE).unwrap_or(100) * 5;
        loop {
            let q = ListQuery { offset: i64::try_from(out.len()).unwrap_or(i64::MAX), limit, ..ListQuery::default() };
            let (total, page) = self.store.scim_list(directory_id, rt, &q).await?;
            let n = page.len();
            out.extend(page);
            if n == 0 || i64::try_from(out.len()).unwrap_or(i64::MAX) >= total {
                break;
            }
        }
        Ok(out)
    }

    /// Reconciles one outbound trust's target with the directory; `dry_run` only plans.
    pub async fn reconcile(
        &self,
        actor: &Actor,
        r: &TrustRef,
        dry_run: bool,
    ) -> Result<ReconcileReport, ReconcileError> {
        let t = self.store.sync_target(r).await?.ok_or_else(|| ReconcileError::NoTarget(r.to_string()))?;
        if !t.active && !dry_run {
            return Err(ReconcileError::Suspended(r.to_string()));
        }
        let m: Mapping = serde_json::from_value(t.mapping.clone())
            .map_err(|e| ReconcileError::Target(format!("the stored mapping is invalid: {e}")))?;
        let c = self.client(&t).await.map_err(|f| ReconcileError::Target(f.message))?;
        let caps = c.capabilities().unwrap_or_else(default_caps);
        let unreadable = |e: ClientError| ReconcileError::Target(format!("cannot read the target: {e}"));
        let remote_users = list_all(&c, ResourceKind::User).await.map_err(unreadable)?;
        let remote_groups = match caps.group_endpoint {
            Some(_) => list_all(&c, ResourceKind::Group).await.map_err(unreadable)?,
            None => Vec::new(),
        };
        let users = self.directory_all(&t.directory_id, "User").await?;
        let groups = self.directory_all(&t.directory_id, "Group").await?;
        let mut mem = Memory::default();
        for w in self.store.sync_work_of(&r.directory, None).await? {
            if w.trust_id != t.trust_id {
                continue;
            }
            if w.deleted && w.resource_type == "User" {
                if let Some(rid) = &w.remote_id {
                    mem.deleted_users.insert(rid.clone(), w.resource_id.clone());
                }
                mem.deleted_ids.insert(w.resource_id.clone());
            } else if w.deleted {
                mem.deleted_ids.insert(w.resource_id.clone());
            } else if let Some(rid) = w.remote_id {
                match w.resource_type.as_str() {
                    "User" => mem.users.insert(w.resource_id, rid),
                    _ => mem.groups.insert(w.resource_id, rid),
                };
            }
        }
        let (mut actions, orphans, problems) = plan(&m, &caps, &users, &groups, &remote_users, &remote_groups, &mem)?;
        let counts = Counts {
            directory_users: users.len(),
            directory_groups: groups.len(),
            remote_users: remote_users.len(),
            remote_groups: remote_groups.len(),
        };
        let mut delivery = None;
        if !dry_run {
            delivery = Some(self.execute(actor, &t, &c, &caps, &remote_users, &mut actions).await?);
        }
        let report = ReconcileReport {
            trust: r.to_string(),
            dry_run,
            orphan_policy: m.orphans,
            counts,
            actions,
            orphans,
            problems,
            delivery,
        };
        let mut by_action: HashMap<&str, usize> = HashMap::new();
        for a in &report.actions {
            *by_action.entry(a.action).or_default() += 1;
        }
        let summary = json!({
            "dry_run": dry_run, "counts": report.counts, "actions": by_action,
            "orphans_reported": report.orphans.len(), "problems": report.problems.len(),
            "incomplete": report.incomplete(), "delivery": report.delivery,
        });
        self.store.reconcile_audit(actor, &t, "sync.reconcile", !report.incomplete(), summary).await?;
        Ok(report)
    }

    /// Executes a plan: queue the directory resources, deactivate orphans, deliver.
    async fn execute(
        &self,
        actor: &Actor,
        t: &SyncTarget,
        c: &ScimClient,
        caps: &Capabilities,
        remote_users: &[Remote],
        actions: &mut [PlannedAction],
    ) -> Result<TickReport, ReconcileError> {
        let queue: Vec<(String, String, Value)> = actions
            .iter()
            .filter_map(|a| {
                a.resource_id.as_ref().map(|id| {
                    let details = json!({
                        "action": a.action, "resource_type": a.resource_type, "resource_id": id,
                        "remote_id": a.remote_id, "detail": a.detail,
                    });
                    (a.resource_type.to_owned(), id.clone(), details)
                })
            })
            .collect();
        // Users first, delivered before their groups are queued: a group delivery must not
        // reference the remote id of an account that is being re-created.
        let (users, groups): (Vec<_>, Vec<_>) = queue.into_iter().partition(|(rt, _, _)| rt == "User");
        self.store.reconcile_queue(actor, t, &users).await?;
        for a in actions.iter_mut().filter(|a| a.action == "deactivate_orphan") {
            let Some(r) = remote_users.iter().find(|r| Some(&r.id) == a.remote_id.as_ref()) else { continue };
            let result = if caps.patch {
                c.patch(ResourceKind::User, &r.id, &[diff::deactivate()], None).await.map(|_| ())
            } else {
                match diff::replacement_body(ResourceKind::User.resource_type(), &r.body, &[diff::deactivate()]) {
                    Ok(body) => c.replace(ResourceKind::User, &r.id, &body, None).await.map(|_| ()),
                    Err(e) => Err(ClientError::Config { message: e.detail }),
                }
            };
            let (ok, outcome) = match result {
                // Deleted at the application meanwhile: no active account either way.
                Ok(()) | Err(ClientError::NotFound { .. }) => (true, "done".to_owned()),
                Err(e) => (false, format!("failed: {e}")),
            };
            self.store
                .reconcile_audit(
                    actor,
                    t,
                    "sync.reconcile.orphan",
                    ok,
                    json!({"remote_id": r.id, "userName": a.display, "did": "deactivate", "outcome": outcome}),
                )
                .await?;
            a.outcome = Some(outcome);
        }
        let mut tick = self.tick().await?;
        if !groups.is_empty() {
            self.store.reconcile_queue(actor, t, &groups).await?;
            let more = self.tick().await?;
            tick.fanned_out += more.fanned_out;
            tick.delivered += more.delivered;
            tick.retried += more.retried;
            tick.dead_letters += more.dead_letters;
            tick.circuits_open += more.circuits_open;
        }
        let rows: HashMap<(String, String), (String, Option<String>)> = self
            .store
            .sync_work_of(&t.trust.directory, None)
            .await?
            .into_iter()
            .filter(|w| w.trust_id == t.trust_id)
            .map(|w| ((w.resource_type, w.resource_id), (w.status, w.last_error)))
            .collect();
        for a in actions.iter_mut() {
            let Some(id) = &a.resource_id else { continue };
            a.outcome = Some(match rows.get(&(a.resource_type.to_owned(), id.clone())) {
                Some((s, _)) if s == "done" => "done".to_owned(),
                Some((s, Some(e))) => format!("{s}: {e}"),
                Some((s, None)) => s.clone(),
                None => "missing".to_owned(),
            });
        }
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use fedkey_core::Timestamp;
    use fedkey_store::scim::MemberRef;

    use super::*;

    fn user(id: &str, name: &str, title: &str, active: bool) -> StoredResource {
        StoredResource {
            id: id.into(),
            resource_type: "User".into(),
            version: 1,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            body: json!({"schemas": [USER], "userName": name, "title": title, "active": active}),
            members: vec![],
            groups: vec![],
        }
    }

    fn remote(id: &str, body: Value) -> Remote {
        let mut body = body;
        body["id"] = json!(id);
        Remote { id: id.into(), etag: None, body }
    }

    fn kinds(p: &Plan) -> Vec<(&'static str, Option<String>)> {
        p.0.iter().map(|a| (a.action, a.display.clone())).collect()
    }

    #[test]
    fn plan_lists_exactly_the_drift() {
        let m: Mapping = serde_json::from_value(json!({"orphans": "deactivate"})).unwrap();
        let caps = default_caps();
        let users = vec![
            user("u1", "alice", "Engineer", true), // missing at the target
            user("u2", "bob", "Analyst", true),    // altered title
            user("u3", "carol", "Manager", true),  // matched by userName, lacks externalId
            user("u4", "dave", "Clerk", false),    // leaver still active there
        ];
        let mut eng = user("g1", "", "", true);
        eng.resource_type = "Group".into();
        eng.body = json!({"schemas": [GROUP], "displayName": "Eng"});
        eng.members = ["u2", "u3"]
            .iter()
            .map(|id| MemberRef { value: (*id).into(), kind: "User".into(), display: None })
            .collect();
        let desired = |u: &StoredResource| match m.desired_user(&wire(u), &[]).unwrap() {
            Desired::User(b) => b,
            Desired::OutOfScope => unreachable!(),
        };
        let mut bob = desired(&users[1]);
        bob["title"] = json!("Changed");
        let mut carol = desired(&users[2]);
        carol.as_object_mut().unwrap().remove("externalId");
        let remote_users = vec![
            remote("r2", bob),
            remote("r3", carol),
            remote("r4", json!({"userName": "dave", "externalId": "u4", "active": true})),
            remote("r9", json!({"userName": "mallory", "active": true})),
            remote("r8", json!({"userName": "gone", "externalId": "u8", "active": true})),
        ];
        let remote_groups =
            vec![remote("rg", json!({"displayName": "Eng", "externalId": "g1", "members": [{"value": "r3"}]}))];
        let mut mem = Memory::default();
        mem.users.insert("u2".into(), "r2".into());
        mem.deleted_users.insert("r8".into(), "u8".into());
        mem.deleted_ids.insert("u8".into());
        let p = plan(&m, &caps, &users, std::slice::from_ref(&eng), &remote_users, &remote_groups, &mem).unwrap();
        let mut got = kinds(&p);
        got.sort();
        let mut want = vec![
            ("create", Some("alice".to_owned())),
            ("update", Some("bob".to_owned())),
            ("update", Some("carol".to_owned())),
            ("deprovision", Some("dave".to_owned())),
            ("deprovision", Some("gone".to_owned())),
            ("deactivate_orphan", Some("mallory".to_owned())),
            ("update", Some("Eng".to_owned())),
        ];
        want.sort();
        assert_eq!(got, want, "{:#?}", p.0);
        let bob = p.0.iter().find(|a| a.display.as_deref() == Some("bob")).unwrap();
        assert_eq!(bob.detail, json!({"patched": ["title"]}));
        let carol = p.0.iter().find(|a| a.display.as_deref() == Some("carol")).unwrap();
        assert_eq!((carol.remote_id.as_deref(), &carol.detail), (Some("r3"), &json!({"patched": ["externalId"]})));
        let g = p.0.iter().find(|a| a.resource_type == "Group").unwrap();
        assert_eq!(g.detail, json!({"members_add": 1}));
        assert!(p.1.is_empty() && p.2.is_empty());

        // Report policy: the orphan is listed, not acted on.
        let m: Mapping = serde_json::from_value(json!({})).unwrap();
        let p = plan(&m, &caps, &users, &[], &remote_users, &[], &mem).unwrap();
        assert!(p.0.iter().all(|a| a.action != "deactivate_orphan"));
        assert_eq!(p.1.len(), 1);
        assert_eq!(p.1[0].display.as_deref(), Some("mallory"));
    }
}
