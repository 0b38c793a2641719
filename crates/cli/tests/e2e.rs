//! End-to-end tests of the real `fedkey` binary: init → serve → admin CLI and API →
//! SCIM authentication → rotation with overlap (clock advanced through the test-clock
//! endpoint, no sleeps) → revoke → offline audit verification. Each test runs on
//! SQLite and, when reachable, PostgreSQL (required under CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_fedkey");

// ---------------------------------------------------------------- backends

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

fn pg_admin_url() -> String {
    std::env::var("FEDKEY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn pg_available() -> bool {
    let ok = Command::new("psql")
        .args([&pg_admin_url(), "-qtAc", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "PostgreSQL is not reachable at {} and CI=true: PostgreSQL tests must not be skipped",
            pg_admin_url()
        );
        eprintln!("*** SKIPPED PostgreSQL half of this test: no server at {} ***", pg_admin_url());
    }
    ok
}

fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if pg_available() {
        v.push(Backend::Postgres);
    }
    v
}

/// A fresh PostgreSQL database, dropped on drop.
struct PgDb {
    name: String,
}

impl PgDb {
    fn new() -> PgDb {
        let name = format!("fedkey_e2e_{}", uuid_hex());
        psql(&format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    fn url(&self) -> String {
        let base = pg_admin_url();
        let cut = base.rfind('/').unwrap();
        format!("{}/{}", &base[..cut], self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([&pg_admin_url(), "-qtAc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

fn psql(sql: &str) -> String {
    psql_on(&pg_admin_url(), sql)
}

fn psql_on(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn uuid_hex() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    #[allow(clippy::disallowed_methods)]
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    static C: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{:x}{:x}{}", n, std::process::id(), C.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

// ---------------------------------------------------------------- server harness

struct Server {
    child: Child,
    url: String,
    token: String,
    dir: tempfile::TempDir,
    db_url: String,
    stderr: Arc<Mutex<String>>,
    _pg: Option<PgDb>,
}

impl Server {
    fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[], &[])
    }

    fn start_with(backend: Backend, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let pg = (backend == Backend::Postgres).then(PgDb::new);
        let db_url = pg.as_ref().map(PgDb::url);
        Server::start_in(tempfile::tempdir().unwrap(), db_url, pg, extra_args, env)
    }

    /// Initialises and serves `DIR/data` on `db_url` (default: SQLite in the data directory).
    fn start_in(
        dir: tempfile::TempDir,
        db_url: Option<String>,
        pg: Option<PgDb>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let db_url = db_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/fedkey.db").display()));
        let data = dir.path().join("data");
        let out = fedkey(&data, &db_url, &["init", "--output", "json"], env);
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = v["admin_token"].as_str().unwrap().to_owned();
        let (child, url, stderr) = spawn_serve(&data, &db_url, extra_args, env);
        Server { child, url, token, dir, db_url, stderr, _pg: pg }
    }

    /// Kills the server with SIGKILL (no clean shutdown) and starts it again on the same
    /// data directory and database. The test clock starts from zero again.
    fn restart(&mut self, extra_args: &[&str], env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, url, stderr) = spawn_serve(&self.data_dir(), &self.db_url, extra_args, env);
        (self.child, self.url, self.stderr) = (child, url, stderr);
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs an admin CLI command against this server.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        fedkey(&self.data_dir(), &self.db_url, args, &[("FEDKEY_URL", &self.url), ("FEDKEY_TOKEN", &self.token)])
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.cli(&a);
        assert!(out.status.success(), "fedkey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn api(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn scim_status(&self, directory: &str, key: &str) -> u16 {
        self.api(reqwest::Method::GET, &format!("/scim/v2/{directory}/ServiceProviderConfig"), Some(key), None).await.0
    }

    async fn advance(&self, d: &str) {
        let (s, v) =
            self.api(reqwest::Method::POST, "/api/v1/test/clock", Some(&self.token), Some(json!({"advance": d}))).await;
        assert_eq!(s, 200, "{v}");
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stderr on a thread of its own (so the pipe never fills) into a
/// buffer the test can read at any time.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    stderr
}

/// Starts `fedkey serve` on an initialised data directory; returns once it listens.
fn spawn_serve(
    data: &Path,
    db_url: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<String>>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--unsafe-test-clock", "--data-dir"])
        .arg(data)
        .args(["--database-url", db_url])
        .args(extra_args)
        .env_remove("FEDKEY_TOKEN")
        .env_remove("FEDKEY_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = collect_stderr(&mut child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(u) = l.strip_prefix("fedkey listening on ") {
                    break u.to_owned();
                }
            }
            _ => panic!("server exited before listening: {}", stderr.lock().unwrap()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url, stderr)
}

fn fedkey(data: &Path, db_url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--database-url", db_url])
        .env_remove("FEDKEY_TOKEN")
        .env_remove("FEDKEY_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_end_to_end() {
    for b in backends() {
        lifecycle(b).await;
    }
}

async fn lifecycle(b: Backend) {
    let s = Server::start(b);
    s.cli_json(&["directory", "create", "acme"]);
    s.cli_json(&["directory", "create", "globex"]);
    let created = s.cli_json(&[
        "trust",
        "create",
        "--directory",
        "acme",
        "--name",
        "entra",
        "--direction",
        "inbound",
        "--peer-kind",
        "entra",
    ]);
    let k1 = created["key"].as_str().unwrap().to_owned();
    assert!(k1.starts_with("fkp_") && k1.len() == 42, "{k1}");

    // The key authenticates for its own directory only.
    assert_eq!(s.scim_status("acme", &k1).await, 200, "{b:?}");
    assert_eq!(s.scim_status("globex", &k1).await, 401);
    assert_eq!(s.scim_status("acme", "fkp_notavalidkey").await, 401);
    // …and is no admin token.
    assert_eq!(s.api(reqwest::Method::GET, "/api/v1/directories", Some(&k1), None).await.0, 401);

    // Rotate with overlap: both versions work during the overlap.
    let rotated = s.cli_json(&["key", "rotate", "acme/entra", "--overlap", "1h"]);
    let k2 = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(k1, k2);
    assert_eq!(rotated["key_version"]["version"], 2);
    assert_eq!(s.scim_status("acme", &k1).await, 200);
    assert_eq!(s.scim_status("acme", &k2).await, 200);
    let keys = s.cli_json(&["key", "list", "acme/entra"]);
    assert_eq!(keys["keys"][0]["state"], "previous");
    assert!(keys["keys"][0]["last_used_at"].is_string(), "last use is recorded: {keys}");
    assert!(!keys.to_string().contains(&k1) && !keys.to_string().contains(&k2), "key list never shows secrets");

    // After the overlap only the new version works.
    s.advance("61m").await;
    assert_eq!(s.scim_status("acme", &k1).await, 401);
    assert_eq!(s.scim_status("acme", &k2).await, 200);
    let keys = s.cli_json(&["key", "list", "acme/entra"]);
    assert_eq!(keys["keys"][0]["state"], "expired");

    // Suspending the trust stops its key; resuming restores it.
    s.cli_json(&["trust", "suspend", "acme/entra"]);
    assert_eq!(s.scim_status("acme", &k2).await, 401);
    s.cli_json(&["trust", "resume", "acme/entra"]);
    assert_eq!(s.scim_status("acme", &k2).await, 200);

    // Revoking the last usable version needs --force; then revocation is immediate.
    let refused = s.cli(&["key", "revoke", "acme/entra", "--version", "2"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("last_usable_key, HTTP 409"), "{refused:?}");
    assert_eq!(s.scim_status("acme", &k2).await, 200, "a refused revoke changes nothing");
    let revoked = s.cli_json(&["key", "revoke", "acme/entra", "--version", "2", "--force"]);
    assert_eq!(revoked["key_version"]["state"], "revoked");
    assert_eq!(s.scim_status("acme", &k2).await, 401);

    // Every access was audited: successes and failures, never the secret.
    let (st, page) =
        s.api(reqwest::Method::GET, "/api/v1/audit?action=key.authenticate&limit=1000", Some(&s.token), None).await;
    assert_eq!(st, 200);
    let recs = page["records"].as_array().unwrap();
    let denied = recs.iter().filter(|r| r["outcome"] == "denied").count();
    let ok = recs.iter().filter(|r| r["outcome"] == "success").count();
    assert!(denied >= 5 && ok >= 5, "denied {denied}, ok {ok}");
    assert!(recs.iter().all(|r| r["request_id"].is_string() && r["source"] == "127.0.0.1"));
    assert!(
        recs.iter()
            .any(|r| r["outcome"] == "denied" && r["details"]["reason"] == "wrong_directory" && r["key_version"] == 1)
    );
    let all = s.api(reqwest::Method::GET, "/api/v1/audit?limit=1000", Some(&s.token), None).await.1.to_string();
    assert!(!all.contains(&k1) && !all.contains(&k2));

    // The offline verifier agrees with the online one.
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log OK"));
    let v = s.cli_json(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");

    // Export writes JSON lines.
    let out = s.cli(&["audit", "export", "--since", "24h"]);
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines >= 20, "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_bad_input_get_clear_errors() {
    let s = Server::start(Backend::Sqlite);
    let t = Some(s.token.as_str());
    use reqwest::Method as M;

    let (st, v) = s.api(M::POST, "/api/v1/tokens", t, Some(json!({"name": "ops", "role": "operator"}))).await;
    assert_eq!(st, 201, "{v}");
    let ops = v["token"].as_str().unwrap().to_owned();
    let (_, v) = s.api(M::POST, "/api/v1/tokens", t, Some(json!({"name": "aud", "role": "auditor"}))).await;
    let aud = v["token"].as_str().unwrap().to_owned();
    s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
    s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(json!({"name": "idp", "direction": "inbound"}))).await;

    // Roles: operator rotates but cannot create; auditor reads the audit log only.
    let (st, v) = s
        .api(M::POST, "/api/v1/directories/acme/trusts", Some(&ops), Some(json!({"name": "x", "direction": "inbound"})))
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert_eq!(s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/rotate", Some(&ops), None).await.0, 200);
    assert_eq!(s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/rotate", Some(&aud), None).await.0, 403);
    assert_eq!(s.api(M::GET, "/api/v1/audit", Some(&aud), None).await.0, 200);
    assert_eq!(s.api(M::GET, "/api/v1/audit", Some(&ops), None).await.0, 403);
    assert_eq!(s.api(M::GET, "/api/v1/tokens", Some(&aud), None).await.0, 403);

    // Credentials: missing, malformed, unknown → 401 with WWW-Authenticate.
    for tok in [None, Some("garbage"), Some("fka_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")] {
        let (st, v) = s.api(M::GET, "/api/v1/directories", tok, None).await;
        assert_eq!((st, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{tok:?}");
    }
    let resp = reqwest::get(format!("{}/api/v1/directories", s.url)).await.unwrap();
    assert!(resp.headers().get("www-authenticate").is_some());
    // A revoked admin token stops working.
    s.api(M::POST, "/api/v1/tokens/ops/revoke", t, None).await;
    assert_eq!(s.api(M::GET, "/api/v1/directories", Some(&ops), None).await.0, 401);

    // Bodies: malformed JSON, wrong types, unknown fields, oversized, wrong content type.
    let raw = |body: &'static str, ct: &'static str| {
        let url = format!("{}/api/v1/directories", s.url);
        let tok = s.token.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(tok)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = raw("{\"name\": ", "application/json").await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("malformed JSON"), "{v}");
    let (st, v) = raw("{\"name\": 42}", "application/json").await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("invalid request body"), "{v}");
    let (st, v) = raw("{\"name\": \"x\", \"admin\": true}", "application/json").await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown field"), "{v}");
    let (st, _) = raw("{\"name\": \"x\"}", "text/plain").await;
    assert_eq!(st, 415);
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(200_000));
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/directories", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");

    // Names with illegal characters, bad enums, bad durations.
    for name in ["Acme", "a b", "../x", "", "ä"] {
        let (st, v) = s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": name}))).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_value")), "{name:?} {v}");
    }
    let (st, v) =
        s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(json!({"name": "y", "direction": "sideways"}))).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s
        .api(
            M::POST,
            "/api/v1/directories/acme/trusts",
            t,
            Some(json!({"name": "y", "direction": "inbound", "scopes": ["root"]})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown scope"));
    let (st, v) =
        s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/rotate", t, Some(json!({"overlap": "soon"}))).await;
    assert_eq!(st, 400, "{v}");
    let (st, _) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/x/revoke", t, None).await;
    assert_eq!(st, 400);
    let (st, v) =
        s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(json!({"name": "o", "direction": "outbound"}))).await;
    assert_eq!(st, 400, "an outbound trust needs its key: {v}");
    let (st, v) = s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")));
    let (st, v) = s.api(M::GET, "/api/v1/directories/nope/trusts/x/keys", t, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (st, _) = s.api(M::GET, "/api/v1/no/such/thing", t, None).await;
    assert_eq!(st, 404);
    let (st, v) = s.api(M::GET, "/api/v1/audit?limit=abc", t, None).await;
    assert_eq!(st, 400, "{v}");

    // Wrong methods get the JSON error shape too.
    let (st, v) = s.api(M::PUT, "/api/v1/directories", t, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{v}");
    // Revoking twice is a state conflict with a clear message.
    let (st, v) = s.api(M::POST, "/api/v1/tokens/ops/revoke", t, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("invalid_state")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("already revoked"));
    // A low-privilege caller learns nothing from validation: the role check comes first.
    let (st, _) =
        s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/not-a-number/revoke", Some(&aud), None).await;
    assert_eq!(st, 403);
    let (st, _) = s.api(M::POST, "/api/v1/tokens", Some(&aud), Some(json!({"name": "x", "role": "superuser"}))).await;
    assert_eq!(st, 403, "a malformed body from a caller without the role is still a 403");

    // Nothing above created anything it should not have.
    let (_, v) = s.api(M::GET, "/api/v1/directories", t, None).await;
    assert_eq!(v["directories"].as_array().unwrap().len(), 1);
    let (_, v) = s.api(M::GET, "/api/v1/directories/acme/trusts", t, None).await;
    assert_eq!(v["trusts"].as_array().unwrap().len(), 1);

    // Denials are audited.
    let (_, v) = s.api(M::GET, "/api/v1/audit?limit=1000", t, None).await;
    let recs = v["records"].as_array().unwrap();
    assert!(
        recs.iter().any(|r| r["outcome"] == "denied" && r["action"] == "trust.create" && r["actor"] == "token:ops")
    );
    assert!(recs.iter().any(|r| r["outcome"] == "denied" && r["action"] == "admin.authenticate"));
    // Refused changes are audited as failures, with the reason.
    assert!(
        recs.iter().any(|r| r["outcome"] == "failure"
            && r["action"] == "directory.create"
            && r["details"]["code"] == "conflict"),
        "a failed create is recorded"
    );
    // Reads are recorded with their target and outcome.
    assert!(recs.iter().any(|r| r["action"] == "key.list" && r["outcome"] == "failure" && r["directory"] == "nope"));
    // The admin token's last use is recorded by changes, not only by reads.
    let (_, v) = s.api(M::GET, "/api/v1/tokens", t, None).await;
    let aud_tok = v["tokens"].as_array().unwrap().iter().find(|x| x["name"] == "aud").unwrap().clone();
    assert!(aud_tok["last_used_at"].is_string(), "{aud_tok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_disk_or_logs() {
    for b in backends() {
        let s = Server::start_with(b, &[], &[("FEDKEY_LOG", "trace")]);
        let t = Some(s.token.as_str());
        use reqwest::Method as M;
        s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
        let (_, v) = s
            .api(M::POST, "/api/v1/directories/acme/trusts", t, Some(json!({"name": "idp", "direction": "inbound"})))
            .await;
        let inbound1 = v["key"].as_str().unwrap().to_owned();
        let (_, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/rotate", t, None).await;
        let inbound2 = v["key"].as_str().unwrap().to_owned();
        let app1 = format!("app-secret-{}", uuid_hex());
        let app2 = format!("app-secret-{}", uuid_hex());
        let (st, v) = s
            .api(
                M::POST,
                "/api/v1/directories/acme/trusts",
                t,
                Some(json!({"name": "app", "direction": "outbound", "key": app1})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert!(v.get("key").is_none(), "an app-issued key is never echoed");
        s.api(M::POST, "/api/v1/directories/acme/trusts/app/keys/rotate", t, Some(json!({"key": app2}))).await;
        assert_eq!(s.scim_status("acme", &inbound2).await, 200);
        assert_eq!(s.scim_status("acme", "fkp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await, 401);
        let (st, _) = s.api(M::POST, "/api/v1/tokens", t, Some(json!({"name": "x", "role": "auditor"}))).await;
        assert_eq!(st, 201);

        let secrets = [inbound1.as_str(), inbound2.as_str(), app1.as_str(), app2.as_str(), s.token.as_str()];
        let at_rest: Vec<u8> = match b {
            Backend::Sqlite => {
                let mut all = Vec::new();
                for f in std::fs::read_dir(s.data_dir()).unwrap() {
                    let p = f.unwrap().path();
                    if p.file_name().unwrap().to_string_lossy().starts_with("fedkey.db") {
                        all.extend(std::fs::read(&p).unwrap());
                    }
                }
                assert!(all.len() > 10_000);
                all
            }
            Backend::Postgres => {
                let out = Command::new("pg_dump").arg(&s.db_url).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                assert!(String::from_utf8_lossy(&out.stdout).contains("key_versions"));
                out.stdout
            }
        };
        let logs = s.logs();
        assert!(logs.len() > 1000, "trace logs were captured");
        for sec in secrets {
            assert!(!contains(&at_rest, sec.as_bytes()), "{b:?}: a secret is stored in clear");
            assert!(!logs.contains(sec), "{b:?}: a secret reached the logs");
            let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
            assert!(!metrics.contains(sec));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failure_fails_closed() {
    for b in backends() {
        let s = Server::start(b);
        let t = Some(s.token.as_str());
        use reqwest::Method as M;
        s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
        let (_, v) = s
            .api(M::POST, "/api/v1/directories/acme/trusts", t, Some(json!({"name": "idp", "direction": "inbound"})))
            .await;
        let key = v["key"].as_str().unwrap().to_owned();
        assert_eq!(s.api(M::GET, "/readyz", None, None).await.0, 200);
        let user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
        let (st, v) = s.api(M::POST, "/scim/v2/acme/Users", Some(&key), Some(user("ann"))).await;
        assert_eq!(st, 201, "{v}");
        let ann = format!("/scim/v2/acme/Users/{}", v["id"].as_str().unwrap());
        let retitle = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "blocked"}]});

        block_audit(b, &s, true);
        // A SCIM request's work may run while its access record is written, but nothing is
        // answered, and nothing committed, unless that record is durable.
        let (st, v) = s.api(M::GET, &ann, Some(&key), None).await;
        assert_eq!(st, 503, "{v}");
        assert!(v.get("userName").is_none(), "no data is answered before its access is audited: {v}");
        assert_eq!(s.api(M::PATCH, &ann, Some(&key), Some(retitle.clone())).await.0, 503);
        assert_eq!(s.api(M::POST, "/scim/v2/acme/Users", Some(&key), Some(user("bob"))).await.0, 503);
        let (st, v) = s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "blocked"}))).await;
        assert_eq!((st, v["error"]["code"].as_str()), (503, Some("audit_unavailable")), "{v}");
        let (st, _) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/rotate", t, None).await;
        assert_eq!(st, 503);
        let (st, _) = s.api(M::POST, "/api/v1/directories/acme/trusts/idp/keys/1/revoke", t, None).await;
        assert_eq!(st, 503);
        assert_eq!(s.scim_status("acme", &key).await, 503, "unaudited access is refused");
        assert_eq!(s.api(M::GET, "/api/v1/directories", t, None).await.0, 503, "unaudited reads are refused");
        let (st, v) = s.api(M::GET, "/readyz", None, None).await;
        assert_eq!((st, v["audit"].as_str()), (503, Some("not writable")));

        block_audit(b, &s, false);
        // Readiness is checked at most once a second: the refusal above may be reused.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.api(M::GET, "/readyz", None, None).await.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "/readyz passes once the audit log is writable");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (_, v) = s.api(M::GET, "/api/v1/directories", t, None).await;
        assert_eq!(v["directories"].as_array().unwrap().len(), 1, "the blocked create did not happen");
        let (_, v) = s.api(M::GET, "/api/v1/directories/acme/trusts/idp/keys", t, None).await;
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "the blocked rotation did not happen");
        assert_eq!(keys[0]["state"], "current", "the blocked revocation did not happen");
        assert_eq!(s.scim_status("acme", &key).await, 200);
        let (_, v) = s.api(M::GET, &ann, Some(&key), None).await;
        assert!(v.get("title").is_none(), "the blocked PATCH did not happen: {v}");
        let (_, v) = s.api(M::GET, "/scim/v2/acme/Users?filter=userName%20eq%20%22bob%22", Some(&key), None).await;
        assert_eq!(v["totalResults"], 0, "the blocked POST did not happen: {v}");
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A store failure injected from outside fedkey: while `on`, every `event` (`INSERT`,
/// `UPDATE`) on `table` where `when` holds (a condition on `NEW`) fails with `message`;
/// `on = false` removes the trigger `name` again.
struct FailingTrigger<'a> {
    name: &'a str,
    event: &'a str,
    table: &'a str,
    when: &'a str,
    message: &'a str,
}

impl FailingTrigger<'_> {
    fn set(&self, b: Backend, s: &Server, on: bool) {
        let FailingTrigger { name, event, table, when, message } = self;
        match (b, on) {
            (Backend::Sqlite, true) => sqlite_script(
                s,
                &format!(
                    "CREATE TRIGGER {name} BEFORE {event} ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, '{message}'); END;"
                ),
            ),
            (Backend::Sqlite, false) => sqlite_script(s, &format!("DROP TRIGGER {name};")),
            (Backend::Postgres, true) => {
                psql_on(
                    &s.db_url,
                    &format!(
                        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{message}'; END; $$; \
                     CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}();"
                    ),
                );
            }
            (Backend::Postgres, false) => {
                psql_on(&s.db_url, &format!("DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();"));
            }
        };
    }
}

/// Runs `sql` on the server's SQLite database from outside fedkey (Python's sqlite3).
fn sqlite_script(s: &Server, sql: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30); c.executescript(sys.argv[2]); c.commit()",
        ])
        .arg(s.data_dir().join("fedkey.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Rewrites who did what in audit record 3 from outside fedkey, so that verification fails.
fn tamper_audit(b: Backend, s: &Server) {
    let sql = "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'token:nobody' WHERE seq = 3;";
    match b {
        Backend::Sqlite => sqlite_script(s, sql),
        Backend::Postgres => {
            psql_on(&s.db_url, &sql.replace("audit_log_no_update;", "audit_log_no_update ON audit_log;"));
        }
    }
}

/// Makes every insert into the audit log fail (or stop failing), from outside fedkey.
fn block_audit(b: Backend, s: &Server, on: bool) {
    FailingTrigger {
        name: "block_audit",
        event: "INSERT",
        table: "audit_log",
        when: "TRUE",
        message: "audit disk full",
    }
    .set(b, s, on);
}

#[test]
fn unsafe_set_ups_are_refused_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let db = format!("sqlite://{}", data.join("fedkey.db").display());
    // Plain HTTP on a non-loopback address.
    let out = fedkey(&data, &db, &["serve", "--listen", "0.0.0.0:0"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to serve plain HTTP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A master key file readable by others.
    assert!(fedkey(&data, &db, &["init"], &[]).status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.join("master.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = fedkey(&data, &db, &["serve", "--listen", "127.0.0.1:0"], &[]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("master key file") && e.contains("chmod 600"), "{e}");
    }
    // A missing master key with existing data.
    std::fs::remove_file(data.join("master.key")).unwrap();
    let out = fedkey(&data, &db, &["init"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    // Offline tools pointed at the wrong place refuse instead of creating an empty database.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let wrong = format!("sqlite://{}", empty.join("fedkey.db").display());
    let out = fedkey(&empty, &wrong, &["audit", "export"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no fedkey database"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!empty.join("fedkey.db").exists());
    // A bad config file.
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "lisen = 1").unwrap();
    let out = Command::new(BIN).args(["init", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting"));
}

/// Admin commands wait `--request-timeout` (or FEDKEY_REQUEST_TIMEOUT) for the server and
/// say what happened when it does not answer; bad values are refused before any request.
#[test]
fn admin_commands_wait_as_long_as_told_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let db = format!("sqlite://{}", data.join("fedkey.db").display());
    // Accepts connections (the kernel completes them) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let env = [("FEDKEY_URL", url.as_str()), ("FEDKEY_TOKEN", "fka_not-checked-here")];
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = fedkey(&data, &db, &["directory", "list", "--request-timeout", "1s"], &env);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("did not answer within 1s") && e.contains("--request-timeout"), "{e}");
    assert!(!e.contains("fka_not-checked-here"), "{e}");
    let mut with_env = env.to_vec();
    with_env.push(("FEDKEY_REQUEST_TIMEOUT", "2s"));
    let e = stderr(&fedkey(&data, &db, &["directory", "list"], &with_env));
    assert!(e.contains("did not answer within 2s"), "{e}");
    for bad in ["soon", "0s", "2d"] {
        let out = fedkey(&data, &db, &["directory", "list", "--request-timeout", bad], &env);
        assert!(!out.status.success());
        let e = stderr(&out);
        assert!(e.contains("request_timeout") && e.contains("between 1s and 24h"), "{bad}: {e}");
    }
}

/// A throw-away CA and a server certificate for 127.0.0.1 signed by it.
fn make_cert(dir: &Path, cert: &Path, key: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ck, cc) = ("ca.key", "ca.pem");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=fedkey test CA",
        "-keyout",
        ck,
        "-out",
        cc,
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (k, c) = (key.to_str().unwrap(), cert.to_str().unwrap());
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        k,
        "-out",
        "leaf.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        cc,
        "-CAkey",
        ck,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        c,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_and_rotates_the_master_key_online() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_cert(dir.path(), &cert, &key);
    let s = Server::start_with(
        Backend::Sqlite,
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        &[],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let r = client.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        reqwest::get(format!("{}/healthz", s.url.replacen("https", "http", 1))).await.is_err(),
        "no plain HTTP on the TLS port"
    );

    // An outbound key survives a master-key rotation performed while the server runs.
    let app = format!("app-{}", uuid_hex());
    let api = |m: reqwest::Method, p: &str, b: Option<Value>| {
        let mut req = client.request(m, format!("{}{p}", s.url)).bearer_auth(&s.token);
        if let Some(b) = b {
            req = req.json(&b);
        }
        req.send()
    };
    api(reqwest::Method::POST, "/api/v1/directories", Some(json!({"name": "acme"}))).await.unwrap();
    let r = api(
        reqwest::Method::POST,
        "/api/v1/directories/acme/trusts",
        Some(json!({"name": "app", "direction": "outbound", "key": app})),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let before = std::fs::read_to_string(s.data_dir().join("master.key")).unwrap();
    let out = s.cli(&["master-key", "rotate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("4 envelopes rewrapped"), "{msg}");
    let after = std::fs::read_to_string(s.data_dir().join("master.key")).unwrap();
    assert_ne!(before, after);
    // The running server picks up the new keyring: new secrets are sealed under it.
    let r = api(
        reqwest::Method::POST,
        "/api/v1/directories/acme/trusts/app/keys/rotate",
        Some(json!({"key": "second-app-key"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let out = s.cli(&["audit", "verify", "--offline"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_every_admin_token_is_recoverable_from_the_host() {
    let s = Server::start(Backend::Sqlite);
    use reqwest::Method as M;
    let (st, _) = s.api(M::POST, "/api/v1/tokens/bootstrap/revoke", Some(&s.token), None).await;
    assert_eq!(st, 200);
    assert_eq!(s.api(M::GET, "/api/v1/directories", Some(&s.token), None).await.0, 401);
    // Whoever can run fedkey on the data directory gets a new admin token.
    let out = fedkey(&s.data_dir(), &s.db_url, &["init", "--output", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fresh = v["admin_token"].as_str().expect("a recovery token").to_owned();
    assert_eq!(s.api(M::GET, "/api/v1/directories", Some(&fresh), None).await.0, 200);
    // With a usable admin token present, init issues none.
    let out = fedkey(&s.data_dir(), &s.db_url, &["init", "--output", "json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["admin_token"].is_null());
    let (_, v) = s.api(M::GET, "/api/v1/audit?action=token.create", Some(&fresh), None).await;
    assert_eq!(v["records"].as_array().unwrap().len(), 2, "both bootstrap tokens are audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_verify_names_the_tampered_record() {
    for b in backends() {
        let s = Server::start(b);
        s.cli_json(&["directory", "create", "acme"]);
        s.cli_json(&["trust", "create", "--directory", "acme", "--name", "idp", "--direction", "inbound"]);
        s.cli_json(&["key", "rotate", "acme/idp", "--overlap", "1h"]);
        let ok = s.cli(&["audit", "verify", "--offline"]);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        // Someone with database access rewrites who did what in record 3.
        tamper_audit(b, &s);
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert_eq!(out.status.code(), Some(3), "{b:?}: verification must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("FAILED at record 3") && err.contains("altered"), "{b:?}: {err}");
        // The API verifier agrees.
        let out = s.cli(&["audit", "verify", "--output", "json"]);
        assert_eq!(out.status.code(), Some(3));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((v["ok"].as_bool(), v["seq"].as_i64()), (Some(false), Some(3)), "{v}");
    }
}

// ---------------------------------------------------------------- SCIM service

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM response: status, headers, JSON body (`Null` when empty).
struct ScimResp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl ScimResp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// A SCIM client for one directory and key.
struct Scim<'a> {
    s: &'a Server,
    dir: String,
    key: String,
}

impl Scim<'_> {
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> ScimResp {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}/scim/v2/{}{path}", self.s.url, self.dir))
            .bearer_auth(&self.key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                req = req.header("content-type", "application/scim+json");
            }
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        ScimResp { status, headers, body }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> ScimResp {
        self.raw(method, path, body.map(|b| b.to_string()), &[]).await
    }

    async fn get(&self, path: &str) -> ScimResp {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> ScimResp {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, ops: Value) -> ScimResp {
        self.call(reqwest::Method::PATCH, path, Some(json!({"schemas": [PATCH_URN], "Operations": ops}))).await
    }

    /// `GET /Users?filter=…` (spaces as `+`, as Entra sends them); the resources found.
    async fn filter(&self, endpoint: &str, filter: &str) -> Vec<Value> {
        let enc: String = filter
            .chars()
            .map(|c| match c {
                ' ' => "+".to_owned(),
                '"' => "%22".to_owned(),
                '[' => "%5B".to_owned(),
                ']' => "%5D".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let r = self.get(&format!("/{endpoint}?filter={enc}&aadOptscim062020")).await;
        assert_eq!(r.status, 200, "{filter}: {}", r.body);
        assert_eq!(r.body["totalResults"].as_u64().unwrap() as usize, r.body["Resources"].as_array().unwrap().len());
        r.body["Resources"].as_array().unwrap().clone()
    }
}

/// Starts a server with directory `acme` and an inbound `generic` trust (RFC 7644 PATCH)
/// with `scopes` (default scopes when `None`); returns the server and the provisioning key.
async fn scim_server(b: Backend, scopes: Option<&[&str]>) -> (Server, String) {
    scim_server_for(b, scopes, "generic").await
}

/// [`scim_server`] with a trust of `peer_kind` (`entra`, `okta`, `generic`): its PATCH
/// compatibility profile.
async fn scim_server_for(b: Backend, scopes: Option<&[&str]>, peer_kind: &str) -> (Server, String) {
    let s = Server::start(b);
    let t = Some(s.token.as_str());
    let (st, v) = s.api(reqwest::Method::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 201, "{v}");
    let mut trust = json!({"name": "idp", "direction": "inbound", "peer_kind": peer_kind});
    if let Some(sc) = scopes {
        trust["scopes"] = json!(sc);
    }
    let (st, v) = s.api(reqwest::Method::POST, "/api/v1/directories/acme/trusts", t, Some(trust)).await;
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    (s, key)
}

fn assert_scim_error(r: &ScimResp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["schemas"][0], ERROR_URN, "{}", r.body);
    assert_eq!(r.body["status"], status.to_string());
    assert!(!r.body["detail"].as_str().unwrap_or("").is_empty(), "{}", r.body);
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{}", r.body);
    }
    assert!(r.header("content-type").unwrap().starts_with("application/scim+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_discovery_endpoints() {
    use reqwest::Method as M;
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let spc = c.get("/ServiceProviderConfig").await;
        assert_eq!(spc.status, 200);
        assert!(spc.header("content-type").unwrap().starts_with("application/scim+json"));
        let v = &spc.body;
        assert_eq!(
            (&v["patch"]["supported"], &v["filter"]["supported"], &v["filter"]["maxResults"]),
            (&json!(true), &json!(true), &json!(200))
        );
        assert_eq!((&v["sort"]["supported"], &v["etag"]["supported"]), (&json!(true), &json!(true)));
        assert_eq!((&v["bulk"]["supported"], &v["changePassword"]["supported"]), (&json!(true), &json!(false)));

        let rts = c.get("/ResourceTypes").await;
        assert_eq!((rts.status, rts.body["totalResults"].as_u64()), (200, Some(2)), "{}", rts.body);
        assert_eq!(rts.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:ListResponse");
        let user = c.get("/ResourceTypes/User").await;
        assert_eq!((user.status, user.body["endpoint"].as_str()), (200, Some("/Users")));
        assert_eq!(user.body["schemaExtensions"][0]["schema"], ENTERPRISE_URN);
        assert!(user.body["meta"]["location"].as_str().unwrap().ends_with("/scim/v2/acme/ResourceTypes/User"));
        assert_scim_error(&c.get("/ResourceTypes/Nope").await, 404, None);
        let schemas = c.get("/Schemas").await;
        assert_eq!((schemas.status, schemas.body["totalResults"].as_u64()), (200, Some(3)));
        let sch = c.get(&format!("/Schemas/{USER_URN}")).await;
        assert_eq!((sch.status, sch.body["id"].as_str()), (200, Some(USER_URN)));
        assert_scim_error(&c.get("/Schemas/urn:nope").await, 404, None);
        for path in ["/ServiceProviderConfig", "/ResourceTypes", "/ResourceTypes/User", "/Schemas", "/Schemas/x"] {
            for m in [M::POST, M::PUT, M::PATCH, M::DELETE] {
                assert_scim_error(&c.call(m.clone(), path, Some(json!({}))).await, 405, None);
            }
        }
        assert_scim_error(&c.get("/Nowhere").await, 404, None);
        assert_scim_error(&c.get("/Users/a/b").await, 404, None);
        // Authentication everywhere.
        let anon = Scim { s: &s, dir: "acme".into(), key: "fkp_wrong".into() };
        for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes/User", "/Users", "/Groups/x"] {
            let r = anon.get(path).await;
            assert_scim_error(&r, 401, None);
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_users_entra_and_okta_flows() {
    use reqwest::Method as M;
    for b in backends() {
        // Entra's shapes need its profile; Okta's pass under every profile.
        let (s, key) = scim_server_for(b, None, "entra").await;
        let c = Scim { s: &s, dir: "acme".into(), key };

        // Entra's test connection: a filter on a random GUID is an empty 200 list.
        assert!(c.filter("Users", "userName eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"").await.is_empty());

        // Entra create: nulls, empty roles, meta, the enterprise URN.
        let create = json!({"schemas":[USER_URN, ENTERPRISE_URN],
            "externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef","userName":"Test_User_00aa00aa@testuser.com","active":true,
            "emails":[{"primary":true,"type":"work","value":"Test_User_11bb11bb@testuser.com"}],
            "meta":{"resourceType":"User"},
            "name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
            "roles":[],"addresses":null,"phoneNumbers":null,"title":null,"preferredLanguage":null});
        let r = c.post("/Users", create.clone()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.header("content-type").unwrap().starts_with("application/scim+json"));
        let id = r.body["id"].as_str().unwrap().to_owned();
        let loc = r.body["meta"]["location"].as_str().unwrap().to_owned();
        assert_eq!(r.header("location").as_deref(), Some(loc.as_str()));
        assert!(loc.ends_with(&format!("/scim/v2/acme/Users/{id}")));
        assert_eq!(r.header("etag").as_deref(), Some("W/\"1\""));
        assert_eq!(r.body["meta"]["version"], "W/\"1\"");
        assert_eq!(r.body["schemas"], json!([USER_URN]), "no empty extension advertised");
        let got = c.get(&format!("/Users/{id}")).await;
        assert_eq!(got.status, 200);
        let u = &got.body;
        assert_eq!(
            (u["userName"].as_str(), u["active"].as_bool()),
            (Some("Test_User_00aa00aa@testuser.com"), Some(true))
        );
        assert_eq!(u["externalId"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
        assert_eq!(u["name"]["familyName"], "familyName");
        assert!(u.get("roles").is_none() && u.get("title").is_none() && u.get("addresses").is_none(), "{u}");
        assert_eq!(u["meta"]["resourceType"], "User");
        assert!(u["meta"]["created"].as_str().unwrap().contains('T'));

        // Duplicate userName, case-insensitively: 409 uniqueness.
        let mut dup = create.clone();
        dup["userName"] = json!("TEST_USER_00AA00AA@TESTUSER.COM");
        assert_scim_error(&c.post("/Users", dup).await, 409, Some("uniqueness"));
        // Required attribute, wrong types, malformed JSON, oversized body.
        assert_scim_error(&c.post("/Users", json!({"displayName": "x"})).await, 400, Some("invalidValue"));
        assert_scim_error(
            &c.post("/Users", json!({"userName": "x", "active": "maybe"})).await,
            400,
            Some("invalidValue"),
        );
        assert_scim_error(
            &c.raw(M::POST, "/Users", Some("{\"userName\": ".into()), &[]).await,
            400,
            Some("invalidSyntax"),
        );
        let big = json!({"userName": "big", "title": "x".repeat(1_100_000)});
        assert_scim_error(&c.post("/Users", big).await, 413, None);
        // application/json is accepted too.
        let r = c
            .raw(
                M::POST,
                "/Users",
                Some(json!({"userName": "plainjson"}).to_string()),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let plain_id = r.body["id"].as_str().unwrap().to_owned();

        // Filters Entra and Okta send (spaces as '+', unquoted values, value paths).
        let found = c.filter("Users", "userName eq \"TEST_USER_00AA00AA@testuser.com\"").await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["id"], id.as_str());
        assert_eq!(c.filter("Users", "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"").await.len(), 1);
        assert_eq!(c.filter("Users", "externalId eq 0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef").await.len(), 1);
        assert_eq!(
            c.filter("Users", "emails[type eq \"work\"].value eq \"test_user_11bb11bb@testuser.com\"").await.len(),
            1
        );
        assert_scim_error(&c.get("/Users?filter=userName+eq").await, 400, Some("invalidFilter"));
        assert_scim_error(&c.get("/Users?filter=nosuchattr+eq+%22x%22").await, 400, Some("invalidFilter"));

        // Entra PATCH shapes, each checked with a follow-up GET.
        let p = format!("/Users/{id}");
        let r = c.patch(&p, json!([{"op":"Replace","path":"active","value":"False"}])).await;
        assert_eq!((r.status, r.body["active"].as_bool()), (200, Some(false)), "{}", r.body);
        assert_eq!(c.get(&p).await.body["active"], false);
        assert_eq!(c.filter("Users", "active eq false").await.len(), 1, "a disabled user stays filterable");
        let r = c
            .patch(
                &p,
                json!([
                    {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
                    {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
                    {"op":"Replace","path":"addresses[type eq \"work\"].formatted","value":"18/2111"},
                    {"op":"Add","path":format!("{ENTERPRISE_URN}:department"),"value":"Retail"}
                ]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let u = c.get(&p).await.body;
        assert_eq!(u["emails"][0]["value"], "updatedEmail@microsoft.com");
        assert_eq!(u["name"]["familyName"], "updatedFamilyName");
        assert_eq!(u["addresses"][0]["formatted"], "18/2111");
        assert_eq!(u["addresses"][0]["type"], "work");
        assert_eq!(u[ENTERPRISE_URN]["department"], "Retail");
        assert_eq!(u["schemas"], json!([USER_URN, ENTERPRISE_URN]));
        assert_eq!(u["meta"]["version"], "W/\"3\"");
        let r = c
            .patch(
                &p,
                json!([{"op":"replace","value":{"displayName":"Bjfe","name.givenName":"Kkom","name.familyName":"Unua",
                    format!("{ENTERPRISE_URN}:employeeNumber"):"Aklq"}}]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = c.patch(&p, json!([{"op":"add","path":format!("{ENTERPRISE_URN}:manager"),"value":plain_id}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let u = c.get(&p).await.body;
        assert_eq!((u["displayName"].as_str(), u["name"]["givenName"].as_str()), (Some("Bjfe"), Some("Kkom")));
        assert_eq!(u[ENTERPRISE_URN]["employeeNumber"], "Aklq");
        assert_eq!(u[ENTERPRISE_URN]["manager"]["value"], plain_id.as_str());
        assert_eq!(c.filter("Users", &format!("manager eq \"{plain_id}\"")).await.len(), 1);

        // Okta: deactivate with a no-path replace, then PUT the whole object back.
        let r = c.patch(&p, json!([{"op":"replace","value":{"active":true, "id": id}}])).await;
        assert_eq!((r.status, r.body["active"].as_bool()), (200, Some(true)), "{}", r.body);
        let mut whole = c.get(&p).await.body;
        let etag = whole["meta"]["version"].as_str().unwrap().to_owned();
        whole["groups"] = json!([]);
        whole["title"] = json!("Engineer");
        whole["password"] = json!("Sup3r-Secret-Pa55word!");
        let r = c.raw(M::PUT, &p, Some(whole.to_string()), &[("if-match", &etag)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["title"], "Engineer");
        assert!(r.body.get("password").is_none(), "password is never returned");
        assert_ne!(r.header("etag").unwrap(), etag);
        // A stale If-Match is 412 and changes nothing; If-None-Match gives 304.
        assert_scim_error(&c.raw(M::PUT, &p, Some(whole.to_string()), &[("if-match", &etag)]).await, 412, None);
        let r = c
            .raw(
                M::PATCH,
                &p,
                Some(json!({"Operations":[{"op":"replace","path":"title","value":"x"}]}).to_string()),
                &[("if-match", &etag)],
            )
            .await;
        assert_scim_error(&r, 412, None);
        let cur = c.get(&p).await;
        assert_eq!(cur.body["title"], "Engineer");
        let r = c.raw(M::GET, &p, None, &[("if-none-match", &cur.header("etag").unwrap())]).await;
        assert_eq!(r.status, 304);
        // An If-Match list matches any of its tags (RFC 9110 §13.1.1), not only the first.
        let cur_tag = cur.header("etag").unwrap();
        let title = |t: &str| Some(json!({"Operations":[{"op":"replace","path":"title","value":t}]}).to_string());
        let r = c.raw(M::PATCH, &p, title("Lead"), &[("if-match", &format!("{etag}, {cur_tag}"))]).await;
        assert_eq!((r.status, r.body["title"].as_str()), (200, Some("Lead")), "{}", r.body);
        let none_current = format!("{etag}, {cur_tag}, \"foreign\"");
        assert_scim_error(&c.raw(M::DELETE, &p, None, &[("if-match", &none_current)]).await, 412, None);
        assert_scim_error(&c.raw(M::PUT, &p, Some(whole.to_string()), &[("if-match", &none_current)]).await, 412, None);
        let now = c.get(&p).await;
        assert_eq!((now.status, now.body["title"].as_str()), (200, Some("Lead")), "nothing deleted or replaced");
        let r = c
            .raw(M::PATCH, &p, title("Engineer"), &[("if-match", &format!("\"x\", {}", now.header("etag").unwrap()))])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        // Okta's password PATCH.
        let r = c.patch(&p, json!([{"op":"replace","value":{"password":"An0ther-Secret-Pa55!"}}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("password").is_none());

        // Paging, sorting, projection.
        for i in 0..5 {
            assert_eq!(
                c.post("/Users", json!({"userName": format!("page{i}@x"), "name": {"givenName": "g"}})).await.status,
                201
            );
        }
        let all = c.get("/Users?startIndex=1&count=100").await.body;
        assert_eq!(
            (all["totalResults"].as_i64(), all["itemsPerPage"].as_i64(), all["startIndex"].as_i64()),
            (Some(7), Some(7), Some(1))
        );
        let mut seen = Vec::new();
        for start in [1, 4, 7] {
            let pg = c.get(&format!("/Users?startIndex={start}&count=3")).await.body;
            assert_eq!(pg["totalResults"], 7);
            seen.extend(pg["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        }
        let ids: Vec<String> =
            all["Resources"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(seen, ids, "stable order across pages");
        let z = c.get("/Users?count=0").await.body;
        assert_eq!((z["totalResults"].as_i64(), z["Resources"].as_array().map(Vec::len)), (Some(7), Some(0)));
        assert_eq!(c.get("/Users?startIndex=0&count=1").await.body["startIndex"], 1);
        let sorted = c.get("/Users?sortBy=userName&sortOrder=descending&count=2").await.body;
        assert_eq!(sorted["Resources"][0]["userName"], "Test_User_00aa00aa@testuser.com", "{sorted}");
        assert_eq!(sorted["Resources"][1]["userName"], "plainjson");
        let proj = c.get(&format!("/Users?filter=id+eq+%22{id}%22&attributes=userName,name.givenName")).await.body;
        let one = &proj["Resources"][0];
        assert_eq!(one["name"], json!({"givenName": "Kkom"}));
        let mut keys: Vec<&str> = one.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["id", "name", "schemas", "userName"]);
        let ex = c.get(&format!("/Users/{id}?excludedAttributes=emails,meta,id")).await.body;
        assert!(ex.get("emails").is_none() && ex.get("meta").is_none() && ex["id"] == id.as_str());
        let srch = c
            .post(
                "/Users/.search",
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName sw \"page\"", "count": 2, "attributes": ["userName"]}),
            )
            .await;
        assert_eq!(
            (srch.status, srch.body["totalResults"].as_i64(), srch.body["itemsPerPage"].as_i64()),
            (200, Some(5), Some(2)),
            "{}",
            srch.body
        );

        // Delete: 204, then 404 with a detail, repeatedly.
        let r = c.call(M::DELETE, &format!("/Users/{plain_id}"), None).await;
        assert_eq!((r.status, &r.body), (204, &Value::Null));
        for _ in 0..2 {
            assert_scim_error(&c.get(&format!("/Users/{plain_id}")).await, 404, None);
            assert_scim_error(&c.call(M::DELETE, &format!("/Users/{plain_id}"), None).await, 404, None);
        }
        assert_scim_error(
            &c.patch(&format!("/Users/{plain_id}"), json!([{"op":"replace","path":"title","value":"x"}])).await,
            404,
            None,
        );
        assert_scim_error(
            &c.raw(M::PUT, &format!("/Users/{plain_id}"), Some(json!({"userName": "q"}).to_string()), &[]).await,
            404,
            None,
        );

        // The password never reaches disk in clear.
        if b == Backend::Sqlite {
            let mut all = Vec::new();
            for f in std::fs::read_dir(s.data_dir()).unwrap() {
                let p = f.unwrap().path();
                if p.file_name().unwrap().to_string_lossy().starts_with("fedkey.db") {
                    all.extend(std::fs::read(&p).unwrap());
                }
            }
            assert!(contains(&all, b"updatedFamilyName"), "the check reads the data");
            assert!(!contains(&all, b"Sup3r-Secret-Pa55word!") && !contains(&all, b"An0ther-Secret-Pa55!"));
        }
        assert!(!s.logs().contains("Sup3r-Secret-Pa55word!"));
        // Writes are audited by attribute name.
        let (_, v) = s.api(M::GET, "/api/v1/audit?action=scim.replace&limit=1000", Some(&s.token), None).await;
        let recs = v["records"].as_array().unwrap();
        assert!(
            recs.iter().any(|r| r["details"]["attributes"].as_array().unwrap().contains(&json!("password"))),
            "{v}"
        );
        assert!(recs.iter().all(|r| r["actor"] == "key:acme/idp#1"));
        assert!(!v.to_string().contains("Pa55"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_groups_entra_and_okta_flows() {
    use reqwest::Method as M;
    for b in backends() {
        let (s, key) = scim_server_for(b, None, "entra").await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let mut users = Vec::new();
        for n in ["ann", "bob", "cy"] {
            let r = c.post("/Users", json!({"userName": format!("{n}@x.com")})).await;
            assert_eq!(r.status, 201);
            users.push(r.body["id"].as_str().unwrap().to_owned());
        }
        // Entra: filter, then POST with an extra Microsoft schema URI and no members.
        assert!(c.filter("Groups", "displayName eq \"displayName\"").await.is_empty());
        let r = c
            .post(
                "/Groups",
                json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                    "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName","meta":{"resourceType":"Group"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let gid = r.body["id"].as_str().unwrap().to_owned();
        let gp = format!("/Groups/{gid}");
        assert_eq!(r.header("location").unwrap(), r.body["meta"]["location"].as_str().unwrap());
        assert_scim_error(&c.post("/Groups", json!({"displayName": "DISPLAYNAME"})).await, 409, Some("uniqueness"));
        // Add members (with Entra's null $ref), then read both sides.
        let r = c
            .patch(
                &gp,
                json!([{"op":"Add","path":"members","value":[{"$ref":null,"value":users[0]},{"value":users[1]}]}]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let g = c.get(&gp).await.body;
        let members = g["members"].as_array().unwrap();
        assert_eq!(members.len(), 2, "{g}");
        let ann = members.iter().find(|m| m["value"] == users[0].as_str()).unwrap();
        assert_eq!((ann["display"].as_str(), ann["type"].as_str()), (Some("ann@x.com"), Some("User")));
        assert!(ann["$ref"].as_str().unwrap().ends_with(&format!("/Users/{}", users[0])));
        let u = c.get(&format!("/Users/{}", users[0])).await.body;
        assert_eq!(
            u["groups"],
            json!([{"value": gid, "display": "displayName", "type": "direct", "$ref": g["meta"]["location"]}])
        );
        // Entra's reads.
        let ex = c.get(&format!("{gp}?excludedAttributes=members")).await.body;
        assert!(ex.get("members").is_none() && ex["displayName"] == "displayName");
        let f = c.get("/Groups?excludedAttributes=members&filter=displayName+eq+%22displayName%22").await.body;
        assert_eq!(f["totalResults"], 1);
        assert!(f["Resources"][0].get("members").is_none());
        assert_eq!(c.filter("Groups", &format!("id eq \"{gid}\" and members eq \"{}\"", users[0])).await.len(), 1);
        assert!(c.filter("Groups", &format!("id eq \"{gid}\" and members eq \"{}\"", users[2])).await.is_empty());
        // Remove with a value array removes only those members.
        let r = c.patch(&gp, json!([{"op":"Remove","path":"members","value":[{"value":users[0]}]}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let g = c.get(&gp).await.body;
        assert_eq!(g["members"].as_array().unwrap().len(), 1);
        assert_eq!(g["members"][0]["value"], users[1].as_str());
        assert!(c.get(&format!("/Users/{}", users[0])).await.body.get("groups").is_none());
        // Okta: remove by filter and add in one request, then replace with [].
        let r = c
            .patch(
                &gp,
                json!([{"op":"remove","path":format!("members[value eq \"{}\"]", users[1])},
                    {"op":"add","path":"members","value":[{"value":users[2],"display":"cy@x.com"}]}]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let g = c.get(&gp).await.body;
        assert_eq!(
            g["members"].as_array().unwrap().iter().map(|m| m["value"].clone()).collect::<Vec<_>>(),
            vec![json!(users[2])]
        );
        let r = c.patch(&gp, json!([{"op":"replace","value":{"id":gid,"displayName":"Test SCIMv2"}}])).await;
        assert_eq!((r.status, r.body["displayName"].as_str()), (200, Some("Test SCIMv2")), "{}", r.body);
        let r = c.patch(&gp, json!([{"op":"replace","value":{"id":"someone-else"}}])).await;
        assert_eq!(r.status, 400, "changing the id is refused: {}", r.body);
        let r = c.patch(&gp, json!([{"op":"replace","path":"members","value":[]}])).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(c.get(&gp).await.body.get("members").is_none());
        // Unknown members are 400 invalidValue; a bad PATCH op is 400 too.
        let r = c.patch(&gp, json!([{"op":"add","path":"members","value":[{"value":"no-such-user"}]}])).await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        assert_scim_error(
            &c.post("/Groups", json!({"displayName": "g2", "members": [{"value": "nope"}]})).await,
            400,
            Some("invalidValue"),
        );
        assert_eq!(c.patch(&gp, json!([{"op":"frobnicate","path":"displayName","value":"x"}])).await.status, 400);
        // Okta group push: POST with members: [] and with members.
        let r = c.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "okta", "members": []})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = c
            .post("/Groups", json!({"displayName": "full", "members": [{"value": users[0]}, {"value": users[2]}]}))
            .await;
        assert_eq!((r.status, r.body["members"].as_array().map(Vec::len)), (201, Some(2)), "{}", r.body);
        // PUT replaces the membership.
        let full = r.body["id"].as_str().unwrap().to_owned();
        let r = c
            .raw(
                M::PUT,
                &format!("/Groups/{full}"),
                Some(json!({"displayName": "full", "members": [{"value": users[1]}]}).to_string()),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(c.get(&format!("/Groups/{full}")).await.body["members"][0]["value"], users[1].as_str());
        // Root search spans both types.
        let r = c.post("/.search", json!({"filter": "meta.resourceType eq \"Group\"", "count": 10})).await;
        assert_eq!((r.status, r.body["totalResults"].as_i64()), (200, Some(3)), "{}", r.body);
        // A filter applies to the types that have its attributes.
        let r = c.post("/.search", json!({"filter": "userName eq \"ANN@x.com\"", "sortBy": "meta.created"})).await;
        assert_eq!((r.status, r.body["totalResults"].as_i64()), (200, Some(1)), "{}", r.body);
        assert_scim_error(&c.post("/.search", json!({"filter": "nothing pr"})).await, 400, Some("invalidFilter"));
        let all = c.post("/.search", json!({})).await.body;
        assert_eq!(all["totalResults"], 6);
        // Deleting a member drops it from the group; deleting the group is 204.
        assert_eq!(c.call(M::DELETE, &format!("/Users/{}", users[1]), None).await.status, 204);
        assert!(c.get(&format!("/Groups/{full}")).await.body.get("members").is_none());
        assert_eq!(c.call(M::DELETE, &gp, None).await.status, 204);
        assert_scim_error(&c.get(&gp).await, 404, None);
    }
}

/// Entra ID sends membership PATCHes to one group concurrently: every one answers 200 and
/// none is lost, on both backends (no `If-Match`, so fedkey re-reads and re-applies).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_member_patches_to_one_group_all_apply() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key: key.clone() };
        let mut users = Vec::new();
        for i in 0..24 {
            let r = c.post("/Users", json!({"userName": format!("u{i}@x.com")})).await;
            assert_eq!(r.status, 201, "{}", r.body);
            users.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let g = c.post("/Groups", json!({"displayName": "Crowd"})).await;
        assert_eq!(g.status, 201, "{}", g.body);
        let gid = g.body["id"].as_str().unwrap().to_owned();
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for u in &users {
            let (client, url, key) = (client.clone(), format!("{}/scim/v2/acme/Groups/{gid}", s.url), key.clone());
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                              "Operations": [{"op": "add", "path": "members", "value": [{"value": u}]}]});
            tasks.push(tokio::spawn(async move {
                client.patch(url).bearer_auth(key).json(&body).send().await.unwrap().status().as_u16()
            }));
        }
        for t in tasks {
            let st = t.await.unwrap();
            assert!(st == 200 || st == 204, "{st}");
        }
        let g = c.get(&format!("/Groups/{gid}")).await;
        let mut got: Vec<String> =
            g.body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect();
        got.sort();
        users.sort();
        assert_eq!(got, users, "{b:?}");
    }
}

/// `members.display` filters see what responses show: the display a client sent for a
/// member, else the member's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_display_filters_match_what_is_presented() {
    for b in backends() {
        let (s, key) = scim_server(b, None).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        let ann = c.post("/Users", json!({"userName": "ann@x.com"})).await.body["id"].clone();
        let bob = c.post("/Users", json!({"userName": "bob@x.com"})).await.body["id"].clone();
        let g = c
            .post(
                "/Groups",
                json!({"displayName": "Ops", "members": [{"value": ann, "display": "Ann Smith"}, {"value": bob}]}),
            )
            .await;
        assert_eq!(g.status, 201, "{}", g.body);
        let shown: Vec<&str> =
            g.body["members"].as_array().unwrap().iter().filter_map(|m| m["display"].as_str()).collect();
        assert!(shown.contains(&"Ann Smith") && shown.contains(&"bob@x.com"), "{}", g.body);
        let names = |v: Vec<Value>| v.iter().map(|g| g["displayName"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(c.filter("Groups", r#"members.display eq "ANN SMITH""#).await), ["Ops"], "{b:?}");
        assert_eq!(names(c.filter("Groups", r#"members[display eq "bob@x.com"]"#).await), ["Ops"], "{b:?}");
        assert!(c.filter("Groups", r#"members.display eq "ann@x.com""#).await.is_empty(), "{b:?}: not shown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_scopes_are_enforced_and_denials_audited() {
    for b in backends() {
        let (s, key) = scim_server(b, Some(&["users:read", "groups:write"])).await;
        let c = Scim { s: &s, dir: "acme".into(), key };
        assert_eq!(c.get("/Users").await.status, 200);
        assert_eq!(c.get("/ServiceProviderConfig").await.status, 200);
        assert_scim_error(&c.post("/Users", json!({"userName": "x"})).await, 403, None);
        assert_scim_error(&c.get("/Groups").await, 403, None);
        let g = c.post("/Groups", json!({"displayName": "g"})).await;
        assert_eq!(g.status, 201, "{}", g.body);
        let gp = format!("/Groups/{}", g.body["id"].as_str().unwrap());
        assert_scim_error(&c.get(&gp).await, 403, None);
        assert_eq!(c.patch(&gp, json!([{"op":"replace","path":"displayName","value":"h"}])).await.status, 200);
        // Only users are searched by the root search.
        let r = c.post("/.search", json!({})).await;
        assert_eq!((r.status, r.body["totalResults"].as_i64()), (200, Some(0)));
        let (_, v) =
            s.api(reqwest::Method::GET, "/api/v1/audit?action=scim.authorize&limit=100", Some(&s.token), None).await;
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 3, "{v}");
        assert!(recs.iter().all(|r| r["outcome"] == "denied" && r["actor"] == "key:acme/idp#1"));
        assert!(recs.iter().any(|r| r["details"]["missing_scope"] == "users:write"));
    }
}

#[path = "e2e/audit_stream.rs"]
mod audit_stream;
#[path = "e2e/bulk.rs"]
mod bulk;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/connections.rs"]
mod connections;
#[path = "e2e/console.rs"]
mod console;
#[path = "e2e/cursor.rs"]
mod cursor;
#[path = "e2e/dbfaults.rs"]
mod dbfaults;
#[path = "e2e/delivery.rs"]
mod delivery;
#[path = "e2e/egress.rs"]
mod egress;
#[path = "e2e/events.rs"]
mod events;
#[path = "e2e/federation.rs"]
mod federation;
#[path = "e2e/health.rs"]
mod health;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/import.rs"]
mod import;
#[path = "e2e/leaks.rs"]
mod leaks;
#[path = "e2e/migrations.rs"]
mod migrations;
#[path = "e2e/notify.rs"]
mod notify;
#[path = "e2e/oauth.rs"]
mod oauth;
#[path = "e2e/openapi.rs"]
mod openapi;
#[path = "e2e/packaging.rs"]
mod packaging;
#[path = "e2e/passwords.rs"]
mod passwords;
#[path = "e2e/policy.rs"]
mod policy;
#[path = "e2e/preauth.rs"]
mod preauth;
#[path = "e2e/provisioning.rs"]
mod provisioning;
#[path = "e2e/reconcile.rs"]
mod reconcile;
#[path = "e2e/rotation.rs"]
mod rotation;
#[path = "e2e/scim_patch.rs"]
mod scim_patch;
#[path = "e2e/ssf.rs"]
mod ssf;
#[path = "e2e/transit.rs"]
mod transit;
#[path = "e2e/twonode.rs"]
mod twonode;
