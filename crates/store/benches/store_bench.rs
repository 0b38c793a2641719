//! Store benchmarks (plain `main`, no criterion), each against a baseline in the same run:
//!
//! * key verification with a warm auth cache (`Store::resolve_key` + `Store::check_key`)
//!   vs. a bare SHA-256 of the token;
//! * audit appends through the group-committing writer (many concurrent callers) vs. one
//!   transaction per record (`append_in_tx` + commit), on SQLite (file, WAL,
//!   `synchronous = FULL`) and on PostgreSQL when reachable (`FEDKEY_TEST_PG_URL`,
//!   default `postgres://postgres@127.0.0.1:5432/test`; a scratch database is created and
//!   dropped).
//!
//! Run: `cargo bench -p fedkey-store --bench store_bench`. Without `--bench` (as under
//! `cargo test --all-targets`) it runs a seconds-long smoke pass with tiny counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedkey_audit::{Event, Outcome};
use fedkey_core::{Clock, Direction, PeerKind, SystemClock};
use fedkey_crypto::{Keyring, MasterKey};
use fedkey_store::audit::{self, WriterConfig};
use fedkey_store::keyfile::StaticKeyring;
use fedkey_store::ops::NewTrust;
use fedkey_store::{Actor, Db, Store};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy)]
struct Params {
    verify_iters: u32,
    tasks: usize,
    per_task: usize,
    /// The one-transaction-per-record baseline is time-boxed (and capped).
    baseline_budget: Duration,
    baseline_max: usize,
    /// Whether the counts are large enough to judge the targets.
    judge: bool,
}

fn verdict(p: Params, met: bool) -> &'static str {
    match (p.judge, met) {
        (false, _) => "not judged in a smoke run",
        (true, true) => "met",
        (true, false) => "MISSED",
    }
}

const FULL: Params = Params {
    verify_iters: 200_000,
    tasks: 256,
    per_task: 100,
    baseline_budget: Duration::from_secs(3),
    baseline_max: 5_000,
    judge: true,
};

const SMOKE: Params = Params {
    verify_iters: 1_000,
    tasks: 16,
    per_task: 4,
    baseline_budget: Duration::from_millis(200),
    baseline_max: 20,
    judge: false,
};

struct Line {
    bench: String,
    backend: &'static str,
    result: String,
    baseline: String,
    baseline_result: String,
    note: String,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let full = std::env::args().any(|a| a == "--bench");
    if !full {
        println!("store_bench: smoke run (no --bench argument); use `cargo bench` for numbers");
    }
    let lines = rt.block_on(run(if full { FULL } else { SMOKE }));
    print_table(&lines);
}

async fn run(p: Params) -> Vec<Line> {
    let mut lines = Vec::new();
    let dir = tempfile::tempdir().unwrap();

    // --- key verification, warm cache -------------------------------------------------
    let url = format!("sqlite:{}", dir.path().join("verify.db").display());
    lines.push(key_verification(&url, p).await);

    // --- audit appends ------------------------------------------------------------------
    let url = format!("sqlite:{}", dir.path().join("audit.db").display());
    lines.extend(audit_appends("sqlite", &url, p).await);
    match pg_scratch().await {
        Ok(pg) => {
            lines.extend(audit_appends("postgres", &pg.url, p).await);
            pg.drop_now().await;
        }
        Err(why) => lines.push(Line {
            bench: "audit appends".into(),
            backend: "postgres",
            result: "skipped".into(),
            baseline: String::new(),
            baseline_result: String::new(),
            note: why,
        }),
    }
    lines
}

async fn open(url: &str, ttl: Duration) -> Store {
    let db = Db::connect(url).await.unwrap();
    let keyring = Arc::new(StaticKeyring(Arc::new(Keyring::new(MasterKey::generate().unwrap()))));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    Store::open(db, keyring, clock, WriterConfig::default(), ttl).await.unwrap().0
}

async fn key_verification(url: &str, p: Params) -> Line {
    let iters = p.verify_iters;
    let store = open(url, Duration::from_secs(3600)).await;
    let a = Actor::system("bench");
    store.create_directory(&a, "acme").await.unwrap();
    let nt = NewTrust {
        directory: "acme".into(),
        name: "entra".into(),
        direction: Direction::Inbound,
        peer_kind: PeerKind::Entra,
        scopes: None,
        description: None,
        outbound_key: None,
    };
    let key = store.create_trust(&a, nt).await.unwrap().2.unwrap();
    let key = key.expose();
    let now = store.now();
    // Warm the cache.
    let rec = store.resolve_key(key).await.unwrap().unwrap();
    Store::check_key(&rec, "acme", now).unwrap();

    let t = Instant::now();
    for _ in 0..iters {
        let rec = store.resolve_key(black_box(key)).await.unwrap().unwrap();
        black_box(Store::check_key(&rec, black_box("acme"), now)).unwrap();
    }
    let per = t.elapsed() / iters;

    let t = Instant::now();
    for _ in 0..iters {
        black_box(fedkey_crypto::sha256(black_box(key.as_bytes())));
    }
    let base = t.elapsed() / iters;
    let ok = per < Duration::from_micros(10);
    Line {
        bench: format!("key verify, warm cache ({iters} iters)"),
        backend: "sqlite",
        result: format!("{:.2} µs/op", per.as_secs_f64() * 1e6),
        baseline: "bare SHA-256 of token".into(),
        baseline_result: format!("{:.3} µs/op", base.as_secs_f64() * 1e6),
        note: format!("target < 10 µs: {}", verdict(p, ok)),
    }
}

fn event(i: usize) -> Event {
    Event::new(SystemClock::default().now(), "system:bench", "bench.append", Outcome::Success)
        .directory("acme")
        .details(serde_json::json!({"i": i}))
}

async fn audit_appends(backend: &'static str, url: &str, p: Params) -> Vec<Line> {
    let (tasks, per_task) = (p.tasks, p.per_task);
    let store = Arc::new(open(url, Duration::from_secs(60)).await);
    // Warm up connections and the writer.
    for i in 0..50 {
        store.audit.record(event(i), None).await.unwrap();
    }

    // Group commit: many concurrent callers, each waiting for its record to be durable.
    let total = tasks * per_task;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let store = store.clone();
        set.spawn(async move {
            for i in 0..per_task {
                store.audit.record(event(task * per_task + i), None).await.unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let group = total as f64 / t.elapsed().as_secs_f64();

    // Baseline: one transaction (and one durable commit) per record.
    let t = Instant::now();
    let mut single_n = 0;
    while single_n < p.baseline_max && t.elapsed() < p.baseline_budget {
        let mut tx = store.raw_for_tests().begin().await.unwrap();
        audit::append_in_tx(&mut tx, store.raw_for_tests(), vec![event(single_n)]).await.unwrap();
        tx.commit().await.unwrap();
        single_n += 1;
    }
    let single = single_n as f64 / t.elapsed().as_secs_f64();

    // Sanity: everything landed in one intact chain.
    let rep =
        audit::verify(store.raw_for_tests(), &store.install.id, &store.install.public_key).await.unwrap().unwrap();
    let expected = (50 + total + single_n) as i64;
    assert_eq!(rep.records, expected, "chain length after the benchmark");

    vec![Line {
        bench: format!("audit appends, group commit ({tasks} tasks x {per_task})"),
        backend,
        result: format!("{group:.0} rec/s"),
        baseline: format!("1 tx per record ({single_n} recs)"),
        baseline_result: format!("{single:.0} rec/s"),
        note: format!(
            "{:.1}x; target >= 20000/s: {}; chain verified ({} records)",
            group / single,
            verdict(p, group >= 20_000.0),
            rep.records
        ),
    }]
}

struct PgScratch {
    admin: String,
    name: String,
    url: String,
}

async fn pg_scratch() -> Result<PgScratch, String> {
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

impl PgScratch {
    async fn drop_now(self) {
        if let Ok(mut c) = PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            let _ = c.close().await;
        }
    }
}

fn print_table(lines: &[Line]) {
    let head = ["benchmark", "backend", "result", "baseline", "baseline result", "notes"];
    let rows: Vec<[&str; 6]> = lines
        .iter()
        .map(|l| [l.bench.as_str(), l.backend, &l.result, &l.baseline, &l.baseline_result, &l.note])
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let fmt = |cells: [&str; 6]| {
        let parts: Vec<String> = cells.iter().zip(w).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("| {} |", parts.join(" | "))
    };
    println!();
    println!("{}", fmt(head));
    println!("|{}|", w.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for r in rows {
        println!("{}", fmt(r));
    }
    println!();
}
