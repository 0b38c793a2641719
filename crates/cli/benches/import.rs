//! Bulk load (issue 19): `fedkey import` of a CSV of users into a fresh `fedkey serve`
//! (SQLite, then PostgreSQL), `--batch 500`, timed from the command's start to its exit —
//! every row validated, written with its `scim.create` audit record and its outbox row,
//! which the server's dispatcher fans out. Then the import's summary must count every row
//! created, the directory must hold them all, and `fedkey audit verify` must pass (the
//! benchmark fails otherwise).
//!
//! Run: `cargo bench -p fedkey-cli --bench import`.
//! Env: BENCH_USERS (10000), BENCH_BATCH (500), BENCH_ROUNDS (1: fresh servers per round),
//! BENCH_BACKENDS (sqlite,postgres; PostgreSQL is reported skipped when unreachable),
//! FEDKEY_TEST_PG_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_FEDKEY_BIN (the
//! `fedkey` binary to run, default the one built with the benchmark: a same-run A/B runs
//! the benchmark once per binary in each round, see docs/benchmarks.md).
//! Under `cargo test --all-targets` (no `--bench`) it runs a small smoke version on SQLite
//! that asserts the same things.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod fleet;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use fleet::{Backend, Fedkey};
use reqwest::Method;
use serde_json::json;

const DIRECTORY: &str = "bench";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A CSV of `users` users: the columns an HR export has (names, a work email, a title,
/// an employee number as `externalId`).
fn write_csv(path: &Path, users: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        f,
        "userName,externalId,name.givenName,name.familyName,emails[type eq \"work\"].value,title,active,\
         urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
    )
    .unwrap();
    for i in 0..users {
        let dept = ["Engineering", "Finance", "Sales", "Support"][i % 4];
        writeln!(f, "user{i:06}@bench.test,E{i:06},Given{i},Family{i},user{i:06}@bench.test,Engineer,true,{dept}")
            .unwrap();
    }
    f.flush().unwrap();
}

struct Outcome {
    seconds: f64,
    records: i64,
}

/// One import into a fresh server; asserts the summary, the directory and the audit chain.
async fn run(backend: Backend, csv: &Path, users: usize, batch: usize) -> Outcome {
    let fed = Fedkey::start(&format!("import-{}", backend.label()), backend);
    fed.api(Method::POST, "/directories", Some(json!({"name": DIRECTORY}))).await;
    let file = csv.to_str().unwrap();
    let batch_arg = batch.to_string();
    let t0 = Instant::now();
    let summary = fed
        .cli(&["import", "--directory", DIRECTORY, file, "--batch", &batch_arg])
        .unwrap_or_else(|e| panic!("import: {e}"));
    let seconds = t0.elapsed().as_secs_f64();
    assert_eq!(summary["created"], users, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let stored = fed.api(Method::GET, &format!("/directories/{DIRECTORY}"), None).await;
    let verify = fed.cli(&["audit", "verify"]).unwrap_or_else(|e| panic!("audit verify failed: {e}"));
    assert_eq!(verify["ok"], true, "{verify}");
    let records = verify["records"].as_i64().unwrap();
    // One `scim.create` record per user at least (plus init, the directory, the request's own).
    assert!(records > users as i64, "{records} records for {users} users: {verify}; directory {stored}");
    Outcome { seconds, records }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (users, batch, rounds) = if bench {
        (env_num("BENCH_USERS", 10_000), env_num("BENCH_BATCH", 500), env_num("BENCH_ROUNDS", 1))
    } else {
        (200, 50, 1)
    };
    let backends: Vec<Backend> = if bench {
        let list = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        list.split(',')
            .filter_map(|b| match b.trim() {
                "sqlite" => Some(Backend::Sqlite),
                "postgres" => Some(Backend::Postgres),
                _ => None,
            })
            .collect()
    } else {
        vec![Backend::Sqlite]
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    write_csv(&csv, users);
    println!("binary: {}", fleet::bin());
    println!("| backend | round | users | batch | seconds | rows/s | audit verify |");
    println!("|---|---|---|---|---|---|---|");
    for backend in backends {
        if backend == Backend::Postgres && !fleet::pg_available() {
            println!("| PostgreSQL | - | {users} | {batch} | skipped: no server at FEDKEY_TEST_PG_URL | - | - |");
            continue;
        }
        for round in 1..=rounds {
            let o = run(backend, &csv, users, batch).await;
            println!(
                "| {} | {round} | {users} | {batch} | {:.2} | {:.0} | ok ({} records) |",
                backend.label(),
                o.seconds,
                users as f64 / o.seconds,
                o.records
            );
        }
    }
}
