//! Receiver authentication. A receiver is an inbound trust of the directory whose key
//! carries the `ssf` scope. It authenticates exactly as a SCIM client of that directory
//! does ([`crate::scim::Provisioner`]): a Bearer that is a version of the trust's key, an
//! access token from `/oauth/{directory}/token` (RFC 6749 client credentials), or a JWT
//! signed by the peer's watched keys. The trust's policy (source addresses, rate) applies,
//! and every attempt is audited (`key.authenticate`).
//!
//! Least privilege: `ssf` grants the stream management API of the directory and nothing
//! else; SCIM resources need their own scopes, which a receiver trust does not carry. A
//! stream belongs to the trust that created it: any other receiver gets 404.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fedkey_core::Scope;
use fedkey_store::Actor;
use fedkey_store::auth::Principal;
use serde_json::json;

use super::error::SsfError;
use crate::AppState;
use crate::scim::Provisioner;

/// An authenticated SSF receiver.
pub struct Receiver {
    pub principal: Principal,
    /// The audit actor of its requests: the key version (or `jwt:` for a signed assertion).
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Receiver {
    type Rejection = SsfError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, SsfError> {
        let Provisioner(p) = Provisioner::from_request_parts(parts, s).await?;
        let actor = crate::scim::provisioner_actor(&p, parts);
        if !p.scopes.contains(Scope::Ssf) {
            let details = json!({"directory": p.directory, "operation": "manage SSF streams", "missing_scope": "ssf"});
            crate::scim::audit_denied(s, &actor, &p, details).await?;
            return Err(SsfError::new(
                axum::http::StatusCode::FORBIDDEN,
                "access_denied",
                "this key lacks the ssf scope needed to manage event streams",
            ));
        }
        Ok(Receiver { principal: p, actor })
    }
}
