//! Okta against a fake of the Application Connections API (default provisioning connection),
//! with Okta's documented error objects (`errorCode`, `errorSummary`, …).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, Receipt, Validation,
};
use fedkey_crypto::Secret;
use serde_json::json;

use crate::common::{Canned, FakePeer, KEY, NOW, Recorded, Reply, egress, key};

const APP_ID: &str = "0oa1gjh63g214q0Hq0g4";
const API_TOKEN: &str = "00QCjAl4MlV-WPXM-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PATH: &str = "/api/v1/apps/0oa1gjh63g214q0Hq0g4/connections/default";

fn okta_error(status: u16, code: &str, summary: &str) -> Reply {
    Reply::json(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeXyz123", "errorCauses": []}),
    )
}

fn connection(status: &str) -> serde_json::Value {
    json!({
        "authScheme": "TOKEN",
        "status": status,
        "_links": {"self": {"href": format!("https://acme.okta.com{PATH}"), "hints": {"allow": ["GET", "POST"]}}},
    })
}

/// The connection's state lives in the fake: POST sets it (ENABLED when `activate=true`),
/// GET reports it.
fn okta_peer(state: Arc<Mutex<String>>) -> impl Fn(&Recorded) -> Reply {
    move |r: &Recorded| {
        if r.header("authorization") != Some(&format!("SSWS {API_TOKEN}")) {
            return okta_error(401, "E0000011", "Invalid token provided");
        }
        if r.path != PATH {
            return okta_error(404, "E0000007", &format!("Not found: Resource not found: {} (App)", r.path));
        }
        match r.method.as_str() {
            "POST" => {
                assert_eq!(r.header("content-type"), Some("application/json"));
                assert_eq!(r.header("accept"), Some("application/json"));
                assert_eq!(r.json(), json!({"profile": {"authScheme": "TOKEN", "token": KEY}}));
                let status = if r.query.as_deref() == Some("activate=true") { "ENABLED" } else { "DISABLED" };
                *state.lock().unwrap() = status.to_owned();
                Reply::json(201, connection(status))
            }
            "GET" => Reply::json(200, connection(&state.lock().unwrap())),
            _ => okta_error(405, "E0000022", "The endpoint does not support the provided HTTP method"),
        }
    }
}

async fn fixture(api_token: &str) -> (FakePeer, Connector, Arc<Mutex<String>>) {
    let state = Arc::new(Mutex::new("DISABLED".to_owned()));
    let peer = FakePeer::start(okta_peer(state.clone())).await;
    let spec = ConnectorSpec::Okta { org_url: peer.url.clone(), app_id: APP_ID.into() };
    let creds = ConnectorCredentials::Okta { api_token: Secret::new(api_token.into()) };
    let connector = Connector::new(spec, creds, egress()).unwrap().with_timeout(Duration::from_millis(500));
    (peer, connector, state)
}

fn delivery(key: &Secret) -> Delivery<'_> {
    Delivery { trust: "acme/okta", version: 3, key, scim_base_url: "https://fedkey.example/scim/v2/acme/okta" }
}

fn assert_clean(e: &ConnectorError) {
    let msg = e.to_string();
    for secret in [KEY, API_TOKEN] {
        assert!(!msg.contains(secret) && !format!("{e:?}").contains(secret), "secret leaked: {msg}");
    }
    assert!(msg.starts_with("okta connector"), "{msg}");
}

#[tokio::test]
async fn delivers_activates_and_validates() {
    let (peer, connector, _) = fixture(API_TOKEN).await;
    let k = key();
    let receipt = connector.deliver(&delivery(&k), NOW).await.unwrap();
    assert_eq!(receipt, Receipt::Okta { http_status: 201, connection_status: Some("ENABLED".into()) });
    let post = &peer.requests()[0];
    assert_eq!((post.method.as_str(), post.query.as_deref()), ("POST", Some("activate=true")));
    assert_eq!(connector.validate(&delivery(&k), NOW).await.unwrap(), Validation::Verified);
    assert_eq!(peer.requests()[1].method, "GET");
}

#[tokio::test]
async fn a_disabled_connection_fails_validation() {
    let (_peer, connector, state) = fixture(API_TOKEN).await;
    let k = key();
    connector.deliver(&delivery(&k), NOW).await.unwrap();
    *state.lock().unwrap() = "DISABLED".into(); // an admin switched provisioning off
    let e = connector.validate(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::ValidationFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("DISABLED"), "{e}");
}

#[tokio::test]
async fn okta_errors_are_classified_and_redacted() {
    let (peer, connector, _) = fixture(API_TOKEN).await;
    let k = key();
    let d = delivery(&k);

    peer.queue(
        PATH,
        Canned::Reply(okta_error(403, "E0000006", "You do not have permission to perform the requested action")),
    );
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("E0000006") && e.to_string().contains("403"), "{e}");
    assert_clean(&e);

    // Okta sends X-Rate-Limit-* headers; Retry-After wins when present.
    let limited = okta_error(429, "E0000047", "API call exceeded rate limit due to too many requests.")
        .with_header("X-Rate-Limit-Limit", "600")
        .with_header("X-Rate-Limit-Remaining", "0")
        .with_header("X-Rate-Limit-Reset", &(NOW.micros() / 1_000_000 + 42).to_string());
    peer.queue(PATH, Canned::Reply(limited.clone().with_header("Retry-After", "5")));
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)), "{e:?}");
    peer.queue(PATH, Canned::Reply(limited));
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::RateLimited { .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(42)));
    assert_clean(&e);

    peer.queue(PATH, Canned::Reply(okta_error(500, "E0000009", "Internal Server Error")));
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unavailable { status: 500, .. }) && e.retryable(), "{e:?}");
    peer.queue(PATH, Canned::Reply(Reply::empty(503).with_header("Retry-After", "30")));
    let e = connector.validate(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unavailable { status: 503, .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)), "503 may say when to come back");

    // A 400 that echoes the submitted token, and a very long summary.
    let long = format!("Api validation failed: token {KEY} {}", "x".repeat(1000));
    peer.queue(PATH, Canned::Reply(okta_error(400, "E0000001", &long)));
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    match &e {
        ConnectorError::Rejected { status: 400, code, message, .. } => {
            assert_eq!(code.as_deref(), Some("E0000001"));
            assert!(message.chars().count() <= 201, "truncated: {} chars", message.chars().count());
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_clean(&e);

    peer.queue(PATH, Canned::Hang);
    let e = connector.deliver(&d, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Timeout { .. }), "{e:?}");
}

#[tokio::test]
async fn a_wrong_api_token_is_unauthorized() {
    let (_peer, connector, _) = fixture("00wrong-token-value-xyz").await;
    let k = key();
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unauthorized { .. }), "{e:?}");
    assert!(e.to_string().contains("E0000011"), "{e}");
    assert!(!e.to_string().contains("00wrong-token-value-xyz"));
}

/// A peer answering with more than a connector reads is refused with an error that says
/// so, not parsed from a cut body and not read to the end.
#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let (peer, connector, _) = fixture(API_TOKEN).await;
    let k = key();
    let pad = "x".repeat(fedkey_connectors::MAX_RESPONSE_BYTES);
    let huge = Reply::json(200, json!({"authScheme": "TOKEN", "status": "ENABLED", "pad": pad}));
    peer.queue(PATH, Canned::Reply(huge));
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::TooLarge { limit: fedkey_connectors::MAX_RESPONSE_BYTES, .. }), "{e:?}");
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    assert!(!e.retryable());
    assert_clean(&e);
}
