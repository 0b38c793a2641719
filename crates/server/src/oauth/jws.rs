//! fedkey's own signed tokens: compact JWS with EdDSA (Ed25519), the key published as a
//! JWK. Verification goes through `fedkey_federation::jwt`, the same checks peer tokens get.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedkey_crypto::signing::SigningKey;
use fedkey_federation::parse::jwk_thumbprint;
use serde_json::{Value, json};

/// The public half of a signing key as a JWK, with its RFC 7638 thumbprint as `kid`.
pub fn public_jwk(key: &SigningKey) -> Value {
    let x = URL_SAFE_NO_PAD.encode(key.public_key());
    let kid = jwk_thumbprint(&[("crv", "Ed25519".to_owned()), ("kty", "OKP".to_owned()), ("x", x.clone())]);
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
}

/// The key as the JWT verifier takes it.
pub fn verifying_key(key: &SigningKey) -> fedkey_federation::SigningKey {
    let jwk = public_jwk(key);
    let kid = jwk["kid"].as_str().map(str::to_owned);
    fedkey_federation::SigningKey {
        kid: kid.clone(),
        alg: Some("EdDSA".into()),
        fingerprint: kid.unwrap_or_default(),
        jwk: Some(jwk),
    }
}

/// Signs `claims` as a compact JWS of type `typ`, naming the key by its thumbprint.
pub fn sign(key: &SigningKey, typ: &str, claims: &Value) -> String {
    let jwk = public_jwk(key);
    let header = json!({"alg": "EdDSA", "typ": typ, "kid": jwk["kid"]});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The payload of a compact JWS, not verified: only to decide which verifier a token is
/// for (its `iss`). `None` when it is not a JWS with a JSON object payload.
pub fn unverified_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedkey_core::Timestamp;
    use fedkey_federation::{JwtError, JwtPolicy, verify};

    #[test]
    fn signed_tokens_verify_with_the_published_key_only() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let claims = json!({"iss": "i", "aud": "a", "exp": 200, "iat": 100, "jti": "j"});
        let token = sign(&key, "at+jwt", &claims);
        let mut policy = JwtPolicy::new("i", vec!["a".into()]);
        policy.token_type = Some("at+jwt".into());
        let at = Timestamp(150 * 1_000_000);
        let c = verify(&token, &policy, &[verifying_key(&key)], at).unwrap();
        assert_eq!(c.jti.as_deref(), Some("j"));
        assert_eq!(c.kid, public_jwk(&key)["kid"].as_str().map(str::to_owned));
        // Another key with the same kid-less lookup fails: the kid names the real key.
        assert!(matches!(verify(&token, &policy, &[verifying_key(&other)], at), Err(JwtError::UnknownKid(_))));
        let mut tampered = verifying_key(&other);
        tampered.kid = verifying_key(&key).kid;
        tampered.jwk.as_mut().unwrap()["kid"] = public_jwk(&key)["kid"].clone();
        assert_eq!(verify(&token, &policy, &[tampered], at), Err(JwtError::BadSignature));
        assert_eq!(unverified_claims(&token).unwrap()["iss"], "i");
        assert!(unverified_claims("a.b").is_none());
    }
}
