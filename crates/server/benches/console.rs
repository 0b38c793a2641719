//! The console's overview page with 1,000 trusts, over real HTTP on loopback through the
//! whole router (session look-up, health model, templates): time per page and the page's
//! weight with its stylesheet and script. Budget: under 50 ms, under 200 KB.
//!
//! Run: `cargo bench -p fedkey-server --bench console` (env BENCH_TRUSTS, BENCH_PAGES).
//! Under `cargo test --all-targets` (no `--bench`) it runs a small smoke version that checks
//! the page loads and reports its figures without judging them (a debug build).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use fedkey_core::{Direction, PeerKind, Role};
use fedkey_store::Actor;
use fedkey_store::auth::RequestMeta;
use fedkey_store::ops::NewTrust;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const BUDGET_MS: f64 = 50.0;

/// CPU time this process has used (user + system), from `/proc/self/stat` in clock ticks
/// of 10 ms: on a shared machine the wall time of a page includes waiting for a core, its
/// CPU time does not. The client's share is included, so the figure is an upper bound.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}
const BUDGET_BYTES: usize = 200 * 1024;

#[tokio::main]
async fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let trusts = if smoke { 50 } else { env_num("BENCH_TRUSTS", 1000) };
    let pages = if smoke { 5 } else { env_num("BENCH_PAGES", 100) };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (state, _) = common::fedkey_state(&url).await;
    let store = state.store.clone();
    let actor = Actor::system("bench");

    // 1,000 trusts in all (`acme/idp` is one), over ten directories.
    let started = Instant::now();
    for d in 0..10 {
        let name = format!("dir{d}");
        store.create_directory(&actor, &name).await.unwrap();
    }
    for i in 1..trusts {
        let t = NewTrust {
            directory: format!("dir{}", i % 10),
            name: format!("trust-{i:04}"),
            direction: if i % 5 == 0 { Direction::Outbound } else { Direction::Inbound },
            peer_kind: PeerKind::Generic,
            scopes: None,
            description: None,
            outbound_key: (i % 5 == 0).then(|| fedkey_crypto::Secret::new(format!("app-key-{i:06}-0123456789"))),
        };
        store.create_trust(&actor, t).await.unwrap();
    }
    eprintln!("set-up: {trusts} trusts in {:.1} s", started.elapsed().as_secs_f64());

    // A session, opened as the sign-in form opens it.
    let (_, token) = store.create_admin_token(&actor, "bench", Role::Operator, None).await.unwrap();
    let who = store.authenticate_admin(Some(token.expose()), &RequestMeta::default()).await.unwrap().unwrap();
    let session = store.open_console_session(&who, &RequestMeta::default()).await.unwrap();
    let cookie = format!("fedkey_console={}", session.id.expose());

    let app = fedkey_server::router(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(l, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap()
    });
    let client = fedkey_egress::operator_client(Duration::from_secs(60)).unwrap();
    let get = |path: &str| client.get(format!("{base}{path}")).header("cookie", &cookie).send();

    // Warm-up, then one page after another.
    for _ in 0..5 {
        let r = get("/ui").await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    let mut lat = Vec::with_capacity(pages);
    let mut html = 0;
    let cpu_before = cpu_ms();
    for _ in 0..pages {
        let t = Instant::now();
        let r = get("/ui").await.unwrap();
        assert_eq!(r.status(), 200);
        html = r.bytes().await.unwrap().len();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu_per_page = cpu_ms().zip(cpu_before).map(|(a, b)| (a - b) / pages as f64);
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let css = get("/ui/assets/console.css").await.unwrap().bytes().await.unwrap().len();
    let js = get("/ui/assets/console.js").await.unwrap().bytes().await.unwrap().len();
    let total = html + css + js;
    let (p50, p95, max) = (lat[lat.len() / 2], lat[(lat.len() * 95 / 100).min(lat.len() - 1)], lat[lat.len() - 1]);
    println!("console overview, {trusts} trusts, {pages} pages, SQLite, one client on loopback");
    println!("  time per page: p50 {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms (budget {BUDGET_MS} ms at p50)");
    if let Some(c) = cpu_per_page {
        println!("  CPU per page (server and client): {c:.1} ms");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  machine load average while measuring: {}", load.split_whitespace().next().unwrap_or("?"));
    println!(
        "  page weight: HTML {html} B + CSS {css} B + JS {js} B = {total} B ({:.1} KB; budget {} KB)",
        total as f64 / 1024.0,
        BUDGET_BYTES / 1024
    );
    if smoke {
        println!("  smoke run: figures not judged");
        return;
    }
    let ok = p50 < BUDGET_MS && total < BUDGET_BYTES;
    println!("  {}", if ok { "within budget" } else { "OVER BUDGET" });
    if !ok {
        std::process::exit(1);
    }
}
