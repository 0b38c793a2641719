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
use super::provisioning::{REF_TOKEN, reference_server};

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

async fn new_directory(s: &Server, dir: &str, trust: &str) -> String {
    let (st, v) = s.api(M::POST, "/api/v1/directories", Some(&s.token), Some(json!({"name": dir}))).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = s
        .api(
            M::POST,
            &format!("/api/v1/directories/{dir}/trusts"),
            Some(&s.token),
            Some(json!({"name": trust, "direction": "inbound"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

async fn outbound(s: &Server, dir: &str, name: &str, key: &str, url: &str) {
    let (st, v) = s
        .api(
            M::POST,
            &format!("/api/v1/directories/{dir}/trusts"),
            Some(&s.token),
            Some(json!({"name": name, "direction": "outbound", "key": key})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
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

async fn reconcile_scenario(b: Backend, ref_url: Option<&str>) {
    let s = Server::start(b);
    let hr = new_directory(&s, "acme", "hr").await;
    let app_key = new_directory(&s, "app", "fedkey").await;
    let app_url = format!("{}/scim/v2/app", s.url);
    outbound(&s, "acme", "app", &app_key, &app_url).await;
    let mut targets = vec![("acme/app", App { base: app_url, token: app_key })];
    if let Some(url) = ref_url {
        outbound(&s, "acme", "ref", REF_TOKEN, url).await;
        targets.push(("acme/ref", App { base: url.to_owned(), token: REF_TOKEN.into() }));
    }
    let acme = Scim { s: &s, dir: "acme".into(), key: hr };
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
    let hr = new_directory(&s, "acme", "hr").await;
    let app_key = new_directory(&s, "app", "fedkey").await;
    let app_url = format!("{}/scim/v2/app", s.url);
    let (st, v) = s
        .api(
            M::POST,
            "/api/v1/directories/acme/trusts",
            Some(&s.token),
            Some(json!({"name": "app", "direction": "outbound", "key": app_key})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
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
