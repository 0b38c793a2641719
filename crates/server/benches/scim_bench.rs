//! SCIM service throughput and latency over real HTTP on loopback, fedkey (SQLite and
//! PostgreSQL) against the Python reference server `scim2-server`, with the same
//! closed-loop load generator and the same requests:
//!
//! - `GET /Users/{id}` of a random seeded user;
//! - `GET /Users?filter=userName eq "<random seeded>"`;
//! - `GET /Users?filter=emails[type eq "work"].value eq "<random seeded>"`;
//! - `POST /Users` (unique names);
//! - `PATCH /Users/{id}` (replace `title`);
//! - `PATCH /Groups/{id}` (alternately add a member and remove it again).
//!
//! fedkey is started in-process (the real router, a provisioning key, durable audit of
//! every write) on a temporary SQLite file and on a scratch PostgreSQL database
//! (`fedkey_bench_<uuid>`, dropped at the end) and seeded through the store (the same
//! `ResourceWrite` the SCIM handlers build). `scim2-server` is started as a child process
//! on a free loopback port, seeded over its HTTP API (bounded in time: if the budget runs
//! out it holds fewer users, and the output says so), measured, and stopped by its PID.
//!
//! Run: `cargo bench -p fedkey-server --bench scim_bench` (or `scripts/bench-scim.sh`).
//! Env: BENCH_USERS (100000), BENCH_GROUPS (1000), BENCH_SECONDS (5), BENCH_CONCURRENCY
//! (32), BENCH_TIMEOUT (30, seconds per request), BENCH_BACKENDS (sqlite,postgres; also
//! sqlite-single: SQLite committing each transaction on its own, the group-commit baseline),
//! SCIM2_SERVER (/tmp/scimvenv/bin/scim2-server; `none` skips it), BENCH_REF_SEED_SECONDS (300, budget for seeding scim2-server),
//! BENCH_MILLION=1 (afterwards top each backend up to 1,000,000 users and measure
//! `userName eq` again, beside the floor: `GET /ServiceProviderConfig`, authentication and
//! the durable access record only, which no audited request can beat), BENCH_OPS (a subset: get,username,email,post,patch,group),
//! BENCH_KEEP_DB=1 (keep the SQLite file and print its path), BENCH_SEED_TASKS (concurrent
//! seeding writers: 32 on SQLite, 16 on PostgreSQL), FEDKEY_TEST_PG_URL (postgres://postgres@127.0.0.1:5432/test).
//! Under `cargo test --all-targets` (no `--bench`) it runs a small smoke version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{pg_scratch, sqlite_file, start_fedkey};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fedkey_scim::resource::normalize;
use fedkey_store::scim::ResourceWrite;
use fedkey_store::scim_sql::fold;
use fedkey_store::{Actor, Directory, Store};
use serde_json::{Value, json};

const MEMBERS_PER_GROUP: u64 = 20;
const SCIM_JSON: &str = "application/scim+json";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------- data

fn user_name(i: u64) -> String {
    format!("user{i:07}")
}

fn email(i: u64) -> String {
    format!("user{i:07}@example.com")
}

/// The SCIM body of seeded user `i` (the same for both servers).
fn user_body(name: &str, mail: &str, i: u64) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "emails": [{"type": "work", "value": mail, "primary": true}],
        "active": true,
    })
}

fn group_name(g: u64) -> String {
    format!("group{g:05}")
}

/// Indices of the seeded members of group `g`.
fn group_members(g: u64, users: u64) -> Vec<u64> {
    (0..MEMBERS_PER_GROUP.min(users)).map(|k| (g * MEMBERS_PER_GROUP + k) % users).collect()
}

/// What the SCIM create handler would store for `body` (see `scim/resources.rs`
/// `prepare`): the normalised body, the folded name key and `emails.value` keys, the
/// member ids, and the changed attribute names.
fn resource_write(rt_id: &str, body: &Value, members: Option<Vec<String>>) -> ResourceWrite {
    let rt = fedkey_scim::schema::resource_type(rt_id).unwrap();
    let mut body = normalize(rt, body).unwrap();
    let obj = body.as_object_mut().unwrap();
    for k in ["id", "meta", "schemas", "groups", "members"] {
        obj.remove(k);
    }
    let group = rt.id == "Group";
    let name = obj.get(if group { "displayName" } else { "userName" }).and_then(Value::as_str).unwrap();
    let name_key = fold(name);
    let mut indexed = Vec::new();
    if let Some(Value::Array(emails)) = obj.get("emails") {
        for e in emails {
            if let Some(v) = e.get("value").and_then(Value::as_str) {
                indexed.push(("emails.value".to_owned(), fold(v)));
            }
        }
    }
    let mut changed: Vec<String> = obj.keys().cloned().collect();
    if members.as_ref().is_some_and(|m| !m.is_empty()) {
        changed.push("members".into());
    }
    changed.sort();
    ResourceWrite {
        resource_type: if group { "Group" } else { "User" },
        name_key,
        external_id: None,
        body,
        members,
        indexed,
        changed,
        known: None,
    }
}

/// What a server holds: (user index, id) of each seeded user and the group ids.
#[derive(Clone)]
struct Target {
    name: String,
    /// The SCIM base URL, e.g. `http://127.0.0.1:1234/scim/v2/acme`.
    base: String,
    token: String,
    users: Arc<Vec<(u64, String)>>,
    groups: Arc<Vec<String>>,
}

/// Seeds users `from..to` into the store with `tasks` concurrent writers.
async fn seed_store_users(store: &Arc<Store>, dir: &Directory, from: u64, to: u64, tasks: u64) -> Vec<(u64, String)> {
    let next = Arc::new(AtomicU64::new(from));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, dir, next) = (store.clone(), dir.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let actor = Actor::system("bench-seed");
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let w = resource_write("User", &user_body(&user_name(i), &email(i), i), None);
                let r = store.scim_create(&actor, &dir, w).await.unwrap();
                out.push((i, r.id));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    all
}

async fn seed_store_groups(
    store: &Arc<Store>,
    dir: &Directory,
    users: &[(u64, String)],
    groups: u64,
    tasks: u64,
) -> Vec<String> {
    let users = Arc::new(users.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, dir, next, users) = (store.clone(), dir.clone(), next.clone(), users.clone());
        handles.push(tokio::spawn(async move {
            let actor = Actor::system("bench-seed");
            let mut out = Vec::new();
            loop {
                let g = next.fetch_add(1, Ordering::Relaxed);
                if g >= groups {
                    break;
                }
                let members =
                    group_members(g, users.len() as u64).into_iter().map(|k| users[k as usize].1.clone()).collect();
                let body =
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group_name(g)});
                let r = store.scim_create(&actor, &dir, resource_write("Group", &body, Some(members))).await.unwrap();
                out.push((g, r.id));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    all.into_iter().map(|(_, id)| id).collect()
}

// ---------------------------------------------------------------- fedkey in-process

// ---------------------------------------------------------------- scim2-server

/// The reference server child process; killed (by its PID) when dropped.
struct RefServer(std::process::Child);

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_reference(bin: &str, token: &str) -> Result<(RefServer, String), String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let child = std::process::Command::new(bin)
        .args(["--port", &port.to_string(), "--hostname", "127.0.0.1", "--bearer-token", token])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let server = RefServer(child);
    let base = format!("http://127.0.0.1:{port}/v2");
    let client = fedkey_egress::operator_client(Duration::from_secs(2)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let r = client.get(format!("{base}/ServiceProviderConfig")).bearer_auth(token).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return Ok((server, base));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{bin} did not answer on {base} within 30 s"))
}

/// Seeds the reference server over HTTP, `conc` connections, until `users` are created
/// or `budget` runs out. Returns the (index, id) of the users created and the group ids.
async fn seed_reference(
    base: &str,
    token: &str,
    users: u64,
    groups: u64,
    conc: u64,
    budget: Duration,
) -> (Vec<(u64, String)>, Vec<String>) {
    let client = fedkey_egress::operator_client(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + budget;
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..conc {
        let (client, base, token, next) = (client.clone(), base.to_owned(), token.to_owned(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= users {
                    break;
                }
                let body = user_body(&user_name(i), &email(i), i);
                let r = client
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                    .body(body.to_string())
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status().is_success()
                    && let Ok(v) = r.json::<Value>().await
                    && let Some(id) = v.get("id").and_then(Value::as_str)
                {
                    out.push((i, id.to_owned()));
                }
            }
            out
        }));
    }
    let mut seeded = Vec::new();
    for h in handles {
        seeded.extend(h.await.unwrap());
    }
    seeded.sort();
    // Groups: members by position among the users actually created.
    let seeded = Arc::new(seeded);
    let next = Arc::new(AtomicU64::new(0));
    let gdeadline = Instant::now() + budget;
    let mut handles = Vec::new();
    for _ in 0..conc {
        let (client, base, token, next, seeded) =
            (client.clone(), base.to_owned(), token.to_owned(), next.clone(), seeded.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < gdeadline {
                let g = next.fetch_add(1, Ordering::Relaxed);
                if g >= groups {
                    break;
                }
                let members: Vec<Value> = group_members(g, seeded.len() as u64)
                    .into_iter()
                    .map(|k| json!({"value": seeded[k as usize].1}))
                    .collect();
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group_name(g), "members": members});
                let r = client
                    .post(format!("{base}/Groups"))
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                    .body(body.to_string())
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.status().is_success()
                    && let Ok(v) = r.json::<Value>().await
                    && let Some(id) = v.get("id").and_then(Value::as_str)
                {
                    out.push((g, id.to_owned()));
                }
            }
            out
        }));
    }
    let mut gs = Vec::new();
    for h in handles {
        gs.extend(h.await.unwrap());
    }
    gs.sort();
    (Arc::try_unwrap(seeded).unwrap(), gs.into_iter().map(|(_, id)| id).collect())
}

// ---------------------------------------------------------------- load

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    GetById,
    FilterUserName,
    FilterEmail,
    Post,
    PatchUser,
    PatchGroup,
    /// `GET /ServiceProviderConfig`: key authentication and the durable access record,
    /// nothing else — the floor under every audited request (not in the table; measured
    /// beside the 1,000,000-user lookup).
    Floor,
}

const OPS: [Op; 6] = [Op::GetById, Op::FilterUserName, Op::FilterEmail, Op::Post, Op::PatchUser, Op::PatchGroup];

/// The request types to measure: all, or those named in BENCH_OPS (comma-separated
/// short names: get, username, email, post, patch, group) for a quicker focused run.
fn selected_ops() -> Vec<Op> {
    match std::env::var("BENCH_OPS") {
        Ok(list) if !list.trim().is_empty() => {
            let ops: Vec<Op> = OPS.into_iter().filter(|op| list.split(',').any(|n| n.trim() == op.short())).collect();
            assert!(
                !ops.is_empty(),
                "BENCH_OPS={list:?} names no request type (get, username, email, post, patch, group)"
            );
            ops
        }
        _ => OPS.to_vec(),
    }
}

impl Op {
    fn short(self) -> &'static str {
        match self {
            Op::GetById => "get",
            Op::FilterUserName => "username",
            Op::FilterEmail => "email",
            Op::Post => "post",
            Op::PatchUser => "patch",
            Op::PatchGroup => "group",
            Op::Floor => "floor",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Op::GetById => "GET /Users/{id}",
            Op::FilterUserName => "GET /Users?filter=userName eq",
            Op::FilterEmail => "GET /Users?filter=emails[type eq \"work\"].value eq",
            Op::Post => "POST /Users",
            Op::PatchUser => "PATCH /Users/{id} (replace title)",
            Op::PatchGroup => "PATCH /Groups/{id} (add/remove member)",
            Op::Floor => "GET /ServiceProviderConfig (authentication + access record only)",
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Op::GetById | Op::FilterUserName | Op::FilterEmail)
    }
}

/// xorshift64*: cheap, per worker, deterministic.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn filter_url(base: &str, filter: &str) -> String {
    format!("{base}/Users?filter={}", enc(filter))
}

fn patch_body(ops: Value) -> String {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}).to_string()
}

struct Stats {
    rps: f64,
    ok: u64,
    failed: u64,
    p50: f64,
    p99: f64,
    first_error: Option<String>,
}

fn pct(lat: &[f64], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat[((lat.len() as f64 - 1.0) * p) as usize]
}

/// Closed-loop load: `conc` workers, each sending `op` requests back to back for `run`;
/// every request has a timeout (BENCH_TIMEOUT, 30 s), so the run ends at most that long
/// after `run`; a timed-out request counts as failed.
async fn load(t: &Target, op: Op, conc: u64, run: Duration, tag: &str) -> Stats {
    let client = fedkey_egress::operator_client(Duration::from_secs(env_num("BENCH_TIMEOUT", 30))).unwrap();
    let seq = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let deadline = started + run;
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (client, t, seq, failed, first_error) =
            (client.clone(), t.clone(), seq.clone(), failed.clone(), first_error.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0x1000_0001));
            let mut pending: Option<(String, String)> = None;
            let mut lat = Vec::new();
            let base = &t.base;
            while Instant::now() < deadline {
                let (i, uid) = &t.users[rng.below(t.users.len())];
                let req = match op {
                    Op::GetById => client.get(format!("{base}/Users/{uid}")),
                    Op::Floor => client.get(format!("{base}/ServiceProviderConfig")),
                    Op::FilterUserName => client.get(filter_url(base, &format!("userName eq \"{}\"", user_name(*i)))),
                    Op::FilterEmail => {
                        client.get(filter_url(base, &format!("emails[type eq \"work\"].value eq \"{}\"", email(*i))))
                    }
                    Op::Post => {
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        let name = format!("new-{tag}-{w}-{n}");
                        let body = user_body(&name, &format!("{name}@example.com"), n);
                        client.post(format!("{base}/Users")).body(body.to_string())
                    }
                    Op::PatchUser => {
                        let n = seq.fetch_add(1, Ordering::Relaxed);
                        client.patch(format!("{base}/Users/{uid}")).body(patch_body(
                            json!([{"op": "replace", "path": "title", "value": format!("title {n}")}]),
                        ))
                    }
                    Op::PatchGroup => match pending.take() {
                        Some((g, u)) => client
                            .patch(format!("{base}/Groups/{g}"))
                            .body(patch_body(json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}]))),
                        None => {
                            let g = t.groups[rng.below(t.groups.len())].clone();
                            let body = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]));
                            let req = client.patch(format!("{base}/Groups/{g}")).body(body);
                            pending = Some((g, uid.clone()));
                            req
                        }
                    },
                };
                let req = req.bearer_auth(&t.token).header(reqwest::header::CONTENT_TYPE, SCIM_JSON);
                let start = Instant::now();
                let res = req.send().await;
                let outcome = match res {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status.is_success() => Ok(()),
                            Ok(b) => Err(format!("{status}: {}", String::from_utf8_lossy(&b[..b.len().min(300)]))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => lat.push(start.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
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
    let first_error = first_error.lock().unwrap().take();
    Stats {
        rps: lat.len() as f64 / elapsed,
        ok: lat.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        first_error,
    }
}

/// One request of each read, checked for the right answer (1 result), so a table never
/// reports the speed of wrong answers.
async fn verify(t: &Target) {
    let client = fedkey_egress::operator_client(Duration::from_secs(30)).unwrap();
    let (i, id) = &t.users[t.users.len() / 2];
    let get = |url: String| {
        let (client, token) = (client.clone(), t.token.clone());
        async move {
            let r = client.get(&url).bearer_auth(token).send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{url}: {status} {v}");
            v
        }
    };
    let v = get(format!("{}/Users/{id}", t.base)).await;
    assert_eq!(v["userName"], json!(user_name(*i)), "{}: GET by id", t.name);
    let v = get(filter_url(&t.base, &format!("userName eq \"{}\"", user_name(*i)))).await;
    assert_eq!(v["totalResults"], json!(1), "{}: userName eq: {v}", t.name);
    assert_eq!(v["Resources"][0]["id"], json!(id), "{}: userName eq", t.name);
    let v = get(filter_url(&t.base, &format!("emails[type eq \"work\"].value eq \"{}\"", email(*i)))).await;
    assert_eq!(v["totalResults"], json!(1), "{}: emails eq: {v}", t.name);
    let v = get(format!("{}/Groups/{}", t.base, t.groups[0])).await;
    assert!(v["members"].as_array().is_some_and(|m| !m.is_empty()), "{}: group members: {v}", t.name);
}

async fn measure(t: &Target, conc: u64, run: Duration, warm: Duration) -> Vec<Stats> {
    verify(t).await;
    load(t, Op::GetById, conc, warm, "warm").await;
    let mut out = Vec::new();
    for op in selected_ops() {
        let s = load(t, op, conc, run, &format!("{}-{}", t.name, uuid::Uuid::new_v4().simple())).await;
        if let Some(e) = &s.first_error {
            println!("  [{}] {}: {} failed, first: {e}", t.name, op.label(), s.failed);
        }
        out.push(s);
    }
    out
}

fn print_table(backend: &str, fk: &[Stats], reference: Option<&[Stats]>) -> bool {
    println!("\n#### fedkey on {backend} vs scim2-server\n");
    println!(
        "| request | fedkey req/s | p50 ms | p99 ms | failed | scim2-server req/s | p50 ms | p99 ms | failed | ratio | ≥20× | read p99 < 10 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    let mut all_met = true;
    for (k, op) in selected_ops().iter().enumerate() {
        let f = &fk[k];
        let (rr, rp50, rp99, rf, ratio, met) = match reference {
            Some(r) => {
                let r = &r[k];
                let ratio = f.rps / r.rps;
                let met = r.ok > 0 && ratio >= 20.0;
                (
                    format!("{:.0}", r.rps),
                    format!("{:.2}", r.p50),
                    format!("{:.2}", r.p99),
                    r.failed.to_string(),
                    if r.ok > 0 { format!("{ratio:.1}×") } else { "no reference answer".into() },
                    if met {
                        "met"
                    } else if r.ok == 0 {
                        "n/a"
                    } else {
                        "MISSED"
                    },
                )
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into(), "n/a"),
        };
        let read = if op.is_read() { if f.p99 < 10.0 { "met" } else { "MISSED" } } else { "n/a" };
        all_met &= met != "MISSED" && read != "MISSED" && f.failed == 0;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {rr} | {rp50} | {rp99} | {rf} | {ratio} | {met} | {read} |",
            op.label(),
            f.rps,
            f.p50,
            f.p99,
            f.failed
        );
    }
    all_met
}

// ---------------------------------------------------------------- main

/// Sizes of a SQLite database file and its WAL, in MB, for the report.
fn sqlite_sizes(url: &str) -> Option<(f64, f64)> {
    let path = url.strip_prefix("sqlite://")?;
    let mb = |p: &str| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
    Some((mb(path), mb(&format!("{path}-wal"))))
}

struct Config {
    smoke: bool,
    users: u64,
    groups: u64,
    conc: u64,
    run: Duration,
    warm: Duration,
    million: bool,
}

/// Seeds and measures one fedkey backend; returns its stats (and runs the 1M check).
async fn run_backend(cfg: &Config, backend: &str, url: &str) -> Vec<Stats> {
    let (state, key, base) = start_fedkey(url).await;
    let store = state.store.clone();
    if backend == "sqlite-single" {
        store.set_group_commit_limit(1);
    }
    let dir = store.directory("acme").await.unwrap();
    let tasks = env_num("BENCH_SEED_TASKS", if backend.starts_with("sqlite") { 32 } else { 16 });
    let t0 = Instant::now();
    let users = seed_store_users(&store, &dir, 0, cfg.users, tasks).await;
    let ut = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let groups = seed_store_groups(&store, &dir, &users, cfg.groups, tasks).await;
    let gt = t1.elapsed().as_secs_f64();
    println!(
        "[{backend}] seeded {} users in {ut:.1} s ({:.0}/s) and {} groups of {MEMBERS_PER_GROUP} members in {gt:.1} s, through Store::scim_create ({tasks} concurrent writers, audited)",
        users.len(),
        users.len() as f64 / ut,
        groups.len(),
    );
    if backend == "postgres" {
        // What autovacuum does shortly after a bulk load; measuring before it runs would
        // measure the load's aftermath (no planner statistics, dead audit_head versions).
        let t = Instant::now();
        sqlx::query("VACUUM ANALYZE").execute(store.raw_for_tests().pool()).await.unwrap();
        println!("[postgres] VACUUM ANALYZE after seeding: {:.1} s", t.elapsed().as_secs_f64());
    }
    let mut target = Target {
        name: format!("fedkey-{backend}"),
        base,
        token: key,
        users: Arc::new(users),
        groups: Arc::new(groups),
    };
    if let Some((db, wal)) = sqlite_sizes(url) {
        println!("[{backend}] database file {db:.0} MB, WAL {wal:.0} MB");
    }
    let stats = measure(&target, cfg.conc, cfg.run, cfg.warm).await;
    if cfg.million && !cfg.smoke {
        let to = env_num("BENCH_MILLION_USERS", 1_000_000);
        let t0 = Instant::now();
        let more = seed_store_users(&store, &dir, cfg.users, to, tasks).await;
        let mt = t0.elapsed().as_secs_f64();
        println!(
            "[{backend}] topped up to {to} users: {} more in {mt:.1} s ({:.0}/s)",
            more.len(),
            more.len() as f64 / mt
        );
        if let Some((db, wal)) = sqlite_sizes(url) {
            println!("[{backend}] database file {db:.0} MB, WAL {wal:.0} MB");
        }
        let mut all = (*target.users).clone();
        all.extend(more);
        target.users = Arc::new(all);
        verify(&target).await;
        let s = load(&target, Op::FilterUserName, cfg.conc, cfg.run, "million").await;
        println!(
            "[{backend}] userName eq with {} users: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} failed — target p50 < 2 ms: {}",
            target.users.len(),
            s.rps,
            s.p50,
            s.p99,
            s.failed,
            if s.p50 < 2.0 { "met" } else { "MISSED" }
        );
        // The floor: a request that is only authenticated and audited (its access record
        // durable before the answer, as every SCIM request). No audited request can have a
        // lower p50 at this concurrency on this machine.
        let f = load(&target, Op::Floor, cfg.conc, cfg.run, "million-floor").await;
        println!(
            "[{backend}] floor, {}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} failed — {}",
            Op::Floor.label(),
            f.rps,
            f.p50,
            f.p99,
            f.failed,
            if f.p50 < 2.0 { "below 2 ms" } else { "ABOVE 2 ms: the p50 target is out of reach at this concurrency" }
        );
        // The same lookup one at a time: its latency without queueing behind 31 others (at
        // 32 connections a closed loop's p50 is about 32 / throughput).
        let s1 = load(&target, Op::FilterUserName, 1, cfg.run, "million-c1").await;
        println!(
            "[{backend}] userName eq with {} users, 1 connection: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            target.users.len(),
            s1.rps,
            s1.p50,
            s1.p99,
            s1.failed
        );
    }
    // Stop the audit writer cleanly before the database goes away.
    drop(target);
    drop(state);
    stats
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let secs: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
        let cfg = Config {
            smoke,
            users: if smoke { 200 } else { env_num("BENCH_USERS", 100_000) },
            groups: if smoke { 5 } else { env_num("BENCH_GROUPS", 1000) },
            conc: if smoke { 4 } else { env_num("BENCH_CONCURRENCY", 32) },
            run: if smoke { Duration::from_millis(300) } else { Duration::from_secs_f64(secs) },
            warm: if smoke { Duration::from_millis(100) } else { Duration::from_secs(1) },
            million: std::env::var("BENCH_MILLION").is_ok_and(|v| v == "1"),
        };
        let backends = if smoke {
            "sqlite".to_owned()
        } else {
            std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into())
        };
        let started = Instant::now();

        // The reference server: seeded and measured first, then stopped, so it does not
        // compete for the two cores while fedkey is measured.
        let mut reference: Option<Vec<Stats>> = None;
        let bin = std::env::var("SCIM2_SERVER").unwrap_or_else(|_| "/tmp/scimvenv/bin/scim2-server".into());
        if !smoke && bin != "none" {
            let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
            match start_reference(&bin, &token).await {
                Ok((server, base)) => {
                    println!("[scim2-server] started ({bin}, pid {}) at {base}", server.0.id());
                    let budget = Duration::from_secs(env_num("BENCH_REF_SEED_SECONDS", 300));
                    let t0 = Instant::now();
                    let (users, groups) = seed_reference(&base, &token, cfg.users, cfg.groups, cfg.conc, budget).await;
                    let st = t0.elapsed().as_secs_f64();
                    println!(
                        "[scim2-server] seeded {} users and {} groups over HTTP POST in {st:.1} s ({:.0} users/s, {} concurrent connections)",
                        users.len(),
                        groups.len(),
                        users.len() as f64 / st,
                        cfg.conc
                    );
                    if (users.len() as u64) < cfg.users || (groups.len() as u64) < cfg.groups {
                        println!(
                            "[scim2-server] NOTE: the seeding budget (BENCH_REF_SEED_SECONDS={}) ran out: it holds {} of {} users and {} of {} groups, so its figures are for a SMALLER data set",
                            budget.as_secs(),
                            users.len(),
                            cfg.users,
                            groups.len(),
                            cfg.groups
                        );
                    }
                    if users.is_empty() || groups.is_empty() {
                        println!("[scim2-server] nothing seeded; no reference figures");
                    } else {
                        let t = Target {
                            name: "scim2-server".into(),
                            base,
                            token,
                            users: Arc::new(users),
                            groups: Arc::new(groups),
                        };
                        reference = Some(measure(&t, cfg.conc, cfg.run, cfg.warm).await);
                    }
                    println!("[scim2-server] stopping pid {}", server.0.id());
                    drop(server);
                }
                Err(e) => println!("\n*** scim2-server not measured: {e} (set SCIM2_SERVER) ***\n"),
            }
        }

        if !smoke {
            println!(
                "\n### SCIM over loopback HTTP/1.1: {} users, {} groups × {MEMBERS_PER_GROUP} members, {} concurrent connections (closed loop), {:.1} s per request type, one load generator for all servers; latencies in ms",
                cfg.users,
                cfg.groups,
                cfg.conc,
                cfg.run.as_secs_f64()
            );
        }
        let mut all_met = true;
        let mut results: Vec<(String, Vec<Stats>)> = Vec::new();
        for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            match backend {
                "sqlite" => {
                    let (_dir, url) = sqlite_file();
                    let s = run_backend(&cfg, "sqlite", &url).await;
                    if !smoke {
                        all_met &= print_table("SQLite (synchronous=FULL)", &s, reference.as_deref());
                    }
                    results.push(("SQLite (synchronous=FULL)".into(), s));
                }
                // The same SQLite set-up committing each transaction on its own: the
                // baseline for group commit, in the same run.
                "sqlite-single" => {
                    let (_dir, url) = sqlite_file();
                    let s = run_backend(&cfg, "sqlite-single", &url).await;
                    let label = "SQLite (synchronous=FULL), one commit per transaction";
                    if !smoke {
                        print_table(label, &s, reference.as_deref());
                    }
                    results.push((label.into(), s));
                }
                "postgres" => match pg_scratch().await {
                    Ok(pg) => {
                        println!("[postgres] scratch database {}", pg.name);
                        let s = run_backend(&cfg, "postgres", &pg.url).await;
                        all_met &= print_table("PostgreSQL", &s, reference.as_deref());
                        results.push(("PostgreSQL".into(), s));
                        pg.drop_now().await;
                    }
                    Err(e) => println!("\n*** SKIPPED PostgreSQL: {e} (set FEDKEY_TEST_PG_URL) ***\n"),
                },
                other => panic!("unknown backend {other:?} in BENCH_BACKENDS (sqlite, sqlite-single, postgres)"),
            }
        }

        if smoke {
            for (b, stats) in &results {
                for (op, s) in selected_ops().iter().zip(stats) {
                    assert!(s.failed == 0 && s.ok > 0, "smoke run: {b} {}: {} ok, {} failed", op.label(), s.ok, s.failed);
                }
            }
            println!(
                "scim_bench smoke run ok ({} users); run `cargo bench -p fedkey-server --bench scim_bench` for figures",
                cfg.users
            );
            return;
        }

        println!(
            "\ntargets (≥ 20× scim2-server on every request type, read p99 < 10 ms, no failures): {}{}",
            if all_met { "all met" } else { "NOT all met" },
            if reference.is_none() { " (scim2-server not measured: ratios not checked)" } else { "" }
        );
        println!("total run time {:.0} s", started.elapsed().as_secs_f64());
    });
}
