//! OAuth client settings and access-token subjects (both backends).

use fedkey_core::TrustStatus;
use fedkey_store::StoreError;
use fedkey_store::auth::AuthFailure;
use fedkey_store::install::Install;
use fedkey_store::oauth::DEFAULT_TOKEN_TTL_SECS;
use serde_json::json;

use super::{Kind, Store, actor, count_action, env, inbound, open_store, tref, verify};

pub async fn oauth_clients_and_token_subjects(kind: Kind) {
    let e = env(kind).await;
    let s = &e.store;
    let a = actor();
    let r = tref("acme", "entra");
    s.create_directory(&a, "acme").await.unwrap();
    s.create_trust(&a, inbound("acme", "entra")).await.unwrap();

    // Settings: defaults, set, bounds, clear.
    let c = s.oauth_client(&r).await.unwrap();
    assert_eq!((c.jwks.clone(), c.token_ttl_secs), (None, DEFAULT_TOKEN_TTL_SECS));
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]});
    s.set_oauth_client(&a, &r, Some(jwks.clone()), 300).await.unwrap();
    let c = s.oauth_client(&r).await.unwrap();
    assert_eq!((c.jwks, c.token_ttl_secs, c.updated_by.as_deref()), (Some(jwks), 300, Some(a.id.as_str())));
    for ttl in [0, 59, 3601] {
        assert!(matches!(s.set_oauth_client(&a, &r, None, ttl).await, Err(StoreError::Invalid(_))), "{ttl}");
    }
    assert_eq!(s.oauth_client(&r).await.unwrap().token_ttl_secs, 300, "a refused change changes nothing");
    s.clear_oauth_client(&a, &r).await.unwrap();
    assert_eq!(s.oauth_client(&r).await.unwrap().token_ttl_secs, DEFAULT_TOKEN_TTL_SECS);
    assert!(matches!(s.oauth_client(&tref("acme", "nobody")).await, Err(StoreError::NotFound(_))));
    assert_eq!(count_action(s, "trust.oauth").await, 1);
    assert_eq!(count_action(s, "trust.oauth.clear").await, 1);

    // Token subjects follow the trust and the key version at once, although the
    // authentication cache holds entries for a minute in this store.
    let trust_id = s.trust(&r).await.unwrap().id;
    assert_eq!(check(s, &trust_id, 0).await, Ok(()));
    assert_eq!(check(s, &trust_id, 1).await, Ok(()));
    let sub = s.resolve_token_subject(&trust_id, 0).await.unwrap().unwrap();
    assert_eq!((sub.principal.trust.as_str(), sub.principal.version), ("entra", 0));
    assert!(s.resolve_token_subject(&trust_id, 9).await.unwrap().is_none(), "no such version");
    assert!(s.resolve_token_subject("no-such-trust", 0).await.unwrap().is_none());
    assert_eq!(check(s, &trust_id, 1).await, Ok(()), "cached");
    s.set_trust_status(&a, &r, TrustStatus::Suspended).await.unwrap();
    assert_eq!(check(s, &trust_id, 0).await, Err(AuthFailure::TrustSuspended));
    assert_eq!(check(s, &trust_id, 1).await, Err(AuthFailure::TrustSuspended));
    s.set_trust_status(&a, &r, TrustStatus::Active).await.unwrap();
    assert_eq!(check(s, &trust_id, 1).await, Ok(()));
    s.revoke_key(&a, &r, 1).await.unwrap();
    assert_eq!(check(s, &trust_id, 1).await, Err(AuthFailure::Revoked));
    assert_eq!(check(s, &trust_id, 0).await, Ok(()), "an assertion-based token does not depend on a key version");
    assert_eq!(s.resolve_token_subject(&trust_id, 0).await.unwrap().unwrap().principal.directory, "acme");
    verify(s).await.unwrap();
}

/// An install from before OAuth gets its token signing key on the next start, once.
pub async fn oauth_signing_key_is_added_to_an_older_install(kind: Kind) {
    let e = env(kind).await;
    assert!(e.store.install.oauth_signing.is_some(), "a new install has one");
    sqlx::query("DELETE FROM install WHERE name = 'oauth_signing_key'")
        .execute(e.store.raw_for_tests().pool())
        .await
        .unwrap();
    let ring = e.keyring.keyring().unwrap();
    let old = Install::load(e.store.raw_for_tests(), &ring).await.unwrap().unwrap();
    assert!(old.oauth_signing.is_none(), "an older install reads without one");
    let s2 = open_store(&e.t.url, e.keyring.clone(), &e.clock, std::time::Duration::from_secs(60)).await;
    let key = s2.install.oauth_signing.as_ref().expect("created on open").public_key();
    let s3 = open_store(&e.t.url, e.keyring.clone(), &e.clock, std::time::Duration::from_secs(60)).await;
    assert_eq!(s3.install.oauth_signing.as_ref().unwrap().public_key(), key, "created once");
    assert_eq!(s3.install.id, e.store.install.id);
}

async fn check(s: &Store, trust_id: &str, version: i64) -> Result<(), AuthFailure> {
    let rec = s.resolve_token_subject(trust_id, version).await.unwrap().expect("subject exists");
    Store::check_key(&rec, "acme", s.now())
}
