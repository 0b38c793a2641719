//! A fake IdP: OIDC discovery (`/.well-known/openid-configuration`, application/json), a JWKS
//! with a settable `Cache-Control`, and SAML metadata (application/samlmetadata+xml). The test
//! swaps documents between calls and can make every endpoint fail with 500, hang, or stream an
//! endless body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fedkey_core::clock::{ManualClock, Timestamp};
use fedkey_federation::{FetchConfig, Fetcher, Source, Watcher, WatcherConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Status500,
    /// Accepts the request and never answers.
    Hang,
    /// 200 with a chunked body that never ends.
    Endless,
}

struct Docs {
    base: String,
    issuer: String,
    jwks: String,
    jwks_cache_control: Option<String>,
    saml: String,
    mode: Mode,
    discovery_hits: usize,
    jwks_hits: usize,
    saml_hits: usize,
}

type Shared = Arc<Mutex<Docs>>;

pub struct Idp {
    pub base: String,
    docs: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Idp {
    pub async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let docs = Arc::new(Mutex::new(Docs {
            base: base.clone(),
            issuer: base.clone(),
            jwks: r#"{"keys":[]}"#.into(),
            jwks_cache_control: Some("public, max-age=600".into()),
            saml: String::new(),
            mode: Mode::Normal,
            discovery_hits: 0,
            jwks_hits: 0,
            saml_hits: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/saml/metadata", get(saml))
            .with_state(docs.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { base, docs, server }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base)
    }
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base)
    }
    pub fn saml_url(&self) -> String {
        format!("{}/saml/metadata", self.base)
    }

    pub fn set_jwks(&self, body: impl Into<String>) {
        self.docs.lock().unwrap().jwks = body.into();
    }
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.docs.lock().unwrap().jwks_cache_control = value.map(str::to_owned);
    }
    pub fn set_saml(&self, body: impl Into<String>) {
        self.docs.lock().unwrap().saml = body.into();
    }
    pub fn set_issuer(&self, issuer: &str) {
        self.docs.lock().unwrap().issuer = issuer.to_owned();
    }
    pub fn set_mode(&self, mode: Mode) {
        self.docs.lock().unwrap().mode = mode;
    }
    pub fn jwks_hits(&self) -> usize {
        self.docs.lock().unwrap().jwks_hits
    }
    pub fn saml_hits(&self) -> usize {
        self.docs.lock().unwrap().saml_hits
    }
    pub fn discovery_hits(&self) -> usize {
        self.docs.lock().unwrap().discovery_hits
    }
}

/// What the current mode says to send instead of the document, if anything.
async fn failure(docs: &Shared) -> Option<Response> {
    let mode = docs.lock().unwrap().mode;
    match mode {
        Mode::Normal => None,
        Mode::Status500 => Some((StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()),
        Mode::Hang => {
            std::future::pending::<()>().await;
            None
        }
        Mode::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Some(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
        }
    }
}

async fn discovery(State(docs): State<Shared>) -> Response {
    if let Some(r) = failure(&docs).await {
        return r;
    }
    let mut d = docs.lock().unwrap();
    d.discovery_hits += 1;
    let issuer = d.issuer.clone();
    let base = d.base.clone();
    // The fields OpenID Connect Discovery 1.0 §3 marks as required, plus the JWKS location.
    let body = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code", "id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn jwks(State(docs): State<Shared>) -> Response {
    if let Some(r) = failure(&docs).await {
        return r;
    }
    let mut d = docs.lock().unwrap();
    d.jwks_hits += 1;
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], d.jwks.clone()).into_response();
    if let Some(cc) = &d.jwks_cache_control {
        resp.headers_mut().insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    resp
}

async fn saml(State(docs): State<Shared>) -> Response {
    if let Some(r) = failure(&docs).await {
        return r;
    }
    let mut d = docs.lock().unwrap();
    d.saml_hits += 1;
    ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], d.saml.clone()).into_response()
}

pub const T0: Timestamp = Timestamp(1_800_000_000_000_000);

pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

/// A watcher with the library defaults (a generous 5 s fetch timeout); `tweak` adjusts them.
pub fn watcher(source: Source, clock: &ManualClock, tweak: impl FnOnce(&mut WatcherConfig)) -> Watcher {
    watcher_with_timeout(source, clock, Duration::from_secs(5), tweak)
}

pub fn watcher_with_timeout(
    source: Source,
    clock: &ManualClock,
    timeout: Duration,
    tweak: impl FnOnce(&mut WatcherConfig),
) -> Watcher {
    let egress = fedkey_egress::Egress::strict().unwrap();
    let fetcher =
        Fetcher::new(egress, FetchConfig { total_timeout: timeout, max_body_bytes: 256 * 1024, allow_http: false });
    let mut config = WatcherConfig::new(source);
    tweak(&mut config);
    Watcher::new(config, fetcher, Arc::new(clock.clone()))
}
