//! Database faults under continuous SCIM writes, on the real binary and real databases:
//! a PostgreSQL restart (on a cluster of the test's own: the shared server is never
//! stopped), fedkey's backends terminated, idle sessions closed by the server, a SQLite
//! database locked by another process past `busy_timeout`, and a full disk. fedkey must
//! serve again by itself once the database is back, lose no acknowledged write, and keep
//! one unbroken audit chain.

use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method as M;

// ---------------------------------------------------------------- own PostgreSQL cluster

/// A PostgreSQL cluster of this test alone (initdb into a temporary directory, a free
/// loopback port, its socket in that directory), stopped when dropped.
struct OwnPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// The newest installed PostgreSQL's binaries, or a loud skip (a failure under CI=true).
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort_by_key(|b| b.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    let bin = found.pop();
    if bin.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no PostgreSQL binaries under /usr/lib/postgresql and CI=true: the restart tests must not be skipped"
        );
        eprintln!("*** SKIPPED: no initdb/pg_ctl under /usr/lib/postgresql/*/bin for a cluster of the test's own ***");
    }
    bin
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl OwnPg {
    fn start() -> Option<OwnPg> {
        let bin = pg_bin()?;
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let ok = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status().unwrap().success();
            assert!(ok, "chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = OwnPg { dir, bin, port };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        pg.start_server();
        psql_on(&pg.url("postgres"), "CREATE DATABASE fedkey");
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs one of the cluster's binaries (as `postgres` when the test runs as root).
    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_server(&self) {
        let (data, sock) = (self.data(), self.dir.path().display().to_string());
        let opts = format!("-p {} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", self.port);
        let log = self.dir.path().join("pg.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "30", "start"]);
    }

    fn stop_server(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"]);
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() { vec!["-u", "postgres", "--"] } else { vec![] })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

// ---------------------------------------------------------------- writers

/// What the writers saw: user names acknowledged (201, or 409 for a retry of a create
/// whose first answer was an error), and the errors.
#[derive(Default)]
struct Writes {
    acked: BTreeSet<String>,
    /// Acknowledged after [`Writers::mark`], by node (the index of its URL).
    acked_since_mark: BTreeMap<usize, usize>,
    errors: usize,
    /// Every answer by status (0: no answer).
    statuses: BTreeMap<u16, usize>,
    /// Retries answered 409: the first attempt committed although it was answered with an
    /// error (the commit's outcome was unknown), and the retry met its uniqueness.
    retried_conflicts: usize,
}

/// Bounded writer loops creating users through SCIM until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Writes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

const WRITER_LIMIT: usize = 5_000;

impl Writers {
    fn start(urls: &[String], key: &str, tag: &str) -> Writers {
        let stop: Arc<AtomicBool> = Arc::default();
        let seen: Arc<Mutex<Writes>> = Arc::default();
        let tasks = urls
            .iter()
            .enumerate()
            .flat_map(|(n, url)| (0..2).map(move |w| (n, w, url.clone())))
            .map(|(n, w, url)| {
                let (stop, seen, key) = (stop.clone(), seen.clone(), key.to_owned());
                let prefix = format!("{tag}-n{n}-w{w}");
                tokio::spawn(async move { write_loop(&url, n, &key, &prefix, &stop, &seen).await })
            })
            .collect();
        Writers { stop, seen, tasks }
    }

    fn acked(&self) -> usize {
        self.seen.lock().unwrap().acked.len()
    }

    fn errors(&self) -> usize {
        self.seen.lock().unwrap().errors
    }

    fn mark(&self) {
        self.seen.lock().unwrap().acked_since_mark.clear();
    }

    /// Acknowledged since the mark, by every node.
    fn acked_since_mark(&self) -> usize {
        self.seen.lock().unwrap().acked_since_mark.values().sum()
    }

    /// Acknowledged since the mark by node `n`.
    fn acked_since_mark_on(&self, n: usize) -> usize {
        self.seen.lock().unwrap().acked_since_mark.get(&n).copied().unwrap_or(0)
    }

    async fn stop(self) -> Writes {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.seen).ok().unwrap().into_inner().unwrap()
    }
}

async fn write_loop(url: &str, node: usize, key: &str, prefix: &str, stop: &AtomicBool, seen: &Mutex<Writes>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for i in 0..WRITER_LIMIT {
        let name = format!("{prefix}-{i:05}@faults.test");
        let body = json!({"schemas": [USER_URN], "userName": name, "externalId": name});
        // The same user again after an error, as an IdP retries, until acknowledged.
        let mut failed = false;
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let r = http.post(format!("{url}/scim/v2/acme/Users")).bearer_auth(key).json(&body).send().await;
            let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
            let acked = {
                let mut w = seen.lock().unwrap();
                *w.statuses.entry(status).or_default() += 1;
                let acked = match status {
                    201 => true,
                    409 if failed => {
                        w.retried_conflicts += 1;
                        true
                    }
                    _ => {
                        w.errors += 1;
                        failed = true;
                        false
                    }
                };
                if acked {
                    w.acked.insert(name.clone());
                    *w.acked_since_mark.entry(node).or_default() += 1;
                }
                acked
            };
            if acked {
                break;
            }
            // Polling for the database to be back, as a client's retry would.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(url: &str) -> u16 {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    http.get(format!("{url}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// A directory `acme` with an inbound trust; its key.
async fn acme(s: &Server) -> String {
    super::provisioning::directory_with_inbound(s, "acme", "idp").await
}

// ---------------------------------------------------------------- checks

/// Every acknowledged user is in the database once, with exactly one `scim.create` audit
/// record for each user there (none lost, none twice), and the chain verifies offline.
fn assert_consistent(s: &Server, db_url: &str, w: &Writes) {
    assert!(
        w.statuses.keys().all(|st| [201, 409, 503].contains(st)),
        "writes were acknowledged, met their uniqueness on a retry, or were refused with 503: {:?}",
        w.statuses
    );
    let names: BTreeSet<String> = psql_on(db_url, "SELECT name_key FROM scim_resources WHERE resource_type = 'User'")
        .lines()
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = w.acked.iter().filter(|n| !names.contains(&n.to_lowercase())).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let audit = psql_on(
        db_url,
        "SELECT COUNT(*), COUNT(DISTINCT details::json->>'id') FROM audit_log WHERE action = 'scim.create' AND outcome = 'success'",
    );
    assert_eq!(audit.trim(), format!("{n}|{n}", n = names.len()), "one create record per user");
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- PostgreSQL

/// PostgreSQL restarted under continuous writes: /readyz fails while it is down, and
/// within 5 s of it being back fedkey serves and is ready again, without a restart of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_writes_recovers_without_losing_writes() {
    let Some(pg) = OwnPg::start() else { return };
    let db_url = pg.url("fedkey");
    let s = Server::start_in(tempfile::tempdir().unwrap(), Some(db_url.clone()), None, &[], &[]);
    let key = acme(&s).await;
    let writers = Writers::start(std::slice::from_ref(&s.url), &key, "restart");
    wait_for(Duration::from_secs(20), "writes before the fault", || async { writers.acked() >= 30 }).await;

    pg.stop_server();
    let down = Instant::now();
    wait_for(Duration::from_secs(10), "/readyz failing while the database is down", || async {
        readyz(&s.url).await == 503
    })
    .await;
    // Down longer than the connect timeout (10 s): requests are refused, not only delayed.
    let errors = writers.errors();
    wait_for(Duration::from_secs(30), "a write refused during the outage", || async { writers.errors() > errors })
        .await;
    pg.start_server();
    let back = Instant::now();
    writers.mark();
    let served = wait_for(Duration::from_secs(5), "a write acknowledged after the database is back", || async {
        writers.acked_since_mark() > 0
    })
    .await;
    let ready =
        wait_for(Duration::from_secs(5), "/readyz passing again", || async { readyz(&s.url).await == 200 }).await;
    eprintln!(
        "postgres restart: down {:?}; served again {served:?} and ready {ready:?} after it was back",
        back - down
    );
    wait_for(Duration::from_secs(20), "writes after the fault", || async { writers.acked_since_mark() >= 30 }).await;
    let w = writers.stop().await;
    eprintln!(
        "postgres restart: {} acknowledged, {} errors, {} retried creates found committed",
        w.acked.len(),
        w.errors,
        w.retried_conflicts
    );
    assert!(w.errors > 0, "the outage was seen by the writers");
    assert_consistent(&s, &db_url, &w);
    drop(s);
}

/// Every backend of fedkey's database terminated under continuous writes (on the shared
/// server, only this test's database): fedkey serves again within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated_under_writes_recover() {
    if !pg_available() {
        return;
    }
    let s = Server::start(Backend::Postgres);
    let db = s.db_url.rsplit('/').next().unwrap().to_owned();
    let key = acme(&s).await;
    let writers = Writers::start(std::slice::from_ref(&s.url), &key, "kill");
    for round in 0..3 {
        wait_for(Duration::from_secs(20), "writes before the fault", || async { writers.acked() >= 20 * (round + 1) })
            .await;
        let killed = psql(&format!(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ));
        assert!(killed.trim().parse::<u32>().unwrap() > 0, "fedkey had backends to terminate");
        writers.mark();
        let served =
            wait_for(Duration::from_secs(5), "a write acknowledged after the backends were terminated", || async {
                writers.acked_since_mark() > 0
            })
            .await;
        eprintln!("backends terminated ({round}): {killed} killed, served again after {served:?}");
        wait_for(Duration::from_secs(5), "/readyz passing", || async { readyz(&s.url).await == 200 }).await;
    }
    let w = writers.stop().await;
    eprintln!(
        "backends terminated: {} acknowledged, {} errors, {} retried creates found committed",
        w.acked.len(),
        w.errors,
        w.retried_conflicts
    );
    assert_consistent(&s, &s.db_url, &w);
}

/// The server closes idle sessions after 1 s and idle transactions after 1 s: every write
/// after an idle spell succeeds at the first attempt (the pool and the write connection
/// replace what the server closed before they use it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_session_timeouts_are_survived() {
    if !pg_available() {
        return;
    }
    let pg = PgDb::new();
    psql(&format!(
        "ALTER DATABASE {0} SET idle_session_timeout = '1s'; ALTER DATABASE {0} SET idle_in_transaction_session_timeout = '1s'",
        pg.name
    ));
    let db_url = pg.url();
    let s = Server::start_in(tempfile::tempdir().unwrap(), Some(db_url.clone()), Some(pg), &[], &[]);
    let db = db_url.rsplit('/').next().unwrap().to_owned();
    let key = acme(&s).await;
    let c = Scim { s: &s, dir: "acme".into(), key };
    let mut acked = Writes::default();
    let sessions = || psql(&format!("SELECT pid FROM pg_stat_activity WHERE datname = '{db}'"));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for round in 0..3 {
        // Every session fedkey left idle since now is closed by the server a second later
        // (sessions its background work keeps using stay).
        let since = psql("SELECT now()").trim().to_owned();
        let before: BTreeSet<String> = sessions().lines().map(str::to_owned).collect();
        seen.extend(before.iter().cloned());
        wait_for(Duration::from_secs(10), "fedkey's idle sessions closed by the server", || async {
            let idle = psql(&format!(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{db}' AND state = 'idle' AND state_change <= '{since}'"
            ));
            idle.trim() == "0"
        })
        .await;
        let closed = before.iter().filter(|p| !sessions().lines().any(|l| l == p.as_str())).count();
        assert!(closed > 0, "the server closed idle sessions of fedkey ({round})");
        for i in 0..5 {
            let name = format!("idle-{round}-{i}@faults.test");
            let r = c.post("/Users", json!({"schemas": [USER_URN], "userName": name})).await;
            assert_eq!(r.status, 201, "write {i} after idle spell {round}: {}", r.body);
            acked.acked.insert(name);
        }
        assert_eq!(readyz(&s.url).await, 200);
    }
    let now: BTreeSet<String> = sessions().lines().map(str::to_owned).collect();
    assert!(now.iter().any(|p| !seen.contains(p)), "fedkey opened new sessions for the closed ones");
    assert_consistent(&s, &db_url, &acked);
}

// ---------------------------------------------------------------- SQLite

/// Runs Python's sqlite3 on the server's database: `script` after connecting.
fn sqlite_python(s: &Server, script: &str) -> std::process::Child {
    Command::new("python3")
        .args([
            "-c",
            &format!("import sqlite3,sys\nc=sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n{script}"),
        ])
        .arg(s.data_dir().join("fedkey.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn integrity_ok(s: &Server) {
    let out = sqlite_python(s, "print(c.execute('PRAGMA integrity_check').fetchone()[0])").wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{}", String::from_utf8_lossy(&out.stderr));
}

/// Another process holds SQLite's write lock longer than `busy_timeout` (10 s): writes are
/// refused with 503 and a log line that names the lock, and served again once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_past_busy_timeout_refuses_then_recovers() {
    let s = Server::start(Backend::Sqlite);
    let key = acme(&s).await;
    let c = Scim { s: &s, dir: "acme".into(), key };
    let user = |n: &str| json!({"schemas": [USER_URN], "userName": n});
    assert_eq!(c.post("/Users", user("before@faults.test")).await.status, 201);

    let mut holder = sqlite_python(
        &s,
        "c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\nsys.stdin.readline()\nc.execute('ROLLBACK')",
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let started = Instant::now();
    let r = c.post("/Users", user("locked@faults.test")).await;
    assert_scim_error(&r, 503, None);
    eprintln!("sqlite lock: refused after {:?}", started.elapsed());
    // The log is read from the server's stderr by a thread of its own: poll for the line.
    wait_for(Duration::from_secs(5), "the log names the lock", || async { s.logs().contains("database is locked") })
        .await;

    use std::io::Write as _;
    holder.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    assert!(holder.wait().unwrap().success());
    let released = Instant::now();
    let served = wait_for(Duration::from_secs(5), "a write after the lock is released", || async {
        c.post("/Users", user("after@faults.test")).await.status == 201
    })
    .await;
    eprintln!("sqlite lock: served again {served:?} after the release ({:?})", released.elapsed());
    assert_eq!(readyz(&s.url).await, 200);
    let r = c.filter("Users", "userName eq \"locked@faults.test\"").await;
    assert!(r.is_empty(), "the refused write did not happen");
    integrity_ok(&s);
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A tmpfs of the test's own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs at `at`; `None` (a loud skip) where mounting is not permitted.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = is_root()
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
                .arg(at)
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs and CI=true: the disk-full test must not be skipped"
            );
            eprintln!("*** SKIPPED disk-full test: mounting a tmpfs is not permitted here ***");
            return None;
        }
        Some(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The disk holding the SQLite database fills up (a small tmpfs the test mounts): writes
/// are refused with 503 and a clear log line, served again once space is freed, and the
/// database is not corrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_refuses_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("data"), "16m") else { return };
    let s = Server::start_in(dir, None, None, &[], &[]);
    let key = acme(&s).await;
    let c = Scim { s: &s, dir: "acme".into(), key };
    let user = |n: String| json!({"schemas": [USER_URN], "userName": n, "title": "x".repeat(2000)});
    assert_eq!(c.post("/Users", user("before@faults.test".into())).await.status, 201);

    // Fill what is left of the filesystem.
    let filler = s.data_dir().join("filler");
    let _ = Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())).output();
    let mut refused = None;
    for i in 0..200 {
        let r = c.post("/Users", user(format!("full-{i}@faults.test"))).await;
        if r.status != 201 {
            assert_scim_error(&r, 503, None);
            refused = Some(i);
            break;
        }
    }
    assert!(refused.is_some(), "a write was refused on the full disk");
    // The log is read from the server's stderr by a thread of its own: poll for the line.
    wait_for(Duration::from_secs(5), "the log says the disk is full", || async {
        s.logs().contains("database or disk is full")
    })
    .await;
    let (st, v) = s.api(M::GET, "/readyz", None, None).await;
    eprintln!("disk full: refused after {refused:?} more users; /readyz {st} {v}");

    std::fs::remove_file(&filler).unwrap();
    let served = wait_for(Duration::from_secs(5), "a write once space is freed", || async {
        c.post("/Users", user("after@faults.test".into())).await.status == 201
    })
    .await;
    eprintln!("disk full: served again {served:?} after space was freed");
    wait_for(Duration::from_secs(5), "/readyz passing", || async { readyz(&s.url).await == 200 }).await;
    integrity_ok(&s);
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(s);
    drop(fs);
}

// ---------------------------------------------------------------- two nodes

/// Asks a node's dispatcher to tick until `stop`; failed ticks (the database is down) are
/// expected and ignored.
fn tick_until(url: String, token: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        for _ in 0..10_000 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let r = http.post(format!("{url}/api/v1/test/sync/tick")).bearer_auth(&token).send().await;
            if !r.is_ok_and(|r| r.status() == 200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

/// Two nodes share a PostgreSQL database that restarts while both write and deliver to an
/// application: each node serves again within 5 s of the database being back, every
/// acknowledged write is there once, and each user reaches the application once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_recover_from_a_postgres_restart_and_deliver_each_change_once() {
    use super::delivery::{audit_all, read_all, second_node};
    use super::provisioning::{directory_with_inbound, outbound_trust};
    let Some(pg) = OwnPg::start() else { return };
    let t = Server::start(Backend::Sqlite);
    let app_key = directory_with_inbound(&t, "app", "fedkey").await;
    let app_base = format!("{}/scim/v2/app", t.url);
    let db_url = pg.url("fedkey");
    let a = Server::start_in(
        tempfile::tempdir().unwrap(),
        Some(db_url.clone()),
        None,
        &[],
        &[("FEDKEY_NODE_ID", "node-a")],
    );
    let b = second_node(&a, "node-b");
    let key = acme(&a).await;
    outbound_trust(&a, "acme", "app", &app_key).await;
    a.set_target("acme/app", &app_base, None, &[]);

    let stop_ticks: Arc<AtomicBool> = Arc::default();
    let ticks = [&a, &b].map(|s| tick_until(s.url.clone(), s.token.clone(), stop_ticks.clone()));
    let writers = Writers::start(&[a.url.clone(), b.url.clone()], &key, "two");
    wait_for(Duration::from_secs(20), "writes on both nodes before the fault", || async { writers.acked() >= 40 })
        .await;

    pg.stop_server();
    for s in [&a, &b] {
        wait_for(Duration::from_secs(10), "/readyz failing on each node", || async { readyz(&s.url).await == 503 })
            .await;
    }
    let errors = writers.errors();
    wait_for(Duration::from_secs(30), "a write refused during the outage", || async { writers.errors() > errors })
        .await;
    pg.start_server();
    writers.mark();
    for (n, s) in [&a, &b].into_iter().enumerate() {
        let served =
            wait_for(Duration::from_secs(5), "each node acknowledging writes after the database is back", || async {
                writers.acked_since_mark_on(n) > 0
            })
            .await;
        wait_for(Duration::from_secs(5), "/readyz passing on each node", || async { readyz(&s.url).await == 200 })
            .await;
        eprintln!("two nodes: node {n} served again {served:?} after the database was back");
    }
    wait_for(Duration::from_secs(20), "writes on both nodes after the fault", || async {
        writers.acked_since_mark_on(0) >= 10 && writers.acked_since_mark_on(1) >= 10
    })
    .await;
    let w = writers.stop().await;
    stop_ticks.store(true, Ordering::SeqCst);
    for t in ticks {
        t.await.unwrap();
    }
    eprintln!("two nodes: {} acknowledged, {} errors, statuses {:?}", w.acked.len(), w.errors, w.statuses);
    assert_consistent(&a, &db_url, &w);

    // Leases taken before the fault lapse, retries come due; then both nodes drain the outbox.
    for s in [&a, &b] {
        s.advance("10m").await;
    }
    let stop_ticks: Arc<AtomicBool> = Arc::default();
    let ticks = [&a, &b].map(|s| tick_until(s.url.clone(), s.token.clone(), stop_ticks.clone()));
    wait_for(Duration::from_secs(30), "the outbox drained by both nodes", || async {
        let st = a.sync_status("acme").await;
        st["outbox"] == 0 && st["targets"][0]["pending"] == 0
    })
    .await;
    stop_ticks.store(true, Ordering::SeqCst);
    for t in ticks {
        t.await.unwrap();
    }
    let st = a.sync_status("acme").await;
    assert_eq!(st["targets"][0]["dead_letters"], 0, "{st}");

    let users = read_all(&format!("{}/scim/v2/acme", a.url), &key, "Users").await;
    assert!(users.len() >= w.acked.len(), "the directory holds what was acknowledged");
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for d in audit_all(&a, "sync.deliver").await {
        *delivered.entry(d["details"]["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let remote = read_all(&app_base, &app_key, "Users").await;
    let mut at_app: BTreeMap<String, usize> = BTreeMap::new();
    for r in &remote {
        *at_app.entry(r["externalId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    for u in &users {
        let id = u["id"].as_str().unwrap();
        assert_eq!(delivered.get(id), Some(&1), "user {id} recorded delivered once");
        assert_eq!(at_app.get(id), Some(&1), "user {id} at the application once");
    }
    assert_eq!(remote.len(), users.len(), "nothing else at the application");
    drop((a, b, t));
}
