//! JWT assertions signed by the IdP's keys: the checks, the attacks, and rotation.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedkey_core::clock::Timestamp;
use fedkey_federation::{
    InMemoryReplayCache, JwtError, JwtPolicy, SigningKey, Source, WatchEvent, parse_jwks, verify, verify_and_consume,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::idp::{Idp, T0, clock};
use crate::keys::{TestKey, claims, jwks};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://fedkey.test/scim/v2";

fn policy() -> JwtPolicy {
    JwtPolicy::new(ISS, vec![AUD.into()])
}

fn published(keys: &[&TestKey]) -> Vec<SigningKey> {
    parse_jwks(jwks(keys).as_bytes(), &Default::default()).unwrap()
}

fn secs(t: Timestamp) -> i64 {
    t.0 / 1_000_000
}

#[test]
fn valid_tokens_from_each_key_type_are_accepted() {
    let (rsa, ec, ed) = (TestKey::rsa("r"), TestKey::ec("e"), TestKey::ed("d"));
    let keys = published(&[&rsa, &ec, &ed]);
    for key in [&rsa, &ec, &ed] {
        let c = claims(ISS, AUD, T0);
        let got = verify(&key.sign(&c), &policy(), &keys, T0).unwrap_or_else(|e| panic!("{}: {e}", key.kid));
        assert_eq!(got.iss, ISS);
        assert_eq!(got.aud, [AUD]);
        assert_eq!(got.sub.as_deref(), Some("scim-client"));
        assert_eq!(got.jti.as_deref(), c["jti"].as_str());
        assert_eq!(got.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(got.extra["scope"], "scim:write");
    }
    // Without a kid every fitting key is tried.
    let c = claims(ISS, AUD, T0);
    assert!(verify(&ec.sign_without_kid(&c), &policy(), &keys, T0).is_ok());
    // An audience list that contains ours is fine.
    let mut c = claims(ISS, AUD, T0);
    c["aud"] = json!(["https://other.test", AUD]);
    assert!(verify(&rsa.sign(&c), &policy(), &keys, T0).is_ok());
}

/// Issue 16, row 11: a token of the right issuer and audience but for another subject or
/// client application (any user of an Entra tenant can get one for the app's audience) is
/// refused when the trust names its subjects, clients or token type.
#[test]
fn subject_client_and_type_rules_refuse_other_tokens_of_the_same_issuer() {
    let key = TestKey::ec("k");
    let keys = published(&[&key]);
    let mut p = policy();
    // No rules: any subject (the behaviour the rules are for).
    let mut stranger = claims(ISS, AUD, T0);
    stranger["sub"] = json!("some-user-of-the-tenant");
    assert!(verify(&key.sign(&stranger), &p, &keys, T0).is_ok());

    p.subjects = vec!["scim-client".into()];
    assert_eq!(
        verify(&key.sign(&stranger), &p, &keys, T0),
        Err(JwtError::SubjectNotAllowed { found: "some-user-of-the-tenant".into() })
    );
    assert!(verify(&key.sign(&claims(ISS, AUD, T0)), &p, &keys, T0).is_ok());

    // Client application: Entra v2 `azp`, v1 `appid`, Okta `cid`; every one carried must be allowed.
    p.client_ids = vec!["app-1".into()];
    let with = |pairs: &[(&str, &str)]| {
        let mut c = claims(ISS, AUD, T0);
        for (k, v) in pairs {
            c[*k] = json!(v);
        }
        verify(&key.sign(&c), &p, &keys, T0)
    };
    assert!(with(&[("azp", "app-1")]).is_ok());
    assert!(with(&[("appid", "app-1")]).is_ok());
    assert!(with(&[("cid", "app-1")]).is_ok());
    assert_eq!(with(&[]), Err(JwtError::ClientNotAllowed { found: String::new() }));
    assert_eq!(with(&[("azp", "app-2")]), Err(JwtError::ClientNotAllowed { found: "app-2".into() }));
    assert_eq!(
        with(&[("azp", "app-1"), ("appid", "app-2")]),
        Err(JwtError::ClientNotAllowed { found: "app-2".into() })
    );

    // Header typ, case-insensitive, `application/` optional.
    p.client_ids.clear();
    p.token_type = Some("at+jwt".into());
    let c = claims(ISS, AUD, T0);
    assert!(verify(&key.sign_typed(&c, Some("AT+JWT")), &p, &keys, T0).is_ok());
    assert!(verify(&key.sign_typed(&claims(ISS, AUD, T0), Some("application/at+jwt")), &p, &keys, T0).is_ok());
    assert_eq!(
        verify(&key.sign(&claims(ISS, AUD, T0)), &p, &keys, T0),
        Err(JwtError::WrongType { found: "JWT".into() })
    );
    assert_eq!(
        verify(&key.sign_typed(&claims(ISS, AUD, T0), None), &p, &keys, T0),
        Err(JwtError::WrongType { found: String::new() })
    );
}

#[test]
fn issuer_audience_and_time_checks_use_the_injected_clock() {
    let key = TestKey::ec("k");
    let keys = published(&[&key]);
    let p = policy();
    let at = |c: serde_json::Value, now: Timestamp| verify(&key.sign(&c), &p, &keys, now);

    let mut c = claims(ISS, AUD, T0);
    c["iss"] = json!("https://evil.test");
    assert_eq!(at(c, T0), Err(JwtError::BadIssuer { found: "https://evil.test".into() }));

    let c = claims(ISS, "https://someone-else.test", T0);
    assert_eq!(at(c, T0), Err(JwtError::BadAudience));

    // exp = T0 + 300; 60 s leeway.
    let c = claims(ISS, AUD, T0);
    assert!(at(c.clone(), T0.saturating_add(Duration::from_secs(360))).is_ok(), "within leeway");
    let late = T0.saturating_add(Duration::from_secs(361));
    assert_eq!(at(c, late), Err(JwtError::Expired { exp: secs(T0) + 300, now: secs(late) }));

    // Issued for later (nbf/iat = T0): too early before T0 - leeway.
    let c = claims(ISS, AUD, T0);
    let early = T0.saturating_sub(Duration::from_secs(61));
    assert_eq!(at(c.clone(), early), Err(JwtError::NotYetValid { nbf: secs(T0), now: secs(early) }));
    assert!(at(c, T0.saturating_sub(Duration::from_secs(60))).is_ok());

    let mut c = claims(ISS, AUD, T0);
    c["exp"] = json!(secs(T0) + 7200);
    assert!(matches!(at(c, T0), Err(JwtError::LifetimeTooLong { lifetime_secs: 7200, max_secs: 3600 })));

    let mut c = claims(ISS, AUD, T0);
    c.as_object_mut().unwrap().remove("jti");
    assert_eq!(at(c.clone(), T0), Err(JwtError::MissingJti));
    let mut relaxed = p.clone();
    relaxed.require_jti = false;
    assert!(verify(&key.sign(&c), &relaxed, &keys, T0).is_ok());

    let mut c = claims(ISS, AUD, T0);
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(at(c, T0), Err(JwtError::Malformed(_))));
}

#[tokio::test]
async fn a_token_is_accepted_once_then_reported_as_replayed() {
    let key = TestKey::ed("k");
    let keys = published(&[&key]);
    let cache = InMemoryReplayCache::new(100);
    let token = key.sign(&claims(ISS, AUD, T0));
    assert!(verify_and_consume(&token, &policy(), &keys, T0, &cache).await.is_ok());
    let later = T0.saturating_add(Duration::from_secs(10));
    assert_eq!(verify_and_consume(&token, &policy(), &keys, later, &cache).await, Err(JwtError::Replayed));
    // A different token is not affected.
    let other = key.sign(&claims(ISS, AUD, T0));
    assert!(verify_and_consume(&other, &policy(), &keys, later, &cache).await.is_ok());
    assert_eq!(cache.len(), 2);
}

#[test]
fn alg_none_hmac_confusion_and_forgeries_are_rejected() {
    let rsa = TestKey::rsa("r");
    let keys = published(&[&rsa]);
    let c = claims(ISS, AUD, T0);

    // alg "none" with an empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"r"}"#),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    assert_eq!(verify(&none, &policy(), &keys, T0), Err(JwtError::AlgNotAllowed("none".into())));

    // HS256 "signed" with the RSA public key as the HMAC secret, even with HS256 in the policy.
    let mut permissive = policy();
    permissive.allowed_algs.push(Algorithm::HS256);
    let public_json = keys[0].jwk.as_ref().unwrap().to_string();
    for secret in [public_json.as_bytes(), keys[0].jwk.as_ref().unwrap()["n"].as_str().unwrap().as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("r".into());
        let forged = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret).unwrap()).unwrap();
        assert_eq!(verify(&forged, &permissive, &keys, T0), Err(JwtError::AlgNotAllowed("HS256".into())));
    }

    // Tampered payload: signature no longer verifies.
    let token = rsa.sign(&c);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut evil = c.clone();
    evil["sub"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(evil.to_string());
    assert_eq!(verify(&parts.join("."), &policy(), &keys, T0), Err(JwtError::BadSignature));

    // Signed by an unpublished key that claims a published kid.
    let impostor = TestKey::rsa("r");
    assert_eq!(verify(&impostor.sign(&c), &policy(), &keys, T0), Err(JwtError::BadSignature));

    // A kid that is not published: its own error, so the caller can refresh.
    let stranger = TestKey::rsa("new-key");
    assert_eq!(verify(&stranger.sign(&c), &policy(), &keys, T0), Err(JwtError::UnknownKid("new-key".into())));

    // An algorithm the key does not fit (ES256 header, RSA key).
    let ec = TestKey::ec("r");
    let mismatched = ec.sign(&c);
    assert_eq!(verify(&mismatched, &policy(), &keys, T0), Err(JwtError::NoUsableKey("ES256".into())));

    // An algorithm left out of the policy.
    let mut rs_only = policy();
    rs_only.allowed_algs = vec![Algorithm::ES256];
    assert_eq!(verify(&token, &rs_only, &keys, T0), Err(JwtError::AlgNotAllowed("RS256".into())));
}

#[tokio::test]
async fn a_token_signed_with_a_key_rotated_in_is_accepted_after_the_watcher_picks_it_up() {
    let idp = Idp::start().await;
    let (old, new) = (TestKey::rsa("2026-11"), TestKey::ec("2026-12"));
    idp.set_jwks(jwks(&[&old]));
    let clock = clock();
    let w = crate::idp::watcher(
        Source::OidcDiscovery { url: idp.discovery_url(), expected_issuer: Some(idp.base.clone()) },
        &clock,
        |_| {},
    );
    assert!(matches!(w.refresh_if_due().await, Some(WatchEvent::Accepted { .. })));
    let p = JwtPolicy::new(idp.base.clone(), vec![AUD.into()]);

    // The IdP publishes the new key and signs with it at once.
    idp.set_jwks(jwks(&[&old, &new]));
    let token = new.sign(&claims(&idp.base, AUD, T0));
    assert_eq!(verify(&token, &p, &w.valid_keys(), T0), Err(JwtError::UnknownKid("2026-12".into())));

    // The watcher-aware check refetches on the unknown kid and accepts the token.
    let got = w.verify_jwt(&token, &p).await.unwrap();
    assert_eq!(got.kid.as_deref(), Some("2026-12"));
    assert!(matches!(&w.drain_events()[..], [WatchEvent::Accepted { .. }]));
    // Old tokens still pass during the overlap.
    assert!(w.verify_jwt(&old.sign(&claims(&idp.base, AUD, T0)), &p).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2);

    // A token for a kid the IdP never published: one refetch at most, then refused.
    let rogue = TestKey::ed("rogue");
    assert_eq!(
        w.verify_jwt(&rogue.sign(&claims(&idp.base, AUD, T0)), &p).await,
        Err(JwtError::UnknownKid("rogue".into()))
    );
    assert_eq!(idp.jwks_hits(), 2, "within the cooldown of the previous refetch");
}
