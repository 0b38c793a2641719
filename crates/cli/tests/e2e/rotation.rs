//! End-to-end tests of the rotation engine on the real binary: scheduled rotations
//! delivered by a connector and validated by the peer's first use, crashes (SIGKILL) at
//! every step, failing connectors with backoff and signed alerts, emergency rotations,
//! wrapped links. Engine passes are triggered through the test endpoint; time moves
//! through the test clock.

#[allow(unused_imports)]
use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method as M;

/// A local HTTP receiver: answers `status` to the first `fail_first` requests, then 200,
/// and keeps every request's headers and body.
pub(super) struct Receiver {
    pub(super) url: String,
    pub(super) seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    _task: tokio::task::JoinHandle<()>,
}

pub(super) async fn receiver(fail_first: usize, status: u16) -> Receiver {
    let seen: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (seen.clone(), count.clone());
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let (seen, count) = (s2.clone(), c2.clone());
        async move {
            seen.lock().unwrap().push((headers, body));
            let n = count.fetch_add(1, Ordering::SeqCst);
            let code = if n < fail_first { status } else { 200 };
            (axum::http::StatusCode::from_u16(code).unwrap(), "{}")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { url, seen, _task: task }
}

impl Receiver {
    /// The requests received once one satisfies `pred`, waiting up to 10 s: notifications
    /// are sent in the background, so they arrive shortly after what raised them.
    pub(super) async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<(axum::http::HeaderMap, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.iter().any(|(_, b)| pred(b)) {
                return seen;
            }
            assert!(std::time::Instant::now() < deadline, "no {what} arrived within 10 s: {seen:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Server {
    pub(super) async fn tick(&self) -> Value {
        let (st, v) = self.api(M::POST, "/api/v1/test/engine/tick", Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v["report"].clone()
    }

    pub(super) async fn rotation(&self, trust: &str) -> Value {
        let (st, v) = self
            .api(M::GET, &format!("/api/v1/directories/acme/trusts/{trust}/rotation"), Some(&self.token), None)
            .await;
        assert_eq!(st, 200, "{v}");
        v
    }

    pub(super) async fn key_states(&self, trust: &str) -> Vec<(i64, String)> {
        let (st, v) =
            self.api(M::GET, &format!("/api/v1/directories/acme/trusts/{trust}/keys"), Some(&self.token), None).await;
        assert_eq!(st, 200, "{v}");
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["version"].as_i64().unwrap(), k["state"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// Creates directory `acme` and inbound trust `entra`; returns its first key.
    pub(super) fn acme_entra(&self) -> String {
        self.cli_json(&["directory", "create", "acme"]);
        let v = self.cli_json(&["trust", "create", "--directory", "acme", "--name", "entra", "--direction", "inbound"]);
        v["key"].as_str().unwrap().to_owned()
    }

    pub(super) fn file_connector(&self, path: &Path) {
        let spec = json!({"kind": "file", "path": path}).to_string();
        self.cli_json(&["connector", "add", "acme/entra", "--name", "sidecar", "--spec", &spec]);
    }
}

/// Whether `sig` is the fedkey webhook signature of `body` at `ts` with `secret`.
pub(super) fn signed_by(secret: &[u8], sig: &str, ts: i64, body: &str) -> bool {
    let at = fedkey_core::Timestamp(ts * 1_000_000);
    fedkey_connectors::webhook::verify(secret, sig, ts, body.as_bytes(), at, std::time::Duration::from_secs(300))
}

pub(super) fn read_key(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_is_delivered_validated_and_promoted() {
    for b in backends() {
        let s = Server::start(b);
        let k1 = s.acme_entra();
        let file = s.data_dir().join("deliveries/peer-key");
        s.file_connector(&file);
        s.cli_json(&[
            "rotation",
            "policy",
            "set",
            "acme/entra",
            "--period",
            "1h",
            "--overlap",
            "10m",
            "--validation",
            "first_use",
        ]);
        assert_eq!(s.tick().await["started"], 0, "nothing is due before the period");
        s.advance("1h").await;
        let r = s.tick().await;
        assert_eq!(r["started"], 1, "{r}");
        let k2 = read_key(&file);
        assert_ne!(k2, k1);
        let rot = s.rotation("entra").await;
        assert_eq!(rot["active"]["step"], "test", "{rot}");
        assert_eq!(s.key_states("entra").await, vec![(1, "current".into()), (2, "pending".into())]);
        // Both keys work while the peer switches over.
        assert_eq!(s.scim_status("acme", &k1).await, 200);
        assert_eq!(s.tick().await["finished"], 0, "not promoted before the peer used the new key");
        assert_eq!(s.scim_status("acme", &k2).await, 200);
        // The engine looks again a poll interval later.
        s.advance("5s").await;
        assert_eq!(s.tick().await["finished"], 1);
        assert_eq!(s.key_states("entra").await, vec![(1, "previous".into()), (2, "current".into())]);
        assert_eq!(s.scim_status("acme", &k1).await, 200, "old key valid during the overlap");
        s.advance("11m").await;
        assert_eq!(s.scim_status("acme", &k1).await, 401);
        assert_eq!(s.scim_status("acme", &k2).await, 200);
        // The next scheduled rotation is one period after this one started.
        let pol = s.cli_json(&["rotation", "policy", "show", "acme/entra"]);
        assert!(pol["policy"]["next_rotation_at"].is_string(), "{pol}");
        let out = s.cli(&["doctor"]);
        assert!(out.status.success(), "doctor: {}", String::from_utf8_lossy(&out.stdout));
        let out = s.cli(&["audit", "verify", "--offline"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The process is SIGKILLed at each step of a rotation in turn; after a restart the
/// rotation completes, exactly one version is current, and the key the peer received
/// keeps working throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_resumes_after_a_crash_at_every_step() {
    for b in backends() {
        for point in ["after-create", "after-deliver", "after-set", "after-test", "after-finish"] {
            let env = [("FEDKEY_UNSAFE_FAILPOINT", point), ("FEDKEY_NODE_ID", "node-a")];
            let mut s = Server::start_with(b, &[], &env);
            let k1 = s.acme_entra();
            let file = s.data_dir().join("deliveries/peer-key");
            s.file_connector(&file);
            s.cli_json(&[
                "rotation",
                "policy",
                "set",
                "acme/entra",
                "--period",
                "24h",
                "--overlap",
                "12h",
                "--validation",
                "first_use",
            ]);
            s.advance("24h").await;
            // Drive the engine (5 test-clock seconds per pass) until it stops at the
            // failpoint, playing the peer: as soon as a new key is delivered, use it.
            let (url, token) = (s.url.clone(), s.token.clone());
            let ticker = tokio::spawn(async move {
                let c = reqwest::Client::new();
                for _ in 0..20 {
                    let _ = c
                        .post(format!("{url}/api/v1/test/clock"))
                        .bearer_auth(&token)
                        .json(&json!({"advance": "5s"}))
                        .send()
                        .await;
                    let _ = c.post(format!("{url}/api/v1/test/engine/tick")).bearer_auth(&token).send().await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
            let mut used = false;
            for _ in 0..2000 {
                if s.logs().contains(&format!("FAILPOINT {point}")) {
                    break;
                }
                if !used && file.exists() {
                    let k = read_key(&file);
                    if k != k1 && s.scim_status("acme", &k).await == 200 {
                        used = true;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(s.logs().contains(&format!("FAILPOINT {point}")), "{b:?} {point}: never reached\n{}", s.logs());
            ticker.abort();
            s.restart(&[], &[("FEDKEY_NODE_ID", "node-a")]);
            s.advance("24h 5m").await;
            for _ in 0..5 {
                s.advance("5s").await;
                s.tick().await;
                if file.exists() {
                    let k = read_key(&file);
                    assert_eq!(s.scim_status("acme", &k).await, 200, "{b:?} {point}: the delivered key must work");
                }
            }
            let rot = s.rotation("entra").await;
            assert!(rot["active"].is_null(), "{b:?} {point}: rotation still in progress: {rot}");
            assert_eq!(rot["history"][0]["step"], "done", "{b:?} {point}: {rot}");
            let states = s.key_states("entra").await;
            assert_eq!(states.iter().filter(|(_, st)| st == "current").count(), 1, "{b:?} {point}: {states:?}");
            assert_eq!(states.iter().filter(|(_, st)| st == "pending").count(), 0, "{b:?} {point}: {states:?}");
            assert_eq!(states.len(), 2, "{b:?} {point}: no extra version was created: {states:?}");
            let k2 = read_key(&file);
            assert_eq!(s.scim_status("acme", &k2).await, 200, "{b:?} {point}");
            assert_eq!(s.scim_status("acme", &k1).await, 200, "{b:?} {point}: old key valid in its overlap");
            let out = s.cli(&["audit", "verify", "--offline"]);
            assert!(out.status.success(), "{b:?} {point}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_connector_backs_off_alerts_and_leaves_the_current_key() {
    for b in backends() {
        let alerts = receiver(0, 200).await;
        let peer = receiver(2, 503).await;
        let env = [("FEDKEY_ALERT_WEBHOOK_URL", alerts.url.as_str()), ("FEDKEY_ALERT_WEBHOOK_SECRET", "alert-secret")];
        let s = Server::start_with(b, &[], &env);
        let k1 = s.acme_entra();
        let spec = json!({"kind": "webhook", "url": format!("{}/hook", peer.url)}).to_string();
        let creds = s.dir.path().join("hook-creds.json");
        std::fs::write(&creds, json!({"kind": "webhook", "signing_secret": "hook-secret"}).to_string()).unwrap();
        s.cli_json(&[
            "connector",
            "add",
            "acme/entra",
            "--name",
            "hook",
            "--spec",
            &spec,
            "--credentials-file",
            creds.to_str().unwrap(),
        ]);
        s.cli_json(&["rotation", "policy", "set", "acme/entra", "--validation", "none", "--period", "30d"]);
        s.cli_json(&["rotation", "start", "acme/entra"]);
        let r = s.tick().await;
        assert_eq!(r["failed"], 1, "{r}");
        let rot = s.rotation("entra").await;
        assert_eq!(
            (rot["active"]["step"].as_str(), rot["active"]["attempts"].as_i64()),
            (Some("set"), Some(1)),
            "{rot}"
        );
        assert!(rot["active"]["last_error"].as_str().unwrap().contains("503"), "{rot}");
        assert_eq!(s.scim_status("acme", &k1).await, 200, "a failed step leaves the current key alone");
        assert_eq!(peer.seen.lock().unwrap().len(), 1);
        // The alert arrived, signed.
        {
            let seen = alerts.wait_for("rotation_failed alert", |b| b.contains("rotation_failed")).await;
            assert_eq!(seen.len(), 1, "one alert per failure");
            let (h, body) = &seen[0];
            assert!(body.contains("rotation_failed") && body.contains("acme/entra"), "{body}");
            let ts: i64 = h[fedkey_connectors::webhook::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
            let sig = h[fedkey_connectors::webhook::SIGNATURE_HEADER].to_str().unwrap();
            assert!(signed_by(b"alert-secret", sig, ts, body));
            assert!(!body.contains(&k1));
        }
        // `doctor` flags it as critical, with the action to take.
        let out = s.cli(&["doctor", "--output", "json"]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("rotation_failing"));
        s.advance("10s").await;
        assert_eq!(s.tick().await["failed"], 1, "second attempt also fails (503)");
        // An operator retries at once; the peer is back.
        s.cli_json(&["rotation", "retry", "acme/entra"]);
        let r = s.tick().await;
        assert_eq!(r["finished"], 1, "{r}");
        let (h, body) = peer.seen.lock().unwrap().last().cloned().unwrap();
        let delivered: Value = serde_json::from_str(&body).unwrap();
        let k2 = delivered["key"].as_str().unwrap().to_owned();
        let ts: i64 = h[fedkey_connectors::webhook::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        let sig = h[fedkey_connectors::webhook::SIGNATURE_HEADER].to_str().unwrap();
        assert!(signed_by(b"hook-secret", sig, ts, &body));
        assert!(!signed_by(b"other-secret", sig, ts, &body));
        assert_eq!(s.scim_status("acme", &k2).await, 200);
        assert!(!s.logs().contains(&k2), "the delivered key is not logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_rotation_and_cancel() {
    for b in backends() {
        let s = Server::start(b);
        let k1 = s.acme_entra();
        let file = s.data_dir().join("deliveries/peer-key");
        s.file_connector(&file);
        // A canceled rotation revokes its staged version and leaves the current one.
        s.cli_json(&["rotation", "start", "acme/entra"]);
        let out = s.cli(&["rotation", "start", "acme/entra"]);
        assert!(!out.status.success(), "a second rotation while one is in progress is refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("already in progress"));
        s.tick().await;
        let staged = read_key(&file);
        s.cli_json(&["rotation", "cancel", "acme/entra", "--reason", "test"]);
        assert_eq!(s.scim_status("acme", &staged).await, 401);
        assert_eq!(s.scim_status("acme", &k1).await, 200);
        // Emergency: the old key stops working at once.
        s.cli_json(&["rotation", "start", "acme/entra", "--emergency"]);
        assert_eq!(s.scim_status("acme", &k1).await, 401);
        s.tick().await;
        let k3 = read_key(&file);
        assert_eq!(s.scim_status("acme", &k3).await, 200);
        let states = s.key_states("entra").await;
        assert_eq!(states.last(), Some(&(3, "current".to_owned())), "{states:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_link_reveals_the_key_once_and_a_reuse_alerts() {
    for b in backends() {
        let alerts = receiver(0, 200).await;
        let env = [("FEDKEY_ALERT_WEBHOOK_URL", alerts.url.as_str()), ("FEDKEY_ALERT_WEBHOOK_SECRET", "alert-secret")];
        let s = Server::start_with(b, &[], &env);
        s.acme_entra();
        let v = s.cli_json(&["key", "rotate", "acme/entra", "--wrap", "15m"]);
        assert!(v.get("key").is_none(), "a wrapped rotation does not print the key: {v}");
        let url = v["wrapped_link"]["url"].as_str().unwrap().to_owned();
        // A GET (link preview) reveals nothing and does not burn the link.
        let (st, g) = s.api(M::GET, url.strip_prefix(&s.url).unwrap(), None, None).await;
        assert_eq!(st, 200);
        assert!(g.get("key").is_none());
        let out = fedkey(&s.data_dir(), &s.db_url, &["key", "unwrap", &url, "--output", "json"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        let k2 = got["key"].as_str().unwrap();
        assert_eq!(got["version"], 2);
        assert_eq!(s.scim_status("acme", k2).await, 200);
        let out = fedkey(&s.data_dir(), &s.db_url, &["key", "unwrap", &url], &[]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already used"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reused = alerts
            .wait_for("reuse alert", |b| b.contains("wrapped_link_reused"))
            .await
            .iter()
            .any(|(_, b)| b.contains("wrapped_link_reused"));
        assert!(reused, "alert raised on reuse");
        let (st, v) = s.api(M::GET, "/api/v1/audit?action=wrap.reuse", Some(&s.token), None).await;
        assert_eq!(st, 200);
        assert_eq!(v["records"].as_array().unwrap().len(), 1, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_link_connector_hands_over_a_link_not_the_key() {
    for b in backends() {
        let notify = receiver(1, 500).await;
        let s = Server::start(b);
        let k1 = s.acme_entra();
        let spec =
            json!({"kind": "wrapped_link", "notify_url": format!("{}/links", notify.url), "ttl": "30m"}).to_string();
        let creds = s.dir.path().join("link-creds.json");
        std::fs::write(&creds, json!({"kind": "wrapped_link", "signing_secret": "link-secret"}).to_string()).unwrap();
        s.cli_json(&[
            "connector",
            "add",
            "acme/entra",
            "--name",
            "oncall",
            "--spec",
            &spec,
            "--credentials-file",
            creds.to_str().unwrap(),
        ]);
        s.cli_json(&["rotation", "start", "acme/entra"]);
        assert_eq!(s.tick().await["failed"], 1, "the notify endpoint answered 500");
        s.advance("10s").await;
        s.tick().await;
        let sent: Vec<(axum::http::HeaderMap, String)> = notify.seen.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        let (h, body) = &sent[1];
        assert!(!body.contains("fkp_"), "only the link travels, never the key: {body}");
        let ts: i64 = h[fedkey_connectors::webhook::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        assert!(signed_by(b"link-secret", h[fedkey_connectors::webhook::SIGNATURE_HEADER].to_str().unwrap(), ts, body));
        let link = serde_json::from_str::<Value>(body).unwrap()["link"].as_str().unwrap().to_owned();
        // The link of the failed hand-over was voided.
        let first = serde_json::from_str::<Value>(&sent[0].1).unwrap()["link"].as_str().unwrap().to_owned();
        let (st, _) = s.api(M::POST, first.strip_prefix(&s.url).unwrap(), None, None).await;
        assert_eq!(st, 410, "a link nobody received does not work");
        let (st, v) = s.api(M::POST, link.strip_prefix(&s.url).unwrap(), None, None).await;
        assert_eq!(st, 200, "{v}");
        let k2 = v["key"].as_str().unwrap().to_owned();
        assert_eq!(v["version"], 2);
        // The person sets it at the peer; the peer's first use completes the rotation.
        assert_eq!(s.scim_status("acme", &k2).await, 200);
        s.advance("5s").await;
        assert_eq!(s.tick().await["finished"], 1);
        assert_eq!(s.key_states("entra").await, vec![(1, "previous".into()), (2, "current".into())]);
        assert_eq!(s.scim_status("acme", &k1).await, 200);
    }
}

/// Issue 16, rows 8 and 9: one overlap maximum on every path (`rotation/start` accepted
/// 1000 years before), and file connectors write only under the delivery root (before, a
/// connector could be pointed at the master key or the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlaps_and_file_targets_are_bounded() {
    for b in backends() {
        let s = Server::start(b);
        s.acme_entra();
        let trust = "/api/v1/directories/acme/trusts/entra";
        for (path, body) in
            [("rotation/start", json!({"overlap": "1000years"})), ("keys/rotate", json!({"overlap": "91d"}))]
        {
            let (st, v) = s.api(M::POST, &format!("{trust}/{path}"), Some(&s.token), Some(body)).await;
            assert_eq!(st, 400, "{path}: {v}");
            assert!(v.to_string().contains("at most 90 days"), "{path}: {v}");
        }
        let out = s.cli(&["rotation", "policy", "set", "acme/entra", "--period", "400d", "--overlap", "100d"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("at most 90 days"), "{out:?}");
        let (st, v) =
            s.api(M::POST, &format!("{trust}/rotation/start"), Some(&s.token), Some(json!({"overlap": "90d"}))).await;
        assert_eq!(st, 202, "{v}");

        let data = s.data_dir();
        let master = std::fs::read(data.join("master.key")).unwrap();
        let outside = s.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("deliveries/out")).unwrap();
        let refused = [
            (data.join("master.key"), "outside the delivery root"),
            (data.join("fedkey.db"), "outside the delivery root"),
            (outside.join("k"), "outside the delivery root"),
            (data.join("deliveries/../master.key"), "without . or .."),
            (data.join("deliveries/out/k"), "symbolic link"),
        ];
        for (path, why) in refused {
            let spec = json!({"kind": "file", "path": path}).to_string();
            let out = s.cli(&["connector", "add", "acme/entra", "--name", "f", "--spec", &spec]);
            assert!(!out.status.success(), "{path:?} accepted");
            assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{path:?}: {out:?}");
        }
        assert_eq!(std::fs::read(data.join("master.key")).unwrap(), master);
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    }
}
