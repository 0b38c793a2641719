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
use sqlx::{AssertSqlSafe, Connection, PgConnection};

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
        events: None,
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

// Not every benchmark uses every helper below (each bench target compiles this module).

/// The real router on a loopback port (port 0) over [`fedkey_state`]: the state, the
/// provisioning key and the SCIM base URL of `acme`.
#[allow(dead_code)]
pub async fn start_fedkey(url: &str) -> (AppState, String, String) {
    let (state, key) = fedkey_state(url).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = fedkey_server::router(state.clone());
    tokio::spawn(async move {
        axum::serve(l, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    (state, key, format!("http://{addr}/scim/v2/acme"))
}

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A scratch PostgreSQL database (`fedkey_bench_<uuid>`), dropped by [`PgScratch::drop_now`].
#[allow(dead_code)]
pub struct PgScratch {
    admin: String,
    pub name: String,
    pub url: String,
}

#[allow(dead_code)]
pub async fn pg_scratch() -> Result<PgScratch, String> {
    let admin = std::env::var("FEDKEY_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let mut c = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("no PostgreSQL server: {e}")),
        Err(_) => return Err("no PostgreSQL server: connection timed out".into()),
    };
    let name = format!("fedkey_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let (scheme, rest) = base.split_once("://").ok_or("URL without scheme")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let url = format!("{scheme}://{authority}/{name}{query}");
    Ok(PgScratch { admin, name, url })
}

#[allow(dead_code)]
impl PgScratch {
    pub async fn drop_now(self) {
        if let Ok(mut c) = PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            let _ = c.close().await;
        }
    }
}

/// A fresh SQLite database file: removed at the end, or kept (and its path printed) with
/// BENCH_KEEP_DB=1, to inspect query plans and the WAL afterwards with `sqlite3`.
#[allow(dead_code)]
pub fn sqlite_file() -> (Option<tempfile::TempDir>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    if std::env::var("BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
        println!("[sqlite] BENCH_KEEP_DB=1: the database stays at {}", dir.path().join("bench.db").display());
        let _kept = dir.keep();
        (None, url)
    } else {
        (Some(dir), url)
    }
}
