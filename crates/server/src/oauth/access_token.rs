//! Access tokens in the RFC 9068 JWT profile, signed by fedkey. Besides the profile's
//! claims a token names the trust by id (`fedkey_trust`: a trust deleted and re-created
//! under the same name is another client) and the key version it was obtained with
//! (`fedkey_key_version`, 0 for `private_key_jwt`), so that each request re-checks both.

use std::time::Duration;

use fedkey_core::{Scope, ScopeSet, Timestamp};
use fedkey_crypto::signing::SigningKey;
use fedkey_federation::{JwtError, JwtPolicy, verify as verify_jwt};
use serde_json::{Value, json};

use super::{Urls, jws};

/// The JWS `typ` of RFC 9068 §2.1.
pub const TOKEN_TYPE: &str = "at+jwt";
/// The scope every token carries: access to the directory's SCIM service (IPSIE).
pub const SCIM_SCOPE: &str = "scim";
/// Skew tolerated between nodes' clocks when checking a token's times.
const LEEWAY: Duration = Duration::from_secs(5);

/// What a token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub trust_id: String,
    /// The trust's name, the `client_id`.
    pub client_id: String,
    /// The key version the client authenticated with; 0 for `private_key_jwt`.
    pub key_version: i64,
    pub scopes: Vec<String>,
    pub ttl_secs: i64,
}

#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub expires_at: Timestamp,
}

/// A verified token's subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub trust_id: String,
    pub client_id: String,
    pub key_version: i64,
    pub scopes: Vec<String>,
    pub jti: String,
}

/// Every scope a token may carry: `scim` and the provisioning scopes.
pub fn scopes_supported() -> Vec<&'static str> {
    std::iter::once(SCIM_SCOPE).chain(Scope::ALL.iter().map(|s| s.as_str())).collect()
}

/// The scopes a client is granted: `scim` and those of its trust or key version.
pub fn granted(scopes: &ScopeSet) -> Vec<String> {
    std::iter::once(SCIM_SCOPE.to_owned()).chain(scopes.to_vec()).collect()
}

/// The scopes of a token: all granted ones, or the requested subset (RFC 6749 §3.3).
/// The error names the first scope that is not granted.
pub fn narrow(requested: Option<&str>, granted: &[String]) -> Result<Vec<String>, String> {
    let Some(req) = requested.filter(|r| !r.trim().is_empty()) else { return Ok(granted.to_vec()) };
    let mut out: Vec<String> = Vec::new();
    for s in req.split(' ').filter(|s| !s.is_empty()) {
        if !granted.iter().any(|g| g == s) {
            return Err(s.chars().filter(|c| !c.is_control()).take(64).collect());
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// Signs a token for `grant`, valid from `now` for its lifetime.
pub fn issue(key: &SigningKey, urls: &Urls, grant: &Grant, now: Timestamp) -> Issued {
    let iat = now.0.div_euclid(1_000_000);
    let exp = iat.saturating_add(grant.ttl_secs);
    let jti = uuid::Uuid::new_v4().to_string();
    let claims = json!({
        "iss": urls.issuer, "sub": grant.client_id, "aud": urls.resource, "client_id": grant.client_id,
        "iat": iat, "nbf": iat, "exp": exp, "jti": jti, "scope": grant.scopes.join(" "),
        "fedkey_trust": grant.trust_id, "fedkey_key_version": grant.key_version,
    });
    Issued { token: jws::sign(key, TOKEN_TYPE, &claims), jti, expires_at: Timestamp(exp.saturating_mul(1_000_000)) }
}

/// Whether `token` claims to come from this directory's authorization server (unverified:
/// it only picks the verifier; [`verify`] decides).
pub fn claims_issuer(token: &str, urls: &Urls) -> bool {
    jws::unverified_claims(token).is_some_and(|c| c.get("iss").and_then(Value::as_str) == Some(urls.issuer.as_str()))
}

/// Verifies signature, type, issuer, audience and times, and reads the subject.
pub fn verify(token: &str, key: &SigningKey, urls: &Urls, now: Timestamp) -> Result<Subject, JwtError> {
    let mut p = JwtPolicy::new(urls.issuer.clone(), vec![urls.resource.clone()]);
    // fedkey signs with Ed25519 only: nothing else can be one of its tokens.
    p.allowed_algs = ["EdDSA"].iter().filter_map(|a| a.parse().ok()).collect();
    p.leeway = LEEWAY;
    p.max_lifetime =
        Duration::from_secs(u64::try_from(*fedkey_store::oauth::TOKEN_TTL_RANGE_SECS.end()).unwrap_or(3600));
    p.token_type = Some(TOKEN_TYPE.into());
    let c = verify_jwt(token, &p, &[jws::verifying_key(key)], now)?;
    let malformed = |what: &str| JwtError::Malformed(format!("access token {what}"));
    let text = |name: &str| c.extra.get(name).and_then(Value::as_str).map(str::to_owned);
    let client_id = text("client_id").ok_or_else(|| malformed("has no client_id"))?;
    if c.sub.as_deref() != Some(client_id.as_str()) {
        return Err(malformed("sub is not its client_id"));
    }
    Ok(Subject {
        trust_id: text("fedkey_trust").ok_or_else(|| malformed("names no trust"))?,
        key_version: c
            .extra
            .get("fedkey_key_version")
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed("has no key version"))?,
        scopes: text("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        jti: c.jti.unwrap_or_default(),
        client_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            trust_id: "t1".into(),
            client_id: "entra".into(),
            key_version: 3,
            scopes: vec!["scim".into(), "users:read".into()],
            ttl_secs: 600,
        }
    }

    const NOW: i64 = 1_800_000_000;
    fn at(s: i64) -> Timestamp {
        Timestamp(s * 1_000_000)
    }

    #[test]
    fn a_token_verifies_for_its_directory_until_it_expires() {
        let (k, _) = SigningKey::generate().unwrap();
        let acme = Urls::new("https://fk.example/", "acme");
        let issued = issue(&k, &acme, &grant(), at(NOW));
        assert!(claims_issuer(&issued.token, &acme));
        let sub = verify(&issued.token, &k, &acme, at(NOW + 10)).unwrap();
        assert_eq!((sub.trust_id.as_str(), sub.key_version, sub.client_id.as_str()), ("t1", 3, "entra"));
        assert_eq!(sub.scopes, vec!["scim", "users:read"]);
        assert_eq!(sub.jti, issued.jti);
        assert_eq!(issued.expires_at, at(NOW + 600));
        assert!(matches!(verify(&issued.token, &k, &acme, at(NOW + 606)), Err(JwtError::Expired { .. })));
        // Another directory's issuer and audience.
        let other = Urls::new("https://fk.example", "other");
        assert!(!claims_issuer(&issued.token, &other));
        assert!(matches!(verify(&issued.token, &k, &other, at(NOW)), Err(JwtError::BadIssuer { .. })));
        // Another install's key.
        let (k2, _) = SigningKey::generate().unwrap();
        assert!(verify(&issued.token, &k2, &acme, at(NOW)).is_err());
    }

    #[test]
    fn a_client_assertion_is_not_an_access_token() {
        let (k, _) = SigningKey::generate().unwrap();
        let acme = Urls::new("https://fk.example", "acme");
        let claims = json!({"iss": acme.issuer, "aud": acme.resource, "sub": "entra", "client_id": "entra",
            "exp": NOW + 60, "iat": NOW, "jti": "x", "fedkey_trust": "t1", "fedkey_key_version": 0});
        let t = jws::sign(&k, "JWT", &claims);
        assert!(matches!(verify(&t, &k, &acme, at(NOW)), Err(JwtError::WrongType { .. })));
    }

    #[test]
    fn requested_scopes_narrow_the_grant() {
        let g = vec!["scim".to_owned(), "users:read".to_owned(), "users:write".to_owned()];
        assert_eq!(narrow(None, &g).unwrap(), g);
        assert_eq!(narrow(Some("  "), &g).unwrap(), g);
        assert_eq!(narrow(Some("scim users:read scim"), &g).unwrap(), vec!["scim", "users:read"]);
        assert_eq!(narrow(Some("scim groups:write"), &g), Err("groups:write".to_owned()));
    }
}
