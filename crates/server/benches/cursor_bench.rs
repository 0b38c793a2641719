//! Deep paging at scale (RFC 9865): what one page of `GET /Users` costs at the start, the
//! middle and the end of a large directory, with a cursor (keyset) and, for contrast, with
//! `startIndex` (offset), over real HTTP on loopback against the in-process router.
//!
//! Users are loaded straight into `scim_resources` with batched `INSERT … SELECT`
//! statements (no audit, no HTTP: a million in seconds); creation times and ids are
//! generated, so the cursor for any position is minted with the server's own cursor key
//! instead of walking there. Every page is requested BENCH_REPEAT times, one at a time;
//! the median and the worst are reported.
//!
//! Run: `cargo bench -p fedkey-server --bench cursor_bench`.
//! Env: BENCH_USERS (1000000), BENCH_REPEAT (15), BENCH_COUNT (page size, 200),
//! BENCH_BACKENDS (sqlite,postgres), FEDKEY_TEST_PG_URL, BENCH_KEEP_DB=1.
//! Under `cargo test --all-targets` (no `--bench`) it runs a small smoke version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{pg_scratch, sqlite_file, start_fedkey};
use fedkey_core::TrustRef;
use fedkey_server::AppState;
use fedkey_server::scim::cursor::{CursorKey, QueryBinding};
use fedkey_store::Backend;
use fedkey_store::scim::ListKey;
use serde_json::Value;
use sqlx::AssertSqlSafe;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The generated id of user `i` (zero-padded, so ids sort as the users were created).
fn user_id(i: u64) -> String {
    format!("bench-{i:08}")
}

/// Loads users `0..n` into directory `dir_id`, created at `base + i` microseconds.
async fn load_users(state: &AppState, dir_id: &str, n: u64, base: i64) {
    const BATCH: u64 = 100_000;
    let db = state.store.raw_for_tests();
    let mut from = 0;
    while from < n {
        let to = (from + BATCH).min(n);
        // The generated row: id, type, version, created, updated, name key, externalId, body, body_ci.
        let sql = match db.backend {
            Backend::Sqlite => format!(
                "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {to}) \
                 INSERT INTO scim_resources SELECT '{dir_id}', printf('bench-%08d', i), 'User', 1, {base} + i, {base} + i, \
                 'bench.user.' || i, NULL, '{{\"userName\":\"bench.user.' || i || '\",\"active\":true}}', \
                 '{{\"userName\":\"bench.user.' || i || '\",\"active\":true}}' FROM n"
            ),
            Backend::Postgres => format!(
                "INSERT INTO scim_resources SELECT '{dir_id}', 'bench-' || lpad(i::text, 8, '0'), 'User', 1, {base} + i, {base} + i, \
                 'bench.user.' || i, NULL, '{{\"userName\":\"bench.user.' || i || '\",\"active\":true}}', \
                 '{{\"userName\":\"bench.user.' || i || '\",\"active\":true}}' FROM generate_series({from}, {to} - 1) i"
            ),
        };
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
        from = to;
    }
    let analyze = if db.backend == Backend::Postgres { "VACUUM ANALYZE" } else { "ANALYZE" };
    sqlx::raw_sql(analyze).execute(db.pool()).await.unwrap();
}

struct Timing {
    median_ms: f64,
    max_ms: f64,
    items: usize,
    has_next: bool,
}

/// `GET {url}` `repeat` times, one at a time.
async fn time_page(client: &reqwest::Client, url: &str, key: &str, repeat: u64) -> Timing {
    let mut lat = Vec::new();
    let mut last = Value::Null;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let r = client.get(url).bearer_auth(key).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(status.is_success(), "{url}: {status} {body}");
        last = body;
    }
    lat.sort_by(f64::total_cmp);
    Timing {
        median_ms: lat[lat.len() / 2],
        max_ms: lat[lat.len() - 1],
        items: last["Resources"].as_array().map_or(0, Vec::len),
        has_next: last.get("nextCursor").is_some(),
    }
}

async fn run_backend(label: &str, url: &str, users: u64, count: u64, repeat: u64) -> Vec<(String, Timing)> {
    let (state, key, base_url) = start_fedkey(url).await;
    let store = state.store.clone();
    let dir = store.directory("acme").await.unwrap();
    let trust = store.trust(&TrustRef { directory: "acme".into(), trust: "idp".into() }).await.unwrap();
    // Creation times in the past, one microsecond apart.
    let base = store.now().0 - users as i64 - 1_000_000;
    let t0 = Instant::now();
    load_users(&state, &dir.id, users, base).await;
    println!(
        "[{label}] loaded {users} users in {:.1} s (batched INSERT … SELECT, then ANALYZE)",
        t0.elapsed().as_secs_f64()
    );

    // The cursor that resumes after user `i`, as the server would have issued it.
    let cursor_key = CursorKey::for_install(&store.install);
    let binding = QueryBinding::for_list(&dir.id, &trust.id, "User", "", "", "");
    let after =
        |i: u64| cursor_key.encode(&binding, &ListKey { created: base + i as i64, id: user_id(i) }, store.now());
    let client = fedkey_egress::operator_client(Duration::from_secs(120)).unwrap();
    let users_url = format!("{base_url}/Users");
    let mid = users / 2;
    let last_start = users.saturating_sub(count);
    let cases: Vec<(String, String)> = vec![
        ("cursor, first page".into(), format!("{users_url}?cursor=&count={count}")),
        (format!("cursor, page at user {mid}"), format!("{users_url}?cursor={}&count={count}", after(mid - 1))),
        ("cursor, last page".into(), format!("{users_url}?cursor={}&count={count}", after(last_start - 1))),
        ("startIndex, first page".into(), format!("{users_url}?startIndex=1&count={count}")),
        (format!("startIndex at user {mid}"), format!("{users_url}?startIndex={}&count={count}", mid + 1)),
        ("startIndex, last page".into(), format!("{users_url}?startIndex={}&count={count}", last_start + 1)),
    ];
    let mut out = Vec::new();
    for (name, url) in cases {
        let t = time_page(&client, &url, &key, repeat).await;
        println!(
            "[{label}] {name}: median {:.2} ms, max {:.2} ms ({} users{})",
            t.median_ms,
            t.max_ms,
            t.items,
            if t.has_next { ", nextCursor" } else { "" }
        );
        assert_eq!(t.items as u64, count, "{name}: a full page");
        out.push((name, t));
    }
    assert!(!out[2].1.has_next, "the last cursor page has no nextCursor");
    println!("[{label}] memory of this process (server and load client) after paging: {}", memory());
    drop(state);
    out
}

/// Resident memory from /proc/self/status: total, anonymous (heap, caches) and file-backed
/// (SQLite's memory-mapped database pages, shared and reclaimable), and the peak.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .map_or_else(|| "n/a".to_owned(), |kb| format!("{} MiB", kb / 1024))
    };
    format!(
        "VmRSS {}, RssAnon {}, RssFile {}, VmHWM {}",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let users = if smoke { 2_000 } else { env_num("BENCH_USERS", 1_000_000) };
        let repeat = if smoke { 2 } else { env_num("BENCH_REPEAT", 15) };
        let count = env_num("BENCH_COUNT", 200).min(200);
        let backends = if smoke {
            "sqlite".to_owned()
        } else {
            std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into())
        };
        let mut tables = Vec::new();
        for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            match backend {
                "sqlite" => {
                    let (_dir, url) = sqlite_file();
                    tables.push(("SQLite", run_backend("sqlite", &url, users, count, repeat).await));
                }
                "postgres" => match pg_scratch().await {
                    Ok(pg) => {
                        println!("[postgres] scratch database {}", pg.name);
                        tables.push(("PostgreSQL", run_backend("postgres", &pg.url, users, count, repeat).await));
                        pg.drop_now().await;
                    }
                    Err(e) => println!("\n*** SKIPPED PostgreSQL: {e} (set FEDKEY_TEST_PG_URL) ***\n"),
                },
                other => panic!("unknown backend {other:?} in BENCH_BACKENDS (sqlite, postgres)"),
            }
        }
        if smoke {
            println!(
                "cursor_bench smoke run ok ({users} users); run `cargo bench -p fedkey-server --bench cursor_bench`"
            );
            return;
        }
        println!(
            "\n### One page of {count} users out of {users}, GET /Users over loopback, {repeat} requests each (ms)\n"
        );
        println!("| backend | page | median | max |\n|---|---|---:|---:|");
        for (b, rows) in &tables {
            for (name, t) in rows {
                println!("| {b} | {name} | {:.2} | {:.2} |", t.median_ms, t.max_ms);
            }
        }
    });
}
