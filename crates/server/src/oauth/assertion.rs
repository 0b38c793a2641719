//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core
//! §9): the rules a client assertion must meet, checked without I/O so they can be tested
//! one by one. Replay (the `jti`) is checked by the caller against the store.

use std::time::Duration;

use fedkey_core::Timestamp;
use fedkey_federation::{Claims, JwtError, JwtPolicy, SigningKey, verify};

/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Signature algorithms accepted on assertions (asymmetric only).
pub const ALGORITHMS: [&str; 7] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];

/// Longest accepted assertion lifetime (`exp` minus `iat`): an assertion is made for one
/// token request, so a long-lived one is a bearer secret in disguise.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated between the client and fedkey.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Where an assertion may be addressed.
#[derive(Debug, Clone)]
pub struct Audience {
    /// The token endpoint URL.
    pub token_endpoint: String,
    /// The authorization server's issuer identifier.
    pub issuer: String,
}

/// The verifier's rules for an assertion by `client_id`: `iss` and `sub` are the client,
/// `aud` the token endpoint or the issuer, `exp` and `jti` required, lifetime capped,
/// asymmetric algorithms only (the verifier never accepts `none` or HMAC).
pub fn policy(client_id: &str, aud: &Audience) -> JwtPolicy {
    let mut p = JwtPolicy::new(client_id, vec![aud.token_endpoint.clone(), aud.issuer.clone()]);
    p.leeway = LEEWAY;
    p.max_lifetime = MAX_LIFETIME;
    p.require_jti = true;
    p.subjects = vec![client_id.to_owned()];
    p
}

/// Verifies an assertion by `client_id` against the client's `keys`.
pub fn check(
    assertion: &str,
    client_id: &str,
    aud: &Audience,
    keys: &[SigningKey],
    now: Timestamp,
) -> Result<Claims, JwtError> {
    verify(assertion, &policy(client_id, aud), keys, now)
}

/// How long the assertion's `jti` must be remembered: until it could no longer pass.
pub fn replay_window_end(claims: &Claims) -> Timestamp {
    Timestamp(claims.exp.saturating_mul(1_000_000)).saturating_add(LEEWAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::jws;
    use fedkey_crypto::signing::SigningKey as Ed;
    use serde_json::{Value, json};

    const NOW: i64 = 1_800_000_000;

    fn aud() -> Audience {
        Audience {
            token_endpoint: "https://fk.example/oauth/acme/token".into(),
            issuer: "https://fk.example/oauth/acme".into(),
        }
    }

    fn claims() -> Value {
        json!({"iss": "entra", "sub": "entra", "aud": "https://fk.example/oauth/acme/token",
               "iat": NOW, "exp": NOW + 60, "jti": "a1"})
    }

    fn run(key: &Ed, keys: &[&Ed], c: &Value) -> Result<Claims, JwtError> {
        let t = jws::sign(key, "JWT", c);
        let keys: Vec<SigningKey> = keys.iter().map(|k| jws::verifying_key(k)).collect();
        check(&t, "entra", &aud(), &keys, Timestamp(NOW * 1_000_000))
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = claims();
        c[k] = v;
        c
    }

    #[test]
    fn a_well_formed_assertion_passes_with_either_audience() {
        let (k, _) = Ed::generate().unwrap();
        assert_eq!(run(&k, &[&k], &claims()).unwrap().jti.as_deref(), Some("a1"));
        assert!(run(&k, &[&k], &with("aud", json!(["x", "https://fk.example/oauth/acme"]))).is_ok());
    }

    #[test]
    fn each_rule_refuses_on_its_own() {
        let (k, _) = Ed::generate().unwrap();
        let (other, _) = Ed::generate().unwrap();
        assert_eq!(
            run(&k, &[&k], &with("aud", json!("https://fk.example/oauth/other/token"))),
            Err(JwtError::BadAudience)
        );
        assert!(matches!(run(&k, &[&k], &with("iss", json!("okta"))), Err(JwtError::BadIssuer { .. })));
        assert!(matches!(run(&k, &[&k], &with("sub", json!("okta"))), Err(JwtError::SubjectNotAllowed { .. })));
        let expired =
            json!({"iss": "entra", "sub": "entra", "aud": aud().issuer, "iat": NOW - 200, "exp": NOW - 31, "jti": "x"});
        assert!(matches!(run(&k, &[&k], &expired), Err(JwtError::Expired { .. })));
        // Within the tolerated skew an assertion that just expired still passes.
        let just =
            json!({"iss": "entra", "sub": "entra", "aud": aud().issuer, "iat": NOW - 200, "exp": NOW - 29, "jti": "x"});
        assert!(run(&k, &[&k], &just).is_ok());
        assert!(matches!(run(&k, &[&k], &with("exp", json!(NOW + 301))), Err(JwtError::LifetimeTooLong { .. })));
        assert!(matches!(run(&k, &[&k], &with("iat", json!(NOW + 120))), Err(JwtError::NotYetValid { .. })));
        let mut no_jti = claims();
        no_jti.as_object_mut().unwrap().remove("jti");
        assert_eq!(run(&k, &[&k], &no_jti), Err(JwtError::MissingJti));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(matches!(run(&k, &[&k], &no_exp), Err(JwtError::Malformed(_))));
        // Signed by a key the client did not register.
        assert!(matches!(run(&other, &[&k], &claims()), Err(JwtError::UnknownKid(_))));
    }

    #[test]
    fn the_replay_window_covers_the_skew() {
        let (k, _) = Ed::generate().unwrap();
        let c = run(&k, &[&k], &claims()).unwrap();
        assert_eq!(replay_window_end(&c), Timestamp((NOW + 60 + 30) * 1_000_000));
    }
}
