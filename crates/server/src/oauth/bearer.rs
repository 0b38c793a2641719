//! Access tokens as SCIM bearer credentials. The signature, issuer, audience and times are
//! checked first; then, on every request, the token's trust and key version as they are
//! now, through the store's authentication cache ([`Store::resolve_token_subject`]):
//! suspending the trust or revoking the version refuses its tokens from the next request
//! on the node that made the change, and within 1 s on the others.

use fedkey_audit::Outcome;
use fedkey_core::ScopeSet;
use fedkey_store::audit::Touch;
use fedkey_store::auth::{Principal, RequestMeta};
use fedkey_store::{Actor, Store, StoreError};
use serde_json::{Value, json};

use super::{Urls, access_token, actor_id, bounded};
use crate::AppState;

/// Whether a bearer JWT names this directory's authorization server as its issuer, so it
/// is for [`authenticate`] rather than for the trusts' watched IdP keys.
pub fn is_access_token(s: &AppState, directory: &str, token: &str) -> bool {
    access_token::claims_issuer(token, &Urls::new(&s.public_url, directory))
}

/// Authenticates an access token on `directory`'s SCIM endpoint. Every attempt is audited
/// (`key.authenticate`, method `oauth`); the outer error means it could not be (deny).
pub async fn authenticate(
    s: &AppState,
    directory: &str,
    token: &str,
    meta: &RequestMeta,
) -> Result<Result<Principal, &'static str>, StoreError> {
    let urls = Urls::new(&s.public_url, directory);
    let now = s.store.now();
    let mut details = json!({"method": "oauth", "presented": s.store.install.fingerprint(token.as_bytes())});
    let subject = match s.store.install.oauth_signing.as_ref().map(|k| access_token::verify(token, k, &urls, now)) {
        Some(Ok(sub)) => sub,
        Some(Err(e)) => {
            details["error"] = json!(e.to_string());
            return refuse(&s.store, directory, None, "access_token_rejected", details, meta).await;
        }
        None => return refuse(&s.store, directory, None, "no_token_signing_key", details, meta).await,
    };
    details["client_id"] = json!(subject.client_id);
    details["key_version"] = json!(subject.key_version);
    let Some(rec) = s.store.resolve_token_subject(&subject.trust_id, subject.key_version).await? else {
        return refuse(&s.store, directory, Some(&subject.client_id), "token_subject_gone", details, meta).await;
    };
    if let Err(f) = Store::check_key(&rec, directory, now) {
        return refuse(&s.store, directory, Some(&subject.client_id), f.as_str(), details, meta).await;
    }
    if !subject.scopes.iter().any(|s| s == access_token::SCIM_SCOPE) {
        return refuse(&s.store, directory, Some(&subject.client_id), "scim_scope_missing", details, meta).await;
    }
    let mut principal = rec.principal;
    // The token may carry fewer scopes than the trust (the client asked for fewer), never
    // more: the trust or version's scopes as they are now, narrowed to the token's.
    let kept: Vec<String> = principal.scopes.to_vec().into_iter().filter(|p| subject.scopes.contains(p)).collect();
    principal.scopes = ScopeSet::parse_list(&kept).unwrap_or_default();
    let actor = Actor::anonymous(actor_id(directory, Some(&principal.trust)), meta);
    let ev = s
        .store
        .event(&actor, "key.authenticate", Outcome::Success)
        .directory(&principal.directory)
        .trust(&principal.trust)
        .key_version(principal.version)
        .details(details);
    let touch = (principal.version > 0)
        .then(|| Touch::KeyVersion { trust_id: principal.trust_id.clone(), version: principal.version });
    s.store.audit.record(ev, touch).await?;
    Ok(Ok(principal))
}

/// Audits a refused token (aggregated per source like every failed authentication).
async fn refuse(
    store: &Store,
    directory: &str,
    client: Option<&str>,
    reason: &'static str,
    mut details: Value,
    meta: &RequestMeta,
) -> Result<Result<Principal, &'static str>, StoreError> {
    details["reason"] = json!(reason);
    let actor = Actor::anonymous(actor_id(directory, client), meta);
    let mut ev =
        store.event(&actor, "key.authenticate", Outcome::Denied).directory(bounded(directory)).details(details);
    if let Some(c) = client {
        ev = ev.trust(bounded(c));
    }
    metrics::counter!("fedkey_auth_failures_total", "api" => "scim", "reason" => "access_token_rejected").increment(1);
    store.record_auth_failure(ev).await?;
    Ok(Err(reason))
}
