//! Authenticated vs unauthenticated throughput of the same endpoint over real HTTP on
//! loopback: `GET /scim/v2/{dir}/ServiceProviderConfig`, once through the real router
//! (key authentication + a durable, group-committed audit record per request) and once
//! through a router that renders the same document without authentication.
//!
//! Run: `cargo bench -p fedkey-server --bench http_auth` (env BENCH_SECONDS, BENCH_CONCURRENCY).

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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // `cargo test --all-targets` runs benches without `--bench`: then only a short
        // smoke run, to prove the benchmark still works.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let secs = if smoke { 0 } else { env_num("BENCH_SECONDS", 5) };
        let conc = if smoke { 4 } else { env_num("BENCH_CONCURRENCY", 64) };
        let dir = tempfile::tempdir().unwrap();
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
        let path = "/scim/v2/acme/ServiceProviderConfig";

        // Warm up both (connections, caches).
        load(format!("{open}{path}"), None, conc, secs.min(1)).await;
        load(format!("{authed}{path}"), Some(key.clone()), conc, secs.min(1)).await;

        // Alternate the two variants for several rounds and compare medians, so a
        // noisy neighbour on the machine affects both alike.
        let rounds = if smoke { 1 } else { env_num("BENCH_ROUNDS", 3) };
        let (mut base, mut auth) = (Vec::new(), Vec::new());
        let (mut base_fail, mut auth_fail) = (0, 0);
        let (mut base_lat, mut auth_lat) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (rps, failed, lat) = load(format!("{open}{path}"), None, conc, secs).await;
            base.push(rps);
            base_fail += failed;
            base_lat = lat;
            let (rps, failed, lat) = load(format!("{authed}{path}"), Some(key.clone()), conc, secs).await;
            auth.push(rps);
            auth_fail += failed;
            auth_lat = lat;
        }
        let (base_rps, auth_rps) = (median(&mut base), median(&mut auth));
        let records = fedkey_store::audit::head(&state.store.db).await.unwrap().0;
        if smoke {
            assert!(base_fail == 0 && auth_fail == 0 && auth_rps > 0.0, "smoke run failed");
            println!("http_auth smoke run ok ({records} audit records); run `cargo bench -p fedkey-server --bench http_auth` for figures");
            return;
        }

        println!(
            "\nGET {path} over loopback HTTP/1.1, {conc} concurrent clients, {rounds} alternating rounds of {secs}s, median req/s, SQLite (synchronous=FULL)"
        );
        println!("rounds: baseline {base:.0?}, authenticated {auth:.0?}");
        println!("| variant | req/s | p50 ms | p99 ms | failed |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| unauthenticated (baseline) | {base_rps:.0} | {:.2} | {:.2} | {base_fail} |",
            pct(&base_lat, 0.5),
            pct(&base_lat, 0.99)
        );
        println!(
            "| key auth + durable audit record | {auth_rps:.0} | {:.2} | {:.2} | {auth_fail} |",
            pct(&auth_lat, 0.5),
            pct(&auth_lat, 0.99)
        );
        println!(
            "\nauthentication + audit cost: {:.1}% of baseline throughput ({records} audit records written)",
            (1.0 - auth_rps / base_rps) * 100.0
        );
    });
}
