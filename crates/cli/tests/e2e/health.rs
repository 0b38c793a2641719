//! The health model and the metrics, on the real binary:
//!
//! - a fresh server's `/metrics` follows the Prometheus conventions: every series in
//!   docs/metrics.md is on the page with HELP and TYPE (and nothing undocumented is), the
//!   page parses with the Prometheus client's parser, latencies are histograms;
//! - the alert rules and the dashboard in deploy/monitoring reference documented series only;
//! - a sync target answering 401: after one dispatcher round `fedkey doctor` exits non-zero
//!   naming the target, `/metrics` shows its dead letter, and the log says why at WARN.
//!
//! The parser runs in the `.venv-conformance` interpreter (prometheus-client, PyYAML) that
//! scripts/test.sh creates, or the one `FEDKEY_CONFORMANCE_PYTHON` names.

use super::*;

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method as M;

use super::provisioning::{directory_with_inbound, outbound_trust, user_body};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// The venv interpreter with the Prometheus parser; `None` (test skipped) outside CI.
fn venv_python() -> Option<PathBuf> {
    let p = match std::env::var("FEDKEY_CONFORMANCE_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => repo_file(".venv-conformance/bin/python"),
    };
    let ok = p.exists()
        && Command::new(&p).args(["-c", "import prometheus_client, yaml"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with prometheus-client and PyYAML at {}: run scripts/test.sh",
            p.display()
        );
        eprintln!("*** SKIPPED: no .venv-conformance with prometheus-client (run scripts/test.sh) ***");
        return None;
    }
    Some(p)
}

fn check_py(python: &Path, args: &[&str]) -> std::process::Output {
    Command::new(python).arg(repo_file("tools/monitoring/check.py")).args(args).output().unwrap()
}

/// `(name, type)` of every series in docs/metrics.md's tables.
fn documented_series() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("docs/metrics.md")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3
            && let Some(name) = cells[1].strip_prefix("`fedkey_").and_then(|n| n.strip_suffix('`'))
        {
            out.push((format!("fedkey_{name}"), cells[2].to_owned()));
        }
    }
    out
}

pub(crate) async fn scrape(s: &Server) -> String {
    let resp = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

/// The value of the sample `line_prefix` (name and labels exactly as rendered).
pub(crate) fn sample(page: &str, line_prefix: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_server_metrics_follow_prometheus_conventions() {
    let Some(python) = venv_python() else { return };
    let documented = documented_series();
    assert!(documented.len() >= 30, "docs/metrics.md lists the series: {documented:?}");
    for b in backends() {
        let s = Server::start(b);
        let page = scrape(&s).await;

        // Every documented series is there with HELP and TYPE, and nothing else is.
        let typed: BTreeMap<&str, &str> =
            page.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect();
        for (name, kind) in &documented {
            assert!(page.contains(&format!("# HELP {name} ")), "{b:?}: no HELP for {name}:\n{page}");
            assert_eq!(typed.get(name.as_str()), Some(&kind.as_str()), "{b:?}: TYPE of {name}");
        }
        let served: BTreeSet<&str> = typed.keys().copied().collect();
        let listed: BTreeSet<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(served, listed, "{b:?}: docs/metrics.md must list exactly the served series");
        assert!(!typed.values().any(|t| *t == "summary"), "latencies are histograms");

        // Bounded label sets exist from start-up, at zero.
        for line in [
            r#"fedkey_auth_failures_total{api="scim",reason="key_revoked"}"#,
            r#"fedkey_rotations_total{result="failed"}"#,
            r#"fedkey_connector_deliveries_total{kind="webhook",result="failure"}"#,
            r#"fedkey_scim_requests_total{method="GET",status="2xx"}"#,
            r#"fedkey_health_findings{severity="critical"}"#,
            "fedkey_outbox_pending",
            "fedkey_health_check_success",
        ] {
            let want = if line == "fedkey_health_check_success" { 1.0 } else { 0.0 };
            assert_eq!(sample(&page, line), Some(want), "{b:?}: {line} on a fresh server:\n{page}");
        }
        assert!(page.contains(r#"fedkey_audit_append_seconds_bucket{le="+Inf"}"#), "{b:?}: histogram buckets");
        assert!(sample(&page, "fedkey_audit_chain_head").is_some_and(|v| v >= 1.0), "init wrote records");

        // The Prometheus client's parser reads the page, with the same families and types.
        let file = s.dir.path().join("metrics.txt");
        std::fs::write(&file, &page).unwrap();
        let out = check_py(&python, &["parse", file.to_str().unwrap()]);
        assert!(out.status.success(), "{b:?}: the parser refused the page: {}", String::from_utf8_lossy(&out.stderr));
        let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
        for (name, kind) in &documented {
            // The client names a counter family without its `_total`.
            let family = if kind == "counter" { name.strip_suffix("_total").unwrap_or(name) } else { name };
            assert_eq!(parsed[family]["type"], kind.as_str(), "{b:?}: {name} as parsed: {}", parsed[family]);
            assert!(parsed[family]["help"].as_str().is_some_and(|h| !h.is_empty()), "{b:?}: {name}");
        }

        // metrics_token still guards the page when set (checked in connections.rs too).
        assert_eq!(s.api(M::GET, "/api/v1/health", None, None).await.0, 401, "the health report needs a token");
        let (st, v) = s.api(M::GET, "/api/v1/health", Some(&s.token), None).await;
        assert_eq!((st, v["status"].as_str()), (200, Some("ok")), "{b:?}: a fresh server is healthy: {v}");
        assert_eq!(v["audit"]["writable"], true, "{v}");
        let (st, v) =
            s.api(M::POST, "/api/v1/tokens", Some(&s.token), Some(json!({"name": "aud", "role": "auditor"}))).await;
        assert_eq!(st, 201, "{v}");
        let auditor = v["token"].as_str().unwrap().to_owned();
        let (st, v) = s.api(M::GET, "/api/v1/health", Some(&auditor), None).await;
        assert_eq!((st, v["trusts_checked"].as_u64()), (200, Some(0)), "{b:?}: an auditor reads the report: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_files_reference_documented_series() {
    let Some(python) = venv_python() else { return };
    let docs = repo_file("docs/metrics.md");
    let rules = repo_file("deploy/monitoring/fedkey-alerts.yaml");
    let dash = repo_file("deploy/monitoring/fedkey-dashboard.json");
    let args = |r: &Path| {
        vec!["refs".to_owned(), docs.display().to_string(), r.display().to_string(), dash.display().to_string()]
    };
    let run = |a: Vec<String>| check_py(&python, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(&rules));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["rules"].as_u64().unwrap() >= 10 && v["panels"].as_u64().unwrap() >= 10, "{v}");

    // The check can fail: an undocumented series, and a file that is not YAML.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&rules).unwrap();
    std::fs::write(&bad, text.replace("fedkey_dead_letters)", "fedkey_dead_letterz)")).unwrap();
    let out = run(args(&bad));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fedkey_dead_letterz is not a documented series"));
    std::fs::write(&bad, "groups: [unclosed").unwrap();
    assert!(!run(args(&bad)).status.success(), "a broken YAML file fails the check");
}

/// A SCIM target that refuses every request with 401 (wrong credentials).
pub(crate) async fn refusing_target() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::CONTENT_TYPE, "application/scim+json")],
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"invalid token"}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/scim/v2", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_401_is_seen_by_doctor_and_metrics() {
    for b in backends() {
        let s = Server::start(b);
        let hr = directory_with_inbound(&s, "acme", "hr").await;
        outbound_trust(&s, "acme", "app", "app-key-that-the-target-refuses").await;
        let (url, _target) = refusing_target().await;
        s.set_target("acme/app", &url, None, &[]);
        // Healthy before anything is sent (information findings only).
        let out = s.cli(&["doctor"]);
        assert_eq!(out.status.code(), Some(0), "{b:?}: {}", String::from_utf8_lossy(&out.stdout));

        let acme = Scim { s: &s, dir: "acme".into(), key: hr };
        let alice = acme.post("/Users", user_body("alice@acme.test", "Engineer")).await;
        assert_eq!(alice.status, 201, "{}", alice.body);

        // One dispatcher round: the 401 cannot be fixed by retrying, so a dead letter at once.
        let r = s.sync_tick().await;
        assert_eq!(r["dead_letters"], 1, "{b:?}: {r}");

        // doctor: critical (exit 2), naming the target and the cause.
        let out = s.cli(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{b:?}: {text}");
        assert!(text.contains("acme/app") && text.contains("sync_dead_letters"), "{b:?}: {text}");
        let out = s.cli(&["doctor", "--output", "json"]);
        assert_eq!(out.status.code(), Some(2));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "sync_dead_letters")
            .unwrap_or_else(|| panic!("{b:?}: no sync_dead_letters finding: {v}"))
            .clone();
        assert_eq!((f["severity"].as_str(), f["object"].as_str()), (Some("critical"), Some("acme/app")), "{f}");
        let msg = f["message"].as_str().unwrap();
        assert!(msg.contains("alice@acme.test") && msg.contains("401"), "{b:?}: the cause is readable: {msg}");
        let t = v["targets"].as_array().unwrap().iter().find(|t| t["target"] == "acme/app").unwrap();
        assert_eq!(t["dead_letters"], 1, "{t}");
        assert!(t["last_error"].as_str().is_some_and(|e| e.contains("401")), "{t}");
        // `sync status` shows the failing target and why (the circuit stays closed: no outage).
        let st = s.sync_status("acme").await;
        let row = &st["targets"][0];
        assert_eq!((row["circuit"].as_str(), row["dead_letters"].as_u64()), (Some("failing"), Some(1)), "{st}");
        assert!(row["last_error"].as_str().is_some_and(|e| e.contains("401")), "{st}");

        // /metrics: the dead letter, for that target.
        let page = scrape(&s).await;
        assert_eq!(sample(&page, r#"fedkey_dead_letters{target="acme/app"}"#), Some(1.0), "{b:?}:\n{page}");
        assert!(sample(&page, r#"fedkey_health_findings{severity="critical"}"#).is_some_and(|n| n >= 1.0));
        assert_eq!(sample(&page, r#"fedkey_scim_requests_total{method="POST",status="2xx"}"#), Some(1.0));
        assert!(!page.contains("app-key-that-the-target-refuses"), "no secret in the metrics");

        // The log says it at WARN, with the target, the object and the cause.
        let logs = s.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("sync dead letter"))
            .unwrap_or_else(|| panic!("{b:?}: no dead-letter log line:\n{logs}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("acme/app") && line.contains("alice@acme.test") && line.contains("401"), "{line}");
        assert!(!logs.contains("app-key-that-the-target-refuses"), "no secret in the logs");

        // Once the dead letter is dealt with, the target is still failing (a warning, exit 1)
        // until a delivery succeeds.
        s.cli_json(&["sync", "dead-letters", "discard", "acme"]);
        let out = s.cli(&["doctor"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{b:?}: {text}");
        assert!(text.contains("sync_target_failing") && !text.contains("sync_dead_letters"), "{b:?}: {text}");
    }
}
