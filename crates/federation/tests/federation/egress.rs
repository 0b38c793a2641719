//! Trust material under the egress policy: an https IdP (a local TLS server whose test CA
//! the egress client trusts) whose discovery document names a plain-http or a cloud-metadata
//! `jwks_uri`, and a redirect to another origin. A listener on each would-be destination
//! counts accepted connections and proves that none was made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fedkey_egress::{Egress, EgressConfig};
use fedkey_federation::{FetchConfig, FetchError, Fetcher, RefreshError, Source, WatchEvent, Watcher, WatcherConfig};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::idp::clock;
use crate::keys;

/// Counts TCP connections accepted on a loopback port, and closes each at once.
struct Counter {
    port: u16,
    accepts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    async fn start() -> Counter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let n = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Counter { port, accepts, task }
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Doc {
    jwks_uri: String,
    jwks: String,
    location: String,
    discovery_hits: usize,
}

/// An https IdP on `localhost`, with a certificate from a test CA.
struct TlsIdp {
    base: String,
    ca_der: Vec<u8>,
    doc: Arc<Mutex<Doc>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsIdp {
    async fn start() -> TlsIdp {
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
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
        let doc = Arc::new(Mutex::new(Doc {
            jwks_uri: format!("{base}/jwks"),
            jwks: keys::jwks(&[&keys::TestKey::ec("k1")]),
            location: String::new(),
            discovery_hits: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/moved", get(moved))
            .with_state(doc.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = TowerToHyperService::new(app);
                    let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        TlsIdp { base, ca_der: ca.der().to_vec(), doc, task }
    }

    fn egress(&self) -> Egress {
        Egress::new(EgressConfig::new(Vec::new()).with_root_der(self.ca_der.clone())).unwrap()
    }

    fn watcher(&self, source: Source) -> Watcher {
        let fetch = FetchConfig { total_timeout: Duration::from_secs(5), ..FetchConfig::default() };
        Watcher::new(WatcherConfig::new(source), Fetcher::new(self.egress(), fetch), Arc::new(clock()))
    }

    fn discovery(&self) -> Source {
        Source::OidcDiscovery { url: format!("{}/.well-known/openid-configuration", self.base), expected_issuer: None }
    }
}

async fn discovery(State(doc): State<Arc<Mutex<Doc>>>) -> Response {
    let mut d = doc.lock().unwrap();
    d.discovery_hits += 1;
    let body = serde_json::json!({"issuer": "https://idp.test", "jwks_uri": d.jwks_uri});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn jwks(State(doc): State<Arc<Mutex<Doc>>>) -> Response {
    let body = doc.lock().unwrap().jwks.clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn moved(State(doc): State<Arc<Mutex<Doc>>>) -> Response {
    let location = doc.lock().unwrap().location.clone();
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn refusal(event: WatchEvent) -> String {
    match event {
        WatchEvent::FetchFailed { error: RefreshError::Fetch(FetchError::Refused { reason, .. }), .. } => reason,
        other => panic!("expected a refused fetch, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tls_idp_is_fetched_through_the_egress_client() {
    let idp = TlsIdp::start().await;
    let event = idp.watcher(idp.discovery()).refresh_now().await;
    assert!(matches!(event, WatchEvent::Accepted { .. }), "{event:?}");
}

#[tokio::test]
async fn an_https_discovery_document_cannot_send_the_key_fetch_to_plain_http() {
    let idp = TlsIdp::start().await;
    let counter = Counter::start().await;
    idp.doc.lock().unwrap().jwks_uri = format!("http://127.0.0.1:{}/jwks", counter.port);
    let reason = refusal(idp.watcher(idp.discovery()).refresh_now().await);
    assert!(reason.contains("downgrade"), "{reason}");
    assert_eq!(idp.doc.lock().unwrap().discovery_hits, 1, "the discovery document itself was fetched");
    assert_eq!(counter.accepts(), 0, "no connection to the plain-http jwks_uri");
}

#[tokio::test]
async fn a_jwks_uri_at_the_cloud_metadata_address_is_refused() {
    let idp = TlsIdp::start().await;
    for uri in ["https://169.254.169.254/latest/meta-data/jwks", "https://[::ffff:169.254.169.254]/jwks"] {
        idp.doc.lock().unwrap().jwks_uri = uri.to_owned();
        let started = std::time::Instant::now();
        let reason = refusal(idp.watcher(idp.discovery()).refresh_now().await);
        assert!(reason.contains("169.254.169.254") && reason.contains("link-local"), "{reason}");
        // Refused before any connection attempt: no connect timeout was waited out.
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_never_connected() {
    let idp = TlsIdp::start().await;
    let counter = Counter::start().await;
    idp.doc.lock().unwrap().location = format!("https://127.0.0.1:{}/jwks", counter.port);
    let source = Source::Jwks { url: format!("{}/moved", idp.base), issuer: None };
    let reason = refusal(idp.watcher(source.clone()).refresh_now().await);
    assert!(reason.contains("another origin"), "{reason}");
    assert_eq!(counter.accepts(), 0, "no connection to the redirect's target");

    // On the same origin, the redirect is followed (and checked again).
    idp.doc.lock().unwrap().location = format!("{}/jwks", idp.base);
    let event = idp.watcher(source).refresh_now().await;
    assert!(matches!(event, WatchEvent::Accepted { .. }), "{event:?}");
}
