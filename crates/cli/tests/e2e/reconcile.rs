//! End-to-end tests of reconciliation on the real binary, against a second fedkey
//! directory and `scim2-server` as targets: drift introduced directly at each target (a
//! deleted account, altered attributes, an extra account, a removed group member) is
//! reported exactly by a dry run that changes nothing, repaired by a real run (read back
//! from the target), after which a dry run has nothing left to do.

#[allow(unused_imports)]
use super::*;

use std::collections::BTreeSet;

use reqwest::Method as M;

// The reference server and its harness are shared with the provisioning tests.
use super::provisioning::{REF_TOKEN, directory_with_inbound, outbound_trust, reference_server};

/// A SCIM target, read and changed directly (as someone at the application would).
struct App {
    base: String,
    token: String,
}

impl App {
    async fn send(&self, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let st = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn list(&self, endpoint: &str) -> Vec<Value> {
        let (st, v) = self.send(M::GET, &format!("/{endpoint}?count=500"), None).await;
        assert_eq!(st, 200, "{v}");
        v["Resources"].as_array().cloned().unwrap_or_default()
    }

    async fn find(&self, endpoint: &str, attr: &str, value: &str) -> Option<Value> {
        let all = self.list(endpoint).await;
        let found: Vec<&Value> =
            all.iter().filter(|r| r[attr].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value))).collect();
        assert!(found.len() <= 1, "duplicate {endpoint} with {attr} {value}: {found:?}");
        found.first().map(|v| (*v).clone())
    }

    async fn members(&self, group_name: &str) -> BTreeSet<String> {
        let g = self.find("Groups", "displayName", group_name).await.expect("group at the target");
        let (_, g) = self.send(M::GET, &format!("/Groups/{}", g["id"].as_str().unwrap()), None).await;
        g["members"]
            .as_array()
            .map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }
}

async fn tick(s: &Server) -> Value {
    let (st, v) = s.api(M::POST, "/api/v1/test/sync/tick", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["report"].clone()
}

async fn reconcile_api(s: &Server, trust: &str, dry_run: bool) -> Value {
    let (d, t) = trust.split_once('/').unwrap();
    let (st, v) = s
        .api(
            M::POST,
            &format!("/api/v1/directories/{d}/trusts/{t}/reconcile"),
            Some(&s.token),
            Some(json!({"dry_run": dry_run})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["reconcile"].clone()
}

async fn outbound(s: &Server, dir: &str, name: &str, key: &str, url: &str) {
    outbound_trust(s, dir, name, key).await;
    let v = s.cli_json(&["sync", "target", "set", &format!("{dir}/{name}"), "--url", url, "--orphans", "deactivate"]);
    assert_eq!(v["target"]["mapping"]["orphans"], "deactivate", "{v}");
}

fn person(name: &str, title: &str) -> Value {
    json!({
        "schemas": [USER_URN], "userName": name, "active": true, "title": title,
        "name": {"givenName": name.split('@').next().unwrap(), "familyName": "Example"},
        "emails": [{"value": name, "type": "work", "primary": true}],
    })
}

/// The plan as a set of (action, type, display) for exact comparison.
fn plan_of(r: &Value) -> BTreeSet<(String, String, String)> {
    r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["resource_type"].as_str().unwrap().to_owned(),
                a["display"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn expected_plan() -> BTreeSet<(String, String, String)> {
    [
        ("create", "User", "alice@acme.test"),
        ("update", "User", "bob@acme.test"),
        ("update", "Group", "Engineering"),
        ("deactivate_orphan", "User", "mallory@elsewhere.test"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect()
}

/// Deletes alice's account, alters bob's title, adds mallory and removes bob from
/// Engineering, directly at the target.
async fn drift(app: &App, alice: &str, bob: &str) {
    let a = app.find("Users", "externalId", alice).await.expect("alice provisioned");
    let (st, v) = app.send(M::DELETE, &format!("/Users/{}", a["id"].as_str().unwrap()), None).await;
    assert_eq!(st, 204, "{v}");
    let b = app.find("Users", "externalId", bob).await.expect("bob provisioned");
    let bob_remote = b["id"].as_str().unwrap().to_owned();
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let (st, v) = app
        .send(
            M::PATCH,
            &format!("/Users/{bob_remote}"),
            Some(patch(json!([{"op": "replace", "path": "title", "value": "Changed at the app"}]))),
        )
        .await;
    assert!(st == 200 || st == 204, "{st} {v}");
    let (st, v) = app.send(M::POST, "/Users", Some(person("mallory@elsewhere.test", "Intruder"))).await;
    assert_eq!(st, 201, "{v}");
    let g = app.find("Groups", "displayName", "Engineering").await.expect("group provisioned");
    let (st, v) = app
        .send(
            M::PATCH,
            &format!("/Groups/{}", g["id"].as_str().unwrap()),
            Some(patch(json!([{"op": "remove", "path": format!("members[value eq \"{bob_remote}\"]")}]))),
        )
        .await;
    assert!(st == 200 || st == 204, "{st} {v}");
    assert!(!app.members("Engineering").await.contains(&bob_remote));
}

/// The target still shows exactly the drift (the dry run changed nothing).
async fn drift_still_there(app: &App, alice: &str, bob: &str) {
    assert!(app.find("Users", "externalId", alice).await.is_none(), "dry run created nothing");
    let b = app.find("Users", "externalId", bob).await.unwrap();
    assert_eq!(b["title"], "Changed at the app", "dry run patched nothing");
    let m = app.find("Users", "userName", "mallory@elsewhere.test").await.unwrap();
    assert_ne!(m["active"], false, "dry run deactivated nothing");
    assert!(!app.members("Engineering").await.contains(b["id"].as_str().unwrap()));
}

/// The target agrees with the directory again.
async fn repaired(app: &App, alice: &str, bob: &str) {
    let a = app.find("Users", "externalId", alice).await.expect("alice re-created");
    assert_eq!((a["userName"].as_str(), a["title"].as_str()), (Some("alice@acme.test"), Some("Engineer")));
    let b = app.find("Users", "externalId", bob).await.unwrap();
    assert_eq!(b["title"], "Analyst", "bob's title restored");
    let m = app.find("Users", "userName", "mallory@elsewhere.test").await.expect("orphan kept");
    assert_eq!(m["active"], false, "orphan deactivated");
    let want: BTreeSet<String> =
        [a["id"].as_str().unwrap().to_owned(), b["id"].as_str().unwrap().to_owned()].into_iter().collect();
    assert_eq!(app.members("Engineering").await, want);
    assert_eq!(app.list("Users").await.len(), 4, "alice, bob, carol and the orphan; no duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_repairs_drift_at_fedkey_and_scim2_server() {
    for b in backends() {
        let refsrv = reference_server("reconcile_repairs_drift_at_fedkey_and_scim2_server").await;
        reconcile_scenario(b, refsrv.as_ref().map(|(_, url)| url.as_str())).await;
    }
}

/// Alice, Bob and Carol, and the group Engineering holding Alice and Bob; returns the
/// directory ids of Alice and Bob.
async fn people_and_group(acme: &Scim<'_>) -> (String, String) {
    let mut ids = Vec::new();
    for (n, title) in [("alice@acme.test", "Engineer"), ("bob@acme.test", "Analyst"), ("carol@acme.test", "Manager")] {
        let r = acme.post("/Users", person(n, title)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let (alice, bob) = (ids[0].clone(), ids[1].clone());
    let g = acme
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering",
                   "members": [{"value": alice}, {"value": bob}]}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.body);
    (alice, bob)
}

async fn reconcile_scenario(b: Backend, ref_url: Option<&str>) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    let app_url = format!("{}/scim/v2/app", s.url);
    outbound(&s, "acme", "app", &app_key, &app_url).await;
    let mut targets = vec![("acme/app", App { base: app_url, token: app_key })];
    if let Some(url) = ref_url {
        outbound(&s, "acme", "ref", REF_TOKEN, url).await;
        targets.push(("acme/ref", App { base: url.to_owned(), token: REF_TOKEN.into() }));
    }
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let (alice, bob) = people_and_group(&acme).await;
    let r = tick(&s).await;
    assert_eq!(r["dead_letters"], 0, "{r}");

    // In sync: nothing to do.
    for (trust, _) in &targets {
        let r = reconcile_api(&s, trust, true).await;
        assert!(r["actions"].as_array().unwrap().is_empty(), "{trust}: {r}");
    }

    for (trust, app) in &targets {
        drift(app, &alice, &bob).await;
        // Dry run: exactly the drift, nothing changed. The fedkey target through the CLI.
        let r = if *trust == "acme/app" {
            let v = s.cli_json(&["sync", "reconcile", trust, "--dry-run"]);
            let out = s.cli(&["sync", "reconcile", trust, "--dry-run"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("deactivate_orphan") && text.contains("mallory@elsewhere.test"), "{text}");
            assert!(text.contains("dry run"), "{text}");
            v["reconcile"].clone()
        } else {
            reconcile_api(&s, trust, true).await
        };
        assert_eq!(r["dry_run"], true);
        assert_eq!(plan_of(&r), expected_plan(), "{trust}: {r}");
        let acts = r["actions"].as_array().unwrap();
        let bob_update = acts.iter().find(|a| a["display"] == "bob@acme.test").unwrap();
        assert_eq!(bob_update["detail"]["patched"], json!(["title"]), "{bob_update}");
        let group = acts.iter().find(|a| a["resource_type"] == "Group").unwrap();
        assert_eq!(group["detail"]["members_add"], 1, "bob is missing: {group}");
        assert!(acts.iter().all(|a| a.get("outcome").is_none()), "{r}");
        drift_still_there(app, &alice, &bob).await;

        // Real run: repaired, read back.
        let r = if *trust == "acme/app" {
            let out = s.cli(&["sync", "reconcile", trust, "--output", "json"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "exit 0 when everything is done: {text}");
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["reconcile"].clone()
        } else {
            reconcile_api(&s, trust, false).await
        };
        assert_eq!(plan_of(&r), expected_plan(), "{trust}: {r}");
        assert!(r["actions"].as_array().unwrap().iter().all(|a| a["outcome"] == "done"), "{trust}: {r}");
        assert_eq!(r["delivery"]["dead_letters"], 0, "{r}");
        repaired(app, &alice, &bob).await;

        // Nothing left to do; the deactivated orphan is still listed.
        let r = reconcile_api(&s, trust, true).await;
        assert!(r["actions"].as_array().unwrap().is_empty(), "{trust}: {r}");
        assert!(
            r["orphans"].as_array().unwrap().iter().any(|o| o["display"] == "mallory@elsewhere.test"),
            "{trust}: {r}"
        );
    }
    // Audited: the queued repairs, the orphan deactivation and a summary per run.
    let audit = |action: &'static str| {
        let s = &s;
        async move {
            let (st, v) =
                s.api(M::GET, &format!("/api/v1/audit?action={action}&limit=500"), Some(&s.token), None).await;
            assert_eq!(st, 200, "{v}");
            v["records"].as_array().unwrap().len()
        }
    };
    let n = targets.len();
    assert_eq!(audit("sync.reconcile.queue").await, 3 * n);
    assert_eq!(audit("sync.reconcile.orphan").await, n);
    // One summary per run: four per target, one more for the CLI's table output.
    assert_eq!(audit("sync.reconcile").await, 4 * n + 1);
}

/// Report policy (the default): orphans are listed, never touched; unknown targets are 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconcile_reports_orphans_by_default() {
    let s = Server::start(Backend::Sqlite);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    let app_url = format!("{}/scim/v2/app", s.url);
    outbound_trust(&s, "acme", "app", &app_key).await;
    let (st, v) = s
        .api(M::POST, "/api/v1/directories/acme/trusts/app/reconcile", Some(&s.token), Some(json!({"dry_run": true})))
        .await;
    assert_eq!(st, 404, "no target yet: {v}");
    s.cli_json(&["sync", "target", "set", "acme/app", "--url", &app_url]);
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    assert_eq!(acme.post("/Users", person("dana@acme.test", "Engineer")).await.status, 201);
    tick(&s).await;
    let app = App { base: app_url, token: app_key };
    assert_eq!(app.send(M::POST, "/Users", Some(person("eve@elsewhere.test", "?"))).await.0, 201);
    // A suspended trust's target receives nothing: a real run is refused, a dry run plans.
    let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/app/suspend", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .api(M::POST, "/api/v1/directories/acme/trusts/app/reconcile", Some(&s.token), Some(json!({"dry_run": false})))
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("invalid_state")), "{v}");
    assert_eq!(reconcile_api(&s, "acme/app", true).await["orphans"].as_array().unwrap().len(), 1);
    let (st, v) = s.api(M::POST, "/api/v1/directories/acme/trusts/app/resume", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let r = reconcile_api(&s, "acme/app", false).await;
    assert_eq!(r["orphan_policy"], "report");
    assert!(r["actions"].as_array().unwrap().is_empty(), "{r}");
    let o = &r["orphans"].as_array().unwrap()[0];
    assert_eq!((o["display"].as_str(), o["active"].as_bool()), (Some("eve@elsewhere.test"), Some(true)), "{r}");
    assert_ne!(app.find("Users", "userName", "eve@elsewhere.test").await.unwrap()["active"], false);
}

// ---------------------------------------------------------------- scheduled reconciliation

/// A TCP relay to a real target that can be switched off: connections are refused
/// (accepted and closed at once) and the ones open are cut, as when the application is down.
struct Relay {
    url: String,
    down: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, cs) = (down.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let up = upstream.clone();
                cs.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut u) = tokio::net::TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                    }
                }));
            }
        });
        Relay { url, down, conns, task }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.set_down(true);
    }
}

/// `POST /api/v1/test/sync/reconcile-tick`: the runs that were due.
async fn reconcile_tick(s: &Server) -> Vec<Value> {
    let (st, v) = s.api(M::POST, "/api/v1/test/sync/reconcile-tick", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    v["runs"].as_array().cloned().unwrap()
}

fn target_of(s: &Server, trust: &str) -> Value {
    s.cli_json(&["sync", "target", "show", trust])["target"].clone()
}

/// The planned (or applied) counts of a run as a map of action → count.
fn kinds(v: &Value) -> BTreeSet<(String, u64)> {
    v.as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect()
}

fn kinds_of(pairs: &[(&str, u64)]) -> BTreeSet<(String, u64)> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_reconciliation_repairs_reports_and_survives_an_outage() {
    for b in backends() {
        scheduled_scenario(b).await;
    }
}

async fn scheduled_scenario(b: Backend) {
    let s = Server::start(b);
    let hr = directory_with_inbound(&s, "acme", "hr").await;
    let app_key = directory_with_inbound(&s, "app", "fedkey").await;
    // The application (fedkey's "app" directory) is reached through a relay that can fail.
    let relay = Relay::start(&s.url).await;
    let app_url = format!("{}/scim/v2/app", relay.url);
    outbound_trust(&s, "acme", "app", &app_key).await;
    let set = |extra: &[&str]| {
        let mut args = vec!["sync", "target", "set", "acme/app", "--url", &app_url, "--orphans", "deactivate"];
        args.extend(extra);
        s.cli(&args)
    };
    let out = set(&["--reconcile-every", "1h", "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = target_of(&s, "acme/app");
    assert_eq!((t["reconcile_every_seconds"].as_i64(), t["reconcile_dry_run"].as_bool()), (Some(3600), Some(false)));
    assert!(t["last_reconcile"].is_null(), "{t}");
    let next = t["next_reconcile_at"].as_str().unwrap().to_owned();

    // Bad schedules: a clear error, the target unchanged.
    for (bad, says) in
        [("10x", "is not a duration"), ("0s", "out of range"), ("4m", "out of range"), ("91d", "out of range")]
    {
        let out = set(&["--reconcile-every", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(err.contains("reconcile_every") && err.contains(says), "{bad}: {err}");
    }
    let out = set(&["--reconcile-dry-run"]);
    assert!(!out.status.success(), "a dry-run schedule without an interval");
    let (st, v) = s
        .api(
            M::PUT,
            "/api/v1/directories/acme/trusts/app/target",
            Some(&s.token),
            Some(json!({"url": app_url, "reconcile_dry_run": true})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("reconcile_dry_run needs reconcile_every"), "{v}");
    let t = target_of(&s, "acme/app");
    assert_eq!((t["reconcile_every_seconds"].as_i64(), t["next_reconcile_at"].as_str()), (Some(3600), Some(&*next)));
    assert_eq!(t["mapping"]["orphans"], "deactivate");

    // Provisioned, then drift at the application.
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
    let (alice, bob) = people_and_group(&acme).await;
    assert_eq!(tick(&s).await["dead_letters"], 0);
    let app = App { base: format!("{}/scim/v2/app", s.url), token: app_key.clone() };
    drift(&app, &alice, &bob).await;

    // Half the interval: nothing runs.
    s.advance("30m").await;
    assert!(reconcile_tick(&s).await.is_empty());
    drift_still_there(&app, &alice, &bob).await;
    assert!(target_of(&s, "acme/app")["last_reconcile"].is_null());

    // Past the interval: the run repairs the drift and is recorded with its counts.
    s.advance("31m").await;
    let runs = reconcile_tick(&s).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let want = kinds_of(&[("create", 1), ("update", 2), ("deactivate_orphan", 1)]);
    assert_eq!((runs[0]["trust"].as_str(), runs[0]["outcome"].as_str()), (Some("acme/app"), Some("succeeded")));
    assert_eq!(kinds(&runs[0]["counts"]["planned"]), want, "{runs:?}");
    assert_eq!(kinds(&runs[0]["counts"]["applied"]), want, "{runs:?}");
    repaired(&app, &alice, &bob).await;
    assert!(reconcile_tick(&s).await.is_empty(), "not due again until an interval later");
    let t = target_of(&s, "acme/app");
    let last = &t["last_reconcile"];
    assert_eq!((last["outcome"].as_str(), last["error"].as_str()), (Some("succeeded"), None), "{t}");
    assert_eq!(kinds(&last["counts"]["applied"]), want, "{t}");
    assert!(last["finished_at"].is_string() && t["next_reconcile_at"].as_str() > Some(&*next), "{t}");
    let status = s.cli_json(&["sync", "status", "acme"]);
    assert_eq!(status["targets"][0]["last_reconcile"], *last, "{status}");
    let text = String::from_utf8_lossy(&s.cli(&["sync", "target", "show", "acme/app"]).stdout).into_owned();
    assert!(text.contains("every 1h") && text.contains("succeeded") && text.contains("create=1"), "{text}");
    let text = String::from_utf8_lossy(&s.cli(&["sync", "status", "acme"]).stdout).into_owned();
    assert!(text.contains("Scheduled reconciliation") && text.contains("deactivate_orphan=1"), "{text}");
    // Audited as the scheduler, with its counts.
    let (st, v) = s.api(M::GET, "/api/v1/audit?action=sync.reconcile&limit=50", Some(&s.token), None).await;
    assert_eq!(st, 200, "{v}");
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    assert!(recs[0].to_string().contains("system:sync-schedule"), "{v}");
    assert_eq!(recs[0]["details"]["actions"]["create"], 1, "{v}");

    // A report-only schedule: the drift is listed, the application left as it is.
    let out = set(&["--reconcile-every", "1h", "--reconcile-dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tick(&s).await["dead_letters"], 0, "the target set queues everything again");
    let b = app.find("Users", "externalId", &bob).await.unwrap();
    let retitle = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [{"op": "replace", "path": "title", "value": "Edited again"}]});
    let (st, v) = app.send(M::PATCH, &format!("/Users/{}", b["id"].as_str().unwrap()), Some(retitle)).await;
    assert!(st == 200 || st == 204, "{st} {v}");
    s.advance("61m").await;
    let runs = reconcile_tick(&s).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0]["outcome"].as_str(), runs[0]["dry_run"].as_bool()), (Some("drift"), Some(true)), "{runs:?}");
    assert_eq!(kinds(&runs[0]["counts"]["planned"]), kinds_of(&[("update", 1)]), "{runs:?}");
    assert!(kinds(&runs[0]["counts"]["applied"]).is_empty(), "{runs:?}");
    let b = app.find("Users", "externalId", &bob).await.unwrap();
    assert_eq!(b["title"], "Edited again", "a dry run changes nothing");
    assert_eq!(target_of(&s, "acme/app")["last_reconcile"]["outcome"], "drift");

    // The application goes down: the run fails with a readable error, is audited, and
    // is retried 15 minutes later (not an hour); once the application is back it repairs.
    let out = set(&["--reconcile-every", "1h"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = tick(&s).await;
    assert_eq!(r["dead_letters"], 0, "{r} {}", s.cli_json(&["sync", "dead-letters", "list", "acme"]));
    let a = app.find("Users", "externalId", &alice).await.unwrap();
    assert_eq!(app.send(M::DELETE, &format!("/Users/{}", a["id"].as_str().unwrap()), None).await.0, 204);
    relay.set_down(true);
    s.advance("61m").await;
    let runs = reconcile_tick(&s).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "failed", "{runs:?}");
    let err = runs[0]["error"].as_str().unwrap().to_owned();
    assert!(err.starts_with("network error talking to the target"), "a readable error: {err}");
    assert!(!err.contains(&app_key), "no secret in the error");
    let t = target_of(&s, "acme/app");
    assert_eq!(
        (t["last_reconcile"]["outcome"].as_str(), t["last_reconcile"]["error"].as_str()),
        (Some("failed"), Some(&*err))
    );
    let (_, v) = s.api(M::GET, "/api/v1/audit?action=sync.reconcile&limit=50", Some(&s.token), None).await;
    let failed: Vec<&Value> =
        v["records"].as_array().unwrap().iter().filter(|r| r.to_string().contains("\"failure\"")).collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert!(!v.to_string().contains(&app_key), "no secret in the audit");
    s.advance("10m").await;
    assert!(reconcile_tick(&s).await.is_empty(), "retried after 15 minutes");
    relay.set_down(false);
    s.advance("6m").await;
    let runs = reconcile_tick(&s).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0]["outcome"].as_str(), runs[0]["error"].as_str()), (Some("succeeded"), None), "{runs:?}");
    assert_eq!(runs[0]["counts"]["applied"]["create"], 1, "{runs:?}");
    assert!(app.find("Users", "externalId", &alice).await.is_some(), "repaired after the outage");
    assert_eq!(target_of(&s, "acme/app")["last_reconcile"]["outcome"], "succeeded");
}
