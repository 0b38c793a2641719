//! The fixed cost of a request and the cost of authentication, over real HTTP on loopback,
//! in one run: a fixed JSON body from a bare axum router (the floor), `/healthz` through
//! fedkey's whole router, `GET /scim/v2/{dir}/ServiceProviderConfig` through the request
//! middleware without authentication, and the same through the real router (key
//! authentication + a durable, group-committed audit record per request).
//!
//! Run: `cargo bench -p fedkey-server --bench http_auth` (env BENCH_SECONDS,
//! BENCH_CONCURRENCY, BENCH_ROUNDS, BENCH_OBSERVE=off).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn spawn(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    format!("http://{addr}")
}

/// Closed-loop load: `conc` workers, each sending requests back to back for `secs`.
async fn load(url: String, key: Option<String>, conc: u64, secs: u64) -> (f64, u64, Vec<f64>) {
    // Zero seconds means a smoke run of a fraction of a second.
    let run = if secs == 0 { Duration::from_millis(200) } else { Duration::from_secs(secs) };
    let client = fedkey_egress::operator_client(Duration::from_secs(60)).unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, key, ok, failed) = (client.clone(), url.clone(), key.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = client.get(&url);
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (ok.load(Ordering::Relaxed) as f64 / elapsed, failed.load(Ordering::Relaxed), lat)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(lat: &[f64], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat[((lat.len() as f64 - 1.0) * p) as usize]
}

/// What the real binary does on every request besides routing: the Prometheus recorder and
/// a JSON log at `info` (to a file here instead of stderr). `BENCH_OBSERVE=off` leaves the
/// log out; `BENCH_LOG=…` replaces its filter (e.g. `info,fedkey_server::request=debug`
/// writes a line per request).
fn observe_like_serve(dir: &std::path::Path) {
    if std::env::var("BENCH_OBSERVE").as_deref() == Ok("off") {
        return;
    }
    fedkey_server::metrics::handle();
    let log = std::fs::File::create(dir.join("requests.log")).unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        ))
        .with_writer(std::sync::Mutex::new(log))
        .json()
        .try_init();
}

/// One measured variant: a name, the URL it loads and the key it sends.
struct Variant {
    name: &'static str,
    url: String,
    key: Option<String>,
    rps: Vec<f64>,
    failed: u64,
    lat: Vec<f64>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // `cargo test --all-targets` runs benches without `--bench`: then only a short
        // smoke run, to prove the benchmark still works.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let secs = if smoke { 0 } else { env_num("BENCH_SECONDS", 5) };
        let conc = if smoke { 4 } else { env_num("BENCH_CONCURRENCY", 64) };
        let dir = tempfile::tempdir().unwrap();
        if !smoke {
            observe_like_serve(dir.path());
        }
        let (state, key) = common::fedkey_state(&format!("sqlite://{}", dir.path().join("bench.db").display())).await;

        let authed = spawn(fedkey_server::router(state.clone())).await;
        let open = spawn(
            Router::new()
                .route(
                    "/scim/v2/{directory}/ServiceProviderConfig",
                    get(|Path(d): Path<String>, h: HeaderMap| async move { fedkey_server::scim::render_spc("http", &d, &h) }),
                )
                // The same per-request middleware as the real router (request id, metrics, log).
                .layer(axum::middleware::from_fn_with_state(state.clone(), fedkey_server::request::request_context)),
        )
        .await;
        // The floor: a fixed JSON body, no middleware, no state.
        let bare = spawn(Router::new().route("/fixed", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) })))
            .await;
        let path = "/scim/v2/acme/ServiceProviderConfig";
        let variant = |name, url: String, key: Option<String>| Variant { name, url, key, rps: vec![], failed: 0, lat: vec![] };
        let mut variants = [
            variant("fixed JSON, bare axum (floor)", format!("{bare}/fixed"), None),
            variant("`/healthz`, full router", format!("{authed}/healthz"), None),
            variant("SPC, request middleware, no auth", format!("{open}{path}"), None),
            variant("SPC, key auth + durable audit record", format!("{authed}{path}"), Some(key.clone())),
        ];

        // Warm up every variant (connections, caches).
        for v in &variants {
            load(v.url.clone(), v.key.clone(), conc, secs.min(1)).await;
        }

        // Alternate the variants for several rounds and compare medians, so a noisy
        // neighbour on the machine affects all alike.
        let rounds = if smoke { 1 } else { env_num("BENCH_ROUNDS", 3) };
        for _ in 0..rounds {
            for v in variants.iter_mut() {
                let (rps, failed, lat) = load(v.url.clone(), v.key.clone(), conc, secs).await;
                v.rps.push(rps);
                v.failed += failed;
                v.lat = lat;
            }
        }
        let records = state.store.audit_head().await.unwrap().0;
        if smoke {
            assert!(variants.iter().all(|v| v.failed == 0 && median(&mut v.rps.clone()) > 0.0), "smoke run failed");
            println!("http_auth smoke run ok ({records} audit records); run `cargo bench -p fedkey-server --bench http_auth` for figures");
            return;
        }

        let medians: Vec<f64> = variants.iter().map(|v| median(&mut v.rps.clone())).collect();
        let (floor, healthz) = (medians[0], medians[1]);
        let observe = if std::env::var("BENCH_OBSERVE").as_deref() == Ok("off") { "off" } else { "on" };
        println!(
            "\nLoopback HTTP/1.1, {conc} concurrent clients, {rounds} alternating rounds of {secs}s, median req/s, SQLite (synchronous=FULL), metrics and request log {observe}"
        );
        println!("| variant | req/s | % of floor | % of /healthz | p50 ms | p99 ms | failed | rounds |");
        println!("|---|---:|---:|---:|---:|---:|---:|---|");
        for (v, m) in variants.iter().zip(&medians) {
            println!(
                "| {} | {m:.0} | {:.0} % | {:.0} % | {:.2} | {:.2} | {} | {:.0?} |",
                v.name,
                m / floor * 100.0,
                m / healthz * 100.0,
                pct(&v.lat, 0.5),
                pct(&v.lat, 0.99),
                v.failed,
                v.rps
            );
        }
        println!("\n({records} audit records written)");
    });
}
