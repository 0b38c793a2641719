//! End-to-end tests of leak response on the real binary: a GitHub secret-scanning report
//! (signed with a test P-256 key pair) that names a current key, an emergency rotation
//! that supersedes a stalled one (two nodes on PostgreSQL), the pending-version setting,
//! and `fedkey scan` on files, git history and fedkey's own repository.

#[allow(unused_imports)]
use super::*;

use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Method as M;

use super::delivery::second_node;
use super::rotation::{read_key, receiver};

const KEY_ID: &str = "test-key-1";

/// A test stand-in for GitHub's signing key, and the key document fedkey reads.
struct Github {
    pair: EcdsaKeyPair,
    keys_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Github {
    fn new() -> Github {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der = pair.public_key().as_der().unwrap();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der.as_ref()));
        let dir = tempfile::tempdir().unwrap();
        let keys_file = dir.path().join("github-keys.json");
        let doc = json!({"public_keys": [{"key_identifier": KEY_ID, "key": pem, "is_current": true}]});
        std::fs::write(&keys_file, doc.to_string()).unwrap();
        Github { pair, keys_file, _dir: dir }
    }

    fn sign(&self, body: &[u8]) -> String {
        B64.encode(self.pair.sign(&SystemRandom::new(), body).unwrap().as_ref())
    }

    fn env(&self) -> [(&'static str, &str); 1] {
        [("FEDKEY_LEAK_GITHUB_KEYS_FILE", self.keys_file.to_str().unwrap())]
    }
}

/// POSTs a GitHub-format report with the given signature; (status, body text).
async fn github_post(s: &Server, body: &str, signature: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/leaks", s.url))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", KEY_ID)
        .header("Github-Public-Key-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let st = resp.status().as_u16();
    (st, resp.text().await.unwrap())
}

async fn audit(s: &Server, action: &str) -> Vec<Value> {
    let (st, v) = s.api(M::GET, &format!("/api/v1/audit?action={action}&limit=1000"), Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["records"].as_array().unwrap().clone()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(fedkey_crypto::sha256(s.as_bytes()))
}

/// A string with a fedkey prefix and shape but a wrong checksum.
fn bad_checksum(k: &str) -> String {
    let mut bad = k.to_owned();
    let last = if bad.ends_with('0') { '1' } else { '0' };
    bad.pop();
    bad.push(last);
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_leak_report_revokes_and_redelivers_within_one_engine_pass() {
    let gh = Github::new();
    for b in backends() {
        let s = Server::start_with(b, &[], &gh.env());
        let k1 = s.acme_entra();
        let file = s.data_dir().join("deliveries/peer-key");
        s.file_connector(&file);
        let body = json!([
            {"token": k1, "type": "fedkey_provisioning_key", "url": "https://github.com/octo/app/blob/abc123/.env", "source": "content"},
            {"token": bad_checksum(&k1), "type": "fedkey_provisioning_key", "url": "https://github.com/octo/app/blob/abc123/README.md", "source": "content"},
        ])
        .to_string();
        // A tampered report is refused and changes nothing.
        let tampered = body.replace("abc123/.env", "abc124/.env");
        let (st, text) = github_post(&s, &tampered, &gh.sign(body.as_bytes())).await;
        assert_eq!(st, 401, "{b:?}: {text}");
        let (st, _) = github_post(&s, &body, "MEUCIQ==").await;
        assert_eq!(st, 401, "{b:?}: a garbage signature");
        assert_eq!(s.scim_status("acme", &k1).await, 200, "{b:?}: still works after a refused report");
        assert_eq!(s.key_states("entra").await, vec![(1, "current".into())]);
        assert!(s.rotation("entra").await["active"].is_null());
        let denied = audit(&s, "leak.report").await;
        assert_eq!(denied.len(), 2, "{b:?}: {denied:?}");
        assert!(denied.iter().all(|r| r["outcome"] == "denied"), "{denied:?}");
        // The signed report: the key is revoked at once, the look-alike is not ours.
        let (st, text) = github_post(&s, &body, &gh.sign(body.as_bytes())).await;
        assert_eq!(st, 200, "{b:?}: {text}");
        assert!(!text.contains(&k1), "{b:?}: the answer never echoes a candidate: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            answer,
            json!([
                {"token_hash": sha256_hex(&k1), "token_type": "fedkey_provisioning_key", "label": "true_positive"},
                {"token_hash": sha256_hex(&bad_checksum(&k1)), "token_type": "fedkey_provisioning_key", "label": "false_positive"},
            ]),
            "{b:?}"
        );
        assert_eq!(s.scim_status("acme", &k1).await, 401, "{b:?}: the leaked key is refused at once");
        // One engine pass delivers the new version to the local connector.
        let r = s.tick().await;
        assert_eq!(r["failed"], 0, "{b:?}: {r}");
        let k2 = read_key(&file);
        assert_ne!(k2, k1);
        assert_eq!(s.scim_status("acme", &k2).await, 200, "{b:?}");
        assert_eq!(s.scim_status("acme", &k1).await, 401, "{b:?}");
        // The audit log: the report (fingerprint and location, never the key), the
        // emergency rotation that revoked it, the delivery.
        let reports: Vec<Value> =
            audit(&s, "leak.report").await.into_iter().filter(|r| r["outcome"] != "denied").collect();
        assert_eq!(reports.len(), 2, "{b:?}: {reports:?}");
        let ours = reports.iter().find(|r| r["details"]["ours"] == true).unwrap();
        assert_eq!(ours["trust"], "entra");
        assert_eq!(ours["details"]["action"], "rotated");
        assert_eq!(ours["details"]["location"], "https://github.com/octo/app/blob/abc123/.env (content)");
        assert!(ours["details"]["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
        let start = audit(&s, "rotation.start").await;
        assert_eq!(start.len(), 1, "{start:?}");
        assert_eq!(start[0]["details"]["kind"], "emergency");
        assert!(start[0]["details"]["transitions"].to_string().contains("revoked"), "{start:?}");
        assert_eq!(audit(&s, "rotation.deliver").await.len(), 1, "{b:?}");
        let all = s.api(M::GET, "/api/v1/audit?limit=1000", Some(&s.token), None).await.1.to_string();
        assert!(!all.contains(&k1) && !all.contains(&bad_checksum(&k1)), "{b:?}: no candidate in the audit log");
        assert!(!s.logs().contains(&k1), "{b:?}: no candidate in the logs");
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{b:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_leak_report_needs_an_operator_token_and_follows_the_trust_policy() {
    let s = Server::start(Backend::Sqlite);
    let k1 = s.acme_entra();
    let report = json!({"findings": [{"token": k1, "location": "pastebin.example/abc"}]});
    let (st, _) = s.api(M::POST, "/api/v1/leaks", None, Some(report.clone())).await;
    assert_eq!(st, 401, "no token");
    let auditor = s.cli_json(&["token", "create", "aud", "--role", "auditor"]);
    let (st, _) = s.api(M::POST, "/api/v1/leaks", auditor["token"].as_str(), Some(report.clone())).await;
    assert_eq!(st, 403, "an auditor may not report");
    // Policy `report`: an alert and an audit record, the key stays.
    let v = s.cli_json(&["trust", "leak-settings", "acme/entra", "--leak-policy", "report"]);
    assert_eq!(v["trust"]["leak_policy"], "report", "{v}");
    let (st, v) = s.api(M::POST, "/api/v1/leaks", Some(&s.token), Some(report.clone())).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["ours"].as_u64(), v["findings"][0]["action"].as_str()), (Some(1), Some("alerted")), "{v}");
    assert_eq!(s.scim_status("acme", &k1).await, 200);
    // Policy `revoke`: that version only, no rotation.
    s.cli_json(&["trust", "leak-settings", "acme/entra", "--leak-policy", "revoke"]);
    let (st, v) = s.api(M::POST, "/api/v1/leaks", Some(&s.token), Some(report.clone())).await;
    assert_eq!((st, v["findings"][0]["action"].as_str()), (200, Some("revoked")), "{v}");
    assert_eq!(s.scim_status("acme", &k1).await, 401);
    assert!(s.rotation("entra").await["active"].is_null());
    // Reported again: already dead, nothing more to do.
    let (_, v) = s.api(M::POST, "/api/v1/leaks", Some(&s.token), Some(report)).await;
    assert_eq!(v["findings"][0]["action"], "already_dead", "{v}");
    // Unknown and malformed candidates are not ours.
    let unknown = fedkey_crypto::token::generate(fedkey_crypto::TokenKind::Provisioning).unwrap();
    let body = json!({"findings": [{"token": unknown.expose(), "location": "x"}, {"token": "hello", "location": "y"}]});
    let (_, v) = s.api(M::POST, "/api/v1/leaks", Some(&s.token), Some(body)).await;
    assert_eq!(v["ours"], 0, "{v}");
    let (st, _) = s.api(M::POST, "/api/v1/leaks", Some(&s.token), Some(json!({"findings": []}))).await;
    assert_eq!(st, 400);
    // Without a configured key document, GitHub-format reports are refused.
    let (st, _) = github_post(&s, "[]", "MEUCIQ==").await;
    assert_eq!(st, 401);
    // An unknown setting is refused with a clear error.
    let out = s.cli(&["trust", "leak-settings", "acme/entra", "--pending-auth", "sometimes"]);
    assert!(!out.status.success());
}

/// A rotation stalls on a connector that is down; an emergency rotation still goes through:
/// the stalled rotation is cancelled and its pending version revoked, every old version is
/// refused at once (on a second node within the auth-cache time), doctor is critical until
/// the new version is delivered, and the new key works after delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_rotation_supersedes_a_stalled_rotation() {
    for b in backends() {
        // The peer's webhook answers 503 to the first delivery attempt, then 200.
        let peer = receiver(1, 503).await;
        let s = Server::start(b);
        let k1 = s.acme_entra();
        let spec = json!({"kind": "webhook", "url": format!("{}/hook", peer.url)}).to_string();
        let creds = s.dir.path().join("hook-creds.json");
        std::fs::write(&creds, json!({"kind": "webhook", "signing_secret": "hook-secret"}).to_string()).unwrap();
        let creds = creds.to_str().unwrap();
        s.cli_json(&["connector", "add", "acme/entra", "--name", "hook", "--spec", &spec, "--credentials-file", creds]);
        let node_b = (b == Backend::Postgres).then(|| second_node(&s, "node-b"));
        if let Some(nb) = &node_b {
            assert_eq!(nb.scim_status("acme", &k1).await, 200, "node b has the key cached");
        }
        s.cli_json(&["rotation", "start", "acme/entra"]);
        assert_eq!(s.tick().await["failed"], 1, "{b:?}: the connector is down");
        let stalled = s.rotation("entra").await;
        assert_eq!(stalled["active"]["step"], "set", "{stalled}");
        let staged: Value = serde_json::from_str(&peer.seen.lock().unwrap()[0].1).unwrap();
        let k2 = staged["key"].as_str().unwrap().to_owned();
        assert_eq!(
            s.scim_status("acme", &k2).await,
            200,
            "{b:?}: a staged version authenticates (pending_auth staged)"
        );
        // The emergency rotation is not refused by the stalled one.
        let v = s.cli_json(&["rotation", "start", "acme/entra", "--emergency"]);
        assert_eq!(v["rotation"]["version"], 3, "{v}");
        let t0 = Instant::now();
        assert_eq!(s.scim_status("acme", &k1).await, 401, "{b:?}: the old key is refused at once");
        assert_eq!(s.scim_status("acme", &k2).await, 401, "{b:?}: the stalled rotation's pending version too");
        assert_eq!(
            s.key_states("entra").await,
            vec![(1, "revoked".into()), (2, "revoked".into()), (3, "current".into())],
            "{b:?}"
        );
        let rot = s.rotation("entra").await;
        assert_eq!(rot["active"]["kind"], "emergency", "{rot}");
        let old = rot["history"].as_array().unwrap().iter().find(|r| r["version"] == 2).unwrap().clone();
        assert_eq!(
            (old["step"].as_str(), old["last_error"].as_str()),
            (Some("canceled"), Some("superseded by an emergency rotation"))
        );
        if let Some(nb) = &node_b {
            // The other node refuses it within its auth-cache time (5s by default).
            let mut status = 200;
            while t0.elapsed() < Duration::from_secs(8) {
                status = nb.scim_status("acme", &k1).await;
                if status == 401 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(status, 401, "node b still accepts the old key after {:?}", t0.elapsed());
            assert!(t0.elapsed() <= Duration::from_secs(6), "node b refused it only after {:?}", t0.elapsed());
            eprintln!("node b refused the revoked key {:?} after the emergency rotation", t0.elapsed());
        }
        // Critical until every connector confirmed the new version.
        let out = s.cli(&["doctor", "--output", "json"]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("emergency_rotation_undelivered"));
        let r = s.tick().await;
        assert_eq!(r["failed"], 0, "{b:?}: the peer is back: {r}");
        let delivered: Value = serde_json::from_str(&peer.seen.lock().unwrap().last().unwrap().1).unwrap();
        let k3 = delivered["key"].as_str().unwrap().to_owned();
        assert_eq!(delivered["version"], 3);
        assert_eq!(s.scim_status("acme", &k3).await, 200, "{b:?}: the new key works after delivery");
        if let Some(nb) = &node_b {
            assert_eq!(nb.scim_status("acme", &k3).await, 200);
        }
        let out = s.cli(&["doctor", "--output", "json"]);
        assert!(!String::from_utf8_lossy(&out.stdout).contains("emergency_rotation_undelivered"));
    }
}

/// `pending_auth staged` (the default): a pending version authenticates from the moment it
/// is staged, even while a connector has not confirmed it. `delivered`: only once every
/// connector has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_version_authenticates_per_the_trust_setting() {
    for b in backends() {
        // Two connectors: a file that works, a webhook that fails twice.
        let peer = receiver(2, 503).await;
        let s = Server::start(b);
        s.acme_entra();
        let file = s.data_dir().join("deliveries/peer-key");
        s.file_connector(&file);
        let spec = json!({"kind": "webhook", "url": format!("{}/hook", peer.url)}).to_string();
        let creds = s.dir.path().join("hook-creds.json");
        std::fs::write(&creds, json!({"kind": "webhook", "signing_secret": "hook-secret"}).to_string()).unwrap();
        let creds = creds.to_str().unwrap();
        s.cli_json(&["connector", "add", "acme/entra", "--name", "hook", "--spec", &spec, "--credentials-file", creds]);
        s.cli_json(&["rotation", "policy", "set", "acme/entra", "--validation", "none", "--period", "30d"]);
        s.cli_json(&["rotation", "start", "acme/entra"]);
        assert_eq!(s.tick().await["failed"], 1);
        let k2 = read_key(&file);
        assert_eq!(
            s.scim_status("acme", &k2).await,
            200,
            "{b:?}: staged: authenticates before every connector confirmed"
        );
        s.cli_json(&["rotation", "cancel", "acme/entra", "--reason", "test"]);
        let v = s.cli_json(&["trust", "leak-settings", "acme/entra", "--pending-auth", "delivered"]);
        assert_eq!(
            (v["trust"]["pending_auth"].as_str(), v["trust"]["leak_policy"].as_str()),
            (Some("delivered"), Some("rotate"))
        );
        s.cli_json(&["rotation", "start", "acme/entra"]);
        assert_eq!(s.tick().await["failed"], 1);
        let k3 = read_key(&file);
        assert_ne!(k3, k2);
        assert_eq!(s.key_states("entra").await.last(), Some(&(3, "pending".to_owned())));
        assert_eq!(s.scim_status("acme", &k3).await, 401, "{b:?}: delivered: not before every connector confirmed");
        let denied = audit(&s, "key.authenticate").await;
        assert!(denied.iter().any(|r| r["details"]["reason"] == "key_not_yet_delivered"), "{b:?}");
        s.cli_json(&["rotation", "retry", "acme/entra"]);
        let r = s.tick().await;
        assert_eq!(r["finished"], 1, "{b:?}: {r}");
        assert_eq!(s.scim_status("acme", &k3).await, 200, "{b:?}: delivered everywhere, then it authenticates");
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn scan(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("scan").args(args).args(["--output", "json"]).env_remove("FEDKEY_TOKEN").env_remove("FEDKEY_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), serde_json::from_str(&stdout).unwrap_or(Value::Null), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_planted_keys_in_files_and_git_history() {
    let s = Server::start(Backend::Sqlite);
    let k1 = s.acme_entra();
    let admin = fedkey_crypto::token::generate(fedkey_crypto::TokenKind::Admin).unwrap();
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q"]);
    // A key committed, then removed: only the history has it.
    std::fs::write(r.join("config.env"), format!("SCIM_TOKEN={k1}\n")).unwrap();
    git(r, &["add", "."]);
    git(r, &["commit", "-qm", "add config"]);
    std::fs::write(r.join("config.env"), "SCIM_TOKEN=from-the-vault\n").unwrap();
    git(r, &["commit", "-qam", "remove the key"]);
    // A token in a file of the work tree, and a look-alike with a bad checksum.
    let bad = bad_checksum(&k1);
    std::fs::create_dir(r.join("notes")).unwrap();
    std::fs::write(r.join("notes/todo.md"), format!("line one\nadmin: {}\nnot one: {bad}\n", admin.expose())).unwrap();
    let dir = r.to_str().unwrap();

    let (code, v, text) = scan(&[dir], &[]);
    assert_eq!(code, Some(1), "a find exits non-zero: {text}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["findings"][0]["kind"], "admin_token");
    assert!(v["findings"][0]["location"].as_str().unwrap().ends_with("notes/todo.md:2"), "{v}");
    assert_eq!(v["ignored_bad_checksum"], 1, "{v}");
    assert!(!text.contains(admin.expose()) && !text.contains(&k1), "never the whole token: {text}");

    let (code, v, text) = scan(&["--git", dir], &[]);
    assert_eq!(code, Some(1));
    let found: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["location"].as_str().unwrap()).collect();
    assert_eq!(found.len(), 2, "{v}");
    assert!(found.iter().any(|l| l.starts_with("git ") && l.ends_with(":config.env")), "{found:?}");
    assert!(!text.contains(&k1));

    let (code, v, _) = scan(&["--exclude", "notes", dir], &[]);
    assert_eq!((code, v["findings"].as_array().map(Vec::len)), (Some(0), Some(0)), "nothing left: exit 0: {v}");

    // `--report`: the server matches the committed key and rotates it (its default policy).
    let env = [("FEDKEY_TOKEN", s.token.as_str())];
    let (code, v, text) = scan(&["--git", "--report", &s.url, dir], &env);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(v["reported"]["ours"], 1, "{v}");
    assert_eq!(s.scim_status("acme", &k1).await, 401, "the reported key is revoked");
    assert_eq!(s.key_states("entra").await, vec![(1, "revoked".into()), (2, "current".into())]);
    assert!(!s.logs().contains(&k1));
}

/// fedkey's own repository (work tree and every commit), test fixtures and build output
/// excepted, holds no fedkey token.
#[test]
fn scan_of_fedkeys_own_repository_finds_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap();
    let dir = root.to_str().unwrap();
    let (code, v, text) =
        scan(&["--git", "--exclude", "/target/", "--exclude", "/.venv", "--exclude", "fixtures", dir], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["findings"], json!([]), "{v}");
}
