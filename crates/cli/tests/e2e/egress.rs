//! The egress policy at configuration time, through the admin API on the real binary: a
//! provisioning target, an OAuth2 token URL, a connector and a trust-material source whose
//! URL is cleartext to another host or a denied address are refused with a readable 400 and
//! nothing is stored; a lab opt-in is accepted and recorded in the audit log;
//! `FEDKEY_EGRESS_ALLOW_CIDRS` opens a private range.

use super::*;

use axum::response::IntoResponse;
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

// ------------------------------------------------------------ trust material: SSRF

/// Counts TCP connections accepted on a loopback port and closes each at once: a
/// destination fedkey must never reach.
struct Counter {
    port: u16,
    accepts: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    async fn start() -> Counter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        Counter { port, accepts, task }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An https IdP on `localhost` whose certificate comes from a test CA (written to `ca_file`
/// for the server to trust). Each path prefix is one IdP configuration:
/// `/good` names its own https `jwks_uri`, `/cleartext` a plain-http one on `cleartext`,
/// `/metadata` the cloud-metadata address, and `/moved` redirects to another origin
/// (`127.0.0.1` instead of `localhost`, on `other_origin`).
struct TlsIdp {
    base: String,
    ca_file: tempfile::NamedTempFile,
    cleartext: Counter,
    other_origin: Counter,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsIdp {
    async fn start() -> TlsIdp {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, ca.der()).unwrap();

        let (cleartext, other_origin) = (Counter::start().await, Counter::start().await);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let discovery = |jwks_uri: String| {
            let body = json!({"issuer": "https://idp.example/tenant", "jwks_uri": jwks_uri}).to_string();
            axum::routing::get(move || async move { ([("content-type", "application/json")], body) })
        };
        let jwks = json!({"keys": [super::federation::IdpKey::new("k1").jwk]}).to_string();
        let moved_to = format!("https://127.0.0.1:{}/.well-known/openid-configuration", other_origin.port);
        let app = axum::Router::new()
            .route("/good/.well-known/openid-configuration", discovery(format!("{base}/good/jwks")))
            .route("/good/jwks", axum::routing::get(move || async move { jwks }))
            .route(
                "/cleartext/.well-known/openid-configuration",
                discovery(format!("http://127.0.0.1:{}/jwks", cleartext.port)),
            )
            .route("/metadata/.well-known/openid-configuration", discovery("https://169.254.169.254/jwks".into()))
            .route(
                "/moved/.well-known/openid-configuration",
                axum::routing::get(move || async move {
                    (axum::http::StatusCode::FOUND, [("location", moved_to)]).into_response()
                }),
            );
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let task = tokio::spawn(async move {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsIdp { base, ca_file, cleartext, other_origin, task }
    }

    fn discovery_url(&self, idp: &str) -> String {
        format!("{}/{idp}/.well-known/openid-configuration", self.base)
    }
}

/// The `material.fetch_failed` error recorded for `trust` (empty when there is none).
async fn fetch_failure(s: &Server, trust: &str) -> String {
    let (st, v) = s.api(M::GET, "/api/v1/audit?action=material.fetch_failed&limit=100", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let records = v["records"].as_array().unwrap();
    let mine = records.iter().find(|r| r["trust"] == trust);
    mine.map(|r| r["details"]["error"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

/// An https IdP's discovery document may not send fedkey to plain http or to the cloud
/// metadata address, and a redirect to another origin is not followed: each is refused,
/// audited as a failed fetch, and the listeners on the would-be destinations saw no
/// connection. The same IdP's well-behaved configuration is fetched, which shows the
/// refusals come from the policy and not from TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_and_redirects_cannot_steer_fetches() {
    for b in backends() {
        let idp = TlsIdp::start().await;
        let ca = idp.ca_file.path().to_str().unwrap().to_owned();
        let s = Server::start_with(b, &[], &[("FEDKEY_UNSAFE_EGRESS_CA_DER", &ca)]);
        s.cli_json(&["directory", "create", "acme"]);
        for name in ["good", "cleartext", "metadata", "moved"] {
            s.cli_json(&["trust", "create", "--directory", "acme", "--name", name, "--direction", "inbound"]);
            let url = idp.discovery_url(name);
            s.cli_json(&["material", "source", &format!("acme/{name}"), "--discovery-url", &url]);
        }
        let (st, v) = s.api(M::POST, "/api/v1/test/watchers/tick", Some(&s.token), None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["report"]["failed"], 3, "{b:?}: {v}");

        let good = s.cli_json(&["material", "show", "acme/good"]);
        assert_eq!(good["versions"][0]["status"], "current", "{b:?}: the https IdP is trusted: {good}");
        assert_eq!(fetch_failure(&s, "good").await, "", "{b:?}");

        let cleartext = fetch_failure(&s, "cleartext").await;
        assert!(cleartext.contains("downgrade https to http"), "{b:?}: {cleartext}");
        let metadata = fetch_failure(&s, "metadata").await;
        assert!(metadata.contains("169.254.169.254") && metadata.contains("link-local"), "{b:?}: {metadata}");
        let moved = fetch_failure(&s, "moved").await;
        assert!(moved.contains("redirect"), "{b:?}: {moved}");
        for m in ["cleartext", "metadata", "moved"] {
            let shown = s.cli_json(&["material", "show", &format!("acme/{m}")]);
            assert_eq!(shown["versions"].as_array().map_or(0, Vec::len), 0, "{b:?}: nothing stored for {m}: {shown}");
        }
        assert_eq!(idp.cleartext.accepts(), 0, "{b:?}: no connection to the plain-http jwks_uri");
        assert_eq!(idp.other_origin.accepts(), 0, "{b:?}: no connection to the redirect's other origin");
    }
}
