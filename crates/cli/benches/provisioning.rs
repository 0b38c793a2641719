//! Outbound provisioning at scale, on real `fedkey` processes over loopback HTTP:
//!
//! 1. **Baseline**: the benchmark's own SCIM client pushes the users and groups (with their
//!    members) directly to three fresh directories of a fresh target process, `BENCH_CONCURRENCY`
//!    requests in flight per directory: the raw capacity of the targets.
//! 2. **Fan-out**: a source `fedkey serve` (SQLite, then PostgreSQL) without
//!    `--unsafe-test-clock`, so its real dispatcher loop delivers, with three outbound trusts
//!    whose targets are three directories of another fresh target process (SQLite, its own
//!    data directory), each with the default mapping (all users and groups) and the same
//!    concurrency. The users, then the groups, are written to the source through SCIM POSTs
//!    (`BENCH_WRITERS` in flight); measured: the write time, the end-to-end time until the
//!    source reports every work row of every target done (then the targets are read back:
//!    every user, every group with all its members), target-side writes per second (from the
//!    target's `/metrics`), and the source process's peak memory (VmHWM, and VmRSS sampled
//!    every 250 ms).
//! 3. **Reconciliation**: 1 % drift made directly at the first target (a third of the drift
//!    accounts deleted, a third altered, a third added as unknown accounts; the target's orphan
//!    policy is `deactivate`), then `fedkey sync reconcile acme/app1 --dry-run` (must plan
//!    exactly one action per drift account, of the right kind), the real run (every action
//!    done, read back), and a second dry run (must plan nothing), each timed.
//!
//! Run: `cargo bench -p fedkey-cli --bench provisioning`.
//! Env: BENCH_USERS (10000), BENCH_GROUPS (200), BENCH_MEMBERS (50 per group), BENCH_CONCURRENCY
//! (4: the target's `--concurrency`, the dispatcher default, and the baseline's requests in
//! flight per directory), BENCH_WRITERS (8 concurrent SCIM writers at the source),
//! BENCH_BACKENDS (sqlite,postgres; PostgreSQL is skipped when unreachable), BENCH_TIMEOUT_SECS
//! (1800, per wait), FEDKEY_TEST_PG_URL (postgres://postgres@127.0.0.1:5432/test), BENCH_BULK
//! (auto: the targets' `--bulk` setting, so users travel in /Bulk requests; `off`: one request
//! per change; `auto,off`: both, one after the other, to compare).
//! Under `cargo test --all-targets` (no `--bench`) it runs a small smoke version on SQLite
//! that asserts the same things.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fleet;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleet::{Backend, Fedkey, GROUP_URN, PATCH_URN, RssSampler, Scim, USER_URN};
use reqwest::Method;
use serde_json::{Value, json};

const TARGETS: [&str; 3] = ["app1", "app2", "app3"];

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Config {
    smoke: bool,
    users: usize,
    groups: usize,
    members: usize,
    conc: usize,
    writers: usize,
    timeout: Duration,
}

impl Config {
    /// Users `grouped()..users` belong to no group: the drift is made on them, so deleting
    /// an account at the target changes no group there and the plan is exactly the drift.
    fn grouped(&self) -> usize {
        self.users - self.users / 10
    }

    fn member_indices(&self, g: usize) -> Vec<usize> {
        (0..self.members).map(|k| (g * self.members + k) % self.grouped()).collect()
    }
}

// ---------------------------------------------------------------- data

fn user_name(i: usize) -> String {
    format!("user{i:06}@bench.test")
}

fn user_body(i: usize) -> Value {
    json!({
        "schemas": [USER_URN], "userName": user_name(i), "active": true, "title": "Engineer",
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"value": user_name(i), "type": "work", "primary": true}],
    })
}

fn group_name(g: usize) -> String {
    format!("group{g:04}")
}

fn group_body(cfg: &Config, g: usize, user_ids: &[String]) -> Value {
    let members: Vec<Value> = cfg.member_indices(g).into_iter().map(|i| json!({"value": user_ids[i]})).collect();
    json!({"schemas": [GROUP_URN], "displayName": group_name(g), "members": members})
}

/// Runs `f(0..n)` with `conc` tasks; returns the results in index order.
async fn pool<T, F, Fut>(n: usize, conc: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..conc.max(1))
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return out;
                    }
                    out.push((i, f(i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("a worker failed (its panic is printed above)"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// POSTs every user, then every group with its members; returns the user ids.
async fn write_directory(cfg: &Config, scim: &Scim, conc: usize) -> Vec<String> {
    let s = scim.clone();
    let ids: Vec<String> = pool(cfg.users, conc, move |i| {
        let s = s.clone();
        async move {
            let v = s.expect(Method::POST, "/Users", Some(&user_body(i)), &[201]).await;
            v["id"].as_str().expect("created user id").to_owned()
        }
    })
    .await;
    let bodies: Arc<Vec<Value>> = Arc::new((0..cfg.groups).map(|g| group_body(cfg, g, &ids)).collect());
    let s = scim.clone();
    pool(cfg.groups, conc, move |g| {
        let (s, bodies) = (s.clone(), bodies.clone());
        async move {
            s.expect(Method::POST, "/Groups", Some(&bodies[g]), &[201]).await;
        }
    })
    .await;
    ids
}

/// Reads a target back: every user, every group with exactly its members (as remote ids
/// of users of this directory).
async fn verify_target(cfg: &Config, scim: &Scim) {
    assert_eq!(scim.total("Users", None).await, cfg.users as u64, "{}: users", scim.base);
    let users = scim.all("Users").await;
    let by_name: BTreeMap<String, String> = users
        .iter()
        .map(|u| (u["userName"].as_str().unwrap_or("").to_owned(), u["id"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(by_name.len(), cfg.users, "{}: distinct userNames", scim.base);
    let groups = scim.all("Groups").await;
    assert_eq!(groups.len(), cfg.groups, "{}: groups", scim.base);
    for g in &groups {
        let name = g["displayName"].as_str().unwrap_or("");
        let idx: usize = name.strip_prefix("group").and_then(|n| n.parse().ok()).expect("a benchmark group");
        let want: BTreeSet<&str> = cfg
            .member_indices(idx)
            .into_iter()
            .map(|i| by_name.get(&user_name(i)).expect("member at the target").as_str())
            .collect();
        let have: BTreeSet<&str> =
            g["members"].as_array().map(|a| a.iter().filter_map(|m| m["value"].as_str()).collect()).unwrap_or_default();
        assert_eq!(have, want, "{}: members of {name}", scim.base);
    }
}

// ---------------------------------------------------------------- baseline

struct Baseline {
    seconds: f64,
    writes: u64,
    requests: u64,
}

/// The same data POSTed straight to three fresh directories of a fresh target process.
async fn baseline(cfg: &Arc<Config>) -> Baseline {
    let target = Fedkey::start("baseline-target", Backend::Sqlite);
    let mut dirs = Vec::new();
    for d in TARGETS {
        dirs.push(target.directory_with_inbound(d, "fedkey").await);
    }
    let before = target.scim_request_counts().await;
    let t0 = Instant::now();
    let runs = dirs.iter().map(|s| {
        let (cfg, s) = (cfg.clone(), s.clone());
        async move { write_directory(&cfg, &s, cfg.conc).await }
    });
    futures_join_all(runs).await;
    let seconds = t0.elapsed().as_secs_f64();
    let counts = target.scim_request_counts().await - before;
    for s in &dirs {
        verify_target(cfg, s).await;
    }
    Baseline { seconds, writes: counts.writes, requests: counts.all }
}

/// `join_all` without a dependency: spawns each future and awaits them in order.
async fn futures_join_all<T: Send + 'static>(
    futs: impl Iterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a task failed (its panic is printed above)"));
    }
    out
}

// ---------------------------------------------------------------- fan-out

struct Fanout {
    backend: Backend,
    /// The targets' `--bulk` setting (`auto`: /Bulk requests, `off`: one request per change).
    bulk: String,
    write_seconds: f64,
    e2e_seconds: f64,
    writes: u64,
    requests: u64,
    deliveries: u64,
    rss_idle_kib: u64,
    rss_max_kib: u64,
    hwm_kib: u64,
    hwm_after_reconcile_kib: u64,
    reconcile: Reconcile,
}

/// Waits until the source reports every work row of every target done (nothing in the
/// outbox, nothing pending); fails at once on a dead letter, and after `cfg.timeout`.
async fn wait_delivered(cfg: &Config, source: &Fedkey, t0: Instant) {
    let expected = (cfg.users + cfg.groups) as u64;
    let deadline = Instant::now() + cfg.timeout;
    let every = Duration::from_millis(if cfg.smoke { 100 } else { 1000 });
    let mut last_print = Instant::now();
    loop {
        let v = source.api(Method::GET, "/directories/acme/sync/status", None).await;
        let targets = v["targets"].as_array().cloned().unwrap_or_default();
        let dead: u64 = targets.iter().map(|t| t["dead_letters"].as_u64().unwrap_or(0)).sum();
        if dead > 0 {
            let dl = source.api(Method::GET, "/directories/acme/sync/dead-letters", None).await;
            panic!("[{}] {dead} dead letters, e.g. {}", source.name, dl["dead_letters"][0]);
        }
        if v["outbox"].as_u64() == Some(0)
            && targets.len() == TARGETS.len()
            && targets.iter().all(|t| t["pending"].as_u64() == Some(0) && t["done"].as_u64() == Some(expected))
        {
            return;
        }
        let done: Vec<String> = targets.iter().map(|t| t["done"].to_string()).collect();
        let progress = format!("outbox {}, done per target {} of {expected}", v["outbox"], done.join("/"));
        assert!(
            Instant::now() < deadline,
            "[{}] not delivered within {:?} ({progress}); log:\n{}",
            source.name,
            cfg.timeout,
            source.log_tail()
        );
        if !cfg.smoke && last_print.elapsed() > Duration::from_secs(15) {
            last_print = Instant::now();
            println!("  [{}] {:.0} s: {progress}", source.name, t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(every).await;
    }
}

async fn fanout(cfg: &Arc<Config>, backend: Backend, bulk: &str) -> Fanout {
    let target = Fedkey::start("target", Backend::Sqlite);
    let source = Fedkey::start(&format!("source-{}", backend.label()), backend);
    let mut apps = Vec::new();
    for d in TARGETS {
        apps.push(target.directory_with_inbound(d, "fedkey").await);
    }
    let idp = source.directory_with_inbound("acme", "idp").await;
    let conc = cfg.conc.to_string();
    for (d, app) in TARGETS.iter().zip(&apps) {
        // The outbound trust holds the key the application (the target directory) issued.
        source
            .api(
                Method::POST,
                "/directories/acme/trusts",
                Some(json!({"name": d, "direction": "outbound", "key": app.key()})),
            )
            .await;
        let url = format!("{}/scim/v2/{d}", target.url);
        let trust = format!("acme/{d}");
        let mut args = vec!["sync", "target", "set", &trust, "--url", &url, "--concurrency", &conc, "--bulk", bulk];
        if *d == TARGETS[0] {
            args.extend(["--orphans", "deactivate"]);
        }
        source.cli(&args).unwrap_or_else(|e| panic!("{e}"));
    }

    let rss_idle_kib = source.memory_kib().0;
    let sampler = RssSampler::start(source.pid());
    let before = target.scim_request_counts().await;
    let t0 = Instant::now();
    write_directory(cfg, &idp, cfg.writers).await;
    let write_seconds = t0.elapsed().as_secs_f64();
    wait_delivered(cfg, &source, t0).await;
    let e2e_seconds = t0.elapsed().as_secs_f64();
    let counts = target.scim_request_counts().await - before;
    let (_, hwm_kib) = source.memory_kib();
    // Failed dispatcher passes leave their claimed rows leased until the lease expires.
    let (failed_ticks, first) = source.log_count("sync tick failed");
    if failed_ticks > 0 {
        println!("  [{}] {failed_ticks} dispatcher passes failed; first: {}", source.name, first.unwrap_or_default());
    }
    let rss_max_kib = sampler.max_kib();
    for app in &apps {
        verify_target(cfg, app).await;
    }
    let reconcile = reconcile(cfg, &source, &apps[0]).await;
    let hwm_after_reconcile_kib = source.memory_kib().1;
    drop(sampler);
    Fanout {
        backend,
        bulk: bulk.to_owned(),
        write_seconds,
        e2e_seconds,
        writes: counts.writes,
        requests: counts.all,
        deliveries: (TARGETS.len() * (cfg.users + cfg.groups)) as u64,
        rss_idle_kib,
        rss_max_kib,
        hwm_kib,
        hwm_after_reconcile_kib,
        reconcile,
    }
}

// ---------------------------------------------------------------- reconciliation

struct Reconcile {
    drift: usize,
    remote_users: u64,
    directory_users: u64,
    dry_seconds: f64,
    real_seconds: f64,
    second_dry_seconds: f64,
}

/// The plan as (action, resource type) → displays.
fn plan_of(r: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for a in r["actions"].as_array().cloned().unwrap_or_default() {
        let key = (a["action"].as_str().unwrap_or("").to_owned(), a["resource_type"].as_str().unwrap_or("").to_owned());
        out.entry(key).or_default().insert(a["display"].as_str().unwrap_or("").to_owned());
    }
    out
}

fn timed_reconcile(source: &Fedkey, dry_run: bool) -> (Value, f64) {
    let mut args = vec!["sync", "reconcile", "acme/app1"];
    if dry_run {
        args.push("--dry-run");
    }
    let t0 = Instant::now();
    let v = source.cli(&args).unwrap_or_else(|e| panic!("{e}"));
    (v["reconcile"].clone(), t0.elapsed().as_secs_f64())
}

async fn reconcile(cfg: &Config, source: &Fedkey, app: &Scim) -> Reconcile {
    // 1 % drift (at least one of each kind), on users in no group.
    let drift = (cfg.users / 100).max(3);
    let (altered_n, added_n) = (drift / 3, drift / 3);
    let deleted_n = drift - altered_n - added_n;
    let free: Vec<usize> = (cfg.grouped()..cfg.users).collect();
    assert!(free.len() >= deleted_n + altered_n, "too few users outside groups for the drift");
    let deleted: BTreeSet<String> = free[..deleted_n].iter().map(|&i| user_name(i)).collect();
    let altered: BTreeSet<String> = free[deleted_n..deleted_n + altered_n].iter().map(|&i| user_name(i)).collect();
    let added: BTreeSet<String> = (0..added_n).map(|k| format!("orphan{k:04}@elsewhere.test")).collect();
    let remote_id = |name: String| async move {
        let u = app.find("Users", &format!("userName eq \"{name}\"")).await.expect("provisioned user");
        u["id"].as_str().unwrap().to_owned()
    };
    for name in &deleted {
        let id = remote_id(name.clone()).await;
        app.expect(Method::DELETE, &format!("/Users/{id}"), None, &[204]).await;
    }
    let patch = json!({"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": "name.familyName", "value": "Drifted"}]});
    for name in &altered {
        let id = remote_id(name.clone()).await;
        app.expect(Method::PATCH, &format!("/Users/{id}"), Some(&patch), &[200, 204]).await;
    }
    for name in &added {
        let body = json!({"schemas": [USER_URN], "userName": name, "active": true});
        app.expect(Method::POST, "/Users", Some(&body), &[201]).await;
    }
    let drifted_total = (cfg.users - deleted_n + added_n) as u64;
    assert_eq!(app.total("Users", None).await, drifted_total);

    // Dry run: exactly the drift, nothing changed.
    let (plan, dry_seconds) = timed_reconcile(source, true);
    let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    want.insert(("create".into(), "User".into()), deleted.clone());
    want.insert(("deactivate_orphan".into(), "User".into()), added.clone());
    want.insert(("update".into(), "User".into()), altered.clone());
    assert_eq!(plan_of(&plan), want, "the dry run plans exactly the drift");
    assert_eq!(plan["actions"].as_array().map(Vec::len), Some(drift));
    for a in plan["actions"].as_array().unwrap().iter().filter(|a| a["action"] == "update") {
        assert_eq!(a["detail"]["patched"], json!(["name.familyName"]), "{a}");
    }
    assert_eq!(plan["counts"]["remote_users"].as_u64(), Some(drifted_total), "{}", plan["counts"]);
    assert_eq!(app.total("Users", None).await, drifted_total, "the dry run changed nothing");

    // The real run: every action done, read back.
    let (done, real_seconds) = timed_reconcile(source, false);
    assert_eq!(plan_of(&done), want, "the real run executes the same plan");
    for a in done["actions"].as_array().unwrap() {
        assert_eq!(a["outcome"], "done", "{a}");
    }
    assert_eq!(app.total("Users", None).await, (cfg.users + added_n) as u64);
    for name in &deleted {
        assert!(app.find("Users", &format!("userName eq \"{name}\"")).await.is_some(), "{name} re-created");
    }
    for name in &altered {
        let u = app.find("Users", &format!("userName eq \"{name}\"")).await.unwrap();
        assert_ne!(u["name"]["familyName"], "Drifted", "{name} repaired: {u}");
    }
    for name in &added {
        let u = app.find("Users", &format!("userName eq \"{name}\"")).await.unwrap();
        assert_eq!(u["active"], false, "orphan {name} deactivated");
    }

    // Nothing left to do.
    let (again, second_dry_seconds) = timed_reconcile(source, true);
    assert_eq!(again["actions"], json!([]), "a second dry run plans nothing");
    Reconcile {
        drift,
        remote_users: drifted_total,
        directory_users: plan["counts"]["directory_users"].as_u64().unwrap_or(0),
        dry_seconds,
        real_seconds,
        second_dry_seconds,
    }
}

// ---------------------------------------------------------------- main

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn print_results(cfg: &Config, base: &Baseline, runs: &[Fanout]) {
    let n = TARGETS.len();
    println!(
        "\n### Fan-out: {} users + {} groups × {} members to {n} targets (fedkey directories on one SQLite target process), concurrency {} per target, {} source writers\n",
        cfg.users, cfg.groups, cfg.members, cfg.conc, cfg.writers
    );
    println!(
        "| run | write at source | end to end | target write requests | write requests/s | target requests | target requests/s | resources×targets/s | source peak RSS (sampled) | source VmHWM |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| baseline: direct POSTs to {n} directories | – | {:.1} s | {} | {:.0} | {} | {:.0} | – | – | – |",
        base.seconds,
        base.writes,
        base.writes as f64 / base.seconds,
        base.requests,
        base.requests as f64 / base.seconds
    );
    for r in runs {
        println!(
            "| fedkey fan-out, source on {}, bulk {} | {:.1} s ({:.0} users/s) | {:.1} s | {} | {:.0} | {} | {:.0} | {:.0} | {} (idle {}) | {} |",
            r.backend.label(),
            r.bulk,
            r.write_seconds,
            cfg.users as f64 / r.write_seconds,
            r.e2e_seconds,
            r.writes,
            r.writes as f64 / r.e2e_seconds,
            r.requests,
            r.requests as f64 / r.e2e_seconds,
            r.deliveries as f64 / r.e2e_seconds,
            mib(r.rss_max_kib),
            mib(r.rss_idle_kib),
            mib(r.hwm_kib),
        );
    }
    for r in runs {
        println!(
            "  [{}, bulk {}] end to end {:.1}× the baseline time; delivery backlog drained {:.1} s after the last write",
            r.backend.label(),
            r.bulk,
            r.e2e_seconds / base.seconds,
            r.e2e_seconds - r.write_seconds
        );
    }
    println!(
        "\n### Reconciliation of acme/app1: {} directory users, {} accounts at the target, {} drifted (1 %)\n",
        runs.first().map_or(0, |r| r.reconcile.directory_users),
        runs.first().map_or(0, |r| r.reconcile.remote_users),
        runs.first().map_or(0, |r| r.reconcile.drift)
    );
    println!(
        "| source | dry run | accounts compared/s | real run (repairs delivered) | second dry run (0 actions) | source VmHWM after |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in runs {
        let c = &r.reconcile;
        println!(
            "| {}, bulk {} | {:.2} s | {:.0} | {:.2} s | {:.2} s | {} |",
            r.backend.label(),
            r.bulk,
            c.dry_seconds,
            c.remote_users as f64 / c.dry_seconds,
            c.real_seconds,
            c.second_dry_seconds,
            mib(r.hwm_after_reconcile_kib)
        );
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let cfg = Arc::new(if smoke {
        Config { smoke, users: 30, groups: 3, members: 5, conc: 4, writers: 4, timeout: Duration::from_secs(120) }
    } else {
        Config {
            smoke,
            users: env_num("BENCH_USERS", 10_000),
            groups: env_num("BENCH_GROUPS", 200),
            members: env_num("BENCH_MEMBERS", 50),
            conc: env_num("BENCH_CONCURRENCY", 4),
            writers: env_num("BENCH_WRITERS", 8),
            timeout: Duration::from_secs(env_num("BENCH_TIMEOUT_SECS", 1800) as u64),
        }
    });
    assert!(cfg.users >= 10 && cfg.members <= cfg.grouped(), "BENCH_USERS too small for BENCH_MEMBERS");
    let backends: Vec<Backend> = if smoke {
        vec![Backend::Sqlite]
    } else {
        let list = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        let mut v = Vec::new();
        for b in list.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            match b {
                "sqlite" => v.push(Backend::Sqlite),
                "postgres" if fleet::pg_available() => v.push(Backend::Postgres),
                "postgres" => println!(
                    "\n*** SKIPPED PostgreSQL: no server at {} (set FEDKEY_TEST_PG_URL) ***\n",
                    fleet::pg_admin_url()
                ),
                other => panic!("unknown backend {other:?} in BENCH_BACKENDS (sqlite, postgres)"),
            }
        }
        v
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let started = Instant::now();
        let base = baseline(&cfg).await;
        if !smoke {
            println!(
                "[baseline] {} users + {} groups POSTed to each of {} directories in {:.1} s",
                cfg.users,
                cfg.groups,
                TARGETS.len(),
                base.seconds
            );
        }
        let mut runs = Vec::new();
        let modes = std::env::var("BENCH_BULK").unwrap_or_else(|_| if smoke { "auto,off".into() } else { "auto".into() });
        let modes: Vec<String> = modes.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
        for (b, bulk) in backends.iter().flat_map(|b| modes.iter().map(move |m| (*b, m))) {
            let r = fanout(&cfg, b, bulk).await;
            if !smoke {
                // Printed at once, so a run stopped later still leaves this backend's figures.
                println!(
                    "[{}, bulk {bulk}] written in {:.1} s, delivered to all targets {:.1} s after the first write; {} target writes ({:.0}/s), {} target requests; source peak RSS {} (VmHWM {}); reconcile dry {:.2} s, real {:.2} s, second dry {:.2} s",
                    b.label(),
                    r.write_seconds,
                    r.e2e_seconds,
                    r.writes,
                    r.writes as f64 / r.e2e_seconds,
                    r.requests,
                    mib(r.rss_max_kib),
                    mib(r.hwm_kib),
                    r.reconcile.dry_seconds,
                    r.reconcile.real_seconds,
                    r.reconcile.second_dry_seconds
                );
            }
            runs.push(r);
        }
        if smoke {
            println!(
                "provisioning smoke run ok ({} users, {} groups, {:.1} s); run `cargo bench -p fedkey-cli --bench provisioning` for figures",
                cfg.users,
                cfg.groups,
                started.elapsed().as_secs_f64()
            );
            return;
        }
        print_results(&cfg, &base, &runs);
        println!("\ntotal run time {:.0} s", started.elapsed().as_secs_f64());
    });
}
