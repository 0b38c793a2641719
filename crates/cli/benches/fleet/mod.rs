//! Real `fedkey` processes for the provisioning benchmark: `init` + `serve` on a scratch
//! data directory (SQLite, or a scratch PostgreSQL database), the admin API and CLI, a SCIM
//! client, `/metrics` request counts and the process's memory from `/proc`. Every process
//! and database is owned by a guard that ends it (by PID) and drops it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_fedkey");

/// The `fedkey` binary the processes run: `BENCH_FEDKEY_BIN` when set (a same-run A/B of
/// two builds with one benchmark binary), else the one cargo built with the benchmark.
pub fn bin() -> String {
    std::env::var("BENCH_FEDKEY_BIN").unwrap_or_else(|_| BIN.to_owned())
}
pub const SCIM_JSON: &str = "application/scim+json";
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

// ---------------------------------------------------------------- PostgreSQL

pub fn pg_admin_url() -> String {
    std::env::var("FEDKEY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([&pg_admin_url(), "-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

pub fn pg_available() -> bool {
    psql("SELECT 1").is_ok()
}

/// A scratch PostgreSQL database, dropped on drop.
pub struct PgDb {
    name: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let name = format!("fedkey_bench_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        PgDb { name }
    }

    pub fn url(&self) -> String {
        let base = pg_admin_url();
        let (base, query) = base.split_once('?').map_or((base.as_str(), ""), |(b, q)| (b, q));
        let cut = base.rfind('/').unwrap_or(base.len());
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("{}/{}{q}", &base[..cut], self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

// ---------------------------------------------------------------- processes

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// One `fedkey serve` child process; killed by its PID when dropped.
pub struct Fedkey {
    pub name: String,
    child: Child,
    pub url: String,
    pub token: String,
    dir: tempfile::TempDir,
    db_url: String,
    http: reqwest::Client,
    _pg: Option<PgDb>,
}

impl Fedkey {
    /// `fedkey init` then `fedkey serve` on 127.0.0.1:0 (stderr to `serve.log` in the data
    /// directory). Without `--unsafe-test-clock`: the real background loops run.
    pub fn start(name: &str, backend: Backend) -> Fedkey {
        let dir = tempfile::tempdir().unwrap();
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let data = dir.path().join("data");
        let db_url = match &pg {
            Some(p) => p.url(),
            None => format!("sqlite://{}", data.join("fedkey.db").display()),
        };
        let out = fedkey_cmd(&data, &db_url).args(["init", "--output", "json"]).output().unwrap();
        assert!(out.status.success(), "[{name}] fedkey init failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = v["admin_token"].as_str().expect("init prints the admin token").to_owned();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let mut child = fedkey_cmd(&data, &db_url)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(u) = l.strip_prefix("fedkey listening on ") {
                        break u.to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("[{name}] fedkey serve exited before listening: {}", tail(&dir.path().join("serve.log")));
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let http = fedkey_egress::operator_client(Duration::from_secs(120)).unwrap();
        Fedkey { name: name.to_owned(), child, url, token, dir, db_url, http, _pg: pg }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("serve.log"))
    }

    /// How many log lines contain `needle`, and the first of them.
    pub fn log_count(&self, needle: &str) -> (usize, Option<String>) {
        let s = std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
        let hits: Vec<&str> = s.lines().filter(|l| l.contains(needle)).collect();
        (hits.len(), hits.first().map(|l| (*l).to_owned()))
    }

    /// Runs an admin CLI command (JSON output) against this server; returns the parsed
    /// output, or the exit status and stderr.
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let out = fedkey_cmd(&self.data_dir(), &self.db_url)
            .args(args)
            .args(["--output", "json"])
            .env("FEDKEY_URL", &self.url)
            .env("FEDKEY_TOKEN", &self.token)
            .output()
            .map_err(|e| e.to_string())?;
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if out.status.success() {
            Ok(v)
        } else {
            Err(format!("fedkey {args:?}: {} {}; output {v}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// An admin API call that must succeed (2xx).
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}/api/v1{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("[{}] {method} {path}: {e}", self.name));
        let st = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(st.is_success(), "[{}] {method} {path}: {st} {text}", self.name);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates a directory with an inbound trust; returns the trust's SCIM client.
    pub async fn directory_with_inbound(&self, dir: &str, trust: &str) -> Scim {
        self.api(Method::POST, "/directories", Some(json!({"name": dir}))).await;
        let v = self
            .api(
                Method::POST,
                &format!("/directories/{dir}/trusts"),
                Some(json!({"name": trust, "direction": "inbound"})),
            )
            .await;
        let key = v["key"].as_str().expect("an inbound trust's key").to_owned();
        Scim::new(format!("{}/scim/v2/{dir}", self.url), key)
    }

    /// Successful SCIM writes (`POST`, `PATCH`, `PUT`, `DELETE`) and all SCIM requests
    /// this process answered so far, from `fedkey_http_requests_total`.
    pub async fn scim_request_counts(&self) -> RequestCounts {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("[{}] GET /metrics: {e}", self.name))
            .text()
            .await
            .unwrap();
        let mut c = RequestCounts::default();
        for line in text.lines().filter(|l| l.starts_with("fedkey_http_requests_total{")) {
            let Some((labels, n)) = line.rsplit_once(' ') else { continue };
            let n: f64 = n.parse().unwrap_or(0.0);
            let label = |k: &str| {
                labels.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_owned()
            };
            if !label("route").starts_with("/scim/") {
                continue;
            }
            c.all += n as u64;
            if label("status").starts_with('2')
                && matches!(label("method").as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
            {
                c.writes += n as u64;
            }
        }
        c
    }

    /// (VmRSS, VmHWM) of the process in KiB, from `/proc/PID/status`.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.pid())
    }
}

impl Drop for Fedkey {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[{}] last lines of its log:\n{}", self.name, self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RequestCounts {
    pub writes: u64,
    pub all: u64,
}

impl std::ops::Sub for RequestCounts {
    type Output = RequestCounts;
    fn sub(self, o: RequestCounts) -> RequestCounts {
        RequestCounts { writes: self.writes.saturating_sub(o.writes), all: self.all.saturating_sub(o.all) }
    }
}

fn fedkey_cmd(data: &Path, db_url: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir")
        .arg(data)
        .args(["--database-url", db_url])
        .env_remove("FEDKEY_TOKEN")
        .env_remove("FEDKEY_URL");
    cmd
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples VmRSS of `pid` every 250 ms until dropped; `max()` is the highest sample.
pub struct RssSampler {
    max: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let max = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let m = max.clone();
        let task = tokio::spawn(async move {
            loop {
                m.fetch_max(memory_kib(pid).0, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        RssSampler { max, task }
    }

    pub fn max_kib(&self) -> u64 {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- SCIM client

/// A SCIM client for one directory (base URL up to the directory, bearer key).
#[derive(Clone)]
pub struct Scim {
    pub base: String,
    key: String,
    http: reqwest::Client,
}

impl Scim {
    pub fn new(base: String, key: String) -> Scim {
        let http = fedkey_egress::operator_client(Duration::from_secs(120)).unwrap();
        Scim { base, key, http }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// One request; returns the status and the parsed body (Null when empty).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, SCIM_JSON).body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let st = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((st, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A request that must answer `want`.
    pub async fn expect(&self, method: Method, path: &str, body: Option<&Value>, want: &[u16]) -> Value {
        match self.send(method.clone(), path, body).await {
            Ok((st, v)) if want.contains(&st) => v,
            Ok((st, v)) => panic!("{method} {}{path}: {st} {v}", self.base),
            Err(e) => panic!("{}: {e}", self.base),
        }
    }

    /// `totalResults` of a list or filter query.
    pub async fn total(&self, endpoint: &str, filter: Option<&str>) -> u64 {
        let q = filter.map(|f| format!("&filter={}", enc(f))).unwrap_or_default();
        let v = self.expect(Method::GET, &format!("/{endpoint}?count=1{q}"), None, &[200]).await;
        v["totalResults"].as_u64().unwrap_or_else(|| panic!("{endpoint}: no totalResults in {v}"))
    }

    /// The one resource matching `filter`, if any.
    pub async fn find(&self, endpoint: &str, filter: &str) -> Option<Value> {
        let v = self.expect(Method::GET, &format!("/{endpoint}?filter={}", enc(filter)), None, &[200]).await;
        let found = v["Resources"].as_array().cloned().unwrap_or_default();
        assert!(found.len() <= 1, "{endpoint} {filter}: {} matches", found.len());
        found.into_iter().next()
    }

    /// Every resource of `endpoint`, paged (`startIndex`/`count`).
    pub async fn all(&self, endpoint: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self
                .expect(Method::GET, &format!("/{endpoint}?startIndex={}&count=100", out.len() + 1), None, &[200])
                .await;
            let page = v["Resources"].as_array().cloned().unwrap_or_default();
            let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
            let empty = page.is_empty();
            out.extend(page);
            if empty || out.len() >= total {
                return out;
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
