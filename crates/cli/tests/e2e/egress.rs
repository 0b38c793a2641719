//! The egress policy at configuration time, through the admin API on the real binary: a
//! provisioning target, an OAuth2 token URL, a connector and a trust-material source whose
//! URL is cleartext to another host or a denied address are refused with a readable 400 and
//! nothing is stored; a lab opt-in is accepted and recorded in the audit log;
//! `FEDKEY_EGRESS_ALLOW_CIDRS` opens a private range.

use super::*;

use reqwest::Method as M;
use serde_json::{Value, json};

use crate::provisioning::outbound_trust;

const TARGET: &str = "/api/v1/directories/acme/trusts/app/target";

async fn put_target(s: &Server, body: Value) -> (u16, Value) {
    s.api(M::PUT, TARGET, Some(&s.token), Some(body)).await
}

fn refused(st: u16, v: &Value, words: &[&str]) {
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(msg.contains(w), "{w:?} not in {msg:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_urls_are_checked_when_configured() {
    for b in backends() {
        checked_at_configuration(b).await;
    }
}

async fn checked_at_configuration(b: Backend) {
    let s = Server::start(b);
    let (st, v) = s.api(M::POST, "/api/v1/directories", Some(&s.token), Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 201, "{v}");
    outbound_trust(&s, "acme", "app", "app-issued-key-123456").await;

    // Provisioning targets: cleartext to another host, private and metadata addresses.
    let (st, v) = put_target(&s, json!({"url": "http://app.example.test/scim/v2"})).await;
    refused(st, &v, &["url", "https", "allow_http"]);
    let (st, v) = put_target(&s, json!({"url": "https://10.1.2.3/scim/v2"})).await;
    refused(st, &v, &["10.1.2.3", "private", "allow_cidrs"]);
    let (st, v) = put_target(&s, json!({"url": "https://169.254.169.254/latest"})).await;
    refused(st, &v, &["link-local"]);
    let (st, v) = put_target(&s, json!({"url": "https://[::ffff:192.168.0.7]/scim"})).await;
    refused(st, &v, &["private"]);
    // The OAuth2 token URL the same way.
    let oauth = |token_url: &str| {
        json!({"url": "https://app.example.test/scim/v2",
               "oauth": {"token_url": token_url, "client_id": "c", "client_secret": "client-secret-value"}})
    };
    let (st, v) = put_target(&s, oauth("http://login.example.test/token")).await;
    refused(st, &v, &["oauth.token_url", "https"]);
    let (st, v) = put_target(&s, oauth("https://[fd00::1]/token")).await;
    refused(st, &v, &["oauth.token_url", "unique-local"]);
    assert!(!v.to_string().contains("client-secret-value"), "{v}");
    let (st, v) = s.api(M::GET, TARGET, Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["target"].is_null(), "nothing stored: {v}");

    // A lab opt-in allows cleartext (never a denied address) and is audited.
    let (st, v) =
        put_target(&s, json!({"url": "http://app.lab.example.test/scim/v2", "allow_http": true, "oauth": null})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["target"]["allow_http"], true, "{v}");
    let (st, v) = put_target(&s, json!({"url": "http://192.168.0.7/scim/v2", "allow_http": true})).await;
    refused(st, &v, &["private"]);
    // The CLI's flag sends the same opt-in; without it the URL is refused.
    let out = s.cli(&["sync", "target", "set", "acme/app", "--url", "http://app.lab.example.test/v2"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_http"));
    let v =
        s.cli_json(&["sync", "target", "set", "acme/app", "--url", "http://app.lab.example.test/v2", "--allow-http"]);
    assert_eq!(v["target"]["allow_http"], true, "{v}");
    let (st, v) = s.api(M::GET, "/api/v1/audit?action=sync.target.set&limit=10", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let records = v["records"].as_array().unwrap();
    assert!(
        records.iter().any(|r| r["outcome"] == "success" && r["details"]["allow_http"] == true),
        "the opt-in is in the audit record: {v}"
    );

    // A connector and a trust-material source.
    let (st, v) = s
        .api(
            M::POST,
            "/api/v1/directories/acme/trusts/app/connectors",
            Some(&s.token),
            Some(json!({"name": "hook", "spec": {"kind": "webhook", "url": "https://192.168.1.10/hook"},
                        "credentials": json!({"kind": "webhook", "signing_secret": "hook-secret-value"}).to_string()})),
        )
        .await;
    refused(st, &v, &["private"]);
    let (st, v) = s
        .api(
            M::PUT,
            "/api/v1/directories/acme/trusts/app/material/source",
            Some(&s.token),
            Some(json!({"jwks_url": "https://169.254.169.254/keys"})),
        )
        .await;
    refused(st, &v, &["link-local"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_cidrs_opens_a_private_range() {
    let s = Server::start_with(Backend::Sqlite, &[], &[("FEDKEY_EGRESS_ALLOW_CIDRS", "10.20.0.0/16, fd00:ab::/32")]);
    let (st, v) = s.api(M::POST, "/api/v1/directories", Some(&s.token), Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 201, "{v}");
    outbound_trust(&s, "acme", "app", "app-issued-key-123456").await;
    let (st, v) = put_target(&s, json!({"url": "https://10.20.3.4/scim/v2"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = put_target(&s, json!({"url": "https://10.21.0.1/scim/v2"})).await;
    refused(st, &v, &["private"]);
}
