//! End-to-end tests of the controls before authentication: the per-source limit (429 with
//! `Retry-After`, before any key lookup or audit record), `trusted_proxies` with
//! `X-Forwarded-For`, and failed authentications aggregated in the audit log.

#[allow(unused_imports)]
use super::*;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method as M;

const FLOOD_SOURCE: &str = "198.51.100.66";

/// A server with directory `acme` and inbound trust `idp`; returns it and the trust's key.
async fn setup(b: Backend, env: &[(&str, &str)]) -> (Server, String) {
    let s = Server::start_with(b, &[], env);
    let t = Some(s.token.as_str());
    let (st, v) = s.api(M::POST, "/api/v1/directories", t, Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 201, "{v}");
    let trust = json!({"name": "idp", "direction": "inbound"});
    let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts", t, Some(trust)).await;
    assert_eq!(st, 201, "{v}");
    (s, v["key"].as_str().unwrap().to_owned())
}

/// Every audit record with `action`, paging through the admin audit API.
async fn records(s: &Server, action: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/audit?action={action}&limit=1000&after={after}");
        let (st, v) = s.api(M::GET, &path, Some(&s.token), None).await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["records"].as_array().unwrap().iter().cloned());
        match v["next_after"].as_i64() {
            Some(n) => after = n,
            None => return out,
        }
    }
}

/// One request with an optional `X-Forwarded-For`; status, `Retry-After`, content type, body.
async fn send(
    c: &reqwest::Client,
    method: M,
    url: &str,
    key: &str,
    xff: Option<&str>,
) -> (u16, Option<String>, String, Value) {
    let mut req = c.request(method, url).bearer_auth(key);
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let header = |n: &str| r.headers().get(n).map(|h| h.to_str().unwrap().to_owned());
    let (retry, ct) = (header("retry-after"), header("content-type").unwrap_or_default());
    let text = r.text().await.unwrap();
    (status, retry, ct, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `conns` connections each sending `per_conn` junk keys (50 distinct ones) back to back,
/// forwarded for `FLOOD_SOURCE`; counts the answers by status.
async fn flood(url: &str, conns: usize, per_conn: usize) -> (BTreeMap<u16, usize>, Duration) {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..conns {
        let url = format!("{url}/scim/v2/acme/Users");
        set.spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut seen = BTreeMap::new();
            for i in 0..per_conn {
                let junk = format!("fkp_junk{}", (c * per_conn + i) % 50);
                let r =
                    client.get(&url).bearer_auth(junk).header("x-forwarded-for", FLOOD_SOURCE).send().await.unwrap();
                *seen.entry(r.status().as_u16()).or_insert(0) += 1;
            }
            seen
        });
    }
    let mut all = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        for (k, v) in r.unwrap() {
            *all.entry(k).or_insert(0) += v;
        }
    }
    (all, started.elapsed())
}

/// A valid-key client on one connection: requests until `stop` (or `limit` requests);
/// returns each latency in milliseconds.
async fn valid_client(url: String, key: String, stop: Arc<AtomicBool>, limit: usize) -> Vec<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let url = format!("{url}/scim/v2/acme/Users");
    let mut lat = Vec::new();
    while !stop.load(Ordering::SeqCst) && lat.len() < limit {
        let t = Instant::now();
        let r = client.get(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let _ = r.bytes().await;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 99).div_ceil(100).max(1) - 1]
}

fn sum_counts(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum()
}

/// A flood of 3,000 junk keys from one client leaves 10 `key.authenticate` records and one
/// `auth.failure_summary` whose counts add up, while a valid-key client keeps being served
/// (its p99 is printed); a window cut short by shutdown is summarized too; the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_key_flood_keeps_audit_growth_bounded() {
    for b in backends() {
        let env = [("FEDKEY_TRUSTED_PROXIES", "127.0.0.1/32"), ("FEDKEY_FAILED_AUTH_WINDOW", "1h")];
        let (mut s, key) = setup(b, &env).await;
        let stop = Arc::new(AtomicBool::new(false));
        let alone = valid_client(s.url.clone(), key.clone(), stop.clone(), 300).await;
        let during = tokio::spawn(valid_client(s.url.clone(), key.clone(), stop.clone(), usize::MAX));
        let (statuses, took) = flood(&s.url, 4, 750).await;
        stop.store(true, Ordering::SeqCst);
        let during = during.await.unwrap();
        // The default per-source limit (burst 4,000) lets the whole flood reach authentication.
        assert_eq!(statuses, BTreeMap::from([(401, 3000)]), "{statuses:?}");
        eprintln!(
            "[{b:?}] valid-key client p99: {:.2} ms alone ({} requests), {:.2} ms during a 3,000-request junk-key flood \
             on 4 connections ({} requests; flood {:.0} req/s)",
            p99(alone.clone()),
            alone.len(),
            p99(during.clone()),
            during.len(),
            3000.0 / took.as_secs_f64()
        );

        // The first 10 failures of the window are recorded one each; successes all are.
        let auths = records(&s, "key.authenticate").await;
        let denied: Vec<&Value> = auths.iter().filter(|r| r["outcome"] == "denied").collect();
        assert_eq!(denied.len(), 10, "denied key.authenticate records");
        assert!(denied.iter().all(|r| r["source"] == FLOOD_SOURCE && r["details"]["presented"].is_string()));
        let ok = auths.iter().filter(|r| r["outcome"] == "success").count();
        assert_eq!(ok, alone.len() + during.len());

        // The rest are summarized once the window has closed, not before.
        assert!(records(&s, "auth.failure_summary").await.is_empty());
        s.advance("61m").await;
        let mut summaries = Vec::new();
        for _ in 0..100 {
            summaries = records(&s, "auth.failure_summary").await;
            if !summaries.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        let (r, d) = (&summaries[0], &summaries[0]["details"]);
        assert_eq!((r["source"].as_str(), r["outcome"].as_str()), (Some(FLOOD_SOURCE), Some("denied")));
        assert_eq!((d["action"].as_str(), d["closed_by"].as_str()), (Some("key.authenticate"), Some("window")));
        assert_eq!((d["recorded"].as_u64(), d["summarized"].as_u64()), (Some(10), Some(2990)), "{d}");
        assert_eq!(sum_counts(&d["reasons"]), 2990, "{d}");
        let listed = d["credentials"].as_object().unwrap();
        assert_eq!(listed.len(), 20, "capped list of distinct fingerprints: {d}");
        assert!(listed.keys().all(|k| k.starts_with("hmac-sha256:")), "{d}");
        assert_eq!(sum_counts(&d["credentials"]) + d["credentials_other"].as_u64().unwrap(), 2990, "{d}");
        let all = s.api(M::GET, "/api/v1/audit?limit=1000", Some(&s.token), None).await.1.to_string();
        assert!(!all.contains("fkp_junk"), "no presented value in the log");
        let v = s.cli_json(&["audit", "verify"]);
        assert_eq!(v["ok"], true, "{v}");

        // A new window: 10 recorded, 5 counted, then a clean shutdown writes their summary.
        let c = reqwest::Client::new();
        let url = format!("{}/scim/v2/acme/Users", s.url);
        for _ in 0..15 {
            assert_eq!(send(&c, M::GET, &url, "fkp_junk", Some(FLOOD_SOURCE)).await.0, 401);
        }
        let pid = s.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(s.child.wait().unwrap().success());
        let out = s.cli(&["audit", "export", "--offline", "--action", "auth.failure_summary"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let d = &lines[1]["details"];
        assert_eq!(
            (d["closed_by"].as_str(), d["recorded"].as_u64(), d["summarized"].as_u64()),
            (Some("shutdown"), Some(10), Some(5))
        );
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Past its burst a source is answered 429 with `Retry-After` before authentication (a
/// SCIM Error on /scim, the admin JSON error on /api and wrapped links), and nothing is
/// audited for it. Behind a trusted proxy the limit is per forwarded client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_limit_answers_429_per_forwarded_client() {
    for b in backends() {
        let env = [
            ("FEDKEY_SOURCE_RATE_LIMIT", "5"),
            ("FEDKEY_SOURCE_BURST", "10"),
            ("FEDKEY_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("FEDKEY_FAILED_AUTH_RECORDS", "1000"),
        ];
        let (s, key) = setup(b, &env).await;
        let c = reqwest::Client::new();
        let scim = format!("{}/scim/v2/acme/Users", s.url);
        let (a, spoofed_b) = ("198.51.100.1", "198.51.100.1, 198.51.100.2");

        // Client A: 40 junk keys back to back. At most the burst plus the refill while they
        // ran get through to authentication (401); the rest are refused before it.
        let started = Instant::now();
        let (mut unauthorized, mut limited) = (0u64, 0u64);
        for _ in 0..40 {
            let (st, retry, ct, body) = send(&c, M::GET, &scim, "fkp_junk", Some(a)).await;
            match st {
                401 => unauthorized += 1,
                429 => {
                    limited += 1;
                    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
                    assert!((1..=60).contains(&secs), "{secs}");
                    assert!(ct.starts_with("application/scim+json"), "{ct}");
                    assert_eq!((body["status"].as_str(), body["schemas"][0].as_str()), (Some("429"), Some(ERROR_URN)));
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        let refill = (started.elapsed().as_secs_f64() * 5.0).ceil() as u64;
        assert!(limited >= 1 && unauthorized <= 10 + refill, "401: {unauthorized}, 429: {limited}, refill {refill}");
        // A valid key from A is refused too (the limit is before authentication), and so are
        // the admin API and wrapped links, with the admin JSON error.
        assert_eq!(send(&c, M::GET, &scim, &key, Some(a)).await.0, 429);
        for (m, path) in [(M::GET, "/api/v1/directories"), (M::POST, "/unwrap/nothing")] {
            let (st, retry, _, body) = send(&c, m, &format!("{}{path}", s.url), &s.token, Some(a)).await;
            assert_eq!((st, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{path}: {body}");
            assert!(retry.is_some(), "{path}");
        }
        let health = c.get(format!("{}/healthz", s.url)).header("x-forwarded-for", a).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200, "health is not limited");

        // B has its own bucket: its proxy appended its address after a spoofed A.
        assert_eq!(send(&c, M::GET, &scim, "fkp_junk", Some(spoofed_b)).await.0, 401);
        assert_eq!(send(&c, M::GET, &scim, &key, Some(spoofed_b)).await.0, 200);

        // Only requests that reached authentication are audited, under the forwarded address.
        let auths = records(&s, "key.authenticate").await;
        let from = |src: &str, outcome: &str| {
            auths.iter().filter(|r| r["source"] == src && r["outcome"] == outcome).count() as u64
        };
        assert_eq!(from(a, "denied"), unauthorized);
        assert_eq!(from(a, "success"), 0);
        assert_eq!((from("198.51.100.2", "denied"), from("198.51.100.2", "success")), (1, 1));
        let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
        assert!(metrics.contains("fedkey_source_rate_limited_total{api=\"scim\"}"), "{metrics}");
        assert!(metrics.contains("fedkey_source_rate_limited_total{api=\"admin\"}"), "{metrics}");
    }
}
