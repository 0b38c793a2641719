//! OAuth2 client credentials: the token request, caching by the injected clock, renewal.

use std::sync::Arc;
use std::time::Duration;

use crate::client::egress;
use fedkey_core::clock::{ManualClock, Timestamp};
use fedkey_crypto::Secret;
use fedkey_sync::{Auth, ClientError, ResourceKind, ScimClient, TargetConfig};
use serde_json::json;

use crate::fake::{CLIENT_ID, CLIENT_SECRET, Config, Fake};

fn oauth_client(fake: &Fake, secret: &str, clock: Arc<ManualClock>) -> ScimClient {
    let cfg = TargetConfig {
        base_url: fake.base_url.clone(),
        auth: Auth::OAuth2 {
            token_url: fake.token_url.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(secret.into()),
            scope: Some("scim.write".into()),
        },
        timeout: Duration::from_secs(10),
        allow_http: false,
    };
    ScimClient::new(cfg, egress(), clock).unwrap()
}

#[tokio::test]
async fn tokens_are_cached_until_shortly_before_expiry() {
    let fake = Fake::start(Config { token_lifetime: 600, ..Config::default() }).await;
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let c = oauth_client(&fake, CLIENT_SECRET, clock.clone());
    c.discover().await.unwrap();
    c.create(ResourceKind::User, &json!({"userName": "a"})).await.unwrap();
    {
        let g = fake.inner.lock().unwrap();
        assert_eq!(g.token_requests.len(), 1);
        let form = &g.token_requests[0];
        assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
        assert_eq!(form.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert_eq!(form.get("client_secret").map(String::as_str), Some(CLIENT_SECRET));
        assert_eq!(form.get("scope").map(String::as_str), Some("scim.write"));
    }
    assert!(fake.requests().iter().all(|r| r.header("authorization") == Some("Bearer access-token-1")));
    // 600 s lifetime, renewed 60 s early: still cached at +539 s, renewed at +540 s.
    clock.advance(Duration::from_secs(539));
    c.find_one(ResourceKind::User, "userName", "a").await.unwrap().unwrap();
    assert_eq!(fake.inner.lock().unwrap().token_requests.len(), 1);
    clock.advance(Duration::from_secs(1));
    c.find_one(ResourceKind::User, "userName", "a").await.unwrap().unwrap();
    assert_eq!(fake.inner.lock().unwrap().token_requests.len(), 2);
    assert_eq!(fake.last().header("authorization"), Some("Bearer access-token-2"));
}

#[tokio::test]
async fn a_revoked_cached_token_is_replaced_once() {
    let fake = Fake::start(Config::default()).await;
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let c = oauth_client(&fake, CLIENT_SECRET, clock);
    c.discover().await.unwrap();
    // The authorisation server revokes every token issued so far.
    fake.inner.lock().unwrap().tokens.retain(|t| !t.starts_with("access-token"));
    fake.clear();
    let u = c.create(ResourceKind::User, &json!({"userName": "b"})).await.unwrap();
    assert_eq!(u.body["userName"], "b");
    let auths: Vec<Option<String>> =
        fake.requests().iter().map(|r| r.header("authorization").map(str::to_owned)).collect();
    assert_eq!(auths, [Some("Bearer access-token-1".into()), Some("Bearer access-token-2".into())]);
    // A fresh token that is refused is not retried again.
    {
        let mut g = fake.inner.lock().unwrap();
        g.tokens.retain(|t| !t.starts_with("access-token"));
        g.config.accept_issued_tokens = false;
    }
    fake.clear();
    let e = c.get(ResourceKind::User, &u.id).await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }), "{e:?}");
    let auths: Vec<Option<String>> =
        fake.requests().iter().map(|r| r.header("authorization").map(str::to_owned)).collect();
    assert_eq!(
        auths,
        [Some("Bearer access-token-2".into()), Some("Bearer access-token-3".into())],
        "one retry with a new token, then the 401 stands"
    );
}

#[tokio::test]
async fn a_rejected_client_secret_is_unauthorized_and_never_shown() {
    let fake = Fake::start(Config::default()).await;
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let wrong = "wrong-client-secret-value";
    let c = oauth_client(&fake, wrong, clock);
    let e = c.discover().await.unwrap_err();
    assert_eq!(
        e,
        ClientError::Unauthorized {
            detail: "OAuth2 token request failed: invalid_client bad client secret [redacted]".into()
        }
    );
    assert!(!format!("{e} {e:?}").contains(wrong));
    assert!(fake.requests().is_empty(), "no SCIM request without a token");
}

#[tokio::test]
async fn concurrent_requests_share_one_token_request() {
    let fake = Fake::start(Config::default()).await;
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
    let c = Arc::new(oauth_client(&fake, CLIENT_SECRET, clock));
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.find_one(ResourceKind::User, "userName", &format!("u{i}")).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap().is_none());
    }
    assert_eq!(fake.inner.lock().unwrap().token_requests.len(), 1);
    assert_eq!(fake.requests().len(), 8);
}
