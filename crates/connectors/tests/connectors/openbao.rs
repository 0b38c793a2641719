//! OpenBao KV v2 and transit against the real `bao` binary (dev server per test).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use fedkey_connectors::{
    Connector, ConnectorCredentials, ConnectorError, ConnectorSpec, Delivery, Receipt, TransitClient, Validation,
};
use fedkey_crypto::Secret;
use reqwest::Method;
use serde_json::json;

use crate::common::{Bao, NOW, bao_api, egress, http, start_bao};

const TRUST: &str = "acme/app";

fn connector(address: &str, token: &str, path: &str) -> Connector {
    let spec =
        ConnectorSpec::Openbao { address: address.into(), mount: "secret".into(), path: path.into(), namespace: None };
    Connector::new(spec, ConnectorCredentials::Openbao { token: Secret::new(token.into()) }, egress()).unwrap()
}

fn delivery(key: &Secret, version: u32) -> Delivery<'_> {
    Delivery { trust: TRUST, version, key, scim_base_url: "https://fedkey.example/scim/v2/acme/app" }
}

#[tokio::test]
async fn versions_are_kept_and_validated() {
    let Some(bao) = start_bao().await else { return };
    let c = connector(&bao.addr, &bao.root_token, "fedkey/acme/app");
    let keys: Vec<Secret> = (1..=3).map(|v| Secret::new(format!("fkp_kv_version_{v}_abcdefghijklmnop"))).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = u32::try_from(i + 1).unwrap();
        let receipt = c.deliver(&delivery(k, v), NOW).await.unwrap();
        assert_eq!(receipt, Receipt::Openbao { kv_version: u64::from(v) });
        assert_eq!(c.validate(&delivery(k, v), NOW).await.unwrap(), Validation::Verified);
    }
    for v in 1..=3u32 {
        let (status, body) =
            bao_api(&bao, Method::GET, &format!("secret/data/fedkey/acme/app?version={v}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["data"], json!({"key": keys[v as usize - 1].expose(), "trust": TRUST, "version": v}));
    }
    // An older key no longer validates: the latest version is what the peer reads.
    let e = c.validate(&delivery(&keys[0], 1), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::ValidationFailed { .. }), "{e:?}");
}

/// A token of its own for the connector, created by root with `policies` and `options`.
async fn child_token(bao: &Bao, options: serde_json::Value) -> String {
    let policy = r#"path "secret/*" { capabilities = ["create", "read", "update"] }"#;
    let (status, _) = bao_api(bao, Method::PUT, "sys/policies/acl/fedkey-kv", Some(json!({"policy": policy}))).await;
    assert_eq!(status, 204);
    let mut body = json!({"policies": ["fedkey-kv"]});
    body.as_object_mut().unwrap().extend(options.as_object().unwrap().clone());
    let (status, v) = bao_api(bao, Method::POST, "auth/token/create", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// The token's own view of itself (as root does not renew it).
async fn lookup(bao: &Bao, token: &str) -> serde_json::Value {
    let resp = http()
        .get(format!("{}/v1/auth/token/lookup-self", bao.addr))
        .header("X-Vault-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<serde_json::Value>().await.unwrap()["data"].clone()
}

#[tokio::test]
async fn a_renewable_token_is_renewed_at_each_delivery() {
    let Some(bao) = start_bao().await else { return };
    let token = child_token(&bao, json!({"ttl": "1h", "renewable": true})).await;
    assert!(lookup(&bao, &token).await.get("last_renewal_time").is_none(), "not renewed yet");
    let c = connector(&bao.addr, &token, "fedkey/renewed");
    let k = Secret::new("fkp_renewed_key_0123456789".into());
    c.deliver(&delivery(&k, 1), NOW).await.unwrap();
    let after = lookup(&bao, &token).await;
    assert!(after["last_renewal_time"].as_u64().is_some_and(|t| t > 0), "renewed by the delivery: {after}");
    assert_eq!(c.validate(&delivery(&k, 1), NOW).await.unwrap(), Validation::Verified);

    // One that cannot be renewed is used as it is.
    let fixed = child_token(&bao, json!({"ttl": "1h", "renewable": false})).await;
    let c = connector(&bao.addr, &fixed, "fedkey/fixed");
    c.deliver(&delivery(&k, 2), NOW).await.unwrap();
    assert!(lookup(&bao, &fixed).await.get("last_renewal_time").is_none());
    // And one whose policy may not even look itself up, too.
    let blind = child_token(&bao, json!({"ttl": "1h", "no_default_policy": true})).await;
    let c = connector(&bao.addr, &blind, "fedkey/blind");
    assert_eq!(c.deliver(&delivery(&k, 3), NOW).await.unwrap(), Receipt::Openbao { kv_version: 1 });
}

#[tokio::test]
async fn validation_detects_tampering() {
    let Some(bao) = start_bao().await else { return };
    let c = connector(&bao.addr, &bao.root_token, "fedkey/tamper");
    let k = Secret::new("fkp_genuine_key_0123456789".into());
    c.deliver(&delivery(&k, 4), NOW).await.unwrap();
    assert_eq!(c.validate(&delivery(&k, 4), NOW).await.unwrap(), Validation::Verified);

    let forged =
        json!({"options": {"cas": 1}, "data": {"key": "fkp_forged_key_0123456789", "trust": TRUST, "version": 4}});
    assert_eq!(bao_api(&bao, Method::POST, "secret/data/fedkey/tamper", Some(forged)).await.0, 200);
    let e = c.validate(&delivery(&k, 4), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::ValidationFailed { .. }), "{e:?}");
    assert!(!e.to_string().contains("fkp_"), "{e}");

    let relabelled = json!({"options": {"cas": 2}, "data": {"key": k.expose(), "trust": TRUST, "version": 5}});
    assert_eq!(bao_api(&bao, Method::POST, "secret/data/fedkey/tamper", Some(relabelled)).await.0, 200);
    let e = c.validate(&delivery(&k, 4), NOW).await.unwrap_err();
    assert!(e.to_string().contains("version number"), "{e}");

    let missing = connector(&bao.addr, &bao.root_token, "fedkey/never-written");
    assert!(matches!(missing.validate(&delivery(&k, 4), NOW).await, Err(ConnectorError::ValidationFailed { .. })));
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let Some(bao) = start_bao().await else { return };
    let c = connector(&bao.addr, "hvs.not-a-valid-token-123456", "fedkey/denied");
    let k = Secret::new("fkp_denied_key_0123456789".into());
    let e = c.deliver(&delivery(&k, 1), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Forbidden { .. } | ConnectorError::Unauthorized { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("openbao connector") && (msg.contains("403") || msg.contains("401")), "{msg}");
    assert!(!msg.contains("not-a-valid-token") && !msg.contains("fkp_"), "{msg}");
    assert!(!e.retryable());
}

/// A proxy in front of OpenBao that, just before forwarding fedkey's first KV write, lets
/// "someone else" write the same path: the interleaving check-and-set exists for.
struct Interloper {
    bao_addr: String,
    root_token: String,
    fired: AtomicBool,
}

async fn interloping_proxy(State(s): State<Arc<Interloper>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path_q = parts.uri.path_and_query().unwrap().as_str().to_owned();
    let client = http();
    if parts.method == axum::http::Method::POST && path_q.contains("/data/") && !s.fired.swap(true, Ordering::SeqCst) {
        let resp = client
            .post(format!("{}{path_q}", s.bao_addr))
            .header("X-Vault-Token", &s.root_token)
            .json(&json!({"data": {"key": "someone-elses-write", "trust": "other", "version": 0}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let mut fwd = client.request(parts.method.clone(), format!("{}{path_q}", s.bao_addr)).body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            fwd = fwd.header(name, value);
        }
    }
    let resp = fwd.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    Response::builder().status(status.as_u16()).body(Body::from(bytes)).unwrap()
}

async fn start_proxy(bao: &Bao) -> (String, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Interloper {
        bao_addr: bao.addr.clone(),
        root_token: bao.root_token.clone(),
        fired: AtomicBool::new(false),
    });
    let app = axum::Router::new().fallback(interloping_proxy).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn a_concurrent_write_is_a_conflict() {
    let Some(bao) = start_bao().await else { return };
    let (proxy, task) = start_proxy(&bao).await;
    let c = connector(&proxy, &bao.root_token, "fedkey/contended");
    let k = Secret::new("fkp_contended_key_0123456789".into());

    let e = c.deliver(&delivery(&k, 1), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Conflict { .. }), "{e:?}");
    assert!(e.retryable(), "a CAS conflict is retried");
    assert!(e.to_string().contains("check-and-set"), "{e}");
    assert!(!e.to_string().contains("fkp_"), "{e}");

    // The other writer's value survived; a retry re-reads the version and lands on top of it.
    let (_, body) = bao_api(&bao, Method::GET, "secret/data/fedkey/contended", None).await;
    assert_eq!(body["data"]["data"]["key"], "someone-elses-write");
    assert_eq!(c.deliver(&delivery(&k, 1), NOW).await.unwrap(), Receipt::Openbao { kv_version: 2 });
    assert_eq!(c.validate(&delivery(&k, 1), NOW).await.unwrap(), Validation::Verified);
    task.abort();
}

#[tokio::test]
async fn transit_round_trip() {
    let Some(bao) = start_bao().await else { return };
    assert_eq!(bao_api(&bao, Method::POST, "sys/mounts/transit", Some(json!({"type": "transit"}))).await.0, 204);
    assert!([200, 204].contains(&bao_api(&bao, Method::POST, "transit/keys/fedkey-kek", None).await.0));

    let transit = TransitClient::new(&bao.addr, Secret::new(bao.root_token.clone()), egress()).unwrap();
    let dek = [7u8, 0, 255, 42, 13, 99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let ct = transit.encrypt("fedkey-kek", &dek, NOW).await.unwrap();
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    assert_eq!(transit.decrypt("fedkey-kek", &ct, NOW).await.unwrap().as_slice(), &dek);

    let mut tampered = ct.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let e = transit.decrypt("fedkey-kek", std::str::from_utf8(&tampered).unwrap(), NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Rejected { .. }), "{e:?}");

    let denied = TransitClient::new(&bao.addr, Secret::new("wrong-token-abcdef".into()), egress()).unwrap();
    let e = denied.encrypt("fedkey-kek", &dek, NOW).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Forbidden { .. } | ConnectorError::Unauthorized { .. }), "{e:?}");
}

/// The request shapes (headers, paths, CAS body) checked without the binary, including the
/// namespace header the dev server does not need.
#[tokio::test]
async fn kv_requests_carry_token_namespace_and_cas() {
    use crate::common::{FakePeer, Reply};
    let peer = FakePeer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/v1/auth/token/lookup-self") => Reply::json(200, json!({"data": {"ttl": 600, "renewable": true}})),
        ("POST", "/v1/auth/token/renew-self") => Reply::json(200, json!({"auth": {"lease_duration": 3600}})),
        ("GET", "/v1/kv/metadata/team/fedkey") => Reply::json(200, json!({"data": {"current_version": 5}})),
        ("POST", "/v1/kv/data/team/fedkey") => Reply::json(200, json!({"data": {"version": 6}})),
        _ => Reply::json(404, json!({"errors": []})),
    })
    .await;
    let spec = ConnectorSpec::Openbao {
        address: peer.url.clone(),
        mount: "kv".into(),
        path: "team/fedkey".into(),
        namespace: Some("tenant-a/".into()),
    };
    let c = Connector::new(spec, ConnectorCredentials::Openbao { token: Secret::new("s.token-abc".into()) }, egress())
        .unwrap();
    let k = Secret::new("fkp_shape_key".into());
    assert_eq!(c.deliver(&delivery(&k, 9), NOW).await.unwrap(), Receipt::Openbao { kv_version: 6 });
    let reqs = peer.requests();
    let calls: Vec<String> = reqs.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        calls,
        [
            "GET /v1/auth/token/lookup-self",
            "POST /v1/auth/token/renew-self",
            "GET /v1/kv/metadata/team/fedkey",
            "POST /v1/kv/data/team/fedkey"
        ]
    );
    for r in &reqs {
        assert_eq!(r.header("x-vault-token"), Some("s.token-abc"));
        assert_eq!(r.header("x-vault-namespace"), Some("tenant-a/"));
    }
    assert_eq!(
        reqs[3].json(),
        json!({"options": {"cas": 5}, "data": {"key": "fkp_shape_key", "trust": TRUST, "version": 9}})
    );

    let bad = ConnectorSpec::Openbao {
        address: peer.url.clone(),
        mount: "kv".into(),
        path: "../sys".into(),
        namespace: None,
    };
    let e =
        Connector::new(bad, ConnectorCredentials::Openbao { token: Secret::new("t".into()) }, egress()).err().unwrap();
    assert!(matches!(e, ConnectorError::Config { .. }), "{e:?}");
}
