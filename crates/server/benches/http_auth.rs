//! The fixed cost of a request and the cost of authentication, over real HTTP on loopback,
//! in one run: a fixed JSON body from a bare axum router (the floor), `/healthz` through
//! fedkey's whole router, `GET /scim/v2/{dir}/ServiceProviderConfig` through the request
//! middleware without authentication, and the same through the real router (key
//! authentication + a durable, group-committed audit record per request), on SQLite and on
//! PostgreSQL, and the same with a key the store does not know and with a known key on
//! another directory (refusals: their records are written or summarized, never costlier).
//! The audit chain is verified at the end of the run (on both backends).
//!
//! Run: `cargo bench -p fedkey-server --bench http_auth` (env BENCH_SECONDS,
//! BENCH_CONCURRENCY, BENCH_ROUNDS, BENCH_OBSERVE=off, BENCH_VARIANTS=id,id…,
//! FEDKEY_TEST_PG_URL; PostgreSQL is skipped when no server answers).

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
/// Answers with `expect` count as served; anything else as failed.
async fn load(url: String, key: Option<String>, expect: u16, conc: u64, secs: u64) -> (f64, u64, Vec<f64>) {
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
                    Ok(r) if r.status().as_u16() == expect => {
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

/// Whether `BENCH_VARIANTS` (a comma-separated list of ids; all when unset) selects `id`.
fn wanted(id: &str) -> bool {
    std::env::var("BENCH_VARIANTS").map_or(true, |l| l.split(',').any(|w| w.trim() == id))
}

/// Verifies the whole audit chain of `state`'s store (panics if it does not verify);
/// returns how many records it holds.
async fn verify_chain(state: &fedkey_server::AppState) -> i64 {
    let s = &state.store;
    let report = s.verify_audit().await.unwrap();
    assert!(report.is_ok(), "audit verify failed after the run: {report:?}");
    s.audit_head().await.unwrap().0
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

/// One measured variant: a short id (for `BENCH_VARIANTS`), a name, the URL it loads, the
/// key it sends and the status it expects.
struct Variant {
    id: &'static str,
    name: &'static str,
    url: String,
    key: Option<String>,
    expect: u16,
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
        // The same store on PostgreSQL (its own scratch database), unless no server answers.
        let pg = if smoke || !wanted("auth-pg") && !wanted("unknown-pg") {
            None
        } else {
            match common::pg_scratch().await {
                Ok(scratch) => {
                    let (state, key) = common::fedkey_state(&scratch.url).await;
                    let url = spawn(fedkey_server::router(state.clone())).await;
                    Some((scratch, state, key, url))
                }
                Err(e) => {
                    println!("[postgres] skipped: {e}");
                    None
                }
            }
        };
        // A well-formed provisioning key that no trust has: looked up, refused (401).
        let unknown = fedkey_crypto::token::generate(fedkey_crypto::TokenKind::Provisioning).unwrap().expose().to_owned();

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
        let variant = |id, name, url: String, key: Option<&String>, expect| Variant {
            id,
            name,
            url,
            key: key.cloned(),
            expect,
            rps: vec![],
            failed: 0,
            lat: vec![],
        };
        let mut variants = vec![
            variant("floor", "fixed JSON, bare axum (floor)", format!("{bare}/fixed"), None, 200),
            variant("healthz", "`/healthz`, full router", format!("{authed}/healthz"), None, 200),
            variant("spc", "SPC, request middleware, no auth", format!("{open}{path}"), None, 200),
            variant("auth", "SPC, key auth + durable audit record", format!("{authed}{path}"), Some(&key), 200),
            variant("unknown", "SPC, unknown key (401)", format!("{authed}{path}"), Some(&unknown), 401),
            variant(
                "wrongdir",
                "SPC, known key, another directory (401)",
                format!("{authed}/scim/v2/other/ServiceProviderConfig"),
                Some(&key),
                401,
            ),
        ];
        if let Some((_, _, pg_key, pg_url)) = &pg {
            let url = format!("{pg_url}{path}");
            variants.push(variant("auth-pg", "PostgreSQL: SPC, key auth + durable audit record", url.clone(), Some(pg_key), 200));
            variants.push(variant("unknown-pg", "PostgreSQL: SPC, unknown key (401)", url, Some(&unknown), 401));
        }
        // The shares are of the floor and of `/healthz`: those two always run.
        variants.retain(|v| v.id == "floor" || v.id == "healthz" || wanted(v.id));

        // Warm up every variant (connections, caches).
        for v in &variants {
            load(v.url.clone(), v.key.clone(), v.expect, conc, secs.min(1)).await;
        }

        // Alternate the variants for several rounds and compare medians, so a noisy
        // neighbour on the machine affects all alike.
        let rounds = if smoke { 1 } else { env_num("BENCH_ROUNDS", 3) };
        for _ in 0..rounds {
            for v in variants.iter_mut() {
                let (rps, failed, lat) = load(v.url.clone(), v.key.clone(), v.expect, conc, secs).await;
                v.rps.push(rps);
                v.failed += failed;
                v.lat = lat;
            }
        }
        // Fail-closed is only half of it: the chain every answer waited for must verify.
        let records = verify_chain(&state).await;
        let pg_records = match pg {
            Some((scratch, pg_state, ..)) => {
                let n = verify_chain(&pg_state).await;
                pg_state.store.close().await;
                scratch.drop_now().await;
                Some(n)
            }
            None => None,
        };
        if smoke {
            assert!(variants.iter().all(|v| v.failed == 0 && median(&mut v.rps.clone()) > 0.0), "smoke run failed");
            println!("http_auth smoke run ok ({records} audit records); run `cargo bench -p fedkey-server --bench http_auth` for figures");
            return;
        }

        let medians: Vec<f64> = variants.iter().map(|v| median(&mut v.rps.clone())).collect();
        let (floor, healthz) = (medians[0], medians[1]);
        let observe = if std::env::var("BENCH_OBSERVE").as_deref() == Ok("off") { "off" } else { "on" };
        println!(
            "\nLoopback HTTP/1.1, {conc} concurrent clients, {rounds} alternating rounds of {secs}s, median req/s, SQLite (synchronous=FULL) unless marked PostgreSQL, metrics and request log {observe}"
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
        match pg_records {
            Some(n) => println!("\n(audit chains verified: {records} records on SQLite, {n} on PostgreSQL)"),
            None => println!("\n(audit chain verified: {records} records on SQLite)"),
        }
    });
}
