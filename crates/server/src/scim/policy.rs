//! Per-trust policy on the SCIM service (see `fedkey_store::policy`):
//!
//! - source allow-list: a request from outside the trust's CIDRs is refused (403) and
//!   audited (`scim.authorize`, denied, reason `source_not_allowed`);
//! - rate limit: a token bucket per trust in this process; over the limit answers 429
//!   with `Retry-After`. Not audited per request (a flood must not flood the audit
//!   log); counted in `fedkey_scim_rate_limited_total`;
//! - privileged groups: creating one, renaming a group into or out of a privileged
//!   name, or adding members to one — or to a group that is, directly or through other
//!   groups, a member of one — needs `groups:privileged` (403, audited, nothing changed).
//!   Removing members does not.

use fedkey_core::Scope;
use fedkey_scim::ScimError;
use fedkey_store::Actor;
use fedkey_store::auth::{Principal, RequestMeta};
use fedkey_store::scim::{ResourceWrite, StoredResource};
use serde_json::{Value, json};

use super::{Ctx, ScimResponse};
use crate::AppState;
use crate::ratelimit::retry_after_secs;

/// Checks the source address and the rate limit of an authenticated request.
pub(super) async fn enforce(s: &AppState, p: &Principal, meta: &RequestMeta) -> Result<(), ScimResponse> {
    if !p.policy.source_allowed(meta.source.as_deref()) {
        let actor = Actor {
            id: format!("key:{}/{}#{}", p.directory, p.trust, p.version),
            role: None,
            source: meta.source.clone(),
            request_id: meta.request_id.clone(),
            token_id: None,
        };
        let details = json!({
            "directory": p.directory,
            "reason": "source_not_allowed",
            "source": meta.source,
            "allowed_sources": p.policy.sources(),
        });
        super::audit_denied(s, &actor, p, details).await?;
        return Err(ScimResponse(ScimError::new(
            403,
            None,
            "this provisioning key may not be used from this source address",
        )));
    }
    if let Err(wait) = s.limiter.check(&p.trust_id, p.policy.rate_limit) {
        metrics::counter!("fedkey_scim_rate_limited_total").increment(1);
        return Err(ScimResponse(ScimError::new(
            429,
            None,
            format!(
                "rate limit of {} requests per second exceeded; retry in {} s",
                p.policy.rate_limit,
                retry_after_secs(wait)
            ),
        )));
    }
    Ok(())
}

/// Refuses a group write that touches a privileged group without `groups:privileged`.
/// `previous` is the stored group for a replace or patch, `None` for a create.
pub async fn check_group_write(
    s: &AppState,
    ctx: &Ctx,
    previous: Option<&StoredResource>,
    w: &ResourceWrite,
) -> Result<(), ScimResponse> {
    let policy = &ctx.principal.policy;
    if w.resource_type != "Group"
        || policy.privileged_groups.is_empty()
        || ctx.principal.scopes.contains(Scope::GroupsPrivileged)
    {
        return Ok(());
    }
    let new_name = w.body.get("displayName").and_then(Value::as_str).unwrap_or(&w.name_key);
    let new_match = policy.privileged_match(new_name);
    let denial = match previous {
        // A new group is nobody's member yet: only its own name can make it privileged.
        None => new_match.map(|p| ("create a privileged group", new_name.to_owned(), p)),
        Some(prev) => {
            let old_name = prev.body.get("displayName").and_then(Value::as_str).unwrap_or("");
            let old_match = policy.privileged_match(old_name);
            let added =
                w.members.as_ref().is_some_and(|m| m.iter().any(|v| !prev.members.iter().any(|o| &o.value == v)));
            match (old_match, new_match) {
                (None, Some(p)) => Some(("rename a group to a privileged name", new_name.to_owned(), p)),
                (Some(p), None) => Some(("rename a privileged group", old_name.to_owned(), p)),
                (Some(_), Some(p)) if added => Some(("add members to a privileged group", new_name.to_owned(), p)),
                // Members of a group inside a privileged group are members of that one too.
                (None, None) if added => {
                    let ancestors = s.store.scim_ancestor_groups(&ctx.principal.directory_id, &prev.id).await?;
                    ancestors.into_iter().find_map(|(_, name)| {
                        policy
                            .privileged_match(&name)
                            .map(|p| ("add members to a group nested in a privileged group", name, p))
                    })
                }
                _ => None,
            }
        }
    };
    let Some((operation, group, pattern)) = denial else { return Ok(()) };
    let details = json!({
        "directory": ctx.principal.directory,
        "operation": operation,
        "reason": "privileged_group",
        "group": group,
        "pattern": pattern,
        "missing_scope": Scope::GroupsPrivileged.as_str(),
    });
    super::audit_denied(s, &ctx.actor, &ctx.principal, details).await?;
    Err(ScimResponse(ScimError::new(
        403,
        None,
        format!(
            "this provisioning key lacks the {} scope needed to {operation} ({:?} matches {pattern:?})",
            Scope::GroupsPrivileged.as_str(),
            group.chars().take(64).collect::<String>()
        ),
    )))
}
