//! Set-up shared by the server benchmarks.

use std::sync::Arc;
use std::time::Duration;

use fedkey_core::{Direction, PeerKind, SystemClock};
use fedkey_crypto::{Keyring, MasterKey};
use fedkey_server::AppState;
use fedkey_store::audit::WriterConfig;
use fedkey_store::keyfile::StaticKeyring;
use fedkey_store::ops::NewTrust;
use fedkey_store::{Actor, Db, Store};

/// A store on `url` with directory `acme` and inbound trust `acme/idp`; returns the
/// application state and the trust's provisioning key.
pub async fn fedkey_state(url: &str) -> (AppState, String) {
    let db = Db::connect(url).await.unwrap();
    let keyring = Arc::new(StaticKeyring(Arc::new(Keyring::new(MasterKey::generate().unwrap()))));
    let (store, _) =
        Store::open(db, keyring, Arc::new(SystemClock::default()), WriterConfig::default(), Duration::from_secs(5))
            .await
            .unwrap();
    let actor = Actor::system("bench");
    store.create_directory(&actor, "acme").await.unwrap();
    let trust = NewTrust {
        directory: "acme".into(),
        name: "idp".into(),
        direction: Direction::Inbound,
        peer_kind: PeerKind::Entra,
        scopes: None,
        description: None,
        outbound_key: None,
    };
    let (_, _, key) = store.create_trust(&actor, trust).await.unwrap();
    let key = key.unwrap().expose().to_owned();
    let state = AppState::from(fedkey_server::state::AppParts {
        store: Arc::new(store),
        test_clock: None,
        scheme: "http",
        limiter: Arc::new(fedkey_server::ratelimit::RateLimiter::new()),
        source_limiter: Arc::new(fedkey_server::source_limit::SourceLimiter::new(bench_source_limits())),
        trusted_proxies: Arc::from(Vec::new()),
        engine: None,
        watchers: None,
        sync: None,
        reconcile_schedule: None,
        public_url: "http://127.0.0.1".into(),
        egress: fedkey_egress::Egress::strict().unwrap(),
        leaks: Default::default(),
        metrics_token: None,
    });
    (state, key)
}

/// The per-source limit of the benchmarks: `BENCH_SOURCE_LIMIT=off` turns it off (for an
/// A/B pair); on by default, at a rate one loopback load generator never reaches, so the
/// limiter's work is measured without refusing anything.
pub fn bench_source_limits() -> fedkey_server::source_limit::SourceLimits {
    match std::env::var("BENCH_SOURCE_LIMIT").as_deref() {
        Ok("off") => fedkey_server::source_limit::SourceLimits::OFF,
        _ => fedkey_server::source_limit::SourceLimits { rate: 10_000_000, burst: 10_000_000 },
    }
}
