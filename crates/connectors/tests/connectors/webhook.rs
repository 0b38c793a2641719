//! Signed webhook delivery against a local receiver that checks the signature with `verify`.

use std::time::Duration;

use fedkey_connectors::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, Receipt, Validation,
};
use fedkey_core::clock::Timestamp;
use fedkey_crypto::Secret;
use serde_json::json;

use crate::common::{Canned, FakePeer, KEY, NOW, Reply, egress, key};

const SIGNING_SECRET: &str = "whsec_4f9a8b7c6d5e4f3a2b1c";

async fn fixture() -> (FakePeer, Connector) {
    let peer = FakePeer::start(|_| Reply::empty(204)).await;
    let spec = ConnectorSpec::Webhook { url: format!("{}/hooks/fedkey", peer.url) };
    let creds = ConnectorCredentials::Webhook { signing_secret: Secret::new(SIGNING_SECRET.into()) };
    (peer, Connector::new(spec, creds, egress()).unwrap().with_timeout(Duration::from_millis(500)))
}

fn delivery(key: &Secret) -> Delivery<'_> {
    Delivery { trust: "acme/app", version: 12, key, scim_base_url: "https://fedkey.example/scim/v2/acme/app" }
}

#[tokio::test]
async fn delivery_is_signed_and_verifiable() {
    let (peer, connector) = fixture().await;
    let k = key();
    assert_eq!(connector.deliver(&delivery(&k), NOW).await.unwrap(), Receipt::Webhook { http_status: 204 });
    assert_eq!(connector.validate(&delivery(&k), NOW).await.unwrap(), Validation::NotSupported);

    let req = &peer.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hooks/fedkey"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({
            "trust": "acme/app", "version": 12, "key": KEY,
            "scim_base_url": "https://fedkey.example/scim/v2/acme/app",
            "delivered_at": NOW.to_rfc3339(),
        })
    );
    let ts: i64 = req.header(TIMESTAMP_HEADER).unwrap().parse().unwrap();
    assert_eq!(ts, NOW.micros() / 1_000_000);
    let sig = req.header(SIGNATURE_HEADER).unwrap();
    let tol = Duration::from_secs(300);
    let later = Timestamp(NOW.micros() + 60_000_000);

    assert!(verify(SIGNING_SECRET.as_bytes(), sig, ts, &req.body, later, tol));
    assert!(!verify(b"another-secret", sig, ts, &req.body, later, tol), "wrong secret");
    let mut tampered = req.body.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    assert!(!verify(SIGNING_SECRET.as_bytes(), sig, ts, &tampered, later, tol), "tampered body");
    assert!(!verify(SIGNING_SECRET.as_bytes(), sig, ts + 1, &req.body, later, tol), "timestamp is signed");
    let much_later = Timestamp(NOW.micros() + 301_000_000);
    assert!(!verify(SIGNING_SECRET.as_bytes(), sig, ts, &req.body, much_later, tol), "old timestamp");
    assert!(!verify(SIGNING_SECRET.as_bytes(), "v0=abc", ts, &req.body, later, tol));
}

#[tokio::test]
async fn receiver_errors_are_classified_without_secrets() {
    let (peer, connector) = fixture().await;
    let k = key();
    peer.queue(
        "/hooks",
        Canned::Reply(Reply { status: 502, headers: vec![], body: format!("bad gateway {KEY} {SIGNING_SECRET}") }),
    );
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unavailable { status: 502, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("webhook connector") && msg.contains("502"), "{msg}");
    assert!(!msg.contains(KEY) && !msg.contains(SIGNING_SECRET), "{msg}");

    peer.queue("/hooks", Canned::Reply(Reply::empty(401)));
    let e = connector.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unauthorized { .. }), "{e:?}");
}

#[tokio::test]
async fn redirects_to_another_origin_are_refused_without_the_key() {
    let other = FakePeer::start(|_| Reply::empty(204)).await;
    let elsewhere = format!("{}/elsewhere", other.url);
    let peer = FakePeer::start(move |r| {
        if r.path == "/hooks/fedkey" {
            Reply::empty(307).with_header("Location", &elsewhere)
        } else if r.path == "/hooks/moved" {
            Reply::empty(307).with_header("Location", "/hooks/new")
        } else {
            Reply::empty(204)
        }
    })
    .await;
    let creds = || ConnectorCredentials::Webhook { signing_secret: Secret::new(SIGNING_SECRET.into()) };
    let spec = ConnectorSpec::Webhook { url: format!("{}/hooks/fedkey", peer.url) };
    let c = Connector::new(spec, creds(), egress()).unwrap();
    let k = key();
    let e = c.deliver(&delivery(&k), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Refused { .. }) && e.to_string().contains("another origin"), "{e:?}");
    assert!(!e.retryable());
    assert_eq!(other.count("/elsewhere"), 0, "the key was not re-sent to the redirect target");
    // On the same origin the redirect is followed (and checked again).
    let spec = ConnectorSpec::Webhook { url: format!("{}/hooks/moved", peer.url) };
    let c = Connector::new(spec, creds(), egress()).unwrap();
    c.deliver(&delivery(&k), NOW).await.unwrap();
    assert_eq!(peer.count("/hooks/new"), 1);
}
