//! Entra ID against a fake of the Microsoft identity platform token endpoint and the Graph
//! synchronization endpoints, following their documented requests, responses and errors.

use std::time::Duration;

use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, EntraAuth, Receipt, Validation,
};
use fedkey_core::clock::{Clock, ManualClock};
use fedkey_crypto::Secret;
use serde_json::json;

use crate::common::{Canned, FakePeer, KEY, NOW, Recorded, Reply, egress, key};

const TENANT: &str = "8f2c1e7a-3b4d-4c5e-9f60-1a2b3c4d5e6f";
const CLIENT_ID: &str = "5d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6";
const CLIENT_SECRET: &str = "Qx8~client-secret-value.AbCdEf";
const SP_ID: &str = "sp-0a1b2c3d";
const JOB_ID: &str = "scim.e5f6a7b8c9d0.1a2b3c";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.graph-access-token.sig";
const SCIM_URL: &str = "https://fedkey.example/scim/v2/acme/entra";
/// fedkey's token endpoint for directory `acme`, which the client-credentials set names.
const TOKEN_URL: &str = "https://fedkey.example/oauth/acme/token";

/// The `synchronizationSecret` keys Graph documents (v1.0 enum); Graph refuses others.
const DOCUMENTED_KEYS: &[&str] = &[
    "None",
    "UserName",
    "Password",
    "SecretToken",
    "AppKey",
    "BaseAddress",
    "ClientIdentifier",
    "ClientSecret",
    "SingleSignOnType",
    "Sandbox",
    "Url",
    "Domain",
    "ConsumerKey",
    "ConsumerSecret",
    "TokenKey",
    "TokenExpiration",
    "Oauth2AccessToken",
    "Oauth2AccessTokenCreationTime",
    "Oauth2RefreshToken",
    "SyncAll",
    "InstanceName",
    "Oauth2ClientId",
    "Oauth2ClientSecret",
    "CompanyId",
    "UpdateKeyOnSoftDelete",
    "SynchronizationSchedule",
    "SystemOfRecord",
    "SandboxName",
    "EnforceDomain",
    "SyncNotificationSettings",
    "SkipOutOfScopeDeletions",
    "Oauth2AuthorizationCode",
    "Oauth2RedirectUri",
    "ApplicationTemplateIdentifier",
    "Oauth2TokenExchangeUri",
    "Oauth2AuthorizationUri",
    "AuthenticationType",
    "Server",
    "PerformInboundEntitlementGrants",
    "HardDeletesEnabled",
    "SyncAgentCompatibilityKey",
    "SyncAgentADContainer",
    "ValidateDomain",
    "TestReferences",
    "ConnectionString",
];

/// The secret set each mode must write for version `key` of trust `acme/entra`.
fn expected_credentials(auth: EntraAuth, key: &str) -> serde_json::Value {
    match auth {
        EntraAuth::Bearer => json!([
            {"key": "BaseAddress", "value": SCIM_URL},
            {"key": "SecretToken", "value": key},
        ]),
        EntraAuth::OauthClientCredentials => json!([
            {"key": "BaseAddress", "value": SCIM_URL},
            {"key": "AuthenticationType", "value": "OAuth2ClientCredentialsGrant"},
            {"key": "ClientIdentifier", "value": "entra"},
            {"key": "ClientSecret", "value": key},
            {"key": "Oauth2TokenExchangeUri", "value": TOKEN_URL},
        ]),
    }
}

/// A `synchronizationSecretKeyStringValuePair` collection as Graph accepts it: an array
/// of `{key, value}` objects with documented keys and string values. Graph's 400 otherwise.
fn check_pairs(pairs: &serde_json::Value) -> Result<(), Reply> {
    let bad = |why: String| Reply::json(400, json!({"error": {"code": "BadRequest", "message": why}}));
    let items = pairs.as_array().ok_or_else(|| bad("credentials must be a collection".into()))?;
    for item in items {
        let (Some(key), Some(_)) = (item["key"].as_str(), item["value"].as_str()) else {
            return Err(bad(format!("malformed synchronizationSecretKeyStringValuePair {item}")));
        };
        if !DOCUMENTED_KEYS.contains(&key) || item.as_object().map_or(0, |o| o.len()) != 2 {
            return Err(bad(format!("Requested value '{key}' was not found.")));
        }
    }
    Ok(())
}

/// Documented behaviour of the token endpoint and the two Graph calls. The peer echoes the
/// submitted secrets in its error texts, as misbehaving peers do, so redaction is tested.
/// `expected` is the secret set the test's connector must send (a 400 otherwise).
fn entra_peer(
    graph_url: std::sync::Arc<std::sync::OnceLock<String>>,
    expected: serde_json::Value,
) -> impl Fn(&Recorded) -> Reply {
    move |r: &Recorded| {
        if r.path == format!("/{TENANT}/oauth2/v2.0/token") {
            let form = r.form();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let scope = format!("{}/.default", graph_url.get().unwrap());
            if r.method != "POST"
                || r.header("content-type") != Some("application/x-www-form-urlencoded")
                || get("grant_type") != Some("client_credentials")
                || get("client_id") != Some(CLIENT_ID)
                || get("scope") != Some(scope.as_str())
            {
                return Reply::json(
                    400,
                    json!({"error": "invalid_request", "error_description": "AADSTS900144: bad request"}),
                );
            }
            if get("client_secret") != Some(CLIENT_SECRET) {
                return Reply::json(
                    401,
                    json!({
                        "error": "invalid_client",
                        "error_description": format!("AADSTS7000215: Invalid client secret provided: {}", get("client_secret").unwrap_or("")),
                        "error_codes": [7000215],
                    }),
                );
            }
            return Reply::json(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ACCESS_TOKEN}),
            );
        }
        if r.header("authorization") != Some(&format!("Bearer {ACCESS_TOKEN}")) {
            return Reply::json(
                401,
                json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure."}}),
            );
        }
        let mismatch = |got: &serde_json::Value| {
            Reply::json(400, json!({"error": {"code": "BadRequest", "message": format!("unexpected secrets {got}")}}))
        };
        if r.method == "PUT" && r.path == format!("/v1.0/servicePrincipals/{SP_ID}/synchronization/secrets") {
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body = r.json();
            if let Err(reply) = check_pairs(&body["value"]) {
                return reply;
            }
            return if body == json!({"value": expected}) { Reply::empty(204) } else { mismatch(&body) };
        }
        if r.method == "POST"
            && r.path == format!("/v1.0/servicePrincipals/{SP_ID}/synchronization/jobs/{JOB_ID}/validateCredentials")
        {
            let body = r.json();
            if let Err(reply) = check_pairs(&body["credentials"]) {
                return reply;
            }
            let want = json!({"useSavedCredentials": false, "credentials": expected});
            return if body == want { Reply::empty(204) } else { mismatch(&body) };
        }
        Reply::json(
            404,
            json!({"error": {"code": "Request_ResourceNotFound", "message": format!("no route {}", r.path)}}),
        )
    }
}

struct Fixture {
    peer: FakePeer,
    connector: Connector,
}

async fn fixture(job_id: Option<&str>, client_secret: &str) -> Fixture {
    fixture_for(EntraAuth::Bearer, KEY, job_id, client_secret).await
}

/// A connector in mode `auth`, against a peer expecting the secret set for key `key`.
async fn fixture_for(auth: EntraAuth, key: &str, job_id: Option<&str>, client_secret: &str) -> Fixture {
    let graph_url = std::sync::Arc::new(std::sync::OnceLock::new());
    let peer = FakePeer::start(entra_peer(graph_url.clone(), expected_credentials(auth, key))).await;
    graph_url.set(peer.url.clone()).unwrap();
    let spec = ConnectorSpec::Entra {
        tenant_id: TENANT.into(),
        client_id: CLIENT_ID.into(),
        service_principal_id: SP_ID.into(),
        job_id: job_id.map(str::to_owned),
        graph_base_url: peer.url.clone(),
        login_base_url: peer.url.clone(),
        auth,
    };
    let creds = ConnectorCredentials::Entra { client_secret: Secret::new(client_secret.into()) };
    let connector = Connector::new(spec, creds, egress()).unwrap().with_timeout(Duration::from_millis(500));
    Fixture { peer, connector }
}

fn delivery(key: &Secret) -> Delivery<'_> {
    Delivery { trust: "acme/entra", version: 7, key, scim_base_url: SCIM_URL }
}

fn assert_clean(e: &ConnectorError) {
    let msg = e.to_string();
    let dbg = format!("{e:?}");
    for secret in [KEY, CLIENT_SECRET, ACCESS_TOKEN] {
        assert!(!msg.contains(secret) && !dbg.contains(secret), "secret leaked into error: {msg}");
    }
    assert!(msg.starts_with("entra connector"), "{msg}");
}

#[tokio::test]
async fn delivers_secrets_and_caches_the_token() {
    let f = fixture(None, CLIENT_SECRET).await;
    let k = key();
    let clock = ManualClock::new(NOW);
    let r1 = f.connector.deliver(&delivery(&k), clock.now()).await.unwrap();
    clock.advance(Duration::from_secs(600));
    let r2 = f.connector.deliver(&delivery(&k), clock.now()).await.unwrap();
    assert_eq!(r1, Receipt::Entra { http_status: 204 });
    assert_eq!(r2, r1);
    assert_eq!(f.peer.count("/oauth2/v2.0/token"), 1, "one token for two deliveries");
    assert_eq!(f.peer.count("/synchronization/secrets"), 2);

    // Past expires_in (minus the refresh margin) a new token is fetched.
    clock.advance(Duration::from_secs(3599));
    f.connector.deliver(&delivery(&k), clock.now()).await.unwrap();
    assert_eq!(f.peer.count("/oauth2/v2.0/token"), 2);
}

#[tokio::test]
async fn validates_with_the_job_or_reports_not_supported() {
    let f = fixture(Some(JOB_ID), CLIENT_SECRET).await;
    let k = key();
    assert_eq!(f.connector.validate(&delivery(&k), NOW).await.unwrap(), Validation::Verified);
    assert_eq!(f.peer.count("/validateCredentials"), 1);

    let f = fixture(None, CLIENT_SECRET).await;
    assert_eq!(f.connector.validate(&delivery(&k), NOW).await.unwrap(), Validation::NotSupported);
    assert!(f.peer.requests().is_empty(), "nothing is sent when validation is not possible");
}

#[tokio::test]
async fn wrong_client_secret_is_unauthorized_and_not_echoed() {
    let f = fixture(None, "wrong-secret-value-123").await;
    let k = key();
    let e = f.connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("401") && e.to_string().contains("AADSTS7000215"), "{e}");
    assert!(!e.to_string().contains("wrong-secret-value-123"), "{e}");
    assert!(!e.retryable());
    assert_clean(&e);
}

#[tokio::test]
async fn graph_error_responses_are_classified() {
    let f = fixture(Some(JOB_ID), CLIENT_SECRET).await;
    let k = key();
    let d = delivery(&k);
    let graph_err = |status: u16, code: &str| {
        // The peer echoes the key back in its message.
        Reply::json(
            status,
            json!({"error": {"code": code, "message": format!("rejected value {KEY}"), "innerError": {"request-id": "r1"}}}),
        )
    };

    f.peer.queue("/secrets", Canned::Reply(graph_err(403, "Authorization_RequestDenied")));
    let e = f.connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("403") && e.to_string().contains("Authorization_RequestDenied"), "{e}");
    assert_clean(&e);

    f.peer.queue("/secrets", Canned::Reply(graph_err(429, "TooManyRequests").with_header("Retry-After", "7")));
    let e = f.connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::RateLimited { .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert!(e.retryable());
    assert_clean(&e);

    // HTTP-date form: 90 s after the injected now.
    let at = std::time::UNIX_EPOCH + Duration::from_micros(u64::try_from(NOW.micros()).unwrap() + 90_000_000);
    let date = httpdate::fmt_http_date(at);
    f.peer.queue("/secrets", Canned::Reply(graph_err(429, "TooManyRequests").with_header("Retry-After", &date)));
    let e = f.connector.deliver(&d, NOW).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(90)), "{e:?}");

    for status in [500, 503] {
        f.peer.queue("/secrets", Canned::Reply(graph_err(status, "serviceNotAvailable")));
        let e = f.connector.deliver(&d, NOW).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Unavailable { status: s, .. } if s == status), "{e:?}");
        assert!(e.retryable() && e.to_string().contains(&status.to_string()), "{e}");
        assert_clean(&e);
    }

    f.peer.queue("/validateCredentials", Canned::Reply(graph_err(400, "BadRequest")));
    let e = f.connector.validate(&d, NOW).await.unwrap_err();
    match &e {
        ConnectorError::Rejected { status: 400, code: Some(code), message, .. } => {
            assert_eq!(code, "BadRequest");
            assert!(message.contains("[redacted]"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!e.retryable());
    assert_clean(&e);

    // All of the above reused one token.
    assert_eq!(f.peer.count("/oauth2/v2.0/token"), 1);
}

#[tokio::test]
async fn graph_401_drops_the_cached_token() {
    let f = fixture(None, CLIENT_SECRET).await;
    let k = key();
    f.connector.deliver(&delivery(&k), NOW).await.unwrap();
    f.peer.queue(
        "/secrets",
        Canned::Reply(Reply::json(
            401,
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed, the token is expired."}}),
        )),
    );
    let e = f.connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("InvalidAuthenticationToken"), "{e}");
    f.connector.deliver(&delivery(&k), NOW).await.unwrap();
    assert_eq!(f.peer.count("/oauth2/v2.0/token"), 2, "a rejected token is not reused");
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out() {
    let f = fixture(None, CLIENT_SECRET).await;
    let connector = f.connector.with_timeout(Duration::from_millis(200));
    let k = key();
    f.peer.queue("/secrets", Canned::Hang);
    let started = std::time::Instant::now();
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Timeout { .. }), "{e:?}");
    assert!(e.retryable());
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout bounded the call");
    assert_clean(&e);

    let fresh = fixture(None, CLIENT_SECRET).await;
    fresh.peer.queue("/oauth2", Canned::Hang);
    let connector = fresh.connector.with_timeout(Duration::from_millis(200));
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Timeout { .. }), "the token request is bounded too: {e:?}");
}

#[tokio::test]
async fn construction_rejects_mismatches_and_plain_http() {
    let entra = |graph: &str| ConnectorSpec::Entra {
        tenant_id: TENANT.into(),
        client_id: CLIENT_ID.into(),
        service_principal_id: SP_ID.into(),
        job_id: None,
        graph_base_url: graph.into(),
        login_base_url: "https://login.microsoftonline.com".into(),
        auth: EntraAuth::Bearer,
    };
    let creds = || ConnectorCredentials::Entra { client_secret: Secret::new(CLIENT_SECRET.into()) };
    assert!(Connector::new(entra("https://graph.microsoft.com"), creds(), egress()).is_ok());
    let e = Connector::new(entra("http://graph.microsoft.com"), creds(), egress()).err().unwrap();
    assert!(matches!(e, ConnectorError::Config { .. }) && e.to_string().contains("graph_base_url"), "{e}");
    let e = Connector::new(
        entra("https://graph.microsoft.com"),
        ConnectorCredentials::Okta { api_token: Secret::new("t0k3n".into()) },
        egress(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, ConnectorError::Config { .. }) && e.to_string().contains("okta"), "{e}");
    assert!(!e.to_string().contains("t0k3n"));
}

#[tokio::test]
async fn client_credentials_mode_delivers_the_oauth_secret_set() {
    let f = fixture_for(EntraAuth::OauthClientCredentials, KEY, Some(JOB_ID), CLIENT_SECRET).await;
    let k = key();
    // set: the whole client-credentials set, in one PUT.
    assert_eq!(f.connector.deliver(&delivery(&k), NOW).await.unwrap(), Receipt::Entra { http_status: 204 });
    // test: Entra validates the same set against fedkey before the version is promoted.
    assert_eq!(f.connector.validate(&delivery(&k), NOW).await.unwrap(), Validation::Verified);
    let sent: Vec<serde_json::Value> =
        f.peer.requests().iter().filter(|r| r.path.contains("/synchronization/")).map(|r| r.json()).collect();
    let expected = expected_credentials(EntraAuth::OauthClientCredentials, KEY);
    assert_eq!(sent, [json!({"value": expected}), json!({"useSavedCredentials": false, "credentials": expected})]);
    assert!(!sent[0].to_string().contains("SecretToken"), "no bearer token in this mode");
}

#[tokio::test]
async fn client_credentials_rotation_replaces_the_client_secret() {
    // The next version: Entra is given it as ClientSecret; the old one is no longer sent.
    const NEXT: &str = "fkp_Nn4Ve8Wz2Xq6Rt0Yu3Io7Pa1Sd5Fg9Hj2Kl4Zx8Cv";
    let f = fixture_for(EntraAuth::OauthClientCredentials, NEXT, Some(JOB_ID), CLIENT_SECRET).await;
    let next = Secret::new(NEXT.into());
    let d = Delivery { trust: "acme/entra", version: 8, key: &next, scim_base_url: SCIM_URL };
    f.connector.deliver(&d, NOW).await.unwrap();
    f.connector.validate(&d, NOW).await.unwrap();
    let bodies: String = f.peer.requests().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert!(bodies.contains(NEXT) && !bodies.contains(KEY), "only the new version is delivered");

    // The peer rejects the previous version's set, as it would a stale one.
    let old = key();
    let stale = Delivery { trust: "acme/entra", version: 7, key: &old, scim_base_url: SCIM_URL };
    let e = f.connector.deliver(&stale, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Rejected { status: 400, .. }), "{e:?}");
    assert_clean(&e);
}

#[tokio::test]
async fn client_credentials_errors_never_carry_the_secret() {
    let f = fixture_for(EntraAuth::OauthClientCredentials, KEY, Some(JOB_ID), CLIENT_SECRET).await;
    let k = key();
    f.peer.queue(
        "/secrets",
        Canned::Reply(Reply::json(
            400,
            json!({"error": {"code": "BadRequest", "message": format!("ClientSecret {KEY} is not accepted")}}),
        )),
    );
    let e = f.connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Rejected { status: 400, .. }), "{e:?}");
    assert!(e.to_string().contains("[redacted]"), "{e}");
    assert_clean(&e);
}

#[tokio::test]
async fn client_credentials_need_a_trust_name_and_a_scim_url_to_derive_from() {
    let f = fixture_for(EntraAuth::OauthClientCredentials, KEY, Some(JOB_ID), CLIENT_SECRET).await;
    let k = key();
    for d in [
        Delivery { trust: "acme/entra", version: 7, key: &k, scim_base_url: "https://fedkey.example/v2/acme" },
        Delivery { trust: "acme", version: 7, key: &k, scim_base_url: SCIM_URL },
    ] {
        let e = f.connector.deliver(&d, NOW).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Config { .. }) && !e.retryable(), "{e:?}");
        assert!(e.to_string().contains("token URL"), "{e}");
        assert_clean(&e);
        let e = f.connector.validate(&d, NOW).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Config { .. }), "{e:?}");
    }
    assert!(f.peer.requests().is_empty(), "nothing is sent, not even a token request");
}

#[tokio::test]
async fn the_fake_holds_graph_to_its_documented_keys() {
    // The fake's own check, so the assertions above rest on the documented API.
    assert!(check_pairs(&expected_credentials(EntraAuth::OauthClientCredentials, KEY)).is_ok());
    assert!(check_pairs(&expected_credentials(EntraAuth::Bearer, KEY)).is_ok());
    assert!(check_pairs(&json!([{"key": "TokenUrl", "value": "x"}])).is_err());
    assert!(check_pairs(&json!([{"key": "ClientSecret", "value": 5}])).is_err());
    assert!(check_pairs(&json!({"key": "ClientSecret", "value": "x"})).is_err());
}
